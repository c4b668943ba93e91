public import Foundation

/// One entry of the cluster's event log: a message a node sent (`drover log`), or something the
/// control plane did (a job registered, an allocation failed, a node down, a drain complete).
public struct ClusterEvent: Codable, Sendable, Equatable {
    public var id: Int64
    public var time: Date
    public var nodeID: String?
    public var jobID: String?
    public var allocID: String?
    /// `NodeLog` for a node's message; otherwise what happened, e.g. `NodeDown`.
    public var type: String
    public var level: NodeLogMessage.Level
    public var priority: NodeLogMessage.Priority
    public var message: String

    public init(
        id: Int64 = 0, time: Date, nodeID: String? = nil, jobID: String? = nil, allocID: String? = nil, type: String,
        level: NodeLogMessage.Level, priority: NodeLogMessage.Priority, message: String
    ) {
        self.id = id
        self.time = time
        self.nodeID = nodeID
        self.jobID = jobID
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
        case allocID = "AllocID"
        case type = "Type"
        case level = "Level"
        case priority = "Priority"
        case message = "Message"
    }

    /// The event types the control plane records.
    public enum Kind {
        public static let nodeLog = "NodeLog"
        public static let jobRegistered = "JobRegistered"
        public static let jobDeregistered = "JobDeregistered"
        public static let allocationPlaced = "AllocationPlaced"
        public static let allocationFailed = "AllocationFailed"
        public static let nodeDown = "NodeDown"
        public static let nodeReady = "NodeReady"
        public static let drainStarted = "DrainStarted"
        public static let drainComplete = "DrainComplete"
        public static let nodeUnhealthy = "NodeUnhealthy"
        public static let keepalive = "Keepalive"
        public static let shutdownRequested = "ShutdownRequested"
        public static let nodeEnrolled = "NodeEnrolled"
        public static let nodePurged = "NodePurged"
        public static let nodeArrayChanged = "NodeArrayChanged"
        public static let autoscaleTarget = "AutoscaleTarget"
        public static let autoscaleDecision = "AutoscaleDecision"
        public static let clusterInit = "ClusterInit"
        public static let projectChanged = "ProjectChanged"
        public static let scheduleChanged = "Schedule"
    }
}
