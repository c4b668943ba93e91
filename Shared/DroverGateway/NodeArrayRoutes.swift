import DroverControlPlane
import DroverModel
import Hummingbird

/// `/v1/nodearrays`, `/v1/nodearray/:name` and `/v1/autoscale`: node arrays, their machines
/// and the targets `drover autoscale` sets. Reading needs `node:read`; defining an array,
/// `operator:write`; setting a target, `node:write` (what a node's own token may be given, as
/// `jetpack autoscale` runs on a node).
extension Gateway {
    func addNodeArrayRoutes(to routes: GuardedRouter) {
        routes.get("/v1/nodearrays", .node(.read)) { request, _ in try await read(request) { try await nodeArrays.status() } }
        routes.get("/v1/nodearray/:name", .node(.read)) { request, context in
            let name = context.parameters.get("name") ?? ""
            return try await read(request) { try await nodeArrays.status(name: name) }
        }
        for method in [HTTPRequest.Method.put, .post] {
            routes.on("/v1/nodearray/:name", method: method, .operator(.write)) { request, context in
                try await handle {
                    let name = context.parameters.get("name") ?? ""
                    let body = try await Self.body(of: request, upTo: 1 << 20)
                    try Self.refuseUnsupported(body, shape: .nodeArray, root: "")
                    let array = try Self.decodeBody(NodeArray.self, body)
                    guard array.name == name else {
                        throw ControlPlaneError.invalid([FieldError("Name", "'\(array.name)' does not match the name '\(name)' in the path")])
                    }
                    let index = try await nodeArrays.put(array)
                    return Self.json(["Index": index], index: index)
                }
            }
        }
        routes.delete("/v1/nodearray/:name", .operator(.write)) { _, context in
            try await handle {
                let index = try await nodeArrays.delete(name: context.parameters.get("name") ?? "")
                return Self.json(["Index": index], index: index)
            }
        }
        routes.get("/v1/autoscale", .node(.read)) { request, _ in
            try await read(request) { try await nodeArrays.status().compactMap(\.target) }
        }
        for method in [HTTPRequest.Method.put, .post] {
            routes.on("/v1/autoscale", method: method, .node(.write)) { request, _ in
                try await handle {
                    let body = try await Self.body(of: request, upTo: 1 << 20)
                    try Self.refuseUnsupported(body, shape: .targets, root: "")
                    let requests = try Self.decodeBody([TargetRequest].self, body)
                    return Self.json(try await nodeArrays.setTargets(requests), index: nil)
                }
            }
        }
    }
}
