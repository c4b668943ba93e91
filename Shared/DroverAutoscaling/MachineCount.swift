/// How many machines of one type a demand needs, within an array's limits: the arithmetic at the
/// heart of an autoscale decision, as CycleCloud's node arrays count it (by cores, or by
/// instances, capped by `MaxCount` and `MaxCoreCount`).
///
/// This module is the pure autoscaling core: arrays, targets, demand and idle nodes in, with the
/// time passed in; decisions out. It does no I/O, so its rules are tested without a provider.
public struct MachineCount: Sendable, Equatable {
    /// Cores one machine of the array's type has (at least 1).
    public var coresPerMachine: Int
    public var minimum: Int
    public var maximum: Int
    /// At most this many cores in all (nil: no such cap).
    public var maximumCores: Int?

    public init(coresPerMachine: Int, minimum: Int = 0, maximum: Int, maximumCores: Int? = nil) {
        self.coresPerMachine = max(1, coresPerMachine)
        self.minimum = max(0, minimum)
        self.maximum = max(self.minimum, maximum)
        self.maximumCores = maximumCores.map { max(0, $0) }
    }

    /// The fewest machines that give `cores` cores, within the limits. Never traps: a demand
    /// too large for the limits is capped by them.
    public func machines(forCores cores: Int) -> Int {
        let wanted = cores <= 0 ? 0 : (cores - 1) / coresPerMachine + 1
        return clamp(wanted)
    }

    /// `count` machines, within the limits.
    public func clamp(_ count: Int) -> Int {
        var allowed = maximum
        if let maximumCores { allowed = min(allowed, maximumCores / coresPerMachine) }
        return max(minimum, min(max(0, count), allowed))
    }
}
