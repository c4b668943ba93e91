import Foundation
public import Logging
public import PostgresNIO

/// One versioned change to the schema: statements run in order in one transaction.
public struct Migration: Sendable {
    public var version: Int
    public var name: String
    public var statements: [String]

    public init(version: Int, name: String, statements: [String]) {
        self.version = version
        self.name = name
        self.statements = statements
    }

    /// What the checksum is taken of: the statements, in order.
    var text: String { statements.joined(separator: "\n;\n") }
}

/// Why the schema cannot be migrated.
public enum MigrationError: Error, CustomStringConvertible, Equatable {
    /// Migrations this build carries differ from what the database ran under the same version.
    case changedAfterApplied([Int])

    public var description: String {
        switch self {
        case .changedAfterApplied(let versions):
            "migration(s) \(versions.map(String.init).joined(separator: ", ")) differ from what this database applied (their checksums in "
                + "drover_schema_migrations do not match); restore them as they were and put the change in a new migration"
        }
    }
}

/// Applies migrations, recorded in `drover_schema_migrations`, safely from many processes at once.
///
/// Everything happens in one transaction that first takes a transaction-scoped advisory lock: a
/// second process starting at the same moment waits for the first to commit, then finds every
/// migration applied and does nothing. A failing migration rolls back all of that run.
///
/// Each applied migration is recorded with the SHA-256 of its statements (PostgreSQL's
/// `sha256`). A build whose migration of an applied version differs is refused with
/// ``MigrationError/changedAfterApplied(_:)`` before anything runs; rows recorded before
/// checksums existed get theirs from the first build that checks. Versions the database has and
/// this build does not (an older build during an upgrade) are left alone.
public struct Migrator: Sendable {
    /// The advisory lock key: "DROVER" in ASCII.
    static let lockKey: Int64 = 0x4452_4F56_4552

    public var migrations: [Migration]

    public init(migrations: [Migration]) {
        precondition(Set(migrations.map(\.version)).count == migrations.count, "migration versions must be unique")
        self.migrations = migrations.sorted { $0.version < $1.version }
    }

    /// - Returns: the versions this call applied, in order (empty when the schema was current).
    /// - Throws: ``MigrationError``, or the error of a failing statement, as itself (as
    ///   ``Database/transaction(_:)`` does).
    @discardableResult
    public func migrate(_ client: PostgresClient, logger: Logger) async throws -> [Int] {
        do {
            return try await migrateOnce(client, logger: logger)
        } catch let error as PostgresTransactionError {
            throw error.bodyError ?? error
        }
    }

    private func migrateOnce(_ client: PostgresClient, logger: Logger) async throws -> [Int] {
        let applied = try await client.withTransaction(logger: logger) { connection -> [Int] in
            try await connection.query("SELECT pg_advisory_xact_lock(\(Self.lockKey))", logger: logger)
            try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS drover_schema_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """, logger: logger)
            try await connection.query("ALTER TABLE drover_schema_migrations ADD COLUMN IF NOT EXISTS checksum text", logger: logger)
            // Every applied version, and whether this build's migration of it matches what ran.
            var done = Set<Int>()
            var changed: [Int] = []
            for try await (version, matches) in try await connection.query(
                """
                SELECT s.version, s.checksum IS NULL OR m.text IS NULL OR s.checksum = encode(sha256(convert_to(m.text, 'UTF8')), 'hex')
                FROM drover_schema_migrations s
                LEFT JOIN unnest(\(migrations.map(\.version))::int[], \(migrations.map(\.text))::text[]) AS m(version, text) USING (version)
                ORDER BY s.version
                """, logger: logger
            ).decode((Int, Bool).self) {
                done.insert(version)
                if !matches { changed.append(version) }
            }
            guard changed.isEmpty else { throw MigrationError.changedAfterApplied(changed) }
            // Rows recorded before checksums existed get theirs now.
            try await connection.query(
                """
                UPDATE drover_schema_migrations s SET checksum = encode(sha256(convert_to(m.text, 'UTF8')), 'hex')
                FROM unnest(\(migrations.map(\.version))::int[], \(migrations.map(\.text))::text[]) AS m(version, text)
                WHERE s.version = m.version AND s.checksum IS NULL
                """, logger: logger)
            var applied: [Int] = []
            for migration in migrations where !done.contains(migration.version) {
                for statement in migration.statements {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query(
                    """
                    INSERT INTO drover_schema_migrations (version, name, checksum)
                    VALUES (\(migration.version), \(migration.name), encode(sha256(convert_to(\(migration.text), 'UTF8')), 'hex'))
                    """, logger: logger)
                applied.append(migration.version)
            }
            return applied
        }
        if !applied.isEmpty { logger.info("Migrations applied", metadata: ["versions": "\(applied)"]) }
        return applied
    }
}

/// Drover's schema, one migration per change. Never edit a migration that has shipped: add one.
public enum DroverSchema {
    public static let migrations: [Migration] = [
        Migration(
            version: 1, name: "outbox and inbox",
            statements: [
                """
                CREATE TABLE drover_outbox (
                    id bigserial PRIMARY KEY,
                    message_id text NOT NULL UNIQUE,
                    exchange text,
                    routing_key text NOT NULL,
                    type text NOT NULL,
                    schema_version integer NOT NULL,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    traceparent text,
                    headers jsonb NOT NULL DEFAULT '{}',
                    body bytea NOT NULL
                )
                """,
                """
                CREATE FUNCTION drover_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    PERFORM pg_notify('drover_outbox', '');
                    RETURN NULL;
                END $$
                """,
                """
                CREATE TRIGGER drover_outbox_inserted AFTER INSERT ON drover_outbox
                FOR EACH STATEMENT EXECUTE FUNCTION drover_outbox_notify()
                """,
                """
                CREATE TABLE drover_inbox (
                    consumer text NOT NULL,
                    message_id text NOT NULL,
                    processed_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (consumer, message_id)
                )
                """,
                "CREATE INDEX drover_inbox_processed_at ON drover_inbox (processed_at)",
            ]),
        Migration(
            version: 2, name: "node heartbeats",
            statements: [
                """
                CREATE TABLE drover_node_heartbeats (
                    node_id text PRIMARY KEY,
                    sequence bigint NOT NULL,
                    agent_started_at timestamptz NOT NULL,
                    last_seen_at timestamptz NOT NULL
                )
                """
            ]),
        Migration(
            version: 3, name: "jobs, nodes, evaluations, allocations",
            statements: [
                // One index for every change, as Nomad's Raft index: X-Nomad-Index and blocking queries read it.
                "CREATE SEQUENCE drover_index",
                """
                CREATE TABLE drover_jobs (
                    id text PRIMARY KEY,
                    version integer NOT NULL,
                    type text NOT NULL,
                    priority integer NOT NULL,
                    stop boolean NOT NULL DEFAULT false,
                    spec jsonb NOT NULL,
                    submit_time bigint NOT NULL,
                    create_index bigint NOT NULL,
                    modify_index bigint NOT NULL,
                    job_modify_index bigint NOT NULL
                )
                """,
                """
                CREATE TABLE drover_job_versions (
                    job_id text NOT NULL,
                    version integer NOT NULL,
                    spec jsonb NOT NULL,
                    PRIMARY KEY (job_id, version)
                )
                """,
                """
                CREATE TABLE drover_nodes (
                    id text PRIMARY KEY,
                    spec jsonb NOT NULL,
                    status text NOT NULL,
                    eligibility text NOT NULL DEFAULT 'eligible',
                    drain boolean NOT NULL DEFAULT false,
                    create_index bigint NOT NULL,
                    modify_index bigint NOT NULL
                )
                """,
                """
                CREATE TABLE drover_evaluations (
                    id text PRIMARY KEY,
                    job_id text NOT NULL,
                    status text NOT NULL,
                    spec jsonb NOT NULL,
                    create_index bigint NOT NULL,
                    modify_index bigint NOT NULL
                )
                """,
                "CREATE INDEX drover_evaluations_job ON drover_evaluations (job_id)",
                "CREATE INDEX drover_evaluations_blocked ON drover_evaluations (job_id) WHERE status = 'blocked'",
                """
                CREATE TABLE drover_allocations (
                    id text PRIMARY KEY,
                    job_id text NOT NULL,
                    job_version integer NOT NULL,
                    node_id text NOT NULL,
                    eval_id text NOT NULL,
                    desired_status text NOT NULL,
                    client_status text NOT NULL,
                    cpu integer NOT NULL,
                    memory_mb integer NOT NULL,
                    disk_mb integer NOT NULL,
                    spec jsonb NOT NULL,
                    report_sequence bigint NOT NULL DEFAULT 0,
                    create_index bigint NOT NULL,
                    modify_index bigint NOT NULL
                )
                """,
                "CREATE INDEX drover_allocations_job ON drover_allocations (job_id)",
                "CREATE INDEX drover_allocations_node ON drover_allocations (node_id)",
                """
                CREATE INDEX drover_allocations_live ON drover_allocations (node_id)
                WHERE desired_status = 'run' AND client_status IN ('pending', 'running')
                """,
            ]),
        Migration(
            version: 4, name: "node liveness",
            statements: [
                // The TTL last handed to the node, and when it goes down without another heartbeat.
                "ALTER TABLE drover_node_heartbeats ADD COLUMN ttl_ms bigint NOT NULL DEFAULT 0, ADD COLUMN expires_at timestamptz",
                "CREATE INDEX drover_node_heartbeats_expiry ON drover_node_heartbeats (expires_at)",
                // Drains are the control plane's, kept apart from what the agent reports in spec.
                "ALTER TABLE drover_nodes ADD COLUMN drain_strategy jsonb, ADD COLUMN last_drain jsonb",
            ]),
        Migration(
            version: 5, name: "events and task output",
            statements: [
                """
                CREATE TABLE drover_events (
                    id bigserial PRIMARY KEY,
                    message_id text UNIQUE,
                    time timestamptz NOT NULL,
                    node_id text,
                    job_id text,
                    alloc_id text,
                    type text NOT NULL,
                    level text NOT NULL,
                    priority text NOT NULL,
                    message text NOT NULL
                )
                """,
                "CREATE INDEX drover_events_time ON drover_events (time)",
                // HealthCheck outcome, keepalive (Unix nanoseconds) and termination request, the control plane's.
                "ALTER TABLE drover_nodes ADD COLUMN health jsonb, ADD COLUMN keepalive_until bigint, ADD COLUMN termination jsonb",
                "CREATE TABLE drover_users (name text PRIMARY KEY, spec jsonb NOT NULL, modify_index bigint NOT NULL)",
                """
                CREATE TABLE drover_issue_reports (
                    id text PRIMARY KEY, node_id text NOT NULL, created_at timestamptz NOT NULL, size bigint NOT NULL, data bytea NOT NULL
                )
                """,
                // Each stream's bytes in chunks keyed by their offset: a chunk delivered twice is stored once.
                """
                CREATE TABLE drover_task_output (
                    alloc_id text NOT NULL,
                    task text NOT NULL,
                    stream text NOT NULL,
                    "offset" bigint NOT NULL,
                    data bytea NOT NULL,
                    received_at timestamptz NOT NULL,
                    PRIMARY KEY (alloc_id, task, stream, "offset")
                )
                """,
                "CREATE INDEX drover_task_output_received ON drover_task_output (received_at)",
                """
                CREATE TABLE drover_task_output_streams (
                    alloc_id text NOT NULL,
                    task text NOT NULL,
                    stream text NOT NULL,
                    node_id text NOT NULL,
                    stored_bytes bigint NOT NULL,
                    end_offset bigint NOT NULL,
                    updated_at timestamptz NOT NULL,
                    PRIMARY KEY (alloc_id, task, stream)
                )
                """,
            ]),
        Migration(
            version: 6, name: "outbox claims",
            statements: [
                // Until when a relay owns a row it is publishing; NULL or past: any relay may take it.
                "ALTER TABLE drover_outbox ADD COLUMN claimed_until timestamptz",
                // Only unclaimed rows wake the relays: claimed ones are on their way already.
                """
                CREATE OR REPLACE FUNCTION drover_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF EXISTS (SELECT 1 FROM inserted WHERE claimed_until IS NULL) THEN
                        PERFORM pg_notify('drover_outbox', '');
                    END IF;
                    RETURN NULL;
                END $$
                """,
                "DROP TRIGGER drover_outbox_inserted ON drover_outbox",
                """
                CREATE TRIGGER drover_outbox_inserted AFTER INSERT ON drover_outbox REFERENCING NEW TABLE AS inserted
                FOR EACH STATEMENT EXECUTE FUNCTION drover_outbox_notify()
                """,
            ]),
        Migration(
            version: 7, name: "no inbox",
            statements: [
                // Every consumer is idempotent through natural keys (see docs/reliability.md, "At least once"):
                // nothing recorded processed message ids here.
                "DROP TABLE drover_inbox"
            ]),
        Migration(
            version: 8, name: "outbox refusals",
            statements: [
                // A message no queue took is kept and tried again later (attempts counts the
                // refusals); one the broker can never take (too large) is set aside, dead, with
                // the reason, and no relay claims it again.
                """
                ALTER TABLE drover_outbox ADD COLUMN attempts integer NOT NULL DEFAULT 0, ADD COLUMN last_error text,
                    ADD COLUMN dead_at timestamptz
                """,
                "CREATE INDEX drover_outbox_dead ON drover_outbox (dead_at) WHERE dead_at IS NOT NULL",
            ]),
        Migration(
            version: 9, name: "reconciliation",
            statements: [
                // When a scheduler was last told of a pending evaluation, and a node of what is
                // wanted of its allocation: what the reconciliation finds stale and sends again.
                "ALTER TABLE drover_evaluations ADD COLUMN notified_at timestamptz NOT NULL DEFAULT now()",
                "ALTER TABLE drover_allocations ADD COLUMN notified_at timestamptz NOT NULL DEFAULT now()",
                """
                CREATE FUNCTION drover_evaluation_notified() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.status IS DISTINCT FROM OLD.status THEN NEW.notified_at = now(); END IF;
                    RETURN NEW;
                END $$
                """,
                """
                CREATE TRIGGER drover_evaluation_status BEFORE UPDATE ON drover_evaluations
                FOR EACH ROW EXECUTE FUNCTION drover_evaluation_notified()
                """,
                """
                CREATE FUNCTION drover_allocation_notified() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.desired_status IS DISTINCT FROM OLD.desired_status THEN NEW.notified_at = now(); END IF;
                    RETURN NEW;
                END $$
                """,
                """
                CREATE TRIGGER drover_allocation_desired_status BEFORE UPDATE ON drover_allocations
                FOR EACH ROW EXECUTE FUNCTION drover_allocation_notified()
                """,
                "CREATE INDEX drover_evaluations_pending ON drover_evaluations (notified_at) WHERE status = 'pending'",
                """
                CREATE INDEX drover_allocations_unsettled ON drover_allocations (notified_at)
                WHERE (desired_status = 'run' AND client_status = 'pending' AND report_sequence = 0)
                    OR (desired_status <> 'run' AND client_status IN ('pending', 'running'))
                """,
            ]),
        Migration(
            version: 10, name: "access control",
            statements: [
                // Secrets are stored as their SHA-256 only; the accessor id is public.
                """
                CREATE TABLE drover_acl_tokens (
                    accessor_id text PRIMARY KEY, secret_hash bytea NOT NULL UNIQUE, name text NOT NULL,
                    type text NOT NULL CHECK (type IN ('client', 'management')), policies text[] NOT NULL, global boolean NOT NULL,
                    create_time timestamptz NOT NULL, expiration_time timestamptz,
                    create_index bigint NOT NULL, modify_index bigint NOT NULL)
                """,
                """
                CREATE TABLE drover_acl_policies (
                    name text PRIMARY KEY, description text NOT NULL, rules text NOT NULL,
                    create_index bigint NOT NULL, modify_index bigint NOT NULL)
                """,
                // One row at most: bootstrap happens once per cluster.
                """
                CREATE TABLE drover_acl_bootstrap (
                    done boolean PRIMARY KEY DEFAULT true CHECK (done), accessor_id text NOT NULL, index bigint NOT NULL)
                """,
            ]),
        Migration(
            version: 11, name: "node identity",
            statements: [
                // One-time tokens an operator makes for nodes to join with; stored as their SHA-256.
                """
                CREATE TABLE drover_enrollment_tokens (
                    accessor_id text PRIMARY KEY, secret_hash bytea NOT NULL UNIQUE, node_id text,
                    created_at timestamptz NOT NULL, expires_at timestamptz NOT NULL, used_at timestamptz, used_by text)
                """,
                // The secret each joined node proves itself with to the gateway; its SHA-256 only.
                "CREATE TABLE drover_node_secrets (node_id text PRIMARY KEY, secret_hash bytea NOT NULL, created_at timestamptz NOT NULL)",
            ]),
        Migration(
            version: 12, name: "node arrays",
            statements: [
                // Times are Unix nanoseconds, as the autoscale core reads them.
                "CREATE TABLE drover_node_arrays (name text PRIMARY KEY, spec jsonb NOT NULL, create_index bigint NOT NULL, modify_index bigint NOT NULL)",
                """
                CREATE TABLE drover_machines (
                    name text PRIMARY KEY, array_name text NOT NULL, state text NOT NULL, since bigint NOT NULL, requested_at bigint NOT NULL,
                    node_id text, deallocate boolean NOT NULL DEFAULT false, terminating_for_idleness boolean NOT NULL DEFAULT false,
                    terminate_requested_at bigint, reason text)
                """,
                "CREATE INDEX drover_machines_array ON drover_machines (array_name)",
                "CREATE UNIQUE INDEX drover_machines_node ON drover_machines (node_id) WHERE node_id IS NOT NULL",
                """
                CREATE TABLE drover_autoscale_targets (
                    array_name text PRIMARY KEY, core_count integer, count integer, expires_at bigint NOT NULL)
                """,
                """
                CREATE TABLE drover_provider_backoffs (
                    array_name text PRIMARY KEY, failures integer NOT NULL, until bigint NOT NULL, reason text NOT NULL)
                """,
                // Each array's last decision, and when machines were last asked for (the cooldown).
                """
                CREATE TABLE drover_autoscale_decisions (
                    array_name text PRIMARY KEY, decided_at bigint NOT NULL, decision jsonb NOT NULL, last_scale_up bigint)
                """,
            ]),
        Migration(
            version: 13, name: "cluster-init projects",
            statements: [
                """
                CREATE TABLE drover_projects (
                    name text NOT NULL, version text NOT NULL, specs text[] NOT NULL, files integer NOT NULL, bytes bigint NOT NULL,
                    uploaded_at bigint NOT NULL, modify_index bigint NOT NULL, PRIMARY KEY (name, version))
                """,
                """
                CREATE TABLE drover_project_files (
                    name text NOT NULL, version text NOT NULL, path text NOT NULL, mode integer NOT NULL, content bytea NOT NULL,
                    PRIMARY KEY (name, version, path),
                    FOREIGN KEY (name, version) REFERENCES drover_projects (name, version) ON DELETE CASCADE)
                """,
                // Exactly one of array_name and node_id; an empty version is the newest upload.
                """
                CREATE TABLE drover_project_assignments (
                    id text PRIMARY KEY, project text NOT NULL, spec text NOT NULL, version text NOT NULL, array_name text, node_id text,
                    create_index bigint NOT NULL, CHECK ((array_name IS NULL) <> (node_id IS NULL)))
                """,
            ]),
        Migration(
            version: 14, name: "scheduled jobs",
            statements: [
                // Times are Unix nanoseconds; next_due is NULL when nothing is due (used up, or a dependent job).
                """
                CREATE TABLE drover_scheduled_jobs (
                    name text PRIMARY KEY, spec jsonb NOT NULL, next_due bigint, remaining integer, disabled boolean NOT NULL DEFAULT false,
                    modify_index bigint NOT NULL)
                """,
                "CREATE INDEX drover_scheduled_jobs_due ON drover_scheduled_jobs (next_due) WHERE NOT disabled AND next_due IS NOT NULL",
                // One row per due time: the key is what makes a run fire once, whichever replica claims it.
                """
                CREATE TABLE drover_schedule_runs (
                    job_name text NOT NULL, due bigint NOT NULL, state text NOT NULL, reason text, job_id text, fired_by text,
                    created_at bigint NOT NULL, finished_at bigint, PRIMARY KEY (job_name, due))
                """,
                "CREATE INDEX drover_schedule_runs_open ON drover_schedule_runs (job_name) WHERE state = 'pending'",
            ]),
        Migration(
            version: 15, name: "event stream",
            statements: [
                // What plugins and the event stream see: every change of a job, allocation,
                // evaluation, node, drain, scheduled job or run, node array or machine, written by
                // triggers in the transaction that makes it. `seq` is the order they are read and
                // published in, given by one sequencer at a time (EventLog.sequence) once they are
                // committed, so that a reader that follows it misses none.
                """
                CREATE TABLE drover_event_log (
                    id bigserial PRIMARY KEY, seq bigint UNIQUE, topic text NOT NULL, type text NOT NULL, routing_type text NOT NULL,
                    key text NOT NULL, namespace text NOT NULL, filter_keys jsonb NOT NULL, index bigint NOT NULL,
                    time timestamptz NOT NULL DEFAULT now(), payload jsonb NOT NULL)
                """,
                "CREATE INDEX drover_event_log_unsequenced ON drover_event_log (id) WHERE seq IS NULL",
                "CREATE INDEX drover_event_log_index ON drover_event_log (index)",
                "CREATE TABLE drover_event_cursor (name text PRIMARY KEY, seq bigint NOT NULL)",
                "INSERT INTO drover_event_cursor (name, seq) VALUES ('published', 0)",
                """
                CREATE FUNCTION drover_event_log_notify() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    PERFORM pg_notify('drover_events', '');
                    RETURN NULL;
                END $$
                """,
                """
                CREATE TRIGGER drover_event_log_inserted AFTER INSERT ON drover_event_log
                FOR EACH STATEMENT EXECUTE FUNCTION drover_event_log_notify()
                """,
                // Events are on unless `UPDATE drover_settings SET value = 'off' WHERE name = 'events'`
                // (at once, for every session).
                "CREATE TABLE drover_settings (name text PRIMARY KEY, value text NOT NULL)",
                "INSERT INTO drover_settings (name, value) VALUES ('events', 'on')",
                """
                CREATE FUNCTION drover_events_on() RETURNS boolean LANGUAGE sql STABLE AS $$
                    SELECT coalesce((SELECT value FROM drover_settings WHERE name = 'events'), 'on') <> 'off'
                $$
                """,
                // The index of the transaction, for rows that carry none of their own.
                """
                CREATE FUNCTION drover_current_index() RETURNS bigint LANGUAGE plpgsql AS $$
                BEGIN
                    RETURN currval('drover_index');
                EXCEPTION WHEN object_not_in_prerequisite_state THEN
                    RETURN (SELECT last_value FROM drover_index);
                END $$
                """,
                // A job as GET /v1/job/:id shows it: its status derived as Job.derivedStatus does.
                """
                CREATE FUNCTION drover_job_object(spec jsonb, stopped boolean, of_job text) RETURNS jsonb LANGUAGE sql STABLE AS $$
                    SELECT spec || jsonb_build_object('Status', CASE
                        WHEN stopped THEN 'dead'
                        WHEN coalesce((spec->'Periodic'->>'Enabled')::boolean, false) THEN 'running'
                        WHEN EXISTS (SELECT 1 FROM drover_allocations a WHERE a.job_id = of_job AND a.desired_status = 'run'
                            AND a.client_status IN ('pending', 'running')) THEN 'running'
                        WHEN coalesce(spec->>'Type', 'service') = 'batch'
                            AND NOT EXISTS (SELECT 1 FROM drover_evaluations e WHERE e.job_id = of_job AND e.status IN ('pending', 'blocked'))
                            AND EXISTS (SELECT 1 FROM drover_allocations a WHERE a.job_id = of_job) THEN 'dead'
                        ELSE 'pending' END)
                $$
                """,
                // A node as GET /v1/node/:id shows it (NodeRepository.node(from:)), and its drains
                // under the topic NodeDrain.
                """
                CREATE FUNCTION drover_node_object(n drover_nodes) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
                    SELECT jsonb_strip_nulls(jsonb_build_object('DrainStrategy', n.drain_strategy, 'LastDrain', n.last_drain, 'Health', n.health,
                        'KeepaliveUntil', n.keepalive_until, 'Termination', n.termination))
                        || (n.spec - 'DrainStrategy' - 'LastDrain' - 'Health' - 'KeepaliveUntil' - 'Termination')
                        || jsonb_build_object('Status', n.status, 'SchedulingEligibility', n.eligibility, 'Drain', n.drain,
                            'CreateIndex', n.create_index, 'ModifyIndex', n.modify_index)
                $$
                """,
            ]
                + EventTrigger.statements([
                    EventTrigger(
                        table: "drover_jobs", function: "drover_job_events", deletes: true,
                        body: """
                            BEGIN
                                IF NOT drover_events_on() THEN RETURN NULL; END IF;
                                IF TG_OP = 'DELETE' THEN
                                    INSERT INTO drover_event_log (topic, type, routing_type, key, namespace, filter_keys, index, payload)
                                    SELECT 'Job', 'JobDeregistered', 'purged', o.id, coalesce(o.spec->>'Namespace', 'default'), '[]', drover_current_index(),
                                        jsonb_build_object('Job', drover_job_object(o.spec, true, o.id))
                                    FROM old_rows o;
                                ELSE
                                    INSERT INTO drover_event_log (topic, type, routing_type, key, namespace, filter_keys, index, payload)
                                    SELECT 'Job', CASE WHEN n.stop THEN 'JobDeregistered' ELSE 'JobRegistered' END,
                                        CASE WHEN n.stop THEN 'deregistered' ELSE 'registered' END, n.id, coalesce(n.spec->>'Namespace', 'default'), '[]',
                                        n.modify_index, jsonb_build_object('Job', drover_job_object(n.spec, n.stop, n.id))
                                    FROM new_rows n
                                    WHERE TG_OP = 'INSERT' OR EXISTS (SELECT 1 FROM old_rows o WHERE o.id = n.id
                                        AND (o.spec IS DISTINCT FROM n.spec OR o.stop IS DISTINCT FROM n.stop OR o.version IS DISTINCT FROM n.version));
                                END IF;
                                RETURN NULL;
                            """),
                    EventTrigger(
                        table: "drover_allocations", function: "drover_allocation_events", deletes: false,
                        body: """
                            BEGIN
                                IF NOT drover_events_on() THEN RETURN NULL; END IF;
                                INSERT INTO drover_event_log (topic, type, routing_type, key, namespace, filter_keys, index, payload)
                                SELECT 'Allocation',
                                    CASE WHEN o.id IS NULL THEN 'AllocationCreated'
                                        WHEN o.desired_status IS DISTINCT FROM n.desired_status THEN 'AllocationUpdateDesiredStatus'
                                        ELSE 'AllocationUpdated' END,
                                    CASE WHEN o.id IS NULL THEN 'placed'
                                        WHEN o.desired_status IS DISTINCT FROM n.desired_status THEN n.desired_status
                                        ELSE n.client_status END,
                                    n.id, coalesce(n.spec->>'Namespace', 'default'), jsonb_build_array(n.job_id, n.node_id), n.modify_index,
                                    jsonb_build_object('Allocation', n.spec - 'Job')
                                FROM new_rows n LEFT JOIN old_rows o ON o.id = n.id
                                WHERE o.id IS NULL OR o.spec IS DISTINCT FROM n.spec OR o.client_status IS DISTINCT FROM n.client_status
                                    OR o.desired_status IS DISTINCT FROM n.desired_status
                                ORDER BY n.id;
                                RETURN NULL;
                            """),
                    EventTrigger(
                        table: "drover_evaluations", function: "drover_evaluation_events", deletes: false,
                        body: """
                            BEGIN
                                IF NOT drover_events_on() THEN RETURN NULL; END IF;
                                INSERT INTO drover_event_log (topic, type, routing_type, key, namespace, filter_keys, index, payload)
                                SELECT 'Evaluation', 'EvaluationUpdated', n.status, n.id, coalesce(n.spec->>'Namespace', 'default'),
                                    jsonb_build_array(n.job_id), n.modify_index, jsonb_build_object('Evaluation', n.spec)
                                FROM new_rows n LEFT JOIN old_rows o ON o.id = n.id
                                WHERE o.id IS NULL OR o.spec IS DISTINCT FROM n.spec OR o.status IS DISTINCT FROM n.status
                                ORDER BY n.id;
                                RETURN NULL;
                            """),
                    EventTrigger(
                        table: "drover_nodes", function: "drover_node_events", deletes: true,
                        body: """
                            BEGIN
                                IF NOT drover_events_on() THEN RETURN NULL; END IF;
                                IF TG_OP = 'DELETE' THEN
                                    INSERT INTO drover_event_log (topic, type, routing_type, key, namespace, filter_keys, index, payload)
                                    SELECT 'Node', 'NodeDeregistration', 'purged', o.id, '', '[]', drover_current_index(),
                                        jsonb_build_object('Node', drover_node_object(o))
                                    FROM old_rows o ORDER BY o.id;
                                    RETURN NULL;
                                END IF;
                                INSERT INTO drover_event_log (topic, type, routing_type, key, namespace, filter_keys, index, payload)
                                SELECT e.topic, e.type, e.routing_type, n.id, '', '[]', n.modify_index, jsonb_build_object('Node', drover_node_object(n))
                                FROM new_rows n LEFT JOIN old_rows o ON o.id = n.id
                                CROSS JOIN LATERAL (VALUES
                                    ('Node', 'NodeRegistration', 'registered', o.id IS NULL OR (o.spec IS DISTINCT FROM n.spec AND o.status = n.status), 1),
                                    ('Node', 'NodeEvent', n.status, o.id IS NOT NULL AND o.status IS DISTINCT FROM n.status, 2),
                                    ('Node', 'NodeEligibility', n.eligibility, o.id IS NOT NULL AND o.eligibility IS DISTINCT FROM n.eligibility, 3),
                                    ('NodeDrain', 'NodeDrain', CASE WHEN n.drain THEN 'started' ELSE 'complete' END,
                                        o.id IS NOT NULL AND o.drain IS DISTINCT FROM n.drain, 4),
                                    ('NodeDrain', 'NodeDrain', 'updated',
                                        o.id IS NOT NULL AND o.drain = n.drain AND n.drain AND o.drain_strategy IS DISTINCT FROM n.drain_strategy, 5),
                                    ('Node', 'NodeEvent', 'updated', o.id IS NOT NULL AND o.status = n.status AND o.eligibility = n.eligibility
                                        AND o.drain = n.drain AND o.spec = n.spec
                                        AND (o.health IS DISTINCT FROM n.health OR o.keepalive_until IS DISTINCT FROM n.keepalive_until
                                            OR o.termination IS DISTINCT FROM n.termination), 6)
                                ) AS e(topic, type, routing_type, happened, position)
                                WHERE e.happened
                                ORDER BY n.id, e.position;
                                RETURN NULL;
                            """),
                    EventTrigger(
                        table: "drover_scheduled_jobs", function: "drover_schedule_events", deletes: true,
                        body: """
                            BEGIN
                                IF NOT drover_events_on() THEN RETURN NULL; END IF;
                                IF TG_OP = 'DELETE' THEN
                                    INSERT INTO drover_event_log (topic, type, routing_type, key, namespace, filter_keys, index, payload)
                                    SELECT 'Schedule', 'ScheduleDeleted', 'deleted', o.name, 'default', '[]', drover_current_index(),
                                        jsonb_build_object('ScheduledJob', o.spec)
                                    FROM old_rows o ORDER BY o.name;
                                    RETURN NULL;
                                END IF;
                                -- A job moving on to its next due time is not news; its runs are.
                                INSERT INTO drover_event_log (topic, type, routing_type, key, namespace, filter_keys, index, payload)
                                SELECT 'Schedule', 'ScheduleUpdated', CASE WHEN n.disabled THEN 'disabled' ELSE 'defined' END, n.name, 'default', '[]',
                                    n.modify_index, jsonb_build_object('ScheduledJob', n.spec)
                                FROM new_rows n LEFT JOIN old_rows o ON o.name = n.name
                                WHERE o.name IS NULL OR o.spec IS DISTINCT FROM n.spec OR o.disabled IS DISTINCT FROM n.disabled
                                ORDER BY n.name;
                                RETURN NULL;
                            """),
                    EventTrigger(
                        table: "drover_schedule_runs", function: "drover_schedule_run_events", deletes: false,
                        body: """
                            BEGIN
                                IF NOT drover_events_on() THEN RETURN NULL; END IF;
                                INSERT INTO drover_event_log (topic, type, routing_type, key, namespace, filter_keys, index, payload)
                                SELECT 'Schedule', 'ScheduleRun', CASE WHEN n.state = 'pending' THEN 'fired' ELSE n.state END, n.job_name, 'default',
                                    jsonb_build_array(coalesce(n.job_id, '')), drover_current_index(),
                                    jsonb_build_object('Run', jsonb_strip_nulls(jsonb_build_object('Name', n.job_name, 'Due', n.due, 'State', n.state,
                                        'Reason', n.reason, 'JobID', n.job_id, 'FiredBy', n.fired_by, 'CreatedAt', n.created_at, 'FinishedAt', n.finished_at)))
                                FROM new_rows n LEFT JOIN old_rows o ON o.job_name = n.job_name AND o.due = n.due
                                WHERE o.job_name IS NULL OR o.state IS DISTINCT FROM n.state
                                ORDER BY n.job_name, n.due;
                                RETURN NULL;
                            """),
                    EventTrigger(
                        table: "drover_node_arrays", function: "drover_node_array_events", deletes: true,
                        body: """
                            BEGIN
                                IF NOT drover_events_on() THEN RETURN NULL; END IF;
                                IF TG_OP = 'DELETE' THEN
                                    INSERT INTO drover_event_log (topic, type, routing_type, key, namespace, filter_keys, index, payload)
                                    SELECT 'NodeArray', 'NodeArrayDeleted', 'deleted', o.name, '', '[]', drover_current_index(),
                                        jsonb_build_object('NodeArray', o.spec)
                                    FROM old_rows o ORDER BY o.name;
                                    RETURN NULL;
                                END IF;
                                INSERT INTO drover_event_log (topic, type, routing_type, key, namespace, filter_keys, index, payload)
                                SELECT 'NodeArray', 'NodeArrayUpdated', 'updated', n.name, '', '[]', n.modify_index, jsonb_build_object('NodeArray', n.spec)
                                FROM new_rows n LEFT JOIN old_rows o ON o.name = n.name
                                WHERE o.name IS NULL OR o.spec IS DISTINCT FROM n.spec
                                ORDER BY n.name;
                                RETURN NULL;
                            """),
                    EventTrigger(
                        table: "drover_machines", function: "drover_machine_events", deletes: false,
                        body: """
                            BEGIN
                                IF NOT drover_events_on() THEN RETURN NULL; END IF;
                                INSERT INTO drover_event_log (topic, type, routing_type, key, namespace, filter_keys, index, payload)
                                SELECT 'NodeArray', 'MachineUpdated', n.state, n.name, '', jsonb_build_array(n.array_name, coalesce(n.node_id, '')),
                                    drover_current_index(),
                                    jsonb_build_object('Machine', jsonb_strip_nulls(jsonb_build_object('Name', n.name, 'NodeArray', n.array_name,
                                        'State', n.state, 'Since', n.since, 'NodeID', n.node_id, 'Reason', n.reason)))
                                FROM new_rows n LEFT JOIN old_rows o ON o.name = n.name
                                WHERE o.name IS NULL OR o.state IS DISTINCT FROM n.state
                                ORDER BY n.name;
                                RETURN NULL;
                            """),
                ])),
        Migration(
            version: 16, name: "namespaces",
            statements: [
                // Namespaces are objects, as in Nomad; `default` always exists (the gateway refuses
                // to delete it). A job names one that exists (the foreign key), and a namespace that
                // still holds jobs cannot be deleted.
                """
                CREATE TABLE drover_namespaces (
                    name text PRIMARY KEY, description text NOT NULL DEFAULT '', meta jsonb NOT NULL DEFAULT '{}', capabilities jsonb,
                    create_index bigint NOT NULL, modify_index bigint NOT NULL)
                """,
                "INSERT INTO drover_namespaces (name, description, create_index, modify_index) VALUES ('default', 'Default shared namespace', 0, 0)",
                // Jobs registered before namespaces were objects keep the namespace they named.
                """
                INSERT INTO drover_namespaces (name, create_index, modify_index)
                SELECT DISTINCT spec->>'Namespace', 0, 0 FROM drover_jobs WHERE spec->>'Namespace' IS NOT NULL ON CONFLICT DO NOTHING
                """,
                // What follows rewrites rows, not what they mean: no events for it.
                "ALTER TABLE drover_jobs DISABLE TRIGGER USER",
                "ALTER TABLE drover_evaluations DISABLE TRIGGER USER",
                "ALTER TABLE drover_allocations DISABLE TRIGGER USER",
                "ALTER TABLE drover_jobs ADD COLUMN namespace text NOT NULL DEFAULT 'default' REFERENCES drover_namespaces (name)",
                """
                UPDATE drover_jobs SET namespace = coalesce(spec->>'Namespace', 'default'),
                    spec = jsonb_set(spec, '{Namespace}', to_jsonb(coalesce(spec->>'Namespace', 'default')))
                """,
                "CREATE INDEX drover_jobs_namespace ON drover_jobs (namespace, id)",
                // An evaluation's and an allocation's namespace is their job's, as a column (for
                // lists and checks) and in the spec (for answers, messages and events).
                "ALTER TABLE drover_evaluations ADD COLUMN namespace text NOT NULL DEFAULT 'default'",
                """
                UPDATE drover_evaluations e SET namespace = coalesce(j.namespace, 'default'),
                    spec = jsonb_set(e.spec, '{Namespace}', to_jsonb(coalesce(j.namespace, 'default')))
                FROM drover_evaluations e2 LEFT JOIN drover_jobs j ON j.id = e2.job_id WHERE e2.id = e.id
                """,
                "CREATE INDEX drover_evaluations_namespace ON drover_evaluations (namespace, create_index)",
                "ALTER TABLE drover_allocations ADD COLUMN namespace text NOT NULL DEFAULT 'default'",
                """
                UPDATE drover_allocations a SET namespace = coalesce(j.namespace, 'default'),
                    spec = jsonb_set(a.spec, '{Namespace}', to_jsonb(coalesce(j.namespace, 'default')))
                FROM drover_allocations a2 LEFT JOIN drover_jobs j ON j.id = a2.job_id WHERE a2.id = a.id
                """,
                "CREATE INDEX drover_allocations_namespace ON drover_allocations (namespace, create_index)",
                "ALTER TABLE drover_jobs ENABLE TRIGGER USER",
                "ALTER TABLE drover_evaluations ENABLE TRIGGER USER",
                "ALTER TABLE drover_allocations ENABLE TRIGGER USER",
            ]),
        Migration(
            version: 17, name: "jobs keyed by namespace",
            statements: [
                // A job is (namespace, id): the same id lives in two namespaces side by side. What
                // names a job (its versions, evaluations, allocations, events) names both.
                "ALTER TABLE drover_job_versions ADD COLUMN namespace text NOT NULL DEFAULT 'default'",
                "UPDATE drover_job_versions v SET namespace = j.namespace FROM drover_jobs j WHERE j.id = v.job_id AND j.namespace <> 'default'",
                "ALTER TABLE drover_job_versions DROP CONSTRAINT drover_job_versions_pkey",
                "ALTER TABLE drover_job_versions ADD PRIMARY KEY (namespace, job_id, version)",
                "ALTER TABLE drover_jobs DROP CONSTRAINT drover_jobs_pkey",
                "ALTER TABLE drover_jobs ADD PRIMARY KEY (namespace, id)",
                "DROP INDEX drover_jobs_namespace",
                "DROP INDEX drover_evaluations_job",
                "DROP INDEX drover_evaluations_blocked",
                "CREATE INDEX drover_evaluations_job ON drover_evaluations (namespace, job_id)",
                "CREATE INDEX drover_evaluations_blocked ON drover_evaluations (namespace, job_id) WHERE status = 'blocked'",
                "DROP INDEX drover_allocations_job",
                "CREATE INDEX drover_allocations_job ON drover_allocations (namespace, job_id)",
                "ALTER TABLE drover_events ADD COLUMN namespace text",
                "UPDATE drover_events e SET namespace = j.namespace FROM drover_jobs j WHERE j.id = e.job_id",
                // The job's status, as its events show it, from the allocations of its namespace.
                """
                CREATE OR REPLACE FUNCTION drover_job_object(spec jsonb, stopped boolean, of_job text) RETURNS jsonb LANGUAGE sql STABLE AS $$
                    SELECT spec || jsonb_build_object('Status', CASE
                        WHEN stopped THEN 'dead'
                        WHEN coalesce((spec->'Periodic'->>'Enabled')::boolean, false) THEN 'running'
                        WHEN EXISTS (SELECT 1 FROM drover_allocations a WHERE a.namespace = coalesce(spec->>'Namespace', 'default')
                            AND a.job_id = of_job AND a.desired_status = 'run' AND a.client_status IN ('pending', 'running')) THEN 'running'
                        WHEN coalesce(spec->>'Type', 'service') = 'batch'
                            AND NOT EXISTS (SELECT 1 FROM drover_evaluations e WHERE e.namespace = coalesce(spec->>'Namespace', 'default')
                                AND e.job_id = of_job AND e.status IN ('pending', 'blocked'))
                            AND EXISTS (SELECT 1 FROM drover_allocations a WHERE a.namespace = coalesce(spec->>'Namespace', 'default')
                                AND a.job_id = of_job) THEN 'dead'
                        ELSE 'pending' END)
                $$
                """,
            ]),
        Migration(
            version: 18, name: "ACL roles",
            statements: [
                """
                CREATE TABLE drover_acl_roles (
                    id text PRIMARY KEY, name text NOT NULL UNIQUE, description text NOT NULL, policies text[] NOT NULL,
                    create_index bigint NOT NULL, modify_index bigint NOT NULL)
                """,
                // A token's roles, by id; a deleted role's id stays and grants nothing.
                "ALTER TABLE drover_acl_tokens ADD COLUMN roles text[] NOT NULL DEFAULT '{}'",
            ]),
        Migration(
            version: 19, name: "node tombstones",
            statements: [
                // A purged node's registrations are refused until it enrolls again: one still queued
                // when it was purged does not bring it back.
                "CREATE TABLE drover_node_tombstones (node_id text PRIMARY KEY, purged_at timestamptz NOT NULL, index bigint NOT NULL)"
            ]),
        Migration(
            version: 20, name: "job status in PL/pgSQL",
            statements: [
                // The same status as version 17's, with the namespace in a variable. As a SQL
                // function, called once per row of an event trigger, its lookups were planned
                // with the namespace as an expression of the job's spec and cost some 100 buffer
                // reads a job; PL/pgSQL keeps one plan per session that uses the indexes.
                """
                CREATE OR REPLACE FUNCTION drover_job_object(spec jsonb, stopped boolean, of_job text) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
                DECLARE
                    job_namespace text := coalesce(spec->>'Namespace', 'default');
                BEGIN
                    RETURN spec || jsonb_build_object('Status', CASE
                        WHEN stopped THEN 'dead'
                        WHEN coalesce((spec->'Periodic'->>'Enabled')::boolean, false) THEN 'running'
                        WHEN EXISTS (SELECT 1 FROM drover_allocations a WHERE a.namespace = job_namespace AND a.job_id = of_job
                            AND a.desired_status = 'run' AND a.client_status IN ('pending', 'running')) THEN 'running'
                        WHEN coalesce(spec->>'Type', 'service') = 'batch'
                            AND NOT EXISTS (SELECT 1 FROM drover_evaluations e WHERE e.namespace = job_namespace AND e.job_id = of_job
                                AND e.status IN ('pending', 'blocked'))
                            AND EXISTS (SELECT 1 FROM drover_allocations a WHERE a.namespace = job_namespace AND a.job_id = of_job) THEN 'dead'
                        ELSE 'pending' END);
                END $$
                """
            ]),
        Migration(
            version: 21, name: "enrollment join keys",
            statements: [
                // The SHA-256 of the key an agent drew for its join: the same agent asking again
                // with the same token and key (its first answer lost) joins again instead of
                // being refused for a token it used itself.
                "ALTER TABLE drover_enrollment_tokens ADD COLUMN join_key_hash bytea"
            ]),
    ]
}

/// A table whose changes are events (``Migrations`` version 15): its trigger function, made
/// twice (for inserts, and for updates and deletes), and its statement triggers. A statement
/// trigger sees the rows a statement changed as tables (`new_rows`, `old_rows`), so a statement
/// that writes a thousand allocations writes their events in one insert; an insert has no
/// `old_rows`, so its function reads an empty table of the same rows in its place.
struct EventTrigger {
    var table: String
    var function: String
    var deletes: Bool
    /// The function's body from `BEGIN`, without its `END`.
    var body: String

    static func statements(_ triggers: [EventTrigger]) -> [String] {
        triggers.flatMap { trigger in
            let function = { (name: String, body: String) in
                "CREATE FUNCTION \(name)() RETURNS trigger LANGUAGE plpgsql AS $$\n\(body)\nEND $$"
            }
            var statements = [
                function(trigger.function, trigger.body),
                function(
                    trigger.function + "_inserted", trigger.body.replacingOccurrences(of: "old_rows", with: "(SELECT * FROM new_rows WHERE false)")),
                """
                CREATE TRIGGER \(trigger.function)_inserted AFTER INSERT ON \(trigger.table) REFERENCING NEW TABLE AS new_rows
                FOR EACH STATEMENT EXECUTE FUNCTION \(trigger.function)_inserted()
                """,
                """
                CREATE TRIGGER \(trigger.function)_updated AFTER UPDATE ON \(trigger.table) REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
                FOR EACH STATEMENT EXECUTE FUNCTION \(trigger.function)()
                """,
            ]
            if trigger.deletes {
                statements.append(
                    """
                    CREATE TRIGGER \(trigger.function)_deleted AFTER DELETE ON \(trigger.table) REFERENCING OLD TABLE AS old_rows
                    FOR EACH STATEMENT EXECUTE FUNCTION \(trigger.function)()
                    """)
            }
            return statements
        }
    }
}
