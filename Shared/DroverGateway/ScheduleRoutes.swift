import DroverControlPlane
import DroverModel
import Foundation
import Hummingbird

/// Chronos's API for time-based and dependent jobs, at `/v1/scheduler/…` and, for 2.x clients,
/// `/scheduler/…`: jobs with Chronos's fields, a `POST` of an existing name updating it, and
/// answers without a body as `204 No Content`, as chronos-python expects. Reading needs
/// `list-jobs` or `read-job` in the namespace, changing `submit-job`.
extension Gateway {
    func addScheduleRoutes(to routes: GuardedRouter) {
        for prefix in ["/v1/scheduler", "/scheduler"] {
            routes.get("\(prefix)/jobs", .namespace(.listJobs), scope: .fixed(Namespace.defaultName)) { _, _ in
                try await handle { Self.json(try await database.schedules.list().map(\.job), index: nil) }
            }
            routes.get("\(prefix)/jobs/search", .namespace(.listJobs), scope: .fixed(Namespace.defaultName)) { request, _ in
                try await handle {
                    let query = request.uri.queryParameters
                    func text(_ name: String) -> String? { query.get(name).map { String($0).lowercased() }.flatMap { $0.isEmpty ? nil : $0 } }
                    func number(_ name: String, default value: Int) throws -> Int {
                        guard let raw = query.get(name) else { return value }
                        guard let parsed = Int(String(raw)), (0...100_000).contains(parsed) else {
                            throw ControlPlaneError.invalid([FieldError(name, "must be a whole number from 0 to 100000, got '\(raw)'")])
                        }
                        return parsed
                    }
                    let (name, command, any) = (text("name"), text("command"), text("any"))
                    let (limit, offset) = (try number("limit", default: 10), try number("offset", default: 0))
                    let found = try await database.schedules.list().map(\.job).filter { job in
                        (name.map { job.name.lowercased().contains($0) } ?? true) && (command.map { job.command.lowercased().contains($0) } ?? true)
                            && (any.map { word in
                                [job.name, job.command, job.owner, job.description].contains { $0.lowercased().contains(word) }
                            } ?? true)
                    }
                    return Self.json(Array(found.dropFirst(offset).prefix(limit)), index: nil)
                }
            }
            for (kind, method) in [("iso8601", HTTPRequest.Method.post), ("iso8601", .put), ("dependency", .post), ("dependency", .put)] {
                routes.on("\(prefix)/\(kind)", method: method, .namespace(.submitJob), scope: .fixed(Namespace.defaultName)) { request, _ in
                    try await handle {
                        let body = try await Self.body(of: request, upTo: 1 << 20)
                        try Self.refuseUnsupported(body, shape: .scheduledJob, root: "")
                        let job = try Self.decodeBody(ScheduledJob.self, body)
                        if kind == "iso8601" && job.schedule.isEmpty {
                            throw ControlPlaneError.invalid([FieldError("schedule", "is required here; a job with parents goes to /dependency")])
                        }
                        if kind == "dependency" && job.parents.isEmpty {
                            throw ControlPlaneError.invalid([FieldError("parents", "is required here; a job with a schedule goes to /iso8601")])
                        }
                        try await schedules.put(job)
                        return Response(status: .noContent)
                    }
                }
            }
            routes.get("\(prefix)/job/:name", .namespace(.readJob), scope: .fixed(Namespace.defaultName)) { _, context in
                try await handle {
                    let name = context.parameters.get("name") ?? ""
                    guard let entry = try await database.schedules.read(name: name) else {
                        throw ControlPlaneError.notFound(kind: "scheduled job", id: name)
                    }
                    return Self.json(entry.job, index: entry.modifyIndex)
                }
            }
            routes.delete("\(prefix)/job/:name", .namespace(.submitJob), scope: .fixed(Namespace.defaultName)) { _, context in
                try await handle {
                    try await schedules.delete(name: context.parameters.get("name") ?? "")
                    return Response(status: .noContent)
                }
            }
            routes.put("\(prefix)/job/:name", .namespace(.submitJob), scope: .fixed(Namespace.defaultName)) { request, context in
                try await handle {
                    // `?arguments=` (repeatable, or one string split at spaces) is appended to this run's command.
                    let given = request.uri.queryParameters.getAll("arguments").map { String($0) }
                    let arguments = given.count == 1 ? given[0].split(separator: " ").map(String.init) : given
                    try await schedules.runNow(name: context.parameters.get("name") ?? "", arguments: arguments)
                    return Response(status: .noContent)
                }
            }
            routes.get("\(prefix)/job/stat/:name", .namespace(.readJob), scope: .fixed(Namespace.defaultName)) { _, context in
                try await handle { Self.json(try await schedules.stats(name: context.parameters.get("name") ?? ""), index: nil) }
            }
            routes.delete("\(prefix)/task/kill/:name", .namespace(.submitJob), scope: .fixed(Namespace.defaultName)) { _, context in
                try await handle {
                    try await schedules.kill(name: context.parameters.get("name") ?? "")
                    return Response(status: .noContent)
                }
            }
            routes.get("\(prefix)/graph/dot", .namespace(.listJobs), scope: .fixed(Namespace.defaultName)) { _, _ in
                try await handle { Self.text(ScheduleGraph.dot(try await database.schedules.list().map(\.job))) }
            }
            routes.get("\(prefix)/graph/csv", .namespace(.listJobs), scope: .fixed(Namespace.defaultName)) { _, _ in
                try await handle { Self.text(ScheduleGraph.csv(try await database.schedules.list().map { ($0.job, $0.running) })) }
            }
            routes.get("\(prefix)/leader", .namespace(.listJobs), scope: .fixed(Namespace.defaultName)) { _, _ in
                try await handle { Self.json(["leader": try await database.schedules.lastFiredBy() ?? ""], index: nil) }
            }
        }
    }

    static func text(_ body: String) -> Response {
        Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"], body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}
