public import DroverModel
public import DroverScheduling
public import DroverStorage
public import Foundation
import Logging
import Metrics

/// Processes evaluations: reads, plans off the event loop, applies with an optimistic check.
///
/// Evaluations come in batches, processed in one transaction: one snapshot of the nodes, one
/// plan per evaluation (each seeing the room the ones before it took, ``EvaluationRound``), and
/// one write of all their allocations, messages and results. One evaluation at a time per job:
/// the evaluations' rows are locked, and so are their jobs (an advisory lock on each id, taken
/// in order), so two scheduler replicas never plan the same job at once; a batch with two
/// evaluations of one job plans them one after the other. Nodes are shared, so plans are
/// applied optimistically: the nodes they place on are locked, their usage read again in the
/// statement that writes the plans, and if another scheduler filled one in the meantime the
/// batch is a conflict, rolled back, and planned again from a fresh snapshot.
public struct EvaluationService: Sendable {
    public enum Outcome: Sendable, Equatable {
        /// The plan was applied; `placed` new allocations, `stopped` stopped, `queued` left waiting.
        case applied(placed: Int, stopped: Int, queued: Int)
        /// The evaluation was already processed (a redelivered message) or is gone.
        case skipped
    }

    struct PlanConflict: Error {}

    public let database: Database
    public var configuration: SchedulerConfiguration
    public var maximumAttempts = 5
    let now: @Sendable () -> Date
    private let conflicts = Counter(label: "drover_plan_conflicts_total")
    private let placed = Counter(label: "drover_allocations_placed_total")

    public init(database: Database, configuration: SchedulerConfiguration = .init(), now: @escaping @Sendable () -> Date = { Date() }) {
        self.database = database
        self.configuration = configuration
        self.now = now
    }

    var logger: Logger { database.logger }

    public func process(evalID: String) async throws -> Outcome {
        try await process(evalIDs: [evalID])[evalID] ?? .skipped
    }

    /// Processes a batch of evaluations in one transaction. - Returns: each one's outcome.
    public func process(evalIDs: [String]) async throws -> [String: Outcome] {
        var attempt = 1
        while true {
            do {
                return try await database.transaction { work in try await processOnce(evalIDs: evalIDs, in: work) }
            } catch is PlanConflict where attempt < maximumAttempts {
                conflicts.increment()
                logger.debug(
                    "Plans conflicted with another scheduler; planning again", metadata: ["evaluations": "\(evalIDs.count)", "attempt": "\(attempt)"])
                attempt += 1
            }
        }
    }

    private func processOnce(evalIDs: [String], in work: UnitOfWork) async throws -> [String: Outcome] {
        let pending = try await work.evaluations.lockPendingWithJobs(evalIDs)
        var outcomes = Dictionary(evalIDs.map { ($0, Outcome.skipped) }, uniquingKeysWith: { first, _ in first })
        for round in EvaluationRound.rounds(pending) {
            for (id, outcome) in try await apply(round, in: work) { outcomes[id] = outcome }
        }
        return outcomes
    }

    /// Reads what `round` needs, plans it off the event loop, and applies the plans.
    private func apply(_ round: [Evaluation], in work: UnitOfWork) async throws -> [String: Outcome] {
        let time = now()
        // Read.
        let (jobs, allocations) = try await work.jobs.withAllocations(round.map(\.jobKey))
        let nodes = try await work.nodes.withUsage()
        // Plan: pure, and as long as the cluster is large.
        let nanos = time.unixNanoseconds
        let configuration = self.configuration
        let plan: @Sendable () -> EvaluationRound = {
            var random = SystemRandomNumberGenerator()
            return EvaluationRound.plan(
                round, jobs: jobs, allocations: allocations, snapshot: Self.snapshot(nodes), configuration: configuration, now: nanos,
                random: &random)
        }
        let planned = Self.plansOffTheLoop(nodes: nodes.count, evaluations: round.count) ? await work.compute(plan) : plan()
        // Apply.
        let placing = planned.entries.compactMap { entry in entry.job.map { ($0, entry.plan) } }.filter { !$0.1.placements.isEmpty }
        let placements = placing.flatMap(\.1.placements)
        let index = try await work.nodes.takeIndexLocking(Array(Set(placements.map(\.nodeID))).sorted())
        for stop in planned.stops {
            try await work.stop(stop.allocation, description: stop.stop.description, markLost: stop.stop.markLost, index: index, now: time)
        }
        // Everything else this round writes goes in one statement.
        var writes = SQLWrites()
        if !placing.isEmpty { try insert(placing, index: index, time: time, into: &writes, work: work) }

        var outcomes: [String: Outcome] = [:]
        var finished: [Evaluation] = []
        var blocked: [Evaluation] = []
        for entry in planned.entries {
            let result = EvaluationResult.resolve(entry.evaluation, job: entry.job, plan: entry.plan, index: index, now: nanos, blockedID: newID())
            finished.append(result.evaluation)
            if let waiting = result.blocked { blocked.append(waiting) }
            let queued = entry.plan.queued.values.reduce(0, +)
            placed.increment(by: entry.plan.placements.count)
            outcomes[result.evaluation.id] = .applied(placed: entry.plan.placements.count, stopped: entry.plan.stops.count, queued: queued)
            logger.debug(
                "Evaluation processed",
                metadata: [
                    "eval_id": "\(result.evaluation.id)", "job_id": "\(result.evaluation.jobID)", "placed": "\(entry.plan.placements.count)",
                    "stopped": "\(entry.plan.stops.count)", "queued": "\(queued)", "status": "\(result.evaluation.status.rawValue)",
                ])
        }
        // One blocked evaluation per job: a new one, or one that waits again, replaces any other.
        // (The statement's clauses see the rows as they were before it: the cancelling does not
        // see the new blocked evaluations, and the evaluations of this round were pending.)
        let reblocked = finished.filter { $0.status == .blocked }
        try work.evaluations.cancelBlocked(of: (blocked + reblocked).map(\.jobKey), except: reblocked.map(\.id), index: index, into: &writes)
        try work.evaluations.insert(blocked, into: &writes)
        try work.evaluations.update(finished, index: index, into: &writes)
        try await writeChecked(writes, placements: placements, snapshot: planned.snapshot, in: work)
        return outcomes
    }

    /// Whether a round plans off the connection's event loop (``UnitOfWork/compute(_:)``), which
    /// the transaction's queries and other connections share. A round of one evaluation plans in
    /// 24 µs on 10 nodes, 161 µs on 100 and 1.5 ms on 1,000 (`placement-bench --round-cost`:
    /// about 1.5 µs a node, for the snapshot, and some 10 µs an evaluation); a hop to the
    /// concurrency pool and back costs 0.05 to 0.9 ms on a 2-core machine (`transaction-bench
    /// --hop`). So a round of a few evaluations on a few hundred nodes plans on the loop, which it
    /// holds for less than the hop would cost; a larger one moves off it.
    static func plansOffTheLoop(nodes: Int, evaluations: Int) -> Bool {
        nodes + 10 * evaluations > 250
    }

    /// The snapshot the placement core plans against.
    static func snapshot(_ nodes: [NodeRepository.WithUsage]) -> ClusterSnapshot {
        ClusterSnapshot(
            nodes: nodes.map(\.node), used: nodes.map { $0.used ?? Resources(cpu: 0, memoryMB: 0, diskMB: 0) }, jobAllocations: [])
    }

    /// Runs `writes` with, in the same statement, a check that every placement still fits its
    /// node: against the usage the statement sees, taken after the nodes were locked, so it
    /// counts what another scheduler that held them committed (and not the allocations `writes`
    /// inserts). - Throws: ``PlanConflict`` when one does not fit; the caller's transaction then
    /// rolls the writes back.
    private func writeChecked(_ writes: SQLWrites, placements: [PlannedAllocation], snapshot: ClusterSnapshot, in work: UnitOfWork) async throws {
        guard !placements.isEmpty else { return try await work.execute(writes) }
        let nodeIDs = Array(Set(placements.map(\.nodeID))).sorted()
        var used = try await work.execute(writes, readingUsageOf: nodeIDs)
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

    /// Adds to `writes` the placed allocations and an event per job, and sends the messages
    /// that hand the allocations to their nodes.
    private func insert(_ plans: [(job: Job, plan: Plan)], index: Int64, time: Date, into writes: inout SQLWrites, work: UnitOfWork) throws {
        let nanos = time.unixNanoseconds
        var rows: [Allocation] = []
        var events: [ClusterEvent] = []
        for (job, plan) in plans {
            for placement in plan.placements {
                var allocation = Allocation(
                    id: newID(), evalID: plan.evalID, name: placement.name, nodeID: placement.nodeID, nodeName: placement.nodeName,
                    jobID: job.id, jobVersion: job.version ?? 0, taskGroup: placement.taskGroup, resources: placement.resources,
                    createIndex: index, modifyIndex: index, createTime: nanos, modifyTime: nanos)
                allocation.namespace = job.namespace ?? "default"
                allocation.previousAllocation = placement.previousAllocation
                allocation.rescheduleTracker = placement.rescheduleTracker
                rows.append(allocation)
                allocation.job = job
                work.send(try Messages.update(allocation))
            }
            let nodes = Set(plan.placements.map(\.nodeName)).sorted().joined(separator: ", ")
            events.append(
                ClusterEvent(
                    time: time, nodeID: nil, jobID: job.id, namespace: job.key.namespace, allocID: nil, type: ClusterEvent.Kind.allocationPlaced,
                    level: .info, priority: .low,
                    message: "Placed \(plan.placements.count) allocation(s) of job \(job.id) on \(nodes)"))
        }
        try work.allocations.insert(rows, index: index, into: &writes)
        try work.events.record(events, into: &writes)
    }

    /// What registering `job` would do, without doing it: Nomad's `job plan`.
    /// - Throws: ``ControlPlaneError/invalid(_:)`` when the job does not validate.
    public func dryRun(_ submitted: Job) async throws -> Plan {
        let errors = submitted.validate()
        guard errors.isEmpty else { throw ControlPlaneError.invalid(errors) }
        var job = submitted.canonicalized()
        job.stop = false
        let (jobs, allocations, nodes) = try await database.transaction { work in
            let (jobs, allocations) = try await work.jobs.withAllocations([job.key])
            return (jobs, allocations, try await work.nodes.withUsage())
        }
        if let current = jobs[job.key] {
            job.version = current.userFields == job.userFields ? current.version : (current.version ?? 0) + 1
        } else {
            job.version = 0
        }
        var snapshot = Self.snapshot(nodes)
        snapshot.jobAllocations = allocations[job.key] ?? []
        var random = SystemRandomNumberGenerator()
        return JobScheduler.plan(
            evalID: "", jobID: job.id, job: job, snapshot: snapshot, configuration: configuration, now: now().unixNanoseconds, random: &random)
    }
}
