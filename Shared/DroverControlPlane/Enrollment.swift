public import DroverModel
public import DroverStorage
public import Foundation

/// How nodes join: an operator makes a one-time enrollment token; a node that presents it gets
/// its own broker user and a secret it proves itself with to the gateway. Both secrets are drawn
/// from the system's secure random source, shown once and stored as their SHA-256.
public struct EnrollmentService: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// The longest an enrollment token may live.
    public static let maximumLifetime: Duration = .seconds(30 * 86_400)

    /// Makes a token that lets one node join within `lifetime`, only the node `nodeID` when given.
    /// - Returns: it, with its secret, which is not shown again.
    public func createToken(lifetime: Duration, nodeID: String?, now: Date = Date()) async throws -> EnrollmentToken {
        var errors: [FieldError] = []
        if lifetime < .seconds(1) || lifetime > Self.maximumLifetime { errors.append(FieldError("TTL", "must be between 1s and 720h")) }
        if let nodeID, !RoutingKey.isValidWord(nodeID) {
            errors.append(FieldError("NodeID", "'\(nodeID.prefix(100))' must be one routing-key word: no dots, '*', '#' or spaces"))
        }
        guard errors.isEmpty else { throw ControlPlaneError.invalid(errors) }
        let (token, hash) = Self.issue(lifetime: lifetime, nodeID: nodeID, now: now)
        try await database.enrollment.insert(token, secretHash: hash)
        return token
    }

    /// A new token (with its secret) and the hash to store it by.
    static func issue(lifetime: Duration, nodeID: String?, now: Date) -> (token: EnrollmentToken, hash: Data) {
        let secret = ACLService.newSecret()
        var token = EnrollmentToken(
            accessorID: ACLService.newSecret(), nodeID: nodeID, createdAt: now, expiresAt: now.addingTimeInterval(lifetime.timeInterval))
        token.secret = secret
        return (token, ACLService.hash(secret))
    }

    /// Joins node `nodeID` with the enrollment token `secret`, using it up: `makeBrokerUser`
    /// makes the node's broker user (in the same transaction, so that a failure leaves the token
    /// unused). A node that asks again with the same token and the same `joinKey` (a secret it
    /// drew for this join, whose first answer it never got) joins again, with new credentials
    /// that replace the ones it missed. - Returns: the node's credentials.
    /// - Throws: ``ControlPlaneError/unauthorized(_:)`` for a token that is unknown, expired, for
    ///   another node, or used (by another node, or without this key).
    public func join(
        nodeID: String, secret: String, joinKey: String? = nil, now: Date = Date(),
        makeBrokerUser: @Sendable (String) async throws -> (amqpURL: String, controlPlaneUser: String)
    ) async throws -> NodeJoin {
        guard RoutingKey.isValidWord(nodeID) else {
            throw ControlPlaneError.invalid([FieldError("id", "'\(nodeID.prefix(100))' must be one routing-key word: no dots, '*', '#' or spaces")])
        }
        guard !secret.isEmpty, secret.utf8.count <= 256 else { throw ControlPlaneError.invalid([FieldError("EnrollToken", "is required")]) }
        if let joinKey, joinKey.utf8.count < 16 || joinKey.utf8.count > 256 {
            throw ControlPlaneError.invalid([FieldError("JoinKey", "must be between 16 and 256 bytes, drawn at random for this join")])
        }
        let nodeSecret = ACLService.newSecret()
        let joinKeyHash = joinKey.map(ACLService.hash)
        return try await database.transaction { work in
            guard try await work.enrollment.use(secretHash: ACLService.hash(secret), by: nodeID, joinKeyHash: joinKeyHash, at: now) != nil else {
                throw ControlPlaneError.unauthorized("enrollment token not found, already used, expired, or for another node")
            }
            try await work.enrollment.setNodeSecret(nodeID: nodeID, secretHash: ACLService.hash(nodeSecret), at: now)
            try await work.nodes.removeTombstone(nodeID)
            let broker = try await makeBrokerUser(nodeID)
            return NodeJoin(nodeID: nodeID, amqpURL: broker.amqpURL, controlPlaneUser: broker.controlPlaneUser, nodeSecret: nodeSecret)
        }
    }

    /// Whether `secret` is node `nodeID`'s.
    public func verify(nodeID: String, secret: String) async throws -> Bool {
        guard !secret.isEmpty, secret.utf8.count <= 256 else { return false }
        return try await database.enrollment.nodeSecretMatches(nodeID: nodeID, secretHash: ACLService.hash(secret))
    }

    public func deleteToken(accessorID: String) async throws {
        guard try await database.enrollment.delete(accessorID: accessorID) else {
            throw ControlPlaneError.notFound(kind: "enrollment token", id: accessorID)
        }
    }
}
