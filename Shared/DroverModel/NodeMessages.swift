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
