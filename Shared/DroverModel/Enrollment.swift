public import Foundation

/// A one-time token a node joins the cluster with (`drover node enroll-token create`). Its
/// secret is shown once, when it is made; it is used up by the first node that joins with it.
public struct EnrollmentToken: Codable, Sendable, Equatable {
    /// The token's public id.
    public var accessorID: String
    /// The secret to join with; shown only when the token is made.
    public var secret: String?
    /// The only node that may join with it; any node when nil.
    public var nodeID: String?
    /// When it was made.
    public var createdAt: Date
    /// When it stops working.
    public var expiresAt: Date
    /// When a node joined with it; it works once.
    public var usedAt: Date?
    /// The node that joined with it.
    public var usedBy: String?

    /// A token with every field given.
    public init(
        accessorID: String, secret: String? = nil, nodeID: String? = nil, createdAt: Date, expiresAt: Date, usedAt: Date? = nil,
        usedBy: String? = nil
    ) {
        self.accessorID = accessorID
        self.secret = secret
        self.nodeID = nodeID
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.usedAt = usedAt
        self.usedBy = usedBy
    }

    enum CodingKeys: String, CodingKey {
        case accessorID = "AccessorID"
        case secret = "Secret"
        case nodeID = "NodeID"
        case createdAt = "CreateTime"
        case expiresAt = "ExpirationTime"
        case usedAt = "UsedTime"
        case usedBy = "UsedBy"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        accessorID = try container.decode(String.self, forKey: .accessorID)
        secret = try container.decodeIfPresent(String.self, forKey: .secret)
        nodeID = try container.decodeIfPresent(String.self, forKey: .nodeID)
        createdAt = try ACLTime.decode(container, .createdAt) ?? Date(timeIntervalSince1970: 0)
        expiresAt = try ACLTime.decode(container, .expiresAt) ?? Date(timeIntervalSince1970: 0)
        usedAt = try ACLTime.decode(container, .usedAt)
        usedBy = try container.decodeIfPresent(String.self, forKey: .usedBy)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(accessorID, forKey: .accessorID)
        try container.encodeIfPresent(secret, forKey: .secret)
        try container.encode(nodeID, forKey: .nodeID)
        try container.encode(ACLTime.text(createdAt), forKey: .createdAt)
        try container.encode(ACLTime.text(expiresAt), forKey: .expiresAt)
        try container.encode(usedAt.map(ACLTime.text), forKey: .usedAt)
        try container.encode(usedBy, forKey: .usedBy)
    }
}

/// What a node gets when it joins (`POST /v1/node/<id>/join`): its own broker user, the
/// control plane's broker user (whose allocation updates alone it acts on), and its secret for
/// the gateway. Kept by the agent in `<data-dir>/credentials.json`, mode 0600.
public struct NodeJoin: Codable, Sendable, Equatable {
    /// The node that joined.
    public var nodeID: String
    /// The AMQP URL of its own broker user, password included.
    public var amqpURL: String
    /// The control plane's broker user: the only one whose allocation updates the node acts on.
    public var controlPlaneUser: String
    /// The node's secret for the gateway.
    public var nodeSecret: String
    /// The gateway the node joined through.
    public var address: String?

    /// What node `nodeID` gets when it joins.
    public init(nodeID: String, amqpURL: String, controlPlaneUser: String, nodeSecret: String, address: String? = nil) {
        self.nodeID = nodeID
        self.amqpURL = amqpURL
        self.controlPlaneUser = controlPlaneUser
        self.nodeSecret = nodeSecret
        self.address = address
    }

    enum CodingKeys: String, CodingKey {
        case nodeID = "NodeID"
        case amqpURL = "AMQPURL"
        case controlPlaneUser = "ControlPlaneUser"
        case nodeSecret = "NodeSecret"
        case address = "Address"
    }
}
