public import DroverModel
import Foundation

/// Turns one evaluation into a plan: reconcile, then place each missing allocation.
///
/// A scheduler sees a read-only snapshot and returns a plan; it does no I/O. The caller applies
/// the plan (and checks it again against the state at that moment).
public enum JobScheduler {
    /// - Parameters:
    ///   - job: the job as registered now; `nil` when it was purged.
    ///   - now: Unix nanoseconds.
    ///   - random: the source of the node order; seed it in tests.
    public static func plan(
        evalID: String, jobID: String, job: Job?, snapshot: ClusterSnapshot, configuration: SchedulerConfiguration = .init(), now: Int64,
        random: inout some RandomNumberGenerator
    ) -> Plan {
        var plan = Plan(evalID: evalID, jobID: jobID)
        let reconciled = Reconciler.reconcile(job: job, allocations: snapshot.jobAllocations, nodes: snapshot.nodes, now: now)
        plan.stops = reconciled.stops
        plan.desiredUpdates = reconciled.desiredUpdates
        guard let job, !reconciled.placements.isEmpty else { return plan }

        var state = PlacementState(snapshot: snapshot, job: job, stops: reconciled.stops, random: &random)
        var stacks: [String: PlacementStack] = [:]
        for placement in reconciled.placements {
            guard let group = job.group(named: placement.group) else { continue }
            if plan.failedGroups[group.name] != nil, placement.nodeIndex == nil {
                plan.failedGroups[group.name]!.coalescedFailures += 1
                plan.queued[group.name, default: 0] += 1
                continue
            }
            var stack =
                stacks.removeValue(forKey: group.name) ?? PlacementStack(job: job, group: group, configuration: configuration, snapshot: snapshot)
            let choice: PlacementStack.Choice
            if let nodeIndex = placement.nodeIndex {
                choice = stack.select(only: nodeIndex, state: state)
                if case .infeasible = choice {
                    // A system job skips nodes it cannot run on; that is not a failure.
                    plan.desiredUpdates[group.name]?.place -= 1
                    stacks[group.name] = stack
                    continue
                }
            } else {
                choice = stack.select(state: &state)
            }
            stacks[group.name] = stack
            switch choice {
            case .placed(let nodeIndex, let score):
                state.place(group: group.name, resources: stack.ask, on: nodeIndex)
                var tracker = placement.previous?.rescheduleTracker
                if let previous = placement.previous, previous.clientStatus == .failed {
                    tracker = RescheduleTracker(
                        events: (tracker?.events ?? []) + [
                            RescheduleEvent(rescheduleTime: now, prevAllocID: previous.id, prevNodeID: previous.nodeID)
                        ])
                }
                plan.placements.append(
                    PlannedAllocation(
                        name: Allocation.name(job: job.id, group: group.name, index: placement.index), taskGroup: group.name,
                        nodeIndex: nodeIndex, nodeID: snapshot.nodes[nodeIndex].id, nodeName: snapshot.nodes[nodeIndex].name, resources: stack.ask,
                        previousAllocation: placement.previous?.id, rescheduleTracker: tracker, score: score))
            case .failed(var metric), .infeasible(var metric):
                metric.nodesAvailable = state.availableByDatacenter
                if var existing = plan.failedGroups[group.name] {
                    existing.coalescedFailures += 1
                    plan.failedGroups[group.name] = existing
                } else {
                    plan.failedGroups[group.name] = metric
                }
                plan.queued[group.name, default: 0] += 1
            }
        }
        return plan
    }
}

/// What changes while one evaluation is planned: resources held per node and where the job's
/// allocations are, counting the plan's own stops and placements.
struct PlacementState {
    let snapshot: ClusterSnapshot
    var nodes: [Node] { snapshot.nodes }
    var used: [Resources]
    /// Node index → live allocations of this job on it, all groups.
    var jobCount: [Int32]
    /// Group → node index → live allocations of the group on it.
    var groupCount: [String: [Int32]] = [:]
    /// Group → target (a spread attribute or a `distinct_property`) → value → live allocations
    /// of the group on nodes with that value; kept as placements are made, so ranking a node
    /// is a lookup rather than a pass over the group's allocations.
    var valueCounts: [String: [String: [String: Int]]] = [:]
    /// Group → the targets counted in ``valueCounts``.
    let countedTargets: [String: [(text: String, target: Target)]]
    /// Node indexes in a random order, walked round-robin across placements.
    var order: [Int]
    var cursor = 0

    init(snapshot: ClusterSnapshot, job: Job, stops: [PlannedStop], random: inout some RandomNumberGenerator) {
        self.snapshot = snapshot
        used = snapshot.used
        order = Array(snapshot.nodes.indices)
        order.shuffle(using: &random)
        jobCount = Array(repeating: 0, count: snapshot.nodes.count)
        for group in job.taskGroups { groupCount[group.name] = Array(repeating: 0, count: snapshot.nodes.count) }
        countedTargets = Dictionary(uniqueKeysWithValues: job.taskGroups.map { ($0.name, PlacementStack.countedTargets(job: job, group: $0)) })
        guard !snapshot.jobAllocations.isEmpty else { return }
        var indexByID: [String: Int] = [:]
        indexByID.reserveCapacity(nodes.count)
        for (index, node) in snapshot.nodes.enumerated() { indexByID[node.id] = index }
        let stopped = Set(stops.map(\.allocationID))
        for allocation in snapshot.jobAllocations where allocation.isLive {
            guard let index = indexByID[allocation.nodeID] else { continue }
            if stopped.contains(allocation.id) {
                used[index] = used[index] - allocation.resources
                continue
            }
            jobCount[index] += 1
            groupCount[allocation.taskGroup]?[index] += 1
            count(group: allocation.taskGroup, on: index)
        }
    }

    mutating func place(group: String, resources: Resources, on index: Int) {
        used[index] = used[index] + resources
        jobCount[index] += 1
        groupCount[group]?[index] += 1
        count(group: group, on: index)
    }

    private mutating func count(group: String, on index: Int) {
        for (text, target) in countedTargets[group] ?? [] {
            guard let value = target.resolve(on: snapshot.nodes[index]) else { continue }
            valueCounts[group, default: [:]][text, default: [:]][value, default: 0] += 1
        }
    }

    mutating func nextNode() -> Int {
        let index = order[cursor]
        cursor = cursor + 1 == order.count ? 0 : cursor + 1
        return index
    }

    /// Ready nodes per datacenter, for failure metrics.
    var availableByDatacenter: [String: Int] {
        var counts: [String: Int] = [:]
        for node in nodes where node.status == .ready { counts[node.datacenter, default: 0] += 1 }
        return counts
    }
}

/// The placement pipeline for one task group, built once per evaluation:
///
/// 1. static feasibility, cached per node: ready and eligible, datacenter, drivers, constraints;
/// 2. `distinct_hosts` and `distinct_property`, which depend on placements so far;
/// 3. resources: the node must still fit the group's ask (else it is "exhausted");
/// 4. ranking: bin-pack (or spread) fit, job anti-affinity, affinities, spreads — averaged over
///    the scores that apply, as Nomad normalises them;
/// 5. selection: the best of the first `limit` fitting nodes in a random order (Nomad's
///    power-of-choices limit), skipping up to three with negative scores while others remain.
struct PlacementStack {
    enum Choice {
        case placed(Int, score: Double)
        case failed(AllocMetric)
        case infeasible(AllocMetric)
    }

    let group: TaskGroup
    let ask: Resources
    let desiredCount: Int
    let algorithm: SchedulerConfiguration.Algorithm
    let checks: [any FeasibilityCheck]
    let distinctHostsJob: Bool
    let distinctHostsGroup: Bool
    let distinctProperties: [(target: String, limit: Int)]
    let affinities: [(matcher: ConstraintMatcher, weight: Int)]
    let spreads: [Spread]
    let limit: Int
    /// Whether a constraint reads a `unique.` value, so that feasibility is per node, not per class.
    let perNode: Bool
    /// Per computed class (or node): -1 not yet checked, 0 feasible, n > 0 rejected for `reasons[n - 1]`.
    var feasibility: [Int32]
    var reasons: [String] = []

    init(job: Job, group: TaskGroup, configuration: SchedulerConfiguration, snapshot: ClusterSnapshot) {
        let nodeCount = snapshot.nodes.count
        self.group = group
        self.ask = group.resources
        self.desiredCount = group.groupCount
        self.algorithm = configuration.algorithm
        let constraints = (job.constraints ?? []) + (group.constraints ?? []) + group.tasks.flatMap { $0.constraints ?? [] }
        let placementConstraints = constraints.filter { $0.operand != "distinct_hosts" && $0.operand != "distinct_property" }
        self.checks = [DatacenterCheck(job.jobDatacenters), DriverCheck(Set(group.tasks.map(\.driver))), ConstraintCheck(placementConstraints)]
        self.perNode = placementConstraints.contains { $0.lTarget.contains("unique.") || $0.rTarget.contains("unique.") }
        self.distinctHostsJob = (job.constraints ?? []).contains { $0.operand == "distinct_hosts" && $0.rTarget != "false" }
        self.distinctHostsGroup =
            (group.constraints ?? []).contains { $0.operand == "distinct_hosts" && $0.rTarget != "false" }
            || group.tasks.contains { ($0.constraints ?? []).contains { $0.operand == "distinct_hosts" && $0.rTarget != "false" } }
        self.distinctProperties = constraints.filter { $0.operand == "distinct_property" }.map { ($0.lTarget, Int($0.rTarget) ?? 1) }
        self.affinities = ((job.affinities ?? []) + (group.affinities ?? [])).map {
            (ConstraintMatcher(Constraint($0.lTarget, $0.operand, $0.rTarget)), $0.weight)
        }
        self.spreads = (job.spreads ?? []) + (group.spreads ?? [])
        // Affinities and spreads rank every node against every other; without them, a few
        // random fitting nodes are enough to find a good one (Nomad: 2 for batch, log2(n) else).
        if !affinities.isEmpty || !spreads.isEmpty {
            self.limit = Int.max
        } else if job.jobType == .batch {
            self.limit = 2
        } else {
            self.limit = max(2, Int(log2(Double(max(nodeCount, 1))).rounded(.up)))
        }
        self.feasibility = Array(repeating: -1, count: perNode ? nodeCount : snapshot.classCount)
    }

    /// What ``PlacementState/valueCounts`` keeps for a group: its spreads' attributes and its
    /// `distinct_property` targets.
    static func countedTargets(job: Job, group: TaskGroup) -> [(text: String, target: Target)] {
        let constraints = (job.constraints ?? []) + (group.constraints ?? []) + group.tasks.flatMap { $0.constraints ?? [] }
        let texts =
            ((job.spreads ?? []) + (group.spreads ?? [])).map(\.attribute)
            + constraints.filter { $0.operand == "distinct_property" }.map(\.lTarget)
        return Array(Set(texts)).sorted().map { ($0, Target($0)) }
    }

    /// The rejection reason for a node that is statically infeasible, or `nil`.
    mutating func staticReason(_ index: Int, _ snapshot: ClusterSnapshot) -> String? {
        if !snapshot.schedulable[index] { return NodeReadyCheck().reject(snapshot.nodes[index]) }
        let slot = perNode ? index : Int(snapshot.computedClass[index])
        var verdict = feasibility[slot]
        if verdict < 0 {
            verdict = 0
            for check in checks {
                if let reason = check.reject(snapshot.nodes[index]) {
                    if let known = reasons.firstIndex(of: reason) {
                        verdict = Int32(known + 1)
                    } else {
                        reasons.append(reason)
                        verdict = Int32(reasons.count)
                    }
                    break
                }
            }
            feasibility[slot] = verdict
        }
        return verdict == 0 ? nil : reasons[Int(verdict - 1)]
    }

    enum Verdict {
        case filtered(String)
        case exhausted(String)
        case fits(Double)
    }

    /// Every check and score for one node.
    mutating func evaluate(_ index: Int, state: borrowing PlacementState, counts: borrowing [Int32]) -> Verdict {
        if let reason = staticReason(index, state.snapshot) { return .filtered(reason) }
        if distinctHostsJob, state.jobCount[index] > 0 { return .filtered("distinct_hosts") }
        let collisions = Int(counts[index])
        if distinctHostsGroup, collisions > 0 { return .filtered("distinct_hosts") }
        for (target, limit) in distinctProperties {
            guard let value = resolveTarget(target, on: state.nodes[index]) else { return .filtered("distinct_property: \(target) missing") }
            if state.valueCounts[group.name]?[target]?[value] ?? 0 >= limit { return .filtered("distinct_property: \(target)") }
        }
        let after = state.used[index] + ask
        let capacity = state.snapshot.capacity[index]
        if after.cpu > capacity.cpu { return .exhausted("cpu") }
        if after.memoryMB > capacity.memoryMB { return .exhausted("memory") }
        if after.diskMB > capacity.diskMB { return .exhausted("disk") }

        var total = Scores.fit(capacity: capacity, usedAfter: after, algorithm: algorithm)
        var scorers = 1
        if let penalty = Scores.jobAntiAffinity(collisions: collisions, desiredCount: desiredCount) {
            total += penalty
            scorers += 1
        }
        if !affinities.isEmpty, let affinity = Scores.affinity(affinities, node: state.nodes[index]) {
            total += affinity
            scorers += 1
        }
        if !spreads.isEmpty {
            total += spreadScore(state.nodes[index], state: state)
            scorers += 1
        }
        return .fits(total / Double(scorers))
    }

    func spreadScore(_ node: Node, state: borrowing PlacementState) -> Double {
        let weights = spreads.reduce(0) { $0 + $1.weight }
        guard weights > 0 else { return 0 }
        var score = 0.0
        for spread in spreads {
            let value = resolveTarget(spread.attribute, on: node)
            let counts = state.valueCounts[group.name]?[spread.attribute] ?? [:]
            let boost: Double
            if let targets = spread.spreadTarget, !targets.isEmpty {
                let percent = targets.first { $0.value == value }?.percent ?? max(0, 100 - targets.reduce(0) { $0 + $1.percent })
                boost = Scores.targetSpread(desired: Double(percent) / 100 * Double(desiredCount), count: value.map { counts[$0, default: 0] } ?? 0)
            } else if let value {
                let count = counts[value, default: 0]
                boost = Scores.evenSpread(count: count, minimum: counts.values.min() ?? 0, maximum: counts.values.max() ?? 0)
            } else {
                boost = -1
            }
            score += boost * Double(spread.weight) / Double(weights)
        }
        return score
    }

    /// Picks a node for one more allocation of the group.
    mutating func select(state: inout PlacementState) -> Choice {
        var metric = AllocMetric()
        var best: (index: Int, score: Double)?
        var skipped: [(index: Int, score: Double)] = []
        var found = 0
        var visited = 0
        let count = state.order.count
        let counts = state.groupCount[group.name] ?? []
        while visited < count, found < limit {
            let index = state.nextNode()
            visited += 1
            metric.nodesEvaluated += 1
            switch evaluate(index, state: state, counts: counts) {
            case .filtered(let reason):
                record(filtered: reason, nodeClass: state.snapshot.nodes[index].nodeClass, into: &metric)
            case .exhausted(let dimension):
                record(exhausted: dimension, nodeClass: state.snapshot.nodes[index].nodeClass, into: &metric)
            case .fits(let score):
                if score < 0, skipped.count < 3 {
                    skipped.append((index, score))
                    continue
                }
                found += 1
                if best == nil || score > best!.score { best = (index, score) }
            }
        }
        if best == nil { best = skipped.max { $0.score < $1.score } }
        if let best { return .placed(best.index, score: best.score) }
        return .failed(metric)
    }

    /// Checks the one node a system job's allocation must go to.
    mutating func select(only index: Int, state: PlacementState) -> Choice {
        var metric = AllocMetric()
        metric.nodesEvaluated = 1
        switch evaluate(index, state: state, counts: state.groupCount[group.name] ?? []) {
        case .filtered(let reason):
            record(filtered: reason, nodeClass: state.snapshot.nodes[index].nodeClass, into: &metric)
            return .infeasible(metric)
        case .exhausted(let dimension):
            record(exhausted: dimension, nodeClass: state.snapshot.nodes[index].nodeClass, into: &metric)
            return .failed(metric)
        case .fits(let score):
            return .placed(index, score: score)
        }
    }

    func record(filtered reason: String, nodeClass: String, into metric: inout AllocMetric) {
        metric.nodesFiltered += 1
        metric.constraintFiltered[reason, default: 0] += 1
        if !nodeClass.isEmpty { metric.classFiltered[nodeClass, default: 0] += 1 }
    }

    func record(exhausted dimension: String, nodeClass: String, into metric: inout AllocMetric) {
        metric.nodesExhausted += 1
        metric.dimensionExhausted[dimension, default: 0] += 1
        if !nodeClass.isEmpty { metric.classExhausted[nodeClass, default: 0] += 1 }
    }
}
