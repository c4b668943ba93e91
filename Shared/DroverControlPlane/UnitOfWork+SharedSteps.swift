import DroverHealth
import DroverMessaging
import DroverModel
import DroverStorage
import Foundation

/// Steps that several use cases take inside their unit of work.
extension UnitOfWork {
    /// Writes `evals` and sends each pending one to the schedulers, in one statement.
    func create(_ evals: [Evaluation]) async throws {
        guard !evals.isEmpty else { return }
        var writes = SQLWrites()
        try evaluations.insert(evals, into: &writes)
        send(try evals.filter { $0.status == .pending }.map(Messages.pending))
        try await execute(writes)
    }

    /// Creates a pending evaluation of each of `jobs`. - Returns: their ids.
    @discardableResult
    func evaluate(_ jobs: [Job], triggeredBy: String, index: Int64, now: Date, nodeID: String? = nil) async throws -> [String] {
        let evals = jobs.map {
            Evaluation(id: newID(), for: $0, triggeredBy: triggeredBy, index: index, now: now.unixNanoseconds, nodeID: nodeID)
        }
        try await create(evals)
        return evals.map(\.id)
    }

    /// Evaluates every job with an allocation still wanted on `nodeID`. - Returns: the evaluations' ids.
    func evaluateJobs(onNode nodeID: String, triggeredBy: String = Evaluation.Trigger.nodeUpdate, index: Int64, now: Date) async throws
        -> [String]
    {
        try await evaluate(try await jobs.withLiveAllocations(onNode: nodeID), triggeredBy: triggeredBy, index: index, now: now, nodeID: nodeID)
    }

    /// Stops `allocation` (read again under its lock, since a node's report may have changed it)
    /// and tells its node.
    func stop(_ allocation: Allocation, description: String, markLost: Bool, index: Int64, now: Date) async throws {
        let current = try await allocations.lock(allocation.id) ?? allocation
        let stopped = current.stopped(description: description, markLost: markLost, index: index, now: now.unixNanoseconds)
        try await allocations.updateStatus(stopped, index: index)
        send(try Messages.update(stopped))
    }

    /// Hands blocked evaluations back to the schedulers: room may have appeared. With
    /// `capacityOnly` (an allocation ended; no node changed) only those that lacked resources
    /// somewhere are retried: one blocked by a constraint no node meets stays blocked.
    /// - Returns: their ids.
    @discardableResult
    func unblockEvaluations(index: Int64, capacityOnly: Bool) async throws -> [String] {
        let evals = try await evaluations.unblock(index: index, capacityOnly: capacityOnly)
        send(try evals.map(Messages.pending))
        return evals.map(\.id)
    }

    /// A node is ready again (registered, back, or eligible): what waited for room may fit there,
    /// every system job is evaluated for it, each allocation replaced while it was away is told
    /// to stop once more, so that nothing it still runs runs twice, and it is sent the cluster's
    /// users, in case it missed a change while away.
    /// - Returns: the evaluations created.
    func nodeBecameReady(_ nodeID: String, index: Int64, now: Date) async throws -> [String] {
        var created = try await unblockEvaluations(index: index, capacityOnly: false)
        created += try await evaluate(
            try await jobs.runningSystemJobs(), triggeredBy: Evaluation.Trigger.nodeUpdate, index: index, now: now, nodeID: nodeID)
        send(try await allocations.lost(onNode: nodeID).map(Messages.update))
        try await sendUsers(to: nodeID, index: index)
        return created
    }

    /// Sends the whole list of users to one node or (nil) all of them.
    func sendUsers(to nodeID: String?, index: Int64) async throws {
        send(try Messages.users(try await users.list(), index: index, to: nodeID))
    }

    /// Records what the control plane did, at `time`.
    func note(
        _ type: String, _ message: String, level: NodeLogMessage.Level = .info, priority: NodeLogMessage.Priority = .low, nodeID: String? = nil,
        jobID: String? = nil, allocID: String? = nil, at time: Date
    ) async throws {
        try await events.record(
            ClusterEvent(time: time, nodeID: nodeID, jobID: jobID, allocID: allocID, type: type, level: level, priority: priority, message: message))
    }

    /// Starts draining node `nodeID` (locked, its drain state `current`) per `spec`: it takes no
    /// new work and the jobs running there are evaluated. - Returns: their evaluations.
    func startDrain(_ nodeID: String, spec: DrainSpec, current: (strategy: DrainStrategy?, last: DrainMetadata?), index: Int64, at time: Date)
        async throws -> [String]
    {
        let nanos = time.unixNanoseconds
        let startedAt = current.strategy?.startedAt ?? nanos
        let strategy = DrainStrategy(drainSpec: spec, forceDeadline: DrainDecision.forceDeadline(for: spec, now: nanos), startedAt: startedAt)
        try await nodes.startDrain(
            nodeID, strategy: strategy, last: DrainMetadata(status: .draining, startedAt: startedAt, updatedAt: nanos), index: index)
        let evaluations = try await evaluateJobs(onNode: nodeID, triggeredBy: Evaluation.Trigger.nodeDrain, index: index, now: time)
        logger.info("Node drain started", metadata: ["node_id": "\(nodeID)", "deadline": "\(spec.deadline)"])
        try await note(ClusterEvent.Kind.drainStarted, "Node \(nodeID) drain started", priority: .medium, nodeID: nodeID, at: time)
        return evaluations
    }

    /// Ends node `nodeID`'s drain (a drain in progress counts as canceled), eligible again if
    /// `markEligible`. - Returns: the evaluations of what may now be placed there.
    func endDrain(_ nodeID: String, current: (strategy: DrainStrategy?, last: DrainMetadata?), markEligible: Bool, index: Int64, at time: Date)
        async throws -> [String]
    {
        let nanos = time.unixNanoseconds
        var last = current.last
        if current.strategy != nil { last = DrainMetadata(status: .canceled, startedAt: current.strategy?.startedAt ?? nanos, updatedAt: nanos) }
        try await nodes.endDrain(nodeID, last: last, markEligible: markEligible, index: index)
        return markEligible ? try await nodeBecameReady(nodeID, index: index, now: time) : []
    }
}
