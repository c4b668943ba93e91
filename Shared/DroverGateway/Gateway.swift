import DroverControlPlane
public import DroverMessaging
import DroverModel
public import DroverScheduling
public import DroverStorage
import Foundation
public import Hummingbird
public import Logging
import NIOCore

/// Nomad's HTTP API (`/v1/...`): paths, field names and blocking queries as Nomad has them, so
/// that Nomad clients work. Routes are grouped by resource, a file each; handlers are thin: they
/// check the request, call a use case of the application layer (or read through a repository),
/// and shape the answer.
public struct Gateway: Sendable {
    let database: Database
    let jobs: JobService
    let evaluations: EvaluationService
    let nodes: NodeLifecycle
    let users: UserService
    let nodeArrays: NodeArrayService
    let namespaces: NamespaceService
    /// Time-based jobs: the Chronos-shaped routes and Nomad's `periodic/force`.
    let schedules: ScheduleService
    /// Registrations that arrive together are written in one transaction.
    let registrations: GroupCommit<Job, JobRegistration>
    let watcher: IndexWatcher
    /// The address this gateway answers on, for `/v1/status/leader` and `/v1/agent/self`.
    let address: String
    let logger: Logger
    /// Node users on the broker, for enrolment and removal.
    let brokerUsers: BrokerUsers
    /// Where the broker is, for the credentials enrolment hands out.
    let brokerEndpoint: AMQPEndpoint
    /// The longest a blocking query waits, whatever its `?wait=` asks.
    let maximumWait: Duration
    /// What `/v1/system/gc` runs.
    let collector: GarbageCollector
    /// Whether routes check tokens, and how long a token's lookup is reused.
    let access: AccessConfiguration
    let resolver: TokenResolver
    let acl: ACLService
    let enrollment: EnrollmentService

    /// - Parameters:
    ///   - watcher: follows the cluster's index for blocking queries; run it beside the gateway.
    ///   - scheduling: how `job plan` places, as the scheduler does.
    ///   - maximumWait: the longest a blocking query waits (and its default).
    ///   - access: tokens are checked on every route unless this says otherwise.
    public init(
        database: Database, watcher: IndexWatcher, scheduling: SchedulerConfiguration, address: String, brokerUsers: BrokerUsers,
        brokerEndpoint: AMQPEndpoint, maximumWait: Duration = .seconds(300), access: AccessConfiguration = .init(), logger: Logger
    ) {
        self.maximumWait = maximumWait
        self.access = access
        let resolver = TokenResolver(database: database, lifetime: access.tokenLifetime)
        self.resolver = resolver
        self.acl = ACLService(database: database, resolver: resolver)
        self.enrollment = EnrollmentService(database: database)
        let jobs = JobService(database: database)
        self.database = database
        self.jobs = jobs
        self.evaluations = EvaluationService(database: database, configuration: scheduling)
        self.nodes = NodeLifecycle(database: database)
        self.users = UserService(database: database)
        self.nodeArrays = NodeArrayService(database: database)
        self.namespaces = NamespaceService(database: database)
        self.schedules = ScheduleService(database: database, replica: address, logger: logger)
        self.collector = GarbageCollector(database: database)
        self.registrations = GroupCommit(limit: 200) { batch in try await jobs.register(batch).map { $0.mapError { $0 } } }
        self.watcher = watcher
        self.address = address
        self.brokerUsers = brokerUsers
        self.brokerEndpoint = brokerEndpoint
        self.logger = logger
    }

    /// Adds every route of the API to `router`, each behind its ACL rule (``GuardedRouter``).
    public func addRoutes(to router: Router<BasicRequestContext>) {
        let routes = GuardedRouter(router: router, gateway: self)
        addJobRoutes(to: routes)
        addNodeRoutes(to: routes)
        addAllocationRoutes(to: routes)
        addEvaluationRoutes(to: routes)
        addLogRoutes(to: routes)
        addEventRoutes(to: routes)
        addUserRoutes(to: routes)
        addACLRoutes(to: routes)
        addNodeArrayRoutes(to: routes)
        addProjectRoutes(to: routes)
        addScheduleRoutes(to: routes)
        addPluginRoutes(to: routes)
        addNamespaceRoutes(to: routes)
        addOpsRoutes(to: routes)
    }

    // MARK: What every handler shares

    /// Decodes a JSON body, refusing one that does not decode with the field named.
    static func decodeBody<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        try decodeBody(type, try await body(of: request, upTo: 1 << 20))
    }

    /// The whole body of `request`. - Throws: ``BodyTooLarge`` past `limit` bytes.
    static func body(of request: Request, upTo limit: Int) async throws -> ByteBuffer {
        do {
            return try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw BodyTooLarge(limit: limit)
        }
    }

    /// Decodes a JSON body already read, refusing one that does not decode with the field named.
    static func decodeBody<T: Decodable>(_ type: T.Type, _ body: ByteBuffer) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer: body))
        } catch let error as DecodingError {
            var field = FieldError(error, root: "")
            if field.field.isEmpty { field.field = "body" }
            throw ControlPlaneError.invalid([field])
        }
    }

    /// Refuses a body with a field outside `shape` that is not empty: every such field named,
    /// with `not supported yet` (``FieldShape``). A body that is not JSON is left to its decoder.
    static func refuseUnsupported(_ body: ByteBuffer, shape: FieldShape, root: String) throws {
        try refuseUnsupported(body) { shape.unsupported(in: $0, root: root) }
    }

    /// Refuses a body for what `unsupported` finds in it, read once.
    static func refuseUnsupported(_ body: ByteBuffer, _ unsupported: (Any) -> [FieldError]) throws {
        guard let json = try? JSONSerialization.jsonObject(with: Data(buffer: body), options: [.fragmentsAllowed]) else { return }
        let errors = unsupported(json)
        guard errors.isEmpty else { throw ControlPlaneError.invalid(errors) }
    }

    /// Runs a read, as a blocking query when `?index=` is more than 0 (as Nomad's): waits (up to
    /// `?wait=`, at most and by default ``maximumWait``) until the cluster's index passes it. The
    /// answer carries `X-Nomad-Index`.
    func read(_ request: Request, _ body: @Sendable () async throws -> some Encodable) async throws -> Response {
        try await handle {
            if let text = request.uri.queryParameters.get("index") {
                guard let index = Int64(text), index >= 0 else {
                    throw ControlPlaneError.invalid([FieldError("index", "'\(text)' is not a whole number")])
                }
                var wait = maximumWait
                if let waitText = request.uri.queryParameters.get("wait") {
                    guard let parsed = GoDuration.parse(waitText) else {
                        throw ControlPlaneError.invalid([FieldError("wait", "'\(waitText)' is not a duration such as 10s, 500ms or 1m")])
                    }
                    wait = min(parsed, maximumWait)
                }
                if index > 0, watcher.latest <= index { await watcher.wait(after: index, timeout: wait) }
            }
            // The index before the read: a change committed meanwhile shows in the body and
            // wakes the next blocking query at once.
            let index = watcher.latest
            return Self.json(try await body(), index: index)
        }
    }

    /// The boolean query parameter `name` of `request` (`false` when it is not given), read as
    /// Nomad reads it (``GoBool``). - Throws: ``ControlPlaneError/invalid(_:)`` naming it.
    static func flag(_ name: String, of request: Request) throws -> Bool {
        guard let text = request.uri.queryParameters.get(name) else { return false }
        guard let value = GoBool.parse(text) else { throw ControlPlaneError.invalid([flagError(name, text)]) }
        return value
    }

    static func flagError(_ name: String, _ text: String) -> FieldError {
        FieldError(name, "must be true or false (1, t, TRUE, 0, f, FALSE, …), got '\(text)'")
    }

    /// Turns the application layer's errors into Nomad-style answers: 400 with the fields, 404.
    func handle(_ body: () async throws -> Response) async throws -> Response {
        do {
            return try await body()
        } catch ControlPlaneError.notFound(let kind, let id) {
            return Self.error(.notFound, "\(kind) '\(id)' not found")
        } catch ControlPlaneError.invalid(let fields) {
            return Self.error(.badRequest, fields.count == 1 ? fields[0].description : "\(fields.count) fields are invalid", fields: fields)
        } catch ControlPlaneError.overloaded(let what) {
            return Self.unavailable("\(what); try again later")
        } catch let error as BodyTooLarge {
            return Self.error(
                .contentTooLarge, "the body is larger than this route's limit of \(error.limit) bytes; send a smaller one",
                fields: [FieldError("body", "is larger than the limit of \(error.limit) bytes")])
        } catch is NIOTooManyBytesError {
            return Self.error(.contentTooLarge, "the body is larger than this route takes; send a smaller one")
        } catch is AccessDenied {
            return Self.error(.forbidden, "Permission denied")
        } catch ControlPlaneError.unauthorized(let why) {
            return Self.error(.unauthorized, why)
        } catch let error as HTTPError {
            return Self.error(error.status, error.body ?? "\(error.status.reasonPhrase)")
        } catch  where Database.isOutage(error) {
            return Self.unavailable("the database cannot be reached; try again later")
        } catch  where RetryPolicy.isBusOutage(error) || error is MessagingError {
            return Self.unavailable("the message broker cannot be reached; try again later")
        } catch {
            // A fault of the gateway's, not the request's: logged in full, answered in JSON.
            logger.error("Request failed", metadata: ["error": "\(String(reflecting: error))"])
            return Self.error(.internalServerError, "internal error; the gateway's log has the details")
        }
    }

    /// 503 with `Retry-After`: a dependency is away or the gateway is overloaded, not the request at fault.
    static func unavailable(_ message: String) -> Response {
        var response = error(.serviceUnavailable, message)
        response.headers[.retryAfter] = "1"
        return response
    }

    static func json(_ value: some Encodable, index: Int64?) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data("null".utf8)
        var headers: HTTPFields = [.contentType: "application/json"]
        if let index { headers[.init("X-Nomad-Index")!] = String(index) }
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func error(_ status: HTTPResponse.Status, _ message: String, fields: [FieldError] = []) -> Response {
        let body = APIError(error: message, fields: fields.isEmpty ? nil : fields)
        var response = json(body, index: nil)
        response.status = status
        return response
    }
}

/// A request body past what its route takes: 413, naming the limit.
struct BodyTooLarge: Error {
    var limit: Int
}

/// The gateway's routes as an application of their own, on `host:port`: what the tests drive in
/// process. The `api-gateway` executable serves the same routes beside its ops routes.
public func buildApplication(
    gateway: Gateway, host: String = "127.0.0.1", port: Int = 0, logger: Logger
) -> some ApplicationProtocol {
    let router = Router()
    gateway.addRoutes(to: router)
    return Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "api-gateway"), logger: logger)
}
