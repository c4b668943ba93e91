public import DroverModel

/// What every machine of an array is: what its node will report once its agent runs.
public struct MachineType: Sendable, Equatable, Hashable {
    public var cores: Int
    /// CPU the node offers per core, in MHz (Nomad counts CPU in MHz): `cores × cpuPerCore` in all.
    public var cpuPerCore: Int
    public var memoryMB: Int
    public var diskMB: Int
    public var gpus: Int
    /// Attributes its node reports besides the fingerprinted ones, for constraints.
    public var attributes: [String: String]
    /// Its node's class; the array's name when empty.
    public var nodeClass: String

    public init(
        cores: Int, cpuPerCore: Int = 1000, memoryMB: Int, diskMB: Int = 0, gpus: Int = 0, attributes: [String: String] = [:],
        nodeClass: String = ""
    ) {
        self.cores = cores
        self.cpuPerCore = cpuPerCore
        self.memoryMB = memoryMB
        self.diskMB = diskMB
        self.gpus = gpus
        self.attributes = attributes
        self.nodeClass = nodeClass
    }

    /// The CPU one machine offers in all, in MHz; saturates instead of trapping.
    public var cpu: Int { Saturating.product(max(0, cores), max(0, cpuPerCore)) }
}

/// A node array, as CycleCloud defines one: machines of one type, between limits, made and
/// taken away by a provider.
public struct NodeArray: Sendable, Equatable {
    public var name: String
    public var machine: MachineType
    public var minCount: Int
    public var maxCount: Int
    /// At most this many cores in all; nil for no such cap.
    public var maxCoreCount: Int?
    /// How long a node that has run work may sit idle before it is taken away, in seconds.
    public var idleTimeAfterJobs: Int64
    /// How long a node that never ran work may sit idle, in seconds.
    public var idleTimeBeforeJobs: Int64
    /// How long a machine has, from the request, to become a ready node, in seconds.
    public var bootTimeout: Int64
    /// The provider plugin that makes its machines (`cluster.provider.<array>.*`).
    public var provider: String

    public init(
        name: String, machine: MachineType, minCount: Int = 0, maxCount: Int, maxCoreCount: Int? = nil, idleTimeAfterJobs: Int64 = 1800,
        idleTimeBeforeJobs: Int64 = 1800, bootTimeout: Int64 = 1800, provider: String
    ) {
        self.name = name
        self.machine = machine
        self.minCount = minCount
        self.maxCount = maxCount
        self.maxCoreCount = maxCoreCount
        self.idleTimeAfterJobs = idleTimeAfterJobs
        self.idleTimeBeforeJobs = idleTimeBeforeJobs
        self.bootTimeout = bootTimeout
        self.provider = provider
    }

    /// The count arithmetic of its limits.
    public var limits: MachineCount {
        MachineCount(coresPerMachine: machine.cores, minimum: minCount, maximum: maxCount, maximumCores: maxCoreCount)
    }

    /// The node a machine of this array will be, for constraint checks before it exists:
    /// its class, `Meta.nodearray`, the machine type's attributes and `cpu.numcores`.
    public func hypotheticalNode(datacenter: String = "dc1") -> Node {
        var attributes = machine.attributes
        attributes["cpu.numcores"] = String(machine.cores)
        attributes["kernel.name"] = attributes["kernel.name"] ?? "linux"
        return Node(
            id: "\(name)-hypothetical", name: "\(name)-hypothetical", datacenter: datacenter,
            nodeClass: machine.nodeClass.isEmpty ? name : machine.nodeClass, attributes: attributes, meta: ["nodearray": name],
            resources: Resources(cpu: machine.cpu, memoryMB: machine.memoryMB, diskMB: machine.diskMB))
    }
}

/// Where a machine of an array is in its life, as CycleCloud shows it.
public enum MachineState: String, Codable, Sendable, CaseIterable {
    /// Asked of the provider; no answer yet.
    case acquiring = "Acquiring"
    /// The provider has started it; its node has not registered yet.
    case preparing = "Preparing"
    /// Its node is registered and ready.
    case ready = "Ready"
    /// Being drained, then taken away.
    case terminating = "Terminating"
    /// Gone.
    case terminated = "Terminated"
    /// It did not come up (provider refusal, timeout) and was given up.
    case failed = "Failed"
    /// Defined (to keep MinCount's names) but not running.
    case off = "Off"

    /// Whether the machine exists or is on its way: what counts against the array's limits.
    public var isActive: Bool { self == .acquiring || self == .preparing || self == .ready || self == .terminating }
}

/// One machine of an array, as the autoscaler knows it.
public struct Machine: Sendable, Equatable {
    /// `<array>-<n>`.
    public var name: String
    public var array: String
    public var state: MachineState
    /// When it entered its state (Unix nanoseconds).
    public var since: Int64
    /// When it was asked for (Unix nanoseconds).
    public var requestedAt: Int64
    /// Its node, once it registered.
    public var nodeID: String?
    /// Allocations still running on its node.
    public var runningAllocations: Int
    /// When an allocation last ran on it (Unix nanoseconds); nil if none ever did.
    public var lastWorkAt: Int64?
    /// Until when a keepalive holds it (Unix nanoseconds).
    public var keepaliveUntil: Int64?
    /// Set when it should be taken away whatever the demand (unhealthy, or it asked).
    public var termination: TerminationRequest?
    /// Whether taking it away should deallocate it (keep its disk) where the provider can.
    public var deallocate: Bool
    /// Why it is terminating: idleness can be undone by new demand, a flag cannot.
    public var terminatingForIdleness: Bool
    /// When the provider was last asked to take it away (Unix nanoseconds).
    public var terminateRequestedAt: Int64?

    public init(
        name: String, array: String, state: MachineState, since: Int64, requestedAt: Int64? = nil, nodeID: String? = nil,
        runningAllocations: Int = 0, lastWorkAt: Int64? = nil, keepaliveUntil: Int64? = nil, termination: TerminationRequest? = nil,
        deallocate: Bool = false, terminatingForIdleness: Bool = false, terminateRequestedAt: Int64? = nil
    ) {
        self.name = name
        self.array = array
        self.state = state
        self.since = since
        self.requestedAt = requestedAt ?? since
        self.nodeID = nodeID
        self.runningAllocations = runningAllocations
        self.lastWorkAt = lastWorkAt
        self.keepaliveUntil = keepaliveUntil
        self.termination = termination
        self.deallocate = deallocate
        self.terminatingForIdleness = terminatingForIdleness
        self.terminateRequestedAt = terminateRequestedAt
    }

    /// The number in its name (`execute-3` → 3), or nil.
    public var index: Int? { name.split(separator: "-").last.flatMap { Int($0) } }
}

/// A target set as `jetpack autoscale` sets one: cores or machines, until it expires.
public struct ScaleTarget: Sendable, Equatable {
    public var array: String
    public var coreCount: Int?
    public var count: Int?
    /// Unix nanoseconds.
    public var expiresAt: Int64

    public init(array: String, coreCount: Int? = nil, count: Int? = nil, expiresAt: Int64) {
        self.array = array
        self.coreCount = coreCount
        self.count = count
        self.expiresAt = expiresAt
    }
}

/// A provider that refused or did not answer: no new request to it until `until`.
public struct ProviderBackoff: Sendable, Equatable {
    public var array: String
    public var failures: Int
    /// Unix nanoseconds.
    public var until: Int64
    public var reason: String

    public init(array: String, failures: Int, until: Int64, reason: String) {
        self.array = array
        self.failures = failures
        self.until = until
        self.reason = reason
    }

    /// The wait after `failures` failures in a row: 10 s doubling, at most 5 minutes.
    public static func delay(afterFailures failures: Int) -> Int64 {
        let seconds = Int64(10) << Int64(min(max(failures, 1), 6) - 1)
        return min(seconds, 300) * 1_000_000_000
    }
}

/// Arithmetic on numbers that came from outside: it saturates instead of trapping.
public enum Saturating {
    public static func product(_ a: Int, _ b: Int) -> Int {
        let (value, overflow) = a.multipliedReportingOverflow(by: b)
        return overflow ? ((a < 0) != (b < 0) ? Int.min : Int.max) : value
    }

    public static func sum(_ a: Int64, _ b: Int64) -> Int64 {
        let (value, overflow) = a.addingReportingOverflow(b)
        return overflow ? (b > 0 ? Int64.max : Int64.min) : value
    }

    /// Seconds as nanoseconds.
    public static func nanoseconds(_ seconds: Int64) -> Int64 {
        let (value, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? (seconds < 0 ? Int64.min : Int64.max) : value
    }
}
