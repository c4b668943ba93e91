public import DroverModel
import Foundation

/// Resolves a constraint target against a node: `${attr.kernel.name}`, `${meta.rack}`,
/// `${node.class}`, `${node.datacenter}`, `${node.unique.name}`, `${node.unique.id}`; anything
/// not wrapped in `${…}` is a literal. - Returns: `nil` when the node has no such value.
public func resolveTarget(_ target: String, on node: Node) -> String? {
    Target(target).resolve(on: node)
}

/// A constraint target parsed once, so that resolving it for many nodes is one lookup.
public enum Target: Sendable, Equatable {
    case literal(String)
    case attribute(String)
    case meta(String)
    case nodeClass, datacenter, uniqueName, uniqueID
    /// An interpolation Drover does not know: never set.
    case unknown

    public init(_ target: String) {
        guard target.hasPrefix("${"), target.hasSuffix("}") else {
            self = .literal(target)
            return
        }
        let key = target.dropFirst(2).dropLast()
        if key.hasPrefix("attr.") {
            self = .attribute(String(key.dropFirst(5)))
        } else if key.hasPrefix("meta.") {
            self = .meta(String(key.dropFirst(5)))
        } else {
            switch key {
            case "node.class": self = .nodeClass
            case "node.datacenter": self = .datacenter
            case "node.unique.name": self = .uniqueName
            case "node.unique.id": self = .uniqueID
            default: self = .unknown
            }
        }
    }

    public func resolve(on node: Node) -> String? {
        switch self {
        case .literal(let value): value
        case .attribute(let key): node.attributes[key]
        case .meta(let key): node.meta[key]
        case .nodeClass: node.nodeClass
        case .datacenter: node.datacenter
        case .uniqueName: node.name
        case .uniqueID: node.id
        case .unknown: nil
        }
    }
}

/// One constraint, prepared once (regular expressions and version requirements compiled) and
/// checked against many nodes with Nomad's semantics.
public struct ConstraintMatcher: Sendable {
    public let constraint: Constraint
    private let left: Target
    private let right: Target
    private let regex: NSRegularExpression?
    private let requirement: VersionRequirement?

    public init(_ constraint: Constraint) {
        self.constraint = constraint
        self.left = Target(constraint.lTarget)
        self.right = Target(constraint.rTarget)
        self.regex = constraint.operand == "regexp" ? try? NSRegularExpression(pattern: constraint.rTarget) : nil
        self.requirement =
            constraint.operand == "version" || constraint.operand == "semver" ? VersionRequirement(constraint.rTarget) : nil
    }

    /// Whether the node's values satisfy the constraint. `distinct_hosts` and
    /// `distinct_property` depend on placements and are checked elsewhere: here they hold.
    public func matches(_ node: Node) -> Bool {
        let left = self.left.resolve(on: node)
        let right = self.right.resolve(on: node)
        switch constraint.operand {
        case "=", "==", "is":
            return left != nil && right != nil && left == right
        case "!=", "not":
            return left != right
        case "<", "<=", ">", ">=":
            guard let left, let right else { return false }
            return Self.order(constraint.operand, left, right)
        case "is_set":
            return left != nil
        case "is_not_set":
            return left == nil
        case "regexp":
            guard let left, let regex else { return false }
            return regex.firstMatch(in: left, range: NSRange(left.startIndex..., in: left)) != nil
        case "version", "semver":
            guard let left, let requirement, let version = VersionRequirement.parse(left) else { return false }
            return requirement.isSatisfied(by: version)
        case "set_contains", "set_contains_all":
            guard let left, let right else { return false }
            return Set(Self.items(right)).isSubset(of: Self.items(left))
        case "set_contains_any":
            guard let left, let right else { return false }
            return !Set(Self.items(right)).isDisjoint(with: Self.items(left))
        case "distinct_hosts", "distinct_property":
            return true
        default:
            return false
        }
    }

    /// Numbers compare as numbers, anything else as strings (as Nomad does).
    static func order(_ operand: String, _ left: String, _ right: String) -> Bool {
        let result: Int
        if let l = Double(left), let r = Double(right) {
            result = l < r ? -1 : (l > r ? 1 : 0)
        } else {
            result = left < right ? -1 : (left > right ? 1 : 0)
        }
        switch operand {
        case "<": return result < 0
        case "<=": return result <= 0
        case ">": return result > 0
        default: return result >= 0
        }
    }

    static func items(_ list: String) -> [String] {
        list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    }
}

/// A check whose answer for a node does not change while one evaluation is planned: readiness,
/// datacenter, drivers, constraints. Returns why the node is refused, or `nil`.
public protocol FeasibilityCheck: Sendable {
    func reject(_ node: Node) -> String?
}

/// The node is up, eligible and not draining.
public struct NodeReadyCheck: FeasibilityCheck {
    public init() {}
    public func reject(_ node: Node) -> String? {
        if node.status != .ready { return "node \(node.status.rawValue)" }
        if node.drain { return "node draining" }
        if node.schedulingEligibility != .eligible { return "node not eligible" }
        return nil
    }
}

/// The node is in one of the job's datacenters (`*` and globs such as `dc-*` match).
public struct DatacenterCheck: FeasibilityCheck {
    let patterns: [String]
    public init(_ patterns: [String]) { self.patterns = patterns }
    public func reject(_ node: Node) -> String? {
        if patterns == ["*"] { return nil }
        return patterns.contains { Self.glob($0, node.datacenter) } ? nil : "datacenter \(node.datacenter) not in job"
    }

    static func glob(_ pattern: String, _ value: String) -> Bool {
        guard let star = pattern.firstIndex(of: "*") else { return pattern == value }
        let prefix = pattern[..<star]
        let suffix = pattern[pattern.index(after: star)...]
        if suffix.contains("*") { return value.hasPrefix(prefix) }
        return value.count >= prefix.count + suffix.count && value.hasPrefix(prefix) && value.hasSuffix(suffix)
    }
}

/// Every task's driver is detected and healthy on the node.
public struct DriverCheck: FeasibilityCheck {
    let drivers: Set<String>
    public init(_ drivers: Set<String>) { self.drivers = drivers }
    public func reject(_ node: Node) -> String? {
        for driver in drivers {
            guard let info = node.drivers[driver], info.detected, info.healthy else { return "missing drivers" }
        }
        return nil
    }
}

/// Every constraint of the job, the group and its tasks holds. The reason is the constraint as
/// Nomad prints it, so metrics say which one filtered the node.
public struct ConstraintCheck: FeasibilityCheck {
    let matchers: [ConstraintMatcher]
    public init(_ constraints: [Constraint]) { self.matchers = constraints.map(ConstraintMatcher.init) }
    public func reject(_ node: Node) -> String? {
        for matcher in matchers where !matcher.matches(node) { return matcher.constraint.description }
        return nil
    }
}
