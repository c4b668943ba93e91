public import DroverModel

/// Everything one autoscale decision reads, with the time.
public struct AutoscaleState: Sendable {
    public var arrays: [NodeArray]
    public var machines: [Machine]
    public var demand: [PendingPlacement]
    public var targets: [ScaleTarget]
    public var backoffs: [ProviderBackoff]
    /// Array name → when machines were last asked for (Unix nanoseconds), for the cooldown.
    public var lastScaleUp: [String: Int64]
    /// Unix nanoseconds.
    public var now: Int64

    public init(
        arrays: [NodeArray], machines: [Machine], demand: [PendingPlacement] = [], targets: [ScaleTarget] = [],
        backoffs: [ProviderBackoff] = [], lastScaleUp: [String: Int64] = [:], now: Int64
    ) {
        self.arrays = arrays
        self.machines = machines
        self.demand = demand
        self.targets = targets
        self.backoffs = backoffs
        self.lastScaleUp = lastScaleUp
        self.now = now
    }
}

/// The autoscaler's own limits, not an array's.
public struct AutoscalePolicy: Sendable, Equatable {
    /// How long a provider has to answer a create request, in seconds.
    public var requestTimeout: Int64
    /// After asking for machines, no idle machine of that array is taken away for this long,
    /// in seconds: demand that comes and goes does not make machines come and go.
    public var cooldown: Int64

    /// At most this many machines are asked for in one round, whatever the limits say (a
    /// request carries one enrollment token per machine).
    public var maximumPerRound: Int

    public init(requestTimeout: Int64 = 120, cooldown: Int64 = 60, maximumPerRound: Int = 1000) {
        self.requestTimeout = requestTimeout
        self.cooldown = cooldown
        self.maximumPerRound = max(1, maximumPerRound)
    }
}

/// What the application layer carries out: provider requests, drains, state changes.
public enum AutoscaleAction: Sendable, Equatable {
    /// Ask the array's provider for these machines (new names); they start `acquiring`.
    case acquire(array: String, names: [String])
    /// Drain the machine's node and mark it `terminating`; `idle` tells whether new demand may
    /// still take it back.
    case drain(machine: String, nodeID: String?, idle: Bool, reason: String)
    /// New demand: stop draining an idle machine and make it `ready` again.
    case reclaim(machine: String, nodeID: String?)
    /// Ask the provider to take the machine away; it becomes `terminated` once it confirms.
    case terminate(machine: String, nodeID: String?, deallocate: Bool, reason: String)
    /// The machine did not come up in time: it becomes `failed`, and the provider is asked to
    /// take away whatever it started.
    case giveUp(machine: String, reason: String)
    /// No new request to the array's provider until `until`.
    case backOff(ProviderBackoff)
}

/// The decision: actions to take and, per array, why.
public struct AutoscalePlan: Sendable, Equatable {
    public var actions: [AutoscaleAction]
    public var decisions: [ArrayDecision]

    public init(actions: [AutoscaleAction], decisions: [ArrayDecision]) {
        self.actions = actions
        self.decisions = decisions
    }
}

/// The autoscaler's pure core: (arrays, machines, demand, targets, time) → actions, as
/// CycleCloud's node arrays behave.
///
/// - Up: the pending placements are packed onto the array whose machine type takes them; the
///   machines they fill, beyond the machines still coming up or ready without work yet, are
///   asked for, as are those a target or MinCount needs; the larger need wins, within MaxCount
///   and MaxCoreCount (hard caps, counting machines being taken away). An idle machine being
///   drained is taken back before a new one is asked for. A provider that is backing off is not
///   asked.
/// - Down: a ready machine with no running allocation, no keepalive in force and idle longer
///   than its array's IdleTimeAfterJobs (or IdleTimeBeforeJobs, if it never ran work) is drained
///   and then terminated, oldest idle first, never below MinCount or a target, never while the
///   array has pending demand or within the cooldown after a scale-up.
/// - Flagged (unhealthy, or the node asked): drained and terminated whatever the demand;
///   counts then fall short and a replacement is asked for.
/// - Timeouts: no answer from the provider within the request timeout, or no ready node within
///   BootTimeout: the machine is given up (and the provider backs off after a silent request).
public enum Autoscale {
    public static func decide(_ state: AutoscaleState, policy: AutoscalePolicy = AutoscalePolicy()) -> AutoscalePlan {
        let now = state.now
        var actions: [AutoscaleAction] = []
        var decisions: [ArrayDecision] = []
        let packing = DemandPacking.pack(state.demand, arrays: state.arrays)
        let known = Set(state.arrays.map(\.name))
        let byArray = Dictionary(grouping: state.machines, by: \.array)

        // Machines of arrays that are gone are taken away.
        for machine in state.machines where !known.contains(machine.array) && machine.state.isActive {
            actions.append(.terminate(machine: machine.name, nodeID: machine.nodeID, deallocate: false, reason: "its node array was deleted"))
        }

        for array in state.arrays.sorted(by: { $0.name < $1.name }) {
            var machines = byArray[array.name] ?? []
            var failedRequests = 0
            // Timeouts first: what they give up no longer counts.
            for index in machines.indices {
                let machine = machines[index]
                let waited = now &- machine.requestedAt
                if machine.state == .acquiring && waited >= Saturating.nanoseconds(policy.requestTimeout) {
                    actions.append(
                        .giveUp(machine: machine.name, reason: "the provider '\(array.provider)' did not answer within \(policy.requestTimeout) s"))
                    machines[index].state = .failed
                    machines[index].terminateRequestedAt = now
                    failedRequests += 1
                } else if (machine.state == .acquiring || machine.state == .preparing) && waited >= Saturating.nanoseconds(array.bootTimeout) {
                    actions.append(.giveUp(machine: machine.name, reason: "not ready within BootTimeout (\(array.bootTimeout) s)"))
                    machines[index].state = .failed
                    machines[index].terminateRequestedAt = now
                }
            }
            var backoff = state.backoffs.first { $0.array == array.name && $0.until > now }
            if failedRequests > 0 {
                let failures = (state.backoffs.first { $0.array == array.name }?.failures ?? 0) + 1
                let next = ProviderBackoff(
                    array: array.name, failures: failures, until: Saturating.sum(now, ProviderBackoff.delay(afterFailures: failures)),
                    reason: "the provider '\(array.provider)' did not answer")
                actions.append(.backOff(next))
                backoff = next
            }

            // Flagged machines go, whatever the demand.
            for index in machines.indices where machines[index].termination != nil {
                let machine = machines[index]
                switch machine.state {
                case .ready:
                    // Drained first (at once when nothing runs), so that nothing new lands on it.
                    actions.append(
                        .drain(machine: machine.name, nodeID: machine.nodeID, idle: false, reason: machine.termination?.reason ?? "flagged"))
                    machines[index].state = .terminating
                    machines[index].terminatingForIdleness = false
                case .preparing,
                    .failed where machine.isKeptAfterFailure:
                    actions.append(
                        .terminate(
                            machine: machine.name, nodeID: machine.nodeID, deallocate: machine.deallocates,
                            reason: machine.termination?.reason ?? "flagged"))
                    machines[index].state = .terminating
                    machines[index].terminateRequestedAt = now
                default: break
                }
            }

            // Target: MinCount, a `drover autoscale` request, the demand; the largest wins.
            let limits = array.limits
            let request = state.targets.filter { $0.array == array.name && $0.expiresAt > now }.max { $0.expiresAt < $1.expiresAt }
            let requested = request.map { limits.clamp(max($0.count ?? 0, limits.machines(forCores: $0.coreCount ?? 0))) } ?? 0
            let alive = machines.filter { $0.state == .acquiring || $0.state == .preparing || $0.state == .ready }
            let terminating = machines.filter { $0.state == .terminating }
            let coming = alive.filter { $0.state != .ready || ($0.lastWorkAt == nil && $0.runningAllocations == 0) }.count
            let demandMachines = packing.machines[array.name] ?? 0
            let demandPlacements = packing.placements[array.name] ?? 0
            let byDemand = demandMachines == 0 ? 0 : alive.count.addingSaturating(max(0, demandMachines - coming))
            let target = limits.clamp(max(array.minCount, requested, byDemand))
            var active = alive.count
            var reason: String
            var scaledUp = false

            var reclaimed: Set<String> = []
            if target > active {
                // Take back idle machines being drained before asking for new ones.
                for machine in terminating where machine.terminatingForIdleness && machine.terminateRequestedAt == nil && active < target {
                    actions.append(.reclaim(machine: machine.name, nodeID: machine.nodeID))
                    reclaimed.insert(machine.name)
                    active += 1
                }
                let cap = limits.clamp(Int.max)
                let stillTerminating = terminating.count - (active - alive.count)
                // A failed machine kept for inspection still exists: it counts against the caps.
                let kept = machines.filter(\.isKeptAfterFailure).count
                let room = max(0, cap - active - stillTerminating - kept)
                let wanted = min(target - active, room, policy.maximumPerRound)
                if wanted <= 0 {
                    reason =
                        active >= target
                        ? "took back \(active - alive.count) idle machine(s)" : "at the array's limits while \(stillTerminating) machine(s) terminate"
                } else if let backoff {
                    reason = "wants \(wanted) more machine(s); \(backoff.reason), asking again in \(max(0, (backoff.until &- now) / 1_000_000_000)) s"
                } else {
                    let names = freeNames(array: array.name, machines: machines, count: wanted)
                    actions.append(.acquire(array: array.name, names: names))
                    active += names.count
                    scaledUp = true
                    reason =
                        "asked for \(names.count) machine(s): "
                        + why(target: target, array: array, requested: requested, byDemand: byDemand, placements: demandPlacements)
                }
            } else {
                reason =
                    active == 0
                    ? "no demand"
                    : active > target
                        ? "\(active) machine(s): \(active - target) above the target, kept while busy or not idle long enough"
                        : "\(active) machine(s) meet the target"
            }

            // Down: idle machines beyond what the target keeps, oldest idle first.
            let cooling = state.lastScaleUp[array.name].map { now &- $0 < Saturating.nanoseconds(policy.cooldown) } ?? false
            if !scaledUp && demandPlacements == 0 && !cooling {
                let floor = max(array.minCount, requested)
                let idle = machines.compactMap { machine -> (Machine, Int64)? in
                    guard machine.state == .ready, machine.termination == nil, machine.runningAllocations == 0 else { return nil }
                    if let keepalive = machine.keepaliveUntil, keepalive > now { return nil }
                    let idleSince = machine.lastWorkAt.map { max($0, machine.since) } ?? machine.since
                    let limit = machine.lastWorkAt == nil ? array.idleTimeBeforeJobs : array.idleTimeAfterJobs
                    guard now &- idleSince >= Saturating.nanoseconds(limit) else { return nil }
                    return (machine, idleSince)
                }.sorted { ($0.1, $0.0.name) < ($1.1, $1.0.name) }
                let removable = max(0, active - floor)
                for (machine, idleSince) in idle.prefix(removable) {
                    actions.append(
                        .drain(machine: machine.name, nodeID: machine.nodeID, idle: true, reason: "idle for \((now &- idleSince) / 1_000_000_000) s"))
                    active -= 1
                }
                if removable > 0 && !idle.isEmpty { reason = "taking away \(min(removable, idle.count)) idle machine(s)" }
            }

            // Drained machines are terminated; a request the provider has not confirmed is
            // sent again after the request timeout.
            let wasTerminating = Set((byArray[array.name] ?? []).filter { $0.state == .terminating }.map(\.name))
            for machine in machines where machine.state == .terminating && machine.runningAllocations == 0 {
                guard wasTerminating.contains(machine.name), !reclaimed.contains(machine.name) else { continue }
                if let sent = machine.terminateRequestedAt, now &- sent < Saturating.nanoseconds(policy.requestTimeout) { continue }
                actions.append(
                    .terminate(
                        machine: machine.name, nodeID: machine.nodeID, deallocate: machine.deallocates,
                        reason: machine.termination?.reason ?? "drained"))
            }

            decisions.append(
                ArrayDecision(
                    array: array.name, target: target, demandMachines: demandMachines, demandPlacements: demandPlacements, requested: requested,
                    active: active, reason: reason))
        }
        return AutoscalePlan(actions: actions, decisions: decisions)
    }

    /// The lowest numbers no machine of the array holds (one that failed holds its name until
    /// its provider confirms it is gone): `<array>-<n>`, from 1.
    static func freeNames(array: String, machines: [Machine], count: Int) -> [String] {
        let taken = Set(machines.filter { $0.state != .terminated && $0.state != .off }.compactMap(\.index))
        var names: [String] = []
        var number = 1
        while names.count < count {
            if !taken.contains(number) { names.append("\(array)-\(number)") }
            number += 1
        }
        return names
    }

    static func why(target: Int, array: NodeArray, requested: Int, byDemand: Int, placements: Int) -> String {
        if target == byDemand && placements > 0 { return "\(placements) pending placement(s) need \(target) machine(s)" }
        if target == requested && requested > 0 { return "the autoscale target is \(requested) machine(s)" }
        return "MinCount is \(array.minCount)"
    }
}

extension Machine {
    /// Whether taking it away should only deallocate it: it was set so, or its node asked for
    /// it (`drover shutdown --deallocate`).
    var deallocates: Bool { deallocate || termination?.reason == "deallocate" }
}
