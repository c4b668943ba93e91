import PostgresNIO

/// What a garbage collection removed, by kind.
public struct Collected: Sendable, Equatable {
    public var jobs = 0
    public var evaluations = 0
    public var allocations = 0
    public var jobVersions = 0
    public init() {}
    public var total: Int { jobs + evaluations + allocations + jobVersions }
}

/// Removes what no longer matters, as Nomad's garbage collector does; every rule is one
/// statement, and a row another transaction holds is left for the next collection.
public struct GarbageRepository: Sendable {
    let sql: SQLRunner

    init(_ sql: SQLRunner) { self.sql = sql }

    /// Jobs that are over (stopped, or batch with nothing left to run) whose last change is
    /// older than `before` (Unix nanoseconds), with all their evaluations, allocations and versions.
    public func deadJobs(changedBefore before: Int64, into collected: inout Collected) async throws {
        let rows = try await sql.query(
            """
            WITH dead AS (
                SELECT j.namespace, j.id FROM drover_jobs j
                WHERE (j.stop OR j.type = 'batch')
                    AND NOT EXISTS (SELECT 1 FROM drover_allocations a WHERE a.namespace = j.namespace AND a.job_id = j.id
                        AND a.client_status IN ('pending', 'running'))
                    AND NOT EXISTS (SELECT 1 FROM drover_evaluations e WHERE e.namespace = j.namespace AND e.job_id = j.id
                        AND e.status IN ('pending', 'blocked'))
                    AND greatest(
                        j.submit_time,
                        coalesce((SELECT max((a.spec->>'ModifyTime')::bigint) FROM drover_allocations a
                            WHERE a.namespace = j.namespace AND a.job_id = j.id), 0),
                        coalesce((SELECT max((e.spec->>'ModifyTime')::bigint) FROM drover_evaluations e
                            WHERE e.namespace = j.namespace AND e.job_id = j.id), 0)
                    ) < \(before)
                FOR UPDATE OF j SKIP LOCKED),
            allocations AS (DELETE FROM drover_allocations WHERE (namespace, job_id) IN (SELECT namespace, id FROM dead) RETURNING 1),
            evaluations AS (DELETE FROM drover_evaluations WHERE (namespace, job_id) IN (SELECT namespace, id FROM dead) RETURNING 1),
            versions AS (DELETE FROM drover_job_versions WHERE (namespace, job_id) IN (SELECT namespace, id FROM dead) RETURNING 1),
            jobs AS (DELETE FROM drover_jobs WHERE (namespace, id) IN (SELECT namespace, id FROM dead) RETURNING 1)
            SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM evaluations), (SELECT count(*) FROM allocations),
                (SELECT count(*) FROM versions)
            """)
        for try await (jobs, evaluations, allocations, versions) in rows.decode((Int, Int, Int, Int).self) {
            collected.jobs += jobs
            collected.evaluations += evaluations
            collected.allocations += allocations
            collected.jobVersions += versions
        }
    }

    /// Of the jobs that remain: evaluations that ended before `before` and that no running
    /// allocation came from; allocations that ended before it and are no longer wanted (stopped
    /// or replaced), except those lost on a node that still exists (told to stop should it come
    /// back); and job versions older than the newest `keepVersions` that no allocation runs.
    public func history(endedBefore before: Int64, keepVersions: Int, into collected: inout Collected) async throws {
        let rows = try await sql.query(
            """
            WITH evaluations AS (
                DELETE FROM drover_evaluations e
                WHERE e.status IN ('complete', 'failed', 'canceled') AND (e.spec->>'ModifyTime')::bigint < \(before)
                    AND NOT EXISTS (
                        SELECT 1 FROM drover_allocations a WHERE a.eval_id = e.id AND a.client_status IN ('pending', 'running'))
                RETURNING 1),
            allocations AS (
                DELETE FROM drover_allocations a
                WHERE a.client_status IN ('complete', 'failed', 'lost') AND a.desired_status <> 'run'
                    AND (a.spec->>'ModifyTime')::bigint < \(before)
                    AND NOT (a.client_status = 'lost' AND EXISTS (SELECT 1 FROM drover_nodes n WHERE n.id = a.node_id))
                RETURNING 1),
            versions AS (
                DELETE FROM drover_job_versions v
                WHERE v.version <= (SELECT j.version FROM drover_jobs j WHERE j.namespace = v.namespace AND j.id = v.job_id) - \(keepVersions)
                    AND NOT EXISTS (SELECT 1 FROM drover_allocations a WHERE a.namespace = v.namespace AND a.job_id = v.job_id
                        AND a.job_version = v.version)
                RETURNING 1)
            SELECT (SELECT count(*) FROM evaluations), (SELECT count(*) FROM allocations), (SELECT count(*) FROM versions)
            """)
        for try await (evaluations, allocations, versions) in rows.decode((Int, Int, Int).self) {
            collected.evaluations += evaluations
            collected.allocations += allocations
            collected.jobVersions += versions
        }
    }
}

extension UnitOfWork {
    public var garbage: GarbageRepository { GarbageRepository(SQLRunner(self)) }
}
