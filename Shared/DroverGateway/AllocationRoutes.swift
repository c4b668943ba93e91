import DroverControlPlane
import Hummingbird

/// `/v1/allocations`, `/v1/allocation/:id`.
extension Gateway {
    func addAllocationRoutes(to routes: GuardedRouter) {
        routes.get("/v1/allocations", .namespace(.readJob)) { request, _ in
            try await read(request) { try await database.allocations.list(prefix: request.uri.queryParameters.get("prefix") ?? "") }
        }
        routes.get("/v1/allocation/:id", .namespace(.readJob)) { request, context in
            let id = context.parameters.get("id") ?? ""
            return try await read(request) {
                try await database.allocations.read(id: id) ?? { throw ControlPlaneError.notFound(kind: "allocation", id: id) }()
            }
        }
        routes.post("/v1/allocation/:id/stop", .namespace(.allocLifecycle)) { _, context in
            try await handle {
                let result = try await jobs.stopAllocation(id: context.parameters.get("id") ?? "")
                return Self.json(AllocStopResponse(evalID: result.evalID, index: result.index), index: result.index)
            }
        }
    }
}

struct AllocStopResponse: Encodable {
    var evalID: String
    var index: Int64
    enum CodingKeys: String, CodingKey {
        case evalID = "EvalID"
        case index = "Index"
    }
}
