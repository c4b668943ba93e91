import Crypto
public import DroverAccess
public import DroverModel
public import DroverStorage
public import Foundation
import Logging
import Synchronization

/// Nomad's ACL system: the one-time bootstrap, policies and tokens. Secrets are made from the
/// system's secure random source, handed out once, and stored as their SHA-256.
public struct ACLService: Sendable {
    public let database: Database
    /// Told of every change made here, so that this process's lookups see it at once.
    let resolver: TokenResolver?

    public init(database: Database, resolver: TokenResolver? = nil) {
        self.database = database
        self.resolver = resolver
    }

    /// Makes the first management token.
    /// - Parameter secret: its secret, when the operator chooses it (Nomad's `BootstrapSecret`);
    ///   otherwise a fresh one.
    /// - Throws: ``ControlPlaneError/invalid(_:)`` once bootstrapped, as Nomad answers 400.
    public func bootstrap(secret chosen: String? = nil, now: Date = Date()) async throws -> ACLToken {
        if let chosen, chosen.utf8.count < 16 || chosen.utf8.count > 256 || !chosen.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) {
            throw ControlPlaneError.invalid([FieldError("BootstrapSecret", "must be 16 to 256 printable characters without spaces, such as a UUID")])
        }
        let secret = chosen ?? Self.newSecret()
        let token = try await database.transaction { work in
            let index = try await work.nextIndex()
            var token = ACLToken(
                accessorID: Self.newSecret(), name: "Bootstrap Token", type: .management, policies: [], global: true, createTime: now,
                createIndex: index, modifyIndex: index)
            guard try await work.acl.markBootstrapped(accessorID: token.accessorID, index: index) else {
                throw ControlPlaneError.invalid([FieldError("bootstrap", "ACL bootstrap already done; use a management token to make more")])
            }
            try await work.acl.insert(token, secretHash: Self.hash(secret))
            token.secretID = secret
            return token
        }
        resolver?.invalidate()
        return token
    }

    // MARK: Policies

    /// Creates or replaces the policy `name`. - Returns: the index of the change.
    /// - Throws: ``ControlPlaneError/invalid(_:)`` naming each bad field, rules included.
    public func put(policy: ACLPolicy, name: String) async throws -> Int64 {
        var policy = policy
        if policy.name.isEmpty { policy.name = name }
        var errors = Self.validate(policyName: policy.name, field: "Name")
        if policy.name != name { errors.append(FieldError("Name", "'\(policy.name)' does not match the name '\(name)' in the path")) }
        if policy.description.utf8.count > JobLimits.shortString {
            errors.append(FieldError("Description", "is longer than \(JobLimits.shortString) bytes"))
        }
        do {
            _ = try PolicyRules(parsing: policy.rules)
        } catch {
            errors += error.fields
        }
        guard errors.isEmpty else { throw ControlPlaneError.invalid(errors) }
        let index = try await database.transaction { work in
            let index = try await work.nextIndex()
            try await work.acl.upsert(policy, index: index)
            return index
        }
        resolver?.invalidate()
        return index
    }

    public func deletePolicy(name: String) async throws -> Int64 {
        let index = try await database.transaction { work in
            guard try await work.acl.deletePolicy(named: name) else { throw ControlPlaneError.notFound(kind: "ACL policy", id: name) }
            return try await work.nextIndex()
        }
        resolver?.invalidate()
        return index
    }

    // MARK: Tokens

    /// Creates a token. - Returns: it, with its secret, which is never shown again.
    public func createToken(_ request: ACLTokenRequest, now: Date = Date()) async throws -> ACLToken {
        let roles = try await validate(request, creating: true)
        let secret = Self.newSecret()
        return try await database.transaction { work in
            let index = try await work.nextIndex()
            var token = ACLToken(
                accessorID: Self.newSecret(), name: request.name, type: ACLToken.Kind(rawValue: request.type) ?? .client,
                policies: request.policies, global: request.global, createTime: now,
                expirationTime: request.expirationTTL.map { now.addingTimeInterval($0.timeInterval) }, createIndex: index, modifyIndex: index)
            token.roles = roles.map { ACLRoleLink(id: $0.id, name: $0.name) }
            try await work.acl.insert(token, secretHash: Self.hash(secret))
            token.secretID = secret
            return token
        }
    }

    /// Changes a token's name and policies; its type, secret and expiry stay.
    public func updateToken(accessorID: String, _ request: ACLTokenRequest) async throws -> ACLToken {
        if let given = request.accessorID, given != accessorID {
            throw ControlPlaneError.invalid([FieldError("AccessorID", "'\(given)' does not match the accessor '\(accessorID)' in the path")])
        }
        let roles = try await validate(request, creating: false)
        let token = try await database.transaction { work in
            guard let existing = try await work.acl.token(accessorID: accessorID) else {
                throw ControlPlaneError.notFound(kind: "ACL token", id: accessorID)
            }
            guard existing.type.rawValue == request.type else {
                throw ControlPlaneError.invalid([FieldError("Type", "a token's type cannot change (it is \(existing.type.rawValue))")])
            }
            let index = try await work.nextIndex()
            _ = try await work.acl.update(
                accessorID: accessorID, name: request.name, policies: request.policies, roles: roles.map(\.id), index: index)
            return try await work.acl.token(accessorID: accessorID) ?? existing
        }
        resolver?.invalidate()
        return token
    }

    public func deleteToken(accessorID: String) async throws -> Int64 {
        let index = try await database.transaction { work in
            guard try await work.acl.deleteToken(accessorID: accessorID) else {
                throw ControlPlaneError.notFound(kind: "ACL token", id: accessorID)
            }
            return try await work.nextIndex()
        }
        resolver?.invalidate()
        return index
    }

    /// - Returns: the roles the request links to, as they are.
    private func validate(_ request: ACLTokenRequest, creating: Bool) async throws -> [ACLRole] {
        var errors: [FieldError] = []
        if request.name.utf8.count > JobLimits.shortString { errors.append(FieldError("Name", "is longer than \(JobLimits.shortString) bytes")) }
        switch ACLToken.Kind(rawValue: request.type) {
        case .management:
            if !request.policies.isEmpty { errors.append(FieldError("Policies", "a management token holds no policies: it may do anything")) }
            if !request.roles.isEmpty { errors.append(FieldError("Roles", "a management token holds no roles: it may do anything")) }
        case .client:
            if request.policies.isEmpty && request.roles.isEmpty {
                errors.append(FieldError("Policies", "a client token needs at least one policy or role"))
            }
        case nil:
            errors.append(FieldError("Type", "'\(request.type)' is not client or management"))
        }
        if request.policies.count > JobLimits.rules { errors.append(FieldError("Policies", "holds more than \(JobLimits.rules) policies")) }
        if request.roles.count > JobLimits.rules { errors.append(FieldError("Roles", "holds more than \(JobLimits.rules) roles")) }
        for (position, link) in request.roles.enumerated() where (link.id ?? "").isEmpty && (link.name ?? "").isEmpty {
            errors.append(FieldError("Roles[\(position)]", "name the role by ID or Name"))
        }
        if !creating, request.expirationTTL != nil {
            errors.append(FieldError("ExpirationTTL", "is set when a token is made and cannot change"))
        }
        if let ttl = request.expirationTTL, ttl < .seconds(1) || ttl > .seconds(31_536_000 * 10) {
            errors.append(FieldError("ExpirationTTL", "must be between 1s and 10 years"))
        }
        guard errors.isEmpty else { throw ControlPlaneError.invalid(errors) }
        let known = Set(try await database.acl.policies(named: request.policies).map(\.name))
        let missing = request.policies.enumerated().filter { !known.contains($0.element) }
        guard missing.isEmpty else {
            throw ControlPlaneError.invalid(missing.map { FieldError("Policies[\($0.offset)]", "there is no policy '\($0.element)'") })
        }
        let byID = Dictionary(
            try await database.acl.roles(ids: request.roles.compactMap(\.id)).map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        let byName = Dictionary(
            try await database.acl.roles(names: request.roles.compactMap(\.name)).map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var roles: [ACLRole] = []
        for (position, link) in request.roles.enumerated() {
            let role = link.id.flatMap { $0.isEmpty ? nil : byID[$0] } ?? link.name.flatMap { byName[$0] }
            guard let role, link.name.map({ $0.isEmpty || $0 == role.name }) ?? true else {
                errors.append(FieldError("Roles[\(position)]", "there is no role \(link.id.map { "'\($0)'" } ?? "named '\(link.name ?? "")'")"))
                continue
            }
            if !roles.contains(where: { $0.id == role.id }) { roles.append(role) }
        }
        guard errors.isEmpty else { throw ControlPlaneError.invalid(errors) }
        return roles
    }

    // MARK: Roles

    /// Creates a role (no `id`) or replaces the role `id`.
    /// - Returns: the role as stored.
    /// - Throws: ``ControlPlaneError/invalid(_:)`` naming each bad field; ``ControlPlaneError/notFound(kind:id:)``.
    public func put(role submitted: ACLRole, id: String?) async throws -> ACLRole {
        var role = submitted
        var errors = Self.validate(policyName: role.name, field: "Name")
        if let id, !role.id.isEmpty, role.id != id {
            errors.append(FieldError("ID", "'\(role.id)' does not match the role '\(id)' in the path"))
        }
        if role.description.utf8.count > JobLimits.shortString {
            errors.append(FieldError("Description", "is longer than \(JobLimits.shortString) bytes"))
        }
        if role.policies.isEmpty { errors.append(FieldError("Policies", "a role needs at least one policy")) }
        if role.policies.count > JobLimits.rules { errors.append(FieldError("Policies", "holds more than \(JobLimits.rules) policies")) }
        guard errors.isEmpty else { throw ControlPlaneError.invalid(errors) }
        let known = Set(try await database.acl.policies(named: role.policies.map(\.name)).map(\.name))
        let missing = role.policies.enumerated().filter { !known.contains($0.element.name) }
        guard missing.isEmpty else {
            throw ControlPlaneError.invalid(missing.map { FieldError("Policies[\($0.offset)]", "there is no policy '\($0.element.name)'") })
        }
        role.id = id ?? Self.newSecret()
        let stored = try await database.transaction { work in
            if id != nil, try await work.acl.roles(ids: [role.id]).isEmpty { throw ControlPlaneError.notFound(kind: "ACL role", id: role.id) }
            if let holder = try await work.acl.roles(names: [role.name]).first, holder.id != role.id {
                throw ControlPlaneError.invalid([FieldError("Name", "another role is named '\(role.name)'")])
            }
            let index = try await work.nextIndex()
            try await work.acl.upsert(role, index: index)
            return try await work.acl.roles(ids: [role.id]).first ?? role
        }
        resolver?.invalidate()
        return stored
    }

    public func deleteRole(id: String) async throws -> Int64 {
        let index = try await database.transaction { work in
            guard try await work.acl.deleteRole(id: id) else { throw ControlPlaneError.notFound(kind: "ACL role", id: id) }
            return try await work.nextIndex()
        }
        resolver?.invalidate()
        return index
    }

    static func validate(policyName name: String, field: String) -> [FieldError] {
        let allowed = name.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2D }
        guard !name.isEmpty, name.utf8.count <= 128, allowed else {
            return [FieldError(field, "'\(name.prefix(140))' is not 1 to 128 letters, digits and dashes")]
        }
        return []
    }

    /// A fresh secret: 128 bits from the system's secure random source, written as a UUID.
    static func newSecret() -> String {
        var generator = SystemRandomNumberGenerator()
        var bytes = (0..<16).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        bytes[6] = (bytes[6] & 0x0F) | 0x40
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        let hex = bytes.map { String($0, radix: 16).leftPadded(to: 2) }.joined()
        let characters = Array(hex)
        return [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { String(characters[$0]) }.joined(separator: "-")
    }

    /// The SHA-256 of `secret`: what is stored, and what a secret is looked up by.
    public static func hash(_ secret: String) -> Data { Data(SHA256.hash(data: Data(secret.utf8))) }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}

/// Finds what a request's secret may do, with the answers kept for a while (Nomad's
/// `token_ttl`, 30 s by default), so that a busy gateway asks PostgreSQL once per token per
/// period, not once per request. Changes made through this process's ``ACLService`` clear the
/// cache at once; another gateway replica sees a change within the period.
///
/// Entries are keyed by the secret's hash, so the cache holds no secret; it holds at most
/// ``maximumEntries`` and is emptied when full.
public final class TokenResolver: Sendable {
    /// What a request's token turned out to be.
    public enum Resolution: Sendable, Equatable {
        case granted(ACL, ACLToken)
        /// The request carried no token.
        case missing
        /// No token has that secret.
        case unknown
        case expired(ACLToken)
    }

    private struct Entry {
        var resolution: Resolution
        var cachedAt: ContinuousClock.Instant
    }

    let database: Database
    let lifetime: Duration
    let maximumEntries: Int
    private let clock = ContinuousClock()
    private let entries = Mutex<[Data: Entry]>([:])

    public init(database: Database, lifetime: Duration = .seconds(30), maximumEntries: Int = 10_000) {
        self.database = database
        self.lifetime = lifetime
        self.maximumEntries = maximumEntries
    }

    /// - Parameter secret: the request's token, nil when it carried none.
    public func resolve(secret: String?, now: Date = Date()) async throws -> Resolution {
        guard let secret, !secret.isEmpty else { return .missing }
        guard secret.utf8.count <= 256 else { return .unknown }
        let key = ACLService.hash(secret)
        let moment = clock.now
        if let cached = entries.withLock({ $0[key] }), cached.cachedAt.duration(to: moment) < lifetime {
            return Self.checkExpiry(cached.resolution, now: now)
        }
        let resolution = try await lookUp(key)
        entries.withLock { entries in
            if entries.count >= maximumEntries { entries.removeAll(keepingCapacity: true) }
            entries[key] = Entry(resolution: resolution, cachedAt: moment)
        }
        return Self.checkExpiry(resolution, now: now)
    }

    /// Forgets every answer, after a change to tokens or policies.
    public func invalidate() { entries.withLock { $0.removeAll() } }

    private func lookUp(_ key: Data) async throws -> Resolution {
        guard let token = try await database.acl.token(secretHash: key) else { return .unknown }
        if token.type == .management { return .granted(.management, token) }
        // Its own policies and its roles'.
        let roles = try await database.acl.roles(ids: token.roles.compactMap(\.id))
        let names = Array(Set(token.policies + roles.flatMap { $0.policies.map(\.name) }))
        let rules = try await database.acl.policies(named: names).compactMap { policy in
            // Rules are checked when written; one that no longer reads grants nothing.
            try? PolicyRules(parsing: policy.rules)
        }
        return .granted(ACL(policies: rules), token)
    }

    private static func checkExpiry(_ resolution: Resolution, now: Date) -> Resolution {
        if case .granted(_, let token) = resolution, let expiry = token.expirationTime, expiry <= now { return .expired(token) }
        return resolution
    }
}
