import DroverControlPlane
import DroverModel
import Hummingbird

/// `/v1/users`, `/v1/user/:name`: the users the cluster manages on its nodes.
extension Gateway {
    func addUserRoutes(to routes: GuardedRouter) {
        routes.get("/v1/users", .operator(.read)) { request, _ in try await read(request) { try await database.users.list() } }
        routes.get("/v1/user/:name", .operator(.read)) { request, context in
            let name = context.parameters.get("name") ?? ""
            return try await read(request) {
                try await database.users.list().first { $0.name == name } ?? { throw ControlPlaneError.notFound(kind: "user", id: name) }()
            }
        }
        for method in [HTTPRequest.Method.put, .post] {
            routes.on("/v1/user/:name", method: method, .operator(.write)) { request, context in
                try await handle {
                    let name = context.parameters.get("name") ?? ""
                    var user = try await Self.decodeBody(ClusterUser.self, request)
                    if user.name.isEmpty { user.name = name }
                    guard user.name == name else {
                        throw ControlPlaneError.invalid([FieldError("Name", "'\(user.name)' does not match the name '\(name)' in the path")])
                    }
                    let index = try await users.put(user: user)
                    return Self.json(["Index": index], index: index)
                }
            }
        }
        routes.delete("/v1/user/:name", .operator(.write)) { _, context in
            try await handle {
                let index = try await users.deleteUser(name: context.parameters.get("name") ?? "")
                return Self.json(["Index": index], index: index)
            }
        }
    }
}
