public import DroverModel
import PostgresNIO

/// Evaluations (`drover_evaluations`).
public struct EvaluationRepository: Sendable {
    let sql: SQLRunner

    init(_ sql: SQLRunner) { self.sql = sql }

    /// Adds to `writes` the insertion of `evals`.
    public func insert(_ evals: [Evaluation], into writes: inout SQLWrites) throws {
        guard !evals.isEmpty else { return }
        let specs = try evals.map { try JSONColumn.encode($0) }
        try writes.add(
            """
            INSERT INTO drover_evaluations (id, job_id, namespace, status, spec, create_index, modify_index)
            SELECT id, job_id, namespace, status, jsonb_set(spec::jsonb, '{Namespace}', to_jsonb(namespace)), create_index, modify_index
            FROM (SELECT e.*, coalesce(nullif(e.given, ''), 'default') AS namespace
                FROM unnest(\(evals.map(\.id))::text[], \(evals.map(\.jobID))::text[], \(evals.map { $0.namespace ?? "" })::text[],
                    \(evals.map(\.status.rawValue))::text[], \(specs)::text[], \(evals.map(\.createIndex))::bigint[],
                    \(evals.map(\.modifyIndex))::bigint[])
                    AS e(id, job_id, given, status, spec, create_index, modify_index)) AS e
            """)
    }

    /// Up to `limit` evaluations still pending whose scheduler was last told of them more than
    /// `age` ago: their notice is taken as lost. Each is marked told now, so that it is sent again
    /// once per `age` at most, by one caller (rows another transaction holds are skipped).
    public func claimStalePending(olderThan age: Duration, limit: Int) async throws -> [Evaluation] {
        var evals: [Evaluation] = []
        let rows = try await sql.query(
            """
            UPDATE drover_evaluations SET notified_at = now() WHERE id IN (
                SELECT id FROM drover_evaluations WHERE status = 'pending' AND notified_at < now() - make_interval(secs => \(age.timeInterval))
                ORDER BY notified_at LIMIT \(limit) FOR UPDATE SKIP LOCKED)
            RETURNING spec::text
            """)
        for try await spec in rows.decode(String.self) { evals.append(try JSONColumn.decode(Evaluation.self, spec)) }
        return evals
    }

    /// Adds to `writes` the new state of `evals`, each as it is, at `index`.
    public func update(_ evals: [Evaluation], index: Int64, into writes: inout SQLWrites) throws {
        guard !evals.isEmpty else { return }
        let specs = try evals.map { try JSONColumn.encode($0) }
        try writes.add(
            """
            UPDATE drover_evaluations e SET status = u.status, spec = u.spec::jsonb, modify_index = \(index)
            FROM unnest(\(evals.map(\.id))::text[], \(evals.map(\.status.rawValue))::text[], \(specs)::text[]) AS u(id, status, spec)
            WHERE e.id = u.id
            """)
    }

    /// Adds to `writes` cancelling the blocked evaluations of the jobs `keys`, but for `kept`.
    public func cancelBlocked(of keys: [JobKey], except kept: [String] = [], index: Int64, into writes: inout SQLWrites) throws {
        guard !keys.isEmpty else { return }
        try writes.add(
            """
            UPDATE drover_evaluations SET status = 'canceled', modify_index = \(index),
                spec = jsonb_set(jsonb_set(spec, '{Status}', '"canceled"'), '{ModifyIndex}', to_jsonb(\(index)))
            WHERE (namespace, job_id) IN (SELECT * FROM unnest(\(keys.map(\.namespace))::text[], \(keys.map(\.id))::text[]))
                AND status = 'blocked' AND NOT (id = ANY(\(kept)))
            """)
    }

    /// Makes blocked evaluations pending again, at `index`: all of them, or with `capacityOnly`
    /// those that lacked resources somewhere (``AllocMetric/nodesExhausted`` above 0).
    /// - Returns: the evaluations now pending.
    public func unblock(index: Int64, capacityOnly: Bool) async throws -> [Evaluation] {
        var unblocked: [String] = []
        for try await spec in try await sql.query(
            """
            UPDATE drover_evaluations SET status = 'pending', modify_index = \(index),
                spec = jsonb_set(jsonb_set(spec, '{Status}', '"pending"'), '{ModifyIndex}', to_jsonb(\(index)))
            WHERE status = 'blocked' AND (NOT \(capacityOnly) OR EXISTS (
                SELECT 1 FROM jsonb_each(spec->'FailedTGAllocs') AS failed(grp, metric) WHERE (metric->>'NodesExhausted')::int > 0))
            RETURNING spec::text
            """
        ).decode(String.self) {
            unblocked.append(spec)
        }
        return try unblocked.map { try JSONColumn.decode(Evaluation.self, $0) }
    }

    /// Locks the evaluations `ids` and then, in key order, an advisory lock on the job of each
    /// pending one, in one statement: so two transactions never work on one job at once.
    /// - Returns: the evaluations still pending.
    public func lockPendingWithJobs(_ ids: [String]) async throws -> [Evaluation] {
        var pending: [Evaluation] = []
        for try await spec in try await sql.query(
            """
            WITH evals AS MATERIALIZED (
                    SELECT spec::text AS spec, namespace, job_id, status FROM drover_evaluations WHERE id = ANY(\(Array(Set(ids)).sorted()))
                    ORDER BY id FOR UPDATE),
                locks AS MATERIALIZED (
                    SELECT pg_advisory_xact_lock(key) FROM (
                        SELECT DISTINCT hashtextextended('job:' || namespace || '/' || job_id, 0) AS key FROM evals WHERE status = 'pending'
                        ORDER BY key) AS keys)
            SELECT evals.spec FROM evals CROSS JOIN (SELECT count(*) FROM locks) AS taken
            """
        ).decode(String.self) {
            let eval = try JSONColumn.decode(Evaluation.self, spec)
            if eval.status == .pending { pending.append(eval) }
        }
        return pending
    }

    /// Evaluations of `job`, or (nil) those whose id starts with `prefix`, oldest first.
    /// - Parameter namespaces: only those of these namespaces; nil: of every namespace.
    public func list(job: JobKey? = nil, prefix: String = "", namespaces: [String]? = nil) async throws -> [Evaluation] {
        let query: PostgresQuery =
            if let job {
                "SELECT spec::text FROM drover_evaluations WHERE namespace = \(job.namespace) AND job_id = \(job.id) ORDER BY create_index, id"
            } else if let namespaces {
                """
                SELECT spec::text FROM drover_evaluations WHERE namespace = ANY(\(namespaces)) AND id LIKE \(JSONColumn.likePrefix(prefix))
                ORDER BY create_index, id
                """
            } else {
                "SELECT spec::text FROM drover_evaluations WHERE id LIKE \(JSONColumn.likePrefix(prefix)) ORDER BY create_index, id"
            }
        var evaluations: [Evaluation] = []
        for try await spec in try await sql.query(query).decode(String.self) {
            evaluations.append(try JSONColumn.decode(Evaluation.self, spec))
        }
        return evaluations
    }

    /// The blocked evaluations (what waits for room), oldest first.
    public func blocked() async throws -> [Evaluation] {
        var evaluations: [Evaluation] = []
        for try await spec in try await sql.query(
            "SELECT spec::text FROM drover_evaluations WHERE status = 'blocked' ORDER BY create_index, id"
        ).decode(String.self) {
            evaluations.append(try JSONColumn.decode(Evaluation.self, spec))
        }
        return evaluations
    }

    public func read(id: String) async throws -> Evaluation? {
        var found: Evaluation?
        for try await spec in try await sql.query("SELECT spec::text FROM drover_evaluations WHERE id = \(id)").decode(String.self) {
            found = try JSONColumn.decode(Evaluation.self, spec)
        }
        return found
    }
}
