public import DroverModel
import Foundation
import PostgresNIO

/// Jobs and their versions (`drover_jobs`, `drover_job_versions`).
public struct JobRepository: Sendable {
    let sql: SQLRunner

    init(_ sql: SQLRunner) { self.sql = sql }

    /// A job as stored before a new version replaces it.
    public struct Current: Sendable {
        public var version: Int
        public var spec: Job
        public var createIndex: Int64
    }

    /// Takes the next index and locks the rows of `keys` (in key order), in one round trip.
    /// - Returns: the index, and the jobs that exist.
    public func takeIndexLocking(_ keys: [JobKey]) async throws -> (index: Int64, current: [JobKey: Current]) {
        var index: Int64 = 0
        var current: [JobKey: Current] = [:]
        for try await (next, version, spec, createIndex) in try await sql.query(
            """
            WITH next AS MATERIALIZED (
                    SELECT index, pg_notify('drover_state', index::text) FROM (SELECT nextval('drover_index') AS index) AS taken),
                current AS MATERIALIZED (
                    SELECT version, spec::text AS spec, create_index FROM drover_jobs
                    WHERE (namespace, id) IN (SELECT * FROM unnest(\(keys.map(\.namespace))::text[], \(keys.map(\.id))::text[]))
                    ORDER BY namespace, id FOR UPDATE)
            SELECT next.index, current.version, current.spec, current.create_index FROM next LEFT JOIN current ON true
            """
        ).decode((Int64, Int?, String?, Int64?).self) {
            index = next
            if let version, let spec, let createIndex {
                let job = try JSONColumn.decode(Job.self, spec)
                current[job.key] = Current(version: version, spec: job, createIndex: createIndex)
            }
        }
        return (index, current)
    }

    /// Adds to `writes` the rows of `jobs` (inserted or replaced) and the new `versions`.
    public func upsert(_ jobs: [Job], versions: [Job], submitTime: Int64, index: Int64, into writes: inout SQLWrites) throws {
        let specs = try jobs.map { try JSONColumn.encode($0) }
        try writes.add(
            """
            INSERT INTO drover_jobs (id, namespace, version, type, priority, stop, spec, submit_time, create_index, modify_index, job_modify_index)
            SELECT id, namespace, version, type, priority, false, spec::jsonb, \(submitTime), create_index, \(index), \(index)
            FROM unnest(\(jobs.map(\.id))::text[], \(jobs.map { $0.namespace ?? "default" })::text[], \(jobs.map { $0.version ?? 0 })::int[],
                \(jobs.map(\.jobType.rawValue))::text[], \(jobs.map(\.jobPriority))::int[], \(specs)::text[],
                \(jobs.map { $0.createIndex ?? index })::bigint[])
                AS j(id, namespace, version, type, priority, spec, create_index)
            ON CONFLICT (namespace, id) DO UPDATE SET version = EXCLUDED.version, type = EXCLUDED.type, priority = EXCLUDED.priority,
                stop = false, spec = EXCLUDED.spec, submit_time = EXCLUDED.submit_time, modify_index = EXCLUDED.modify_index,
                job_modify_index = EXCLUDED.job_modify_index
            """)
        guard !versions.isEmpty else { return }
        let versionSpecs = try versions.map { try JSONColumn.encode($0) }
        try writes.add(
            """
            INSERT INTO drover_job_versions (namespace, job_id, version, spec)
            SELECT namespace, job_id, version, spec::jsonb FROM unnest(\(versions.map(\.key.namespace))::text[], \(versions.map(\.id))::text[],
                \(versions.map { $0.version ?? 0 })::int[], \(versionSpecs)::text[]) AS v(namespace, job_id, version, spec)
            ON CONFLICT (namespace, job_id, version) DO UPDATE SET spec = EXCLUDED.spec
            """)
    }

    /// The job `key`, its row locked until the transaction ends; nil when there is none.
    public func lock(_ key: JobKey) async throws -> Job? {
        var job: Job?
        for try await spec in try await sql.query(
            "SELECT spec::text FROM drover_jobs WHERE namespace = \(key.namespace) AND id = \(key.id) FOR UPDATE"
        ).decode(String.self) {
            job = try JSONColumn.decode(Job.self, spec)
        }
        return job
    }

    /// The job `key` as stored, without its derived status; nil when there is none.
    public func spec(_ key: JobKey) async throws -> Job? {
        // Read to the end: the connection runs the caller's next query only after this one is done.
        var job: Job?
        for try await spec in try await sql.query(
            "SELECT spec::text FROM drover_jobs WHERE namespace = \(key.namespace) AND id = \(key.id)"
        ).decode(String.self) {
            job = try JSONColumn.decode(Job.self, spec)
        }
        return job
    }

    /// Forgets job `key` and its versions.
    public func delete(_ key: JobKey) async throws {
        try await sql.query(
            """
            WITH versions AS (DELETE FROM drover_job_versions WHERE namespace = \(key.namespace) AND job_id = \(key.id))
            DELETE FROM drover_jobs WHERE namespace = \(key.namespace) AND id = \(key.id)
            """)
    }

    /// Stores `job`, stopped, as changed at `index`.
    public func markStopped(_ job: Job, index: Int64) async throws {
        try await sql.query(
            """
            UPDATE drover_jobs SET stop = true, spec = \(try JSONColumn.encode(job))::jsonb, modify_index = \(index), job_modify_index = \(index)
            WHERE namespace = \(job.key.namespace) AND id = \(job.id)
            """)
    }

    /// Jobs whose id starts with `prefix`, each with its status.
    /// - Parameter namespaces: only the jobs of these namespaces; nil: of every namespace.
    public func list(prefix: String = "", namespaces: [String]? = nil) async throws -> [Job] {
        if let namespaces {
            return try await read(
                """
                \(unescaped: Self.columns) WHERE j.namespace = ANY(\(namespaces)) AND j.id LIKE \(JSONColumn.likePrefix(prefix))
                ORDER BY j.id, j.namespace
                """)
        }
        return try await read("\(unescaped: Self.columns) WHERE j.id LIKE \(JSONColumn.likePrefix(prefix)) ORDER BY j.id, j.namespace")
    }

    /// The job `key` with its status; nil when there is none.
    public func read(_ key: JobKey) async throws -> Job? {
        try await read("\(unescaped: Self.columns) WHERE j.namespace = \(key.namespace) AND j.id = \(key.id)").first
    }

    /// A job's spec and what its status is derived from: live allocations, any allocations,
    /// evaluations still to do.
    private static let columns = """
        SELECT j.spec::text,
            EXISTS (SELECT 1 FROM drover_allocations a WHERE a.namespace = j.namespace AND a.job_id = j.id AND a.desired_status = 'run'
                    AND a.client_status IN ('pending', 'running')),
            EXISTS (SELECT 1 FROM drover_allocations a WHERE a.namespace = j.namespace AND a.job_id = j.id),
            EXISTS (SELECT 1 FROM drover_evaluations e WHERE e.namespace = j.namespace AND e.job_id = j.id AND e.status IN ('pending', 'blocked'))
        FROM drover_jobs j
        """

    private func read(_ query: PostgresQuery) async throws -> [Job] {
        var jobs: [Job] = []
        for try await (spec, live, any, waiting) in try await sql.query(query).decode((String, Bool, Bool, Bool).self) {
            var job = try JSONColumn.decode(Job.self, spec)
            job.status = job.derivedStatus(liveAllocation: live, waitingEvaluation: waiting, anyAllocation: any)
            jobs.append(job)
        }
        return jobs
    }

    /// The system jobs that are not stopped.
    public func runningSystemJobs() async throws -> [Job] {
        var jobs: [Job] = []
        for try await spec in try await sql.query("SELECT spec::text FROM drover_jobs WHERE type = 'system' AND NOT stop").decode(String.self) {
            jobs.append(try JSONColumn.decode(Job.self, spec))
        }
        return jobs
    }

    /// The jobs with an allocation still wanted and live on `nodeID`.
    public func withLiveAllocations(onNode nodeID: String) async throws -> [Job] {
        var jobs: [Job] = []
        for try await spec in try await sql.query(
            """
            SELECT j.spec::text FROM drover_jobs j WHERE (j.namespace, j.id) IN (
                SELECT namespace, job_id FROM drover_allocations WHERE node_id = \(nodeID) AND desired_status = 'run'
                    AND client_status IN ('pending', 'running'))
            ORDER BY j.namespace, j.id
            """
        ).decode(String.self) {
            jobs.append(try JSONColumn.decode(Job.self, spec))
        }
        return jobs
    }

    /// The jobs `keys` that exist, as stored.
    public func specs(_ keys: [JobKey]) async throws -> [Job] {
        var jobs: [Job] = []
        for try await spec in try await sql.query(
            """
            SELECT spec::text FROM drover_jobs
            WHERE (namespace, id) IN (SELECT * FROM unnest(\(keys.map(\.namespace))::text[], \(keys.map(\.id))::text[])) ORDER BY namespace, id
            """
        ).decode(String.self) {
            jobs.append(try JSONColumn.decode(Job.self, spec))
        }
        return jobs
    }

    /// The jobs `ids` that exist, and every allocation of theirs, live or not, each with the
    /// job version it runs, by job: in one statement.
    public func withAllocations(_ keys: [JobKey]) async throws -> (jobs: [JobKey: Job], allocations: [JobKey: [Allocation]]) {
        var jobs: [JobKey: Job] = [:]
        var allocations: [JobKey: [Allocation]] = [:]
        for try await (isJob, spec, version) in try await sql.query(
            """
            WITH keys AS MATERIALIZED (SELECT * FROM unnest(\(keys.map(\.namespace))::text[], \(keys.map(\.id))::text[]) AS k(namespace, id))
            SELECT true, spec::text, NULL::text FROM drover_jobs WHERE (namespace, id) IN (SELECT namespace, id FROM keys)
            UNION ALL
            SELECT false, a.spec::text, v.spec::text FROM drover_allocations a
            LEFT JOIN drover_job_versions v ON v.namespace = a.namespace AND v.job_id = a.job_id AND v.version = a.job_version
            WHERE (a.namespace, a.job_id) IN (SELECT namespace, id FROM keys)
            """
        ).decode((Bool, String, String?).self) {
            if isJob {
                let job = try JSONColumn.decode(Job.self, spec)
                jobs[job.key] = job
            } else {
                var allocation = try JSONColumn.decode(Allocation.self, spec)
                allocation.job = try version.map { try JSONColumn.decode(Job.self, $0) }
                allocations[allocation.jobKey, default: []].append(allocation)
            }
        }
        return (jobs, allocations)
    }
}
