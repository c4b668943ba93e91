import DroverMessaging
public import DroverModel
import Foundation
import Logging
import PostgresNIO

extension ClusterStore {
    // MARK: Nodes

    /// Nodes, ordered by id. The spec carries what the agent reported; status, eligibility and
    /// drain are the control plane's and come from their columns.
    public func nodes(prefix: String = "") async throws -> [Node] {
        try await readNodes("\(unescaped: Self.nodeColumns) WHERE id LIKE \(Self.likePrefix(prefix)) ORDER BY id", on: nil)
    }

    public func node(id: String) async throws -> Node? {
        try await readNodes("\(unescaped: Self.nodeColumns) WHERE id = \(id)", on: nil).first
    }

    /// What ``node(from:)`` reads, in its order.
    static let nodeFields =
        "spec::text, status, eligibility, drain, drain_strategy::text, last_drain::text, health::text, keepalive_until, termination::text, create_index, modify_index"
    static let nodeColumns = "SELECT \(nodeFields) FROM drover_nodes"

    func readNodes(_ query: PostgresQuery, on connection: PostgresConnection?) async throws -> [Node] {
        let rows: PostgresRowSequence
        if let connection {
            rows = try await connection.query(query, logger: logger)
        } else {
            rows = try await database.client.query(query, logger: logger)
        }
        var nodes: [Node] = []
        for try await row in rows { nodes.append(try Self.node(from: row)) }
        return nodes
    }

    /// The node in `row`, whose first columns are ``nodeFields``.
    static func node(from row: PostgresRow) throws -> Node {
        let (spec, status, eligibility, drain, strategy, lastDrain, health, keepalive, termination, createIndex, modifyIndex) = try row.decode(
            (String, String, String, Bool, String?, String?, String?, Int64?, String?, Int64, Int64).self)
        var node = try Self.decode(Node.self, spec)
        node.status = Node.Status(rawValue: status) ?? .down
        node.schedulingEligibility = Node.Eligibility(rawValue: eligibility) ?? .ineligible
        node.drain = drain
        node.drainStrategy = try strategy.map { try Self.decode(DrainStrategy.self, $0) }
        node.lastDrain = try lastDrain.map { try Self.decode(DrainMetadata.self, $0) }
        node.health = try health.map { try Self.decode(NodeHealth.self, $0) }
        node.keepaliveUntil = keepalive
        node.termination = try termination.map { try Self.decode(TerminationRequest.self, $0) }
        node.createIndex = createIndex
        node.modifyIndex = modifyIndex
        return node
    }

    // MARK: Allocations

    /// Allocations in lists carry no job; a single read (``allocation(id:)``) does.
    public func allocations(jobID: String? = nil, nodeID: String? = nil, prefix: String = "") async throws -> [Allocation] {
        let query: PostgresQuery
        if let jobID {
            query = "SELECT spec::text FROM drover_allocations WHERE job_id = \(jobID) ORDER BY create_index, id"
        } else if let nodeID {
            query = "SELECT spec::text FROM drover_allocations WHERE node_id = \(nodeID) ORDER BY create_index, id"
        } else {
            query = "SELECT spec::text FROM drover_allocations WHERE id LIKE \(Self.likePrefix(prefix)) ORDER BY create_index, id"
        }
        var allocations: [Allocation] = []
        for try await spec in try await database.client.query(query, logger: logger).decode(String.self) {
            allocations.append(try Self.decode(Allocation.self, spec))
        }
        return allocations
    }

    public func allocation(id: String) async throws -> Allocation? {
        let rows = try await database.client.query(
            """
            SELECT a.spec::text, v.spec::text FROM drover_allocations a
            LEFT JOIN drover_job_versions v ON v.job_id = a.job_id AND v.version = a.job_version
            WHERE a.id = \(id)
            """, logger: logger)
        for try await (spec, job) in rows.decode((String, String?).self) {
            var allocation = try Self.decode(Allocation.self, spec)
            allocation.job = try job.map { try Self.decode(Job.self, $0) }
            return allocation
        }
        return nil
    }

    /// Per group, the job's allocations counted by client status; allocations still waiting for
    /// room (queued in a blocked evaluation) count as queued.
    public func summary(jobID: String) async throws -> [String: GroupSummary]? {
        guard let job = try await job(id: jobID) else { return nil }
        var summary = Dictionary(uniqueKeysWithValues: job.taskGroups.map { ($0.name, GroupSummary()) })
        for allocation in try await allocations(jobID: jobID) {
            var group = summary[allocation.taskGroup] ?? GroupSummary()
            switch allocation.clientStatus {
            case .pending: group.starting += 1
            case .running: group.running += 1
            case .complete: group.complete += 1
            case .failed: group.failed += 1
            case .lost: group.lost += 1
            }
            summary[allocation.taskGroup] = group
        }
        for eval in try await evaluations(jobID: jobID) where eval.status == .blocked {
            for (group, count) in eval.queuedAllocations ?? [:] { summary[group, default: GroupSummary()].queued += count }
        }
        return summary
    }

    // MARK: Evaluations

    public func evaluations(jobID: String? = nil, prefix: String = "") async throws -> [Evaluation] {
        let query: PostgresQuery =
            if let jobID {
                "SELECT spec::text FROM drover_evaluations WHERE job_id = \(jobID) ORDER BY create_index, id"
            } else {
                "SELECT spec::text FROM drover_evaluations WHERE id LIKE \(Self.likePrefix(prefix)) ORDER BY create_index, id"
            }
        var evaluations: [Evaluation] = []
        for try await spec in try await database.client.query(query, logger: logger).decode(String.self) {
            evaluations.append(try Self.decode(Evaluation.self, spec))
        }
        return evaluations
    }

    public func evaluation(id: String) async throws -> Evaluation? {
        for try await spec in try await database.client.query("SELECT spec::text FROM drover_evaluations WHERE id = \(id)", logger: logger)
            .decode(String.self)
        {
            return try Self.decode(Evaluation.self, spec)
        }
        return nil
    }

    // MARK: Stopping one allocation

    /// Stops one allocation and evaluates its job, which places a replacement where the job
    /// still wants one (Nomad's `alloc stop`).
    /// - Throws: ``ClusterStoreError/notFound(kind:id:)``.
    public func stopAllocation(id: String) async throws -> JobRegistration {
        try await database.transaction { connection in
            var found: Allocation?
            for try await spec in try await connection.query("SELECT spec::text FROM drover_allocations WHERE id = \(id) FOR UPDATE", logger: logger)
                .decode(String.self)
            {
                found = try Self.decode(Allocation.self, spec)
            }
            guard let allocation = found else { throw ClusterStoreError.notFound(kind: "allocation", id: id) }
            let index = try await Self.nextIndex(connection, logger: logger)
            let now = Self.nanoseconds()
            if allocation.desiredStatus == .run {
                try await Self.stop(
                    allocation, description: "alloc was stopped by a user", markLost: false, index: index, now: now, on: connection, logger: logger)
            }
            var job = Job(id: allocation.jobID, taskGroups: [])
            for try await spec in try await connection.query("SELECT spec::text FROM drover_jobs WHERE id = \(allocation.jobID)", logger: logger)
                .decode(String.self)
            {
                job = try Self.decode(Job.self, spec)
            }
            let eval = try await Self.createEvaluation(
                for: job, triggeredBy: Evaluation.Trigger.allocStop, index: index, now: now, on: connection, logger: logger)
            return JobRegistration(evalID: eval.id, jobModifyIndex: job.jobModifyIndex ?? index, warnings: "", index: index)
        }
    }

    /// Marks `allocation` to stop (and lost, when its node is gone) and tells its node.
    static func stop(
        _ allocation: Allocation, description: String, markLost: Bool, index: Int64, now: Int64, on connection: PostgresConnection,
        logger: Logger
    ) async throws {
        // Read again under a lock: a node's status report may have changed it since the snapshot.
        var allocation = allocation
        for try await spec in try await connection.query(
            "SELECT spec::text FROM drover_allocations WHERE id = \(allocation.id) FOR UPDATE", logger: logger
        ).decode(String.self) {
            allocation = try decode(Allocation.self, spec)
        }
        allocation.desiredStatus = .stop
        allocation.desiredDescription = description
        if markLost && !allocation.clientStatus.isTerminal {
            allocation.clientStatus = .lost
            allocation.clientDescription = "alloc is lost since its node is down"
        }
        allocation.modifyIndex = index
        allocation.modifyTime = now
        try await connection.query(
            """
            UPDATE drover_allocations SET desired_status = 'stop', client_status = \(allocation.clientStatus.rawValue),
                spec = \(try encode(allocation))::jsonb, modify_index = \(index)
            WHERE id = \(allocation.id)
            """, logger: logger)
        try await Outbox.enqueue(
            [try OutgoingMessage(AllocationUpdate(allocation: allocation), routingKey: RoutingKey.allocationUpdated(allocation))],
            on: connection, logger: logger)
    }
}
