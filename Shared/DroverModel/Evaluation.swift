/// A request to bring a job's allocations in line with what it asks for. The scheduler turns
/// each pending evaluation into a plan.
public struct Evaluation: Codable, Sendable, Equatable {
    /// Where an evaluation is.
    public enum Status: String, Codable, Sendable {
        /// `pending`: waits for the scheduler; `complete`: done; `failed`: could not be done; `blocked`: waits for room to place what it could not; `canceled`: made pointless by a newer one.
        case pending, complete, failed, blocked, canceled
    }

    /// Why an evaluation was made, in Nomad's words.
    public enum Trigger {
        /// The job was registered or changed.
        public static let jobRegister = "job-register"
        /// The job was stopped.
        public static let jobDeregister = "job-deregister"
        /// A node's status or eligibility changed.
        public static let nodeUpdate = "node-update"
        /// A node is draining.
        public static let nodeDrain = "node-drain"
        /// An allocation was stopped by hand.
        public static let allocStop = "alloc-stop"
        /// An allocation failed and may be replaced.
        public static let allocFailure = "alloc-failure"
        /// Room appeared for what a blocked evaluation could not place.
        public static let queuedAllocs = "queued-allocs"
    }

    /// The evaluation's id.
    public var id: String
    /// Its job's priority.
    public var priority: Int
    /// Its job's type.
    public var type: JobType
    /// Why it was made: one of the triggers above.
    public var triggeredBy: String
    /// The job it evaluates.
    public var jobID: String
    /// That job's namespace; `default` when absent (evaluations made before namespaces).
    public var namespace: String?
    /// The job's modify index it was made for.
    public var jobModifyIndex: Int64
    /// The node whose change made it, for node triggers.
    public var nodeID: String?
    /// Where it is.
    public var status: Status
    /// The status in words.
    public var statusDescription: String
    /// The evaluation this one follows from.
    public var previousEval: String?
    /// The blocked evaluation made for what this one could not place.
    public var blockedEval: String?
    /// Group → why its allocations could not all be placed.
    public var failedTGAllocs: [String: AllocMetric]?
    /// Group → allocations still waiting for room.
    public var queuedAllocations: [String: Int]?
    /// The cluster's index when it was made.
    public var createIndex: Int64
    /// The cluster's index of its last change.
    public var modifyIndex: Int64
    /// Unix nanoseconds.
    public var createTime: Int64
    /// When it last changed, in Unix nanoseconds.
    public var modifyTime: Int64

    /// An evaluation with every field given.
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
        self.namespace = job.namespace ?? "default"
    }

    /// Its job's namespace, `default` when absent.
    public var jobNamespace: String { namespace ?? "default" }

    enum CodingKeys: String, CodingKey {
        case id = "ID"
        case priority = "Priority"
        case type = "Type"
        case triggeredBy = "TriggeredBy"
        case jobID = "JobID"
        case namespace = "Namespace"
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
    /// Allocations to place.
    public var place: Int = 0
    /// Allocations to stop.
    public var stop: Int = 0
    /// Allocations to replace because their job changed.
    public var destructiveUpdate: Int = 0
    /// Allocations left as they are.
    public var ignore: Int = 0
    /// Failed allocations to replace.
    public var reschedule: Int = 0
    /// Allocations moving off a draining node: a replacement is placed, and the old one stops once it runs.
    public var migrate: Int = 0

    /// Nothing to do.
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
