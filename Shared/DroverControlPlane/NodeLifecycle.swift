public import DroverHealth
public import DroverModel
public import DroverStorage
public import Foundation
import Logging

/// A node's life as the control plane sees it: registration, heartbeats, the liveness sweep,
/// removal, drain and eligibility, and what the node says of its own health. The decisions are
/// the pure cores of `DroverHealth` (``NodeLiveness``, ``DrainDecision``, ``HealthDecision``);
/// this applies what they return, one unit of work per change, so any number of health-monitor
/// replicas can share the work.
public struct NodeLifecycle: Sendable {
    public let database: Database
    /// How long nodes may stay silent before they are down.
    public let heartbeatPolicy: HeartbeatPolicy
    let now: @Sendable () -> Date
    var logger: Logger { database.logger }

    public init(database: Database, heartbeatPolicy: HeartbeatPolicy = HeartbeatPolicy(), now: @escaping @Sendable () -> Date = { Date() }) {
        self.database = database
        self.heartbeatPolicy = heartbeatPolicy
        self.now = now
    }

    // MARK: Registration and liveness

    /// Records a node as its agent reported it, and ready. A node that is new, or back, or
    /// changed, may make room: blocked evaluations are retried, and every system job is
    /// evaluated for it. A registration that records the node counts as a heartbeat with the
    /// minimum TTL, so that a node that registers and then falls silent still goes down; a
    /// repeated one (perhaps long queued, from an agent now gone) changes nothing, its deadline
    /// included.
    /// - Returns: the evaluations this created.
    @discardableResult
    public func register(node reported: Node, at time: Date? = nil) async throws -> [String] {
        let problems = reported.validate()
        guard problems.isEmpty else { throw ControlPlaneError.invalid(problems) }
        let time = time ?? now()
        return try await database.transaction { work in
            // The node's row first: a purge under way holds it, and the tombstone read after it
            // then sees what that purge committed. Read before, it missed a purge that committed
            // meanwhile, and the registration made the purged node again.
            let previous = try await work.nodes.lockReported(reported.id)
            // A purged node stays gone until it enrolls again, whatever was still queued.
            if let purged = try await work.nodes.tombstone(reported.id) {
                throw ControlPlaneError.invalid([
                    FieldError(
                        "Node.ID",
                        "node \(reported.id) was purged at \(purged.formatted(Date.ISO8601FormatStyle())); it registers again once it enrolls again (drover node enroll)"
                    )
                ])
            }
            if Registration.isRepeat(reported, previous: previous?.spec, status: previous?.status) { return [] }
            let node = Registration.recorded(reported)
            var liveness = NodeLiveness(status: .initializing, expiresAt: nil)
            _ = liveness.heartbeat(at: time, ttl: heartbeatPolicy.minimumTTL, grace: heartbeatPolicy.grace)
            try await work.nodes.recordRegistration(reported.id, at: time, ttl: heartbeatPolicy.minimumTTL, expiresAt: liveness.expiresAt)
            let index = try await work.nextIndex()
            try await work.nodes.upsertReady(node, index: index)
            try await applyClusterInit(of: node, previous: previous?.spec, in: work, index: index, at: time)
            return try await work.nodeBecameReady(node.id, index: index, now: time)
        }
    }

    /// A node whose cluster-init failed takes no work: it becomes ineligible when it reports the
    /// failure, and eligible again when a later converge succeeds.
    private func applyClusterInit(of node: Node, previous: Node?, in work: UnitOfWork, index: Int64, at time: Date) async throws {
        guard let state = node.clusterInit, state != previous?.clusterInit else { return }
        let failedBefore = previous?.clusterInit?.status == .failed
        switch state.status {
        case .failed:
            if !failedBefore { try await work.nodes.setEligibility(node.id, eligible: false, index: index) }
            try await work.note(
                ClusterEvent.Kind.clusterInit, "Node \(node.id): cluster-init failed, the node takes no work: \(state.detail)", level: .error,
                priority: .high, nodeID: node.id, at: time)
        case .ready:
            if failedBefore { try await work.nodes.setEligibility(node.id, eligible: true, index: index) }
            // A node with nothing assigned says so on every start: not an event.
            guard failedBefore || !state.specs.isEmpty else { return }
            try await work.note(
                ClusterEvent.Kind.clusterInit, "Node \(node.id): cluster-init converged (\(state.detail))", priority: .low, nodeID: node.id, at: time)
        }
    }

    /// Records `beat`, received at `time`, answered with `ttl`: the node is up until
    /// `time + ttl + grace`. A heartbeat older than one already recorded (a redelivery, or one
    /// overtaken) changes nothing. A node that was down is ready again.
    ///
    /// Only the heartbeat's own row is locked (which the sweep skips); the node's row, which plan
    /// applies lock, is locked only when the node was down and comes back.
    /// - Returns: the node's status after the heartbeat; nil for a node that has not registered.
    @discardableResult
    public func heartbeat(_ beat: NodeHeartbeat, at time: Date, ttl: Duration) async throws -> Node.Status? {
        // The sequence is kept in a bigint: one past it is refused here, not trapped on.
        guard beat.sequence <= UInt64(Int64.max) else {
            throw ControlPlaneError.invalid([FieldError("Sequence", "must be at most \(Int64.max), got \(beat.sequence)")])
        }
        return try await database.transaction { work in
            var liveness = NodeLiveness(status: .ready, expiresAt: nil)
            _ = liveness.heartbeat(at: time, ttl: ttl, grace: heartbeatPolicy.grace)
            let recorded = try await work.nodes.recordHeartbeat(beat, at: time, ttl: ttl, expiresAt: liveness.expiresAt)
            guard let status = try await work.nodes.status(beat.nodeID, lock: false) else { return nil }
            guard recorded, status == .down else { return status }
            // Decide again under the node's lock: the sweep or another heartbeat may have moved it.
            let locked = try await work.nodes.status(beat.nodeID, lock: true) ?? .down
            var current = NodeLiveness(status: locked, expiresAt: nil)
            guard current.heartbeat(at: time, ttl: ttl, grace: heartbeatPolicy.grace) == .cameBack else { return locked }
            let index = try await work.nextIndex()
            try await work.nodes.setStatus(.ready, description: nil, nodeID: beat.nodeID, index: index)
            _ = try await work.nodeBecameReady(beat.nodeID, index: index, now: time)
            logger.info("Node is back", metadata: ["node_id": "\(beat.nodeID)"])
            try await work.note(ClusterEvent.Kind.nodeReady, "Node \(beat.nodeID) is back", priority: .medium, nodeID: beat.nodeID, at: time)
            return .ready
        }
    }

    /// Marks down every node whose deadline has passed by `time` (at most `limit` in one call),
    /// and evaluates each job that had allocations running there, so that they are replaced
    /// per their ReschedulePolicy. Rows another replica is sweeping, or a heartbeat is moving on,
    /// are skipped.
    /// - Returns: the ids of the nodes marked down.
    @discardableResult
    public func expireNodes(at time: Date, limit: Int = 100) async throws -> [String] {
        try await database.transaction { work in
            var expired: [String] = []
            for candidate in try await work.nodes.lockExpired(at: time, limit: limit) {
                var liveness = NodeLiveness(status: candidate.status, expiresAt: candidate.expiresAt)
                guard case .wentDown(let deadline) = liveness.check(at: time) else { continue }
                let index = try await work.nextIndex()
                let description = "no heartbeat since \(deadline.formatted(Date.ISO8601FormatStyle()))"
                try await work.nodes.setStatus(.down, description: description, nodeID: candidate.id, index: index)
                let evaluations = try await work.evaluateJobs(onNode: candidate.id, index: index, now: time)
                try await work.note(
                    ClusterEvent.Kind.nodeDown, "Node \(candidate.id) is down: \(description); \(evaluations.count) job(s) to reschedule",
                    level: .error, priority: .high, nodeID: candidate.id, at: time)
                logger.warning(
                    "Node is down", metadata: ["node_id": "\(candidate.id)", "deadline": "\(deadline)", "evaluations": "\(evaluations.count)"])
                expired.append(candidate.id)
            }
            return expired
        }
    }

    /// How many nodes are not down: the fleet size the heartbeat TTL scales with.
    public func liveNodeCount() async throws -> Int { try await database.nodes.liveCount() }

    /// Forgets node `nodeID` (it is being removed): every job with allocations still wanted there is
    /// evaluated, which replaces them as lost.
    /// - Returns: whether the node was known.
    @discardableResult
    public func purge(nodeID: String) async throws -> Bool {
        let time = now()
        return try await database.transaction { work in
            guard try await work.nodes.lock(nodeID) else { return false }
            let index = try await work.nextIndex()
            let evaluations = try await work.evaluateJobs(onNode: nodeID, index: index, now: time)
            try await work.nodes.delete(nodeID, at: time, index: index)
            try await work.note(
                ClusterEvent.Kind.nodePurged, "Node \(nodeID) removed; \(evaluations.count) job(s) to reschedule", level: .warn, priority: .medium,
                nodeID: nodeID, at: time)
            return true
        }
    }

    // MARK: Drain and eligibility

    /// Starts (or changes) a drain with `spec`, or cancels it with nil; a cancelled drain leaves
    /// the node ineligible unless `markEligible`. A drain makes the node ineligible and
    /// evaluates the jobs with allocations there, which the scheduler migrates (see
    /// ``DrainDecision`` for the rest).
    /// - Throws: ``ControlPlaneError/notFound(kind:id:)`` for an unknown node.
    public func drain(nodeID: String, spec: DrainSpec?, markEligible: Bool, at time: Date? = nil) async throws -> NodeUpdateResponse {
        let time = time ?? now()
        return try await database.transaction { work in
            guard let current = try await work.nodes.lockDrain(nodeID) else { throw ControlPlaneError.notFound(kind: "node", id: nodeID) }
            let index = try await work.nextIndex()
            let evaluations =
                if let spec {
                    try await work.startDrain(nodeID, spec: spec, current: current, index: index, at: time)
                } else {
                    try await work.endDrain(nodeID, current: current, markEligible: markEligible, index: index, at: time)
                }
            return NodeUpdateResponse(evalIDs: evaluations, evalCreateIndex: index, nodeModifyIndex: index, index: index)
        }
    }

    /// Marks a node eligible or ineligible for new allocations; what runs there stays.
    /// - Throws: ``ControlPlaneError/invalid(_:)`` when making a draining node eligible, and
    ///   ``ControlPlaneError/notFound(kind:id:)`` for an unknown node.
    public func setEligibility(nodeID: String, eligible: Bool) async throws -> NodeUpdateResponse {
        let time = now()
        return try await database.transaction { work in
            guard let draining = try await work.nodes.lockDraining(nodeID) else { throw ControlPlaneError.notFound(kind: "node", id: nodeID) }
            if draining && eligible {
                throw ControlPlaneError.invalid([
                    FieldError("Eligibility", "node \(nodeID) is draining; cancel the drain (with MarkEligible) to make it eligible")
                ])
            }
            let index = try await work.nextIndex()
            try await work.nodes.setEligibility(nodeID, eligible: eligible, index: index)
            let evaluations = eligible ? try await work.nodeBecameReady(nodeID, index: index, now: time) : []
            return NodeUpdateResponse(evalIDs: evaluations, evalCreateIndex: index, nodeModifyIndex: index, index: index)
        }
    }

    /// Moves every drain on: stops what ``DrainDecision`` says to stop (evaluating those jobs, so
    /// that what must run elsewhere is placed), and completes the drains with nothing left
    /// running. Nodes another replica is working on are skipped.
    /// - Returns: the ids of the nodes whose drain completed.
    @discardableResult
    public func advanceDrains(at time: Date) async throws -> [String] {
        try await database.transaction { work in
            let nanos = time.unixNanoseconds
            var completed: [String] = []
            for node in try await work.nodes.lockDraining() {
                let allocations = try await work.allocations.onNode(node.id).map {
                    DrainDecision.Allocation(id: $0.id, system: $0.system, wanted: $0.wanted, running: $0.running)
                }
                let outcome = DrainDecision.next(node.strategy, allocations: allocations, now: nanos)
                if !outcome.stop.isEmpty { try await stopForDrain(outcome.stop, at: time, in: work) }
                if outcome.complete {
                    let index = try await work.nextIndex()
                    let last = DrainMetadata(status: .complete, startedAt: node.strategy.startedAt, updatedAt: nanos)
                    try await work.nodes.endDrain(node.id, last: last, markEligible: false, index: index)
                    logger.info("Node drain complete", metadata: ["node_id": "\(node.id)"])
                    try await work.note(
                        ClusterEvent.Kind.drainComplete, "Node \(node.id) drain complete", priority: .medium, nodeID: node.id, at: time)
                    completed.append(node.id)
                }
            }
            return completed
        }
    }

    private func stopForDrain(_ ids: [String], at time: Date, in work: UnitOfWork) async throws {
        let index = try await work.nextIndex()
        let allocations = try await work.allocations.read(ids: ids)
        for allocation in allocations {
            try await work.stop(allocation, description: "alloc stopped by node drain", markLost: false, index: index, now: time)
        }
        let jobs = try await work.jobs.specs(Array(Set(allocations.map(\.jobKey)))).filter { !$0.isStopped }
        try await work.evaluate(jobs, triggeredBy: Evaluation.Trigger.nodeDrain, index: index, now: time)
    }

    // MARK: Health

    /// Records `report`: an unhealthy node becomes ineligible and, unless a keepalive holds, is
    /// flagged for termination.
    /// - Throws: ``ControlPlaneError/notFound(kind:id:)`` for an unknown node.
    @discardableResult
    public func record(_ report: NodeHealthReport, at time: Date? = nil) async throws -> HealthDecision {
        let time = time ?? now()
        return try await database.transaction { work in
            let keepalive = try await lockKeepalive(report.nodeID, in: work)
            let decision = HealthDecision.decide(healthy: report.healthy, keepaliveUntil: keepalive.map(Date.init(unixNanoseconds:)), now: time)
            let nanos = time.unixNanoseconds
            let index = try await work.nextIndex()
            try await work.nodes.recordHealth(
                report.nodeID, health: NodeHealth(healthy: report.healthy, checkedAt: nanos, checks: report.checks), ineligible: decision != .none,
                termination: decision == .makeIneligibleAndFlag ? TerminationRequest(reason: Self.unhealthy, requestedAt: nanos) : nil,
                index: index)
            let failed = report.checks.filter { NodeHealthReport.verdict(exitCode: $0.exitCode) == false }.map(\.script).joined(separator: ", ")
            switch decision {
            case .none:
                break
            case .makeIneligibleAndFlag:
                try await work.note(
                    ClusterEvent.Kind.nodeUnhealthy, "Node \(report.nodeID) is unhealthy (\(failed)): ineligible, flagged for termination",
                    level: .error, priority: .high, nodeID: report.nodeID, at: time)
            case .makeIneligibleAndKeep(let until):
                try await work.note(
                    ClusterEvent.Kind.nodeUnhealthy,
                    "Node \(report.nodeID) is unhealthy (\(failed)): ineligible, kept by keepalive until \(Self.describe(until))", level: .error,
                    priority: .high, nodeID: report.nodeID, at: time)
            }
            return decision
        }
    }

    /// Keeps the node from termination until `until` (nil: for ever); a flag set because it was
    /// unhealthy is lifted.
    /// - Throws: ``ControlPlaneError/notFound(kind:id:)`` for an unknown node.
    public func setKeepalive(nodeID: String, until: Date?) async throws {
        let time = now()
        try await database.transaction { work in
            _ = try await lockKeepalive(nodeID, in: work)
            let index = try await work.nextIndex()
            try await work.nodes.setKeepalive(nodeID, until: until?.unixNanoseconds ?? Int64.max, lifting: Self.unhealthy, index: index)
            try await work.note(
                ClusterEvent.Kind.keepalive, "Node \(nodeID) kept alive until \(until.map(Self.describe) ?? "forever")", priority: .medium,
                nodeID: nodeID, at: time)
        }
    }

    /// The node asked to be taken away: it takes no new work and is flagged with `reason`.
    /// - Throws: ``ControlPlaneError/notFound(kind:id:)`` for an unknown node.
    public func requestTermination(nodeID: String, reason: String, at time: Date? = nil) async throws {
        let time = time ?? now()
        try await database.transaction { work in
            _ = try await lockKeepalive(nodeID, in: work)
            let index = try await work.nextIndex()
            try await work.nodes.requestTermination(nodeID, TerminationRequest(reason: reason, requestedAt: time.unixNanoseconds), index: index)
            try await work.note(
                ClusterEvent.Kind.shutdownRequested, "Node \(nodeID) asked to be shut down (\(reason))", level: .warn, priority: .medium,
                nodeID: nodeID, at: time)
        }
    }

    /// The reason of a termination flag set for ill health, which a keepalive lifts.
    static let unhealthy = "unhealthy"

    /// Locks the node's row. - Returns: its keepalive. - Throws: not found.
    private func lockKeepalive(_ nodeID: String, in work: UnitOfWork) async throws -> Int64? {
        guard let keepalive = try await work.nodes.lockKeepalive(nodeID) else { throw ControlPlaneError.notFound(kind: "node", id: nodeID) }
        return keepalive
    }

    static func describe(_ date: Date) -> String {
        date == .distantFuture ? "forever" : date.formatted(Date.ISO8601FormatStyle())
    }
}
