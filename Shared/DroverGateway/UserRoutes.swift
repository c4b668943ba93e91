import DroverControlPlane
import DroverModel
import Hummingbird

/// `/v1/users`, `/v1/user/:name`: the users the cluster manages on its nodes.
extension Gateway {
    func addUserRoutes(to router: Router<BasicRequestContext>) {
        router.get("/v1/users") { request, _ in try await read(request) { try await database.users.list() } }
        router.get("/v1/user/:name") { request, context in
            let name = context.parameters.get("name") ?? ""
            return try await read(request) {
                try await database.users.list().first { $0.name == name } ?? { throw ControlPlaneError.notFound(kind: "user", id: name) }()
            }
        }
        for method in [HTTPRequest.Method.put, .post] {
            router.on("/v1/user/:name", method: method) { request, context in
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
        router.delete("/v1/user/:name") { _, context in
            try await handle {
                let index = try await users.deleteUser(name: context.parameters.get("name") ?? "")
                return Self.json(["Index": index], index: index)
            }
        }
    }
}
