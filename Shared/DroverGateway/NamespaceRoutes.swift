import DroverControlPlane
import DroverModel
import Foundation
import Hummingbird

/// `/v1/namespaces`, `/v1/namespace/:name`, as Nomad has them: any token lists and reads the
/// namespaces it holds a capability in; only a management token writes them.
extension Gateway {
    func addNamespaceRoutes(to routes: GuardedRouter) {
        routes.get("/v1/namespaces", .anyToken) { request, context in
            try await read(request) {
                let prefix = request.uri.queryParameters.get("prefix") ?? ""
                return try await database.namespaces.list().filter { $0.name.hasPrefix(prefix) && context.caller.mayRead(namespace: $0.name) }
            }
        }
        routes.get("/v1/namespace/:name", .anyToken) { request, context in
            try await read(request) {
                let name = context.parameters.get("name") ?? ""
                // A namespace the token holds nothing in is not found, whether it exists or not.
                guard context.caller.mayRead(namespace: name) else { throw ControlPlaneError.notFound(kind: "namespace", id: name) }
                return try await database.namespaces.read(name: name) ?? { throw ControlPlaneError.notFound(kind: "namespace", id: name) }()
            }
        }
        for method in [HTTPRequest.Method.post, .put] {
            routes.on("/v1/namespace/:name", method: method, .management) { request, context in
                try await handle { try await putNamespace(request, pathName: context.parameters.get("name")) }
            }
            // Nomad's clients also write a namespace to /v1/namespace with the name in the body.
            routes.on("/v1/namespace", method: method, .management) { request, _ in
                try await handle { try await putNamespace(request, pathName: nil) }
            }
        }
        routes.delete("/v1/namespace/:name", .management) { _, context in
            try await handle {
                let index = try await namespaces.delete(name: context.parameters.get("name") ?? "")
                return Self.json(["Index": index], index: index)
            }
        }
    }

    private func putNamespace(_ request: Request, pathName: String?) async throws -> Response {
        let body = try await Self.body(of: request, upTo: 1 << 20)
        try Self.refuseUnsupported(body, shape: .namespace, root: "")
        var namespace = try Self.decodeBody(Namespace.self, body)
        if let pathName {
            if namespace.name.isEmpty { namespace.name = pathName }
            guard namespace.name == pathName else {
                throw ControlPlaneError.invalid([FieldError("Name", "'\(namespace.name)' does not match the name '\(pathName)' in the path")])
            }
        }
        let index = try await namespaces.put(namespace)
        return Self.json(["Index": index], index: index)
    }
}
