import DroverHealth
public import DroverModel
public import Foundation
import Logging
import PostgresNIO

extension ClusterStore {
    /// Records a node as its agent reported it, and ready. A node that is new, or back, or
    /// changed, may make room: blocked evaluations are retried, and every system job is
    /// evaluated for it. A registration that records the node counts as a heartbeat with the
    /// minimum TTL, so that a node that registers and then falls silent still goes down; a
    /// repeated one (perhaps long queued, from an agent now gone) changes nothing, its deadline
    /// included.
    /// - Returns: the evaluations this created.
    @discardableResult
    public func register(node reported: Node, at now: Date = Date()) async throws -> [String] {
        try await database.transaction { connection in
            var previous: (spec: Node, status: String)?
            for try await (spec, status) in try await connection.query(
                "SELECT spec::text, status FROM drover_nodes WHERE id = \(reported.id) FOR UPDATE", logger: logger
            ).decode((String, String).self) {
                previous = (try Self.decode(Node.self, spec), status)
            }
            var node = reported
            node.status = .ready
            node.statusDescription = nil
            node.createIndex = nil
            node.modifyIndex = nil
            if let previous, previous.status == Node.Status.ready.rawValue {
                var before = previous.spec
                before.status = .ready
                before.schedulingEligibility = node.schedulingEligibility
                before.drain = node.drain
                before.createIndex = nil
                before.modifyIndex = nil
                if before == node { return [] }  // A repeated registration changes nothing.
            }
            var liveness = NodeLiveness(status: .initializing, expiresAt: nil)
            _ = liveness.heartbeat(at: now, ttl: heartbeatPolicy.minimumTTL, grace: heartbeatPolicy.grace)
            try await connection.query(
                """
                INSERT INTO drover_node_heartbeats (node_id, sequence, agent_started_at, last_seen_at, ttl_ms, expires_at)
                VALUES (\(reported.id), 0, \(Date(timeIntervalSince1970: 0)), \(now), \(Self.milliseconds(heartbeatPolicy.minimumTTL)),
                    \(liveness.expiresAt))
                ON CONFLICT (node_id) DO UPDATE SET expires_at = greatest(drover_node_heartbeats.expires_at, EXCLUDED.expires_at)
                """, logger: logger)
            let index = try await Self.nextIndex(connection, logger: logger)
            try await connection.query(
                """
                INSERT INTO drover_nodes (id, spec, status, create_index, modify_index)
                VALUES (\(node.id), \(try Self.encode(node))::jsonb, 'ready', \(index), \(index))
                ON CONFLICT (id) DO UPDATE SET spec = EXCLUDED.spec, status = 'ready', modify_index = EXCLUDED.modify_index
                """, logger: logger)
            return try await Self.nodeBecameReady(node.id, index: index, on: connection, logger: logger)
        }
    }

    /// Hands blocked evaluations back to the schedulers: room may have appeared. With
    /// `capacityOnly` (an allocation ended; no node changed) only those that lacked resources
    /// somewhere are retried: one blocked by a constraint no node meets stays blocked.
    static func unblockEvaluations(index: Int64, capacityOnly: Bool = false, on connection: PostgresConnection, logger: Logger) async throws
        -> [String]
    {
        var unblocked: [String] = []
        for try await spec in try await connection.query(
            """
            UPDATE drover_evaluations SET status = 'pending', modify_index = \(index),
                spec = jsonb_set(jsonb_set(spec, '{Status}', '"pending"'), '{ModifyIndex}', to_jsonb(\(index)))
            WHERE status = 'blocked' AND (NOT \(capacityOnly) OR EXISTS (
                SELECT 1 FROM jsonb_each(spec->'FailedTGAllocs') AS failed(grp, metric) WHERE (metric->>'NodesExhausted')::int > 0))
            RETURNING spec::text
            """, logger: logger
        ).decode(String.self) {
            unblocked.append(spec)
        }
        // Only now the next query: one connection runs one query at a time.
        var ids: [String] = []
        for spec in unblocked {
            let eval = try decode(Evaluation.self, spec)
            try await enqueue(eval, on: connection, logger: logger)
            ids.append(eval.id)
        }
        return ids
    }

    /// Records what a node reports of one of its allocations.
    ///
    /// A report never brings a finished allocation back: once complete, failed or lost, later
    /// (or redelivered) reports change only its task states. An allocation that has just finished
    /// frees room, so blocked evaluations are retried; one that failed, or a service allocation
    /// that ended, while still wanted is evaluated again so that it can be replaced.
    /// - Returns: whether the report changed anything.
    /// - Throws: ``ClusterStoreError/notFound(kind:id:)`` for an unknown allocation, and
    ///   ``ClusterStoreError/invalid(_:)`` when the allocation belongs to another node.
    @discardableResult
    public func record(_ report: AllocationStatusReport) async throws -> Bool {
        try await database.transaction { connection in
            var found: (Allocation, Int64)?
            for try await (spec, sequence) in try await connection.query(
                "SELECT spec::text, report_sequence FROM drover_allocations WHERE id = \(report.allocID) FOR UPDATE", logger: logger
            ).decode((String, Int64).self) {
                found = (try Self.decode(Allocation.self, spec), sequence)
            }
            guard var (allocation, sequence) = found else { throw ClusterStoreError.notFound(kind: "allocation", id: report.allocID) }
            guard allocation.nodeID == report.nodeID else {
                throw ClusterStoreError.invalid([FieldError("NodeID", "allocation \(report.allocID) is not on node \(report.nodeID)")])
            }
            // Reports may arrive out of order; an older one than recorded says nothing new.
            if report.sequence > 0 && report.sequence <= sequence { return false }
            sequence = max(sequence, report.sequence)
            let wasTerminal = allocation.clientStatus.isTerminal
            if wasTerminal && (!report.clientStatus.isTerminal || allocation.taskStates == report.taskStates) { return false }
            if !wasTerminal {
                if allocation.clientStatus == report.clientStatus && allocation.taskStates == report.taskStates { return false }
                allocation.clientStatus = report.clientStatus
                allocation.clientDescription = report.clientDescription
            }
            allocation.taskStates = report.taskStates
            let index = try await Self.nextIndex(connection, logger: logger)
            let now = Self.nanoseconds()
            allocation.modifyIndex = index
            allocation.modifyTime = now
            try await connection.query(
                """
                UPDATE drover_allocations SET client_status = \(allocation.clientStatus.rawValue), spec = \(try Self.encode(allocation))::jsonb,
                    modify_index = \(index), report_sequence = \(sequence)
                WHERE id = \(allocation.id)
                """, logger: logger)
            if !wasTerminal && allocation.clientStatus == .running, let previous = allocation.previousAllocation,
                try await Self.isMigrating(previous, on: connection, logger: logger),
                let job = try await EvaluationProcessor.readJob(allocation.jobID, on: connection, logger: logger)
            {
                // A replacement for an allocation on a draining node runs: the old one may stop now.
                try await Self.createEvaluation(
                    for: job, triggeredBy: Evaluation.Trigger.nodeDrain, index: index, now: now, on: connection, logger: logger)
            }
            if !wasTerminal && allocation.clientStatus == .failed {
                try await Events.note(
                    ClusterEvent.Kind.allocationFailed, "Allocation \(allocation.name) failed: \(allocation.clientDescription)", level: .warn,
                    priority: .medium, nodeID: allocation.nodeID, jobID: allocation.jobID, allocID: allocation.id, on: connection, logger: logger)
            }
            if !wasTerminal && allocation.clientStatus.isTerminal {
                _ = try await Self.unblockEvaluations(index: index, capacityOnly: true, on: connection, logger: logger)
                if allocation.desiredStatus == .run,
                    let job = try await EvaluationProcessor.readJob(allocation.jobID, on: connection, logger: logger), !job.isStopped,
                    allocation.clientStatus == .failed || (allocation.clientStatus == .complete && job.jobType == .service)
                {
                    try await Self.createEvaluation(
                        for: job, triggeredBy: Evaluation.Trigger.allocFailure, index: index, now: now, on: connection, logger: logger)
                }
            }
            return true
        }
    }

    /// Whether allocation `id` still runs on a draining node, waiting for its replacement.
    static func isMigrating(_ id: String, on connection: PostgresConnection, logger: Logger) async throws -> Bool {
        var migrating = false
        for try await _ in try await connection.query(
            """
            SELECT 1 FROM drover_allocations a JOIN drover_nodes n ON n.id = a.node_id
            WHERE a.id = \(id) AND n.drain AND a.desired_status = 'run' AND a.client_status IN ('pending', 'running')
            """, logger: logger
        ).decode(Int.self) {
            migrating = true
        }
        return migrating
    }
}
