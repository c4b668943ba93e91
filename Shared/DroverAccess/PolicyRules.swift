public import DroverModel

/// What a namespace rule grants: Nomad's namespace capabilities.
public enum Capability: String, CaseIterable, Codable, Sendable, Hashable {
    case deny
    case listJobs = "list-jobs"
    case parseJob = "parse-job"
    case readJob = "read-job"
    case submitJob = "submit-job"
    case dispatchJob = "dispatch-job"
    case readLogs = "read-logs"
    case readFS = "read-fs"
    case allocExec = "alloc-exec"
    case allocLifecycle = "alloc-lifecycle"
    case allocNodeExec = "alloc-node-exec"
    case scaleJob = "scale-job"
    case readJobScaling = "read-job-scaling"
    case listScalingPolicies = "list-scaling-policies"
    case readScalingPolicy = "read-scaling-policy"
    case submitRecommendation = "submit-recommendation"

    /// What a namespace's `policy = "read"` grants, as in Nomad.
    public static let read: Set<Capability> = [
        .listJobs, .parseJob, .readJob, .readJobScaling, .listScalingPolicies, .readScalingPolicy,
    ]
    /// What `policy = "write"` grants: everything but `deny`.
    public static let write: Set<Capability> = read.union([
        .submitJob, .dispatchJob, .readLogs, .readFS, .allocExec, .allocLifecycle, .scaleJob, .submitRecommendation,
    ])
    /// What `policy = "scale"` grants.
    public static let scale: Set<Capability> = [.listScalingPolicies, .readScalingPolicy, .readJobScaling, .scaleJob]
}

/// The access a `node`, `agent` or `operator` rule grants. Ordered: a `deny` anywhere wins, then
/// the broader grant.
public enum AccessLevel: String, Codable, Sendable, Comparable, CaseIterable {
    case read, write, deny

    public static func < (lhs: AccessLevel, rhs: AccessLevel) -> Bool { lhs.rank < rhs.rank }
    private var rank: Int {
        switch self {
        case .read: 0
        case .write: 1
        case .deny: 2
        }
    }

    /// Whether holding `self` satisfies a need for `needed`.
    public func grants(_ needed: AccessLevel) -> Bool {
        switch (self, needed) {
        case (.deny, _), (_, .deny): false
        case (.write, _): true
        case (.read, .read): true
        case (.read, .write): false
        }
    }

    /// Two policies' grants combined: `deny` wins, then `write`.
    static func combined(_ a: AccessLevel?, _ b: AccessLevel?) -> AccessLevel? {
        switch (a, b) {
        case (nil, let other), (let other, nil): other
        case (let a?, let b?): max(a, b)
        }
    }
}

/// A policy's rules, in Nomad's vocabulary: namespace rules (a `policy` and `capabilities`), and
/// `node`, `agent` and `operator` rules. Written as Nomad writes them, in HCL or in HCL's JSON form:
///
/// ```
/// namespace "default" {
///   policy       = "read"
///   capabilities = ["submit-job", "read-logs"]
/// }
/// node { policy = "read" }
/// ```
///
/// ```json
/// {"namespace": {"default": {"policy": "read", "capabilities": ["submit-job"]}}, "node": {"policy": "read"}}
/// ```
public struct PolicyRules: Sendable, Equatable {
    /// Namespace name or glob (`*` matches any run of characters) → what it grants.
    public var namespaces: [String: Set<Capability>] = [:]
    public var node: AccessLevel?
    public var agent: AccessLevel?
    public var `operator`: AccessLevel?
    /// Rules for what Drover does not have yet, read and kept (in the policy's text) but granting
    /// nothing until the feature exists: `host_volume "<name>" { … }`, `plugin { … }`,
    /// `quota { … }`, and `variables { path "…" { capabilities = […] } }` in a namespace block.
    public var inert: Set<String> = []

    public init(
        namespaces: [String: Set<Capability>] = [:], node: AccessLevel? = nil, agent: AccessLevel? = nil, operator: AccessLevel? = nil
    ) {
        self.namespaces = namespaces
        self.node = node
        self.agent = agent
        self.operator = `operator`
    }

    /// Reads `text`, HCL or JSON (text that starts with `{`).
    /// - Parameter field: the name to report errors under, such as `Rules`.
    /// - Throws: the fields that are wrong, each with the reason, as `[FieldError]` in
    ///   ``PolicyRulesError``.
    public init(parsing text: String, field: String = "Rules") throws(PolicyRulesError) {
        guard text.utf8.count <= JobLimits.longString else {
            throw PolicyRulesError([FieldError(field, "is longer than \(JobLimits.longString) bytes")])
        }
        let tree: RuleTree
        do {
            tree = try RuleSyntax.parse(text)
        } catch {
            throw PolicyRulesError([FieldError(field, error.description)])
        }
        self = try Self.interpret(tree, field: field)
    }

    private static func interpret(_ tree: RuleTree, field: String) throws(PolicyRulesError) -> PolicyRules {
        var rules = PolicyRules()
        var errors: [FieldError] = []
        guard case .block(let top) = tree else {
            throw PolicyRulesError([FieldError(field, "must be a set of rules, such as node { policy = \"read\" }")])
        }
        for (key, value) in top {
            let path = "\(field).\(key)"
            switch key {
            case "namespace":
                guard case .block(let namespaces) = value else {
                    errors.append(FieldError(path, "must name each namespace, as namespace \"default\" { policy = \"read\" }"))
                    continue
                }
                for (name, body) in namespaces {
                    let location = "\(path).\(name)"
                    if name.isEmpty || name.utf8.count > JobLimits.shortString {
                        errors.append(FieldError(location, "is not a namespace name or glob"))
                    }
                    if let granted = namespaceRule(body, path: location, errors: &errors) { rules.namespaces[name, default: []].formUnion(granted) }
                }
            case "host_volume":
                guard case .block(let volumes) = value else {
                    errors.append(FieldError(path, "must name each volume, as host_volume \"data\" { policy = \"read\" }"))
                    continue
                }
                for (name, body) in volumes {
                    inertRule(
                        body, path: "\(path).\(name)", policies: ["deny", "read", "write", "mount-readonly"],
                        capabilities: ["deny", "mount-readonly", "mount-readwrite"], errors: &errors)
                }
                rules.inert.insert(key)
            case "plugin", "quota":
                inertRule(
                    value, path: path, policies: key == "plugin" ? ["deny", "read", "list", "write"] : ["deny", "read", "write"], errors: &errors)
                rules.inert.insert(key)
            case "node", "agent", "operator":
                let level = levelRule(value, path: path, errors: &errors)
                switch key {
                case "node": rules.node = level
                case "agent": rules.agent = level
                default: rules.operator = level
                }
            default:
                errors.append(
                    FieldError(path, "is not a rule Drover knows; use namespace, node, agent, operator, host_volume, plugin or quota"))
            }
        }
        guard errors.isEmpty else { throw PolicyRulesError(errors.sorted { $0.field < $1.field }) }
        return rules
    }

    private static func namespaceRule(_ value: RuleTree, path: String, errors: inout [FieldError]) -> Set<Capability>? {
        guard case .block(let entries) = value else {
            errors.append(FieldError(path, "must be a block with policy and capabilities"))
            return nil
        }
        var granted: Set<Capability> = []
        for (key, value) in entries {
            switch (key, value) {
            case ("policy", .string(let policy)):
                switch policy {
                case "deny": granted.insert(.deny)
                case "read": granted.formUnion(Capability.read)
                case "write": granted.formUnion(Capability.write)
                case "scale": granted.formUnion(Capability.scale)
                default: errors.append(FieldError("\(path).policy", "'\(policy)' is not deny, read, write or scale"))
                }
            case ("capabilities", .list(let names)):
                for (index, name) in names.enumerated() {
                    if let capability = Capability(rawValue: name) {
                        granted.insert(capability)
                    } else {
                        errors.append(FieldError("\(path).capabilities[\(index)]", "'\(name)' is not a capability, such as read-job or submit-job"))
                    }
                }
            case ("variables", .block(let paths)):
                // Kept inert until Drover has variables: read, checked, granting nothing.
                for (key, rule) in paths {
                    guard key == "path", case .block(let globs) = rule else {
                        errors.append(FieldError("\(path).variables.\(key)", "must be path \"<glob>\" { capabilities = [...] }"))
                        continue
                    }
                    for (glob, body) in globs {
                        inertRule(
                            body, path: "\(path).variables.path.\(glob)", policies: [],
                            capabilities: ["write", "read", "list", "destroy", "deny"], errors: &errors)
                    }
                }
            case ("variables", _): errors.append(FieldError("\(path).variables", "must be a block of path rules"))
            case ("policy", _): errors.append(FieldError("\(path).policy", "must be a string: deny, read, write or scale"))
            case ("capabilities", _): errors.append(FieldError("\(path).capabilities", "must be a list of strings"))
            default: errors.append(FieldError("\(path).\(key)", "is not policy, capabilities or variables"))
            }
        }
        return granted
    }

    /// Checks a rule of what Drover does not have yet: a block of a `policy` among `policies`
    /// and `capabilities` among `capabilities`.
    private static func inertRule(
        _ value: RuleTree, path: String, policies: Set<String>, capabilities allowed: Set<String> = [], errors: inout [FieldError]
    ) {
        guard case .block(let entries) = value else {
            errors.append(FieldError(path, "must be a block, as { policy = \"read\" }"))
            return
        }
        for (key, value) in entries {
            switch (key, value) {
            case ("policy", .string(let policy)) where policies.contains(policy): continue
            case ("policy", _) where !policies.isEmpty:
                errors.append(FieldError("\(path).policy", "must be one of \(policies.sorted().joined(separator: ", "))"))
            case ("capabilities", .list(let names)) where !allowed.isEmpty:
                for (index, name) in names.enumerated() where !allowed.contains(name) {
                    errors.append(FieldError("\(path).capabilities[\(index)]", "must be one of \(allowed.sorted().joined(separator: ", "))"))
                }
            default: errors.append(FieldError("\(path).\(key)", "is not \(policies.isEmpty ? "" : "policy or ")capabilities"))
            }
        }
    }

    private static func levelRule(_ value: RuleTree, path: String, errors: inout [FieldError]) -> AccessLevel? {
        guard case .block(let entries) = value else {
            errors.append(FieldError(path, "must be a block, as { policy = \"read\" }"))
            return nil
        }
        var level: AccessLevel?
        for (key, value) in entries {
            guard key == "policy" else {
                errors.append(FieldError("\(path).\(key)", "is not policy"))
                continue
            }
            guard case .string(let text) = value, let parsed = AccessLevel(rawValue: text) else {
                errors.append(FieldError("\(path).policy", "must be deny, read or write"))
                continue
            }
            level = parsed
        }
        if level == nil, !entries.contains(where: { $0.key == "policy" }) { errors.append(FieldError("\(path).policy", "is required")) }
        return level
    }
}

/// Why policy rules were refused: every field at fault.
public struct PolicyRulesError: Error, Sendable, Equatable {
    public var fields: [FieldError]
    public init(_ fields: [FieldError]) { self.fields = fields }
}
