import DroverAccess
import DroverControlPlane
import DroverModel
import DroverScheduling
import Foundation
import Hummingbird

/// `/v1/jobs`, `/v1/job/:id` and what hangs off a job.
extension Gateway {
    func addJobRoutes(to routes: GuardedRouter) {
        routes.get("/v1/jobs", .namespace(.listJobs)) { request, context in
            try await read(request) {
                let namespaces = try await listedNamespaces(request, caller: context.caller, .listJobs)
                return try await database.jobs.list(prefix: request.uri.queryParameters.get("prefix") ?? "", namespaces: namespaces).map(
                    JobListStub.init)
            }
        }
        routes.post("/v1/jobs", .namespace(.submitJob)) { request, context in try await register(request, context, pathID: nil) }
        routes.put("/v1/jobs", .namespace(.submitJob)) { request, context in try await register(request, context, pathID: nil) }
        routes.post("/v1/job/:id", .namespace(.submitJob)) { request, context in
            try await register(request, context, pathID: context.parameters.get("id"))
        }
        routes.put("/v1/job/:id", .namespace(.submitJob)) { request, context in
            try await register(request, context, pathID: context.parameters.get("id"))
        }
        routes.get("/v1/job/:id", .namespace(.readJob)) { request, context in
            try await read(request) { try await job(request, context, .readJob) }
        }
        routes.get("/v1/job/:id/allocations", .namespace(.readJob)) { request, context in
            try await read(request) { try await database.allocations.list(job: try await job(request, context, .readJob).key) }
        }
        routes.get("/v1/job/:id/evaluations", .namespace(.readJob)) { request, context in
            try await read(request) { try await database.evaluations.list(job: try await job(request, context, .readJob).key) }
        }
        routes.get("/v1/job/:id/summary", .namespace(.readJob)) { request, context in
            try await read(request) {
                let key = try await job(request, context, .readJob).key
                guard let summary = try await jobs.summary(key) else { throw ControlPlaneError.notFound(kind: "job", id: key.id) }
                return JobSummary(jobID: key.id, namespace: key.namespace, summary: summary)
            }
        }
        // Nomad's `periodic/force`: a child of a periodic job now.
        routes.post("/v1/job/:id/periodic/force", .namespace(.submitJob)) { request, context in
            try await handle {
                let job = try await job(request, context, .submitJob)
                guard job.isPeriodicParent else { throw ControlPlaneError.invalid([FieldError("id", "job '\(job.id)' is not periodic")]) }
                let registration = try await schedules.runNow(name: job.id)
                return Self.json(PeriodicForceResponse(evalID: registration.evalID, index: registration.index), index: registration.index)
            }
        }
        routes.post("/v1/job/:id/plan", .namespace(.submitJob)) { request, context in
            try await handle {
                let job = try await decodeJob(request, context, pathID: context.parameters.get("id"))
                let plan = try await evaluations.dryRun(job)
                return Self.json(PlanResponse(plan), index: watcher.latest)
            }
        }
        routes.delete("/v1/job/:id", .namespace(.submitJob)) { request, context in
            try await handle {
                let purge = try Self.flag("purge", of: request)
                let namespace = try Self.requestNamespace(request)
                try context.caller.authorize(.submitJob, in: namespace)
                let result = try await jobs.deregister(JobKey(namespace: namespace, id: context.parameters.get("id") ?? ""), purge: purge)
                return Self.json(result, index: result.index)
            }
        }
    }

    /// The job the path names, in the namespace the request names, once the caller is known to
    /// have `capability` there. A job of another namespace is another job.
    private func job(_ request: Request, _ context: GatewayRequestContext, _ capability: Capability) async throws -> Job {
        let id = context.parameters.get("id") ?? ""
        let namespace = try Self.requestNamespace(request)
        try context.caller.authorize(capability, in: namespace)
        guard let job = try await database.jobs.read(JobKey(namespace: namespace, id: id)) else {
            throw ControlPlaneError.notFound(kind: "job", id: id)
        }
        return job
    }

    private func register(_ request: Request, _ context: GatewayRequestContext, pathID: String?) async throws -> Response {
        try await handle {
            let job = try await decodeJob(request, context, pathID: pathID)
            let result = try await registrations.call(job)
            logger.info("Job registered", metadata: ["job_id": "\(job.id)", "namespace": "\(job.namespace ?? "")", "eval_id": "\(result.evalID)"])
            return Self.json(result, index: result.index)
        }
    }

    /// Reads `{"Job": …}` (or a bare job, as some clients send), refusing a body that is not a
    /// job with every bad field named.
    ///
    /// The job is written to the request's namespace (Nomad's precedence: `?namespace=`, then the
    /// job's own `Namespace`, then `default`), once the caller is known to have `submit-job` there.
    private func decodeJob(_ request: Request, _ context: GatewayRequestContext, pathID: String?) async throws -> Job {
        let body = try await Self.body(of: request, upTo: Self.jobBodyLimit)
        try Self.refuseUnsupported(body, FieldShape.unsupportedInJobRequest)
        var job: Job
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
            throw ControlPlaneError.invalid([field])
        }
        let namespace = try Self.requestNamespace(request, body: job.namespace)
        try context.caller.authorize(.submitJob, in: namespace)
        job.namespace = namespace
        if let pathID, pathID != job.id {
            throw ControlPlaneError.invalid([FieldError("Job.ID", "'\(job.id)' does not match the job id '\(pathID)' in the path")])
        }
        return job
    }

    /// The largest job body read: 8 MiB.
    static let jobBodyLimit = 8 << 20
}

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
        case parentID = "ParentID", periodic = "Periodic", namespace = "Namespace"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(job.id, forKey: .id)
        try container.encode(job.namespace ?? Namespace.defaultName, forKey: .namespace)
        try container.encode(job.parentID ?? "", forKey: .parentID)
        try container.encode(job.isPeriodicParent, forKey: .periodic)
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
    var namespace: String
    var summary: [String: GroupSummary]
    enum CodingKeys: String, CodingKey {
        case jobID = "JobID"
        case namespace = "Namespace"
        case summary = "Summary"
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

/// Nomad's `PeriodicForceResponse`.
struct PeriodicForceResponse: Encodable {
    var evalID: String
    var index: Int64

    enum CodingKeys: String, CodingKey {
        case evalID = "EvalID"
        case evalCreateIndex = "EvalCreateIndex"
        case index = "Index"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(evalID, forKey: .evalID)
        try container.encode(index, forKey: .evalCreateIndex)
        try container.encode(index, forKey: .index)
    }
}
