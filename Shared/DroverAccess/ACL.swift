/// What a route needs of the caller's token.
public enum Requirement: Sendable, Hashable, CustomStringConvertible {
    /// Open to anyone, token or not (health, the API's own description, Nomad's status routes,
    /// the one-time bootstrap).
    case open
    /// Any valid token, whatever it may do (`/v1/acl/token/self`).
    case anyToken
    /// A management token.
    case management
    /// A capability in the request's namespace.
    case namespace(Capability)
    case node(AccessLevel)
    /// `node:write`, or the secret of the node the route is about (what a joined node holds).
    case ownNode
    case agent(AccessLevel)
    case `operator`(AccessLevel)

    /// As the OpenAPI document writes it (`x-drover-acl`): `open`, `token`, `management`,
    /// `namespace:read-job`, `node:write`, `node-self`, …
    public var description: String {
        switch self {
        case .open: "open"
        case .anyToken: "token"
        case .management: "management"
        case .namespace(let capability): "namespace:\(capability.rawValue)"
        case .node(let level): "node:\(level.rawValue)"
        case .ownNode: "node-self"
        case .agent(let level): "agent:\(level.rawValue)"
        case .operator(let level): "operator:\(level.rawValue)"
        }
    }

    /// Reads what ``description`` writes.
    public init?(_ text: String) {
        switch text {
        case "open": self = .open
        case "token": self = .anyToken
        case "management": self = .management
        case "node-self": self = .ownNode
        default:
            let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { return nil }
            switch parts[0] {
            case "namespace": guard let capability = Capability(rawValue: parts[1]) else { return nil }; self = .namespace(capability)
            case "node": guard let level = AccessLevel(rawValue: parts[1]) else { return nil }; self = .node(level)
            case "agent": guard let level = AccessLevel(rawValue: parts[1]) else { return nil }; self = .agent(level)
            case "operator": guard let level = AccessLevel(rawValue: parts[1]) else { return nil }; self = .operator(level)
            default: return nil
            }
        }
    }
}

/// What one token may do: a management token everything, a client token the union of its
/// policies' rules, in which a `deny` wins.
public struct ACL: Sendable, Equatable {
    public var isManagement: Bool
    var namespaces: [String: Set<Capability>]
    var node: AccessLevel?
    var agent: AccessLevel?
    var `operator`: AccessLevel?

    public static let management = ACL(isManagement: true, namespaces: [:])

    /// The union of `policies`, as a client token holding them has it.
    public init(policies: [PolicyRules]) {
        self.init(isManagement: false, namespaces: [:])
        for rules in policies {
            for (name, granted) in rules.namespaces { namespaces[name, default: []].formUnion(granted) }
            node = AccessLevel.combined(node, rules.node)
            agent = AccessLevel.combined(agent, rules.agent)
            self.operator = AccessLevel.combined(self.operator, rules.operator)
        }
    }

    private init(isManagement: Bool, namespaces: [String: Set<Capability>]) {
        self.isManagement = isManagement
        self.namespaces = namespaces
    }

    /// Whether this ACL meets `requirement` in namespace `namespace`.
    public func allows(_ requirement: Requirement, namespace: String = "default") -> Bool {
        if isManagement { return true }
        switch requirement {
        case .open, .anyToken: return true
        case .management: return false
        case .namespace(let capability):
            guard let granted = capabilities(in: namespace), !granted.contains(.deny) else { return false }
            return granted.contains(capability)
        case .node(let level): return node?.grants(level) ?? false
        case .ownNode: return node?.grants(.write) ?? false
        case .agent(let level): return agent?.grants(level) ?? false
        case .operator(let level): return self.operator?.grants(level) ?? false
        }
    }

    /// The capabilities granted in `namespace`: an exact rule's, else the closest glob's (the one
    /// that matches with the fewest characters left to its wildcards), as Nomad chooses.
    func capabilities(in namespace: String) -> Set<Capability>? {
        if let exact = namespaces[namespace] { return exact }
        var best: (name: String, spare: Int)?
        for name in namespaces.keys where name.contains("*") && Self.glob(name, matches: namespace) {
            let spare = namespace.count - name.filter { $0 != "*" }.count
            if best == nil || spare < best!.spare || (spare == best!.spare && name < best!.name) { best = (name, spare) }
        }
        return best.flatMap { namespaces[$0.name] }
    }

    /// Whether `pattern`, where `*` stands for any run of characters, matches all of `text`.
    static func glob(_ pattern: String, matches text: String) -> Bool {
        let pattern = Array(pattern.utf8)
        let text = Array(text.utf8)
        var p = 0
        var t = 0
        var star: Int?
        var resume = 0
        while t < text.count {
            if p < pattern.count, pattern[p] == UInt8(ascii: "*") {
                star = p
                resume = t
                p += 1
            } else if p < pattern.count, pattern[p] == text[t] {
                p += 1
                t += 1
            } else if let star {
                p = star + 1
                resume += 1
                t = resume
            } else {
                return false
            }
        }
        while p < pattern.count, pattern[p] == UInt8(ascii: "*") { p += 1 }
        return p == pattern.count
    }
}
