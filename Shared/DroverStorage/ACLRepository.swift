public import DroverModel
public import Foundation
import PostgresNIO

/// ACL policies and tokens. A token's secret is never stored: only its SHA-256 (`secret_hash`),
/// which is what a request's secret is looked up by.
public struct ACLRepository: Sendable {
    let sql: SQLRunner

    init(_ sql: SQLRunner) { self.sql = sql }

    // MARK: Bootstrap

    /// Records that the cluster's ACLs were bootstrapped by the token `accessorID`, if they were
    /// not before. - Returns: whether this call did it; a second call, from any process, gets false.
    public func markBootstrapped(accessorID: String, index: Int64) async throws -> Bool {
        let rows = try await sql.query(
            """
            INSERT INTO drover_acl_bootstrap (accessor_id, index) VALUES (\(accessorID), \(index))
            ON CONFLICT DO NOTHING RETURNING index
            """)
        for try await _ in rows.decode(Int64.self) { return true }
        return false
    }

    // MARK: Policies

    public func upsert(_ policy: ACLPolicy, index: Int64) async throws {
        try await sql.query(
            """
            INSERT INTO drover_acl_policies (name, description, rules, create_index, modify_index)
            VALUES (\(policy.name), \(policy.description), \(policy.rules), \(index), \(index))
            ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, rules = EXCLUDED.rules,
                modify_index = EXCLUDED.modify_index
            """)
    }

    public func policy(named name: String) async throws -> ACLPolicy? {
        try await policies(where: "WHERE name = $1", [name]).first
    }

    /// The policies named in `names` that exist.
    public func policies(named names: [String]) async throws -> [ACLPolicy] {
        guard !names.isEmpty else { return [] }
        return try await policies(where: "WHERE name = ANY($1)", [names])
    }

    public func policies() async throws -> [ACLPolicy] { try await policies(where: "", []) }

    private func policies(where clause: String, _ names: [any PostgresDynamicTypeEncodable & Sendable]) async throws -> [ACLPolicy] {
        var bindings = PostgresBindings()
        for name in names { try bindings.append(name) }
        let query = PostgresQuery(
            unsafeSQL: "SELECT name, description, rules, create_index, modify_index FROM drover_acl_policies \(clause) ORDER BY name",
            binds: bindings)
        var found: [ACLPolicy] = []
        for try await (name, description, rules, created, modified) in try await sql.query(query).decode(
            (String, String, String, Int64, Int64).self)
        {
            found.append(ACLPolicy(name: name, description: description, rules: rules, createIndex: created, modifyIndex: modified))
        }
        return found
    }

    /// - Returns: whether there was such a policy.
    public func deletePolicy(named name: String) async throws -> Bool {
        for try await _ in try await sql.query("DELETE FROM drover_acl_policies WHERE name = \(name) RETURNING name").decode(String.self) {
            return true
        }
        return false
    }

    // MARK: Tokens

    /// Stores `token` (its `secretID` is ignored) under the hash of its secret.
    public func insert(_ token: ACLToken, secretHash: Data) async throws {
        try await sql.query(
            """
            INSERT INTO drover_acl_tokens (accessor_id, secret_hash, name, type, policies, roles, global, create_time, expiration_time,
                create_index, modify_index)
            VALUES (\(token.accessorID), \(secretHash), \(token.name), \(token.type.rawValue), \(token.policies),
                \(token.roles.compactMap(\.id)), \(token.global), \(token.createTime), \(token.expirationTime), \(token.createIndex),
                \(token.modifyIndex))
            """)
    }

    /// Changes a token's name, policies and roles (by id). - Returns: whether there was such a token.
    public func update(accessorID: String, name: String, policies: [String], roles: [String], index: Int64) async throws -> Bool {
        for try await _ in try await sql.query(
            """
            UPDATE drover_acl_tokens SET name = \(name), policies = \(policies), roles = \(roles), modify_index = \(index)
            WHERE accessor_id = \(accessorID) RETURNING accessor_id
            """
        ).decode(String.self) {
            return true
        }
        return false
    }

    public func token(accessorID: String) async throws -> ACLToken? {
        try await tokens(where: "WHERE t.accessor_id = $1", accessorID).first
    }

    /// The token whose secret hashes to `secretHash`, expired or not.
    public func token(secretHash: Data) async throws -> ACLToken? {
        try await tokens(where: "WHERE t.secret_hash = $1", secretHash).first
    }

    public func tokens() async throws -> [ACLToken] { try await tokens(where: "", String?.none) }

    private func tokens<Value: PostgresEncodable & Sendable>(where clause: String, _ value: Value?) async throws -> [ACLToken] {
        var bindings = PostgresBindings()
        if let value { try bindings.append(value) }
        let query = PostgresQuery(
            unsafeSQL: """
                SELECT t.accessor_id, t.name, t.type, t.policies, t.global, t.create_time, t.expiration_time, t.create_index, t.modify_index,
                    coalesce((SELECT array_agg(r.id ORDER BY r.name) FROM drover_acl_roles r WHERE r.id = ANY(t.roles)), '{}'),
                    coalesce((SELECT array_agg(r.name ORDER BY r.name) FROM drover_acl_roles r WHERE r.id = ANY(t.roles)), '{}')
                FROM drover_acl_tokens t \(clause) ORDER BY t.create_index
                """, binds: bindings)
        var found: [ACLToken] = []
        for try await (accessor, name, type, policies, global, created, expires, createIndex, modifyIndex, roleIDs, roleNames)
            in try await sql
            .query(query).decode((String, String, String, [String], Bool, Date, Date?, Int64, Int64, [String], [String]).self)
        {
            var token = ACLToken(
                accessorID: accessor, name: name, type: ACLToken.Kind(rawValue: type) ?? .client, policies: policies, global: global,
                createTime: created, expirationTime: expires, createIndex: createIndex, modifyIndex: modifyIndex)
            // A role deleted since is left out: it grants nothing.
            token.roles = zip(roleIDs, roleNames).map { ACLRoleLink(id: $0, name: $1) }
            found.append(token)
        }
        return found
    }

    /// - Returns: whether there was such a token.
    public func deleteToken(accessorID: String) async throws -> Bool {
        for try await _ in try await sql.query("DELETE FROM drover_acl_tokens WHERE accessor_id = \(accessorID) RETURNING accessor_id")
            .decode(String.self)
        {
            return true
        }
        return false
    }

    // MARK: Roles

    /// Creates or replaces the role `role.id`, at `index`.
    public func upsert(_ role: ACLRole, index: Int64) async throws {
        try await sql.query(
            """
            INSERT INTO drover_acl_roles (id, name, description, policies, create_index, modify_index)
            VALUES (\(role.id), \(role.name), \(role.description), \(role.policies.map(\.name)), \(index), \(index))
            ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, description = EXCLUDED.description, policies = EXCLUDED.policies,
                modify_index = EXCLUDED.modify_index
            """)
    }

    /// Every role, by name.
    public func roles() async throws -> [ACLRole] { try await roles(where: "", [String]()) }

    /// The roles whose ids are among `ids`.
    public func roles(ids: [String]) async throws -> [ACLRole] { try await roles(where: "WHERE id = ANY($1)", ids) }

    /// The roles whose names are among `names`.
    public func roles(names: [String]) async throws -> [ACLRole] { try await roles(where: "WHERE name = ANY($1)", names) }

    private func roles(where clause: String, _ values: [String]) async throws -> [ACLRole] {
        var bindings = PostgresBindings()
        if !clause.isEmpty { try bindings.append(values) }
        let query = PostgresQuery(
            unsafeSQL: "SELECT id, name, description, policies, create_index, modify_index FROM drover_acl_roles \(clause) ORDER BY name",
            binds: bindings)
        var found: [ACLRole] = []
        for try await (id, name, description, policies, created, modified) in try await sql.query(query).decode(
            (String, String, String, [String], Int64, Int64).self)
        {
            found.append(
                ACLRole(
                    id: id, name: name, description: description, policies: policies.map(ACLRole.PolicyLink.init), createIndex: created,
                    modifyIndex: modified))
        }
        return found
    }

    /// - Returns: whether there was such a role.
    public func deleteRole(id: String) async throws -> Bool {
        for try await _ in try await sql.query("DELETE FROM drover_acl_roles WHERE id = \(id) RETURNING id").decode(String.self) { return true }
        return false
    }

    /// Removes tokens that expired before `now`. - Returns: how many.
    public func deleteExpired(before now: Date) async throws -> Int {
        var removed = 0
        for try await _ in try await sql.query(
            "DELETE FROM drover_acl_tokens WHERE expiration_time < \(now) RETURNING accessor_id"
        ).decode(String.self) {
            removed += 1
        }
        return removed
    }
}

extension Database {
    public var acl: ACLRepository { ACLRepository(SQLRunner(self)) }
}

extension UnitOfWork {
    public var acl: ACLRepository { ACLRepository(SQLRunner(self)) }
}
