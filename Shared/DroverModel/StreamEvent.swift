/// One change of the cluster's state as the event stream and the `drover.events` exchange carry
/// it, in the shape of Nomad's event stream: the object changed, as the HTTP API shows it, under
/// `Payload` (`{"Allocation": {…}}`, `{"Job": {…}}`, …).
///
/// Topics and their types:
/// - `Job`: `JobRegistered`, `JobDeregistered`
/// - `Allocation`: `AllocationCreated`, `AllocationUpdated` (client status or task states),
///   `AllocationUpdateDesiredStatus` (stopped, evicted); the payload has no `Job`, as in Nomad
/// - `Evaluation`: `EvaluationUpdated`
/// - `Node`: `NodeRegistration`, `NodeEvent` (status, health, keepalive, termination),
///   `NodeEligibility`, `NodeDeregistration`; `NodeDrain`: `NodeDrain`
/// - `Schedule` (time-based jobs): `ScheduleUpdated`, `ScheduleDeleted`, `ScheduleRun`
/// - `NodeArray`: `NodeArrayUpdated`, `NodeArrayDeleted`, `MachineUpdated`
public struct StreamEvent: DroverMessage, Equatable {
    public static let messageType = "event"
    public static let schemaVersion = 1

    /// The topic: `Job`, `Allocation`, `Evaluation`, `Node`, `NodeDrain`, `Schedule` or `NodeArray`.
    public var topic: String
    /// What happened, e.g. `JobRegistered`, `AllocationUpdated`.
    public var type: String
    /// The object's id (a job's, an allocation's, a node's, a scheduled job's name, …).
    public var key: String
    /// The namespace of a job's, allocation's or evaluation's event; empty for other topics.
    public var namespace: String
    /// Other ids the event is found by: an allocation's job and node, an evaluation's job.
    public var filterKeys: [String]
    /// The cluster's index when the change was made.
    public var index: Int64
    /// The object changed, under its topic's name: `{"Allocation": {…}}`.
    public var payload: JSONValue

    /// An event with every field given.
    public init(topic: String, type: String, key: String, namespace: String, filterKeys: [String], index: Int64, payload: JSONValue) {
        self.topic = topic
        self.type = type
        self.key = key
        self.namespace = namespace
        self.filterKeys = filterKeys
        self.index = index
        self.payload = payload
    }

    enum CodingKeys: String, CodingKey {
        case topic = "Topic", type = "Type", key = "Key", namespace = "Namespace", filterKeys = "FilterKeys", index = "Index"
        case payload = "Payload"
    }

    /// The object under `name` in the payload (`"Allocation"`, `"Job"`, …), decoded.
    public func object<Object: Decodable>(_ type: Object.Type, named name: String) throws -> Object? {
        guard case .object(let fields) = payload, let value = fields[name] else { return nil }
        return try value.decode(type)
    }

    /// The topics a stream can ask for.
    public static let topics = ["Job", "Allocation", "Evaluation", "Node", "NodeDrain", "Schedule", "NodeArray"]
}

/// A frame of `GET /v1/event/stream`: the events of one index, or none (a heartbeat, `{}`).
public struct EventStreamFrame: Codable, Sendable, Equatable {
    /// The index the frame's events were made at; absent in a heartbeat.
    public var index: Int64?
    /// The events of that index; absent in a heartbeat.
    public var events: [StreamEvent]?

    /// A frame; with neither field, a heartbeat.
    public init(index: Int64? = nil, events: [StreamEvent]? = nil) {
        self.index = index
        self.events = events
    }

    enum CodingKeys: String, CodingKey {
        case index = "Index", events = "Events"
    }
}

/// Any JSON value, kept exactly: integers stay 64-bit (nanosecond times do not fit a Double).
public enum JSONValue: Codable, Sendable, Equatable {
    /// JSON `null`.
    case null
    /// `true` or `false`.
    case bool(Bool)
    /// A number without a fraction that fits 64 bits.
    case integer(Int64)
    /// Any other number.
    case number(Double)
    /// A string.
    case string(String)
    /// An array.
    case array([JSONValue])
    /// An object.
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .integer(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    /// The value decoded as `type` (through its JSON).
    public func decode<Value: Decodable>(_ type: Value.Type) throws -> Value {
        try MessageCoding.decoder().decode(type, from: try MessageCoding.encoder().encode(self))
    }
}
