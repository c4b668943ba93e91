/// A machine that runs allocations, as its agent fingerprinted it and the control plane sees it.
public struct Node: Codable, Sendable, Equatable {
    /// Where a node is.
    public enum Status: String, Codable, Sendable {
        /// `initializing`: registered, not ready yet; `ready`: takes work; `down`: missed its heartbeats.
        case initializing, ready, down
    }

    /// Whether new work may be placed on a node.
    public enum Eligibility: String, Codable, Sendable {
        /// `eligible`: it may; `ineligible`: it may not (drained, unhealthy, configuring, or set so).
        case eligible, ineligible
    }

    /// The node's id.
    public var id: String
    /// Its name; the host name by default.
    public var name: String
    /// Its datacenter.
    public var datacenter: String
    /// Its class, for constraints on `${node.class}`.
    public var nodeClass: String
    /// Driver name → whether the agent found it usable, and why not.
    public var drivers: [String: DriverInfo]
    /// Fingerprinted attributes: `kernel.name`, `cpu.numcores`, `unique.hostname`, …
    public var attributes: [String: String]
    /// Operator-given metadata, read as `${meta.<key>}`.
    public var meta: [String: String]
    /// What the node offers in all.
    public var resources: Resources
    /// Where it is.
    public var status: Status
    /// The status in words.
    public var statusDescription: String?
    /// Whether new work may be placed on it.
    public var schedulingEligibility: Eligibility
    /// Whether it is draining.
    public var drain: Bool
    /// While draining: how (`Drain` is true exactly while this is set).
    public var drainStrategy: DrainStrategy?
    /// How the last drain ended.
    public var lastDrain: DrainMetadata?
    /// Until when (Unix nanoseconds) a keepalive (`drover keepalive`) keeps the node from
    /// termination; `Int64.max` for ever.
    public var keepaliveUntil: Int64?
    /// Set once the node should be taken away (unhealthy, or it asked), for the autoscaler.
    public var termination: TerminationRequest?
    /// The last HealthCheck outcome.
    public var health: NodeHealth?
    /// How its cluster-init projects last converged, as its agent reports it; a node whose
    /// scripts failed takes no work.
    public var clusterInit: ClusterInitState?
    /// The cluster's index when it registered.
    public var createIndex: Int64?
    /// The cluster's index of its last change.
    public var modifyIndex: Int64?

    /// A node with every field given.
    public init(
        id: String, name: String, datacenter: String = "dc1", nodeClass: String = "", drivers: [String: DriverInfo] = [:],
        attributes: [String: String] = [:], meta: [String: String] = [:], resources: Resources, status: Status = .ready,
        schedulingEligibility: Eligibility = .eligible, drain: Bool = false
    ) {
        self.id = id
        self.name = name
        self.datacenter = datacenter
        self.nodeClass = nodeClass
        self.drivers = drivers
        self.attributes = attributes
        self.meta = meta
        self.resources = resources
        self.status = status
        self.schedulingEligibility = schedulingEligibility
        self.drain = drain
    }

    enum CodingKeys: String, CodingKey {
        case id = "ID"
        case name = "Name"
        case datacenter = "Datacenter"
        case nodeClass = "NodeClass"
        case drivers = "Drivers"
        case attributes = "Attributes"
        case meta = "Meta"
        case resources = "Resources"
        case status = "Status"
        case statusDescription = "StatusDescription"
        case schedulingEligibility = "SchedulingEligibility"
        case drain = "Drain"
        case drainStrategy = "DrainStrategy"
        case lastDrain = "LastDrain"
        case keepaliveUntil = "KeepaliveUntil"
        case termination = "Termination"
        case health = "Health"
        case clusterInit = "ClusterInit"
        case createIndex = "CreateIndex"
        case modifyIndex = "ModifyIndex"
    }

    /// Whether new allocations may be placed here at all.
    public var isSchedulable: Bool { status == .ready && schedulingEligibility == .eligible && !drain }
}

/// What a node's agent found of one driver.
public struct DriverInfo: Codable, Sendable, Equatable {
    /// Whether the driver is there.
    public var detected: Bool
    /// Whether it works.
    public var healthy: Bool
    /// Why it does not, when it does not.
    public var healthDescription: String

    /// A driver's state.
    public init(detected: Bool, healthy: Bool, healthDescription: String = "") {
        self.detected = detected
        self.healthy = healthy
        self.healthDescription = healthDescription
    }

    enum CodingKeys: String, CodingKey {
        case detected = "Detected"
        case healthy = "Healthy"
        case healthDescription = "HealthDescription"
    }
}

/// What a drain asks: Nomad's `DrainSpec`.
public struct DrainSpec: Codable, Sendable, Equatable {
    /// Nanoseconds after which what is left is stopped; 0 waits for ever, below 0 stops at once.
    public var deadline: Int64
    /// Leave system jobs' allocations running (and out of the drain's completion).
    public var ignoreSystemJobs: Bool

    /// A drain spec; a deadline of 0 waits for ever.
    public init(deadline: Int64 = 0, ignoreSystemJobs: Bool = false) {
        self.deadline = deadline
        self.ignoreSystemJobs = ignoreSystemJobs
    }

    enum CodingKeys: String, CodingKey {
        case deadline = "Deadline"
        case ignoreSystemJobs = "IgnoreSystemJobs"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        deadline = try container.decodeIfPresent(Int64.self, forKey: .deadline) ?? 0
        ignoreSystemJobs = try container.decodeIfPresent(Bool.self, forKey: .ignoreSystemJobs) ?? false
    }
}

/// A drain in progress: Nomad's `DrainStrategy`.
public struct DrainStrategy: Codable, Sendable, Equatable {
    /// What the drain asked.
    public var drainSpec: DrainSpec
    /// Unix nanoseconds when what is left is stopped; 0 for no deadline.
    public var forceDeadline: Int64
    /// Unix nanoseconds.
    public var startedAt: Int64

    /// A drain of `drainSpec` that began at `startedAt` and stops what is left at `forceDeadline` (Unix nanoseconds; 0 for none).
    public init(drainSpec: DrainSpec, forceDeadline: Int64, startedAt: Int64) {
        self.drainSpec = drainSpec
        self.forceDeadline = forceDeadline
        self.startedAt = startedAt
    }

    enum CodingKeys: String, CodingKey {
        case drainSpec = "DrainSpec"
        case forceDeadline = "ForceDeadline"
        case startedAt = "StartedAt"
    }
}

/// How a drain ended: Nomad's `DrainMetadata`.
public struct DrainMetadata: Codable, Sendable, Equatable {
    /// How a drain ended.
    public enum Status: String, Codable, Sendable {
        /// `draining`: still going; `complete`: everything moved; `canceled`: stopped by hand.
        case draining, complete, canceled
    }

    /// How it ended.
    public var status: Status
    /// When it began, in Unix nanoseconds.
    public var startedAt: Int64
    /// When it last changed, in Unix nanoseconds.
    public var updatedAt: Int64

    /// A drain's end.
    public init(status: Status, startedAt: Int64, updatedAt: Int64) {
        self.status = status
        self.startedAt = startedAt
        self.updatedAt = updatedAt
    }

    enum CodingKeys: String, CodingKey {
        case status = "Status"
        case startedAt = "StartedAt"
        case updatedAt = "UpdatedAt"
    }
}

/// Why and since when a node should be taken away.
public struct TerminationRequest: Codable, Sendable, Equatable {
    /// Why: `requested`, `unhealthy`, `idle` or `deallocate`.
    public var reason: String
    /// Unix nanoseconds.
    public var requestedAt: Int64

    /// A request for `reason` at `requestedAt`.
    public init(reason: String, requestedAt: Int64) {
        self.reason = reason
        self.requestedAt = requestedAt
    }

    enum CodingKeys: String, CodingKey {
        case reason = "Reason"
        case requestedAt = "RequestedAt"
    }
}

/// A node's last HealthCheck outcome.
public struct NodeHealth: Codable, Sendable, Equatable {
    /// Whether no script exited 254.
    public var healthy: Bool
    /// Unix nanoseconds.
    public var checkedAt: Int64
    /// Every script's outcome.
    public var checks: [NodeHealthReport.Check]

    /// A health outcome checked at `checkedAt` (Unix nanoseconds).
    public init(healthy: Bool, checkedAt: Int64, checks: [NodeHealthReport.Check]) {
        self.healthy = healthy
        self.checkedAt = checkedAt
        self.checks = checks
    }

    enum CodingKeys: String, CodingKey {
        case healthy = "Healthy"
        case checkedAt = "CheckedAt"
        case checks = "Checks"
    }
}
