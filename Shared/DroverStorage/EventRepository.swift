public import DroverModel
public import Foundation
import PostgresNIO

/// The cluster's event log (`drover_events`).
public struct EventRepository: Sendable {
    let sql: SQLRunner

    init(_ sql: SQLRunner) { self.sql = sql }

    /// Records `event`; with a `messageID` a redelivered message is recorded once.
    public func record(_ event: ClusterEvent, messageID: String? = nil) async throws {
        try await sql.query(
            """
            INSERT INTO drover_events (message_id, time, node_id, job_id, namespace, alloc_id, type, level, priority, message)
            VALUES (\(messageID), \(event.time), \(event.nodeID), \(event.jobID), \(event.namespace), \(event.allocID), \(event.type),
                \(event.level.rawValue), \(event.priority.rawValue), \(event.message))
            ON CONFLICT (message_id) DO NOTHING
            """)
    }

    /// Adds `events` to `writes`, to be recorded with them.
    public func record(_ events: [ClusterEvent], into writes: inout SQLWrites) throws {
        guard !events.isEmpty else { return }
        // Arrays hold no NULLs, so "" stands for none.
        try writes.add(
            """
            INSERT INTO drover_events (time, node_id, job_id, namespace, alloc_id, type, level, priority, message)
            SELECT time, NULLIF(node_id, ''), NULLIF(job_id, ''), NULLIF(namespace, ''), NULLIF(alloc_id, ''), type, level, priority, message
            FROM unnest(\(events.map(\.time))::timestamptz[], \(events.map { $0.nodeID ?? "" })::text[], \(events.map { $0.jobID ?? "" })::text[],
                \(events.map { $0.namespace ?? "" })::text[], \(events.map { $0.allocID ?? "" })::text[], \(events.map(\.type))::text[],
                \(events.map(\.level.rawValue))::text[], \(events.map(\.priority.rawValue))::text[], \(events.map(\.message))::text[])
                AS e(time, node_id, job_id, namespace, alloc_id, type, level, priority, message)
            """)
    }

    /// What `GET /v1/events` filters on.
    public struct Filter: Sendable {
        public var nodeID: String?
        public var jobID: String?
        public var levels: Set<NodeLogMessage.Level>
        public var priorities: Set<NodeLogMessage.Priority>
        public var since: Date?
        public var until: Date?
        public var limit: Int
        /// Only events of no job or of a job of these namespaces; nil: of every namespace.
        public var namespaces: [String]?

        /// By default medium and high priorities only, as CycleCloud's cluster page shows them.
        public init(
            nodeID: String? = nil, jobID: String? = nil, levels: Set<NodeLogMessage.Level> = Set(NodeLogMessage.Level.allCases),
            priorities: Set<NodeLogMessage.Priority> = [.medium, .high], since: Date? = nil, until: Date? = nil, limit: Int = 1000
        ) {
            self.nodeID = nodeID
            self.jobID = jobID
            self.levels = levels
            self.priorities = priorities
            self.since = since
            self.until = until
            self.limit = limit
        }
    }

    /// Events matching `filter`, oldest first (the newest `limit` of them).
    public func list(_ filter: Filter) async throws -> [ClusterEvent] {
        let levels = filter.levels.map(\.rawValue).sorted()
        let priorities = filter.priorities.map(\.rawValue).sorted()
        var events: [ClusterEvent] = []
        for try await (id, time, node, job, namespace, alloc, type, level, priority, message) in try await sql.query(
            """
            SELECT * FROM (
                SELECT id, time, node_id, job_id, namespace, alloc_id, type, level, priority, message FROM drover_events
                WHERE (\(filter.nodeID)::text IS NULL OR node_id = \(filter.nodeID)) AND (\(filter.jobID)::text IS NULL OR job_id = \(filter.jobID))
                    AND level = ANY(\(levels)) AND priority = ANY(\(priorities))
                    AND (\(filter.namespaces == nil) OR job_id IS NULL OR coalesce(namespace, 'default') = ANY(\(filter.namespaces ?? [])))
                    AND (\(filter.since)::timestamptz IS NULL OR time >= \(filter.since)) AND (\(filter.until)::timestamptz IS NULL OR time < \(filter.until))
                ORDER BY id DESC LIMIT \(filter.limit)
            ) newest ORDER BY id
            """
        ).decode((Int64, Date, String?, String?, String?, String?, String, String, String, String).self) {
            events.append(
                ClusterEvent(
                    id: id, time: time, nodeID: node, jobID: job, namespace: namespace, allocID: alloc, type: type,
                    level: NodeLogMessage.Level(rawValue: level) ?? .info,
                    priority: NodeLogMessage.Priority(rawValue: priority) ?? .low, message: message))
        }
        return events
    }

    /// Deletes events older than `age`. - Returns: how many.
    @discardableResult
    public func prune(olderThan age: Duration, now: Date = Date()) async throws -> Int {
        var count = 0
        for try await _ in try await sql.query(
            "DELETE FROM drover_events WHERE time < \(now.addingTimeInterval(-Double(age.components.seconds))) RETURNING id"
        ).decode(Int64.self) {
            count += 1
        }
        return count
    }
}

extension Database {
    public var events: EventRepository { EventRepository(SQLRunner(self)) }
}

extension UnitOfWork {
    public var events: EventRepository { EventRepository(SQLRunner(self)) }
}
