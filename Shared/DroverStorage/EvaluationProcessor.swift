import DroverMessaging
public import DroverModel
public import DroverScheduling
import Foundation
public import Logging
import Metrics
import PostgresNIO

/// Processes evaluations: reads a snapshot, asks the scheduling core for a plan, and applies it.
///
/// One evaluation at a time per job: the evaluation's row is locked, and so is the job (an
/// advisory lock on its id), so two scheduler replicas never plan the same job at once. Nodes
/// are shared, so a plan is applied optimistically: the nodes it places on are locked, their
/// usage read again, and if another scheduler filled one in the meantime the plan is a
/// conflict, thrown away, and planned again from a fresh snapshot.
public struct EvaluationProcessor: Sendable {
    public enum Outcome: Sendable, Equatable {
        /// The plan was applied; `placed` new allocations, `stopped` stopped, `queued` left waiting.
        case applied(placed: Int, stopped: Int, queued: Int)
        /// The evaluation was already processed (a redelivered message) or is gone.
        case skipped
    }

    struct PlanConflict: Error {}

    public let store: ClusterStore
    public var configuration: SchedulerConfiguration
    public var maximumAttempts = 5
    private let conflicts = Counter(label: "drover_plan_conflicts_total")
    private let placed = Counter(label: "drover_allocations_placed_total")

    public init(store: ClusterStore, configuration: SchedulerConfiguration = .init()) {
        self.store = store
        self.configuration = configuration
    }

    var logger: Logger { store.database.logger }

    public func process(evalID: String) async throws -> Outcome {
        var attempt = 1
        while true {
            do {
                return try await store.database.transaction { connection in try await processOnce(evalID: evalID, on: connection) }
            } catch is PlanConflict where attempt < maximumAttempts {
                conflicts.increment()
                logger.debug("Plan conflicted with another scheduler; planning again", metadata: ["eval_id": "\(evalID)", "attempt": "\(attempt)"])
                attempt += 1
            }
        }
    }

    /// The snapshot an evaluation of `job` would be planned against, read on `connection`.
    func snapshot(jobID: String, on connection: PostgresConnection) async throws -> ClusterSnapshot {
        let nodes = try await store.readNodes("\(unescaped: ClusterStore.nodeColumns) ORDER BY id", on: connection)
        var usage: [String: Resources] = [:]
        for try await (nodeID, cpu, memory, disk) in try await connection.query(
            """
            SELECT node_id, sum(cpu)::bigint, sum(memory_mb)::bigint, sum(disk_mb)::bigint FROM drover_allocations
            WHERE desired_status = 'run' AND client_status IN ('pending', 'running') GROUP BY node_id
            """, logger: logger
        ).decode((String, Int64, Int64, Int64).self) {
            usage[nodeID] = Resources(cpu: Int(cpu), memoryMB: Int(memory), diskMB: Int(disk))
        }
        var allocations: [Allocation] = []
        for try await (spec, job) in try await connection.query(
            """
            SELECT a.spec::text, v.spec::text FROM drover_allocations a
            LEFT JOIN drover_job_versions v ON v.job_id = a.job_id AND v.version = a.job_version
            WHERE a.job_id = \(jobID)
            """, logger: logger
        ).decode((String, String?).self) {
            var allocation = try ClusterStore.decode(Allocation.self, spec)
            allocation.job = try job.map { try ClusterStore.decode(Job.self, $0) }
            allocations.append(allocation)
        }
        return ClusterSnapshot(nodes: nodes, usage: usage, jobAllocations: allocations)
    }

    static func readJob(_ id: String, on connection: PostgresConnection, logger: Logger) async throws -> Job? {
        // Read to the end: the connection runs the caller's next query only after this one is done.
        var found: String?
        for try await spec in try await connection.query("SELECT spec::text FROM drover_jobs WHERE id = \(id)", logger: logger).decode(String.self) {
            found = spec
        }
        return try found.map { try ClusterStore.decode(Job.self, $0) }
    }

    private func processOnce(evalID: String, on connection: PostgresConnection) async throws -> Outcome {
        var found: Evaluation?
        for try await spec in try await connection.query(
            "SELECT spec::text FROM drover_evaluations WHERE id = \(evalID) FOR UPDATE", logger: logger
        ).decode(String.self) {
            found = try ClusterStore.decode(Evaluation.self, spec)
        }
        guard var eval = found, eval.status == .pending else { return .skipped }
        try await connection.query("SELECT pg_advisory_xact_lock(hashtextextended(\("job:" + eval.jobID), 0))", logger: logger)

        let job = try await Self.readJob(eval.jobID, on: connection, logger: logger)
        let snapshot = try await snapshot(jobID: eval.jobID, on: connection)
        let now = ClusterStore.nanoseconds()
        var random = SystemRandomNumberGenerator()
        let plan = JobScheduler.plan(
            evalID: eval.id, jobID: eval.jobID, job: job, snapshot: snapshot, configuration: configuration, now: now, random: &random)

        let index = try await ClusterStore.nextIndex(connection, logger: logger)
        let byID = Dictionary(snapshot.jobAllocations.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        for stop in plan.stops {
            guard let allocation = byID[stop.allocationID] else { continue }
            try await ClusterStore.stop(
                allocation, description: stop.description, markLost: stop.markLost, index: index, now: now, on: connection, logger: logger)
        }
        if let job, !plan.placements.isEmpty {
            try await checkCapacity(plan, snapshot: snapshot, on: connection)
            try await insert(plan, job: job, index: index, now: now, on: connection)
        }
        placed.increment(by: plan.placements.count)

        eval.status = .complete
        eval.modifyIndex = index
        eval.modifyTime = now
        let queued = plan.queued.values.reduce(0, +)
        if !plan.failedGroups.isEmpty, let job, !job.isStopped {
            // One blocked evaluation per job waits for room; it replaces any older one.
            try await connection.query(
                "UPDATE drover_evaluations SET status = 'canceled', modify_index = \(index) WHERE job_id = \(eval.jobID) AND status = 'blocked'",
                logger: logger)
            var blocked = try await ClusterStore.createEvaluation(
                for: job, triggeredBy: Evaluation.Trigger.queuedAllocs, index: index, now: now, status: .blocked, previousEval: eval.id,
                on: connection, logger: logger)
            blocked.failedTGAllocs = plan.failedGroups
            blocked.queuedAllocations = plan.queued
            blocked.statusDescription = "created to place remaining allocations"
            try await connection.query(
                "UPDATE drover_evaluations SET spec = \(try ClusterStore.encode(blocked))::jsonb WHERE id = \(blocked.id)", logger: logger)
            eval.blockedEval = blocked.id
            eval.failedTGAllocs = plan.failedGroups
            eval.queuedAllocations = plan.queued
            eval.statusDescription = "\(queued) allocation(s) could not be placed"
        }
        try await connection.query(
            "UPDATE drover_evaluations SET status = 'complete', spec = \(try ClusterStore.encode(eval))::jsonb, modify_index = \(index) WHERE id = \(eval.id)",
            logger: logger)
        logger.info(
            "Evaluation processed",
            metadata: [
                "eval_id": "\(eval.id)", "job_id": "\(eval.jobID)", "placed": "\(plan.placements.count)", "stopped": "\(plan.stops.count)",
                "queued": "\(queued)",
            ])
        return .applied(placed: plan.placements.count, stopped: plan.stops.count, queued: queued)
    }

    /// Locks the nodes the plan places on and checks, against their usage now, that every
    /// placement still fits. - Throws: ``PlanConflict`` when one does not.
    private func checkCapacity(_ plan: Plan, snapshot: ClusterSnapshot, on connection: PostgresConnection) async throws {
        let nodeIDs = Array(Set(plan.placements.map(\.nodeID))).sorted()
        try await connection.query("SELECT id FROM drover_nodes WHERE id = ANY(\(nodeIDs)) ORDER BY id FOR UPDATE", logger: logger)
        var used: [String: Resources] = [:]
        for try await (nodeID, cpu, memory, disk) in try await connection.query(
            """
            SELECT node_id, sum(cpu)::bigint, sum(memory_mb)::bigint, sum(disk_mb)::bigint FROM drover_allocations
            WHERE node_id = ANY(\(nodeIDs)) AND desired_status = 'run' AND client_status IN ('pending', 'running') GROUP BY node_id
            """, logger: logger
        ).decode((String, Int64, Int64, Int64).self) {
            used[nodeID] = Resources(cpu: Int(cpu), memoryMB: Int(memory), diskMB: Int(disk))
        }
        var capacity: [String: Resources] = [:]
        for placement in plan.placements {
            used[placement.nodeID] = (used[placement.nodeID] ?? Resources(cpu: 0, memoryMB: 0)) + placement.resources
            capacity[placement.nodeID] = snapshot.nodes[placement.nodeIndex].resources
        }
        for (nodeID, total) in used {
            guard let capacity = capacity[nodeID] else { continue }
            if total.cpu > capacity.cpu || total.memoryMB > capacity.memoryMB || total.diskMB > capacity.diskMB {
                throw PlanConflict()
            }
        }
    }

    private func insert(_ plan: Plan, job: Job, index: Int64, now: Int64, on connection: PostgresConnection) async throws {
        var messages: [OutgoingMessage] = []
        for placement in plan.placements {
            var allocation = Allocation(
                id: UUID().uuidString.lowercased(), evalID: plan.evalID, name: placement.name, nodeID: placement.nodeID,
                nodeName: placement.nodeName, jobID: job.id, jobVersion: job.version ?? 0, taskGroup: placement.taskGroup,
                resources: placement.resources, createIndex: index, modifyIndex: index, createTime: now, modifyTime: now)
            allocation.previousAllocation = placement.previousAllocation
            allocation.rescheduleTracker = placement.rescheduleTracker
            try await connection.query(
                """
                INSERT INTO drover_allocations (id, job_id, job_version, node_id, eval_id, desired_status, client_status, cpu, memory_mb, disk_mb,
                    spec, create_index, modify_index)
                VALUES (\(allocation.id), \(job.id), \(allocation.jobVersion), \(allocation.nodeID), \(plan.evalID), 'run', 'pending',
                    \(allocation.resources.cpu), \(allocation.resources.memoryMB), \(allocation.resources.diskMB),
                    \(try ClusterStore.encode(allocation))::jsonb, \(index), \(index))
                """, logger: logger)
            allocation.job = job
            messages.append(try OutgoingMessage(AllocationUpdate(allocation: allocation), routingKey: RoutingKey.allocationUpdated(allocation)))
        }
        try await Outbox.enqueue(messages, on: connection, logger: logger)
        if !plan.placements.isEmpty {
            let nodes = Set(plan.placements.map(\.nodeName)).sorted().joined(separator: ", ")
            try await Events.note(
                ClusterEvent.Kind.allocationPlaced, "Placed \(plan.placements.count) allocation(s) of job \(job.id) on \(nodes)", jobID: job.id,
                on: connection, logger: logger)
        }
    }

    /// What registering `job` would do, without doing it: Nomad's `job plan`.
    public func dryRun(_ submitted: Job) async throws -> Plan {
        let errors = submitted.validate()
        guard errors.isEmpty else { throw ClusterStoreError.invalid(errors) }
        var job = submitted.canonicalized()
        job.stop = false
        return try await store.database.transaction { connection in
            if let current = try await Self.readJob(job.id, on: connection, logger: logger) {
                job.version = ClusterStore.userFields(current) == ClusterStore.userFields(job) ? current.version : (current.version ?? 0) + 1
            } else {
                job.version = 0
            }
            let snapshot = try await snapshot(jobID: job.id, on: connection)
            var random = SystemRandomNumberGenerator()
            return JobScheduler.plan(
                evalID: "", jobID: job.id, job: job, snapshot: snapshot, configuration: configuration, now: ClusterStore.nanoseconds(),
                random: &random)
        }
    }
}
