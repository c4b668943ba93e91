import DroverModel
import DroverStorage
import Foundation
import Hummingbird

/// Task output (`/v1/client/fs/logs/:alloc`, as Nomad serves it) and the event log (`/v1/events`).
extension NomadAPI {
    func addLogRoutes(to router: Router<BasicRequestContext>) {
        router.get("/v1/client/fs/logs/:alloc") { request, context in
            try await handle {
                let query = try LogsQuery(request)
                let allocID = context.parameters.get("alloc") ?? ""
                return try await logs(allocID: allocID, query: query)
            }
        }
        // Archives from `drover report-issue`.
        router.post("/v1/node/:id/issue-report") { request, context in
            try await handle {
                let body = try await request.body.collect(upTo: 64 << 20)
                guard body.readableBytes > 0 else { throw ClusterStoreError.invalid([FieldError("body", "the zip archive is missing")]) }
                let summary = try await IssueReports.store(Data(buffer: body), nodeID: context.parameters.get("id") ?? "", database: store.database)
                return Self.json(summary, index: nil)
            }
        }
        router.get("/v1/issue-reports") { _, _ in
            try await handle { Self.json(try await IssueReports.list(database: store.database), index: nil) }
        }
        router.get("/v1/issue-report/:id") { _, context in
            try await handle {
                let id = context.parameters.get("id") ?? ""
                guard let data = try await IssueReports.archive(id: id, database: store.database) else {
                    throw ClusterStoreError.notFound(kind: "issue report", id: id)
                }
                return Response(status: .ok, headers: [.contentType: "application/zip"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
            }
        }
        router.get("/v1/events") { request, _ in
            try await handle {
                let filter = try Self.eventFilter(request)
                return Self.json(try await Events.list(filter, database: store.database), index: nil)
            }
        }
    }

    /// What a logs request asks for, checked.
    struct LogsQuery {
        var task: String?
        var stream: TaskOutputChunk.Stream
        var offset: Int64
        var fromEnd: Bool
        var plain: Bool
        var follow: Bool

        init(_ request: Request) throws {
            let parameters = request.uri.queryParameters
            var errors: [FieldError] = []
            task = parameters.get("task").flatMap { $0.isEmpty ? nil : $0 }
            let type = parameters.get("type") ?? "stdout"
            stream = TaskOutputChunk.Stream(rawValue: type) ?? .stdout
            if TaskOutputChunk.Stream(rawValue: type) == nil { errors.append(FieldError("type", "must be stdout or stderr, got '\(type)'")) }
            let offsetText = parameters.get("offset") ?? "0"
            offset = Int64(offsetText) ?? 0
            if Int64(offsetText).map({ $0 < 0 }) ?? true {
                errors.append(FieldError("offset", "must be a whole number of bytes, got '\(offsetText)'"))
            }
            let origin = parameters.get("origin") ?? "start"
            fromEnd = origin == "end"
            if origin != "start" && origin != "end" { errors.append(FieldError("origin", "must be start or end, got '\(origin)'")) }
            func flag(_ name: String) -> Bool {
                let text = parameters.get(name) ?? "false"
                if !["true", "false", "1", "0"].contains(text) { errors.append(FieldError(name, "must be true or false, got '\(text)'")) }
                return text == "true" || text == "1"
            }
            plain = flag("plain")
            follow = flag("follow")
            guard errors.isEmpty else { throw ClusterStoreError.invalid(errors) }
        }
    }

    private func logs(allocID: String, query: LogsQuery) async throws -> Response {
        let database = store.database
        let allocation = try await store.allocation(id: allocID)
        var tasks = try await TaskOutput.tasks(allocID: allocID, database: database)
        if let group = allocation?.job?.group(named: allocation?.taskGroup ?? "") { tasks = Array(Set(tasks + group.tasks.map(\.name))).sorted() }
        guard allocation != nil || !tasks.isEmpty else { throw ClusterStoreError.notFound(kind: "allocation", id: allocID) }
        guard let task = query.task ?? (tasks.count == 1 ? tasks[0] : nil) else {
            throw ClusterStoreError.invalid([FieldError("task", "name one of the allocation's tasks: \(tasks.joined(separator: ", "))")])
        }
        guard tasks.contains(task) else {
            throw ClusterStoreError.invalid([
                FieldError("task", "allocation \(allocID) has no task '\(task)'; it has \(tasks.joined(separator: ", "))")
            ])
        }
        let stream = query.stream
        let info = try await TaskOutput.info(allocID: allocID, task: task, stream: stream, database: database)
        let first = query.fromEnd ? max(0, (info?.endOffset ?? 0) - query.offset) : query.offset
        let file = "alloc/logs/\(task).\(stream.rawValue).0"
        let (plain, follow, store) = (query.plain, query.follow, self.store)
        let body = ResponseBody { writer in
            var offset = first
            var quiet = 0
            while true {
                let (start, data) = try await TaskOutput.read(allocID: allocID, task: task, stream: stream, from: offset, database: database)
                if !data.isEmpty {
                    quiet = 0
                    if plain {
                        try await writer.write(ByteBuffer(bytes: data))
                    } else {
                        let frame = StreamFrame(offset: start + Int64(data.count), data: data, file: file)
                        try await writer.write(ByteBuffer(bytes: try JSONEncoder().encode(frame)))
                    }
                    offset = start + Int64(data.count)
                    continue
                }
                guard follow else { break }
                // Following ends once the allocation has finished and its output has stopped
                // arriving (the agent ships what is left within moments), or when the client goes.
                let finished = try await store.allocation(id: allocID).map { $0.clientStatus.isTerminal } ?? true
                quiet = finished ? quiet + 1 : 0
                if quiet > 8 { break }
                try await Task.sleep(for: .milliseconds(250))
            }
            try await writer.finish(nil)
        }
        var headers: HTTPFields = [.contentType: plain ? "text/plain; charset=utf-8" : "application/json"]
        // Where the answer's bytes start: above the asked offset when the oldest were dropped.
        headers[.init("X-Drover-Log-Offset")!] = String(max(first, info?.startOffset ?? first))
        return Response(status: .ok, headers: headers, body: body)
    }

    /// Nomad's `StreamFrame`: `Offset` is where the stream stands after this frame's data.
    struct StreamFrame: Encodable {
        var offset: Int64
        var data: Data
        var file: String
        enum CodingKeys: String, CodingKey {
            case offset = "Offset"
            case data = "Data"
            case file = "File"
        }
    }

    static func eventFilter(_ request: Request) throws -> Events.Filter {
        let parameters = request.uri.queryParameters
        var filter = Events.Filter()
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
        for (name, keyPath) in [("since", \Events.Filter.since), ("until", \Events.Filter.until)] {
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
        guard errors.isEmpty else { throw ClusterStoreError.invalid(errors) }
        return filter
    }
}
