public import DroverModel
import Foundation

/// The scores that rank feasible nodes. Each is a pure function, tested by table.
public enum Scores {
    /// Nomad's fitness of a node once the allocation is on it, 0 … 1.
    ///
    /// With `free` the share of CPU and of memory left free, the fit is `20 - (10^freeCPU +
    /// 10^freeMemory)` for bin packing (a full node scores 18, an empty one 0) and its
    /// complement for spread; either is divided by 18.
    public static func fit(capacity: Resources, usedAfter: Resources, algorithm: SchedulerConfiguration.Algorithm) -> Double {
        let freeCPU = capacity.cpu > 0 ? 1 - Double(usedAfter.cpu) / Double(capacity.cpu) : 0
        let freeMemory = capacity.memoryMB > 0 ? 1 - Double(usedAfter.memoryMB) / Double(capacity.memoryMB) : 0
        let total = pow(10, freeCPU) + pow(10, freeMemory)
        let score = algorithm == .binpack ? 20 - total : total - 2
        return min(max(score, 0), 18) / 18
    }

    /// Penalty for putting another allocation of the same job and group on a node that has
    /// `collisions` already: `-(collisions + 1) / desiredCount`; 0 (not counted) without collisions.
    public static func jobAntiAffinity(collisions: Int, desiredCount: Int) -> Double? {
        guard collisions > 0 else { return nil }
        return -Double(collisions + 1) / Double(max(desiredCount, 1))
    }

    /// Sum of the weights of the affinities the node matches, over the sum of all weights'
    /// magnitudes: -1 … 1; `nil` when none matches.
    public static func affinity(_ affinities: [(matcher: ConstraintMatcher, weight: Int)], node: Node) -> Double? {
        guard !affinities.isEmpty else { return nil }
        var total = 0
        var magnitude = 0
        for (matcher, weight) in affinities {
            magnitude += abs(weight)
            if matcher.matches(node) { total += weight }
        }
        return total == 0 ? nil : Double(total) / Double(magnitude)
    }

    /// How much a spread wants one more allocation on a node whose attribute value has `count`
    /// of the group's allocations already, when spreading evenly over values whose counts range
    /// from `minimum` to `maximum`: 1 for an unused value, positive while the value is behind,
    /// -1 when every value is level, negative when it is ahead.
    public static func evenSpread(count: Int, minimum: Int, maximum: Int) -> Double {
        if count == 0 { return 1 }
        if count > minimum { return Double(minimum - count) / Double(count) }
        if minimum == maximum { return -1 }
        return Double(maximum - minimum) / Double(maximum)
    }

    /// How much a spread with targets wants one more allocation on a value that should get
    /// `desired` allocations and has `count`: `(desired - count) / desired`, -1 when it should get none.
    public static func targetSpread(desired: Double, count: Int) -> Double {
        guard desired > 0 else { return -1 }
        return (desired - Double(count)) / desired
    }
}
