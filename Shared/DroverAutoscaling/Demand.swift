public import DroverModel
import DroverScheduling

/// Placements the scheduler could not make (a blocked evaluation's failed groups): `count`
/// allocations of one group, each needing `resources`, on nodes that satisfy `constraints`.
public struct PendingPlacement: Sendable, Equatable {
    public var job: String
    public var group: String
    public var count: Int
    /// What one allocation needs (its tasks' resources summed).
    public var resources: Resources
    /// The job's, the group's and its tasks' constraints.
    public var constraints: [Constraint]
    public var datacenters: [String]

    public init(job: String, group: String, count: Int, resources: Resources, constraints: [Constraint] = [], datacenters: [String] = ["*"]) {
        self.job = job
        self.group = group
        self.count = count
        self.resources = resources
        self.constraints = constraints
        self.datacenters = datacenters
    }
}

extension PendingPlacement {
    /// What a blocked evaluation of `job` waits for: per group it could not place, the
    /// allocations left (one, and the failures coalesced with it), what each needs and where it
    /// may go.
    public static func of(blocked evaluation: Evaluation, job: Job) -> [PendingPlacement] {
        (evaluation.failedTGAllocs ?? [:]).sorted { $0.key < $1.key }.compactMap { name, metric in
            guard let group = job.taskGroups.first(where: { $0.name == name }) else { return nil }
            let constraints = (job.constraints ?? []) + (group.constraints ?? []) + group.tasks.flatMap { $0.constraints ?? [] }
            let needs = group.resources
            return PendingPlacement(
                job: job.id, group: name, count: 1.addingSaturating(max(0, metric.coalescedFailures)),
                resources: Resources(cpu: max(0, needs.cpu), memoryMB: max(0, needs.memoryMB), diskMB: max(0, needs.diskMB)),
                constraints: constraints, datacenters: job.datacenters ?? ["*"])
        }
    }
}

/// Which array each pending placement would go to, and how many machines of it they fill.
public struct DemandPacking: Sendable, Equatable {
    /// Array name → the fewest machines of its type that hold what was assigned to it.
    public var machines: [String: Int]
    /// Array name → the placements (allocations) assigned to it.
    public var placements: [String: Int]
    /// Placements no array's machine type can take (too large, or constraints no type meets).
    public var unplaceable: Int

    /// Assigns each placement to the array with the smallest machine type (fewest cores, then
    /// name) that satisfies its constraints and datacenters and can hold one allocation, then
    /// packs each array's share onto as few machines as fit it (largest first, each allocation
    /// into the first machine with room).
    public static func pack(_ demand: [PendingPlacement], arrays: [NodeArray]) -> DemandPacking {
        let candidates = arrays.sorted { ($0.machine.cores, $0.name) < ($1.machine.cores, $1.name) }.map { array in
            (array: array, node: array.hypotheticalNode())
        }
        var shapes: [String: [Resources: Int]] = [:]
        var result = DemandPacking(machines: [:], placements: [:], unplaceable: 0)
        for placement in demand where placement.count > 0 {
            let checks: [any FeasibilityCheck] = [DatacenterCheck(placement.datacenters), ConstraintCheck(placement.constraints)]
            let needs = placement.resources
            guard
                let chosen = candidates.first(where: { candidate in
                    Self.fits(needs, in: candidate.array.machine) && checks.allSatisfy { $0.reject(candidate.node) == nil }
                })
            else {
                result.unplaceable = result.unplaceable.addingSaturating(placement.count)
                continue
            }
            shapes[chosen.array.name, default: [:]][needs, default: 0].addSaturating(placement.count)
            result.placements[chosen.array.name, default: 0].addSaturating(placement.count)
        }
        for candidate in candidates {
            guard let arrayShapes = shapes[candidate.array.name] else { continue }
            result.machines[candidate.array.name] = machinesFor(arrayShapes, on: candidate.array.machine)
        }
        return result
    }

    /// Whether one allocation needing `needs` fits on an empty machine (a type with no disk
    /// size given has room for any disk).
    static func fits(_ needs: Resources, in machine: MachineType) -> Bool {
        guard needs.cpu >= 0, needs.memoryMB >= 0, needs.diskMB >= 0 else { return false }
        let disk = machine.diskMB <= 0 || needs.diskMB <= machine.diskMB
        return needs.cpu <= machine.cpu && needs.memoryMB <= machine.memoryMB && disk
    }

    /// Room left on a machine.
    struct Room: Hashable {
        var cpu: Int
        var memoryMB: Int

        /// How many allocations of `needs` still fit.
        func fitting(_ needs: Resources) -> Int {
            let byCPU = needs.cpu > 0 ? cpu / needs.cpu : Int.max
            let byMemory = needs.memoryMB > 0 ? memoryMB / needs.memoryMB : Int.max
            return Swift.min(byCPU, byMemory)
        }

        /// The room after `count` allocations of `needs`.
        func taking(_ count: Int, of needs: Resources) -> Room {
            Room(cpu: cpu - Saturating.product(count, needs.cpu), memoryMB: memoryMB - Saturating.product(count, needs.memoryMB))
        }
    }

    /// The fewest machines of `machine`'s type for `shapes` (resources → allocations), by first
    /// fit decreasing, in bulk: machines with the same room left are one entry with a count, so
    /// identical allocations fill many machines in one step, and at most 64 kinds of leftover
    /// room (the roomiest) are kept; 100,000 pending placements take a few thousand steps.
    static func machinesFor(_ shapes: [Resources: Int], on machine: MachineType) -> Int {
        let whole = Room(cpu: machine.cpu, memoryMB: machine.memoryMB)
        var count = 0
        var rooms: [Room: Int] = [:]
        let ordered = shapes.sorted { ($0.key.cpu, $0.key.memoryMB) > ($1.key.cpu, $1.key.memoryMB) }
        for (needs, wanted) in ordered where wanted > 0 {
            let perMachine = whole.fitting(needs)
            guard perMachine > 0 else { continue }
            // Allocations that need nothing take no room: they ride along on any machine.
            if perMachine == Int.max {
                if count == 0 { count = 1 }
                continue
            }
            var left = wanted
            // First the machines already counted, roomiest first; then new ones.
            var next: [Room: Int] = [:]
            for (room, machines) in rooms.sorted(by: { ($0.key.cpu, $0.key.memoryMB) > ($1.key.cpu, $1.key.memoryMB) }) {
                let each = room.fitting(needs)
                guard left > 0, each > 0 else {
                    next[room, default: 0].addSaturating(machines)
                    continue
                }
                let taken = Swift.min(left, Saturating.product(each, machines))
                let filled = taken / each
                let partly = taken % each
                left -= taken
                if filled > 0 { next[room.taking(each, of: needs), default: 0].addSaturating(filled) }
                if partly > 0 { next[room.taking(partly, of: needs), default: 0].addSaturating(1) }
                let untouched = machines - filled - (partly > 0 ? 1 : 0)
                if untouched > 0 { next[room, default: 0].addSaturating(untouched) }
            }
            if left > 0 {
                let filled = left / perMachine
                let partly = left % perMachine
                count = count.addingSaturating(filled).addingSaturating(partly > 0 ? 1 : 0)
                if filled > 0 { next[whole.taking(perMachine, of: needs), default: 0].addSaturating(filled) }
                if partly > 0 { next[whole.taking(partly, of: needs), default: 0].addSaturating(1) }
            }
            next = next.filter { $0.key.cpu > 0 && $0.key.memoryMB > 0 }
            if next.count > 64 {
                next = Dictionary(
                    uniqueKeysWithValues: next.sorted { ($0.key.cpu, $0.key.memoryMB) > ($1.key.cpu, $1.key.memoryMB) }.prefix(64).map {
                        ($0.key, $0.value)
                    })
            }
            rooms = next
        }
        return count
    }
}

extension Int {
    func addingSaturating(_ other: Int) -> Int {
        let (value, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? Int.max : Int.min) : value
    }

    mutating func addSaturating(_ other: Int) { self = addingSaturating(other) }
}
