public import DroverModel
import PostgresNIO

/// Allocations (`drover_allocations`). Lists carry no job; a single read (``read(id:)``) carries
/// the job version the allocation runs.
public struct AllocationRepository: Sendable {
    let sql: SQLRunner

    init(_ sql: SQLRunner) { self.sql = sql }

    // MARK: Reads

    /// The allocations of `job`, else of `nodeID`, else those whose id starts with `prefix`, oldest first.
    /// - Parameter namespaces: only those of these namespaces; nil: of every namespace.
    public func list(job: JobKey? = nil, nodeID: String? = nil, prefix: String = "", namespaces: [String]? = nil) async throws -> [Allocation] {
        let query: PostgresQuery
        if let job {
            query = "SELECT spec::text FROM drover_allocations WHERE namespace = \(job.namespace) AND job_id = \(job.id) ORDER BY create_index, id"
        } else if let nodeID {
            query = "SELECT spec::text FROM drover_allocations WHERE node_id = \(nodeID) ORDER BY create_index, id"
        } else if let namespaces {
            query = """
                SELECT spec::text FROM drover_allocations WHERE namespace = ANY(\(namespaces)) AND id LIKE \(JSONColumn.likePrefix(prefix))
                ORDER BY create_index, id
                """
        } else {
            query = "SELECT spec::text FROM drover_allocations WHERE id LIKE \(JSONColumn.likePrefix(prefix)) ORDER BY create_index, id"
        }
        return try await specs(query)
    }

    public func read(id: String) async throws -> Allocation? {
        var found: Allocation?
        for try await (spec, job) in try await sql.query(
            """
            SELECT a.spec::text, v.spec::text FROM drover_allocations a
            LEFT JOIN drover_job_versions v ON v.namespace = a.namespace AND v.job_id = a.job_id AND v.version = a.job_version
            WHERE a.id = \(id)
            """
        ).decode((String, String?).self) {
            var allocation = try JSONColumn.decode(Allocation.self, spec)
            allocation.job = try job.map { try JSONColumn.decode(Job.self, $0) }
            found = allocation
        }
        return found
    }

    /// The node allocation `id` is on; nil when there is no such allocation.
    public func nodeID(of id: String) async throws -> String? {
        var node: String?
        for try await value in try await sql.query("SELECT node_id FROM drover_allocations WHERE id = \(id)").decode(String.self) { node = value }
        return node
    }

    /// The allocations `ids` that exist.
    public func read(ids: [String]) async throws -> [Allocation] {
        try await specs("SELECT spec::text FROM drover_allocations WHERE id = ANY(\(ids)) ORDER BY id")
    }

    /// The allocations on `nodeID` that the control plane stopped and found lost.
    public func lost(onNode nodeID: String) async throws -> [Allocation] {
        try await specs(
            "SELECT spec::text FROM drover_allocations WHERE node_id = \(nodeID) AND desired_status = 'stop' AND client_status = 'lost' ORDER BY id")
    }

    /// Those of allocations `ids` that still run on a draining node, waiting for their replacement.
    public func migrating(_ ids: [String]) async throws -> Set<String> {
        guard !ids.isEmpty else { return [] }
        var migrating: Set<String> = []
        for try await id in try await sql.query(
            """
            SELECT a.id FROM drover_allocations a JOIN drover_nodes n ON n.id = a.node_id
            WHERE a.id = ANY(\(ids)) AND n.drain AND a.desired_status = 'run' AND a.client_status IN ('pending', 'running')
            """
        ).decode(String.self) {
            migrating.insert(id)
        }
        return migrating
    }

    /// What a drain weighs of one allocation on its node.
    public struct OnDrainingNode: Sendable {
        public var id: String
        /// Whether it belongs to a system job.
        public var system: Bool
        /// Whether the control plane still wants it to run.
        public var wanted: Bool
        /// Whether the node still runs it (pending or running).
        public var running: Bool
    }

    /// Every allocation on `nodeID`, as a drain weighs it.
    public func onNode(_ nodeID: String) async throws -> [OnDrainingNode] {
        var allocations: [OnDrainingNode] = []
        for try await (id, system, wanted, running) in try await sql.query(
            """
            SELECT a.id, coalesce(j.type = 'system', false), a.desired_status = 'run', a.client_status IN ('pending', 'running')
            FROM drover_allocations a LEFT JOIN drover_jobs j ON j.namespace = a.namespace AND j.id = a.job_id WHERE a.node_id = \(nodeID)
            ORDER BY a.id
            """
        ).decode((String, Bool, Bool, Bool).self) {
            allocations.append(OnDrainingNode(id: id, system: system, wanted: wanted, running: running))
        }
        return allocations
    }

    private func specs(_ query: PostgresQuery) async throws -> [Allocation] {
        var allocations: [Allocation] = []
        for try await spec in try await sql.query(query).decode(String.self) { allocations.append(try JSONColumn.decode(Allocation.self, spec)) }
        return allocations
    }

    // MARK: Writes

    /// The allocations that replace `ids` (their `PreviousAllocation`), rows locked, by the id
    /// they replace.
    public func lockReplacements(of ids: [String]) async throws -> [String: Allocation] {
        var replacements: [String: Allocation] = [:]
        for allocation in try await specs(
            "SELECT spec::text FROM drover_allocations WHERE spec->>'PreviousAllocation' = ANY(\(ids)) ORDER BY id FOR UPDATE")
        {
            if let previous = allocation.previousAllocation { replacements[previous] = allocation }
        }
        return replacements
    }

    /// Up to `limit` allocations on nodes that are not down whose node has not acknowledged what
    /// is wanted of it for more than `age`: never reported although it should run, or still
    /// pending or running although it should stop. Each comes with its job and is marked told
    /// now, so that it is sent again once per `age` at most, by one caller.
    public func claimUnacknowledged(olderThan age: Duration, limit: Int) async throws -> [Allocation] {
        var allocations: [Allocation] = []
        let rows = try await sql.query(
            """
            WITH stale AS (
                UPDATE drover_allocations SET notified_at = now() WHERE id IN (
                    SELECT a.id FROM drover_allocations a JOIN drover_nodes n ON n.id = a.node_id
                    WHERE n.status <> 'down' AND a.notified_at < now() - make_interval(secs => \(age.timeInterval))
                        AND ((a.desired_status = 'run' AND a.client_status = 'pending' AND a.report_sequence = 0)
                            OR (a.desired_status <> 'run' AND a.client_status IN ('pending', 'running')))
                    ORDER BY a.notified_at LIMIT \(limit) FOR UPDATE OF a SKIP LOCKED)
                RETURNING id, namespace, job_id, job_version, spec)
            SELECT s.spec::text, v.spec::text FROM stale s
            LEFT JOIN drover_job_versions v ON v.namespace = s.namespace AND v.job_id = s.job_id AND v.version = s.job_version
            ORDER BY s.id
            """)
        for try await (spec, job) in rows.decode((String, String?).self) {
            var allocation = try JSONColumn.decode(Allocation.self, spec)
            allocation.job = try job.map { try JSONColumn.decode(Job.self, $0) }
            allocations.append(allocation)
        }
        return allocations
    }

    /// Allocation `id`, its row locked; nil when there is none.
    public func lock(_ id: String) async throws -> Allocation? {
        try await specs("SELECT spec::text FROM drover_allocations WHERE id = \(id) FOR UPDATE").first
    }

    /// The allocations `ids` with the sequence of the last report recorded of each, their rows
    /// locked in id order.
    public func lockWithReportSequences(_ ids: [String]) async throws -> [String: (allocation: Allocation, sequence: Int64)] {
        var current: [String: (allocation: Allocation, sequence: Int64)] = [:]
        for try await (spec, sequence) in try await sql.query(
            "SELECT spec::text, report_sequence FROM drover_allocations WHERE id = ANY(\(Array(Set(ids)).sorted())) ORDER BY id FOR UPDATE"
        ).decode((String, Int64).self) {
            let allocation = try JSONColumn.decode(Allocation.self, spec)
            current[allocation.id] = (allocation, sequence)
        }
        return current
    }

    /// Adds to `writes` what nodes reported of `allocations`, with the sequence of the last report
    /// of each, at `index`.
    public func updateReported(_ allocations: [(allocation: Allocation, sequence: Int64)], index: Int64, into writes: inout SQLWrites) throws {
        guard !allocations.isEmpty else { return }
        try writes.add(
            """
            UPDATE drover_allocations a SET client_status = u.status, spec = u.spec::jsonb, modify_index = \(index), report_sequence = u.sequence
            FROM unnest(\(allocations.map(\.allocation.id))::text[], \(allocations.map(\.allocation.clientStatus.rawValue))::text[],
                \(try allocations.map { try JSONColumn.encode($0.allocation) })::text[], \(allocations.map(\.sequence))::bigint[])
                AS u(id, status, spec, sequence)
            WHERE a.id = u.id
            """)
    }

    /// Stores `allocation`'s desired and client status, as it is, at `index`.
    public func updateStatus(_ allocation: Allocation, index: Int64) async throws {
        try await sql.query(
            """
            UPDATE drover_allocations SET desired_status = \(allocation.desiredStatus.rawValue), client_status = \(allocation.clientStatus.rawValue),
                spec = \(try JSONColumn.encode(allocation))::jsonb, modify_index = \(index)
            WHERE id = \(allocation.id)
            """)
    }

    /// Adds to `writes` the insertion of new `allocations`: wanted, pending.
    public func insert(_ allocations: [Allocation], index: Int64, into writes: inout SQLWrites) throws {
        guard !allocations.isEmpty else { return }
        let specs = try allocations.map { try JSONColumn.encode($0) }
        try writes.add(
            """
            INSERT INTO drover_allocations (id, job_id, namespace, job_version, node_id, eval_id, desired_status, client_status, cpu, memory_mb,
                disk_mb, spec, create_index, modify_index)
            SELECT id, job_id, namespace, job_version, node_id, eval_id, 'run', 'pending', cpu, memory_mb, disk_mb,
                jsonb_set(spec::jsonb, '{Namespace}', to_jsonb(namespace)), \(index), \(index)
            FROM (SELECT a.*, coalesce(nullif(a.given, ''), 'default') AS namespace
                FROM unnest(\(allocations.map(\.id))::text[], \(allocations.map(\.jobID))::text[], \(allocations.map { $0.namespace ?? "" })::text[],
                    \(allocations.map(\.jobVersion))::int[], \(allocations.map(\.nodeID))::text[], \(allocations.map(\.evalID))::text[],
                    \(allocations.map(\.resources.cpu))::int[], \(allocations.map(\.resources.memoryMB))::int[],
                    \(allocations.map(\.resources.diskMB))::int[], \(specs)::text[])
                    AS a(id, job_id, given, job_version, node_id, eval_id, cpu, memory_mb, disk_mb, spec)) AS a
            """)
    }
}

extension UnitOfWork {
    /// Runs `writes` (with the messages sent so far) and, in the same statement, reads what live
    /// allocations hold on `nodeIDs`: as the statement sees them, which is without `writes`.
    /// - Returns: the resources held, by node (none: not there).
    public func execute(_ writes: SQLWrites, readingUsageOf nodeIDs: [String]) async throws -> [String: Resources] {
        var used: [String: Resources] = [:]
        for try await (nodeID, cpu, memory, disk) in try await execute(
            writes,
            selecting: """
                SELECT node_id, sum(cpu)::bigint, sum(memory_mb)::bigint, sum(disk_mb)::bigint FROM drover_allocations
                WHERE node_id = ANY(\(nodeIDs)) AND desired_status = 'run' AND client_status IN ('pending', 'running') GROUP BY node_id
                """
        ).decode((String, Int64, Int64, Int64).self) {
            used[nodeID] = Resources(cpu: Int(cpu), memoryMB: Int(memory), diskMB: Int(disk))
        }
        return used
    }
}
