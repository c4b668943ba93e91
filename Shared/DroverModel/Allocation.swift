/// One instance of a task group placed on a node.
///
/// `DesiredStatus` is what the control plane wants; `ClientStatus` is what the node reports.
public struct Allocation: Codable, Sendable, Equatable {
    /// What the control plane wants of an allocation.
    public enum DesiredStatus: String, Codable, Sendable {
        /// `run`: keep it running; `stop`: stop it (job stopped or changed, node drained); `evict`: stop it for another.
        case run, stop, evict
    }

    /// Where an allocation is, as its node reports it.
    public enum ClientStatus: String, Codable, Sendable {
        /// `pending`: not started yet; `running`; `complete`: every task succeeded; `failed`: a task failed for good; `lost`: its node went down.
        case pending, running, complete, failed, lost
        /// The allocation will not run again.
        public var isTerminal: Bool { self == .complete || self == .failed || self == .lost }
    }

    /// The allocation's id.
    public var id: String
    /// The evaluation that placed it.
    public var evalID: String
    /// `<job>.<group>[<index>]`
    public var name: String
    /// The node it runs on.
    public var nodeID: String
    /// That node's name.
    public var nodeName: String
    /// Its job.
    public var jobID: String
    /// Its job's namespace; `default` when absent (allocations placed before namespaces).
    public var namespace: String?
    /// The job's version it was placed from.
    public var jobVersion: Int
    /// Its group in the job.
    public var taskGroup: String
    /// The job as it was when this allocation was placed: present in messages to nodes and in
    /// single-allocation reads, absent in lists.
    public var job: Job?
    /// What it holds of its node.
    public var resources: Resources
    /// What the control plane wants of it.
    public var desiredStatus: DesiredStatus
    /// Why, in words.
    public var desiredDescription: String
    /// Where it is, as its node reports it.
    public var clientStatus: ClientStatus
    /// The client status in words.
    public var clientDescription: String
    /// Each task's state, by task name.
    public var taskStates: [String: TaskState]?
    /// The failed allocation this one replaces.
    public var previousAllocation: String?
    /// The replacements made so far in its line, for the reschedule policy.
    public var rescheduleTracker: RescheduleTracker?
    /// What the scheduler saw placing it.
    public var metrics: AllocMetric?
    /// The cluster's index when it was placed.
    public var createIndex: Int64
    /// The cluster's index of its last change.
    public var modifyIndex: Int64
    /// Unix nanoseconds, as in Nomad.
    public var createTime: Int64
    /// When it last changed, in Unix nanoseconds.
    public var modifyTime: Int64

    /// An allocation with every field given.
    public init(
        id: String, evalID: String, name: String, nodeID: String, nodeName: String, jobID: String, jobVersion: Int, taskGroup: String,
        job: Job? = nil, resources: Resources, desiredStatus: DesiredStatus = .run, desiredDescription: String = "",
        clientStatus: ClientStatus = .pending, clientDescription: String = "", createIndex: Int64 = 0, modifyIndex: Int64 = 0,
        createTime: Int64 = 0, modifyTime: Int64 = 0
    ) {
        self.id = id
        self.evalID = evalID
        self.name = name
        self.nodeID = nodeID
        self.nodeName = nodeName
        self.jobID = jobID
        self.jobVersion = jobVersion
        self.taskGroup = taskGroup
        self.job = job
        self.resources = resources
        self.desiredStatus = desiredStatus
        self.desiredDescription = desiredDescription
        self.clientStatus = clientStatus
        self.clientDescription = clientDescription
        self.createIndex = createIndex
        self.modifyIndex = modifyIndex
        self.createTime = createTime
        self.modifyTime = modifyTime
    }

    enum CodingKeys: String, CodingKey {
        case id = "ID"
        case evalID = "EvalID"
        case name = "Name"
        case nodeID = "NodeID"
        case nodeName = "NodeName"
        case jobID = "JobID"
        case namespace = "Namespace"
        case jobVersion = "JobVersion"
        case taskGroup = "TaskGroup"
        case job = "Job"
        case resources = "Resources"
        case desiredStatus = "DesiredStatus"
        case desiredDescription = "DesiredDescription"
        case clientStatus = "ClientStatus"
        case clientDescription = "ClientDescription"
        case taskStates = "TaskStates"
        case previousAllocation = "PreviousAllocation"
        case rescheduleTracker = "RescheduleTracker"
        case metrics = "Metrics"
        case createIndex = "CreateIndex"
        case modifyIndex = "ModifyIndex"
        case createTime = "CreateTime"
        case modifyTime = "ModifyTime"
    }

    /// The index in the name: `web.api[2]` → 2.
    public var index: Int {
        guard let open = name.lastIndex(of: "["), let close = name.lastIndex(of: "]"), open < close else { return 0 }
        return Int(name[name.index(after: open)..<close]) ?? 0
    }

    /// The name of a group's `index`-th allocation, `<job>.<group>[<index>]`.
    public static func name(job: String, group: String, index: Int) -> String { "\(job).\(group)[\(index)]" }

    /// Its job's namespace, `default` when absent.
    public var jobNamespace: String { namespace ?? "default" }

    /// Whether the allocation holds, or will hold, resources on its node.
    public var isLive: Bool { desiredStatus == .run && !clientStatus.isTerminal }
}

/// The state of one task of an allocation, as the node reports it.
public struct TaskState: Codable, Sendable, Equatable {
    /// Where a task is.
    public enum State: String, Codable, Sendable {
        /// `pending`: not started; `running`; `dead`: exited for good.
        case pending, running, dead
    }

    /// Where the task is.
    public var state: State
    /// Whether it failed.
    public var failed: Bool
    /// Its last exit code, once it exited.
    public var exitCode: Int?
    /// How often it was restarted.
    public var restarts: Int
    /// RFC 3339, as in Nomad; nil until it happened.
    public var startedAt: String?
    /// When it finished, ISO 8601.
    public var finishedAt: String?
    /// What happened to it, oldest first.
    public var events: [TaskEvent]

    /// A task state with every field given.
    public init(
        state: State, failed: Bool = false, exitCode: Int? = nil, restarts: Int = 0, startedAt: String? = nil, finishedAt: String? = nil,
        events: [TaskEvent] = []
    ) {
        self.state = state
        self.failed = failed
        self.exitCode = exitCode
        self.restarts = restarts
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.events = events
    }

    enum CodingKeys: String, CodingKey {
        case state = "State"
        case failed = "Failed"
        case exitCode = "ExitCode"
        case restarts = "Restarts"
        case startedAt = "StartedAt"
        case finishedAt = "FinishedAt"
        case events = "Events"
    }
}

/// One thing that happened to a task: `Received`, `Started`, `Terminated`, `Restarting`, `Killed`, …
public struct TaskEvent: Codable, Sendable, Equatable {
    /// Nomad's event types: `Received`, `Started`, `Terminated`, `Restarting`, `Killing`, `Killed`, `Driver Failure`, …
    public var type: String
    /// Unix nanoseconds.
    public var time: Int64
    /// The event in words.
    public var displayMessage: String
    /// The exit code, for `Terminated`.
    public var exitCode: Int?
    /// The signal that ended it, if one did.
    public var signal: Int?

    /// An event of `type` at `time` (Unix nanoseconds).
    public init(type: String, time: Int64, displayMessage: String, exitCode: Int? = nil, signal: Int? = nil) {
        self.type = type
        self.time = time
        self.displayMessage = displayMessage
        self.exitCode = exitCode
        self.signal = signal
    }

    enum CodingKeys: String, CodingKey {
        case type = "Type"
        case time = "Time"
        case displayMessage = "DisplayMessage"
        case exitCode = "ExitCode"
        case signal = "Signal"
    }
}

/// Past reschedules of an allocation's line, so that `ReschedulePolicy.Attempts` can be counted.
public struct RescheduleTracker: Codable, Sendable, Equatable {
    /// The replacements, oldest first.
    public var events: [RescheduleEvent]

    /// A tracker of `events`.
    public init(events: [RescheduleEvent]) { self.events = events }

    enum CodingKeys: String, CodingKey {
        case events = "Events"
    }
}

/// One replacement of a failed allocation.
public struct RescheduleEvent: Codable, Sendable, Equatable {
    /// Unix nanoseconds.
    public var rescheduleTime: Int64
    /// The allocation replaced.
    public var prevAllocID: String
    /// The node it ran on.
    public var prevNodeID: String

    /// A replacement at `rescheduleTime` (Unix nanoseconds) of `prevAllocID` on `prevNodeID`.
    public init(rescheduleTime: Int64, prevAllocID: String, prevNodeID: String) {
        self.rescheduleTime = rescheduleTime
        self.prevAllocID = prevAllocID
        self.prevNodeID = prevNodeID
    }

    enum CodingKeys: String, CodingKey {
        case rescheduleTime = "RescheduleTime"
        case prevAllocID = "PrevAllocID"
        case prevNodeID = "PrevNodeID"
    }
}

/// What the scheduler saw while placing a group: how many nodes it looked at and why each one it
/// rejected was rejected. This is what `job plan` and a blocked evaluation show.
public struct AllocMetric: Codable, Sendable, Equatable {
    /// Nodes looked at.
    public var nodesEvaluated: Int = 0
    /// Nodes filtered out by constraints, drivers or class.
    public var nodesFiltered: Int = 0
    /// Datacenter → nodes in it that were ready.
    public var nodesAvailable: [String: Int] = [:]
    /// Node class → nodes of it filtered out.
    public var classFiltered: [String: Int] = [:]
    /// Reason (a constraint, "missing drivers", …) → nodes filtered for it.
    public var constraintFiltered: [String: Int] = [:]
    /// Nodes that met the constraints but lacked room.
    public var nodesExhausted: Int = 0
    /// Node class → nodes of it that lacked room.
    public var classExhausted: [String: Int] = [:]
    /// Resource (`cpu`, `memory`, `disk`) → nodes that lacked it.
    public var dimensionExhausted: [String: Int] = [:]
    /// Further allocations of the same group that failed for the same reasons.
    public var coalescedFailures: Int = 0

    /// Nothing seen yet.
    public init() {}

    enum CodingKeys: String, CodingKey {
        case nodesEvaluated = "NodesEvaluated"
        case nodesFiltered = "NodesFiltered"
        case nodesAvailable = "NodesAvailable"
        case classFiltered = "ClassFiltered"
        case constraintFiltered = "ConstraintFiltered"
        case nodesExhausted = "NodesExhausted"
        case classExhausted = "ClassExhausted"
        case dimensionExhausted = "DimensionExhausted"
        case coalescedFailures = "CoalescedFailures"
    }
}

extension Allocation {
    /// The allocation as the control plane stops it at `index` and `now` (Unix nanoseconds):
    /// not wanted any more, and lost too when `markLost` and its node never said it ended.
    public func stopped(description: String, markLost: Bool, index: Int64, now: Int64) -> Allocation {
        var allocation = self
        allocation.desiredStatus = .stop
        allocation.desiredDescription = description
        if markLost && !allocation.clientStatus.isTerminal {
            allocation.clientStatus = .lost
            allocation.clientDescription = "alloc is lost since its node is down"
        }
        allocation.modifyIndex = index
        allocation.modifyTime = now
        return allocation
    }
}
