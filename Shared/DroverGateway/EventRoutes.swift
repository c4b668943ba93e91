import DroverAccess
import DroverControlPlane
import DroverModel
import DroverStorage
import Foundation
import Hummingbird
import ServiceLifecycle

/// The event log (`/v1/events`) and the archives of `drover report-issue`.
extension Gateway {
    func addEventRoutes(to routes: GuardedRouter) {
        // What each topic needs is checked in the handler, against the topics asked for.
        routes.get("/v1/event/stream", .anyToken) { request, _ in
            try await handle { try await eventStream(request) }
        }
        routes.get("/v1/events", .namespace(.readJob)) { request, context in
            try await handle {
                var filter = try Self.eventFilter(request)
                // A job's events are read in its namespace; the cluster's own (nodes, arrays) by
                // anyone who may read jobs somewhere.
                filter.namespaces = try await listedNamespaces(request, caller: context.caller, .readJob)
                return Self.json(try await database.events.list(filter), index: nil)
            }
        }
        routes.post("/v1/node/:id/issue-report", .ownNode) { request, context in
            try await handle {
                let body = try await Self.body(of: request, upTo: 64 << 20)
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

    /// What `GET /v1/event/stream` asks for.
    struct EventStreamQuery {
        var filter: EventStreamRepository.Filter
        /// The cluster index to start from; 0: every event still kept.
        var index: Int64

        init(_ request: Request) throws {
            let parameters = request.uri.queryParameters
            var errors: [FieldError] = []
            var topics: [(topic: String, key: String)] = []
            for text in parameters.getAll("topic") {
                let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
                let topic = parts.first ?? ""
                let key = parts.count > 1 ? parts[1] : "*"
                if topic != "*" && !StreamEvent.topics.contains(topic) {
                    errors.append(
                        FieldError(
                            "topic", "must be Topic or Topic:Key with Topic * or one of \(StreamEvent.topics.joined(separator: ", ")), got '\(text)'")
                    )
                } else if key.isEmpty || key.utf8.count > 256 {
                    errors.append(FieldError("topic", "the key after ':' must be * or 1-256 bytes, got '\(text)'"))
                } else {
                    topics.append((topic, key))
                }
            }
            if topics.count > 64 { errors.append(FieldError("topic", "at most 64 topics, got \(topics.count)")) }
            index = 0
            if let text = parameters.get("index") {
                if let value = Int64(text), value >= 0 {
                    index = value
                } else {
                    errors.append(FieldError("index", "must be a whole number, 0 or more, got '\(text)'"))
                }
            }
            let namespace = parameters.get("namespace") ?? "default"
            guard errors.isEmpty else { throw ControlPlaneError.invalid(errors) }
            filter = EventStreamRepository.Filter(topics: topics.isEmpty ? [("*", "*")] : topics, namespace: namespace)
        }

        /// What the token needs for these topics, as Nomad asks: read-job in the namespace for
        /// the job topics, node:read for the node topics, management for all topics at once.
        var requirements: [(topic: String, requirement: Requirement)] {
            filter.topics.map { topic, _ in
                switch topic {
                case "Node", "NodeDrain", "NodeArray": (topic, .node(.read))
                case "*": (topic, .management)
                default: (topic, .namespace(.readJob))
                }
            }
        }
    }

    /// Nomad's event stream: newline-delimited JSON, one frame per index (`{"Index": N,
    /// "Events": [...]}`), a heartbeat (`{}`) every 10 s without one, from `index` on.
    private func eventStream(_ request: Request) async throws -> Response {
        let query = try EventStreamQuery(request)
        if access.enabled, case .granted(let acl, _) = try await resolve(request) {
            for (topic, requirement) in query.requirements where !acl.allows(requirement, namespace: query.filter.namespace) {
                return Self.error(.forbidden, "Permission denied: topic \(topic) needs \(requirement) in namespace \(query.filter.namespace)")
            }
        }
        let (database, watcher) = (self.database, self.watcher)
        let events = database.eventStream
        let start = query.index == 0 ? 0 : try await events.position(fromIndex: query.index)
        let body = ResponseBody { writer in
            var position = start
            var lastWrite = ContinuousClock.now
            // Ends when the client goes (a write fails) or the gateway stops.
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                let seen = watcher.latest
                let before = position
                try await events.sequence()
                let (entries, through) = try await events.read(after: position, filter: query.filter, limit: 500)
                position = through
                var frames = ""
                var next = entries.startIndex
                while next < entries.endIndex {
                    let index = entries[next].index
                    var end = next
                    while end < entries.endIndex && entries[end].index == index { end += 1 }
                    frames += #"{"Index":\#(index),"Events":["# + entries[next..<end].map(\.json).joined(separator: ",") + "]}\n"
                    next = end
                }
                if !frames.isEmpty {
                    try await writer.write(ByteBuffer(string: frames))
                    lastWrite = .now
                }
                if through - before >= 500 { continue }  // more may be waiting
                if ContinuousClock.now - lastWrite >= .seconds(10) {
                    try await writer.write(ByteBuffer(string: "{}\n"))
                    lastWrite = .now
                }
                await watcher.wait(after: seen, timeout: .seconds(1))
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "application/json"], body: body)
    }
}
