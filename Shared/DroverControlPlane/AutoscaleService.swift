public import DroverAutoscaling
public import DroverMessaging
public import DroverModel
public import DroverStorage
public import Foundation
public import Logging
import Metrics

/// The autoscaler's use cases: a round reads the arrays, their machines, the pending work and
/// the targets, asks the pure core (``Autoscale``) what to do, and does it in one unit of work:
/// enrollment tokens and provider requests for new machines, drains, terminations, backoffs,
/// and the decision with its reason (an event when it changes, and metrics). Provider replies
/// move machines on.
public struct AutoscaleService: Sendable {
    public let database: Database
    public let policy: AutoscalePolicy
    /// The gateway new machines' agents join through.
    public let gateway: String
    /// Where a taken-away machine's broker user is removed; nil leaves broker users alone.
    let brokerUsers: BrokerUsers?
    let now: @Sendable () -> Date
    let logger: Logger

    public init(
        database: Database, policy: AutoscalePolicy = AutoscalePolicy(), gateway: String, brokerUsers: BrokerUsers? = nil, logger: Logger,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.database = database
        self.policy = policy
        self.gateway = gateway
        self.brokerUsers = brokerUsers
        self.logger = logger
        self.now = now
    }

    /// How an idle or flagged node is drained before it is taken away: what runs there has
    /// this long to finish or move.
    static let drainDeadline: Duration = .seconds(300)

    /// One round. Replicas take turns: a round another one is running is skipped.
    /// - Returns: the plan it carried out (empty when skipped).
    @discardableResult
    public func round() async throws -> AutoscalePlan {
        let time = now()
        let nanos = time.unixNanoseconds
        return try await database.transaction { work in
            guard try await work.nodeArrays.tryLockRound() else { return AutoscalePlan(actions: [], decisions: []) }
            let arrays = try await work.nodeArrays.arrays()
            var machines = try await work.nodeArrays.machines()
            // A cluster without node arrays has nothing to scale (and the round runs on every change).
            if arrays.isEmpty && machines.isEmpty { return AutoscalePlan(actions: [], decisions: []) }
            // A machine whose node has registered and is ready is ready; one whose node's
            // cluster-init failed is failed (and kept), until a converge succeeds.
            for index in machines.indices {
                let machine = machines[index]
                let next: (MachineState, String)
                switch machine.state {
                case .acquiring, .preparing, .failed:
                    guard machine.state != .failed || machine.isKeptAfterFailure, let nodeID = machine.nodeID,
                        let node = try await work.nodes.read(id: nodeID), node.status == .ready
                    else { continue }
                    if let failure = machine.clusterInitFailure {
                        guard machine.state != .failed else { continue }
                        next = (.failed, "cluster-init failed: \(failure)")
                    } else {
                        next = (.ready, machine.state == .failed ? "cluster-init converged" : "its node is ready")
                    }
                case .ready:
                    guard let failure = machine.clusterInitFailure else { continue }
                    next = (.failed, "cluster-init failed: \(failure)")
                default: continue
                }
                machines[index].state = next.0
                machines[index].since = nanos
                try await work.nodeArrays.save(machines[index], reason: next.1)
            }
            let decisions = try await work.nodeArrays.decisions()
            let state = AutoscaleState(
                arrays: arrays, machines: machines, demand: try await Self.demand(in: work), targets: try await work.nodeArrays.targets(),
                backoffs: try await work.nodeArrays.backoffs(), lastScaleUp: decisions.compactMapValues(\.lastScaleUp), now: nanos)
            let plan = Autoscale.decide(state, policy: policy)
            try await apply(plan, arrays: arrays, machines: machines, previous: decisions.mapValues(\.decision), in: work, at: time)
            return plan
        }
    }

    /// The pending placements: what each blocked evaluation's job could not place.
    static func demand(in work: UnitOfWork) async throws -> [PendingPlacement] {
        let blocked = try await work.evaluations.blocked()
        let jobs = Dictionary(try await work.jobs.specs(Array(Set(blocked.map(\.jobKey)))).map { ($0.key, $0) }) { first, _ in first }
        return blocked.flatMap { evaluation in jobs[evaluation.jobKey].map { PendingPlacement.of(blocked: evaluation, job: $0) } ?? [] }
    }

    private func apply(
        _ plan: AutoscalePlan, arrays: [NodeArray], machines: [Machine], previous: [String: ArrayDecision], in work: UnitOfWork, at time: Date
    ) async throws {
        let nanos = time.unixNanoseconds
        let byName = Dictionary(machines.map { ($0.name, $0) }) { first, _ in first }
        let arraysByName = Dictionary(arrays.map { ($0.name, $0) }) { first, _ in first }
        var scaledUp: Set<String> = []
        for action in plan.actions {
            switch action {
            case .acquire(let arrayName, let names):
                guard let array = arraysByName[arrayName] else { continue }
                var toMake: [ProviderCreateRequest.MachineToMake] = []
                for name in names {
                    let nodeID = newID()
                    let (token, hash) = EnrollmentService.issue(lifetime: .seconds(array.bootTimeout), nodeID: nodeID, now: time)
                    try await work.enrollment.insert(token, secretHash: hash)
                    try await work.nodeArrays.save(
                        Machine(name: name, array: arrayName, state: .acquiring, since: nanos, nodeID: nodeID), reason: "asked of \(array.provider)")
                    toMake.append(.init(name: name, nodeID: nodeID, enrollToken: token.secret ?? ""))
                }
                work.send(
                    try OutgoingMessage(
                        ProviderCreateRequest(
                            requestID: newID(), array: arrayName, provider: array.provider, machineType: array.machine, machines: toMake,
                            gateway: gateway),
                        routingKey: RoutingKey.providerRequest(arrayName, "create")))
                scaledUp.insert(arrayName)
                Counter(label: "drover_autoscale_machines_requested_total", dimensions: [("nodearray", arrayName)]).increment(by: names.count)
            case .drain(let name, let nodeID, let idle, let reason):
                guard var machine = byName[name] else { continue }
                if let nodeID, let current = try await work.nodes.lockDrain(nodeID) {
                    let index = try await work.nextIndex()
                    _ = try await work.startDrain(
                        nodeID, spec: DrainSpec(deadline: GoDuration.nanoseconds(Self.drainDeadline)), current: current, index: index, at: time)
                }
                machine.state = .terminating
                machine.since = nanos
                machine.terminatingForIdleness = idle
                try await work.nodeArrays.save(machine, reason: reason)
            case .reclaim(let name, let nodeID):
                guard var machine = byName[name] else { continue }
                if let nodeID, let current = try await work.nodes.lockDrain(nodeID) {
                    _ = try await work.endDrain(nodeID, current: current, markEligible: true, index: try await work.nextIndex(), at: time)
                }
                machine.state = .ready
                machine.since = nanos
                machine.terminatingForIdleness = false
                try await work.nodeArrays.save(machine, reason: "taken back for new work")
            case .terminate(let name, let nodeID, let deallocate, let reason):
                var machine = byName[name] ?? Machine(name: name, array: "", state: .terminating, since: nanos, nodeID: nodeID)
                sendTerminate(machine, provider: arraysByName[machine.array]?.provider ?? "", deallocate: deallocate, in: work)
                machine.state = .terminating
                machine.terminateRequestedAt = nanos
                try await work.nodeArrays.save(machine, reason: reason)
            case .giveUp(let name, let reason):
                guard var machine = byName[name] else { continue }
                sendTerminate(machine, provider: arraysByName[machine.array]?.provider ?? "", deallocate: false, in: work)
                machine.state = .failed
                machine.since = nanos
                machine.terminateRequestedAt = nanos
                try await work.nodeArrays.save(machine, reason: reason)
                try await work.note(
                    ClusterEvent.Kind.autoscaleDecision, "Machine \(name) given up: \(reason)", level: .warn, priority: .medium,
                    nodeID: machine.nodeID,
                    at: time)
            case .backOff(let backoff):
                try await work.nodeArrays.setBackoff(backoff)
            }
        }
        for decision in plan.decisions {
            try await work.nodeArrays.recordDecision(decision, at: nanos, scaledUp: scaledUp.contains(decision.array))
            Gauge(label: "drover_autoscale_target_machines", dimensions: [("nodearray", decision.array)]).record(decision.target)
            Gauge(label: "drover_autoscale_pending_placements", dimensions: [("nodearray", decision.array)]).record(decision.demandPlacements)
            if previous[decision.array]?.reason != decision.reason || previous[decision.array]?.target != decision.target {
                try await work.note(
                    ClusterEvent.Kind.autoscaleDecision, "Node array \(decision.array): target \(decision.target) machine(s); \(decision.reason)",
                    at: time)
                logger.info(
                    "Autoscale decision",
                    metadata: [
                        "nodearray": "\(decision.array)", "target": "\(decision.target)", "active": "\(decision.active)",
                        "reason": "\(decision.reason)",
                    ])
            }
        }
    }

    private func sendTerminate(_ machine: Machine, provider: String, deallocate: Bool, in work: UnitOfWork) {
        guard
            let message = try? OutgoingMessage(
                ProviderTerminateRequest(
                    requestID: newID(), array: machine.array, provider: provider, machines: [.init(name: machine.name, nodeID: machine.nodeID)],
                    deallocate: deallocate),
                routingKey: RoutingKey.providerRequest(machine.array, "terminate"))
        else { return }
        work.send(message)
    }

    /// A provider's answer: created machines wait for their nodes (`Preparing`), failed ones are
    /// given up and the provider backs off, terminated ones are gone and their nodes forgotten.
    /// A machine made for a request that was given up meanwhile is taken away again. Once the
    /// change commits, a terminated machine's broker user is removed (and its connections
    /// closed), so that nothing can speak for its node again; a broker that cannot be reached
    /// fails the call, and the reply is delivered again (recording it twice changes nothing).
    /// - Throws: ``ControlPlaneError/invalid(_:)`` for a reply with a bad field.
    public func record(_ reply: ProviderReply) async throws {
        let errors = reply.validate()
        guard errors.isEmpty else { throw ControlPlaneError.invalid(errors) }
        let time = now()
        let nanos = time.unixNanoseconds
        let gone = try await database.transaction { work -> [String] in
            var gone: [String] = []
            let known = Dictionary(try await work.nodeArrays.machines(array: reply.array).map { ($0.name, $0) }) { first, _ in first }
            let provider = try await work.nodeArrays.array(named: reply.array)?.provider ?? ""
            switch reply.status {
            case .created:
                try await work.nodeArrays.clearBackoff(array: reply.array)
                for name in reply.machines {
                    guard var machine = known[name], machine.state == .acquiring else {
                        // Given up, or never asked for: take it away.
                        let stray = known[name] ?? Machine(name: name, array: reply.array, state: .terminating, since: nanos)
                        sendTerminate(stray, provider: provider, deallocate: false, in: work)
                        continue
                    }
                    machine.state = .preparing
                    machine.since = nanos
                    try await work.nodeArrays.save(machine, reason: "started by \(provider); waiting for its node")
                }
            case .failed:
                let failures = (try await work.nodeArrays.backoffs().first { $0.array == reply.array }?.failures ?? 0) + 1
                let reason = reply.reason.map { "the provider '\(provider)' failed: \($0.prefix(500))" } ?? "the provider '\(provider)' failed"
                try await work.nodeArrays.setBackoff(
                    ProviderBackoff(
                        array: reply.array, failures: failures, until: Saturating.sum(nanos, ProviderBackoff.delay(afterFailures: failures)),
                        reason: reason))
                for name in reply.machines {
                    guard var machine = known[name], machine.state == .acquiring || machine.state == .preparing else { continue }
                    machine.state = .failed
                    machine.since = nanos
                    try await work.nodeArrays.save(machine, reason: reason)
                }
                try await work.note(
                    ClusterEvent.Kind.autoscaleDecision, "Node array \(reply.array): \(reason)", level: .warn, priority: .medium, at: time)
            case .terminated:
                for name in reply.machines {
                    guard var machine = known[name] else { continue }
                    if let nodeID = machine.nodeID { gone.append(nodeID) }
                    if let nodeID = machine.nodeID, try await work.nodes.lock(nodeID) {
                        let index = try await work.nextIndex()
                        _ = try await work.evaluateJobs(onNode: nodeID, index: index, now: time)
                        try await work.nodes.delete(nodeID, at: time, index: index)
                        try await work.enrollment.deleteNodeSecret(nodeID: nodeID)
                    }
                    machine.state = .terminated
                    machine.since = nanos
                    try await work.nodeArrays.save(machine, reason: "taken away by \(provider)")
                }
            }
            return gone
        }
        guard let brokerUsers else { return }
        for nodeID in gone where try await brokerUsers.remove(nodeID: nodeID) {
            logger.info("Broker user of a machine taken away removed", metadata: ["node_id": "\(nodeID)"])
        }
    }
}
