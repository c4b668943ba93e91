public import DroverModel
import Foundation
import PostgresNIO

/// Node arrays (`drover_node_arrays`), their machines (`drover_machines`), the targets
/// `drover autoscale` sets, providers' backoffs and each array's last decision. SQL only:
/// what to do with them is the autoscale core's.
public struct NodeArrayRepository: Sendable {
    let sql: SQLRunner

    init(_ sql: SQLRunner) { self.sql = sql }

    /// Takes the autoscale round's lock for this transaction, if no other replica holds it.
    /// - Returns: whether it was taken.
    public func tryLockRound() async throws -> Bool {
        // "AUTOSCAL" in ASCII.
        for try await taken in try await sql.query("SELECT pg_try_advisory_xact_lock(\(Int64(0x4155_544F_5343_414C)))").decode(Bool.self) {
            return taken
        }
        return false
    }

    // MARK: Arrays

    public func arrays() async throws -> [NodeArray] {
        var found: [NodeArray] = []
        for try await (spec, create, modify) in try await sql.query(
            "SELECT spec::text, create_index, modify_index FROM drover_node_arrays ORDER BY name"
        ).decode((String, Int64, Int64).self) {
            var array = try JSONColumn.decode(NodeArray.self, spec)
            array.createIndex = create
            array.modifyIndex = modify
            found.append(array)
        }
        return found
    }

    public func array(named name: String) async throws -> NodeArray? {
        for try await (spec, create, modify) in try await sql.query(
            "SELECT spec::text, create_index, modify_index FROM drover_node_arrays WHERE name = \(name)"
        ).decode((String, Int64, Int64).self) {
            var array = try JSONColumn.decode(NodeArray.self, spec)
            array.createIndex = create
            array.modifyIndex = modify
            return array
        }
        return nil
    }

    /// Creates or replaces the array, at `index`.
    public func upsert(_ array: NodeArray, index: Int64) async throws {
        try await sql.query(
            """
            INSERT INTO drover_node_arrays (name, spec, create_index, modify_index) VALUES (\(array.name), \(try JSONColumn.encode(array))::jsonb, \(index), \(index))
            ON CONFLICT (name) DO UPDATE SET spec = EXCLUDED.spec, modify_index = EXCLUDED.modify_index
            """)
    }

    /// - Returns: whether there was such an array.
    public func delete(name: String) async throws -> Bool {
        try await sql.query("DELETE FROM drover_autoscale_targets WHERE array_name = \(name)")
        try await sql.query("DELETE FROM drover_provider_backoffs WHERE array_name = \(name)")
        try await sql.query("DELETE FROM drover_autoscale_decisions WHERE array_name = \(name)")
        for try await _ in try await sql.query("DELETE FROM drover_node_arrays WHERE name = \(name) RETURNING name").decode(String.self) {
            return true
        }
        return false
    }

    // MARK: Machines

    /// Every machine (of one array, or all), with what their nodes say: running allocations,
    /// when work last ran there, keepalive and termination flag.
    public func machines(array: String? = nil) async throws -> [Machine] {
        var found: [Machine] = []
        for try await row in try await sql.query(
            """
            SELECT m.name, m.array_name, m.state, m.since, m.requested_at, m.node_id, m.deallocate, m.terminating_for_idleness,
                m.terminate_requested_at, n.keepalive_until, n.termination::text,
                CASE WHEN n.spec->'ClusterInit'->>'Status' = 'failed' THEN n.spec->'ClusterInit'->>'Detail' END AS cluster_init_failure,
                (SELECT count(*) FROM drover_allocations a
                    WHERE a.node_id = m.node_id AND a.desired_status = 'run' AND a.client_status IN ('pending', 'running')) AS running,
                (SELECT max((a.spec->>'ModifyTime')::bigint) FROM drover_allocations a WHERE a.node_id = m.node_id) AS last_work
            FROM drover_machines m LEFT JOIN drover_nodes n ON n.id = m.node_id
            WHERE m.array_name = \(array ?? "") OR \(array == nil)
            ORDER BY m.array_name, m.name
            """
        ) {
            let cells = PostgresRandomAccessRow(row)
            let state = try cells["state"].decode(String.self)
            var machine = Machine(
                name: try cells["name"].decode(String.self), array: try cells["array_name"].decode(String.self),
                state: MachineState(rawValue: state) ?? .failed, since: try cells["since"].decode(Int64.self),
                requestedAt: try cells["requested_at"].decode(Int64.self), nodeID: try cells["node_id"].decode(String?.self),
                runningAllocations: Int(try cells["running"].decode(Int64.self)), lastWorkAt: try cells["last_work"].decode(Int64?.self),
                keepaliveUntil: try cells["keepalive_until"].decode(Int64?.self), deallocate: try cells["deallocate"].decode(Bool.self),
                terminatingForIdleness: try cells["terminating_for_idleness"].decode(Bool.self),
                terminateRequestedAt: try cells["terminate_requested_at"].decode(Int64?.self))
            machine.termination = try cells["termination"].decode(String?.self).map { try JSONColumn.decode(TerminationRequest.self, $0) }
            machine.clusterInitFailure = try cells["cluster_init_failure"].decode(String?.self)
            found.append(machine)
        }
        return found
    }

    /// Records new machines (`acquiring`), or puts a known one in the state given.
    public func save(_ machine: Machine, reason: String? = nil) async throws {
        try await sql.query(
            """
            INSERT INTO drover_machines (name, array_name, state, since, requested_at, node_id, deallocate, terminating_for_idleness,
                terminate_requested_at, reason)
            VALUES (\(machine.name), \(machine.array), \(machine.state.rawValue), \(machine.since), \(machine.requestedAt), \(machine.nodeID),
                \(machine.deallocate), \(machine.terminatingForIdleness), \(machine.terminateRequestedAt), \(reason))
            ON CONFLICT (name) DO UPDATE SET state = EXCLUDED.state, since = EXCLUDED.since, requested_at = EXCLUDED.requested_at,
                node_id = EXCLUDED.node_id, deallocate = EXCLUDED.deallocate, terminating_for_idleness = EXCLUDED.terminating_for_idleness,
                terminate_requested_at = EXCLUDED.terminate_requested_at, reason = EXCLUDED.reason
            """)
    }

    /// The reason recorded with each machine's state, by name.
    public func reasons(array: String) async throws -> [String: String] {
        var found: [String: String] = [:]
        for try await (name, reason) in try await sql.query(
            "SELECT name, reason FROM drover_machines WHERE array_name = \(array) AND reason IS NOT NULL"
        ).decode((String, String).self) {
            found[name] = reason
        }
        return found
    }

    public func deleteMachine(name: String) async throws {
        try await sql.query("DELETE FROM drover_machines WHERE name = \(name)")
    }

    // MARK: Targets, backoffs, decisions

    public func targets() async throws -> [ScaleTarget] {
        var found: [ScaleTarget] = []
        for try await (array, cores, count, expires) in try await sql.query(
            "SELECT array_name, core_count, count, expires_at FROM drover_autoscale_targets ORDER BY array_name"
        ).decode((String, Int32?, Int32?, Int64).self) {
            found.append(ScaleTarget(array: array, coreCount: cores.map(Int.init), count: count.map(Int.init), expiresAt: expires))
        }
        return found
    }

    /// Sets the array's target (merging: a request replaces the array's earlier one).
    public func setTarget(_ target: ScaleTarget) async throws {
        try await sql.query(
            """
            INSERT INTO drover_autoscale_targets (array_name, core_count, count, expires_at)
            VALUES (\(target.array), \(target.coreCount.map(Int32.init(clamping:))), \(target.count.map(Int32.init(clamping:))), \(target.expiresAt))
            ON CONFLICT (array_name) DO UPDATE SET core_count = EXCLUDED.core_count, count = EXCLUDED.count, expires_at = EXCLUDED.expires_at
            """)
    }

    public func backoffs() async throws -> [ProviderBackoff] {
        var found: [ProviderBackoff] = []
        for try await (array, failures, until, reason) in try await sql.query(
            "SELECT array_name, failures, until, reason FROM drover_provider_backoffs ORDER BY array_name"
        ).decode((String, Int32, Int64, String).self) {
            found.append(ProviderBackoff(array: array, failures: Int(failures), until: until, reason: reason))
        }
        return found
    }

    public func setBackoff(_ backoff: ProviderBackoff) async throws {
        try await sql.query(
            """
            INSERT INTO drover_provider_backoffs (array_name, failures, until, reason)
            VALUES (\(backoff.array), \(Int32(clamping: backoff.failures)), \(backoff.until), \(backoff.reason))
            ON CONFLICT (array_name) DO UPDATE SET failures = EXCLUDED.failures, until = EXCLUDED.until, reason = EXCLUDED.reason
            """)
    }

    /// A provider that answered: its failures are forgotten.
    public func clearBackoff(array: String) async throws {
        try await sql.query("DELETE FROM drover_provider_backoffs WHERE array_name = \(array)")
    }

    /// Each array's last decision, and when machines were last asked for.
    public func decisions() async throws -> [String: (decision: ArrayDecision, at: Int64, lastScaleUp: Int64?)] {
        var found: [String: (decision: ArrayDecision, at: Int64, lastScaleUp: Int64?)] = [:]
        for try await (array, at, decision, lastScaleUp) in try await sql.query(
            "SELECT array_name, decided_at, decision::text, last_scale_up FROM drover_autoscale_decisions"
        ).decode((String, Int64, String, Int64?).self) {
            found[array] = (try JSONColumn.decode(ArrayDecision.self, decision), at, lastScaleUp)
        }
        return found
    }

    public func recordDecision(_ decision: ArrayDecision, at now: Int64, scaledUp: Bool) async throws {
        try await sql.query(
            """
            INSERT INTO drover_autoscale_decisions (array_name, decided_at, decision, last_scale_up)
            VALUES (\(decision.array), \(now), \(try JSONColumn.encode(decision))::jsonb, \(scaledUp ? now : nil))
            ON CONFLICT (array_name) DO UPDATE SET decided_at = EXCLUDED.decided_at, decision = EXCLUDED.decision,
                last_scale_up = COALESCE(EXCLUDED.last_scale_up, drover_autoscale_decisions.last_scale_up)
            """)
    }
}

extension Database {
    public var nodeArrays: NodeArrayRepository { NodeArrayRepository(SQLRunner(self)) }
}

extension UnitOfWork {
    public var nodeArrays: NodeArrayRepository { NodeArrayRepository(SQLRunner(self)) }
}
