import DroverMessaging
import DroverModel
import DroverScheduling
import DroverStorage
import Foundation
import Hummingbird
import Logging

/// Nomad's HTTP API (`/v1/...`): paths, field names and blocking queries as Nomad has them, so
/// that Nomad clients work. Handlers are thin: the cluster store does the work.
struct NomadAPI: Sendable {
    let store: ClusterStore
    /// Registrations that arrive together are written in one transaction.
    let registrations: GroupCommit<Job, JobRegistration>
    let processor: EvaluationProcessor
    let watcher: IndexWatcher
    let address: String
    let logger: Logger
    /// Node users on the broker, for enrolment and removal.
    let brokerUsers: BrokerUsers
    /// Where the broker is, for the credentials enrolment hands out.
    let brokerEndpoint: AMQPEndpoint

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.get("/v1/openapi.yaml") { _, _ in
            guard let url = Bundle.module.url(forResource: "openapi", withExtension: "yaml"), let data = try? Data(contentsOf: url) else {
                return Self.error(.internalServerError, "the OpenAPI document is missing from this build")
            }
            return Response(
                status: .ok, headers: [.contentType: "application/yaml"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
        }

        // Jobs
        router.get("/v1/jobs") { request, _ in
            try await read(request) { try await store.jobs(prefix: request.uri.queryParameters.get("prefix") ?? "").map(JobListStub.init) }
        }
        router.post("/v1/jobs") { request, context in try await register(request, context, pathID: nil) }
        router.put("/v1/jobs") { request, context in try await register(request, context, pathID: nil) }
        router.post("/v1/job/:id") { request, context in try await register(request, context, pathID: context.parameters.get("id")) }
        router.put("/v1/job/:id") { request, context in try await register(request, context, pathID: context.parameters.get("id")) }
        router.get("/v1/job/:id") { request, context in
            let id = context.parameters.get("id") ?? ""
            return try await read(request) { try await store.job(id: id) ?? { throw ClusterStoreError.notFound(kind: "job", id: id) }() }
        }
        router.get("/v1/job/:id/allocations") { request, context in
            let id = context.parameters.get("id") ?? ""
            return try await read(request) {
                guard try await store.job(id: id) != nil else { throw ClusterStoreError.notFound(kind: "job", id: id) }
                return try await store.allocations(jobID: id)
            }
        }
        router.get("/v1/job/:id/evaluations") { request, context in
            let id = context.parameters.get("id") ?? ""
            return try await read(request) {
                guard try await store.job(id: id) != nil else { throw ClusterStoreError.notFound(kind: "job", id: id) }
                return try await store.evaluations(jobID: id)
            }
        }
        router.get("/v1/job/:id/summary") { request, context in
            let id = context.parameters.get("id") ?? ""
            return try await read(request) {
                guard let summary = try await store.summary(jobID: id) else { throw ClusterStoreError.notFound(kind: "job", id: id) }
                return JobSummary(jobID: id, summary: summary)
            }
        }
        router.post("/v1/job/:id/plan") { request, context in
            try await handle {
                let job = try await decodeJob(request, context, pathID: context.parameters.get("id"))
                let plan = try await processor.dryRun(job)
                return Self.json(PlanResponse(plan), index: watcher.latest)
            }
        }
        router.delete("/v1/job/:id") { request, context in
            try await handle {
                let purge = ["true", "1"].contains(request.uri.queryParameters.get("purge") ?? "false")
                let result = try await store.deregister(jobID: context.parameters.get("id") ?? "", purge: purge)
                return Self.json(result, index: result.index)
            }
        }

        // Nodes
        router.get("/v1/nodes") { request, _ in
            try await read(request) { try await store.nodes(prefix: request.uri.queryParameters.get("prefix") ?? "") }
        }
        router.get("/v1/node/:id") { request, context in
            let id = context.parameters.get("id") ?? ""
            return try await read(request) { try await store.node(id: id) ?? { throw ClusterStoreError.notFound(kind: "node", id: id) }() }
        }
        router.get("/v1/node/:id/allocations") { request, context in
            let id = context.parameters.get("id") ?? ""
            return try await read(request) {
                guard try await store.node(id: id) != nil else { throw ClusterStoreError.notFound(kind: "node", id: id) }
                return try await store.allocations(nodeID: id)
            }
        }

        router.post("/v1/node/:id/drain") { request, context in
            try await handle {
                let body = try await Self.decodeBody(NodeDrainRequest.self, request)
                let result = try await store.drain(nodeID: context.parameters.get("id") ?? "", spec: body.drainSpec, markEligible: body.markEligible)
                return Self.json(result, index: result.index)
            }
        }
        // Enrolment: the node's own broker user, whose credentials the agent runs with.
        router.post("/v1/node/:id/enroll") { _, context in
            try await handle {
                let id = context.parameters.get("id") ?? ""
                guard RoutingKey.isValidWord(id) else {
                    throw ClusterStoreError.invalid([FieldError("id", "'\(id)' must be one routing-key word: no dots, '*', '#' or spaces")])
                }
                let (user, password) = try await broker { try await brokerUsers.enroll(nodeID: id) }
                var endpoint = brokerEndpoint
                endpoint.user = user
                endpoint.password = password
                return Self.json(NodeCredentials(nodeID: id, user: user, password: password, amqpURL: endpoint.url), index: nil)
            }
        }
        // Removal: the node's broker user goes (its connections are closed) and the cluster forgets it.
        router.post("/v1/node/:id/purge") { _, context in
            try await handle {
                let id = context.parameters.get("id") ?? ""
                let hadUser = try await broker { try await brokerUsers.remove(nodeID: id) }
                let known = try await store.purge(nodeID: id)
                guard hadUser || known else { throw ClusterStoreError.notFound(kind: "node", id: id) }
                return Self.json(["NodeID": id], index: try await store.currentIndex())
            }
        }
        router.post("/v1/node/:id/eligibility") { request, context in
            try await handle {
                let body = try await Self.decodeBody(NodeEligibilityRequest.self, request)
                let result = try await store.setEligibility(nodeID: context.parameters.get("id") ?? "", eligible: body.eligibility == .eligible)
                return Self.json(result, index: result.index)
            }
        }

        // Allocations
        router.get("/v1/allocations") { request, _ in
            try await read(request) { try await store.allocations(prefix: request.uri.queryParameters.get("prefix") ?? "") }
        }
        router.get("/v1/allocation/:id") { request, context in
            let id = context.parameters.get("id") ?? ""
            return try await read(request) {
                try await store.allocation(id: id) ?? { throw ClusterStoreError.notFound(kind: "allocation", id: id) }()
            }
        }
        router.post("/v1/allocation/:id/stop") { _, context in
            try await handle {
                let result = try await store.stopAllocation(id: context.parameters.get("id") ?? "")
                return Self.json(AllocStopResponse(evalID: result.evalID, index: result.index), index: result.index)
            }
        }

        // Evaluations
        router.get("/v1/evaluations") { request, _ in
            try await read(request) { try await store.evaluations(prefix: request.uri.queryParameters.get("prefix") ?? "") }
        }
        router.get("/v1/evaluation/:id") { request, context in
            let id = context.parameters.get("id") ?? ""
            return try await read(request) {
                try await store.evaluation(id: id) ?? { throw ClusterStoreError.notFound(kind: "evaluation", id: id) }()
            }
        }
        router.get("/v1/evaluation/:id/allocations") { request, context in
            let id = context.parameters.get("id") ?? ""
            return try await read(request) {
                guard let eval = try await store.evaluation(id: id) else { throw ClusterStoreError.notFound(kind: "evaluation", id: id) }
                return try await store.allocations(jobID: eval.jobID).filter { $0.evalID == id }
            }
        }

        addLogRoutes(to: router)

        // Users the cluster manages on its nodes
        router.get("/v1/users") { request, _ in try await read(request) { try await store.users() } }
        router.get("/v1/user/:name") { request, context in
            let name = context.parameters.get("name") ?? ""
            return try await read(request) {
                try await store.users().first { $0.name == name } ?? { throw ClusterStoreError.notFound(kind: "user", id: name) }()
            }
        }
        for method in [HTTPRequest.Method.put, .post] {
            router.on("/v1/user/:name", method: method) { request, context in
                try await handle {
                    let name = context.parameters.get("name") ?? ""
                    var user = try await Self.decodeBody(ClusterUser.self, request)
                    if user.name.isEmpty { user.name = name }
                    guard user.name == name else {
                        throw ClusterStoreError.invalid([FieldError("Name", "'\(user.name)' does not match the name '\(name)' in the path")])
                    }
                    let index = try await store.put(user: user)
                    return Self.json(["Index": index], index: index)
                }
            }
        }
        router.delete("/v1/user/:name") { _, context in
            try await handle {
                let index = try await store.deleteUser(name: context.parameters.get("name") ?? "")
                return Self.json(["Index": index], index: index)
            }
        }

        // Agent and status
        router.get("/v1/status/leader") { _, _ in Self.json(address, index: nil) }
        router.get("/v1/status/peers") { _, _ in Self.json([address], index: nil) }
        router.get("/v1/agent/self") { _, _ in
            Self.json(AgentSelf(address: address), index: nil)
        }
    }

    // MARK: Handlers

    private func register(_ request: Request, _ context: BasicRequestContext, pathID: String?) async throws -> Response {
        try await handle {
            let job = try await decodeJob(request, context, pathID: pathID)
            let result = try await registrations.call(job)
            logger.info("Job registered", metadata: ["job_id": "\(job.id)", "eval_id": "\(result.evalID)"])
            return Self.json(result, index: result.index)
        }
    }

    /// Runs a call to the broker's management API; its failure is a 503 that says so.
    private func broker<T>(_ call: () async throws -> T) async throws -> T {
        do {
            return try await call()
        } catch let error as BrokerUsers.Failure {
            throw HTTPError(.serviceUnavailable, message: "the broker's users cannot be managed: \(error.description)")
        }
    }

    /// Decodes a JSON body, refusing one that does not decode with the field named.
    static func decodeBody<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        let body = try await request.body.collect(upTo: 1 << 20)
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer: body))
        } catch let error as DecodingError {
            var field = FieldError(error, root: "")
            if field.field.isEmpty { field.field = "body" }
            throw ClusterStoreError.invalid([field])
        }
    }

    /// Reads `{"Job": …}` (or a bare job, as some clients send), refusing a body that is not a
    /// job with every bad field named.
    private func decodeJob(_ request: Request, _ context: BasicRequestContext, pathID: String?) async throws -> Job {
        let body = try await request.body.collect(upTo: 8 << 20)
        let job: Job
        do {
            job = try JSONDecoder().decode(JobRequest.self, from: Data(buffer: body)).job
        } catch let error as DecodingError {
            // A wrapped job's paths start at its "Job" key; a bare job's are rooted there too.
            var field = FieldError(error, root: "")
            if field.field.isEmpty {
                field.field = "body"
            } else if !field.field.hasPrefix("Job") {
                field.field = "Job." + field.field
            }
            throw ClusterStoreError.invalid([field])
        }
        if let pathID, pathID != job.id {
            throw ClusterStoreError.invalid([FieldError("Job.ID", "'\(job.id)' does not match the job id '\(pathID)' in the path")])
        }
        return job
    }

    /// Runs a read, as a blocking query when `?index=` is given: waits (up to `?wait=`, default
    /// 5 minutes, at most 10) until the cluster's index passes it. The answer carries
    /// `X-Nomad-Index`.
    private func read(_ request: Request, _ body: @Sendable () async throws -> some Encodable) async throws -> Response {
        try await handle {
            if let text = request.uri.queryParameters.get("index") {
                guard let index = Int64(text), index >= 0 else {
                    throw ClusterStoreError.invalid([FieldError("index", "'\(text)' is not a whole number")])
                }
                var wait = Duration.seconds(300)
                if let waitText = request.uri.queryParameters.get("wait") {
                    guard let parsed = GoDuration.parse(waitText) else {
                        throw ClusterStoreError.invalid([FieldError("wait", "'\(waitText)' is not a duration such as 10s, 500ms or 1m")])
                    }
                    wait = min(parsed, .seconds(600))
                }
                if watcher.latest <= index { await watcher.wait(after: index, timeout: wait) }
            }
            // The index before the read: a change committed meanwhile shows in the body and
            // wakes the next blocking query at once.
            let index = watcher.latest
            return Self.json(try await body(), index: index)
        }
    }

    /// Turns the store's errors into Nomad-style answers: 400 with the fields, 404.
    func handle(_ body: () async throws -> Response) async throws -> Response {
        do {
            return try await body()
        } catch ClusterStoreError.notFound(let kind, let id) {
            return Self.error(.notFound, "\(kind) '\(id)' not found")
        } catch ClusterStoreError.invalid(let fields) {
            return Self.error(.badRequest, fields.count == 1 ? fields[0].description : "\(fields.count) fields are invalid", fields: fields)
        } catch let error as HTTPError {
            return Self.error(error.status, error.body ?? "\(error.status.reasonPhrase)")
        }
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

// MARK: Shapes of Nomad's API

/// `{"Job": {...}}`, as Nomad's clients send it, or the job object itself.
struct JobRequest: Decodable {
    var job: Job
    enum CodingKeys: String, CodingKey { case job = "Job" }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        job = container.contains(.job) ? try container.decode(Job.self, forKey: .job) : try Job(from: decoder)
    }
}

struct JobListStub: Encodable {
    var job: Job
    init(_ job: Job) { self.job = job }

    enum CodingKeys: String, CodingKey {
        case id = "ID", name = "Name", type = "Type", priority = "Priority", status = "Status", stop = "Stop"
        case datacenters = "Datacenters", version = "Version", submitTime = "SubmitTime"
        case createIndex = "CreateIndex", modifyIndex = "ModifyIndex", jobModifyIndex = "JobModifyIndex"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(job.id, forKey: .id)
        try container.encode(job.jobName, forKey: .name)
        try container.encode(job.jobType, forKey: .type)
        try container.encode(job.jobPriority, forKey: .priority)
        try container.encode(job.status ?? "pending", forKey: .status)
        try container.encode(job.isStopped, forKey: .stop)
        try container.encode(job.jobDatacenters, forKey: .datacenters)
        try container.encode(job.version ?? 0, forKey: .version)
        try container.encode(job.submitTime ?? 0, forKey: .submitTime)
        try container.encode(job.createIndex ?? 0, forKey: .createIndex)
        try container.encode(job.modifyIndex ?? 0, forKey: .modifyIndex)
        try container.encode(job.jobModifyIndex ?? 0, forKey: .jobModifyIndex)
    }
}

struct JobSummary: Encodable {
    var jobID: String
    var summary: [String: GroupSummary]
    enum CodingKeys: String, CodingKey {
        case jobID = "JobID"
        case summary = "Summary"
    }
}

/// What enrolment answers: the credentials the node's agent connects with.
struct NodeCredentials: Encodable {
    var nodeID: String
    var user: String
    var password: String
    var amqpURL: String
    enum CodingKeys: String, CodingKey {
        case nodeID = "NodeID"
        case user = "User"
        case password = "Password"
        case amqpURL = "AMQPURL"
    }
}

/// `{"DrainSpec": {"Deadline", "IgnoreSystemJobs"} | null, "MarkEligible"}`, as Nomad's clients send it.
struct NodeDrainRequest: Decodable {
    var drainSpec: DrainSpec?
    var markEligible: Bool
    enum CodingKeys: String, CodingKey {
        case drainSpec = "DrainSpec"
        case markEligible = "MarkEligible"
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        drainSpec = try container.decodeIfPresent(DrainSpec.self, forKey: .drainSpec)
        markEligible = try container.decodeIfPresent(Bool.self, forKey: .markEligible) ?? false
    }
}

/// `{"Eligibility": "eligible" | "ineligible"}`.
struct NodeEligibilityRequest: Decodable {
    var eligibility: Node.Eligibility
    enum CodingKeys: String, CodingKey { case eligibility = "Eligibility" }
}

struct AllocStopResponse: Encodable {
    var evalID: String
    var index: Int64
    enum CodingKeys: String, CodingKey {
        case evalID = "EvalID"
        case index = "Index"
    }
}

/// Nomad's `JobPlanResponse`, plus the placements the plan would make.
struct PlanResponse: Encodable {
    struct Annotations: Encodable {
        var desiredTGUpdates: [String: DesiredUpdates]
        enum CodingKeys: String, CodingKey { case desiredTGUpdates = "DesiredTGUpdates" }
    }

    struct Placement: Encodable {
        var taskGroup: String
        var name: String
        var nodeID: String
        var nodeName: String
        enum CodingKeys: String, CodingKey {
            case taskGroup = "TaskGroup", name = "Name", nodeID = "NodeID", nodeName = "NodeName"
        }
    }

    var annotations: Annotations
    var failedTGAllocs: [String: AllocMetric]?
    var placements: [Placement]
    var warnings = ""

    init(_ plan: Plan) {
        annotations = Annotations(desiredTGUpdates: plan.desiredUpdates)
        failedTGAllocs = plan.failedGroups.isEmpty ? nil : plan.failedGroups
        placements = plan.placements.map { Placement(taskGroup: $0.taskGroup, name: $0.name, nodeID: $0.nodeID, nodeName: $0.nodeName) }
    }

    enum CodingKeys: String, CodingKey {
        case annotations = "Annotations", failedTGAllocs = "FailedTGAllocs", placements = "Placements", warnings = "Warnings"
    }
}

/// Enough of Nomad's `/v1/agent/self` for clients that read the agent's name and region.
struct AgentSelf: Encodable {
    var address: String
    enum CodingKeys: String, CodingKey { case config, member, stats }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(["Region": "global", "Datacenter": "dc1", "Version": "drover 0.1.0"], forKey: .config)
        try container.encode(["Name": "api-gateway", "Addr": address, "Status": "alive"], forKey: .member)
        try container.encode([String: String](), forKey: .stats)
    }
}
