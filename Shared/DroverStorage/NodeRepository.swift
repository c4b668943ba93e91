public import DroverModel
public import Foundation
import PostgresNIO

/// Nodes (`drover_nodes`) and their heartbeat deadlines (`drover_node_heartbeats`). The spec
/// carries what the agent reported; status, eligibility, drain, health, keepalive and
/// termination are the control plane's and have columns of their own.
public struct NodeRepository: Sendable {
    let sql: SQLRunner

    init(_ sql: SQLRunner) { self.sql = sql }

    // MARK: Reads

    /// Nodes whose id starts with `prefix`, ordered by id.
    public func list(prefix: String = "") async throws -> [Node] {
        try await read("\(unescaped: Self.columns) WHERE id LIKE \(JSONColumn.likePrefix(prefix)) ORDER BY id")
    }

    public func read(id: String) async throws -> Node? {
        try await read("\(unescaped: Self.columns) WHERE id = \(id)").first
    }

    /// A node with the resources that live allocations hold on it (nil: none).
    public struct WithUsage: Sendable {
        public var node: Node
        public var used: Resources?
    }

    /// Every node with the resources live allocations hold on it, in one statement.
    public func withUsage() async throws -> [WithUsage] {
        var nodes: [WithUsage] = []
        for try await row in try await sql.query(
            """
            SELECT \(unescaped: Self.fields), used_cpu, used_memory, used_disk FROM drover_nodes LEFT JOIN (
                SELECT node_id, sum(cpu)::bigint AS used_cpu, sum(memory_mb)::bigint AS used_memory, sum(disk_mb)::bigint AS used_disk
                FROM drover_allocations WHERE desired_status = 'run' AND client_status IN ('pending', 'running') GROUP BY node_id
            ) AS used ON used.node_id = drover_nodes.id
            ORDER BY id
            """
        ) {
            let node = try Self.node(from: row)
            let cells = PostgresRandomAccessRow(row)
            var used: Resources?
            if let cpu = try cells["used_cpu"].decode(Int64?.self), let memory = try cells["used_memory"].decode(Int64?.self),
                let disk = try cells["used_disk"].decode(Int64?.self)
            {
                used = Resources(cpu: Int(cpu), memoryMB: Int(memory), diskMB: Int(disk))
            }
            nodes.append(WithUsage(node: node, used: used))
        }
        return nodes
    }

    /// How many nodes are not down.
    public func liveCount() async throws -> Int {
        for try await count in try await sql.query("SELECT count(*) FROM drover_nodes WHERE status <> 'down'").decode(Int64.self) {
            return Int(count)
        }
        return 0
    }

    /// What ``node(from:)`` reads, in its order.
    private static let fields =
        "spec::text, status, eligibility, drain, drain_strategy::text, last_drain::text, health::text, keepalive_until, termination::text, create_index, modify_index"
    private static let columns = "SELECT \(fields) FROM drover_nodes"

    private func read(_ query: PostgresQuery) async throws -> [Node] {
        var nodes: [Node] = []
        for try await row in try await sql.query(query) { nodes.append(try Self.node(from: row)) }
        return nodes
    }

    /// The node in `row`, whose first columns are ``fields``.
    private static func node(from row: PostgresRow) throws -> Node {
        let (spec, status, eligibility, drain, strategy, lastDrain, health, keepalive, termination, createIndex, modifyIndex) = try row.decode(
            (String, String, String, Bool, String?, String?, String?, Int64?, String?, Int64, Int64).self)
        var node = try JSONColumn.decode(Node.self, spec)
        node.status = Node.Status(rawValue: status) ?? .down
        node.schedulingEligibility = Node.Eligibility(rawValue: eligibility) ?? .ineligible
        node.drain = drain
        node.drainStrategy = try strategy.map { try JSONColumn.decode(DrainStrategy.self, $0) }
        node.lastDrain = try lastDrain.map { try JSONColumn.decode(DrainMetadata.self, $0) }
        node.health = try health.map { try JSONColumn.decode(NodeHealth.self, $0) }
        node.keepaliveUntil = keepalive
        node.termination = try termination.map { try JSONColumn.decode(TerminationRequest.self, $0) }
        node.createIndex = createIndex
        node.modifyIndex = modifyIndex
        return node
    }

    // MARK: Status

    /// The node's status; nil for an unknown node. With `lock`, its row stays locked until the transaction ends.
    public func status(_ nodeID: String, lock: Bool) async throws -> Node.Status? {
        var status: Node.Status?
        for try await text in try await sql.query(
            "SELECT status FROM drover_nodes WHERE id = \(nodeID) \(unescaped: lock ? "FOR UPDATE" : "")"
        ).decode(String.self) {
            status = Node.Status(rawValue: text) ?? .down
        }
        return status
    }

    public func setStatus(_ status: Node.Status, description: String?, nodeID: String, index: Int64) async throws {
        try await sql.query(
            """
            UPDATE drover_nodes SET status = \(status.rawValue), modify_index = \(index),
                spec = jsonb_set(spec, '{StatusDescription}', coalesce(to_jsonb(\(description)::text), 'null'::jsonb))
            WHERE id = \(nodeID)
            """)
    }

    /// The node's reported spec and status, its row locked; nil for an unknown node.
    public func lockReported(_ nodeID: String) async throws -> (spec: Node, status: Node.Status)? {
        var found: (Node, Node.Status)?
        for try await (spec, status) in try await sql.query("SELECT spec::text, status FROM drover_nodes WHERE id = \(nodeID) FOR UPDATE")
            .decode((String, String).self)
        {
            found = (try JSONColumn.decode(Node.self, spec), Node.Status(rawValue: status) ?? .down)
        }
        return found
    }

    /// Records `node` as reported, and ready, at `index`.
    public func upsertReady(_ node: Node, index: Int64) async throws {
        try await sql.query(
            """
            INSERT INTO drover_nodes (id, spec, status, create_index, modify_index)
            VALUES (\(node.id), \(try JSONColumn.encode(node))::jsonb, 'ready', \(index), \(index))
            ON CONFLICT (id) DO UPDATE SET spec = EXCLUDED.spec, status = 'ready', modify_index = EXCLUDED.modify_index
            """)
    }

    /// Locks node `nodeID`'s row. - Returns: whether the node exists.
    public func lock(_ nodeID: String) async throws -> Bool {
        var found = false
        for try await _ in try await sql.query("SELECT id FROM drover_nodes WHERE id = \(nodeID) FOR UPDATE").decode(String.self) { found = true }
        return found
    }

    /// Forgets node `nodeID` and its heartbeat deadline, and leaves a tombstone (purged at
    /// `time`, change `index`) that refuses its registrations until it enrolls again.
    public func delete(_ nodeID: String, at time: Date, index: Int64) async throws {
        try await sql.query(
            """
            WITH heartbeat AS (DELETE FROM drover_node_heartbeats WHERE node_id = \(nodeID)),
                tombstone AS (
                    INSERT INTO drover_node_tombstones (node_id, purged_at, index) VALUES (\(nodeID), \(time), \(index))
                    ON CONFLICT (node_id) DO UPDATE SET purged_at = EXCLUDED.purged_at, index = EXCLUDED.index)
            DELETE FROM drover_nodes WHERE id = \(nodeID)
            """)
    }

    /// When node `nodeID` was purged, if it was and has not enrolled since.
    public func tombstone(_ nodeID: String) async throws -> Date? {
        for try await time in try await sql.query("SELECT purged_at FROM drover_node_tombstones WHERE node_id = \(nodeID)").decode(Date.self) {
            return time
        }
        return nil
    }

    /// Lifts node `nodeID`'s tombstone: it enrolled again.
    public func removeTombstone(_ nodeID: String) async throws {
        try await sql.query("DELETE FROM drover_node_tombstones WHERE node_id = \(nodeID)")
    }

    /// Takes the next index and locks `nodeIDs` (in id order), in one statement.
    public func takeIndexLocking(_ nodeIDs: [String]) async throws -> Int64 {
        var index: Int64 = 0
        for try await (next, _) in try await sql.query(
            """
            WITH next AS MATERIALIZED (
                    SELECT index, pg_notify('drover_state', index::text) FROM (SELECT nextval('drover_index') AS index) AS taken),
                locked AS MATERIALIZED (SELECT id FROM drover_nodes WHERE id = ANY(\(nodeIDs)) ORDER BY id FOR UPDATE)
            SELECT next.index, (SELECT count(*) FROM locked) FROM next
            """
        ).decode((Int64, Int64).self) {
            index = next
        }
        return index
    }

    // MARK: Heartbeat deadlines

    /// Records heartbeat `beat`, received at `now` with `ttl`, due again by `expiresAt`, unless
    /// one as new or newer (by agent start, then sequence) is recorded already. Locks only the
    /// heartbeat's row. - Returns: whether it was recorded.
    public func recordHeartbeat(_ beat: NodeHeartbeat, at now: Date, ttl: Duration, expiresAt: Date?) async throws -> Bool {
        var recorded = false
        for try await _ in try await sql.query(
            """
            INSERT INTO drover_node_heartbeats (node_id, sequence, agent_started_at, last_seen_at, ttl_ms, expires_at)
            VALUES (\(beat.nodeID), \(Int64(clamping: beat.sequence)), \(beat.agentStartedAt), \(now), \(JSONColumn.milliseconds(ttl)), \(expiresAt))
            ON CONFLICT (node_id) DO UPDATE SET
                sequence = EXCLUDED.sequence, agent_started_at = EXCLUDED.agent_started_at, last_seen_at = EXCLUDED.last_seen_at,
                ttl_ms = EXCLUDED.ttl_ms, expires_at = EXCLUDED.expires_at
            WHERE (drover_node_heartbeats.agent_started_at, drover_node_heartbeats.sequence)
                < (EXCLUDED.agent_started_at, EXCLUDED.sequence)
            RETURNING node_id
            """
        ).decode(String.self) {
            recorded = true
        }
        return recorded
    }

    /// Records a registration seen at `now` as a heartbeat with `ttl`: the deadline moves on to
    /// `expiresAt` unless it is later already.
    public func recordRegistration(_ nodeID: String, at now: Date, ttl: Duration, expiresAt: Date?) async throws {
        try await sql.query(
            """
            INSERT INTO drover_node_heartbeats (node_id, sequence, agent_started_at, last_seen_at, ttl_ms, expires_at)
            VALUES (\(nodeID), 0, \(Date(timeIntervalSince1970: 0)), \(now), \(JSONColumn.milliseconds(ttl)), \(expiresAt))
            ON CONFLICT (node_id) DO UPDATE SET expires_at = greatest(drover_node_heartbeats.expires_at, EXCLUDED.expires_at)
            """)
    }

    /// Up to `limit` nodes not down whose deadline is at or before `now`, soonest first, their
    /// rows (and their heartbeats') locked; rows locked elsewhere are skipped.
    public func lockExpired(at now: Date, limit: Int) async throws -> [(id: String, status: Node.Status, expiresAt: Date?)] {
        var expired: [(id: String, status: Node.Status, expiresAt: Date?)] = []
        for try await (id, status, expiresAt) in try await sql.query(
            """
            SELECT n.id, n.status, h.expires_at FROM drover_nodes n JOIN drover_node_heartbeats h ON h.node_id = n.id
            WHERE n.status <> 'down' AND h.expires_at <= \(now)
            ORDER BY h.expires_at LIMIT \(limit) FOR UPDATE OF n, h SKIP LOCKED
            """
        ).decode((String, String, Date?).self) {
            expired.append((id, Node.Status(rawValue: status) ?? .ready, expiresAt))
        }
        return expired
    }

    // MARK: Drain and eligibility

    /// The node's drain and last drain, its row locked; nil for an unknown node.
    public func lockDrain(_ nodeID: String) async throws -> (strategy: DrainStrategy?, last: DrainMetadata?)? {
        var found: (DrainStrategy?, DrainMetadata?)?
        for try await (strategy, last) in try await sql.query(
            "SELECT drain_strategy::text, last_drain::text FROM drover_nodes WHERE id = \(nodeID) FOR UPDATE"
        ).decode((String?, String?).self) {
            found = (
                try strategy.map { try JSONColumn.decode(DrainStrategy.self, $0) }, try last.map { try JSONColumn.decode(DrainMetadata.self, $0) }
            )
        }
        return found
    }

    /// The draining nodes, their rows locked; rows locked elsewhere are skipped.
    public func lockDraining() async throws -> [(id: String, strategy: DrainStrategy)] {
        var draining: [(id: String, strategy: DrainStrategy)] = []
        for try await (id, strategy) in try await sql.query(
            "SELECT id, drain_strategy::text FROM drover_nodes WHERE drain ORDER BY id FOR UPDATE SKIP LOCKED"
        ).decode((String, String).self) {
            draining.append((id, try JSONColumn.decode(DrainStrategy.self, strategy)))
        }
        return draining
    }

    /// Starts (or changes) the node's drain: it becomes ineligible.
    public func startDrain(_ nodeID: String, strategy: DrainStrategy, last: DrainMetadata, index: Int64) async throws {
        try await sql.query(
            """
            UPDATE drover_nodes SET drain = true, eligibility = 'ineligible', drain_strategy = \(try JSONColumn.encode(strategy))::jsonb,
                last_drain = \(try JSONColumn.encode(last))::jsonb, modify_index = \(index)
            WHERE id = \(nodeID)
            """)
    }

    /// Ends the node's drain, recording `last`; with `markEligible` it takes work again.
    public func endDrain(_ nodeID: String, last: DrainMetadata?, markEligible: Bool, index: Int64) async throws {
        try await sql.query(
            """
            UPDATE drover_nodes SET drain = false, drain_strategy = NULL, last_drain = \(try last.map { try JSONColumn.encode($0) })::jsonb,
                eligibility = CASE WHEN \(markEligible) THEN 'eligible' ELSE eligibility END, modify_index = \(index)
            WHERE id = \(nodeID)
            """)
    }

    /// Whether the node drains, its row locked; nil for an unknown node.
    public func lockDraining(_ nodeID: String) async throws -> Bool? {
        var draining: Bool?
        for try await drain in try await sql.query("SELECT drain FROM drover_nodes WHERE id = \(nodeID) FOR UPDATE").decode(Bool.self) {
            draining = drain
        }
        return draining
    }

    public func setEligibility(_ nodeID: String, eligible: Bool, index: Int64) async throws {
        try await sql.query(
            "UPDATE drover_nodes SET eligibility = \(eligible ? "eligible" : "ineligible"), modify_index = \(index) WHERE id = \(nodeID)")
    }

    // MARK: Health, keepalive, termination

    /// The node's keepalive (nanoseconds since 1970; `Int64.max` for ever), its row locked.
    /// - Returns: nil for an unknown node; `.some(nil)` for a node without a keepalive.
    public func lockKeepalive(_ nodeID: String) async throws -> Int64?? {
        var found: Int64??
        for try await value in try await sql.query("SELECT keepalive_until FROM drover_nodes WHERE id = \(nodeID) FOR UPDATE")
            .decode(Int64?.self)
        {
            found = .some(value)
        }
        return found
    }

    /// Records the node's health; makes it ineligible when `ineligible`, and flags it with
    /// `termination` unless it is flagged already.
    public func recordHealth(
        _ nodeID: String, health: NodeHealth, ineligible: Bool, termination: TerminationRequest?, index: Int64
    ) async throws {
        try await sql.query(
            """
            UPDATE drover_nodes SET health = \(try JSONColumn.encode(health))::jsonb, modify_index = \(index),
                eligibility = CASE WHEN \(ineligible) THEN 'ineligible' ELSE eligibility END,
                termination = coalesce(termination, \(try termination.map { try JSONColumn.encode($0) })::jsonb)
            WHERE id = \(nodeID)
            """)
    }

    /// Keeps the node until `until` (nanoseconds; `Int64.max` for ever), lifting a flag set for
    /// reason `lifting`.
    public func setKeepalive(_ nodeID: String, until: Int64, lifting reason: String, index: Int64) async throws {
        try await sql.query(
            """
            UPDATE drover_nodes SET keepalive_until = \(until), modify_index = \(index),
                termination = CASE WHEN termination->>'Reason' = \(reason) THEN NULL ELSE termination END
            WHERE id = \(nodeID)
            """)
    }

    /// Flags the node for termination with `request`; it takes no new work.
    public func requestTermination(_ nodeID: String, _ request: TerminationRequest, index: Int64) async throws {
        try await sql.query(
            """
            UPDATE drover_nodes SET eligibility = 'ineligible', termination = \(try JSONColumn.encode(request))::jsonb, modify_index = \(index)
            WHERE id = \(nodeID)
            """)
    }
}
