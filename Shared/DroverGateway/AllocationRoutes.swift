import DroverAccess
import DroverControlPlane
import DroverModel
import Hummingbird

/// `/v1/allocations`, `/v1/allocation/:id`. An allocation is checked in its job's namespace.
extension Gateway {
    func addAllocationRoutes(to routes: GuardedRouter) {
        routes.get("/v1/allocations", .namespace(.readJob)) { request, context in
            try await read(request) {
                let namespaces = try await listedNamespaces(request, caller: context.caller, .readJob)
                return try await database.allocations.list(prefix: request.uri.queryParameters.get("prefix") ?? "", namespaces: namespaces)
            }
        }
        routes.get("/v1/allocation/:id", .namespace(.readJob)) { request, context in
            try await read(request) { try await allocation(request, context, .readJob) }
        }
        routes.post("/v1/allocation/:id/stop", .namespace(.allocLifecycle)) { request, context in
            try await handle {
                let allocation = try await allocation(request, context, .allocLifecycle)
                let result = try await jobs.stopAllocation(id: allocation.id)
                return Self.json(AllocStopResponse(evalID: result.evalID, index: result.index), index: result.index)
            }
        }
    }

    /// The allocation the path names, once the caller is known to have `capability` in its
    /// namespace: 404 when there is none, 403 without the capability.
    func allocation(_ request: Request, _ context: GatewayRequestContext, _ capability: Capability, id: String? = nil) async throws -> Allocation {
        let id = id ?? context.parameters.get("id") ?? ""
        guard let allocation = try await database.allocations.read(id: id) else {
            // What is not there is not found only by a caller who may look for it where the
            // request says.
            try context.caller.authorize(capability, in: try Self.requestNamespace(request))
            throw ControlPlaneError.notFound(kind: "allocation", id: id)
        }
        try context.caller.authorize(capability, in: allocation.jobNamespace)
        return allocation
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
