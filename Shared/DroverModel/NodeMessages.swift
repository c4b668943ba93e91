public import Foundation

/// A node agent's periodic sign of life, on `node.<nodeId>.heartbeat`.
public struct NodeHeartbeat: DroverMessage, Equatable {
    public static let messageType = "node.heartbeat"
    public static let schemaVersion = 1

    /// The node's id (also the second word of the routing key).
    public var nodeID: String
    /// Increases by one with every heartbeat since the agent started; resets on restart.
    public var sequence: UInt64
    /// When the agent started, so a restart can be told from a gap.
    public var agentStartedAt: Date

    /// A heartbeat of node `nodeID`: its `sequence`-th since its agent started at `agentStartedAt`.
    public init(nodeID: String, sequence: UInt64, agentStartedAt: Date) {
        self.nodeID = nodeID
        self.sequence = sequence
        self.agentStartedAt = agentStartedAt
    }

    enum CodingKeys: String, CodingKey {
        case nodeID = "NodeID"
        case sequence = "Sequence"
        case agentStartedAt = "AgentStartedAt"
    }
}

/// A log message a node sends (`drover log`), on `node.<nodeId>.log.<level>.<priority>`.
public struct NodeLogMessage: DroverMessage, Equatable {
    public static let messageType = "node.log"
    public static let schemaVersion = 1

    /// How serious a log message is.
    public enum Level: String, Codable, Sendable, CaseIterable {
        /// `info`: for the record; `warn`: something to look at; `error`: something failed.
        case info, warn, error
    }

    /// Who should look at a log message, and how soon; events list medium and high by default.
    public enum Priority: String, Codable, Sendable, CaseIterable {
        /// `low`: detail; `medium`: worth reading; `high`: needs someone now.
        case low, medium, high
    }

    /// The node that sent it.
    public var nodeID: String
    /// The text, as given to `drover log`.
    public var message: String
    /// How serious it is; also the third word of the routing key.
    public var level: Level
    /// Who should look at it; also the fourth word of the routing key.
    public var priority: Priority

    /// A log message of node `nodeID`.
    public init(nodeID: String, message: String, level: Level, priority: Priority) {
        self.nodeID = nodeID
        self.message = message
        self.level = level
        self.priority = priority
    }

    enum CodingKeys: String, CodingKey {
        case nodeID = "NodeID"
        case message = "Message"
        case level = "Level"
        case priority = "Priority"
    }
}

extension RoutingKey {
    /// `node.<nodeId>.log.<level>.<priority>`
    public static func nodeLog(_ nodeID: String, level: NodeLogMessage.Level, priority: NodeLogMessage.Priority) -> String {
        "node.\(nodeID).log.\(level.rawValue).\(priority.rawValue)"
    }
}

/// A node agent tells what it found on its machine, on `node.<nodeId>.register`, when it starts
/// and whenever its fingerprint changes. The control plane records the node as ready.
public struct NodeRegistration: DroverMessage, Equatable {
    public static let messageType = "node.register"
    public static let schemaVersion = 1

    /// The node as its agent found it: resources, attributes, drivers, meta.
    public var node: Node

    /// The registration of `node`.
    public init(node: Node) { self.node = node }

    enum CodingKeys: String, CodingKey {
        case node = "Node"
    }
}

/// A node agent reports the state of one of its allocations, on `node.<nodeId>.alloc-status`.
public struct AllocationStatusReport: DroverMessage, Equatable {
    public static let messageType = "node.alloc-status"
    public static let schemaVersion = 1

    /// The node that runs the allocation.
    public var nodeID: String
    /// The allocation reported on.
    public var allocID: String
    /// Where the allocation is: pending, running, complete, failed, lost.
    public var clientStatus: Allocation.ClientStatus
    /// The status in words, e.g. `Tasks are running`.
    public var clientDescription: String
    /// Each task's state, by task name.
    public var taskStates: [String: TaskState]
    /// Counts the reports about this allocation; a report older than one already recorded
    /// (reports may be handled out of order) is ignored.
    public var sequence: Int64

    /// A report of allocation `allocID` on node `nodeID`.
    public init(
        nodeID: String, allocID: String, clientStatus: Allocation.ClientStatus, clientDescription: String, taskStates: [String: TaskState],
        sequence: Int64 = 0
    ) {
        self.nodeID = nodeID
        self.allocID = allocID
        self.clientStatus = clientStatus
        self.clientDescription = clientDescription
        self.taskStates = taskStates
        self.sequence = sequence
    }

    enum CodingKeys: String, CodingKey {
        case sequence = "Sequence"
        case nodeID = "NodeID"
        case allocID = "AllocID"
        case clientStatus = "ClientStatus"
        case clientDescription = "ClientDescription"
        case taskStates = "TaskStates"
    }
}

extension RoutingKey {
    /// `node.<nodeId>.register`
    public static func nodeRegister(_ nodeID: String) -> String { "node.\(nodeID).register" }
    /// `node.<nodeId>.alloc-status`
    public static func nodeAllocStatus(_ nodeID: String) -> String { "node.\(nodeID).alloc-status" }
}

/// A piece of a task's output, on `node.<nodeId>.output.<allocId>.<task>.<stream>`. A stream's
/// pieces carry their byte offset, so the collector stores each once and in order, whatever
/// order they arrive in and however often.
public struct TaskOutputChunk: DroverMessage, Equatable {
    public static let messageType = "node.output"
    public static let schemaVersion = 1

    /// Which of a task's outputs a chunk belongs to.
    public enum Stream: String, Codable, Sendable, CaseIterable {
        /// Standard output or standard error.
        case stdout, stderr
    }

    /// The node the task runs on; a chunk for another node's allocation is refused.
    public var nodeID: String
    /// The allocation the task belongs to.
    public var allocID: String
    /// The task's name within its group.
    public var task: String
    /// Standard output or standard error.
    public var stream: Stream
    /// Where `data` starts in the stream.
    public var offset: Int64
    /// The bytes (base64 in JSON).
    public var data: Data

    /// A chunk of `stream` of `task`, starting at byte `offset`.
    public init(nodeID: String, allocID: String, task: String, stream: Stream, offset: Int64, data: Data) {
        self.nodeID = nodeID
        self.allocID = allocID
        self.task = task
        self.stream = stream
        self.offset = offset
        self.data = data
    }

    /// The most bytes one chunk carries (an agent sends 128 KiB at most).
    public static let maximumSize = 1 << 20
    /// The furthest a stream's offset goes (1 PiB): an offset and a chunk's size added never overflow.
    public static let maximumOffset: Int64 = 1 << 50

    /// What is wrong with the chunk as a node sent it: each field with its reason.
    public func validate() -> [FieldError] {
        var errors: [FieldError] = []
        if allocID.isEmpty { errors.append(FieldError("AllocID", "is required")) }
        if task.isEmpty { errors.append(FieldError("Task", "is required")) }
        if offset < 0 || offset > Self.maximumOffset {
            errors.append(FieldError("Offset", "must be between 0 and \(Self.maximumOffset), got \(offset)"))
        }
        if data.count > Self.maximumSize {
            errors.append(FieldError("Data", "must be at most \(Self.maximumSize) bytes, got \(data.count)"))
        }
        return errors
    }

    enum CodingKeys: String, CodingKey {
        case nodeID = "NodeID"
        case allocID = "AllocID"
        case task = "Task"
        case stream = "Stream"
        case offset = "Offset"
        case data = "Data"
    }
}

extension RoutingKey {
    /// `node.<nodeId>.output.<allocId>.<task>.<stream>`; a task name that is not one routing-key
    /// word has its dots, wildcards and spaces replaced by `_` (the body has the real name).
    public static func nodeOutput(_ chunk: TaskOutputChunk) -> String {
        let task = String(chunk.task.map { $0 == "." || $0 == "*" || $0 == "#" || $0.isWhitespace ? "_" : $0 })
        return "node.\(chunk.nodeID).output.\(chunk.allocID).\(task.isEmpty ? "_" : task).\(chunk.stream.rawValue)"
    }
}

/// The outcome of a node's HealthCheck scripts (`healthcheck.d`), on `node.<nodeId>.health`.
/// Exit 254 is unhealthy, 0 healthy; any other exit is an error of the script, not of the node.
public struct NodeHealthReport: DroverMessage, Equatable {
    public static let messageType = "node.health"
    public static let schemaVersion = 1

    /// The outcome of one HealthCheck script.
    public struct Check: Codable, Sendable, Equatable {
        /// The script's path.
        public var script: String
        /// Its exit code: 0 healthy, 254 unhealthy, anything else an error of the script.
        public var exitCode: Int32
        /// The end of what it printed.
        public var output: String

        /// The outcome of `script`.
        public init(script: String, exitCode: Int32, output: String) {
            self.script = script
            self.exitCode = exitCode
            self.output = output
        }

        enum CodingKeys: String, CodingKey {
            case script = "Script"
            case exitCode = "ExitCode"
            case output = "Output"
        }
    }

    /// The node checked.
    public var nodeID: String
    /// Whether no script exited 254.
    public var healthy: Bool
    /// Every script's outcome.
    public var checks: [Check]

    /// A health report of node `nodeID`.
    public init(nodeID: String, healthy: Bool, checks: [Check]) {
        self.nodeID = nodeID
        self.healthy = healthy
        self.checks = checks
    }

    /// What an exit code says of the node: true healthy, false unhealthy, nil neither.
    public static func verdict(exitCode: Int32) -> Bool? {
        switch exitCode {
        case 0: true
        case 254: false
        default: nil
        }
    }

    enum CodingKeys: String, CodingKey {
        case nodeID = "NodeID"
        case healthy = "Healthy"
        case checks = "Checks"
    }
}

/// `drover keepalive`: keep this node from being terminated until `Until` (for ever when null),
/// on `node.<nodeId>.keepalive`.
public struct NodeKeepalive: DroverMessage, Equatable {
    public static let messageType = "node.keepalive"
    public static let schemaVersion = 1

    /// The node to keep.
    public var nodeID: String
    /// Until when; `nil` for ever (until a later keepalive says otherwise).
    public var until: Date?

    /// Keeps node `nodeID` until `until`.
    public init(nodeID: String, until: Date?) {
        self.nodeID = nodeID
        self.until = until
    }

    enum CodingKeys: String, CodingKey {
        case nodeID = "NodeID"
        case until = "Until"
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(nodeID, forKey: .nodeID)
        try container.encode(until, forKey: .until)  // null: for ever
    }
}

/// `drover shutdown`: the node asks to be taken away, on `node.<nodeId>.shutdown`.
public struct NodeShutdownRequest: DroverMessage, Equatable {
    public static let messageType = "node.shutdown"
    public static let schemaVersion = 1

    /// Why the node asks to go.
    public enum Reason: String, Codable, Sendable, CaseIterable {
        /// `requested`: `drover shutdown`; `unhealthy`: its own checks failed; `idle`: it has nothing to do; `deallocate`: to be stopped, not deleted, where the provider can.
        case requested, unhealthy, idle, deallocate
    }

    /// The node that asks.
    public var nodeID: String
    /// Why it asks.
    public var reason: Reason

    /// Node `nodeID` asks to be taken away for `reason`.
    public init(nodeID: String, reason: Reason) {
        self.nodeID = nodeID
        self.reason = reason
    }

    enum CodingKeys: String, CodingKey {
        case nodeID = "NodeID"
        case reason = "Reason"
    }
}

extension RoutingKey {
    /// `node.<nodeId>.<event>`: what a node says of itself.
    public static func node(_ nodeID: String, _ event: String) -> String { "node.\(nodeID).\(event)" }
}
