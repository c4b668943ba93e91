import Foundation

/// A job in Nomad's JSON shape: task groups of tasks, with where and how they may run.
///
/// Fields a client leaves out are `nil` here and take Nomad's defaults when read through the
/// accessors (`type`, `priority`, …); ``canonicalized()`` writes those defaults in, which is what
/// the API stores. Fields this model does not know are ignored when decoding; the gateway refuses
/// them first, by name (``FieldShape/job``), unless they are empty. Server-owned fields
/// (`Status`, `Version`, indexes) are set by Drover and ignored on input.
public struct Job: Codable, Sendable, Equatable {
    /// The job's id, unique in its namespace.
    public var id: String
    /// A name for people; the id when absent.
    public var name: String?
    /// `service`, `batch` or `system`; `service` when absent.
    public var type: JobType?
    /// 1 … 100; higher is placed first. 50 when absent.
    public var priority: Int?
    /// The datacenters it may run in; `*` patterns allowed. Every datacenter when absent.
    public var datacenters: [String]?
    /// Rules every node of every group must meet.
    public var constraints: [Constraint]?
    /// Preferences for nodes, weighed in ranking.
    public var affinities: [Affinity]?
    /// How allocations spread over the values of node attributes.
    public var spreads: [Spread]?
    /// The groups to place: the unit of placement.
    public var taskGroups: [TaskGroup]
    /// Free-form key-value data (Drover reads `owner` for notifications).
    public var meta: [String: String]?
    /// A periodic job is not run itself: each time its spec comes round a child is (Nomad's
    /// `Periodic`).
    public var periodic: Periodic?
    /// For a periodic job's child: the periodic job.
    public var parentID: String?

    // Server-owned.
    /// The region, as Nomad has it; informational.
    public var region: String?
    /// The namespace; `default` when absent.
    public var namespace: String?
    /// Whether the job was stopped (deregistered without being purged).
    public var stop: Bool?
    /// `pending`, `running` or `dead`, derived from its allocations.
    public var status: String?
    /// Why the status is what it is, when there is more to say.
    public var statusDescription: String?
    /// Bumped on each registration that changes the job.
    public var version: Int?
    /// When it was registered, in nanoseconds since 1970.
    public var submitTime: Int64?
    /// The cluster's index when the job was first registered.
    public var createIndex: Int64?
    /// The cluster's index of the job's last change, of any kind.
    public var modifyIndex: Int64?
    /// The cluster's index of the last change of its specification.
    public var jobModifyIndex: Int64?

    /// A job `id` of `type` with `taskGroups`, every other field at its default.
    public init(id: String, type: JobType = .service, taskGroups: [TaskGroup]) {
        self.id = id
        self.type = type
        self.taskGroups = taskGroups
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case id = "ID"
        case name = "Name"
        case type = "Type"
        case priority = "Priority"
        case datacenters = "Datacenters"
        case constraints = "Constraints"
        case affinities = "Affinities"
        case spreads = "Spreads"
        case taskGroups = "TaskGroups"
        case meta = "Meta"
        case periodic = "Periodic"
        case parentID = "ParentID"
        case region = "Region"
        case namespace = "Namespace"
        case stop = "Stop"
        case status = "Status"
        case statusDescription = "StatusDescription"
        case version = "Version"
        case submitTime = "SubmitTime"
        case createIndex = "CreateIndex"
        case modifyIndex = "ModifyIndex"
        case jobModifyIndex = "JobModifyIndex"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decodeIfPresent(String.self, forKey: .id) ?? ""
        name = try container.decodeIfPresent(String.self, forKey: .name)
        type = try container.decodeIfPresent(JobType.self, forKey: .type)
        priority = try container.decodeIfPresent(Int.self, forKey: .priority)
        datacenters = try container.decodeIfPresent([String].self, forKey: .datacenters)
        constraints = try container.decodeIfPresent([Constraint].self, forKey: .constraints)
        affinities = try container.decodeIfPresent([Affinity].self, forKey: .affinities)
        spreads = try container.decodeIfPresent([Spread].self, forKey: .spreads)
        taskGroups = try container.decodeIfPresent([TaskGroup].self, forKey: .taskGroups) ?? []
        meta = try container.decodeIfPresent([String: String].self, forKey: .meta)
        periodic = try container.decodeIfPresent(Periodic.self, forKey: .periodic)
        parentID = try container.decodeIfPresent(String.self, forKey: .parentID)
        region = try container.decodeIfPresent(String.self, forKey: .region)
        namespace = try container.decodeIfPresent(String.self, forKey: .namespace)
        stop = try container.decodeIfPresent(Bool.self, forKey: .stop)
        status = try container.decodeIfPresent(String.self, forKey: .status)
        statusDescription = try container.decodeIfPresent(String.self, forKey: .statusDescription)
        version = try container.decodeIfPresent(Int.self, forKey: .version)
        submitTime = try container.decodeIfPresent(Int64.self, forKey: .submitTime)
        createIndex = try container.decodeIfPresent(Int64.self, forKey: .createIndex)
        modifyIndex = try container.decodeIfPresent(Int64.self, forKey: .modifyIndex)
        jobModifyIndex = try container.decodeIfPresent(Int64.self, forKey: .jobModifyIndex)
    }

    /// The type, `service` when absent.
    public var jobType: JobType { type ?? .service }
    /// The priority, 50 when absent.
    public var jobPriority: Int { priority ?? 50 }
    /// The name, the id when absent.
    public var jobName: String { name ?? id }
    /// The datacenters, every one (`*`) when absent.
    public var jobDatacenters: [String] { datacenters ?? ["*"] }
    /// Whether it was stopped.
    public var isStopped: Bool { stop ?? false }
    /// A periodic job: it is never placed itself, only its children are.
    public var isPeriodicParent: Bool { periodic?.enabled == true }

    /// Nomad's job status: `dead` once stopped (or, for a batch job, once every allocation has
    /// finished and nothing waits), `running` while an allocation runs, else `pending`.
    public func derivedStatus(liveAllocation: Bool, waitingEvaluation: Bool, anyAllocation: Bool) -> String {
        if isStopped { return "dead" }
        if liveAllocation || isPeriodicParent { return "running" }
        if !waitingEvaluation && anyAllocation && jobType == .batch { return "dead" }
        return "pending"
    }

    /// The job without the fields the server sets: what tells whether a client changed it.
    public var userFields: Job {
        var job = self
        job.stop = nil
        job.status = nil
        job.statusDescription = nil
        job.version = nil
        job.submitTime = nil
        job.createIndex = nil
        job.modifyIndex = nil
        job.jobModifyIndex = nil
        return job
    }

    /// The group called `name`, if the job has one.
    public func group(named name: String) -> TaskGroup? { taskGroups.first { $0.name == name } }

    /// The job with Nomad's defaults written into every field a client left out.
    public func canonicalized() -> Job {
        var job = self
        job.name = jobName
        job.type = jobType
        job.priority = jobPriority
        job.datacenters = jobDatacenters
        job.region = region ?? "global"
        job.namespace = namespace ?? "default"
        job.taskGroups = taskGroups.map { $0.canonicalized(for: jobType) }
        return job
    }
}

/// What kind of work a job is, as Nomad has it.
public enum JobType: String, Codable, Sendable, CaseIterable {
    /// Long-running: restarted and rescheduled until stopped.
    case service
    /// Runs to completion once.
    case batch
    /// One allocation on every eligible node.
    case system
}

/// Tasks placed together on one node, `Count` times: Nomad's task group.
public struct TaskGroup: Codable, Sendable, Equatable {
    /// The group's name, unique in its job.
    public var name: String
    /// How many allocations to run; 1 when absent.
    public var count: Int?
    /// Rules the group's nodes must meet, besides the job's.
    public var constraints: [Constraint]?
    /// Preferences for the group's nodes, besides the job's.
    public var affinities: [Affinity]?
    /// How the group's allocations spread, besides the job's.
    public var spreads: [Spread]?
    /// What the agent does when a task exits.
    public var restartPolicy: RestartPolicy?
    /// What the scheduler does when an allocation fails.
    public var reschedulePolicy: ReschedulePolicy?
    /// The tasks, run side by side in each allocation.
    public var tasks: [JobTask]
    /// Free-form key-value data.
    public var meta: [String: String]?
    /// Nanoseconds an agent that has lost contact with the control plane lets the group's
    /// allocations run before it stops them itself (Nomad's `stop_after_client_disconnect`).
    /// Unset: a batch group stops when its node would be declared down, a service group runs on.
    public var stopAfterClientDisconnect: Int64?

    /// A group `name` of `count` allocations of `tasks`.
    public init(name: String, count: Int = 1, tasks: [JobTask]) {
        self.name = name
        self.count = count
        self.tasks = tasks
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name = "Name"
        case count = "Count"
        case constraints = "Constraints"
        case affinities = "Affinities"
        case spreads = "Spreads"
        case restartPolicy = "RestartPolicy"
        case reschedulePolicy = "ReschedulePolicy"
        case tasks = "Tasks"
        case meta = "Meta"
        case stopAfterClientDisconnect = "StopAfterClientDisconnect"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        stopAfterClientDisconnect = try container.decodeIfPresent(Int64.self, forKey: .stopAfterClientDisconnect)
        name = try container.decodeIfPresent(String.self, forKey: .name) ?? ""
        count = try container.decodeIfPresent(Int.self, forKey: .count)
        constraints = try container.decodeIfPresent([Constraint].self, forKey: .constraints)
        affinities = try container.decodeIfPresent([Affinity].self, forKey: .affinities)
        spreads = try container.decodeIfPresent([Spread].self, forKey: .spreads)
        restartPolicy = try container.decodeIfPresent(RestartPolicy.self, forKey: .restartPolicy)
        reschedulePolicy = try container.decodeIfPresent(ReschedulePolicy.self, forKey: .reschedulePolicy)
        tasks = try container.decodeIfPresent([JobTask].self, forKey: .tasks) ?? []
        meta = try container.decodeIfPresent([String: String].self, forKey: .meta)
    }

    /// The count, 1 when absent.
    public var groupCount: Int { count ?? 1 }

    /// What one allocation of this group asks of a node: the sum of its tasks' resources.
    public var resources: Resources {
        tasks.reduce(Resources(cpu: 0, memoryMB: 0, diskMB: 0)) { total, task in
            let resources = task.taskResources
            return Resources(
                cpu: total.cpu + resources.cpu, memoryMB: total.memoryMB + resources.memoryMB, diskMB: total.diskMB + resources.diskMB)
        }
    }

    func canonicalized(for type: JobType) -> TaskGroup {
        var group = self
        group.count = groupCount
        group.restartPolicy = (restartPolicy ?? RestartPolicy()).canonicalized(for: type)
        group.reschedulePolicy = (reschedulePolicy ?? ReschedulePolicy()).canonicalized(for: type)
        group.tasks = tasks.map { $0.canonicalized() }
        return group
    }
}

/// How much of a task's output its node keeps on disk, as Nomad's `LogConfig` says it.
public struct LogConfig: Codable, Sendable, Equatable {
    /// How many rotated files of each stream are kept.
    public var maxFiles: Int?
    /// The size at which a stream's file is rotated, in MB.
    public var maxFileSizeMB: Int?

    /// A log configuration; absent fields take Nomad's defaults.
    public init(maxFiles: Int? = nil, maxFileSizeMB: Int? = nil) {
        self.maxFiles = maxFiles
        self.maxFileSizeMB = maxFileSizeMB
    }

    /// Bytes of each stream `config` keeps: `MaxFiles` × `MaxFileSizeMB`, Nomad's defaults
    /// (10 × 10 MB) where it says nothing, within ``JobLimits``.
    public static func keptBytes(_ config: LogConfig?) -> Int64 {
        let files = Int64(min(max(config?.maxFiles ?? 10, 1), JobLimits.logFiles))
        let megabytes = Int64(min(max(config?.maxFileSizeMB ?? 10, 1), JobLimits.logFileSizeMB))
        return files * megabytes << 20
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case maxFiles = "MaxFiles"
        case maxFileSizeMB = "MaxFileSizeMB"
    }
}

/// One process of a group: Nomad's task.
public struct JobTask: Codable, Sendable, Equatable {
    /// The task's name, unique in its group.
    public var name: String
    /// `raw_exec` (as the agent's user) or `exec` (as another user, with privileges dropped).
    public var driver: String
    /// The user an `exec` task runs as.
    public var user: String?
    /// The command and its arguments.
    public var config: TaskConfig?
    /// Environment variables of the process; loader variables (`LD_*` and the like) are refused.
    public var env: [String: String]?
    /// What the task needs of its node.
    public var resources: Resources?
    /// Nanoseconds between SIGTERM and SIGKILL when the task is stopped.
    public var killTimeout: Int64?
    /// Rules the task's node must meet, besides its group's and job's.
    public var constraints: [Constraint]?
    /// Free-form key-value data.
    public var meta: [String: String]?
    /// How much of its output the node keeps on disk (Nomad's `LogConfig`).
    public var logConfig: LogConfig?

    /// A task `name` running `command` with `args` under `driver`.
    public init(name: String, driver: String = "raw_exec", command: String, args: [String] = [], resources: Resources? = nil) {
        self.name = name
        self.driver = driver
        self.config = TaskConfig(command: command, args: args)
        self.resources = resources
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name = "Name"
        case driver = "Driver"
        case user = "User"
        case config = "Config"
        case env = "Env"
        case resources = "Resources"
        case killTimeout = "KillTimeout"
        case constraints = "Constraints"
        case meta = "Meta"
        case logConfig = "LogConfig"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        logConfig = try container.decodeIfPresent(LogConfig.self, forKey: .logConfig)
        name = try container.decodeIfPresent(String.self, forKey: .name) ?? ""
        driver = try container.decodeIfPresent(String.self, forKey: .driver) ?? ""
        user = try container.decodeIfPresent(String.self, forKey: .user)
        config = try container.decodeIfPresent(TaskConfig.self, forKey: .config)
        env = try container.decodeIfPresent([String: String].self, forKey: .env)
        resources = try container.decodeIfPresent(Resources.self, forKey: .resources)
        killTimeout = try container.decodeIfPresent(Int64.self, forKey: .killTimeout)
        constraints = try container.decodeIfPresent([Constraint].self, forKey: .constraints)
        meta = try container.decodeIfPresent([String: String].self, forKey: .meta)
    }

    /// Nomad's defaults: 100 MHz and 300 MB.
    public var taskResources: Resources { resources?.withDefaults() ?? Resources(cpu: 100, memoryMB: 300, diskMB: 0) }
    /// Nomad's default: 5 s.
    public var killTimeoutNanoseconds: Int64 { killTimeout ?? 5_000_000_000 }
    /// Bytes of each output stream the node keeps on disk: `MaxFiles` × `MaxFileSizeMB` (Nomad's
    /// defaults, 10 × 10 MB).
    public var keptOutputBytes: Int64 { LogConfig.keptBytes(logConfig) }

    func canonicalized() -> JobTask {
        var task = self
        task.resources = taskResources
        task.killTimeout = killTimeoutNanoseconds
        return task
    }
}

/// A task's driver configuration. Drover's drivers read `command` and `args`; the gateway refuses
/// any other key (``FieldShape``).
public struct TaskConfig: Codable, Sendable, Equatable {
    /// The executable, or a shell command line for a shell.
    public var command: String?
    /// Its arguments.
    public var args: [String]?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case command, args
    }

    /// A driver configuration of `command` and `args`.
    public init(command: String?, args: [String]? = nil) {
        self.command = command
        self.args = args
    }
}

/// Resources in Nomad's units: CPU in MHz, memory and disk in MB.
public struct Resources: Codable, Sendable, Equatable, Hashable {
    /// CPU in MHz.
    public var cpu: Int
    /// Memory in MB.
    public var memoryMB: Int
    /// Disk in MB.
    public var diskMB: Int

    /// Resources of `cpu` MHz, `memoryMB` and `diskMB`.
    public init(cpu: Int, memoryMB: Int, diskMB: Int = 0) {
        self.cpu = cpu
        self.memoryMB = memoryMB
        self.diskMB = diskMB
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case cpu = "CPU"
        case memoryMB = "MemoryMB"
        case diskMB = "DiskMB"
    }

    /// Present fields as given; absent ones as `-1` until `withDefaults()`.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        cpu = try container.decodeIfPresent(Int.self, forKey: .cpu) ?? -1
        memoryMB = try container.decodeIfPresent(Int.self, forKey: .memoryMB) ?? -1
        diskMB = try container.decodeIfPresent(Int.self, forKey: .diskMB) ?? -1
    }

    func withDefaults() -> Resources {
        Resources(cpu: cpu == -1 ? 100 : cpu, memoryMB: memoryMB == -1 ? 300 : memoryMB, diskMB: diskMB == -1 ? 0 : diskMB)
    }

    /// The most a group's tasks may ask for together, of each resource: what the allocations'
    /// columns hold (32 bits), so that no sum of a group's resources overflows.
    public static let maximumTotal = Int(Int32.max)

    /// The sum of two amounts, field by field; it saturates rather than overflowing.
    public static func + (lhs: Resources, rhs: Resources) -> Resources {
        Resources(cpu: lhs.cpu + rhs.cpu, memoryMB: lhs.memoryMB + rhs.memoryMB, diskMB: lhs.diskMB + rhs.diskMB)
    }

    /// The difference of two amounts, field by field; it saturates rather than overflowing.
    public static func - (lhs: Resources, rhs: Resources) -> Resources {
        Resources(cpu: lhs.cpu - rhs.cpu, memoryMB: lhs.memoryMB - rhs.memoryMB, diskMB: lhs.diskMB - rhs.diskMB)
    }
}

/// A hard rule for placement: `LTarget Operand RTarget`, e.g. `${attr.kernel.name} = linux`.
public struct Constraint: Codable, Sendable, Equatable, Hashable, CustomStringConvertible {
    /// The left side: an interpolated node property such as `${attr.kernel.name}` or `${meta.rack}`.
    public var lTarget: String
    /// The right side: a value, a pattern or a version range, by the operand.
    public var rTarget: String
    /// `=`, `!=`, `<`, `<=`, `>`, `>=`, `regexp`, `version`, `semver`, `set_contains`, `set_contains_any`, `is_set`, `is_not_set`, `distinct_hosts`, `distinct_property`.
    public var operand: String

    /// The rule `lTarget operand rTarget`.
    public init(_ lTarget: String, _ operand: String, _ rTarget: String) {
        self.lTarget = lTarget
        self.rTarget = rTarget
        self.operand = operand
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case lTarget = "LTarget"
        case rTarget = "RTarget"
        case operand = "Operand"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        lTarget = try container.decodeIfPresent(String.self, forKey: .lTarget) ?? ""
        rTarget = try container.decodeIfPresent(String.self, forKey: .rTarget) ?? ""
        operand = try container.decodeIfPresent(String.self, forKey: .operand) ?? "="
    }

    /// The operands Drover evaluates, with Nomad's spellings.
    public static let operands: Set<String> = [
        "=", "==", "is", "!=", "not", "<", "<=", ">", ">=", "regexp", "version", "semver", "set_contains", "set_contains_all",
        "set_contains_any", "is_set", "is_not_set", "distinct_hosts", "distinct_property",
    ]

    /// As Nomad prints it in placement metrics: `${attr.kernel.name} = linux`.
    public var description: String { "\(lTarget) \(operand) \(rTarget)".trimmingCharacters(in: .whitespaces) }
}

/// A soft preference: nodes matching it score higher (`Weight` > 0) or lower (< 0).
public struct Affinity: Codable, Sendable, Equatable {
    /// The left side: an interpolated node property.
    public var lTarget: String
    /// The right side: the value preferred.
    public var rTarget: String
    /// How the sides compare, as a constraint's operand.
    public var operand: String
    /// -100 … 100, not 0.
    public var weight: Int

    /// The preference `lTarget operand rTarget` with `weight` (-100 … 100; negative avoids).
    public init(_ lTarget: String, _ operand: String, _ rTarget: String, weight: Int) {
        self.lTarget = lTarget
        self.rTarget = rTarget
        self.operand = operand
        self.weight = weight
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case lTarget = "LTarget"
        case rTarget = "RTarget"
        case operand = "Operand"
        case weight = "Weight"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        lTarget = try container.decodeIfPresent(String.self, forKey: .lTarget) ?? ""
        rTarget = try container.decodeIfPresent(String.self, forKey: .rTarget) ?? ""
        operand = try container.decodeIfPresent(String.self, forKey: .operand) ?? "="
        weight = try container.decodeIfPresent(Int.self, forKey: .weight) ?? 50
    }
}

/// Spreads a group's allocations over the values of a node attribute, evenly or by target
/// percentages.
public struct Spread: Codable, Sendable, Equatable {
    /// The node attribute spread over, e.g. `${node.datacenter}`.
    public var attribute: String
    /// 0 … 100.
    public var weight: Int
    /// The share each value should get; even when absent.
    public var spreadTarget: [SpreadTarget]?

    /// A spread over `attribute` with `weight` and optional `targets`.
    public init(attribute: String, weight: Int = 50, targets: [SpreadTarget]? = nil) {
        self.attribute = attribute
        self.weight = weight
        self.spreadTarget = targets
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case attribute = "Attribute"
        case weight = "Weight"
        case spreadTarget = "SpreadTarget"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        attribute = try container.decodeIfPresent(String.self, forKey: .attribute) ?? ""
        weight = try container.decodeIfPresent(Int.self, forKey: .weight) ?? 50
        spreadTarget = try container.decodeIfPresent([SpreadTarget].self, forKey: .spreadTarget)
    }
}

/// The share of allocations one value of a spread's attribute should get.
public struct SpreadTarget: Codable, Sendable, Equatable {
    /// The attribute's value.
    public var value: String
    /// Its share, 0 … 100.
    public var percent: Int

    /// `percent` of the allocations for `value`.
    public init(value: String, percent: Int) {
        self.value = value
        self.percent = percent
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case value = "Value"
        case percent = "Percent"
    }
}

/// What a node agent does when a task exits: restart it `Attempts` times per `Interval`, after
/// `Delay`; then fail the allocation (`Mode` `fail`) or wait out the interval (`delay`).
/// Durations are nanoseconds, as in Nomad's JSON.
public struct RestartPolicy: Codable, Sendable, Equatable {
    /// Restarts per interval.
    public var attempts: Int?
    /// The window restarts are counted in, in nanoseconds.
    public var interval: Int64?
    /// The wait before a restart, in nanoseconds.
    public var delay: Int64?
    /// `fail`: fail the allocation once the attempts are used; `delay`: wait for the next interval.
    public var mode: String?

    /// A restart policy; absent fields take the job type's defaults.
    public init(attempts: Int? = nil, interval: Int64? = nil, delay: Int64? = nil, mode: String? = nil) {
        self.attempts = attempts
        self.interval = interval
        self.delay = delay
        self.mode = mode
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case attempts = "Attempts"
        case interval = "Interval"
        case delay = "Delay"
        case mode = "Mode"
    }

    /// Nomad's defaults: service 2 attempts in 30 min, batch 3 in 24 h; 15 s delay; mode fail.
    func canonicalized(for type: JobType) -> RestartPolicy {
        RestartPolicy(
            attempts: attempts ?? (type == .batch ? 3 : 2),
            interval: interval ?? (type == .batch ? 86_400_000_000_000 : 1_800_000_000_000),
            delay: delay ?? 15_000_000_000, mode: mode ?? "fail")
    }
}

/// What the scheduler does when an allocation fails: place a replacement up to `Attempts` times
/// per `Interval` (or without limit when `Unlimited`). Durations are nanoseconds.
public struct ReschedulePolicy: Codable, Sendable, Equatable {
    /// Replacements per interval.
    public var attempts: Int?
    /// The window replacements are counted in, in nanoseconds.
    public var interval: Int64?
    /// The wait before a replacement, in nanoseconds.
    public var delay: Int64?
    /// Whether replacements are without limit.
    public var unlimited: Bool?

    /// A reschedule policy; absent fields take the job type's defaults.
    public init(attempts: Int? = nil, interval: Int64? = nil, delay: Int64? = nil, unlimited: Bool? = nil) {
        self.attempts = attempts
        self.interval = interval
        self.delay = delay
        self.unlimited = unlimited
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case attempts = "Attempts"
        case interval = "Interval"
        case delay = "Delay"
        case unlimited = "Unlimited"
    }

    /// Nomad's defaults: service unlimited; batch 1 attempt in 24 h. System jobs never reschedule.
    func canonicalized(for type: JobType) -> ReschedulePolicy {
        switch type {
        case .service:
            ReschedulePolicy(attempts: attempts ?? 0, interval: interval ?? 0, delay: delay ?? 30_000_000_000, unlimited: unlimited ?? true)
        case .batch:
            ReschedulePolicy(
                attempts: attempts ?? 1, interval: interval ?? 86_400_000_000_000, delay: delay ?? 5_000_000_000, unlimited: unlimited ?? false)
        case .system:
            ReschedulePolicy(attempts: 0, interval: 0, delay: 0, unlimited: false)
        }
    }
}

/// When a periodic job's children run: Nomad's `Periodic` (cron only, as Nomad has it).
public struct Periodic: Codable, Sendable, Equatable {
    /// Whether children are launched.
    public var enabled: Bool
    /// The cron expression (five fields, or `@hourly` and the like).
    public var spec: String
    /// `cron`, the only kind Nomad has.
    public var specType: String
    /// No new child while the previous one still runs.
    public var prohibitOverlap: Bool
    /// IANA time zone the spec is read in.
    public var timeZone: String

    /// Children on `spec` in `timeZone`.
    public init(spec: String, enabled: Bool = true, prohibitOverlap: Bool = false, timeZone: String = "UTC") {
        self.enabled = enabled
        self.spec = spec
        self.specType = "cron"
        self.prohibitOverlap = prohibitOverlap
        self.timeZone = timeZone
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case enabled = "Enabled"
        case spec = "Spec"
        case specType = "SpecType"
        case prohibitOverlap = "ProhibitOverlap"
        case timeZone = "TimeZone"
    }

    /// Nomad's defaults: enabled, `cron`, UTC.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        enabled = try container.decodeIfPresent(Bool.self, forKey: .enabled) ?? true
        spec = try container.decodeIfPresent(String.self, forKey: .spec) ?? ""
        specType = try container.decodeIfPresent(String.self, forKey: .specType) ?? "cron"
        prohibitOverlap = try container.decodeIfPresent(Bool.self, forKey: .prohibitOverlap) ?? false
        timeZone = try container.decodeIfPresent(String.self, forKey: .timeZone) ?? "UTC"
    }
}
