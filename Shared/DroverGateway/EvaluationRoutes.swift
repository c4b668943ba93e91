import DroverControlPlane
import DroverModel
import Hummingbird

/// `/v1/evaluations`, `/v1/evaluation/:id`. An evaluation is checked in its job's namespace.
extension Gateway {
    func addEvaluationRoutes(to routes: GuardedRouter) {
        routes.get("/v1/evaluations", .namespace(.readJob)) { request, context in
            try await read(request) {
                let namespaces = try await listedNamespaces(request, caller: context.caller, .readJob)
                return try await database.evaluations.list(prefix: request.uri.queryParameters.get("prefix") ?? "", namespaces: namespaces)
            }
        }
        routes.get("/v1/evaluation/:id", .namespace(.readJob)) { request, context in
            try await read(request) { try await evaluation(request, context) }
        }
        routes.get("/v1/evaluation/:id/allocations", .namespace(.readJob)) { request, context in
            try await read(request) {
                let eval = try await evaluation(request, context)
                return try await database.allocations.list(job: eval.jobKey).filter { $0.evalID == eval.id }
            }
        }
    }

    /// The evaluation the path names, once the caller is known to have `read-job` in its namespace.
    private func evaluation(_ request: Request, _ context: GatewayRequestContext) async throws -> Evaluation {
        let id = context.parameters.get("id") ?? ""
        guard let eval = try await database.evaluations.read(id: id) else {
            // What is not there is not found only by a caller who may look for it where the
            // request says.
            try context.caller.authorize(.readJob, in: try Self.requestNamespace(request))
            throw ControlPlaneError.notFound(kind: "evaluation", id: id)
        }
        try context.caller.authorize(.readJob, in: eval.jobNamespace)
        return eval
    }
}
