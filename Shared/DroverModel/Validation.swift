public import Foundation

/// One reason an input was refused: the field, as a path such as `Job.TaskGroups[0].Count`, and why.
public struct FieldError: Codable, Sendable, Equatable, CustomStringConvertible {
    /// The field, as a path such as `Job.TaskGroups[0].Count`.
    public var field: String
    /// Why it was refused.
    public var reason: String

    /// `field` was refused for `reason`.
    public init(_ field: String, _ reason: String) {
        self.field = field
        self.reason = reason
    }

    enum CodingKeys: String, CodingKey {
        case field = "Field"
        case reason = "Reason"
    }

    public var description: String { "\(field): \(reason)" }

    /// The field and reason of a JSON decoding error, with the field path rooted at `root`.
    public init(_ error: DecodingError, root: String) {
        func path(_ keys: [any CodingKey]) -> String {
            keys.reduce(root) { path, key in
                if let index = key.intValue { return "\(path)[\(index)]" }
                return path.isEmpty ? key.stringValue : "\(path).\(key.stringValue)"
            }
        }
        switch error {
        case .typeMismatch(let type, let context):
            self.init(path(context.codingPath), "expected \(Self.describe(type))")
        case .valueNotFound(let type, let context):
            self.init(path(context.codingPath), "expected \(Self.describe(type)), found null")
        case .keyNotFound(let key, let context):
            self.init(path(context.codingPath + [key]), "is required")
        case .dataCorrupted(let context):
            let reason = context.debugDescription
            self.init(
                path(context.codingPath),
                context.codingPath.isEmpty ? "the body is not valid JSON (\(reason))" : reason)
        @unknown default:
            self.init(root, "\(error)")
        }
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Int64.Type: "an integer"
        case is Bool.Type: "true or false"
        case is Double.Type: "a number"
        default: String(describing: type).hasPrefix("Array") ? "an array" : "an object"
        }
    }
}

/// Refused input: every field that is wrong, each with its reason.
public struct ValidationFailure: Error, Sendable, CustomStringConvertible {
    /// Every field that is wrong.
    public var errors: [FieldError]
    /// A refusal for `errors`.
    public init(_ errors: [FieldError]) { self.errors = errors }
    public var description: String { errors.map(\.description).joined(separator: "; ") }
}

/// The most a job may hold, so that no sum overflows, every value fits its column and no job
/// costs the control plane more than a bounded amount of work. The OpenAPI document lists them.
public enum JobLimits {
    /// Task groups a job may have.
    public static let taskGroups = 100
    /// Tasks a group may have.
    public static let tasksPerGroup = 100
    /// A group's `Count`.
    public static let count = 10_000
    /// Constraints, affinities or spreads at one level (job, group, task).
    public static let rules = 100
    /// `Env` and `Meta` entries at one level.
    public static let entries = 1_000
    /// `Datacenters` and `Config.args` entries.
    public static let listEntries = 1_000
    /// Ids, names, variable and meta keys, constraint targets and the like, in UTF-8 bytes.
    public static let shortString = 1_024
    /// Values of `Env`, `Meta` and `Config.args`, and `Config.command`, in UTF-8 bytes.
    public static let longString = 65_536
    /// `KillTimeout`, in nanoseconds: one hour.
    public static let killTimeout: Int64 = 3_600_000_000_000
    /// `RestartPolicy` and `ReschedulePolicy` `Interval` and `Delay`, in nanoseconds: one year.
    public static let policyDuration: Int64 = 31_536_000_000_000_000
    /// `RestartPolicy` and `ReschedulePolicy` `Attempts`.
    public static let attempts = 10_000
    /// `LogConfig.MaxFiles`.
    public static let logFiles = 1_000
    /// `LogConfig.MaxFileSizeMB`.
    public static let logFileSizeMB = 10_000
}

extension Job {
    /// The drivers whose `Config` Drover understands; a job may name others (they then place
    /// only on nodes that report them).
    public static let commandDrivers: Set<String> = ["raw_exec", "exec"]

    /// Every problem with this job as a client sent it, each naming its field; empty when valid.
    public func validate() -> [FieldError] {
        var errors: [FieldError] = []
        func check(_ condition: Bool, _ field: String, _ reason: @autoclosure () -> String) {
            if !condition { errors.append(FieldError(field, reason())) }
        }
        func checkLength(_ text: String?, _ field: String, most: Int = JobLimits.shortString) {
            guard let text else { return }
            check(text.utf8.count <= most, field, "must be at most \(most) bytes, got \(text.utf8.count)")
        }
        func checkCount(_ count: Int, _ field: String, most: Int) {
            check(count <= most, field, "may hold at most \(most) entries, got \(count)")
        }
        func checkEntries(_ entries: [String: String]?, _ field: String) {
            guard let entries else { return }
            checkCount(entries.count, field, most: JobLimits.entries)
            for (key, value) in entries.sorted(by: { $0.key < $1.key }) {
                checkLength(key, "\(field).\(key.prefix(64))", most: JobLimits.shortString)
                checkLength(value, "\(field).\(key.prefix(64))", most: JobLimits.longString)
            }
        }
        func checkRules(_ constraints: [Constraint]?, _ affinities: [Affinity]?, _ spreads: [Spread]?, at path: String) {
            checkCount(constraints?.count ?? 0, "\(path).Constraints", most: JobLimits.rules)
            checkCount(affinities?.count ?? 0, "\(path).Affinities", most: JobLimits.rules)
            checkCount(spreads?.count ?? 0, "\(path).Spreads", most: JobLimits.rules)
            for (index, rule) in (constraints ?? []).enumerated() {
                checkLength(rule.lTarget, "\(path).Constraints[\(index)].LTarget")
                checkLength(rule.rTarget, "\(path).Constraints[\(index)].RTarget")
            }
            for (index, rule) in (affinities ?? []).enumerated() {
                checkLength(rule.lTarget, "\(path).Affinities[\(index)].LTarget")
                checkLength(rule.rTarget, "\(path).Affinities[\(index)].RTarget")
            }
            for (index, spread) in (spreads ?? []).enumerated() {
                checkLength(spread.attribute, "\(path).Spreads[\(index)].Attribute")
                checkCount(spread.spreadTarget?.count ?? 0, "\(path).Spreads[\(index)].SpreadTarget", most: JobLimits.rules)
            }
        }
        func checkPolicy(attempts: Int?, interval: Int64?, delay: Int64?, at path: String) {
            if let attempts { check((0...JobLimits.attempts).contains(attempts), "\(path).Attempts", "must be between 0 and \(JobLimits.attempts)") }
            for (name, value) in [("Interval", interval), ("Delay", delay)] {
                guard let value else { continue }
                check(
                    (0...JobLimits.policyDuration).contains(value), "\(path).\(name)",
                    "must be between 0 and \(JobLimits.policyDuration) nanoseconds (a year), got \(value)")
            }
        }
        check(!id.isEmpty, "Job.ID", "is required")
        if let periodic, periodic.enabled {
            check(periodic.specType == "cron", "Job.Periodic.SpecType", "must be cron")
            check(!periodic.spec.isEmpty && periodic.spec.utf8.count <= 256, "Job.Periodic.Spec", "must be a cron expression of 1-256 bytes")
            check(periodic.timeZone.utf8.count <= 64, "Job.Periodic.TimeZone", "must be an IANA time zone")
            check(jobType == .batch, "Job.Type", "a periodic job must be a batch job")
            check(ScheduledJob.isName(id), "Job.ID", "a periodic job's id must be 1-100 letters, digits, '_' or '-'")
        }
        check(id.utf8.count <= 128, "Job.ID", "must be at most 128 bytes")
        check(
            !id.contains { $0.isWhitespace || $0.isNewline || $0 == "/" || $0 == "?" || $0 == "#" }, "Job.ID",
            "must not contain whitespace, '/', '?' or '#'")
        if let name { check(!name.isEmpty, "Job.Name", "must not be empty when given") }
        checkLength(name, "Job.Name")
        checkLength(region, "Job.Region")
        checkLength(namespace, "Job.Namespace")
        checkEntries(meta, "Job.Meta")
        checkRules(constraints, affinities, spreads, at: "Job")
        checkCount(taskGroups.count, "Job.TaskGroups", most: JobLimits.taskGroups)
        if let priority { check((1...100).contains(priority), "Job.Priority", "must be between 1 and 100, got \(priority)") }
        if let datacenters {
            check(!datacenters.isEmpty, "Job.Datacenters", "must name at least one datacenter (or \"*\")")
            checkCount(datacenters.count, "Job.Datacenters", most: JobLimits.listEntries)
            for (index, datacenter) in datacenters.prefix(JobLimits.listEntries).enumerated() {
                check(!datacenter.isEmpty, "Job.Datacenters[\(index)]", "must not be empty")
                checkLength(datacenter, "Job.Datacenters[\(index)]")
            }
        }
        errors += Self.validate(constraints ?? [], at: "Job.Constraints")
        errors += Self.validate(affinities ?? [], at: "Job.Affinities")
        errors += Self.validate(spreads ?? [], at: "Job.Spreads")
        check(!taskGroups.isEmpty, "Job.TaskGroups", "a job needs at least one task group")
        var groupNames = Set<String>()
        for (index, group) in taskGroups.prefix(JobLimits.taskGroups).enumerated() {
            let path = "Job.TaskGroups[\(index)]"
            check(!group.name.isEmpty, "\(path).Name", "is required")
            checkLength(group.name, "\(path).Name")
            checkEntries(group.meta, "\(path).Meta")
            checkRules(group.constraints, group.affinities, group.spreads, at: path)
            checkCount(group.tasks.count, "\(path).Tasks", most: JobLimits.tasksPerGroup)
            check(groupNames.insert(group.name).inserted || group.name.isEmpty, "\(path).Name", "'\(group.name)' is used by another group")
            check(!group.name.contains("."), "\(path).Name", "must not contain '.'")
            if let count = group.count {
                check((0...JobLimits.count).contains(count), "\(path).Count", "must be between 0 and \(JobLimits.count), got \(count)")
                if jobType == .system { check(count <= 1, "\(path).Count", "a system job runs one allocation per node; leave Count out or set 1") }
            }
            errors += Self.validate(group.constraints ?? [], at: "\(path).Constraints")
            errors += Self.validate(group.affinities ?? [], at: "\(path).Affinities")
            errors += Self.validate(group.spreads ?? [], at: "\(path).Spreads")
            if let policy = group.restartPolicy {
                checkPolicy(attempts: policy.attempts, interval: policy.interval, delay: policy.delay, at: "\(path).RestartPolicy")
                if let mode = policy.mode {
                    check(
                        mode == "fail" || mode == "delay", "\(path).RestartPolicy.Mode", "must be \"fail\" or \"delay\", got \"\(mode.prefix(64))\"")
                }
            }
            if let stopAfter = group.stopAfterClientDisconnect {
                check(
                    (0...JobLimits.policyDuration).contains(stopAfter), "\(path).StopAfterClientDisconnect",
                    "must be between 0 and \(JobLimits.policyDuration) nanoseconds (a year), got \(stopAfter)")
            }
            if let policy = group.reschedulePolicy {
                checkPolicy(attempts: policy.attempts, interval: policy.interval, delay: policy.delay, at: "\(path).ReschedulePolicy")
            }
            check(!group.tasks.isEmpty, "\(path).Tasks", "a task group needs at least one task")
            var taskNames = Set<String>()
            // What an allocation of the group holds is its tasks' resources together, stored in a
            // column of 32 bits: a total past it is refused where it is crossed, never summed into
            // an overflow.
            var totals = Resources(cpu: 0, memoryMB: 0, diskMB: 0)
            for (taskIndex, task) in group.tasks.prefix(JobLimits.tasksPerGroup).enumerated() {
                let taskPath = "\(path).Tasks[\(taskIndex)]"
                checkLength(task.name, "\(taskPath).Name")
                checkLength(task.driver, "\(taskPath).Driver")
                checkLength(task.user, "\(taskPath).User")
                checkLength(task.config?.command, "\(taskPath).Config.command", most: JobLimits.longString)
                if let args = task.config?.args {
                    checkCount(args.count, "\(taskPath).Config.args", most: JobLimits.listEntries)
                    for (argIndex, arg) in args.prefix(JobLimits.listEntries).enumerated() {
                        checkLength(arg, "\(taskPath).Config.args[\(argIndex)]", most: JobLimits.longString)
                    }
                }
                checkEntries(task.env, "\(taskPath).Env")
                if task.driver == "exec" {
                    for key in (task.env ?? [:]).keys.sorted() where LoaderVariables.isUnsafe(key) {
                        errors.append(
                            FieldError(
                                "\(taskPath).Env.\(key.prefix(100))",
                                "the exec driver starts tasks as root before it drops to their user, so it runs them without the loader's variables; use raw_exec, or set it in the command"
                            ))
                    }
                }
                checkEntries(task.meta, "\(taskPath).Meta")
                checkRules(task.constraints, nil, nil, at: taskPath)
                let resources = task.taskResources
                for (field, amount) in [("CPU", \Resources.cpu), ("MemoryMB", \Resources.memoryMB), ("DiskMB", \Resources.diskMB)] {
                    let (sum, overflow) = totals[keyPath: amount].addingReportingOverflow(max(0, resources[keyPath: amount]))
                    guard overflow || sum > Resources.maximumTotal else {
                        totals[keyPath: amount] = sum
                        continue
                    }
                    errors.append(
                        FieldError(
                            "\(taskPath).Resources.\(field)",
                            "the group's tasks together may ask for at most \(Resources.maximumTotal), got \(resources[keyPath: amount]) here"))
                    totals[keyPath: amount] = Resources.maximumTotal
                }
                check(!task.name.isEmpty, "\(taskPath).Name", "is required")
                check(taskNames.insert(task.name).inserted || task.name.isEmpty, "\(taskPath).Name", "'\(task.name)' is used by another task")
                check(
                    !task.name.contains { $0 == "/" || $0 == "." || $0.isWhitespace }, "\(taskPath).Name", "must not contain '/', '.' or whitespace")
                check(!task.driver.isEmpty, "\(taskPath).Driver", "is required, e.g. \"raw_exec\"")
                if Self.commandDrivers.contains(task.driver) {
                    check(!(task.config?.command ?? "").isEmpty, "\(taskPath).Config.command", "the \(task.driver) driver needs a command to run")
                }
                if let resources = task.resources {
                    if resources.cpu != -1 { check(resources.cpu >= 1, "\(taskPath).Resources.CPU", "must be at least 1 MHz, got \(resources.cpu)") }
                    if resources.memoryMB != -1 {
                        check(resources.memoryMB >= 10, "\(taskPath).Resources.MemoryMB", "must be at least 10 MB, got \(resources.memoryMB)")
                    }
                    if resources.diskMB != -1 {
                        check(resources.diskMB >= 0, "\(taskPath).Resources.DiskMB", "must be 0 or more, got \(resources.diskMB)")
                    }
                }
                if let logConfig = task.logConfig {
                    if let files = logConfig.maxFiles {
                        check(
                            (1...JobLimits.logFiles).contains(files), "\(taskPath).LogConfig.MaxFiles",
                            "must be between 1 and \(JobLimits.logFiles), got \(files)")
                    }
                    if let size = logConfig.maxFileSizeMB {
                        check(
                            (1...JobLimits.logFileSizeMB).contains(size), "\(taskPath).LogConfig.MaxFileSizeMB",
                            "must be between 1 and \(JobLimits.logFileSizeMB), got \(size)")
                    }
                }
                if let timeout = task.killTimeout {
                    check(
                        (0...JobLimits.killTimeout).contains(timeout), "\(taskPath).KillTimeout",
                        "must be between 0 and \(JobLimits.killTimeout) nanoseconds (an hour), got \(timeout)")
                }
                for key in (task.env ?? [:]).keys where key.isEmpty || key.contains("=") {
                    errors.append(FieldError("\(taskPath).Env", "'\(key)' is not a valid variable name"))
                }
                errors += Self.validate(task.constraints ?? [], at: "\(taskPath).Constraints")
            }
        }
        return errors
    }

    static func validate(_ constraints: [Constraint], at path: String) -> [FieldError] {
        var errors: [FieldError] = []
        for (index, constraint) in constraints.enumerated() {
            let field = "\(path)[\(index)]"
            guard Constraint.operands.contains(constraint.operand) else {
                errors.append(
                    FieldError("\(field).Operand", "'\(constraint.operand)' is not one of \(Constraint.operands.sorted().joined(separator: ", "))"))
                continue
            }
            switch constraint.operand {
            case "distinct_hosts":
                break
            case "is_set", "is_not_set", "distinct_property":
                if constraint.lTarget.isEmpty { errors.append(FieldError("\(field).LTarget", "is required for \(constraint.operand)")) }
            default:
                if constraint.lTarget.isEmpty { errors.append(FieldError("\(field).LTarget", "is required")) }
                if constraint.rTarget.isEmpty { errors.append(FieldError("\(field).RTarget", "is required for \(constraint.operand)")) }
            }
            if constraint.operand == "regexp", (try? NSRegularExpression(pattern: constraint.rTarget)) == nil {
                errors.append(FieldError("\(field).RTarget", "'\(constraint.rTarget)' is not a valid regular expression"))
            }
            if constraint.operand == "version" || constraint.operand == "semver", VersionRequirement(constraint.rTarget) == nil {
                errors.append(FieldError("\(field).RTarget", "'\(constraint.rTarget)' is not a version requirement such as \">= 1.2, < 2.0\""))
            }
        }
        return errors
    }

    static func validate(_ affinities: [Affinity], at path: String) -> [FieldError] {
        var errors = validate(affinities.map { Constraint($0.lTarget, $0.operand, $0.rTarget) }, at: path)
        for (index, affinity) in affinities.enumerated() where affinity.weight == 0 || !(-100...100).contains(affinity.weight) {
            errors.append(FieldError("\(path)[\(index)].Weight", "must be between -100 and 100 and not 0, got \(affinity.weight)"))
        }
        return errors
    }

    static func validate(_ spreads: [Spread], at path: String) -> [FieldError] {
        var errors: [FieldError] = []
        for (index, spread) in spreads.enumerated() {
            let field = "\(path)[\(index)]"
            if spread.attribute.isEmpty { errors.append(FieldError("\(field).Attribute", "is required, e.g. ${node.datacenter}")) }
            if !(0...100).contains(spread.weight) { errors.append(FieldError("\(field).Weight", "must be between 0 and 100, got \(spread.weight)")) }
            let targets = spread.spreadTarget ?? []
            for (targetIndex, target) in targets.enumerated() where !(0...100).contains(target.percent) {
                errors.append(FieldError("\(field).SpreadTarget[\(targetIndex)].Percent", "must be between 0 and 100"))
            }
            let total = targets.reduce(0) { $0 + $1.percent }
            if total > 100 { errors.append(FieldError("\(field).SpreadTarget", "percentages add up to \(total), more than 100")) }
        }
        return errors
    }
}

/// A version requirement such as `>= 1.2.0, < 2.0`: comma-separated comparisons, all of which
/// must hold. Versions compare numerically part by part (`1.10 > 1.9`); a pre-release or build
/// suffix after `-` or `+` is ignored.
public struct VersionRequirement: Sendable, Equatable {
    /// One comparison: `=`, `!=`, `<`, `<=`, `>`, `>=` or `~>` with a version.
    public struct Clause: Sendable, Equatable {
        /// The comparison.
        public var comparison: String
        /// The version's numeric parts.
        public var version: [Int]
    }

    /// Every comparison; all must hold.
    public var clauses: [Clause]

    /// The requirement `text`, or nil when it is not one.
    public init?(_ text: String) {
        var clauses: [Clause] = []
        for part in text.split(separator: ",") {
            let trimmed = part.trimmingCharacters(in: .whitespaces)
            let comparison = ["~>", ">=", "<=", "!=", ">", "<", "="].first { trimmed.hasPrefix($0) } ?? "="
            let rest = trimmed.dropFirst(trimmed.hasPrefix(comparison) ? comparison.count : 0).trimmingCharacters(in: .whitespaces)
            guard let version = Self.parse(rest) else { return nil }
            clauses.append(Clause(comparison: comparison, version: version))
        }
        guard !clauses.isEmpty else { return nil }
        self.clauses = clauses
    }

    /// `1.2.3-beta+7` → `[1, 2, 3]`; `nil` when it is not a version.
    public static func parse(_ text: String) -> [Int]? {
        let core = text.split(whereSeparator: { $0 == "-" || $0 == "+" }).first.map(String.init) ?? ""
        let parts = core.hasPrefix("v") ? core.dropFirst().split(separator: ".") : core.split(separator: ".")
        let numbers = parts.compactMap { Int($0) }
        guard !numbers.isEmpty, numbers.count == parts.count else { return nil }
        return numbers
    }

    static func compare(_ lhs: [Int], _ rhs: [Int]) -> Int {
        for index in 0..<max(lhs.count, rhs.count) {
            let (left, right) = (index < lhs.count ? lhs[index] : 0, index < rhs.count ? rhs[index] : 0)
            if left != right { return left < right ? -1 : 1 }
        }
        return 0
    }

    /// Whether `version` meets every clause.
    public func isSatisfied(by version: [Int]) -> Bool {
        clauses.allSatisfy { clause in
            let order = Self.compare(version, clause.version)
            switch clause.comparison {
            case ">=": return order >= 0
            case "<=": return order <= 0
            case ">": return order > 0
            case "<": return order < 0
            case "!=": return order != 0
            case "~>":
                // Pessimistic: ~> 1.2 allows 1.x ≥ 1.2; ~> 1.2.3 allows 1.2.x ≥ 1.2.3.
                guard order >= 0 else { return false }
                let fixed = Array(clause.version.dropLast())
                return Array(version.prefix(fixed.count)) == fixed || fixed.isEmpty
            default: return order == 0
            }
        }
    }
}

/// The body of every error answer over HTTP (the gateway's and the agent's): what went wrong
/// and, for invalid input, each field and why.
public struct APIError: Codable, Sendable, Equatable {
    /// What went wrong, in words.
    public var error: String
    /// For invalid input, each field and why.
    public var fields: [FieldError]?

    /// An error answer.
    public init(error: String, fields: [FieldError]? = nil) {
        self.error = error
        self.fields = fields
    }

    enum CodingKeys: String, CodingKey {
        case error = "Error"
        case fields = "Fields"
    }
}

extension Node {
    /// Every problem with this node as its agent registered it, each naming its field; empty
    /// when valid. Resources must fit their 32-bit columns, so that no fleet total overflows.
    public func validate() -> [FieldError] {
        var errors: [FieldError] = []
        func check(_ condition: Bool, _ field: String, _ reason: @autoclosure () -> String) {
            if !condition { errors.append(FieldError(field, reason())) }
        }
        check(!id.isEmpty, "Node.ID", "is required")
        for (field, text) in [("Node.ID", id), ("Node.Name", name), ("Node.Datacenter", datacenter), ("Node.NodeClass", nodeClass)] {
            check(text.utf8.count <= JobLimits.shortString, field, "must be at most \(JobLimits.shortString) bytes, got \(text.utf8.count)")
        }
        for (field, amount) in [("CPU", resources.cpu), ("MemoryMB", resources.memoryMB), ("DiskMB", resources.diskMB)] {
            check(
                (0...Resources.maximumTotal).contains(amount), "Node.NodeResources.\(field)",
                "must be between 0 and \(Resources.maximumTotal), got \(amount)")
        }
        check(drivers.count <= JobLimits.rules, "Node.Drivers", "may name at most \(JobLimits.rules) drivers, got \(drivers.count)")
        for (field, entries) in [("Node.Attributes", attributes), ("Node.Meta", meta)] {
            check(entries.count <= JobLimits.entries, field, "may hold at most \(JobLimits.entries) entries, got \(entries.count)")
            let longest = entries.lazy.map { max($0.key.utf8.count, $0.value.utf8.count) }.max() ?? 0
            check(longest <= JobLimits.shortString, field, "keys and values must be at most \(JobLimits.shortString) bytes")
        }
        if let clusterInit {
            check(clusterInit.detail.utf8.count <= 4096, "Node.ClusterInit.Detail", "must be at most 4096 bytes")
            check(clusterInit.specs.count <= 100, "Node.ClusterInit.Specs", "may name at most 100 specs")
            check(clusterInit.results.count <= 200, "Node.ClusterInit.Results", "may hold at most 200 results")
            let largest = clusterInit.results.lazy.map { $0.output.utf8.count + $0.script.utf8.count + $0.spec.utf8.count }.max() ?? 0
            check(largest <= 8192, "Node.ClusterInit.Results", "each result must be at most 8192 bytes")
        }
        return errors
    }
}

/// The dynamic loader's variables, and the others glibc drops for set-uid programs: they make a
/// privileged process load or read what the caller chose. The `exec` driver, which starts as
/// root, runs its tasks without them.
public enum LoaderVariables {
    static let unsafe: Set<String> = [
        "GCONV_PATH", "GETCONF_DIR", "HOSTALIASES", "LOCALDOMAIN", "LOCPATH", "MALLOC_TRACE", "NIS_PATH", "NLSPATH", "RESOLV_HOST_CONF",
        "RES_OPTIONS", "TMPDIR", "TZDIR",
    ]

    /// Whether `key` may not reach a process that starts as root.
    public static func isUnsafe(_ key: String) -> Bool { key.hasPrefix("LD_") || unsafe.contains(key) }
}
