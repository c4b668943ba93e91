public import DroverModel
public import Foundation
import PostgresNIO

/// Time-based and dependent jobs (`drover_scheduled_jobs`) and their runs, one row per due time
/// (`drover_schedule_runs`). SQL only: when a job is due and what to do is the schedule core's.
public struct ScheduleRepository: Sendable {
    let sql: SQLRunner

    init(_ sql: SQLRunner) { self.sql = sql }

    /// A job with its firing state.
    public struct Entry: Sendable, Equatable {
        public var job: ScheduledJob
        /// Unix nanoseconds; nil when nothing is due.
        public var nextDue: Int64?
        public var remaining: Int?
        public var disabled: Bool
        /// Whether a run of it is still going.
        public var running: Bool
        public var modifyIndex: Int64
    }

    /// Creates or replaces a job.
    public func put(_ job: ScheduledJob, nextDue: Int64?, remaining: Int?, index: Int64) async throws {
        try await sql.query(
            """
            INSERT INTO drover_scheduled_jobs (name, spec, next_due, remaining, disabled, modify_index)
            VALUES (\(job.name), \(try JSONColumn.encode(job))::jsonb, \(nextDue), \(remaining.map(Int32.init)), \(job.disabled), \(index))
            ON CONFLICT (name) DO UPDATE SET spec = EXCLUDED.spec, next_due = EXCLUDED.next_due, remaining = EXCLUDED.remaining,
                disabled = EXCLUDED.disabled, modify_index = EXCLUDED.modify_index
            """)
    }

    private static let columns = """
        s.spec::text, s.next_due, s.remaining, s.disabled, s.modify_index,
        EXISTS (SELECT 1 FROM drover_schedule_runs r WHERE r.job_name = s.name AND r.state = 'pending') AS running
        """

    private func entries(_ query: PostgresQuery) async throws -> [Entry] {
        var found: [Entry] = []
        for try await (spec, next, remaining, disabled, index, running) in try await sql.query(query).decode(
            (String, Int64?, Int32?, Bool, Int64, Bool).self)
        {
            found.append(
                Entry(
                    job: try JSONColumn.decode(ScheduledJob.self, spec), nextDue: next, remaining: remaining.map(Int.init), disabled: disabled,
                    running: running, modifyIndex: index))
        }
        return found
    }

    public func read(name: String, lock: Bool = false) async throws -> Entry? {
        try await entries(
            "SELECT \(unescaped: Self.columns) FROM drover_scheduled_jobs s WHERE s.name = \(name) \(unescaped: lock ? "FOR UPDATE" : "")"
        ).first
    }

    /// The jobs that name `parent` among their parents.
    public func children(of parent: String) async throws -> [Entry] {
        try await entries("SELECT \(unescaped: Self.columns) FROM drover_scheduled_jobs s WHERE s.spec->'parents' ? \(parent) ORDER BY s.name")
    }

    public func list() async throws -> [Entry] {
        try await entries("SELECT \(unescaped: Self.columns) FROM drover_scheduled_jobs s ORDER BY s.name")
    }

    /// Forgets a job and its runs. - Returns: whether it existed.
    public func delete(name: String) async throws -> Bool {
        for try await deleted in try await sql.query(
            """
            WITH runs AS (DELETE FROM drover_schedule_runs WHERE job_name = \(name)),
            gone AS (DELETE FROM drover_scheduled_jobs WHERE name = \(name) RETURNING 1)
            SELECT count(*) > 0 FROM gone
            """
        ).decode(Bool.self) { return deleted }
        return false
    }

    /// The earliest time an enabled job is due (Unix nanoseconds), or nil when none is.
    public func earliestDue() async throws -> Int64? {
        for try await due in try await sql.query(
            "SELECT min(next_due) FROM drover_scheduled_jobs WHERE NOT disabled AND next_due IS NOT NULL"
        ).decode(Int64?.self) { return due }
        return nil
    }

    /// Locks up to `limit` enabled jobs due at `now`, earliest first, skipping those another
    /// transaction holds: each due time is claimed by one replica.
    public func lockDue(at now: Int64, limit: Int) async throws -> [Entry] {
        try await entries(
            """
            SELECT \(unescaped: Self.columns) FROM drover_scheduled_jobs s
            WHERE NOT s.disabled AND s.next_due IS NOT NULL AND s.next_due <= \(now)
            ORDER BY s.next_due LIMIT \(Int32(limit)) FOR UPDATE OF s SKIP LOCKED
            """)
    }

    /// A claimed job moved on: its next due time, runs left, and whether it is now disabled.
    public struct Advance: Sendable, Equatable {
        public var name: String
        public var nextDue: Int64?
        public var remaining: Int?
        public var disabled: Bool

        public init(name: String, nextDue: Int64?, remaining: Int?, disabled: Bool) {
            self.name = name
            self.nextDue = nextDue
            self.remaining = remaining
            self.disabled = disabled
        }
    }

    /// Moves claimed jobs on, as one clause of `writes`.
    public func advance(_ advances: [Advance], index: Int64, into writes: inout SQLWrites) throws {
        guard !advances.isEmpty else { return }
        // Arrays hold no NULLs: Int64.min and -1 stand for none.
        try writes.add(
            """
            UPDATE drover_scheduled_jobs s SET next_due = NULLIF(a.next_due, \(Int64.min)), remaining = NULLIF(a.remaining, -1),
                disabled = a.disabled, spec = jsonb_set(s.spec, '{disabled}', to_jsonb(a.disabled)), modify_index = \(index)
            FROM unnest(\(advances.map(\.name))::text[], \(advances.map { $0.nextDue ?? Int64.min })::int8[],
                        \(advances.map { Int32($0.remaining ?? -1) })::int4[], \(advances.map(\.disabled))::bool[])
                AS a(name, next_due, remaining, disabled)
            WHERE s.name = a.name
            """)
    }

    /// Records runs as one clause of `writes`; a due time recorded before is left as it is.
    public func record(_ runs: [Run], firedBy: String, at time: Int64, into writes: inout SQLWrites) throws {
        guard !runs.isEmpty else { return }
        try writes.add(
            """
            INSERT INTO drover_schedule_runs (job_name, due, state, reason, job_id, fired_by, created_at)
            SELECT r.name, r.due, r.state, NULLIF(r.reason, ''), NULLIF(r.job_id, ''), \(firedBy), \(time)
            FROM unnest(\(runs.map(\.jobName))::text[], \(runs.map(\.due))::int8[], \(runs.map(\.state.rawValue))::text[],
                        \(runs.map { $0.reason ?? "" })::text[], \(runs.map { $0.jobID ?? "" })::text[]) AS r(name, due, state, reason, job_id)
            ON CONFLICT (job_name, due) DO NOTHING
            """)
    }

    /// One due time's outcome.
    public struct Run: Sendable, Equatable {
        public enum State: String, Sendable {
            /// Fired: its batch job is registered (or about to be).
            case pending
            case succeeded, failed, skipped
        }

        public var jobName: String
        /// Unix nanoseconds.
        public var due: Int64
        public var state: State
        public var reason: String?
        public var jobID: String?

        public init(jobName: String, due: Int64, state: State, reason: String? = nil, jobID: String? = nil) {
            self.jobName = jobName
            self.due = due
            self.state = state
            self.reason = reason
            self.jobID = jobID
        }
    }

    /// Records runs; a due time recorded before is left as it is.
    /// - Returns: how many were new.
    @discardableResult
    public func record(_ runs: [Run], firedBy: String, at time: Int64) async throws -> Int {
        guard !runs.isEmpty else { return 0 }
        var inserted = 0
        for try await count in try await sql.query(
            """
            WITH new AS (
                INSERT INTO drover_schedule_runs (job_name, due, state, reason, job_id, fired_by, created_at)
                SELECT r.name, r.due, r.state, r.reason, r.job_id, \(firedBy), \(time)
                FROM unnest(\(runs.map(\.jobName))::text[], \(runs.map(\.due))::int8[], \(runs.map(\.state.rawValue))::text[],
                            \(runs.map { $0.reason ?? "" })::text[], \(runs.map { $0.jobID ?? "" })::text[]) AS r(name, due, state, reason, job_id)
                ON CONFLICT (job_name, due) DO NOTHING RETURNING 1)
            SELECT count(*) FROM new
            """
        ).decode(Int64.self) { inserted = Int(count) }
        return inserted
    }

    /// Runs of job `name`, newest first, at most `limit`.
    public func runs(of name: String, limit: Int) async throws -> [Run] {
        var found: [Run] = []
        for try await (jobName, due, state, reason, jobID) in try await sql.query(
            """
            SELECT job_name, due, state, reason, job_id FROM drover_schedule_runs WHERE job_name = \(name)
            ORDER BY due DESC LIMIT \(Int32(limit))
            """
        ).decode((String, Int64, String, String?, String?).self) {
            found.append(
                Run(
                    jobName: jobName, due: due, state: Run.State(rawValue: state) ?? .failed, reason: reason?.isEmpty == true ? nil : reason,
                    jobID: jobID?.isEmpty == true ? nil : jobID))
        }
        return found
    }

    /// How job `name`'s latest run that ended, ended (succeeded or failed), or nil if none has.
    public func latestOutcome(of name: String) async throws -> Run.State? {
        for try await state in try await sql.query(
            """
            SELECT state FROM drover_schedule_runs WHERE job_name = \(name) AND state IN ('succeeded', 'failed')
            ORDER BY due DESC LIMIT 1
            """
        ).decode(String.self) { return Run.State(rawValue: state) }
        return nil
    }

    /// How long job `name`'s ended runs took, in nanoseconds, the newest `limit`.
    public func durations(of name: String, limit: Int) async throws -> [Int64] {
        var found: [Int64] = []
        for try await duration in try await sql.query(
            """
            SELECT finished_at - created_at FROM drover_schedule_runs
            WHERE job_name = \(name) AND state IN ('succeeded', 'failed') AND finished_at IS NOT NULL
            ORDER BY due DESC LIMIT \(Int32(limit))
            """
        ).decode(Int64.self) { found.append(duration) }
        return found
    }

    /// The replica that fired a run last, or nil.
    public func lastFiredBy() async throws -> String? {
        for try await replica in try await sql.query(
            "SELECT fired_by FROM drover_schedule_runs WHERE fired_by IS NOT NULL ORDER BY created_at DESC LIMIT 1"
        ).decode(String.self) { return replica }
        return nil
    }

    /// A fired run and how its batch job stands.
    public struct OpenRun: Sendable, Equatable {
        public var jobName: String
        public var due: Int64
        public var jobID: String
        /// Whether its batch job is registered at all.
        public var registered: Bool
        public var complete: Int
        public var failed: Int
        public var live: Int
        /// The run's duration so far (nanoseconds since it fired).
        public var createdAt: Int64
    }

    /// Up to `limit` fired runs that have something to settle (their batch job is not
    /// registered, or none of its allocations is still going and one has ended), locked
    /// (skipping those another replica holds), with their batch jobs' allocations counted. Runs
    /// still going, or waiting for a node, are not looked at, so they never hold the others up.
    /// Scheduled jobs run in the default namespace.
    public func lockOpenRuns(limit: Int) async throws -> [OpenRun] {
        var found: [OpenRun] = []
        for try await (name, due, jobID, registered, complete, failed, live, created) in try await sql.query(
            """
            SELECT r.job_name, r.due, r.job_id, EXISTS (SELECT 1 FROM drover_jobs j WHERE j.namespace = 'default' AND j.id = r.job_id),
                (SELECT count(*) FROM drover_allocations a WHERE a.namespace = 'default' AND a.job_id = r.job_id AND a.client_status = 'complete'),
                (SELECT count(*) FROM drover_allocations a WHERE a.namespace = 'default' AND a.job_id = r.job_id AND a.client_status IN ('failed', 'lost')),
                (SELECT count(*) FROM drover_allocations a WHERE a.namespace = 'default' AND a.job_id = r.job_id AND a.client_status IN ('pending', 'running')
                    AND a.desired_status = 'run'),
                r.created_at
            FROM drover_schedule_runs r
            WHERE r.state = 'pending' AND (
                NOT EXISTS (SELECT 1 FROM drover_jobs j WHERE j.namespace = 'default' AND j.id = r.job_id)
                OR (NOT EXISTS (SELECT 1 FROM drover_allocations a WHERE a.namespace = 'default' AND a.job_id = r.job_id AND a.client_status IN ('pending', 'running')
                        AND a.desired_status = 'run')
                    AND EXISTS (SELECT 1 FROM drover_allocations a WHERE a.namespace = 'default' AND a.job_id = r.job_id
                        AND a.client_status IN ('complete', 'failed', 'lost'))))
            ORDER BY r.due LIMIT \(Int32(limit)) FOR UPDATE OF r SKIP LOCKED
            """
        ).decode((String, Int64, String?, Bool, Int64, Int64, Int64, Int64).self) {
            found.append(
                OpenRun(
                    jobName: name, due: due, jobID: jobID ?? "", registered: registered, complete: Int(complete), failed: Int(failed),
                    live: Int(live), createdAt: created))
        }
        return found
    }

    /// Ends a run.
    public func finish(jobName: String, due: Int64, state: Run.State, reason: String?, at time: Int64) async throws {
        try await sql.query(
            """
            UPDATE drover_schedule_runs SET state = \(state.rawValue), reason = \(reason), finished_at = \(time)
            WHERE job_name = \(jobName) AND due = \(due)
            """)
    }

    /// Writes a job's spec back (its counters), leaving its firing state alone.
    public func updateSpec(_ job: ScheduledJob, index: Int64) async throws {
        try await sql.query(
            "UPDATE drover_scheduled_jobs SET spec = \(try JSONColumn.encode(job))::jsonb, modify_index = \(index) WHERE name = \(job.name)")
    }
}

extension Database {
    public var schedules: ScheduleRepository { ScheduleRepository(SQLRunner(self)) }
}

extension UnitOfWork {
    public var schedules: ScheduleRepository { ScheduleRepository(SQLRunner(self)) }
}
