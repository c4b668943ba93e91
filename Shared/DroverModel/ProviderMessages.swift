/// What the autoscaler asks of a provider plugin, and what the plugin answers. A provider binds
/// `cluster.provider.*.create` and `cluster.provider.*.terminate` (or one array's keys) and acts
/// on the requests whose `Provider` is its own; it answers on `provider.<array>.<status>`.

/// Machines to make, on `cluster.provider.<array>.create`. Each machine's agent joins the
/// cluster with its own one-time enrollment token (valid for the array's BootTimeout), as node
/// `NodeID`, named `Name`, through `Gateway`.
public struct ProviderCreateRequest: DroverMessage, Equatable {
    public static let messageType = "cluster.provider.create"
    public static let schemaVersion = 1

    /// One machine the provider is asked to make.
    public struct MachineToMake: Codable, Sendable, Equatable {
        /// The machine's name, `<array>-<n>`; the provider's replies name it.
        public var name: String
        /// The id its node agent must join with (`--node-id`).
        public var nodeID: String
        /// A one-time enrollment token for that node id, valid until the array's BootTimeout; give it to the agent in its environment (`DROVER_ENROLL_TOKEN`).
        public var enrollToken: String

        /// A machine to make.
        public init(name: String, nodeID: String, enrollToken: String) {
            self.name = name
            self.nodeID = nodeID
            self.enrollToken = enrollToken
        }

        enum CodingKeys: String, CodingKey {
            case name = "Name"
            case nodeID = "NodeID"
            case enrollToken = "EnrollToken"
        }
    }

    /// The request's id; a reply may carry it.
    public var requestID: String
    /// The node array the machines are for.
    public var array: String
    /// The provider asked; a provider acts only on requests with its own name.
    public var provider: String
    /// What each machine must offer: cores, memory, disk, GPUs, node class.
    public var machineType: MachineType
    /// The machines to make.
    public var machines: [MachineToMake]
    /// The gateway's address agents join through (`node-agent --address`).
    public var gateway: String

    /// A request to `provider` for `machines` of `array`.
    public init(requestID: String, array: String, provider: String, machineType: MachineType, machines: [MachineToMake], gateway: String) {
        self.requestID = requestID
        self.array = array
        self.provider = provider
        self.machineType = machineType
        self.machines = machines
        self.gateway = gateway
    }

    enum CodingKeys: String, CodingKey {
        case requestID = "RequestID"
        case array = "NodeArray"
        case provider = "Provider"
        case machineType = "MachineType"
        case machines = "Machines"
        case gateway = "Gateway"
    }
}

/// Machines to take away, on `cluster.provider.<array>.terminate`: stopped and deleted, or only
/// stopped (disk kept) with `Deallocate` where the provider can.
public struct ProviderTerminateRequest: DroverMessage, Equatable {
    public static let messageType = "cluster.provider.terminate"
    public static let schemaVersion = 1

    /// One machine the provider is asked to take away.
    public struct MachineToTerminate: Codable, Sendable, Equatable {
        /// The machine's name.
        public var name: String
        /// Its node's id, once it had one.
        public var nodeID: String?

        /// A machine to take away.
        public init(name: String, nodeID: String?) {
            self.name = name
            self.nodeID = nodeID
        }

        enum CodingKeys: String, CodingKey {
            case name = "Name"
            case nodeID = "NodeID"
        }
    }

    /// The request's id; a reply may carry it.
    public var requestID: String
    /// The node array the machines belong to.
    public var array: String
    /// The provider asked.
    public var provider: String
    /// The machines to take away.
    public var machines: [MachineToTerminate]
    /// Whether to stop (deallocate) the machines rather than delete them, where the provider can.
    public var deallocate: Bool

    /// A request to `provider` to take `machines` of `array` away.
    public init(requestID: String, array: String, provider: String, machines: [MachineToTerminate], deallocate: Bool) {
        self.requestID = requestID
        self.array = array
        self.provider = provider
        self.machines = machines
        self.deallocate = deallocate
    }

    enum CodingKeys: String, CodingKey {
        case requestID = "RequestID"
        case array = "NodeArray"
        case provider = "Provider"
        case machines = "Machines"
        case deallocate = "Deallocate"
    }
}

/// A provider's answer, on `provider.<array>.<status>`: the machines it started (`created`),
/// could not start (`failed`, with the reason: out of capacity, quota, …) or took away
/// (`terminated`).
public struct ProviderReply: DroverMessage, Equatable {
    public static let messageType = "provider.reply"
    public static let schemaVersion = 1

    /// What happened to the machines named.
    public enum Status: String, Codable, Sendable {
        /// `created`: they exist and their agents will join; `failed`: they could not be made (see the reason); `terminated`: they are gone.
        case created, failed, terminated
    }

    /// The id of the request answered.
    public var requestID: String
    /// The node array the machines belong to.
    public var array: String
    /// What happened to them.
    public var status: Status
    /// The machines' names.
    public var machines: [String]
    /// Why, for `failed`: shown to operators in the array's status and events.
    public var reason: String?

    /// A reply about `machines` of `array`.
    public init(requestID: String, array: String, status: Status, machines: [String], reason: String? = nil) {
        self.requestID = requestID
        self.array = array
        self.status = status
        self.machines = machines
        self.reason = reason
    }

    enum CodingKeys: String, CodingKey {
        case requestID = "RequestID"
        case array = "NodeArray"
        case status = "Status"
        case machines = "Machines"
        case reason = "Reason"
    }

    /// Every field out of range, named.
    public func validate() -> [FieldError] {
        var errors: [FieldError] = []
        if requestID.isEmpty || requestID.count > 128 { errors.append(FieldError("RequestID", "must be 1-128 characters")) }
        if !NodeArray.isName(array) { errors.append(FieldError("NodeArray", "must be a node array's name")) }
        if machines.count > 10_000 { errors.append(FieldError("Machines", "at most 10000")) }
        if machines.contains(where: { $0.isEmpty || $0.count > 128 }) { errors.append(FieldError("Machines", "each name must be 1-128 characters")) }
        if let reason, reason.count > 4096 { errors.append(FieldError("Reason", "at most 4096 characters")) }
        return errors
    }
}

extension RoutingKey {
    /// `cluster.provider.<array>.<request>`: `create` or `terminate`.
    public static func providerRequest(_ array: String, _ request: String) -> String { "cluster.provider.\(array).\(request)" }
    /// `provider.<array>.<status>`: a provider's answer.
    public static func providerReply(_ array: String, _ status: ProviderReply.Status) -> String { "provider.\(array).\(status.rawValue)" }
}
