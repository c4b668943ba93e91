import DroverControlPlane
import DroverMessaging
import DroverModel
import Hummingbird

/// `/v1/nodes`, `/v1/node/:id`: reads, drain, eligibility, enrolment and removal.
extension Gateway {
    func addNodeRoutes(to routes: GuardedRouter) {
        routes.get("/v1/nodes", .node(.read)) { request, _ in
            try await read(request) { try await database.nodes.list(prefix: request.uri.queryParameters.get("prefix") ?? "") }
        }
        routes.get("/v1/node/:id", .node(.read)) { request, context in
            let id = context.parameters.get("id") ?? ""
            return try await read(request) { try await database.nodes.read(id: id) ?? { throw ControlPlaneError.notFound(kind: "node", id: id) }() }
        }
        routes.get("/v1/node/:id/allocations", .node(.read)) { request, context in
            let id = context.parameters.get("id") ?? ""
            return try await read(request) {
                guard try await database.nodes.read(id: id) != nil else { throw ControlPlaneError.notFound(kind: "node", id: id) }
                return try await database.allocations.list(nodeID: id)
            }
        }
        routes.post("/v1/node/:id/drain", .node(.write)) { request, context in
            try await handle {
                let body = try await Self.decodeBody(NodeDrainRequest.self, request)
                let result = try await nodes.drain(nodeID: context.parameters.get("id") ?? "", spec: body.drainSpec, markEligible: body.markEligible)
                return Self.json(result, index: result.index)
            }
        }
        routes.post("/v1/node/:id/eligibility", .node(.write)) { request, context in
            try await handle {
                let body = try await Self.decodeBody(NodeEligibilityRequest.self, request)
                let result = try await nodes.setEligibility(nodeID: context.parameters.get("id") ?? "", eligible: body.eligibility == .eligible)
                return Self.json(result, index: result.index)
            }
        }
        // Enrolment: the node's own broker user, whose credentials the agent runs with.
        routes.post("/v1/node/:id/enroll", .node(.write)) { _, context in
            try await handle {
                let id = context.parameters.get("id") ?? ""
                guard RoutingKey.isValidWord(id) else {
                    throw ControlPlaneError.invalid([FieldError("id", "'\(id)' must be one routing-key word: no dots, '*', '#' or spaces")])
                }
                let (user, password) = try await brokerManagement { try await brokerUsers.enroll(nodeID: id) }
                var endpoint = brokerEndpoint
                endpoint.user = user
                endpoint.password = password
                return Self.json(NodeCredentials(nodeID: id, user: user, password: password, amqpURL: endpoint.url), index: nil)
            }
        }
        // Joining: a node with a one-time enrollment token gets its own broker user and secret.
        // Open, as the token in the body is the credential.
        routes.post("/v1/node/:id/join", .open) { request, context in
            try await handle {
                let id = context.parameters.get("id") ?? ""
                let body = try await Self.decodeBody(JoinRequest.self, request)
                let endpoint = brokerEndpoint
                let users = brokerUsers
                let joined = try await enrollment.join(nodeID: id, secret: body.enrollToken ?? "", joinKey: body.joinKey) { nodeID in
                    let (user, password) = try await brokerManagement { try await users.enroll(nodeID: nodeID) }
                    var node = endpoint
                    node.user = user
                    node.password = password
                    return (node.url, endpoint.user)
                }
                logger.notice("Node joined", metadata: ["node_id": "\(id)"])
                return Self.json(joined, index: nil)
            }
        }
        routes.post("/v1/enroll-tokens", .node(.write)) { request, _ in
            try await handle {
                let body = try await Self.decodeBody(EnrollTokenRequest.self, request)
                let ttl = body.ttl ?? "1h"
                guard let lifetime = GoDuration.parse(ttl) else {
                    throw ControlPlaneError.invalid([FieldError("TTL", "'\(ttl)' is not a duration such as 1h or 30m")])
                }
                return Self.json(try await enrollment.createToken(lifetime: lifetime, nodeID: body.nodeID), index: nil)
            }
        }
        routes.get("/v1/enroll-tokens", .node(.read)) { _, _ in
            try await handle { Self.json(try await database.enrollment.tokens(), index: nil) }
        }
        routes.delete("/v1/enroll-token/:accessor", .node(.write)) { _, context in
            try await handle {
                try await enrollment.deleteToken(accessorID: context.parameters.get("accessor") ?? "")
                return Response(status: .ok)
            }
        }
        // Removal: the node's broker user goes (its connections are closed) and the cluster forgets it.
        routes.post("/v1/node/:id/purge", .node(.write)) { _, context in
            try await handle {
                let id = context.parameters.get("id") ?? ""
                let hadUser = try await brokerManagement { try await brokerUsers.remove(nodeID: id) }
                try await database.enrollment.deleteNodeSecret(nodeID: id)
                let known = try await nodes.purge(nodeID: id)
                guard hadUser || known else { throw ControlPlaneError.notFound(kind: "node", id: id) }
                return Self.json(["NodeID": id], index: try await database.currentIndex())
            }
        }
    }

    /// Runs a call to the broker's management API; its failure is a 503 that says so.
    func brokerManagement<T>(_ call: () async throws -> T) async throws -> T {
        do {
            return try await call()
        } catch let error as BrokerUsers.Failure {
            throw HTTPError(.serviceUnavailable, message: "the broker's users cannot be managed: \(error.description)")
        }
    }
}

/// What enrolment answers: the credentials the node's agent connects with.
struct NodeCredentials: Encodable {
    var nodeID: String
    var user: String
    var password: String
    var amqpURL: String
    enum CodingKeys: String, CodingKey {
        case nodeID = "NodeID"
        case user = "User"
        case password = "Password"
        case amqpURL = "AMQPURL"
    }
}

/// `{"DrainSpec": {"Deadline", "IgnoreSystemJobs"} | null, "MarkEligible"}`, as Nomad's clients send it.
struct NodeDrainRequest: Decodable {
    var drainSpec: DrainSpec?
    var markEligible: Bool
    enum CodingKeys: String, CodingKey {
        case drainSpec = "DrainSpec"
        case markEligible = "MarkEligible"
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        drainSpec = try container.decodeIfPresent(DrainSpec.self, forKey: .drainSpec)
        markEligible = try container.decodeIfPresent(Bool.self, forKey: .markEligible) ?? false
    }
}

/// `{"Eligibility": "eligible" | "ineligible"}`.
struct NodeEligibilityRequest: Decodable {
    var eligibility: Node.Eligibility
    enum CodingKeys: String, CodingKey { case eligibility = "Eligibility" }
}

/// `POST /v1/node/<id>/join`'s body.
struct JoinRequest: Decodable {
    var enrollToken: String?
    var joinKey: String?
    enum CodingKeys: String, CodingKey {
        case enrollToken = "EnrollToken"
        case joinKey = "JoinKey"
    }
}

/// `POST /v1/enroll-tokens`' body: how long the token lives (default 1h), and the node it is for.
struct EnrollTokenRequest: Decodable {
    var ttl: String?
    var nodeID: String?
    enum CodingKeys: String, CodingKey {
        case ttl = "TTL"
        case nodeID = "NodeID"
    }
}
