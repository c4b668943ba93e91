import DroverControlPlane
import Hummingbird

/// `/v1/evaluations`, `/v1/evaluation/:id`.
extension Gateway {
    func addEvaluationRoutes(to routes: GuardedRouter) {
        routes.get("/v1/evaluations", .namespace(.readJob)) { request, _ in
            try await read(request) { try await database.evaluations.list(prefix: request.uri.queryParameters.get("prefix") ?? "") }
        }
        routes.get("/v1/evaluation/:id", .namespace(.readJob)) { request, context in
            let id = context.parameters.get("id") ?? ""
            return try await read(request) {
                try await database.evaluations.read(id: id) ?? { throw ControlPlaneError.notFound(kind: "evaluation", id: id) }()
            }
        }
        routes.get("/v1/evaluation/:id/allocations", .namespace(.readJob)) { request, context in
            let id = context.parameters.get("id") ?? ""
            return try await read(request) {
                guard let eval = try await database.evaluations.read(id: id) else { throw ControlPlaneError.notFound(kind: "evaluation", id: id) }
                return try await database.allocations.list(jobID: eval.jobID).filter { $0.evalID == id }
            }
        }
    }
}
