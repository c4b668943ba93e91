public import DroverHealth
import DroverMessaging
public import DroverModel
public import Foundation
import Logging
import PostgresNIO

/// Node liveness in PostgreSQL: each heartbeat moves the node's deadline on, and a sweep marks
/// down the nodes whose deadline has passed. ``NodeLiveness`` decides; these functions load its
/// state from the node's rows, apply one event under the rows' locks and store what it decided,
/// so any number of health-monitor replicas can share the work.
extension ClusterStore {
    /// Records `beat`, received at `now`, answered with `ttl`: the node is up until
    /// `now + ttl + grace`. A heartbeat older than one already recorded (a redelivery, or one
    /// overtaken) changes nothing. A node that was down is ready again.
    ///
    /// Only the heartbeat's own row is locked (which the sweep skips); the node's row, which plan
    /// applies lock, is locked only when the node was down and comes back.
    /// - Returns: the node's status after the heartbeat; nil for a node that has not registered.
    @discardableResult
    public func heartbeat(_ beat: NodeHeartbeat, at now: Date, ttl: Duration) async throws -> Node.Status? {
        try await database.transaction { connection in
            var liveness = NodeLiveness(status: .ready, expiresAt: nil)
            _ = liveness.heartbeat(at: now, ttl: ttl, grace: heartbeatPolicy.grace)
            var recorded = false
            for try await _ in try await connection.query(
                """
                INSERT INTO drover_node_heartbeats (node_id, sequence, agent_started_at, last_seen_at, ttl_ms, expires_at)
                VALUES (\(beat.nodeID), \(Int64(beat.sequence)), \(beat.agentStartedAt), \(now), \(Self.milliseconds(ttl)), \(liveness.expiresAt))
                ON CONFLICT (node_id) DO UPDATE SET
                    sequence = EXCLUDED.sequence, agent_started_at = EXCLUDED.agent_started_at, last_seen_at = EXCLUDED.last_seen_at,
                    ttl_ms = EXCLUDED.ttl_ms, expires_at = EXCLUDED.expires_at
                WHERE (drover_node_heartbeats.agent_started_at, drover_node_heartbeats.sequence)
                    < (EXCLUDED.agent_started_at, EXCLUDED.sequence)
                RETURNING node_id
                """, logger: logger
            ).decode(String.self) {
                recorded = true
            }
            guard let status = try await Self.nodeStatus(beat.nodeID, lock: false, on: connection, logger: logger) else { return nil }
            guard recorded, status == .down else { return status }
            // Decide again under the node's lock: the sweep or another heartbeat may have moved it.
            let locked = try await Self.nodeStatus(beat.nodeID, lock: true, on: connection, logger: logger) ?? .down
            var current = NodeLiveness(status: locked, expiresAt: nil)
            guard current.heartbeat(at: now, ttl: ttl, grace: heartbeatPolicy.grace) == .cameBack else { return locked }
            let index = try await Self.nextIndex(connection, logger: logger)
            try await Self.setStatus(.ready, description: nil, nodeID: beat.nodeID, index: index, on: connection, logger: logger)
            try await Self.nodeBecameReady(beat.nodeID, index: index, on: connection, logger: logger)
            logger.info("Node is back", metadata: ["node_id": "\(beat.nodeID)"])
            try await Events.note(
                ClusterEvent.Kind.nodeReady, "Node \(beat.nodeID) is back", priority: .medium, nodeID: beat.nodeID, on: connection, logger: logger)
            return .ready
        }
    }

    /// Marks down every node whose deadline has passed by `now` (at most `limit` in one call),
    /// and evaluates each job that had allocations running there, so that they are replaced
    /// per their ReschedulePolicy. Rows another replica is sweeping, or a heartbeat is moving on,
    /// are skipped.
    /// - Returns: the ids of the nodes marked down.
    @discardableResult
    public func expireNodes(at now: Date, limit: Int = 100) async throws -> [String] {
        try await database.transaction { connection in
            var candidates: [(id: String, liveness: NodeLiveness)] = []
            for try await (id, status, expiresAt) in try await connection.query(
                """
                SELECT n.id, n.status, h.expires_at FROM drover_nodes n JOIN drover_node_heartbeats h ON h.node_id = n.id
                WHERE n.status <> 'down' AND h.expires_at <= \(now)
                ORDER BY h.expires_at LIMIT \(limit) FOR UPDATE OF n, h SKIP LOCKED
                """, logger: logger
            ).decode((String, String, Date?).self) {
                candidates.append((id, NodeLiveness(status: Node.Status(rawValue: status) ?? .ready, expiresAt: expiresAt)))
            }
            var expired: [String] = []
            for var candidate in candidates {
                guard case .wentDown(let deadline) = candidate.liveness.check(at: now) else { continue }
                let index = try await Self.nextIndex(connection, logger: logger)
                let description = "no heartbeat since \(deadline.formatted(Date.ISO8601FormatStyle()))"
                try await Self.setStatus(.down, description: description, nodeID: candidate.id, index: index, on: connection, logger: logger)
                let evaluations = try await Self.evaluateJobs(onNode: candidate.id, index: index, on: connection, logger: logger)
                try await Events.note(
                    ClusterEvent.Kind.nodeDown, "Node \(candidate.id) is down: \(description); \(evaluations.count) job(s) to reschedule",
                    level: .error, priority: .high, nodeID: candidate.id, on: connection, logger: logger)
                logger.warning(
                    "Node is down", metadata: ["node_id": "\(candidate.id)", "deadline": "\(deadline)", "evaluations": "\(evaluations.count)"])
                expired.append(candidate.id)
            }
            return expired
        }
    }

    /// Forgets node `nodeID` (it is being removed): every job with allocations still wanted there is
    /// evaluated, which replaces them as lost.
    /// - Returns: whether the node was known.
    @discardableResult
    public func purge(nodeID: String) async throws -> Bool {
        try await database.transaction { connection in
            var found = false
            for try await _ in try await connection.query("SELECT id FROM drover_nodes WHERE id = \(nodeID) FOR UPDATE", logger: logger)
                .decode(String.self)
            {
                found = true
            }
            guard found else { return false }
            let index = try await Self.nextIndex(connection, logger: logger)
            let evaluations = try await Self.evaluateJobs(onNode: nodeID, index: index, on: connection, logger: logger)
            try await connection.query("DELETE FROM drover_nodes WHERE id = \(nodeID)", logger: logger)
            try await connection.query("DELETE FROM drover_node_heartbeats WHERE node_id = \(nodeID)", logger: logger)
            try await Events.note(
                ClusterEvent.Kind.nodePurged, "Node \(nodeID) removed; \(evaluations.count) job(s) to reschedule", level: .warn, priority: .medium,
                nodeID: nodeID, on: connection, logger: logger)
            return true
        }
    }

    /// The node's status; nil for an unknown node. With `lock`, its row stays locked until the transaction ends.
    static func nodeStatus(_ nodeID: String, lock: Bool, on connection: PostgresConnection, logger: Logger) async throws -> Node.Status? {
        var status: Node.Status?
        for try await text in try await connection.query(
            "SELECT status FROM drover_nodes WHERE id = \(nodeID) \(unescaped: lock ? "FOR UPDATE" : "")", logger: logger
        ).decode(String.self) {
            status = Node.Status(rawValue: text) ?? .down
        }
        return status
    }

    /// How many nodes are not down: the fleet size the heartbeat TTL scales with.
    public func liveNodeCount() async throws -> Int {
        for try await count in try await database.client.query("SELECT count(*) FROM drover_nodes WHERE status <> 'down'", logger: logger)
            .decode(Int64.self)
        {
            return Int(count)
        }
        return 0
    }

    static func milliseconds(_ duration: Duration) -> Int64 { Int64((duration.timeInterval * 1000).rounded()) }

    static func setStatus(
        _ status: Node.Status, description: String?, nodeID: String, index: Int64, on connection: PostgresConnection, logger: Logger
    ) async throws {
        try await connection.query(
            """
            UPDATE drover_nodes SET status = \(status.rawValue), modify_index = \(index),
                spec = jsonb_set(spec, '{StatusDescription}', coalesce(to_jsonb(\(description)::text), 'null'::jsonb))
            WHERE id = \(nodeID)
            """, logger: logger)
    }

    /// A node is ready again: what waited for room may fit there, every system job is evaluated
    /// for it, each allocation replaced while it was away is told to stop once more, so that
    /// nothing it still runs runs twice, and it is sent the cluster's users.
    /// - Returns: the evaluations created.
    static func nodeBecameReady(_ nodeID: String, index: Int64, on connection: PostgresConnection, logger: Logger) async throws -> [String] {
        var created = try await unblockEvaluations(index: index, on: connection, logger: logger)
        // Rows are read to the end before the next query: one connection runs one query at a time.
        var systemJobs: [String] = []
        for try await spec in try await connection.query(
            "SELECT spec::text FROM drover_jobs WHERE type = 'system' AND NOT stop", logger: logger
        ).decode(String.self) {
            systemJobs.append(spec)
        }
        let now = nanoseconds()
        for spec in systemJobs {
            let eval = try await createEvaluation(
                for: try decode(Job.self, spec), triggeredBy: Evaluation.Trigger.nodeUpdate, index: index, now: now, nodeID: nodeID,
                on: connection, logger: logger)
            created.append(eval.id)
        }
        var lost: [Allocation] = []
        for try await spec in try await connection.query(
            "SELECT spec::text FROM drover_allocations WHERE node_id = \(nodeID) AND desired_status = 'stop' AND client_status = 'lost'",
            logger: logger
        ).decode(String.self) {
            lost.append(try decode(Allocation.self, spec))
        }
        try await Outbox.enqueue(
            try lost.map { try OutgoingMessage(AllocationUpdate(allocation: $0), routingKey: RoutingKey.allocationUpdated($0)) },
            on: connection, logger: logger)
        // The users it should have, in case it missed a change while away.
        try await sendUsers(to: nodeID, index: index, on: connection, logger: logger)
        return created
    }

    /// Creates an evaluation for every job with an allocation still wanted on `nodeID`.
    static func evaluateJobs(
        onNode nodeID: String, triggeredBy: String = Evaluation.Trigger.nodeUpdate, index: Int64, on connection: PostgresConnection,
        logger: Logger
    ) async throws -> [String] {
        var jobs: [String] = []
        for try await spec in try await connection.query(
            """
            SELECT j.spec::text FROM drover_jobs j WHERE j.id IN (
                SELECT job_id FROM drover_allocations WHERE node_id = \(nodeID) AND desired_status = 'run'
                    AND client_status IN ('pending', 'running'))
            """, logger: logger
        ).decode(String.self) {
            jobs.append(spec)
        }
        let now = nanoseconds()
        var created: [String] = []
        for spec in jobs {
            let eval = try await createEvaluation(
                for: try decode(Job.self, spec), triggeredBy: triggeredBy, index: index, now: now, nodeID: nodeID, on: connection,
                logger: logger)
            created.append(eval.id)
        }
        return created
    }
}
