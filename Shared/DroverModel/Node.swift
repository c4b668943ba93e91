/// A machine that runs allocations, as its agent fingerprinted it and the control plane sees it.
public struct Node: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable {
        case initializing, ready, down
    }

    public enum Eligibility: String, Codable, Sendable {
        case eligible, ineligible
    }

    public var id: String
    public var name: String
    public var datacenter: String
    public var nodeClass: String
    /// Driver name → whether the agent found it usable, and why not.
    public var drivers: [String: DriverInfo]
    /// Fingerprinted attributes: `kernel.name`, `cpu.numcores`, `unique.hostname`, …
    public var attributes: [String: String]
    /// Operator-given metadata, read as `${meta.<key>}`.
    public var meta: [String: String]
    /// What the node offers in all.
    public var resources: Resources
    public var status: Status
    public var statusDescription: String?
    public var schedulingEligibility: Eligibility
    public var drain: Bool
    public var createIndex: Int64?
    public var modifyIndex: Int64?

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
        case createIndex = "CreateIndex"
        case modifyIndex = "ModifyIndex"
    }

    /// Whether new allocations may be placed here at all.
    public var isSchedulable: Bool { status == .ready && schedulingEligibility == .eligible && !drain }
}

public struct DriverInfo: Codable, Sendable, Equatable {
    public var detected: Bool
    public var healthy: Bool
    public var healthDescription: String

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
