import DroverHealth
import DroverMessaging
public import DroverModel
public import Foundation
import Logging
import PostgresNIO

/// What a node drain or eligibility change answered: Nomad's `NodeDrainUpdateResponse`.
public struct NodeUpdateResponse: Codable, Sendable, Equatable {
    public var evalIDs: [String]
    public var evalCreateIndex: Int64
    public var nodeModifyIndex: Int64
    public var index: Int64

    enum CodingKeys: String, CodingKey {
        case evalIDs = "EvalIDs"
        case evalCreateIndex = "EvalCreateIndex"
        case nodeModifyIndex = "NodeModifyIndex"
        case index = "Index"
    }
}

/// Drains and scheduling eligibility. A drain makes the node ineligible and evaluates the jobs
/// with allocations there, which the scheduler migrates (see ``DrainDecision`` for the rest).
extension ClusterStore {
    /// Starts (or changes) a drain with `spec`, or cancels it with nil; a cancelled drain leaves
    /// the node ineligible unless `markEligible`.
    /// - Throws: ``ClusterStoreError/notFound(kind:id:)`` for an unknown node.
    public func drain(nodeID: String, spec: DrainSpec?, markEligible: Bool, at now: Date = Date()) async throws -> NodeUpdateResponse {
        try await database.transaction { connection in
            var current: (strategy: DrainStrategy?, last: DrainMetadata?)?
            for try await (strategy, last) in try await connection.query(
                "SELECT drain_strategy::text, last_drain::text FROM drover_nodes WHERE id = \(nodeID) FOR UPDATE", logger: logger
            ).decode((String?, String?).self) {
                current = (try strategy.map { try Self.decode(DrainStrategy.self, $0) }, try last.map { try Self.decode(DrainMetadata.self, $0) })
            }
            guard let current else { throw ClusterStoreError.notFound(kind: "node", id: nodeID) }
            let index = try await Self.nextIndex(connection, logger: logger)
            let nanos = Self.nanoseconds(now)
            var evaluations: [String] = []
            if let spec {
                let startedAt = current.strategy?.startedAt ?? nanos
                let strategy = DrainStrategy(drainSpec: spec, forceDeadline: DrainDecision.forceDeadline(for: spec, now: nanos), startedAt: startedAt)
                let last = DrainMetadata(status: .draining, startedAt: startedAt, updatedAt: nanos)
                try await connection.query(
                    """
                    UPDATE drover_nodes SET drain = true, eligibility = 'ineligible', drain_strategy = \(try Self.encode(strategy))::jsonb,
                        last_drain = \(try Self.encode(last))::jsonb, modify_index = \(index)
                    WHERE id = \(nodeID)
                    """, logger: logger)
                evaluations = try await Self.evaluateJobs(
                    onNode: nodeID, triggeredBy: Evaluation.Trigger.nodeDrain, index: index, on: connection, logger: logger)
                logger.info("Node drain started", metadata: ["node_id": "\(nodeID)", "deadline": "\(spec.deadline)"])
                try await Events.note(
                    ClusterEvent.Kind.drainStarted, "Node \(nodeID) drain started", priority: .medium, nodeID: nodeID, on: connection, logger: logger)
            } else {
                var last = current.last
                if current.strategy != nil {
                    last = DrainMetadata(status: .canceled, startedAt: current.strategy?.startedAt ?? nanos, updatedAt: nanos)
                }
                try await connection.query(
                    """
                    UPDATE drover_nodes SET drain = false, drain_strategy = NULL, last_drain = \(try last.map { try Self.encode($0) })::jsonb,
                        eligibility = CASE WHEN \(markEligible) THEN 'eligible' ELSE eligibility END, modify_index = \(index)
                    WHERE id = \(nodeID)
                    """, logger: logger)
                if markEligible { evaluations = try await Self.nodeBecameReady(nodeID, index: index, on: connection, logger: logger) }
            }
            return NodeUpdateResponse(evalIDs: evaluations, evalCreateIndex: index, nodeModifyIndex: index, index: index)
        }
    }

    /// Marks a node eligible or ineligible for new allocations; what runs there stays.
    /// - Throws: ``ClusterStoreError/invalid(_:)`` when making a draining node eligible, and
    ///   ``ClusterStoreError/notFound(kind:id:)`` for an unknown node.
    public func setEligibility(nodeID: String, eligible: Bool) async throws -> NodeUpdateResponse {
        try await database.transaction { connection in
            var draining: Bool?
            for try await drain in try await connection.query(
                "SELECT drain FROM drover_nodes WHERE id = \(nodeID) FOR UPDATE", logger: logger
            ).decode(Bool.self) {
                draining = drain
            }
            guard let draining else { throw ClusterStoreError.notFound(kind: "node", id: nodeID) }
            if draining && eligible {
                throw ClusterStoreError.invalid([
                    FieldError("Eligibility", "node \(nodeID) is draining; cancel the drain (with MarkEligible) to make it eligible")
                ])
            }
            let index = try await Self.nextIndex(connection, logger: logger)
            try await connection.query(
                """
                UPDATE drover_nodes SET eligibility = \(eligible ? "eligible" : "ineligible"), modify_index = \(index) WHERE id = \(nodeID)
                """, logger: logger)
            let evaluations = eligible ? try await Self.nodeBecameReady(nodeID, index: index, on: connection, logger: logger) : []
            return NodeUpdateResponse(evalIDs: evaluations, evalCreateIndex: index, nodeModifyIndex: index, index: index)
        }
    }

    /// Moves every drain on: stops what ``DrainDecision`` says to stop (evaluating those jobs, so
    /// that what must run elsewhere is placed), and completes the drains with nothing left
    /// running. Nodes another replica is working on are skipped.
    /// - Returns: the ids of the nodes whose drain completed.
    @discardableResult
    public func advanceDrains(at now: Date) async throws -> [String] {
        try await database.transaction { connection in
            var draining: [(id: String, strategy: DrainStrategy)] = []
            for try await (id, strategy) in try await connection.query(
                "SELECT id, drain_strategy::text FROM drover_nodes WHERE drain ORDER BY id FOR UPDATE SKIP LOCKED", logger: logger
            ).decode((String, String).self) {
                draining.append((id, try Self.decode(DrainStrategy.self, strategy)))
            }
            let nanos = Self.nanoseconds(now)
            var completed: [String] = []
            for node in draining {
                var allocations: [DrainDecision.Allocation] = []
                for try await (id, system, wanted, running) in try await connection.query(
                    """
                    SELECT a.id, coalesce(j.type = 'system', false), a.desired_status = 'run', a.client_status IN ('pending', 'running')
                    FROM drover_allocations a LEFT JOIN drover_jobs j ON j.id = a.job_id WHERE a.node_id = \(node.id)
                    """, logger: logger
                ).decode((String, Bool, Bool, Bool).self) {
                    allocations.append(DrainDecision.Allocation(id: id, system: system, wanted: wanted, running: running))
                }
                let outcome = DrainDecision.next(node.strategy, allocations: allocations, now: nanos)
                if !outcome.stop.isEmpty {
                    try await stopForDrain(outcome.stop, now: nanos, on: connection)
                }
                if outcome.complete {
                    let index = try await Self.nextIndex(connection, logger: logger)
                    let last = DrainMetadata(status: .complete, startedAt: node.strategy.startedAt, updatedAt: nanos)
                    try await connection.query(
                        """
                        UPDATE drover_nodes SET drain = false, drain_strategy = NULL, last_drain = \(try Self.encode(last))::jsonb,
                            modify_index = \(index)
                        WHERE id = \(node.id)
                        """, logger: logger)
                    logger.info("Node drain complete", metadata: ["node_id": "\(node.id)"])
                    try await Events.note(
                        ClusterEvent.Kind.drainComplete, "Node \(node.id) drain complete", priority: .medium, nodeID: node.id, on: connection,
                        logger: logger)
                    completed.append(node.id)
                }
            }
            return completed
        }
    }

    private func stopForDrain(_ ids: [String], now: Int64, on connection: PostgresConnection) async throws {
        let index = try await Self.nextIndex(connection, logger: logger)
        var allocations: [Allocation] = []
        for try await spec in try await connection.query(
            "SELECT spec::text FROM drover_allocations WHERE id = ANY(\(ids))", logger: logger
        ).decode(String.self) {
            allocations.append(try Self.decode(Allocation.self, spec))
        }
        for allocation in allocations {
            try await Self.stop(
                allocation, description: "alloc stopped by node drain", markLost: false, index: index, now: now, on: connection, logger: logger)
        }
        var jobs: [Job] = []
        for jobID in Set(allocations.map(\.jobID)).sorted() {
            if let job = try await EvaluationProcessor.readJob(jobID, on: connection, logger: logger), !job.isStopped { jobs.append(job) }
        }
        for job in jobs {
            try await Self.createEvaluation(
                for: job, triggeredBy: Evaluation.Trigger.nodeDrain, index: index, now: now, on: connection, logger: logger)
        }
    }
}
