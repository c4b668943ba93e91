import DroverMessaging
public import DroverModel
public import DroverScheduling
import Foundation
public import Logging
import Metrics
import PostgresNIO

/// Processes evaluations: reads a snapshot, asks the scheduling core for a plan, and applies it.
///
/// Evaluations come in batches, processed in one transaction: one snapshot of the nodes, one
/// plan per evaluation (each seeing the room the ones before it took), and one write of all
/// their allocations, messages and results. One evaluation at a time per job: the evaluations'
/// rows are locked, and so are their jobs (an advisory lock on each id, taken in order), so two
/// scheduler replicas never plan the same job at once; a batch with two evaluations of one job
/// plans them one after the other. Nodes are shared, so plans are applied optimistically: the
/// nodes they place on are locked, their usage read again, and if another scheduler filled one
/// in the meantime the batch is a conflict, thrown away, and planned again from a fresh
/// snapshot.
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
        try await process(evalIDs: [evalID])[evalID] ?? .skipped
    }

    /// Processes a batch of evaluations in one transaction. - Returns: each one's outcome.
    public func process(evalIDs: [String]) async throws -> [String: Outcome] {
        var attempt = 1
        while true {
            do {
                return try await store.database.transaction { connection in try await processOnce(evalIDs: evalIDs, on: connection) }
            } catch is PlanConflict where attempt < maximumAttempts {
                conflicts.increment()
                logger.debug(
                    "Plans conflicted with another scheduler; planning again", metadata: ["evaluations": "\(evalIDs.count)", "attempt": "\(attempt)"])
                attempt += 1
            }
        }
    }

    /// Every node with the resources live allocations hold on it, in one statement; no job's allocations yet.
    func nodesSnapshot(on connection: PostgresConnection) async throws -> ClusterSnapshot {
        var nodes: [Node] = []
        var usage: [String: Resources] = [:]
        for try await row in try await connection.query(
            """
            SELECT \(unescaped: ClusterStore.nodeFields), used_cpu, used_memory, used_disk FROM drover_nodes LEFT JOIN (
                SELECT node_id, sum(cpu)::bigint AS used_cpu, sum(memory_mb)::bigint AS used_memory, sum(disk_mb)::bigint AS used_disk
                FROM drover_allocations WHERE desired_status = 'run' AND client_status IN ('pending', 'running') GROUP BY node_id
            ) AS used ON used.node_id = drover_nodes.id
            ORDER BY id
            """, logger: logger
        ) {
            let node = try ClusterStore.node(from: row)
            let cells = PostgresRandomAccessRow(row)
            if let cpu = try cells["used_cpu"].decode(Int64?.self), let memory = try cells["used_memory"].decode(Int64?.self),
                let disk = try cells["used_disk"].decode(Int64?.self)
            {
                usage[node.id] = Resources(cpu: Int(cpu), memoryMB: Int(memory), diskMB: Int(disk))
            }
            nodes.append(node)
        }
        return ClusterSnapshot(nodes: nodes, usage: usage, jobAllocations: [])
    }

    /// The jobs `jobIDs` that exist, and every allocation of theirs, live or not, each with the
    /// job version it runs, by job: in one statement.
    func jobsAndAllocations(of jobIDs: [String], on connection: PostgresConnection) async throws -> (
        jobs: [String: Job], allocations: [String: [Allocation]]
    ) {
        var jobs: [String: Job] = [:]
        var allocations: [String: [Allocation]] = [:]
        for try await (isJob, spec, version) in try await connection.query(
            """
            SELECT true, spec::text, NULL::text FROM drover_jobs WHERE id = ANY(\(jobIDs))
            UNION ALL
            SELECT false, a.spec::text, v.spec::text FROM drover_allocations a
            LEFT JOIN drover_job_versions v ON v.job_id = a.job_id AND v.version = a.job_version
            WHERE a.job_id = ANY(\(jobIDs))
            """, logger: logger
        ).decode((Bool, String, String?).self) {
            if isJob {
                let job = try ClusterStore.decode(Job.self, spec)
                jobs[job.id] = job
            } else {
                var allocation = try ClusterStore.decode(Allocation.self, spec)
                allocation.job = try version.map { try ClusterStore.decode(Job.self, $0) }
                allocations[allocation.jobID, default: []].append(allocation)
            }
        }
        return (jobs, allocations)
    }

    static func readJob(_ id: String, on connection: PostgresConnection, logger: Logger) async throws -> Job? {
        // Read to the end: the connection runs the caller's next query only after this one is done.
        var job: Job?
        for try await spec in try await connection.query("SELECT spec::text FROM drover_jobs WHERE id = \(id)", logger: logger).decode(String.self) {
            job = try ClusterStore.decode(Job.self, spec)
        }
        return job
    }

    private func processOnce(evalIDs: [String], on connection: PostgresConnection) async throws -> [String: Outcome] {
        // The evaluations' rows, then their jobs' advisory locks in key order, in one statement.
        var pending: [Evaluation] = []
        for try await spec in try await connection.query(
            """
            WITH evals AS MATERIALIZED (
                    SELECT spec::text AS spec, job_id, status FROM drover_evaluations WHERE id = ANY(\(Array(Set(evalIDs)).sorted()))
                    ORDER BY id FOR UPDATE),
                locks AS MATERIALIZED (
                    SELECT pg_advisory_xact_lock(key) FROM (
                        SELECT DISTINCT hashtextextended('job:' || job_id, 0) AS key FROM evals WHERE status = 'pending' ORDER BY key) AS keys)
            SELECT evals.spec FROM evals CROSS JOIN (SELECT count(*) FROM locks) AS taken
            """, logger: logger
        ).decode(String.self) {
            let eval = try ClusterStore.decode(Evaluation.self, spec)
            if eval.status == .pending { pending.append(eval) }
        }
        var outcomes = Dictionary(evalIDs.map { ($0, Outcome.skipped) }, uniquingKeysWith: { first, _ in first })
        guard !pending.isEmpty else { return outcomes }
        pending.sort { ($0.createIndex, $0.id) < ($1.createIndex, $1.id) }

        // Rounds of one evaluation per job, each planned against what the one before it wrote.
        while !pending.isEmpty {
            var round: [Evaluation] = []
            var later: [Evaluation] = []
            var seen: Set<String> = []
            for eval in pending { if seen.insert(eval.jobID).inserted { round.append(eval) } else { later.append(eval) } }
            for (id, outcome) in try await apply(round, on: connection) { outcomes[id] = outcome }
            pending = later
        }
        return outcomes
    }

    /// Plans and applies one round: evaluations of distinct jobs.
    private func apply(_ round: [Evaluation], on connection: PostgresConnection) async throws -> [String: Outcome] {
        let (jobs, allocations) = try await jobsAndAllocations(of: round.map(\.jobID), on: connection)
        var snapshot = try await nodesSnapshot(on: connection)
        let nodeIndex = Dictionary(snapshot.nodes.enumerated().map { ($1.id, $0) }, uniquingKeysWith: { first, _ in first })
        let now = ClusterStore.nanoseconds()
        var random = SystemRandomNumberGenerator()
        var plans: [(eval: Evaluation, job: Job?, plan: Plan)] = []
        var stopping: [(PlannedStop, Allocation)] = []
        for eval in round {
            snapshot.jobAllocations = allocations[eval.jobID] ?? []
            let plan = JobScheduler.plan(
                evalID: eval.id, jobID: eval.jobID, job: jobs[eval.jobID], snapshot: snapshot, configuration: configuration, now: now,
                random: &random)
            // The next plan sees the room this one takes and frees.
            for placement in plan.placements { snapshot.used[placement.nodeIndex] = snapshot.used[placement.nodeIndex] + placement.resources }
            let byID = Dictionary(snapshot.jobAllocations.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
            for stop in plan.stops {
                guard let allocation = byID[stop.allocationID] else { continue }
                stopping.append((stop, allocation))
                if allocation.isLive, let node = nodeIndex[allocation.nodeID] { snapshot.used[node] = snapshot.used[node] - allocation.resources }
            }
            plans.append((eval, jobs[eval.jobID], plan))
        }

        let placing = plans.compactMap { entry in entry.job.map { ($0, entry.plan) } }.filter { !$0.1.placements.isEmpty }
        let placements = placing.flatMap(\.1.placements)
        let index = try await takeIndex(lockingNodes: Array(Set(placements.map(\.nodeID))).sorted(), on: connection)
        for (stop, allocation) in stopping {
            try await ClusterStore.stop(
                allocation, description: stop.description, markLost: stop.markLost, index: index, now: now, on: connection, logger: logger)
        }
        // Everything else this round writes goes in one statement.
        var writes = SQLWrites()
        if !placing.isEmpty { try insert(placing, index: index, now: now, into: &writes) }

        var outcomes: [String: Outcome] = [:]
        var finished: [Evaluation] = []
        var blocked: [Evaluation] = []
        for (original, job, plan) in plans {
            var eval = original
            eval.modifyIndex = index
            eval.modifyTime = now
            let queued = plan.queued.values.reduce(0, +)
            if !plan.failedGroups.isEmpty, let job, !job.isStopped {
                eval.failedTGAllocs = plan.failedGroups
                eval.queuedAllocations = plan.queued
                if eval.triggeredBy == Evaluation.Trigger.queuedAllocs {
                    // A blocked evaluation that still cannot place everything waits again, as
                    // itself (Nomad's reblock), rather than as a new evaluation.
                    eval.status = .blocked
                    eval.statusDescription = "created to place remaining allocations"
                } else {
                    // One evaluation waits for room; it replaces any older one of the job.
                    let waiting = ClusterStore.newEvaluation(
                        for: job, triggeredBy: Evaluation.Trigger.queuedAllocs, index: index, now: now, status: .blocked, previousEval: eval.id
                    ) { blocked in
                        blocked.failedTGAllocs = plan.failedGroups
                        blocked.queuedAllocations = plan.queued
                        blocked.statusDescription = "created to place remaining allocations"
                    }
                    blocked.append(waiting)
                    eval.status = .complete
                    eval.blockedEval = waiting.id
                    eval.statusDescription = "\(queued) allocation(s) could not be placed"
                }
            } else {
                eval.status = .complete
            }
            finished.append(eval)
            placed.increment(by: plan.placements.count)
            outcomes[eval.id] = .applied(placed: plan.placements.count, stopped: plan.stops.count, queued: queued)
            logger.debug(
                "Evaluation processed",
                metadata: [
                    "eval_id": "\(eval.id)", "job_id": "\(eval.jobID)", "placed": "\(plan.placements.count)", "stopped": "\(plan.stops.count)",
                    "queued": "\(queued)", "status": "\(eval.status.rawValue)",
                ])
        }
        // One blocked evaluation per job: a new one, or one that waits again, replaces any other.
        // (The statement's clauses see the rows as they were before it: the cancelling does not
        // see the new blocked evaluations, and the evaluations of this round were pending.)
        let reblocked = finished.filter { $0.status == .blocked }
        try ClusterStore.cancelBlockedEvaluations(
            of: (blocked + reblocked).map(\.jobID), except: reblocked.map(\.id), index: index, into: &writes)
        try ClusterStore.insert(blocked, into: &writes)
        let specs = try finished.map { try ClusterStore.encode($0) }
        try writes.add(
            """
            UPDATE drover_evaluations e SET status = u.status, spec = u.spec::jsonb, modify_index = \(index)
            FROM unnest(\(finished.map(\.id))::text[], \(finished.map(\.status.rawValue))::text[], \(specs)::text[]) AS u(id, status, spec)
            WHERE e.id = u.id
            """)
        try await writeChecked(writes, placements: placements, snapshot: snapshot, on: connection)
        return outcomes
    }

    /// Takes the round's index and locks `nodeIDs`, the nodes its placements go to, in one
    /// statement, announced as ``ClusterStore/nextIndex(_:logger:)`` does.
    private func takeIndex(lockingNodes nodeIDs: [String], on connection: PostgresConnection) async throws -> Int64 {
        var index: Int64 = 0
        for try await (next, _) in try await connection.query(
            """
            WITH next AS MATERIALIZED (
                    SELECT index, pg_notify('drover_state', index::text) FROM (SELECT nextval('drover_index') AS index) AS taken),
                locked AS MATERIALIZED (SELECT id FROM drover_nodes WHERE id = ANY(\(nodeIDs)) ORDER BY id FOR UPDATE)
            SELECT next.index, (SELECT count(*) FROM locked) FROM next
            """, logger: logger
        ).decode((Int64, Int64).self) {
            index = next
        }
        return index
    }

    /// Runs `writes` with, in the same statement, a check that every placement still fits its
    /// node: against the usage the statement sees, taken after ``takeIndex(lockingNodes:on:)``
    /// locked the nodes, so it counts what another scheduler that held them committed (and not
    /// the allocations `writes` inserts). - Throws: ``PlanConflict`` when one does not fit; the
    /// caller's transaction then rolls the writes back.
    private func writeChecked(
        _ writes: SQLWrites, placements: [PlannedAllocation], snapshot: ClusterSnapshot, on connection: PostgresConnection
    ) async throws {
        guard !placements.isEmpty else { return try await writes.run(on: connection, logger: logger) }
        let nodeIDs = Array(Set(placements.map(\.nodeID))).sorted()
        var used: [String: Resources] = [:]
        for try await (nodeID, cpu, memory, disk) in try await writes.run(
            on: connection, logger: logger,
            selecting: """
                SELECT node_id, sum(cpu)::bigint, sum(memory_mb)::bigint, sum(disk_mb)::bigint FROM drover_allocations
                WHERE node_id = ANY(\(nodeIDs)) AND desired_status = 'run' AND client_status IN ('pending', 'running') GROUP BY node_id
                """
        ).decode((String, Int64, Int64, Int64).self) {
            used[nodeID] = Resources(cpu: Int(cpu), memoryMB: Int(memory), diskMB: Int(disk))
        }
        var capacity: [String: Resources] = [:]
        for placement in placements {
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

    /// Adds to `writes` the placed allocations, the messages that hand them to their nodes, and an event per job.
    private func insert(_ plans: [(job: Job, plan: Plan)], index: Int64, now: Int64, into writes: inout SQLWrites) throws {
        var rows: [Allocation] = []
        var messages: [OutgoingMessage] = []
        var events: [ClusterEvent] = []
        for (job, plan) in plans {
            for placement in plan.placements {
                var allocation = Allocation(
                    id: UUID().uuidString.lowercased(), evalID: plan.evalID, name: placement.name, nodeID: placement.nodeID,
                    nodeName: placement.nodeName, jobID: job.id, jobVersion: job.version ?? 0, taskGroup: placement.taskGroup,
                    resources: placement.resources, createIndex: index, modifyIndex: index, createTime: now, modifyTime: now)
                allocation.previousAllocation = placement.previousAllocation
                allocation.rescheduleTracker = placement.rescheduleTracker
                rows.append(allocation)
                allocation.job = job
                messages.append(try OutgoingMessage(AllocationUpdate(allocation: allocation), routingKey: RoutingKey.allocationUpdated(allocation)))
            }
            let nodes = Set(plan.placements.map(\.nodeName)).sorted().joined(separator: ", ")
            events.append(
                ClusterEvent(
                    time: Date(), nodeID: nil, jobID: job.id, allocID: nil, type: ClusterEvent.Kind.allocationPlaced,
                    level: .info, priority: .low, message: "Placed \(plan.placements.count) allocation(s) of job \(job.id) on \(nodes)"))
        }
        let specs = try rows.map { try ClusterStore.encode($0) }
        try writes.add(
            """
            INSERT INTO drover_allocations (id, job_id, job_version, node_id, eval_id, desired_status, client_status, cpu, memory_mb, disk_mb,
                spec, create_index, modify_index)
            SELECT id, job_id, job_version, node_id, eval_id, 'run', 'pending', cpu, memory_mb, disk_mb, spec::jsonb, \(index), \(index)
            FROM unnest(\(rows.map(\.id))::text[], \(rows.map(\.jobID))::text[], \(rows.map(\.jobVersion))::int[], \(rows.map(\.nodeID))::text[],
                \(rows.map(\.evalID))::text[], \(rows.map(\.resources.cpu))::int[], \(rows.map(\.resources.memoryMB))::int[],
                \(rows.map(\.resources.diskMB))::int[], \(specs)::text[])
                AS a(id, job_id, job_version, node_id, eval_id, cpu, memory_mb, disk_mb, spec)
            """)
        try Outbox.enqueue(messages, into: &writes)
        try Events.record(events, into: &writes)
    }

    /// What registering `job` would do, without doing it: Nomad's `job plan`.
    public func dryRun(_ submitted: Job) async throws -> Plan {
        let errors = submitted.validate()
        guard errors.isEmpty else { throw ClusterStoreError.invalid(errors) }
        var job = submitted.canonicalized()
        job.stop = false
        return try await store.database.transaction { connection in
            let (jobs, allocations) = try await jobsAndAllocations(of: [job.id], on: connection)
            if let current = jobs[job.id] {
                job.version = ClusterStore.userFields(current) == ClusterStore.userFields(job) ? current.version : (current.version ?? 0) + 1
            } else {
                job.version = 0
            }
            var snapshot = try await nodesSnapshot(on: connection)
            snapshot.jobAllocations = allocations[job.id] ?? []
            var random = SystemRandomNumberGenerator()
            return JobScheduler.plan(
                evalID: "", jobID: job.id, job: job, snapshot: snapshot, configuration: configuration, now: ClusterStore.nanoseconds(),
                random: &random)
        }
    }
}
