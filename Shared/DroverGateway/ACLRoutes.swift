import DroverAccess
import DroverControlPlane
import DroverModel
import Foundation
import Hummingbird

/// Nomad's ACL API: `/v1/acl/bootstrap`, `/v1/acl/policies`, `/v1/acl/policy/:name`,
/// `/v1/acl/tokens`, `/v1/acl/token[/:accessor]`, `/v1/acl/token/self`, `/v1/acl/roles`,
/// `/v1/acl/role[/:id]`, `/v1/acl/role/name/:name`.
extension Gateway {
    func addACLRoutes(to routes: GuardedRouter) {
        for method in [HTTPRequest.Method.put, .post] {
            // Open, as Nomad's: it works once, and then never again.
            routes.on("/v1/acl/bootstrap", method: method, .open) { request, _ in
                try await handle {
                    let body = try await Self.body(of: request, upTo: 64 << 10)
                    var secret: String?
                    if body.readableBytes > 0 {
                        secret = try Self.decodeBody(BootstrapRequest.self, body).bootstrapSecret
                    }
                    let token = try await acl.bootstrap(secret: secret)
                    logger.notice("ACL bootstrapped", metadata: ["accessor_id": "\(token.accessorID)"])
                    return Self.json(token, index: token.createIndex)
                }
            }
            routes.on("/v1/acl/policy/:name", method: method, .management) { request, context in
                try await handle {
                    let name = context.parameters.get("name") ?? ""
                    let policy = try await Self.decodeBody(ACLPolicy.self, request)
                    let index = try await acl.put(policy: policy, name: name)
                    return Self.json(["Index": index], index: index)
                }
            }
            routes.on("/v1/acl/token", method: method, .management) { request, _ in
                try await handle {
                    let token = try await acl.createToken(try await Self.decodeBody(ACLTokenRequest.self, request))
                    return Self.json(token, index: token.createIndex)
                }
            }
            routes.on("/v1/acl/role", method: method, .management) { request, _ in
                try await handle {
                    let role = try await acl.put(role: try await Self.decodeBody(ACLRole.self, request), id: nil)
                    return Self.json(role, index: role.modifyIndex)
                }
            }
            routes.on("/v1/acl/role/:id", method: method, .management) { request, context in
                try await handle {
                    let role = try await acl.put(role: try await Self.decodeBody(ACLRole.self, request), id: context.parameters.get("id") ?? "")
                    return Self.json(role, index: role.modifyIndex)
                }
            }
            routes.on("/v1/acl/token/:accessor", method: method, .management) { request, context in
                try await handle {
                    let request = try await Self.decodeBody(ACLTokenRequest.self, request)
                    let token = try await acl.updateToken(accessorID: context.parameters.get("accessor") ?? "", request)
                    return Self.json(token, index: token.modifyIndex)
                }
            }
        }
        routes.get("/v1/acl/policies", .management) { request, _ in
            try await read(request) { try await database.acl.policies().map(ACLPolicyStub.init) }
        }
        routes.get("/v1/acl/policy/:name", .management) { request, context in
            let name = context.parameters.get("name") ?? ""
            return try await read(request) {
                try await database.acl.policy(named: name) ?? { throw ControlPlaneError.notFound(kind: "ACL policy", id: name) }()
            }
        }
        routes.delete("/v1/acl/policy/:name", .management) { _, context in
            try await handle {
                let index = try await acl.deletePolicy(name: context.parameters.get("name") ?? "")
                return Self.json(["Index": index], index: index)
            }
        }
        routes.get("/v1/acl/roles", .management) { request, _ in
            try await read(request) {
                let prefix = request.uri.queryParameters.get("prefix") ?? ""
                return try await database.acl.roles().filter { $0.id.hasPrefix(prefix) }
            }
        }
        routes.get("/v1/acl/role/:id", .management) { request, context in
            let id = context.parameters.get("id") ?? ""
            return try await read(request) {
                try await database.acl.roles(ids: [id]).first ?? { throw ControlPlaneError.notFound(kind: "ACL role", id: id) }()
            }
        }
        routes.get("/v1/acl/role/name/:name", .management) { request, context in
            let name = context.parameters.get("name") ?? ""
            return try await read(request) {
                try await database.acl.roles(names: [name]).first ?? { throw ControlPlaneError.notFound(kind: "ACL role", id: name) }()
            }
        }
        routes.delete("/v1/acl/role/:id", .management) { _, context in
            try await handle {
                let index = try await acl.deleteRole(id: context.parameters.get("id") ?? "")
                return Self.json(["Index": index], index: index)
            }
        }
        routes.get("/v1/acl/tokens", .management) { request, _ in
            try await read(request) { try await database.acl.tokens() }
        }
        routes.get("/v1/acl/token/self", .anyToken) { request, _ in
            try await handle {
                switch try await resolve(request) {
                case .granted(_, let token): return Self.json(token, index: nil)
                // With ACLs off every route is open; there is no token to show.
                default: throw ControlPlaneError.notFound(kind: "ACL token", id: "self")
                }
            }
        }
        routes.get("/v1/acl/token/:accessor", .management) { request, context in
            let accessor = context.parameters.get("accessor") ?? ""
            return try await read(request) {
                try await database.acl.token(accessorID: accessor) ?? { throw ControlPlaneError.notFound(kind: "ACL token", id: accessor) }()
            }
        }
        routes.delete("/v1/acl/token/:accessor", .management) { _, context in
            try await handle {
                let index = try await acl.deleteToken(accessorID: context.parameters.get("accessor") ?? "")
                return Self.json(["Index": index], index: index)
            }
        }
    }
}

/// `POST /v1/acl/bootstrap`'s optional body: a secret of the operator's choosing, as Nomad takes.
struct BootstrapRequest: Decodable {
    var bootstrapSecret: String?
    enum CodingKeys: String, CodingKey { case bootstrapSecret = "BootstrapSecret" }
}
