public import DroverModel
public import Foundation
public import Logging
public import PostgresNIO

/// The last heartbeat seen from each node.
public enum NodeHeartbeats {
    /// Records `heartbeat`, received at `receivedAt`. Idempotent, and an older heartbeat
    /// (a redelivery, or one overtaken by a newer one) never replaces a newer one.
    public static func record(_ heartbeat: NodeHeartbeat, receivedAt: Date, on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query(
            """
            INSERT INTO drover_node_heartbeats (node_id, sequence, agent_started_at, last_seen_at)
            VALUES (\(heartbeat.nodeID), \(Int64(heartbeat.sequence)), \(heartbeat.agentStartedAt), \(receivedAt))
            ON CONFLICT (node_id) DO UPDATE SET
                sequence = EXCLUDED.sequence, agent_started_at = EXCLUDED.agent_started_at, last_seen_at = EXCLUDED.last_seen_at
            WHERE (drover_node_heartbeats.agent_started_at, drover_node_heartbeats.sequence)
                < (EXCLUDED.agent_started_at, EXCLUDED.sequence)
            """, logger: logger)
    }
}
