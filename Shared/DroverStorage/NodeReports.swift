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
        let evals = try unblocked.map { try decode(Evaluation.self, $0) }
        try await Outbox.enqueue(try evals.map(pendingMessage), on: connection, logger: logger)
        return evals.map(\.id)
    }

    /// Records what a node reports of one of its allocations.
    /// - Returns: whether the report changed anything.
    /// - Throws: ``ClusterStoreError/notFound(kind:id:)`` for an unknown allocation, and
    ///   ``ClusterStoreError/invalid(_:)`` when the allocation belongs to another node.
    @discardableResult
    public func record(_ report: AllocationStatusReport) async throws -> Bool {
        let outcome = try await record([report])
        if let refused = outcome.refused[0] { throw refused }
        return outcome.changed > 0
    }

    /// What recording a batch of reports did.
    public struct ReportsRecorded: Sendable, Equatable {
        /// Allocations whose record changed.
        public var changed = 0
        /// Reports refused, by position: an unknown allocation, or one on another node.
        public var refused: [Int: ClusterStoreError] = [:]
    }

    /// Records what nodes report of their allocations, in one transaction.
    ///
    /// Reports of one allocation are applied in the order of their sequence (they may arrive out
    /// of order; an older one than recorded says nothing new), and each allocation is written
    /// once. A report never brings a finished allocation back: once complete, failed or lost,
    /// later (or redelivered) reports change only its task states. Allocations that have just
    /// finished free room, so blocked evaluations are retried; a job with one that failed, or
    /// with a service allocation that ended, while still wanted, is evaluated again so that it
    /// can be replaced.
    public func record(_ reports: [AllocationStatusReport]) async throws -> ReportsRecorded {
        guard !reports.isEmpty else { return ReportsRecorded() }
        return try await database.transaction { connection in
            let ids = Array(Set(reports.map(\.allocID))).sorted()
            var current: [String: (allocation: Allocation, sequence: Int64)] = [:]
            for try await (spec, sequence) in try await connection.query(
                "SELECT spec::text, report_sequence FROM drover_allocations WHERE id = ANY(\(ids)) ORDER BY id FOR UPDATE", logger: logger
            ).decode((String, Int64).self) {
                let allocation = try Self.decode(Allocation.self, spec)
                current[allocation.id] = (allocation, sequence)
            }
            var outcome = ReportsRecorded()
            var changed: [String] = []  // In the order first changed; `changedIDs` holds the same.
            var changedIDs: Set<String> = []
            var started: [String] = []
            var finished: [String] = []
            for position in reports.indices.sorted(by: { (reports[$0].sequence, $0) < (reports[$1].sequence, $1) }) {
                let report = reports[position]
                guard var entry = current[report.allocID] else {
                    outcome.refused[position] = .notFound(kind: "allocation", id: report.allocID)
                    continue
                }
                guard entry.allocation.nodeID == report.nodeID else {
                    outcome.refused[position] = .invalid([FieldError("NodeID", "allocation \(report.allocID) is not on node \(report.nodeID)")])
                    continue
                }
                let before = entry.allocation.clientStatus
                guard Self.apply(report, to: &entry.allocation, sequence: &entry.sequence) else { continue }
                current[report.allocID] = entry
                if changedIDs.insert(report.allocID).inserted { changed.append(report.allocID) }
                let after = entry.allocation.clientStatus
                if before != .running && !before.isTerminal && after == .running { started.append(report.allocID) }
                if !before.isTerminal && after.isTerminal { finished.append(report.allocID) }
            }
            outcome.changed = changed.count
            guard !changed.isEmpty else { return outcome }

            let index = try await Self.nextIndex(connection, logger: logger)
            let now = Self.nanoseconds()
            var statuses: [String] = []
            var specs: [String] = []
            var sequences: [Int64] = []
            for id in changed {
                guard var entry = current[id] else { continue }
                entry.allocation.modifyIndex = index
                entry.allocation.modifyTime = now
                current[id] = entry
                statuses.append(entry.allocation.clientStatus.rawValue)
                specs.append(try Self.encode(entry.allocation))
                sequences.append(entry.sequence)
            }
            try await connection.query(
                """
                UPDATE drover_allocations a SET client_status = u.status, spec = u.spec::jsonb, modify_index = \(index), report_sequence = u.sequence
                FROM unnest(\(changed)::text[], \(statuses)::text[], \(specs)::text[], \(sequences)::bigint[]) AS u(id, status, spec, sequence)
                WHERE a.id = u.id
                """, logger: logger)

            for id in started {
                guard let allocation = current[id]?.allocation, let previous = allocation.previousAllocation,
                    try await Self.isMigrating(previous, on: connection, logger: logger),
                    let job = try await EvaluationProcessor.readJob(allocation.jobID, on: connection, logger: logger)
                else { continue }
                // A replacement for an allocation on a draining node runs: the old one may stop now.
                try await Self.createEvaluation(
                    for: job, triggeredBy: Evaluation.Trigger.nodeDrain, index: index, now: now, on: connection, logger: logger)
            }
            guard !finished.isEmpty else { return outcome }
            let ended = finished.compactMap { current[$0]?.allocation }
            for allocation in ended where allocation.clientStatus == .failed {
                try await Events.note(
                    ClusterEvent.Kind.allocationFailed, "Allocation \(allocation.name) failed: \(allocation.clientDescription)", level: .warn,
                    priority: .medium, nodeID: allocation.nodeID, jobID: allocation.jobID, allocID: allocation.id, on: connection, logger: logger)
            }
            _ = try await Self.unblockEvaluations(index: index, capacityOnly: true, on: connection, logger: logger)
            // A job whose allocation failed, or whose service allocation ended, is evaluated again
            // (once, however many of its allocations ended).
            let wanted = ended.filter { $0.desiredStatus == .run && ($0.clientStatus == .failed || $0.clientStatus == .complete) }
            guard !wanted.isEmpty else { return outcome }
            let jobIDs = Array(Set(wanted.map(\.jobID))).sorted()
            var services: Set<String> = []
            var live: Set<String> = []
            for try await (id, type, stopped) in try await connection.query(
                "SELECT id, type, stop FROM drover_jobs WHERE id = ANY(\(jobIDs))", logger: logger
            ).decode((String, String, Bool).self) {
                if !stopped { live.insert(id) }
                if type == JobType.service.rawValue { services.insert(id) }
            }
            let reevaluate = Set(
                wanted.filter { live.contains($0.jobID) && ($0.clientStatus == .failed || services.contains($0.jobID)) }.map(\.jobID))
            for jobID in reevaluate.sorted() {
                guard let job = try await EvaluationProcessor.readJob(jobID, on: connection, logger: logger) else { continue }
                try await Self.createEvaluation(
                    for: job, triggeredBy: Evaluation.Trigger.allocFailure, index: index, now: now, on: connection, logger: logger)
            }
            return outcome
        }
    }

    /// Applies one report to an allocation's record. - Returns: whether it changed anything.
    static func apply(_ report: AllocationStatusReport, to allocation: inout Allocation, sequence: inout Int64) -> Bool {
        // Reports may arrive out of order; an older one than recorded says nothing new.
        if report.sequence > 0 && report.sequence <= sequence { return false }
        let wasTerminal = allocation.clientStatus.isTerminal
        if wasTerminal && (!report.clientStatus.isTerminal || allocation.taskStates == report.taskStates) { return false }
        if !wasTerminal {
            if allocation.clientStatus == report.clientStatus && allocation.taskStates == report.taskStates { return false }
            allocation.clientStatus = report.clientStatus
            allocation.clientDescription = report.clientDescription
        }
        allocation.taskStates = report.taskStates
        sequence = max(sequence, report.sequence)
        return true
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
