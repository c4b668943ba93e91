public import DroverModel

/// The read-only state one evaluation is planned against.
public struct ClusterSnapshot: Sendable {
    /// Every known node, whatever its status.
    public let nodes: [Node]
    /// Resources held on `nodes[i]` by live allocations of all jobs; same order as `nodes`.
    public var used: [Resources]
    /// Every allocation of the job being evaluated, live or not.
    public var jobAllocations: [Allocation]

    /// What is derived from the nodes alone, once per snapshot: capacities, schedulability, and
    /// each node's computed class (nodes with the same datacenter, class, drivers, attributes
    /// and meta, `unique.*` attributes aside), so feasibility is checked once per class.
    let capacity: [Resources]
    let schedulable: [Bool]
    let computedClass: [Int32]
    let classCount: Int

    public init(nodes: [Node], used: [Resources], jobAllocations: [Allocation]) {
        precondition(nodes.count == used.count, "one usage entry per node")
        self.nodes = nodes
        self.used = used
        self.jobAllocations = jobAllocations
        var capacity: [Resources] = []
        var schedulable: [Bool] = []
        var computedClass: [Int32] = []
        capacity.reserveCapacity(nodes.count)
        schedulable.reserveCapacity(nodes.count)
        computedClass.reserveCapacity(nodes.count)
        var classes: [String: Int32] = [:]
        for node in nodes {
            capacity.append(node.resources)
            schedulable.append(node.isSchedulable)
            let key = Self.classKey(node)
            if let known = classes[key] {
                computedClass.append(known)
            } else {
                let next = Int32(classes.count)
                classes[key] = next
                computedClass.append(next)
            }
        }
        self.capacity = capacity
        self.schedulable = schedulable
        self.computedClass = computedClass
        self.classCount = classes.count
    }

    static func classKey(_ node: Node) -> String {
        var key = "\(node.datacenter)\u{0}\(node.nodeClass)\u{0}"
        for (name, info) in node.drivers.sorted(by: { $0.key < $1.key }) where info.detected && info.healthy { key += "\(name)," }
        key += "\u{0}"
        for (name, value) in node.attributes.sorted(by: { $0.key < $1.key }) where !name.hasPrefix("unique.") { key += "\(name)=\(value)\u{1}" }
        key += "\u{0}"
        for (name, value) in node.meta.sorted(by: { $0.key < $1.key }) { key += "\(name)=\(value)\u{1}" }
        return key
    }

    /// A snapshot from usage keyed by node id (a node without an entry holds nothing).
    public init(nodes: [Node], usage: [String: Resources], jobAllocations: [Allocation]) {
        self.init(
            nodes: nodes, used: nodes.map { usage[$0.id] ?? Resources(cpu: 0, memoryMB: 0, diskMB: 0) }, jobAllocations: jobAllocations)
    }
}

/// Cluster-wide scheduler settings.
public struct SchedulerConfiguration: Sendable, Equatable {
    public enum Algorithm: String, Sendable, Codable, CaseIterable {
        /// Fill the fullest node that fits first (Nomad's default): fewer, busier nodes.
        case binpack
        /// Prefer the emptiest node: load spread across every node.
        case spread
    }

    public var algorithm: Algorithm

    public init(algorithm: Algorithm = .binpack) { self.algorithm = algorithm }
}

/// A new allocation the plan makes.
public struct PlannedAllocation: Sendable, Equatable {
    public var name: String
    public var taskGroup: String
    public var nodeIndex: Int
    public var nodeID: String
    public var nodeName: String
    public var resources: Resources
    /// The allocation this one replaces, when it is a reschedule or an update.
    public var previousAllocation: String?
    /// Reschedule history carried forward from the allocation replaced.
    public var rescheduleTracker: RescheduleTracker?
    /// The winning node's final score, 0 … 1 for bin packing.
    public var score: Double
}

/// An allocation the plan stops.
public struct PlannedStop: Sendable, Equatable {
    public var allocationID: String
    public var nodeID: String
    public var description: String
    /// Set when the node is gone: the allocation is also marked `lost`.
    public var markLost: Bool
}

/// What the scheduler decided for one evaluation. Applying it is the caller's business.
public struct Plan: Sendable {
    public var evalID: String
    public var jobID: String
    public var placements: [PlannedAllocation] = []
    public var stops: [PlannedStop] = []
    /// Group → why not every allocation could be placed.
    public var failedGroups: [String: AllocMetric] = [:]
    /// Group → allocations that could not be placed and wait for room.
    public var queued: [String: Int] = [:]
    public var desiredUpdates: [String: DesiredUpdates] = [:]

    public init(evalID: String, jobID: String) {
        self.evalID = evalID
        self.jobID = jobID
    }

    /// Whether applying it changes nothing.
    public var isEmpty: Bool { placements.isEmpty && stops.isEmpty }
}

/// A small, fast, seedable generator for the node order: plans repeat for a seed (tests,
/// benchmarks); services use the system generator.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
