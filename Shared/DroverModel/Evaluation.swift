/// A request to bring a job's allocations in line with what it asks for. The scheduler turns
/// each pending evaluation into a plan.
public struct Evaluation: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable {
        case pending, complete, failed, blocked, canceled
    }

    /// Why an evaluation was made, in Nomad's words.
    public enum Trigger {
        public static let jobRegister = "job-register"
        public static let jobDeregister = "job-deregister"
        public static let nodeUpdate = "node-update"
        public static let nodeDrain = "node-drain"
        public static let allocStop = "alloc-stop"
        public static let allocFailure = "alloc-failure"
        public static let queuedAllocs = "queued-allocs"
    }

    public var id: String
    public var priority: Int
    public var type: JobType
    public var triggeredBy: String
    public var jobID: String
    public var jobModifyIndex: Int64
    public var nodeID: String?
    public var status: Status
    public var statusDescription: String
    public var previousEval: String?
    public var blockedEval: String?
    /// Group → why its allocations could not all be placed.
    public var failedTGAllocs: [String: AllocMetric]?
    /// Group → allocations still waiting for room.
    public var queuedAllocations: [String: Int]?
    public var createIndex: Int64
    public var modifyIndex: Int64
    /// Unix nanoseconds.
    public var createTime: Int64
    public var modifyTime: Int64

    public init(
        id: String, priority: Int, type: JobType, triggeredBy: String, jobID: String, jobModifyIndex: Int64 = 0, nodeID: String? = nil,
        status: Status = .pending, statusDescription: String = "", createIndex: Int64 = 0, modifyIndex: Int64 = 0, createTime: Int64 = 0,
        modifyTime: Int64 = 0
    ) {
        self.id = id
        self.priority = priority
        self.type = type
        self.triggeredBy = triggeredBy
        self.jobID = jobID
        self.jobModifyIndex = jobModifyIndex
        self.nodeID = nodeID
        self.status = status
        self.statusDescription = statusDescription
        self.createIndex = createIndex
        self.modifyIndex = modifyIndex
        self.createTime = createTime
        self.modifyTime = modifyTime
    }

    /// A new evaluation of `job`, created at `index` and `now` (Unix nanoseconds).
    public init(
        id: String, for job: Job, triggeredBy: String, index: Int64, now: Int64, status: Status = .pending, previousEval: String? = nil,
        nodeID: String? = nil
    ) {
        self.init(
            id: id, priority: job.jobPriority, type: job.jobType, triggeredBy: triggeredBy, jobID: job.id,
            jobModifyIndex: job.jobModifyIndex ?? index, nodeID: nodeID, status: status, createIndex: index, modifyIndex: index,
            createTime: now, modifyTime: now)
        self.previousEval = previousEval
    }

    enum CodingKeys: String, CodingKey {
        case id = "ID"
        case priority = "Priority"
        case type = "Type"
        case triggeredBy = "TriggeredBy"
        case jobID = "JobID"
        case jobModifyIndex = "JobModifyIndex"
        case nodeID = "NodeID"
        case status = "Status"
        case statusDescription = "StatusDescription"
        case previousEval = "PreviousEval"
        case blockedEval = "BlockedEval"
        case failedTGAllocs = "FailedTGAllocs"
        case queuedAllocations = "QueuedAllocations"
        case createIndex = "CreateIndex"
        case modifyIndex = "ModifyIndex"
        case createTime = "CreateTime"
        case modifyTime = "ModifyTime"
    }
}

/// Per group, what a plan does: Nomad's `DesiredTGUpdates`.
public struct DesiredUpdates: Codable, Sendable, Equatable {
    public var place: Int = 0
    public var stop: Int = 0
    public var destructiveUpdate: Int = 0
    public var ignore: Int = 0
    public var reschedule: Int = 0
    /// Allocations moving off a draining node: a replacement is placed, and the old one stops once it runs.
    public var migrate: Int = 0

    public init() {}

    enum CodingKeys: String, CodingKey {
        case place = "Place"
        case stop = "Stop"
        case destructiveUpdate = "DestructiveUpdate"
        case ignore = "Ignore"
        case reschedule = "Reschedule"
        case migrate = "Migrate"
    }
}
