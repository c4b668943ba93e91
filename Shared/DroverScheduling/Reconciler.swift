public import DroverModel

/// Compares what a job asks for with the allocations it has, and says what to stop and what to
/// place. Placement itself is the stack's business.
public struct Reconciler {
    /// One allocation to place: group, index in the name, and the allocation it replaces.
    public struct Placement: Sendable, Equatable {
        public var group: String
        public var index: Int
        public var previous: Allocation?
        /// For system jobs: the one node it must go to.
        public var nodeIndex: Int?
    }

    public struct Result: Sendable {
        public var placements: [Placement] = []
        public var stops: [PlannedStop] = []
        public var desiredUpdates: [String: DesiredUpdates] = [:]
    }

    /// - Parameters:
    ///   - job: the job as registered, `nil` when purged; a stopped or missing job stops everything.
    ///   - allocations: every allocation of the job.
    ///   - nodes: the cluster's nodes, to tell an allocation on a node that is down (lost) or
    ///     draining (migrated: a replacement is placed elsewhere, and the old allocation is
    ///     stopped only once its replacement runs).
    ///   - now: Unix nanoseconds, for reschedule intervals.
    public static func reconcile(job: Job?, allocations: [Allocation], nodes: [Node], now: Int64) -> Result {
        var result = Result()
        let nodeStatus = Dictionary(nodes.map { ($0.id, $0.status) }, uniquingKeysWith: { first, _ in first })
        let draining = Set(nodes.filter(\.drain).map(\.id))
        let considered = allocations.filter { $0.desiredStatus == .run }

        guard let job, !job.isStopped, !job.isPeriodicParent else {
            for allocation in considered where !allocation.clientStatus.isTerminal {
                result.stops.append(
                    PlannedStop(
                        allocationID: allocation.id, nodeID: allocation.nodeID, description: "alloc not needed since job was stopped", markLost: false
                    ))
                result.desiredUpdates[allocation.taskGroup, default: DesiredUpdates()].stop += 1
            }
            return result
        }
        let groupNames = Set(job.taskGroups.map(\.name))
        // Groups the job no longer has.
        for allocation in considered where !groupNames.contains(allocation.taskGroup) && !allocation.clientStatus.isTerminal {
            result.stops.append(
                PlannedStop(
                    allocationID: allocation.id, nodeID: allocation.nodeID, description: "alloc not needed due to job update", markLost: false))
            result.desiredUpdates[allocation.taskGroup, default: DesiredUpdates()].stop += 1
        }
        if job.jobType == .system {
            reconcileSystem(job: job, allocations: considered, nodes: nodes, into: &result)
            return result
        }
        for group in job.taskGroups {
            var updates = DesiredUpdates()
            let mine = considered.filter { $0.taskGroup == group.name }
            // Index → satisfied by a live allocation, or done for good (a finished batch run, a
            // failure out of reschedule attempts).
            var satisfied = Set<Int>()
            // Index → the live allocation that satisfies it.
            var live: [Int: Allocation] = [:]
            var replacements: [Int: Allocation] = [:]
            // Newest first, so that the latest allocation of an index decides.
            for allocation in mine.sorted(by: { $0.createIndex > $1.createIndex }) {
                let index = allocation.index
                let current = sameSpec(allocation.job?.group(named: group.name), group)
                let nodeDown = nodeStatus[allocation.nodeID].map { $0 == .down } ?? true
                let onDrainingNode = draining.contains(allocation.nodeID)
                if !allocation.clientStatus.isTerminal {
                    if onDrainingNode, index < group.groupCount, let replacement = live[index],
                        replacement.previousAllocation == allocation.id
                    {
                        // Migrating: stopped once its replacement runs, not before.
                        if replacement.clientStatus == .running {
                            result.stops.append(stop(allocation, "alloc is being migrated"))
                            updates.stop += 1
                        } else {
                            updates.migrate += 1
                        }
                    } else if satisfied.contains(index) || index >= group.groupCount {
                        result.stops.append(stop(allocation, "alloc not needed due to job update"))
                        updates.stop += 1
                    } else if nodeDown {
                        result.stops.append(
                            PlannedStop(
                                allocationID: allocation.id, nodeID: allocation.nodeID, description: "alloc is lost since its node is down",
                                markLost: true))
                        replacements[index] = replacements[index] ?? allocation
                        updates.stop += 1
                    } else if !current {
                        result.stops.append(stop(allocation, "alloc is being updated due to job update"))
                        replacements[index] = replacements[index] ?? allocation
                        updates.destructiveUpdate += 1
                    } else if onDrainingNode {
                        // The node drains: a replacement goes elsewhere; this one keeps running meanwhile.
                        result.placements.append(Placement(group: group.name, index: index, previous: allocation, nodeIndex: nil))
                        satisfied.insert(index)
                        updates.migrate += 1
                    } else {
                        satisfied.insert(index)
                        live[index] = allocation
                        replacements[index] = nil
                        updates.ignore += 1
                    }
                    continue
                }
                guard !satisfied.contains(index), replacements[index] == nil, index < group.groupCount else { continue }
                switch allocation.clientStatus {
                case .complete where job.jobType == .batch && current:
                    satisfied.insert(index)
                    updates.ignore += 1
                case .failed, .lost:
                    if current && !reschedulable(allocation, policy: group.reschedulePolicy, type: job.jobType, now: now) {
                        satisfied.insert(index)
                        updates.ignore += 1
                    } else {
                        replacements[index] = allocation
                        updates.reschedule += 1
                    }
                default:
                    replacements[index] = allocation
                }
            }
            for index in 0..<group.groupCount where !satisfied.contains(index) {
                result.placements.append(Placement(group: group.name, index: index, previous: replacements[index], nodeIndex: nil))
                updates.place += 1
            }
            result.desiredUpdates[group.name] = updates
        }
        return result
    }

    /// One allocation of each group on every node that is up; nodes that left lose theirs.
    static func reconcileSystem(job: Job, allocations: [Allocation], nodes: [Node], into result: inout Result) {
        for group in job.taskGroups {
            var updates = DesiredUpdates()
            var byNode: [String: Allocation] = [:]
            for allocation in allocations where allocation.taskGroup == group.name && !allocation.clientStatus.isTerminal {
                if byNode[allocation.nodeID] != nil {
                    result.stops.append(stop(allocation, "alloc not needed due to job update"))
                    updates.stop += 1
                } else {
                    byNode[allocation.nodeID] = allocation
                }
            }
            for (index, node) in nodes.enumerated() {
                let existing = byNode.removeValue(forKey: node.id)
                if node.status == .down {
                    if let existing {
                        result.stops.append(
                            PlannedStop(
                                allocationID: existing.id, nodeID: node.id, description: "alloc is lost since its node is down", markLost: true))
                        updates.stop += 1
                    }
                    continue
                }
                if let existing {
                    if !node.isSchedulable {
                        // An ineligible node keeps what runs there; a draining one stops its
                        // system allocations last, which the drain itself decides.
                        updates.ignore += 1
                    } else if !sameSpec(existing.job?.group(named: group.name), group) {
                        result.stops.append(stop(existing, "alloc is being updated due to job update"))
                        result.placements.append(Placement(group: group.name, index: 0, previous: existing, nodeIndex: index))
                        updates.destructiveUpdate += 1
                    } else {
                        updates.ignore += 1
                    }
                } else if node.isSchedulable {
                    // Whether the node is feasible is the stack's question.
                    result.placements.append(Placement(group: group.name, index: 0, previous: nil, nodeIndex: index))
                    updates.place += 1
                }
            }
            // Allocations on nodes the cluster no longer knows.
            for allocation in byNode.values {
                result.stops.append(
                    PlannedStop(
                        allocationID: allocation.id, nodeID: allocation.nodeID, description: "alloc is lost since its node is gone", markLost: true))
                updates.stop += 1
            }
            result.desiredUpdates[group.name] = updates
        }
    }

    /// Whether an allocation placed for `old` still runs what `new` asks for: the same group but
    /// for its count (a count change scales; it does not replace).
    static func sameSpec(_ old: TaskGroup?, _ new: TaskGroup) -> Bool {
        guard var old else { return false }
        old.count = new.count
        return old == new
    }

    static func stop(_ allocation: Allocation, _ description: String) -> PlannedStop {
        PlannedStop(allocationID: allocation.id, nodeID: allocation.nodeID, description: description, markLost: false)
    }

    /// Whether a failed allocation may be replaced under `policy`: always when unlimited, else
    /// while fewer than `Attempts` reschedules happened within `Interval`.
    public static func reschedulable(_ allocation: Allocation, policy: ReschedulePolicy?, type: JobType, now: Int64) -> Bool {
        if allocation.clientStatus == .lost { return true }
        guard type != .system, let policy else { return false }
        if policy.unlimited ?? false { return true }
        let attempts = policy.attempts ?? 0
        let interval = policy.interval ?? 0
        let recent = (allocation.rescheduleTracker?.events ?? []).filter { interval == 0 || now - $0.rescheduleTime <= interval }
        return recent.count < attempts
    }
}
