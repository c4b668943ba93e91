import DroverMessaging
import DroverModel
import Foundation
import Hummingbird

/// The agent's own HTTP routes, for the `drover` commands run on this node: they reach the bus
/// through the agent, with the node's identity, instead of holding credentials of their own.
/// Every one needs the agent's token (``AgentToken``) in `X-Drover-Agent-Token`; a request
/// without it gets 401.
struct AgentAPI: Sendable {
    let bus: any MessageBus
    let node: Node
    let shutdownScripts: ShutdownScripts
    let users: NodeUsers
    let dataDirectory: URL
    /// Settings the node's commands may read (`drover config cluster.<key>`).
    let settings: [String: String]
    /// What callers must send in `X-Drover-Agent-Token`.
    let token: String
    /// The node's identity, when it joined: what uploads its issue reports.
    let joined: NodeJoin?
    /// The authorities the gateway's certificate must chain to, for an https gateway.
    let caCertificate: String?
    /// The node's cluster-init, when it joined (it needs the node's secret).
    let clusterInit: ClusterInit?
    /// What carries a converge's outcome to the control plane.
    let registrations: Registrations

    func addRoutes(to base: Router<BasicRequestContext>) {
        let router = base.group("/v1/agent").add(middleware: TokenCheck(token: token))
        // `drover log`: a message from this node, for the cluster's event log.
        router.post("log") { request, _ in
            try await Self.answer {
                let entry = try await Self.decode(LogRequest.self, request)
                guard !entry.message.isEmpty else { throw Refused("Message", "must not be empty") }
                let priority = entry.priority ?? (entry.level == .error ? .high : .medium)
                let message = NodeLogMessage(nodeID: node.id, message: entry.message, level: entry.level ?? .info, priority: priority)
                try await bus.publish(message, routingKey: RoutingKey.nodeLog(node.id, level: message.level, priority: priority))
                return Response(status: .accepted)
            }
        }
        // The node as fingerprinted, and the settings it runs with, for `drover config`.
        router.get("self") { _, _ in
            Self.json(AgentSelf(node: node, settings: settings))
        }
        // `drover report-issue`: the agent's logs and state in a zip, where asked or in its data dir.
        router.post("report-issue") { request, _ in
            try await Self.answer {
                let body = try await Self.decode(ReportRequest.self, request)
                let stamp = Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: false)).replacingOccurrences(
                    of: ":", with: "")
                let name = "drover-issue-\(node.id)-\(stamp).zip"
                var destination = dataDirectory.appendingPathComponent("issues/\(name)")
                if let path = body.path {
                    guard path.hasPrefix("/") else { throw Refused("Path", "must be an absolute path, got '\(path)'") }
                    var directory: ObjCBool = false
                    let isDirectory = FileManager.default.fileExists(atPath: path, isDirectory: &directory) && directory.boolValue
                    destination = isDirectory ? URL(fileURLWithPath: path).appendingPathComponent(name) : URL(fileURLWithPath: path)
                    // The agent writes only under its own data directory, whatever a caller asks.
                    guard Self.lies(destination, under: dataDirectory) else {
                        throw Refused("Path", "must be under the node's data directory \(dataDirectory.path), got '\(path)'")
                    }
                }
                let files: [String]
                do {
                    files = try IssueReport.write(to: destination, dataDirectory: dataDirectory, node: node)
                } catch {
                    throw Refused("Path", "cannot write \(destination.path): \(error.localizedDescription)")
                }
                // A joined node uploads it itself, with its own secret.
                var uploaded: String?
                if body.upload == true, let joined, let address = joined.address {
                    uploaded = try await IssueReport.upload(
                        destination, nodeID: node.id, secret: joined.nodeSecret, address: address, caCertificate: caCertificate)
                }
                return Self.json(ReportAnswer(path: destination.path, files: files, uploadedID: uploaded))
            }
        }
        // `drover converge`: fetch the node's projects again and run their scripts.
        router.post("converge") { _, _ in
            try await Self.answer {
                let state = try await Self.clusterInit(clusterInit) { try await $0.converge() }
                await registrations.update(clusterInit: state, publishNow: true)
                return Self.json(state)
            }
        }
        // `drover test`: run the projects' tests.
        router.post("test") { _, _ in
            try await Self.answer { Self.json(try await Self.clusterInit(clusterInit) { try await $0.test() }) }
        }
        // `drover download`: a blob of a project assigned to this node.
        router.get("blob") { request, _ in
            try await Self.answer {
                let project = request.uri.queryParameters.get("project").map { String($0) } ?? ""
                let path = request.uri.queryParameters.get("path").map { String($0) } ?? ""
                if !Project.isWord(project) { throw Refused("project", "'\(project)' is not a project name") }
                if let reason = Project.pathProblem("blobs/" + path) { throw Refused("path", reason) }
                let data = try await Self.clusterInit(clusterInit) { try await $0.blob(project: project, path: path) }
                return Response(
                    status: .ok, headers: [.contentType: "application/octet-stream"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
            }
        }
        // `drover users`: the users the cluster manages on this node.
        router.get("users") { _, _ in Self.json(users.current()) }
        // `drover keepalive`: no termination until then.
        router.post("keepalive") { request, _ in
            try await Self.answer {
                let body = try await Self.decode(KeepaliveRequest.self, request)
                var until: Date?
                if body.duration != "forever" {
                    guard let duration = GoDuration.parse(body.duration) else {
                        throw Refused("Duration", "'\(body.duration)' is neither a duration such as 1h nor 'forever'")
                    }
                    until = Date().addingTimeInterval(Double(GoDuration.nanoseconds(duration)) / 1e9)
                }
                try await bus.publish(NodeKeepalive(nodeID: node.id, until: until), routingKey: RoutingKey.node(node.id, "keepalive"))
                return Self.json(["Until": until.map { $0.formatted(Date.ISO8601FormatStyle()) } ?? "forever"])
            }
        }
        // `drover shutdown`: ask the control plane to take this node away.
        router.post("shutdown") { request, _ in
            try await Self.answer {
                let body = try await Self.decode(ShutdownRequest.self, request)
                try await bus.publish(NodeShutdownRequest(nodeID: node.id, reason: body.reason), routingKey: RoutingKey.node(node.id, "shutdown"))
                return Self.json(["Reason": body.reason.rawValue])
            }
        }
        // `drover run-on-shutdown`: a script to run, after those registered before, when the agent stops for good.
        router.post("run-on-shutdown") { request, _ in
            try await Self.answer {
                let body = try await Self.decode(ScriptRequest.self, request)
                guard body.script.hasPrefix("/"), FileManager.default.isExecutableFile(atPath: body.script) else {
                    throw Refused("Script", "'\(body.script)' is not an executable file given by its full path")
                }
                if let problem = ShutdownScripts.untrusted(body.script) { throw Refused("Script", problem) }
                do {
                    return Self.json(["Scripts": try shutdownScripts.register(body.script)])
                } catch {
                    return Self.error(.internalServerError, FieldError("Script", "cannot be recorded in \(shutdownScripts.file.path): \(error)"))
                }
            }
        }
        // `drover send`: an arbitrary message under this node's prefix, as `jetpack send`.
        router.post("send") { request, _ in
            try await Self.answer {
                let body = try await Self.decode(SendRequest.self, request)
                let words = body.routingKey.split(separator: ".", omittingEmptySubsequences: false)
                guard !words.isEmpty, words.allSatisfy({ RoutingKey.isValidWord($0) }) else {
                    throw Refused("RoutingKey", "'\(body.routingKey)' must be words separated by dots, without '*', '#' or spaces")
                }
                let key = RoutingKey.nodeSend(node.id, body.routingKey)
                let message = OutgoingMessage(
                    routingKey: key, messageID: UUID().uuidString.lowercased(), type: "node.send", schemaVersion: 1, timestamp: Date(),
                    body: Array(body.body.utf8), headers: ["x-drover-node": node.id])
                try await bus.publish(message)
                return Self.json(["RoutingKey": key])
            }
        }
    }

    struct AgentSelf: Encodable {
        var node: Node
        var settings: [String: String]
        enum CodingKeys: String, CodingKey {
            case node = "Node"
            case settings = "Settings"
        }
    }

    struct ReportRequest: Decodable {
        var path: String?
        /// Upload it to the control plane, as the node, when the node has joined.
        var upload: Bool?
        enum CodingKeys: String, CodingKey {
            case path = "Path"
            case upload = "Upload"
        }
    }

    struct ReportAnswer: Encodable {
        var path: String
        var files: [String]
        /// The report's id on the control plane, when the agent uploaded it.
        var uploadedID: String?
        enum CodingKeys: String, CodingKey {
            case path = "Path"
            case files = "Files"
            case uploadedID = "UploadedID"
        }
    }

    struct KeepaliveRequest: Decodable {
        var duration: String
        enum CodingKeys: String, CodingKey { case duration = "Duration" }
    }

    struct ShutdownRequest: Decodable {
        var reason: NodeShutdownRequest.Reason
        enum CodingKeys: String, CodingKey { case reason = "Reason" }
    }

    struct ScriptRequest: Decodable {
        var script: String
        enum CodingKeys: String, CodingKey { case script = "Script" }
    }

    struct SendRequest: Decodable {
        var routingKey: String
        var body: String
        enum CodingKeys: String, CodingKey {
            case routingKey = "RoutingKey"
            case body = "Body"
        }
    }

    /// Whether `file`, with every symbolic link of its directory resolved, lies under `directory`.
    static func lies(_ file: URL, under directory: URL) -> Bool {
        let root = directory.resolvingSymlinksInPath().standardizedFileURL.path
        let parent = file.deletingLastPathComponent().resolvingSymlinksInPath().standardizedFileURL.path
        return (parent == root || parent.hasPrefix(root + "/")) && file.lastPathComponent != ".." && file.lastPathComponent != "."
    }

    /// Refuses a request without the agent's token.
    struct TokenCheck: RouterMiddleware {
        typealias Context = BasicRequestContext
        let token: String

        func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
            guard let given = request.headers[.init(AgentToken.header)!], AgentToken.matches(given, token) else {
                return AgentAPI.error(
                    .unauthorized,
                    FieldError(
                        AgentToken.header,
                        "missing or wrong: the drover commands read it from the agent's data directory (agent.token), readable by the agent's user"))
            }
            return try await next(request, context)
        }
    }

    /// Bad input: answered 400 with the field and why.
    struct Refused: Error {
        var field: FieldError
        init(_ field: String, _ reason: String) { self.field = FieldError(field, reason) }
        init(_ field: FieldError) { self.field = field }
    }

    /// Runs `work` with the node's cluster-init; what stops it is refused with its reason.
    static func clusterInit<T>(_ clusterInit: ClusterInit?, _ work: (ClusterInit) async throws -> T) async throws -> T {
        guard let clusterInit else {
            throw Refused("Node", "this node never joined with an enrollment token, so it has no secret to fetch its projects with")
        }
        do {
            return try await work(clusterInit)
        } catch let refused as Refused {
            throw refused
        } catch {
            throw Refused("ClusterInit", "\(error)")
        }
    }

    /// Runs a route, answering ``Refused`` with 400.
    static func answer(_ route: () async throws -> Response) async throws -> Response {
        do {
            return try await route()
        } catch let refused as Refused {
            return error(.badRequest, refused.field)
        }
    }

    /// The request's JSON body. - Throws: ``Refused`` naming what does not decode.
    static func decode<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        let body = try await request.body.collect(upTo: 8 << 20)
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer: body))
        } catch let error as DecodingError {
            throw Refused(FieldError(error, root: ""))
        }
    }

    static func json(_ value: some Encodable) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(value)) ?? Data("null".utf8)
        return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    struct LogRequest: Decodable {
        var message: String
        var level: NodeLogMessage.Level?
        var priority: NodeLogMessage.Priority?
        enum CodingKeys: String, CodingKey {
            case message = "Message"
            case level = "Level"
            case priority = "Priority"
        }
    }

    /// A 4xx answer shaped as the gateway's: `{"Error", "Fields": [{"Field", "Reason"}]}`.
    static func error(_ status: HTTPResponse.Status, _ field: FieldError) -> Response {
        var response = json(APIError(error: field.description, fields: [field]))
        response.status = status
        return response
    }
}
