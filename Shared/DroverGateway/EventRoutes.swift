import DroverControlPlane
import DroverModel
import DroverStorage
import Foundation
import Hummingbird

/// The event log (`/v1/events`) and the archives of `drover report-issue`.
extension Gateway {
    func addEventRoutes(to routes: GuardedRouter) {
        routes.get("/v1/events", .namespace(.readJob)) { request, _ in
            try await handle {
                let filter = try Self.eventFilter(request)
                return Self.json(try await database.events.list(filter), index: nil)
            }
        }
        routes.post("/v1/node/:id/issue-report", .ownNode) { request, context in
            try await handle {
                let body = try await request.body.collect(upTo: 64 << 20)
                guard body.readableBytes > 0 else { throw ControlPlaneError.invalid([FieldError("body", "the zip archive is missing")]) }
                let summary = try await database.issueReports.store(Data(buffer: body), nodeID: context.parameters.get("id") ?? "")
                return Self.json(summary, index: nil)
            }
        }
        routes.get("/v1/issue-reports", .operator(.read)) { _, _ in
            try await handle { Self.json(try await database.issueReports.list(), index: nil) }
        }
        routes.get("/v1/issue-report/:id", .operator(.read)) { _, context in
            try await handle {
                let id = context.parameters.get("id") ?? ""
                guard let data = try await database.issueReports.archive(id: id) else {
                    throw ControlPlaneError.notFound(kind: "issue report", id: id)
                }
                return Response(status: .ok, headers: [.contentType: "application/zip"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
            }
        }
    }

    static func eventFilter(_ request: Request) throws -> EventRepository.Filter {
        let parameters = request.uri.queryParameters
        var filter = EventRepository.Filter()
        var errors: [FieldError] = []
        filter.nodeID = parameters.get("node")
        filter.jobID = parameters.get("job")
        if let text = parameters.get("level") {
            let levels = text.split(separator: ",").map { NodeLogMessage.Level(rawValue: String($0)) }
            if levels.contains(nil) { errors.append(FieldError("level", "must be info, warn or error (comma-separated), got '\(text)'")) }
            filter.levels = Set(levels.compactMap { $0 })
        }
        if let text = parameters.get("priority") {
            let priorities: [NodeLogMessage.Priority?] =
                text == "all" ? NodeLogMessage.Priority.allCases : text.split(separator: ",").map { NodeLogMessage.Priority(rawValue: String($0)) }
            if priorities.contains(nil) { errors.append(FieldError("priority", "must be low, medium, high (comma-separated) or all, got '\(text)'")) }
            filter.priorities = Set(priorities.compactMap { $0 })
        }
        for (name, keyPath) in [("since", \EventRepository.Filter.since), ("until", \EventRepository.Filter.until)] {
            guard let text = parameters.get(name) else { continue }
            if let date = try? Date(text, strategy: .iso8601) {
                filter[keyPath: keyPath] = date
            } else {
                errors.append(FieldError(name, "must be an ISO 8601 time such as 2026-11-22T10:00:00Z, got '\(text)'"))
            }
        }
        if let text = parameters.get("limit") {
            if let limit = Int(text), limit > 0 {
                filter.limit = min(limit, 10_000)
            } else {
                errors.append(FieldError("limit", "must be a whole number above 0, got '\(text)'"))
            }
        }
        guard errors.isEmpty else { throw ControlPlaneError.invalid(errors) }
        return filter
    }
}
