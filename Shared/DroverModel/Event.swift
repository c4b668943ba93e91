public import Foundation

/// One entry of the cluster's event log: a message a node sent (`drover log`), or something the
/// control plane did (a job registered, an allocation failed, a node down, a drain complete).
public struct ClusterEvent: Codable, Sendable, Equatable {
    /// The entry's place in the log.
    public var id: Int64
    /// When it happened.
    public var time: Date
    /// The node it concerns, if one.
    public var nodeID: String?
    /// The job it concerns, if one.
    public var jobID: String?
    /// That job's namespace; `default` when absent.
    public var namespace: String?
    /// The allocation it concerns, if one.
    public var allocID: String?
    /// `NodeLog` for a node's message; otherwise what happened, e.g. `NodeDown`.
    public var type: String
    /// How serious it is.
    public var level: NodeLogMessage.Level
    /// Who should look at it, and how soon.
    public var priority: NodeLogMessage.Priority
    /// What happened, in words.
    public var message: String

    /// An entry with every field given.
    public init(
        id: Int64 = 0, time: Date, nodeID: String? = nil, jobID: String? = nil, namespace: String? = nil, allocID: String? = nil, type: String,
        level: NodeLogMessage.Level, priority: NodeLogMessage.Priority, message: String
    ) {
        self.id = id
        self.time = time
        self.nodeID = nodeID
        self.jobID = jobID
        self.namespace = jobID == nil ? nil : namespace ?? "default"
        self.allocID = allocID
        self.type = type
        self.level = level
        self.priority = priority
        self.message = message
    }

    enum CodingKeys: String, CodingKey {
        case id = "ID"
        case time = "Time"
        case nodeID = "NodeID"
        case jobID = "JobID"
        case namespace = "Namespace"
        case allocID = "AllocID"
        case type = "Type"
        case level = "Level"
        case priority = "Priority"
        case message = "Message"
    }

    /// The event types the control plane records.
    public enum Kind {
        /// A node's own message (`drover log`).
        public static let nodeLog = "NodeLog"
        /// A job was registered.
        public static let jobRegistered = "JobRegistered"
        /// A job was stopped.
        public static let jobDeregistered = "JobDeregistered"
        /// An allocation was placed.
        public static let allocationPlaced = "AllocationPlaced"
        /// An allocation failed.
        public static let allocationFailed = "AllocationFailed"
        /// A node missed its heartbeats and is down.
        public static let nodeDown = "NodeDown"
        /// A node is ready.
        public static let nodeReady = "NodeReady"
        /// A drain began.
        public static let drainStarted = "DrainStarted"
        /// A drain completed.
        public static let drainComplete = "DrainComplete"
        /// A node's HealthCheck scripts found it unhealthy.
        public static let nodeUnhealthy = "NodeUnhealthy"
        /// A node is kept (`drover keepalive`).
        public static let keepalive = "Keepalive"
        /// A node asked to be taken away (`drover shutdown`).
        public static let shutdownRequested = "ShutdownRequested"
        /// A node joined with an enrollment token.
        public static let nodeEnrolled = "NodeEnrolled"
        /// A node was forgotten.
        public static let nodePurged = "NodePurged"
        /// A node array was made, changed or deleted.
        public static let nodeArrayChanged = "NodeArrayChanged"
        /// An autoscale target was set.
        public static let autoscaleTarget = "AutoscaleTarget"
        /// The autoscaler decided something new for an array.
        public static let autoscaleDecision = "AutoscaleDecision"
        /// A node's cluster-init converged or failed.
        public static let clusterInit = "ClusterInit"
        /// A project was uploaded or assigned.
        public static let projectChanged = "ProjectChanged"
        /// A time-based job was added, changed, run or deleted.
        public static let scheduleChanged = "Schedule"
        /// A namespace was created, changed or deleted.
        public static let namespaceChanged = "NamespaceChanged"
    }
}
