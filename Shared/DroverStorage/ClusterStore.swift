public import DroverHealth
public import DroverMessaging
public import DroverModel
import Foundation
public import Logging
public import PostgresNIO

/// Errors a caller of the cluster store can act on.
public enum ClusterStoreError: Error, Equatable, CustomStringConvertible {
    case notFound(kind: String, id: String)
    case invalid([FieldError])

    public var description: String {
        switch self {
        case .notFound(let kind, let id): "\(kind) '\(id)' not found"
        case .invalid(let errors): errors.map(\.description).joined(separator: "; ")
        }
    }
}

/// What registering a job answered: Nomad's `JobRegisterResponse`.
public struct JobRegistration: Codable, Sendable, Equatable {
    public var evalID: String
    public var jobModifyIndex: Int64
    public var warnings: String
    public var index: Int64

    enum CodingKeys: String, CodingKey {
        case evalID = "EvalID"
        case jobModifyIndex = "JobModifyIndex"
        case warnings = "Warnings"
        case index = "Index"
    }
}

/// Per group, allocations by client status: Nomad's job summary.
public struct GroupSummary: Codable, Sendable, Equatable {
    public var queued = 0
    public var complete = 0
    public var failed = 0
    public var running = 0
    public var starting = 0
    public var lost = 0

    public init() {}

    enum CodingKeys: String, CodingKey {
        case queued = "Queued"
        case complete = "Complete"
        case failed = "Failed"
        case running = "Running"
        case starting = "Starting"
        case lost = "Lost"
    }
}

/// Drover's cluster state in PostgreSQL: jobs and their versions, nodes, evaluations and
/// allocations. Every write takes a new index from `drover_index` (Nomad's Raft index) and
/// announces it on `NOTIFY drover_state`, which blocking queries wait on.
public struct ClusterStore: Sendable {
    public let database: Database
    /// How long nodes may stay silent before they are down.
    public let heartbeatPolicy: HeartbeatPolicy
    var logger: Logger { database.logger }

    public init(database: Database, heartbeatPolicy: HeartbeatPolicy = HeartbeatPolicy()) {
        self.database = database
        self.heartbeatPolicy = heartbeatPolicy
    }

    // MARK: Index

    /// The next index, announced to blocking queries when the transaction commits.
    static func nextIndex(_ connection: PostgresConnection, logger: Logger) async throws -> Int64 {
        let rows = try await connection.query(
            "SELECT index, pg_notify('drover_state', index::text) IS NULL FROM (SELECT nextval('drover_index') AS index) AS next", logger: logger)
        var index: Int64 = 0
        for try await (value, _) in rows.decode((Int64, Bool).self) { index = value }
        return index
    }

    /// A new index that no change uses: past every index handed out so far.
    public func reserveIndex() async throws -> Int64 {
        let rows = try await database.client.query("SELECT nextval('drover_index')", logger: logger)
        var index: Int64 = 0
        for try await value in rows.decode(Int64.self) { index = value }
        return index
    }

    /// The newest index handed out: what `X-Nomad-Index` says.
    public func currentIndex() async throws -> Int64 {
        let rows = try await database.client.query("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM drover_index", logger: logger)
        for try await value in rows.decode(Int64.self) { return value }
        return 0
    }

    static func nanoseconds(_ date: Date = Date()) -> Int64 { Int64(date.timeIntervalSince1970 * 1e9) }

    // MARK: Jobs

    /// Registers a new job or a new version of one, with an evaluation and its outbox message, in
    /// one transaction. An unchanged job keeps its version but is evaluated again (as in Nomad).
    /// - Throws: ``ClusterStoreError/invalid(_:)`` when the job does not validate.
    public func register(_ submitted: Job) async throws -> JobRegistration {
        try await register([submitted])[0].get()
    }

    /// Registers jobs as ``register(_:)-(Job)`` does, in one transaction and four round trips
    /// for them all: one index for the batch, their rows locked in id order. A job id given
    /// twice is registered twice, one after the other.
    /// - Returns: one result per job, in order: its registration, or why it was refused
    ///   (``ClusterStoreError/invalid(_:)``).
    public func register(_ submitted: [Job]) async throws -> [Result<JobRegistration, ClusterStoreError>] {
        var results = [Result<JobRegistration, ClusterStoreError>?](repeating: nil, count: submitted.count)
        var valid: [(position: Int, job: Job)] = []
        for (position, job) in submitted.enumerated() {
            let errors = job.validate()
            if errors.isEmpty {
                var job = job.canonicalized()
                job.stop = false
                valid.append((position, job))
            } else {
                results[position] = .failure(.invalid(errors))
            }
        }
        // Rounds of distinct ids: a row is written once per statement.
        while !valid.isEmpty {
            var round: [(position: Int, job: Job)] = []
            var later: [(position: Int, job: Job)] = []
            var seen: Set<String> = []
            for entry in valid { if seen.insert(entry.job.id).inserted { round.append(entry) } else { later.append(entry) } }
            let registrations = try await registerDistinct(round.map(\.job))
            for (entry, registration) in zip(round, registrations) { results[entry.position] = .success(registration) }
            valid = later
        }
        return results.map { $0! }
    }

    /// Registers valid, canonical jobs with distinct ids in one transaction.
    private func registerDistinct(_ submitted: [Job]) async throws -> [JobRegistration] {
        try await database.transaction { connection in
            // The index and the jobs' current rows, locked, in one round trip.
            var index: Int64 = 0
            var previous: [String: (version: Int, spec: Job, createIndex: Int64)] = [:]
            for try await (next, id, version, spec, createIndex) in try await connection.query(
                """
                WITH next AS MATERIALIZED (
                        SELECT index, pg_notify('drover_state', index::text) FROM (SELECT nextval('drover_index') AS index) AS taken),
                    current AS MATERIALIZED (
                        SELECT id, version, spec::text AS spec, create_index FROM drover_jobs WHERE id = ANY(\(submitted.map(\.id))) ORDER BY id FOR UPDATE)
                SELECT next.index, current.id, current.version, current.spec, current.create_index FROM next LEFT JOIN current ON true
                """, logger: logger
            ).decode((Int64, String?, Int?, String?, Int64?).self) {
                index = next
                if let id, let version, let spec, let createIndex { previous[id] = (version, try Self.decode(Job.self, spec), createIndex) }
            }
            let now = Self.nanoseconds()
            var jobs: [Job] = []
            var versions: [Job] = []
            var evals: [Evaluation] = []
            var events: [ClusterEvent] = []
            for var job in submitted {
                let before = previous[job.id]
                let changed = before.map { Self.userFields($0.spec) != Self.userFields(job) } ?? true
                let version = before.map { changed ? $0.version + 1 : $0.version } ?? 0
                job.version = version
                job.submitTime = now
                job.createIndex = before?.createIndex ?? index
                job.modifyIndex = index
                job.jobModifyIndex = index
                job.status = nil
                jobs.append(job)
                if changed { versions.append(job) }
                evals.append(Self.newEvaluation(for: job, triggeredBy: Evaluation.Trigger.jobRegister, index: index, now: now))
                events.append(
                    ClusterEvent(
                        time: Date(), nodeID: nil, jobID: job.id, allocID: nil, type: ClusterEvent.Kind.jobRegistered, level: .info,
                        priority: .low, message: "Job \(job.id) registered (version \(version))"))
            }
            let specs = try jobs.map { try Self.encode($0) }
            let versionSpecs = try versions.map { try Self.encode($0) }
            var writes = SQLWrites()
            try writes.add(
                """
                INSERT INTO drover_jobs (id, version, type, priority, stop, spec, submit_time, create_index, modify_index, job_modify_index)
                SELECT id, version, type, priority, false, spec::jsonb, \(now), create_index, \(index), \(index)
                FROM unnest(\(jobs.map(\.id))::text[], \(jobs.map { $0.version ?? 0 })::int[], \(jobs.map(\.jobType.rawValue))::text[],
                    \(jobs.map(\.jobPriority))::int[], \(specs)::text[], \(jobs.map { $0.createIndex ?? index })::bigint[])
                    AS j(id, version, type, priority, spec, create_index)
                ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, type = EXCLUDED.type, priority = EXCLUDED.priority,
                    stop = false, spec = EXCLUDED.spec, submit_time = EXCLUDED.submit_time, modify_index = EXCLUDED.modify_index,
                    job_modify_index = EXCLUDED.job_modify_index
                """)
            if !versions.isEmpty {
                try writes.add(
                    """
                    INSERT INTO drover_job_versions (job_id, version, spec)
                    SELECT job_id, version, spec::jsonb FROM unnest(\(versions.map(\.id))::text[], \(versions.map { $0.version ?? 0 })::int[],
                        \(versionSpecs)::text[]) AS v(job_id, version, spec)
                    ON CONFLICT (job_id, version) DO UPDATE SET spec = EXCLUDED.spec
                    """)
            }
            try Self.insert(evals, into: &writes)
            try Events.record(events, into: &writes)
            try await writes.run(on: connection, logger: logger)
            return evals.map { JobRegistration(evalID: $0.id, jobModifyIndex: index, warnings: "", index: index) }
        }
    }

    /// A job without the fields the server sets, for telling whether a client changed it.
    static func userFields(_ job: Job) -> Job {
        var job = job
        job.stop = nil
        job.status = nil
        job.statusDescription = nil
        job.version = nil
        job.submitTime = nil
        job.createIndex = nil
        job.modifyIndex = nil
        job.jobModifyIndex = nil
        return job
    }

    /// Stops a job (its allocations are stopped by the evaluation this creates); with `purge`
    /// it is also forgotten.
    /// - Returns: the evaluation's id and the index.
    /// - Throws: ``ClusterStoreError/notFound(kind:id:)``.
    public func deregister(jobID: String, purge: Bool) async throws -> JobRegistration {
        try await database.transaction { connection in
            var found: Job?
            for try await spec in try await connection.query("SELECT spec::text FROM drover_jobs WHERE id = \(jobID) FOR UPDATE", logger: logger)
                .decode(String.self)
            {
                found = try Self.decode(Job.self, spec)
            }
            guard var job = found else { throw ClusterStoreError.notFound(kind: "job", id: jobID) }
            let index = try await Self.nextIndex(connection, logger: logger)
            if purge {
                try await connection.query("DELETE FROM drover_jobs WHERE id = \(jobID)", logger: logger)
                try await connection.query("DELETE FROM drover_job_versions WHERE job_id = \(jobID)", logger: logger)
            } else {
                job.stop = true
                job.modifyIndex = index
                job.jobModifyIndex = index
                try await connection.query(
                    """
                    UPDATE drover_jobs SET stop = true, spec = \(try Self.encode(job))::jsonb, modify_index = \(index), job_modify_index = \(index)
                    WHERE id = \(jobID)
                    """, logger: logger)
            }
            // Blocked evaluations of a stopped job have nothing left to wait for.
            try await Self.cancelBlockedEvaluations(of: [jobID], index: index, on: connection, logger: logger)
            let eval = try await Self.createEvaluation(
                for: job, triggeredBy: Evaluation.Trigger.jobDeregister, index: index, now: Self.nanoseconds(), on: connection, logger: logger)
            try await Events.note(
                ClusterEvent.Kind.jobDeregistered, "Job \(jobID) stopped\(purge ? " and purged" : "")", jobID: jobID, on: connection, logger: logger)
            return JobRegistration(evalID: eval.id, jobModifyIndex: index, warnings: "", index: index)
        }
    }

    /// Inserts a pending evaluation and the outbox message that hands it to a scheduler.
    @discardableResult
    static func createEvaluation(
        for job: Job, triggeredBy: String, index: Int64, now: Int64, status: Evaluation.Status = .pending, previousEval: String? = nil,
        nodeID: String? = nil, on connection: PostgresConnection, logger: Logger, details: (inout Evaluation) -> Void = { _ in }
    ) async throws -> Evaluation {
        let eval = newEvaluation(
            for: job, triggeredBy: triggeredBy, index: index, now: now, status: status, previousEval: previousEval, nodeID: nodeID, details: details)
        var writes = SQLWrites()
        try insert([eval], into: &writes)
        try await writes.run(on: connection, logger: logger)
        return eval
    }

    /// A new evaluation of `job`, not yet written.
    static func newEvaluation(
        for job: Job, triggeredBy: String, index: Int64, now: Int64, status: Evaluation.Status = .pending, previousEval: String? = nil,
        nodeID: String? = nil, details: (inout Evaluation) -> Void = { _ in }
    ) -> Evaluation {
        var eval = Evaluation(
            id: UUID().uuidString.lowercased(), priority: job.jobPriority, type: job.jobType, triggeredBy: triggeredBy, jobID: job.id,
            jobModifyIndex: job.jobModifyIndex ?? index, nodeID: nodeID, status: status, createIndex: index, modifyIndex: index,
            createTime: now, modifyTime: now)
        eval.previousEval = previousEval
        details(&eval)
        return eval
    }

    /// Adds to `writes` the insertion of `evals` and, for each pending one, the outbox message
    /// that hands it to a scheduler.
    static func insert(_ evals: [Evaluation], into writes: inout SQLWrites) throws {
        guard !evals.isEmpty else { return }
        let specs = try evals.map { try encode($0) }
        try writes.add(
            """
            INSERT INTO drover_evaluations (id, job_id, status, spec, create_index, modify_index)
            SELECT id, job_id, status, spec::jsonb, create_index, modify_index
            FROM unnest(\(evals.map(\.id))::text[], \(evals.map(\.jobID))::text[], \(evals.map(\.status.rawValue))::text[], \(specs)::text[],
                \(evals.map(\.createIndex))::bigint[], \(evals.map(\.modifyIndex))::bigint[])
                AS e(id, job_id, status, spec, create_index, modify_index)
            """)
        try Outbox.enqueue(try evals.filter { $0.status == .pending }.map(pendingMessage), into: &writes)
    }

    /// The message that hands a pending evaluation to a scheduler.
    static func pendingMessage(_ eval: Evaluation) throws -> OutgoingMessage {
        try OutgoingMessage(
            EvaluationPending(evalID: eval.id, jobID: eval.jobID, triggeredBy: eval.triggeredBy),
            routingKey: RoutingKey.evaluation(eval.id, "pending"))
    }

    /// Cancels the blocked evaluations of `jobIDs`, but for `kept`.
    static func cancelBlockedEvaluations(
        of jobIDs: [String], except kept: [String] = [], index: Int64, on connection: PostgresConnection, logger: Logger
    ) async throws {
        var writes = SQLWrites()
        try cancelBlockedEvaluations(of: jobIDs, except: kept, index: index, into: &writes)
        try await writes.run(on: connection, logger: logger)
    }

    /// Adds to `writes` cancelling the blocked evaluations of `jobIDs`, but for `kept`.
    static func cancelBlockedEvaluations(of jobIDs: [String], except kept: [String] = [], index: Int64, into writes: inout SQLWrites) throws {
        guard !jobIDs.isEmpty else { return }
        try writes.add(
            """
            UPDATE drover_evaluations SET status = 'canceled', modify_index = \(index),
                spec = jsonb_set(jsonb_set(spec, '{Status}', '"canceled"'), '{ModifyIndex}', to_jsonb(\(index)))
            WHERE job_id = ANY(\(jobIDs)) AND status = 'blocked' AND NOT (id = ANY(\(kept)))
            """)
    }

    /// Jobs whose id starts with `prefix`, each with its status.
    public func jobs(prefix: String = "") async throws -> [Job] {
        try await readJobs("\(unescaped: Self.jobColumns) WHERE j.id LIKE \(Self.likePrefix(prefix)) ORDER BY j.id")
    }

    public func job(id: String) async throws -> Job? {
        try await readJobs("\(unescaped: Self.jobColumns) WHERE j.id = \(id)").first
    }

    /// A job's spec and what its status is derived from: live allocations, any allocations,
    /// evaluations still to do.
    static let jobColumns = """
        SELECT j.spec::text,
            EXISTS (SELECT 1 FROM drover_allocations a WHERE a.job_id = j.id AND a.desired_status = 'run'
                    AND a.client_status IN ('pending', 'running')),
            EXISTS (SELECT 1 FROM drover_allocations a WHERE a.job_id = j.id),
            EXISTS (SELECT 1 FROM drover_evaluations e WHERE e.job_id = j.id AND e.status IN ('pending', 'blocked'))
        FROM drover_jobs j
        """

    private func readJobs(_ query: PostgresQuery) async throws -> [Job] {
        var jobs: [Job] = []
        for try await (spec, live, any, waiting) in try await database.client.query(query, logger: logger).decode((String, Bool, Bool, Bool).self) {
            var job = try Self.decode(Job.self, spec)
            job.status = Self.status(of: job, live: live, waiting: waiting, anyAllocation: any)
            jobs.append(job)
        }
        return jobs
    }

    /// Nomad's job status: `dead` once stopped (or, for a batch job, once every allocation has
    /// finished and nothing waits), `running` while an allocation runs, else `pending`.
    static func status(of job: Job, live: Bool, waiting: Bool, anyAllocation: Bool) -> String {
        if job.isStopped { return "dead" }
        if live { return "running" }
        if !waiting && anyAllocation && job.jobType == .batch { return "dead" }
        return "pending"
    }

    static func likePrefix(_ prefix: String) -> String {
        prefix.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%").replacingOccurrences(of: "_", with: "\\_")
            + "%"
    }

    // MARK: JSON

    static func encode(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        try JSONDecoder().decode(type, from: Data(text.utf8))
    }
}
