import DroverControlPlane
import DroverModel
import Foundation
import Hummingbird

/// Task output, as Nomad serves it: `/v1/client/fs/logs/:alloc`.
extension Gateway {
    func addLogRoutes(to routes: GuardedRouter) {
        routes.get("/v1/client/fs/logs/:alloc", .namespace(.readLogs)) { request, context in
            try await handle {
                let query = try LogsQuery(request)
                // Checked in the namespace of the allocation's job; output whose allocation is gone
                // (collected) is read by an unrestricted caller only.
                let allocID = context.parameters.get("alloc") ?? ""
                let allocation = try await database.allocations.read(id: allocID)
                if let allocation {
                    try context.caller.authorize(.readLogs, in: allocation.jobNamespace)
                } else if !context.caller.allowsEverywhere() {
                    throw AccessDenied(capability: .readLogs, namespace: try Self.requestNamespace(request))
                }
                return try await logs(allocID: allocID, allocation: allocation, query: query)
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
                guard let value = GoBool.parse(text) else {
                    errors.append(Gateway.flagError(name, text))
                    return false
                }
                return value
            }
            plain = flag("plain")
            follow = flag("follow")
            guard errors.isEmpty else { throw ControlPlaneError.invalid(errors) }
        }
    }

    private func logs(allocID: String, allocation: Allocation?, query: LogsQuery) async throws -> Response {
        let database = self.database
        var tasks = try await database.output.tasks(allocID: allocID)
        if let group = allocation?.job?.group(named: allocation?.taskGroup ?? "") { tasks = Array(Set(tasks + group.tasks.map(\.name))).sorted() }
        guard allocation != nil || !tasks.isEmpty else { throw ControlPlaneError.notFound(kind: "allocation", id: allocID) }
        guard let task = query.task ?? (tasks.count == 1 ? tasks[0] : nil) else {
            throw ControlPlaneError.invalid([FieldError("task", "name one of the allocation's tasks: \(tasks.joined(separator: ", "))")])
        }
        guard tasks.contains(task) else {
            throw ControlPlaneError.invalid([
                FieldError("task", "allocation \(allocID) has no task '\(task)'; it has \(tasks.joined(separator: ", "))")
            ])
        }
        let stream = query.stream
        let info = try await database.output.info(allocID: allocID, task: task, stream: stream)
        let first = query.fromEnd ? max(0, (info?.endOffset ?? 0) - query.offset) : query.offset
        let file = "alloc/logs/\(task).\(stream.rawValue).0"
        let (plain, follow) = (query.plain, query.follow)
        let body = ResponseBody { writer in
            var offset = first
            var quiet = 0
            while true {
                let (start, data) = try await database.output.read(allocID: allocID, task: task, stream: stream, from: offset)
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
                let finished = try await database.allocations.read(id: allocID).map { $0.clientStatus.isTerminal } ?? true
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
}
