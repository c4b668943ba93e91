import DroverAccess
import DroverControlPlane
import DroverModel
import Hummingbird
import Synchronization

/// Who is calling, as the guard resolved it once: routes read it from their context and never
/// resolve the token again. Namespace capabilities are checked against the namespace of what a
/// route touches, which only the route knows; the guard makes sure it was checked (see
/// ``GuardedRouter``).
final class Caller: Sendable {
    enum Grant: Sendable {
        /// ACLs are off: everything.
        case everything
        /// What a token's policies allow.
        case acl(ACL)
        /// Nothing: no guard ran.
        case nothing
    }

    let grant: Grant
    private let checked = Atomic<Bool>(false)

    init(_ grant: Grant) { self.grant = grant }

    /// Whether a namespace check was made for this request.
    var madeNamespaceCheck: Bool { checked.load(ordering: .relaxed) }

    /// Whether the caller has `capability` in `namespace`.
    func allows(_ capability: Capability, in namespace: String) -> Bool {
        checked.store(true, ordering: .relaxed)
        switch grant {
        case .everything: return true
        case .acl(let acl): return acl.allows(.namespace(capability), namespace: namespace)
        case .nothing: return false
        }
    }

    /// - Throws: ``AccessDenied`` unless the caller has `capability` in `namespace`.
    func authorize(_ capability: Capability, in namespace: String) throws {
        guard allows(capability, in: namespace) else { throw AccessDenied(capability: capability, namespace: namespace) }
    }

    /// Whether the caller holds any capability at all in `namespace` (what lists and reads of a
    /// namespace itself need, as in Nomad).
    func mayRead(namespace: String) -> Bool {
        checked.store(true, ordering: .relaxed)
        switch grant {
        case .everything: return true
        case .acl(let acl):
            return acl.isManagement || Capability.allCases.contains { $0 != .deny && acl.allows(.namespace($0), namespace: namespace) }
        case .nothing: return false
        }
    }

    /// Whether the caller may do anything in every namespace (ACLs off, or a management token):
    /// a namespace check, as ``allows(_:in:)`` is.
    func allowsEverywhere() -> Bool {
        checked.store(true, ordering: .relaxed)
        return isUnrestricted
    }

    /// Whether the caller is unrestricted: ACLs off, or a management token.
    private var isUnrestricted: Bool {
        switch grant {
        case .everything: true
        case .acl(let acl): acl.isManagement
        case .nothing: false
        }
    }
}

/// A namespace capability the caller lacks: 403 `Permission denied`, as Nomad answers.
struct AccessDenied: Error, CustomStringConvertible {
    var capability: Capability
    var namespace: String
    var description: String { "Permission denied: \(capability.rawValue) in namespace \(namespace)" }
}

/// A gateway route's context: Hummingbird's basic one, and the caller the guard resolved.
struct GatewayRequestContext: ChildRequestContext {
    var coreContext: CoreRequestContextStorage
    /// Set by the guard before the handler runs; until then it allows nothing.
    var caller: Caller

    init(context: BasicRequestContext) {
        coreContext = context.coreContext
        caller = Caller(.nothing)
    }
}

extension Gateway {
    /// The namespace a request names with `?namespace=`; nil when it names none.
    /// - Throws: ``ControlPlaneError/invalid(_:)`` for a name no namespace can have (`*` is
    ///   allowed where `wildcard` says so).
    static func queryNamespace(_ request: Request, wildcard: Bool = false) throws -> String? {
        guard let text = request.uri.queryParameters.get("namespace"), !text.isEmpty else { return nil }
        if wildcard, text == Namespace.wildcard { return text }
        guard Namespace.isValidName(text) else {
            throw ControlPlaneError.invalid([
                FieldError("namespace", "must be 1-128 letters, digits and hyphens\(wildcard ? ", or *" : ""), got '\(text.prefix(140))'")
            ])
        }
        return text
    }

    /// The namespace a request is about, by Nomad's precedence: `?namespace=`, then what the body
    /// names (`bodyNamespace`), then `default`.
    static func requestNamespace(_ request: Request, body bodyNamespace: String? = nil) throws -> String {
        if let query = try queryNamespace(request) { return query }
        if let bodyNamespace, !bodyNamespace.isEmpty { return bodyNamespace }
        return Namespace.defaultName
    }

    /// The namespaces a list of `request` covers, for a caller who needs `capability` in each:
    /// the one `?namespace=` names (refused without the capability), or with `*` every namespace
    /// the caller has it in. Nil: every namespace, unfiltered (an unrestricted caller's `*`).
    func listedNamespaces(_ request: Request, caller: Caller, _ capability: Capability) async throws -> [String]? {
        let named = try Self.queryNamespace(request, wildcard: true) ?? Namespace.defaultName
        guard named == Namespace.wildcard else {
            try caller.authorize(capability, in: named)
            return [named]
        }
        if caller.allowsEverywhere() { return nil }
        return try await database.namespaces.list().map(\.name).filter { caller.allows(capability, in: $0) }
    }
}
