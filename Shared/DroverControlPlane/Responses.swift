public import DroverModel

/// Errors of the application layer that a caller can act on: the gateway answers them with 404,
/// 400 and 503, a consumer dead-letters the message that caused the first two.
public enum ControlPlaneError: Error, Equatable, CustomStringConvertible {
    case notFound(kind: String, id: String)
    case invalid([FieldError])
    /// Too much waits already (say, while the database is slow); the caller should retry later.
    case overloaded(String)
    /// The caller did not prove who it is: a credential is missing, unknown, used or expired.
    case unauthorized(String)

    public var description: String {
        switch self {
        case .notFound(let kind, let id): "\(kind) '\(id)' not found"
        case .invalid(let errors): errors.map(\.description).joined(separator: "; ")
        case .overloaded(let what): "\(what); try again later"
        case .unauthorized(let why): why
        }
    }
}

/// What registering or stopping a job answered: Nomad's `JobRegisterResponse`.
public struct JobRegistration: Codable, Sendable, Equatable {
    public var evalID: String
    public var jobModifyIndex: Int64
    public var warnings: String
    public var index: Int64

    enum CodingKeys: String, CodingKey {
        case evalID = "EvalID"
        case jobModifyIndex = "JobModifyIndex"
        case warnings = "Warnings"
        case index = "Index"
    }
}

/// Per group, allocations by client status: Nomad's job summary.
public struct GroupSummary: Codable, Sendable, Equatable {
    public var queued = 0
    public var complete = 0
    public var failed = 0
    public var running = 0
    public var starting = 0
    public var lost = 0

    public init() {}

    enum CodingKeys: String, CodingKey {
        case queued = "Queued"
        case complete = "Complete"
        case failed = "Failed"
        case running = "Running"
        case starting = "Starting"
        case lost = "Lost"
    }
}

/// What a node drain or eligibility change answered: Nomad's `NodeDrainUpdateResponse`.
public struct NodeUpdateResponse: Codable, Sendable, Equatable {
    public var evalIDs: [String]
    public var evalCreateIndex: Int64
    public var nodeModifyIndex: Int64
    public var index: Int64

    enum CodingKeys: String, CodingKey {
        case evalIDs = "EvalIDs"
        case evalCreateIndex = "EvalCreateIndex"
        case nodeModifyIndex = "NodeModifyIndex"
        case index = "Index"
    }
}
