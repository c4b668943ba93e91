/// What every machine of an array is: what its node will report once its agent runs.
public struct MachineType: Codable, Sendable, Equatable, Hashable {
    /// Cores per machine.
    public var cores: Int
    /// CPU the node offers per core, in MHz (Nomad counts CPU in MHz): `cores × cpuPerCore` in all.
    public var cpuPerCore: Int
    /// Memory per machine, in MB.
    public var memoryMB: Int
    /// Disk per machine, in MB.
    public var diskMB: Int
    /// GPUs per machine.
    public var gpus: Int
    /// Attributes its node reports besides the fingerprinted ones, for constraints.
    public var attributes: [String: String]
    /// Its node's class; the array's name when empty.
    public var nodeClass: String

    /// A machine type; absent fields are 0 or empty.
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

    enum CodingKeys: String, CodingKey, CaseIterable {
        case cores = "Cores"
        case cpuPerCore = "CPUPerCore"
        case memoryMB = "MemoryMB"
        case diskMB = "DiskMB"
        case gpus = "GPUs"
        case attributes = "Attributes"
        case nodeClass = "NodeClass"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        cores = try container.decode(Int.self, forKey: .cores)
        cpuPerCore = try container.decodeIfPresent(Int.self, forKey: .cpuPerCore) ?? 1000
        memoryMB = try container.decode(Int.self, forKey: .memoryMB)
        diskMB = try container.decodeIfPresent(Int.self, forKey: .diskMB) ?? 0
        gpus = try container.decodeIfPresent(Int.self, forKey: .gpus) ?? 0
        attributes = try container.decodeIfPresent([String: String].self, forKey: .attributes) ?? [:]
        nodeClass = try container.decodeIfPresent(String.self, forKey: .nodeClass) ?? ""
    }
}

/// A node array, as CycleCloud defines one: machines of one type, between limits, made and
/// taken away by a provider.
public struct NodeArray: Codable, Sendable, Equatable {
    /// The array's name: lowercase letters, digits and `-`.
    public var name: String
    /// What each machine is.
    public var machine: MachineType
    /// Machines kept however idle.
    public var minCount: Int
    /// Machines at most.
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
    /// The cluster's index when it was made.
    public var createIndex: Int64 = 0
    /// The cluster's index of its last change.
    public var modifyIndex: Int64 = 0

    /// An array with every field given; the idle times and BootTimeout default to CycleCloud's (1800 s).
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

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name = "Name"
        case machine = "MachineType"
        case minCount = "MinCount"
        case maxCount = "MaxCount"
        case maxCoreCount = "MaxCoreCount"
        case idleTimeAfterJobs = "IdleTimeAfterJobs"
        case idleTimeBeforeJobs = "IdleTimeBeforeJobs"
        case bootTimeout = "BootTimeout"
        case provider = "Provider"
        case createIndex = "CreateIndex"
        case modifyIndex = "ModifyIndex"
    }

    /// CycleCloud's defaults for what is left out: MinCount 0, idle times and BootTimeout
    /// 1800 s, the `local` provider.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        machine = try container.decode(MachineType.self, forKey: .machine)
        minCount = try container.decodeIfPresent(Int.self, forKey: .minCount) ?? 0
        maxCount = try container.decode(Int.self, forKey: .maxCount)
        maxCoreCount = try container.decodeIfPresent(Int.self, forKey: .maxCoreCount)
        idleTimeAfterJobs = try container.decodeIfPresent(Int64.self, forKey: .idleTimeAfterJobs) ?? 1800
        idleTimeBeforeJobs = try container.decodeIfPresent(Int64.self, forKey: .idleTimeBeforeJobs) ?? 1800
        bootTimeout = try container.decodeIfPresent(Int64.self, forKey: .bootTimeout) ?? 1800
        provider = try container.decodeIfPresent(String.self, forKey: .provider) ?? "local"
        createIndex = try container.decodeIfPresent(Int64.self, forKey: .createIndex) ?? 0
        modifyIndex = try container.decodeIfPresent(Int64.self, forKey: .modifyIndex) ?? 0
    }

    /// Every field out of range, by its JSON name. Names are routing-key words (the provider's
    /// messages carry them), limits are counts a cluster can have, times at most a year.
    public func validate() -> [FieldError] {
        var errors: [FieldError] = []
        if !Self.isName(name) { errors.append(FieldError("Name", "must be 1-64 letters, digits, '_' or '-', starting with a letter")) }
        if !Self.isName(provider) { errors.append(FieldError("Provider", "must be 1-64 letters, digits, '_' or '-', starting with a letter")) }
        let counts = 0...NodeArrayLimits.maximumMachines
        if !(1...4096).contains(machine.cores) { errors.append(FieldError("MachineType.Cores", "must be 1-4096")) }
        if !(1...1_000_000).contains(machine.cpuPerCore) { errors.append(FieldError("MachineType.CPUPerCore", "must be 1-1000000 MHz")) }
        if !(1...(1 << 32)).contains(machine.memoryMB) { errors.append(FieldError("MachineType.MemoryMB", "must be 1-4294967296")) }
        if !(0...(1 << 40)).contains(machine.diskMB) { errors.append(FieldError("MachineType.DiskMB", "must be 0-1099511627776")) }
        if !(0...1024).contains(machine.gpus) { errors.append(FieldError("MachineType.GPUs", "must be 0-1024")) }
        if machine.attributes.count > 64 || machine.attributes.contains(where: { $0.key.isEmpty || $0.key.count > 128 || $0.value.count > 1024 }) {
            errors.append(FieldError("MachineType.Attributes", "at most 64, each key 1-128 and value at most 1024 characters"))
        }
        if machine.nodeClass.count > 128 { errors.append(FieldError("MachineType.NodeClass", "at most 128 characters")) }
        if !counts.contains(minCount) { errors.append(FieldError("MinCount", "must be 0-\(NodeArrayLimits.maximumMachines)")) }
        if !counts.contains(maxCount) { errors.append(FieldError("MaxCount", "must be 0-\(NodeArrayLimits.maximumMachines)")) }
        if counts.contains(minCount) && counts.contains(maxCount) && minCount > maxCount {
            errors.append(FieldError("MinCount", "must not exceed MaxCount (\(maxCount))"))
        }
        if let maxCoreCount, !(0...(NodeArrayLimits.maximumMachines * 4096)).contains(maxCoreCount) {
            errors.append(FieldError("MaxCoreCount", "must be 0-\(NodeArrayLimits.maximumMachines * 4096)"))
        }
        for (field, seconds) in [("IdleTimeAfterJobs", idleTimeAfterJobs), ("IdleTimeBeforeJobs", idleTimeBeforeJobs), ("BootTimeout", bootTimeout)]
        where !(1...NodeArrayLimits.maximumSeconds).contains(seconds) {
            errors.append(FieldError(field, "must be 1-\(NodeArrayLimits.maximumSeconds) seconds"))
        }
        return errors
    }

    /// Whether `text` may name an array: 1 to 64 lowercase letters, digits and `-`, not starting with `-`.
    public static func isName(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first, text.unicodeScalars.count <= 64, ("a"..."z").contains(first) || ("A"..."Z").contains(first)
        else { return false }
        return text.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == "-"
        }
    }
}

/// The bounds of what a node array may ask for.
public enum NodeArrayLimits {
    /// Machines in one array.
    public static let maximumMachines = 100_000
    /// A year.
    public static let maximumSeconds: Int64 = 366 * 24 * 3600
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
public struct Machine: Codable, Sendable, Equatable {
    /// `<array>-<n>`.
    public var name: String
    /// The array it belongs to.
    public var array: String
    /// Where it is in its life: acquiring, preparing, ready, terminating, terminated, failed, off.
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
    /// Why its node's cluster-init failed, while it has failed.
    public var clusterInitFailure: String?

    /// A machine with every field given.
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

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name = "Name"
        case array = "NodeArray"
        case state = "State"
        case since = "Since"
        case requestedAt = "RequestedAt"
        case nodeID = "NodeID"
        case runningAllocations = "RunningAllocations"
        case lastWorkAt = "LastWorkAt"
        case keepaliveUntil = "KeepaliveUntil"
        case termination = "Termination"
        case deallocate = "Deallocate"
        case terminatingForIdleness = "TerminatingForIdleness"
        case terminateRequestedAt = "TerminateRequestedAt"
        case clusterInitFailure = "ClusterInitFailure"
    }

    /// Failed but still there, for whoever looks into it (its cluster-init failed): it counts
    /// against the array's limits until it is taken away.
    public var isKeptAfterFailure: Bool { state == .failed && nodeID != nil && terminateRequestedAt == nil }

    /// The number in its name (`execute-3` → 3), or nil.
    public var index: Int? { name.split(separator: "-").last.flatMap { Int($0) } }
}

/// A target set as `jetpack autoscale` sets one: cores or machines, until it expires.
public struct ScaleTarget: Codable, Sendable, Equatable {
    /// The array the target is for.
    public var array: String
    /// Cores to have, as machines of the array's type (rounded up).
    public var coreCount: Int?
    /// Machines to have.
    public var count: Int?
    /// Unix nanoseconds.
    public var expiresAt: Int64

    /// A target for `array` until `expiresAt` (Unix nanoseconds).
    public init(array: String, coreCount: Int? = nil, count: Int? = nil, expiresAt: Int64) {
        self.array = array
        self.coreCount = coreCount
        self.count = count
        self.expiresAt = expiresAt
    }

    /// `jetpack autoscale`'s names: `Name`, `TargetCoreCount`, `TargetCount`.
    enum CodingKeys: String, CodingKey, CaseIterable {
        case array = "Name"
        case coreCount = "TargetCoreCount"
        case count = "TargetCount"
        case expiresAt = "ExpiresAt"
    }
}

/// A provider that refused or did not answer: no new request to it until `until`.
public struct ProviderBackoff: Codable, Sendable, Equatable {
    /// The array whose provider it is.
    public var array: String
    /// Failures in a row; the wait grows with them.
    public var failures: Int
    /// Unix nanoseconds.
    public var until: Int64
    /// Why, in words.
    public var reason: String

    /// A backoff after `failures` failures, until `until` (Unix nanoseconds).
    public init(array: String, failures: Int, until: Int64, reason: String) {
        self.array = array
        self.failures = failures
        self.until = until
        self.reason = reason
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case array = "NodeArray"
        case failures = "Failures"
        case until = "Until"
        case reason = "Reason"
    }

    /// The wait after `failures` failures in a row: 10 s doubling, at most 5 minutes.
    public static func delay(afterFailures failures: Int) -> Int64 {
        let seconds = Int64(10) << Int64(min(max(failures, 1), 6) - 1)
        return min(seconds, 300) * 1_000_000_000
    }
}

/// Arithmetic on numbers that came from outside: it saturates instead of trapping.
public enum Saturating {
    /// `a × b`, or the largest (smallest) Int where that overflows.
    public static func product(_ a: Int, _ b: Int) -> Int {
        let (value, overflow) = a.multipliedReportingOverflow(by: b)
        return overflow ? ((a < 0) != (b < 0) ? Int.min : Int.max) : value
    }

    /// `a + b`, or the largest (smallest) Int64 where that overflows.
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

/// One array's autoscale decision, for `drover nodearray status`, events and metrics.
public struct ArrayDecision: Codable, Sendable, Equatable {
    /// The array decided for.
    public var array: String
    /// How many machines it should have.
    public var target: Int
    /// Machines the pending placements fill, and those placements.
    public var demandMachines: Int
    /// The pending placements those machines are for.
    public var demandPlacements: Int
    /// Machines a `drover autoscale` target asks for (0 without one).
    public var requested: Int
    /// Machines it has or is getting (terminating ones aside).
    public var active: Int
    /// Why, in words (`asked for 2 machine(s): 2 pending placement(s) need 2 machine(s)`).
    public var reason: String

    /// A decision with every field given.
    public init(array: String, target: Int, demandMachines: Int, demandPlacements: Int, requested: Int, active: Int, reason: String) {
        self.array = array
        self.target = target
        self.demandMachines = demandMachines
        self.demandPlacements = demandPlacements
        self.requested = requested
        self.active = active
        self.reason = reason
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case array = "NodeArray"
        case target = "Target"
        case demandMachines = "DemandMachines"
        case demandPlacements = "DemandPlacements"
        case requested = "Requested"
        case active = "Active"
        case reason = "Reason"
    }
}

/// One entry of a `drover autoscale` request, in `jetpack autoscale`'s JSON (`--file`):
/// `{"Name": "execute", "TargetCoreCount": 100}` or `{"Name": "execute", "TargetCount": 3}`,
/// with an optional `Expiration` (a duration such as `"10m"`; 5 minutes by default).
public struct TargetRequest: Codable, Sendable, Equatable {
    /// The array (`Name`).
    public var array: String
    /// Cores to have (`TargetCoreCount`).
    public var coreCount: Int?
    /// Machines to have (`TargetCount`).
    public var count: Int?
    /// How long the target holds (`Expiration`, a duration such as `10m`).
    public var expiration: String?

    /// A request for `array`.
    public init(array: String, coreCount: Int? = nil, count: Int? = nil, expiration: String? = nil) {
        self.array = array
        self.coreCount = coreCount
        self.count = count
        self.expiration = expiration
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case array = "Name"
        case coreCount = "TargetCoreCount"
        case count = "TargetCount"
        case expiration = "Expiration"
    }

    /// How long a request holds when it does not say: 5 minutes after the last one, as Jetpack.
    public static let defaultExpiration: Duration = .seconds(300)

    /// The target this request sets at `now` (Unix nanoseconds).
    /// - Throws: ``ValidationFailure`` naming the field (by its position in the request).
    public func target(at now: Int64, position: Int) throws -> ScaleTarget {
        var errors: [FieldError] = []
        let field = "[\(position)]"
        if !NodeArray.isName(array) { errors.append(FieldError("\(field).Name", "must be a node array's name")) }
        switch (coreCount, count) {
        case (nil, nil): errors.append(FieldError("\(field).TargetCoreCount", "give TargetCoreCount or TargetCount"))
        case (.some, .some): errors.append(FieldError("\(field).TargetCount", "give TargetCoreCount or TargetCount, not both"))
        default: break
        }
        let cores = 0...(NodeArrayLimits.maximumMachines * 4096)
        if let coreCount, !cores.contains(coreCount) { errors.append(FieldError("\(field).TargetCoreCount", "must be 0-\(cores.upperBound)")) }
        if let count, !(0...NodeArrayLimits.maximumMachines).contains(count) {
            errors.append(FieldError("\(field).TargetCount", "must be 0-\(NodeArrayLimits.maximumMachines)"))
        }
        var lifetime = Self.defaultExpiration
        if let expiration {
            if let parsed = GoDuration.parse(expiration), parsed > .zero, parsed <= .seconds(NodeArrayLimits.maximumSeconds) {
                lifetime = parsed
            } else {
                errors.append(FieldError("\(field).Expiration", "must be a duration such as 10m or 2h, at most a year"))
            }
        }
        guard errors.isEmpty else { throw ValidationFailure(errors) }
        return ScaleTarget(array: array, coreCount: coreCount, count: count, expiresAt: Saturating.sum(now, GoDuration.nanoseconds(lifetime)))
    }
}

/// An array as `GET /v1/nodearray/:name` and `drover nodearray status` show it: its definition,
/// its machines, the target in force, the provider's backoff and the last decision.
public struct NodeArrayStatus: Codable, Sendable, Equatable {
    /// The array's definition.
    public var array: NodeArray
    /// Its machines, terminated ones included until forgotten.
    public var machines: [Machine]
    /// State → how many machines are in it.
    public var counts: [String: Int]
    /// The target in force, if any.
    public var target: ScaleTarget?
    /// The provider's backoff, if it is backing off.
    public var backoff: ProviderBackoff?
    /// The last decision made for it.
    public var lastDecision: ArrayDecision?
    /// Unix nanoseconds.
    public var decidedAt: Int64?

    /// A status with every field given.
    public init(
        array: NodeArray, machines: [Machine], target: ScaleTarget? = nil, backoff: ProviderBackoff? = nil, lastDecision: ArrayDecision? = nil,
        decidedAt: Int64? = nil
    ) {
        self.array = array
        self.machines = machines
        self.counts = Dictionary(grouping: machines, by: \.state.rawValue).mapValues(\.count)
        self.target = target
        self.backoff = backoff
        self.lastDecision = lastDecision
        self.decidedAt = decidedAt
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case array = "NodeArray"
        case machines = "Machines"
        case counts = "Counts"
        case target = "Target"
        case backoff = "Backoff"
        case lastDecision = "LastDecision"
        case decidedAt = "DecidedAt"
    }
}
