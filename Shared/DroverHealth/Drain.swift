public import DroverModel

/// What to do next for a draining node, given its allocations and the time: a pure function.
///
/// Allocations of service and batch jobs are migrated by the scheduler (a replacement is placed
/// elsewhere, then the old one is stopped); this decides what the scheduler does not: at the
/// deadline whatever is left is stopped; once nothing but system jobs' allocations is left,
/// those are stopped too (unless the drain ignores system jobs); and the drain is complete only
/// when every allocation it counts has actually stopped running, not merely been told to.
public enum DrainDecision {
    public struct Allocation: Sendable, Equatable {
        public var id: String
        public var system: Bool
        /// Desired status `run`.
        public var wanted: Bool
        /// Client status `pending` or `running`: still on the node.
        public var running: Bool

        public init(id: String, system: Bool, wanted: Bool, running: Bool) {
            self.id = id
            self.system = system
            self.wanted = wanted
            self.running = running
        }
    }

    public struct Outcome: Sendable, Equatable {
        /// Allocations to stop now.
        public var stop: [String]
        /// Whether the drain is done.
        public var complete: Bool

        public init(stop: [String], complete: Bool) {
            self.stop = stop
            self.complete = complete
        }
    }

    /// - Parameter now: Unix nanoseconds.
    public static func next(_ strategy: DrainStrategy, allocations: [Allocation], now: Int64) -> Outcome {
        let ignoreSystem = strategy.drainSpec.ignoreSystemJobs
        let counted = allocations.filter { !(ignoreSystem && $0.system) }
        let pastDeadline = strategy.forceDeadline != 0 && now >= strategy.forceDeadline
        let othersLeft = allocations.contains { !$0.system && $0.running }
        let stop = counted.filter { allocation in
            guard allocation.wanted && allocation.running else { return false }
            return pastDeadline || (allocation.system && !othersLeft)
        }
        return Outcome(stop: stop.map(\.id), complete: !counted.contains(where: \.running))
    }

    /// The deadline a drain started at `now` (Unix nanoseconds) with `spec` has: none for 0, at
    /// once below 0. A deadline past the end of time (`Int64.max` nanoseconds from now) is the end
    /// of time: the sum saturates, since the spec is the caller's.
    public static func forceDeadline(for spec: DrainSpec, now: Int64) -> Int64 {
        guard spec.deadline > 0 else { return spec.deadline < 0 ? now : 0 }
        let (sum, overflow) = now.addingReportingOverflow(spec.deadline)
        return overflow ? .max : sum
    }
}
