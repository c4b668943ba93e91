public import DroverMessaging
import DroverModel
import Foundation
public import Logging
import Metrics
import PostgresNIO
public import ServiceLifecycle

/// The event stream's log (`drover_event_log`, written by the triggers of migration 15 in the
/// transactions that change the state): its order, what the HTTP stream reads, and retention.
///
/// A row's place in the stream (`seq`) is given after it is committed, by one sequencer at a time
/// (an advisory lock), in the order the rows were written: a reader that follows `seq` misses no
/// event, even of a transaction that committed after a later one. Two changes of one object are
/// made one after the other (the row is locked), so they keep their order.
public struct EventStreamRepository: Sendable {
    let database: Database

    init(_ database: Database) { self.database = database }

    /// Gives up to `limit` committed events without a place their place, unless another
    /// transaction is doing so (then it is left to that one). - Returns: how many.
    @discardableResult
    public func sequence(limit: Int = 10_000) async throws -> Int {
        try await database.transaction { work in
            guard try await Self.lockSequencing(in: work) else { return 0 }
            return try await Self.sequence(in: work, limit: limit)
        }
    }

    /// ``sequence(limit:)`` in `work`'s transaction, which holds the sequencing lock. Places go
    /// on from the highest given: the highest kept, or the published place when retention has
    /// removed every published event (only published ones are removed).
    static func sequence(in work: UnitOfWork, limit: Int) async throws -> Int {
        for try await count in try await work.query(
            """
            WITH next AS (
                SELECT id, row_number() OVER (ORDER BY id) + greatest(
                    (SELECT coalesce(max(seq), 0) FROM drover_event_log), (SELECT seq FROM drover_event_cursor WHERE name = 'published')) AS seq
                FROM (SELECT id FROM drover_event_log WHERE seq IS NULL ORDER BY id LIMIT \(Int32(limit))) AS unsequenced),
            placed AS (UPDATE drover_event_log l SET seq = next.seq FROM next WHERE l.id = next.id RETURNING 1)
            SELECT count(*)::int FROM placed
            """
        ).decode(Int.self) { return count }
        return 0
    }

    /// Takes the lock that makes one sequencer at a time, for the rest of `work`'s transaction.
    /// - Returns: false when another transaction holds it.
    static func lockSequencing(in work: UnitOfWork) async throws -> Bool {
        try await work.tryLock("drover:event-sequence")
    }

    /// The last place given, 0 when none.
    public func latest() async throws -> Int64 {
        for try await seq in try await database.client.query("SELECT coalesce(max(seq), 0) FROM drover_event_log", logger: database.logger)
            .decode(Int64.self)
        {
            return seq
        }
        return 0
    }

    /// Where a stream that starts at cluster index `index` starts: just before the first kept
    /// event of that index or later (the end of the stream when there is none yet).
    public func position(fromIndex index: Int64) async throws -> Int64 {
        for try await seq in try await database.client.query(
            """
            SELECT coalesce((SELECT min(seq) FROM drover_event_log WHERE index >= \(index) AND seq IS NOT NULL) - 1,
                (SELECT coalesce(max(seq), 0) FROM drover_event_log))
            """, logger: database.logger
        ).decode(Int64.self) {
            return seq
        }
        return 0
    }

    /// What a stream asks for: `(topic, key)` pairs where `*` is any (a key matches an event's
    /// key or one of its filter keys), and a namespace (`*` for all; events without one, such as
    /// a node's, always pass).
    public struct Filter: Sendable {
        public var topics: [(topic: String, key: String)]
        public var namespace: String

        public init(topics: [(topic: String, key: String)], namespace: String) {
            self.topics = topics
            self.namespace = namespace
        }
    }

    /// One event of the stream, as JSON ready to send, with its place and index.
    public struct Entry: Sendable, Equatable {
        public var seq: Int64
        public var index: Int64
        /// The event (`StreamEvent`'s JSON).
        public var json: String
    }

    /// Events placed after `seq` that `filter` takes, in order, at most `limit`.
    /// - Returns: them, and the place read up to (past events the filter left out).
    public func read(after seq: Int64, filter: Filter, limit: Int) async throws -> (entries: [Entry], through: Int64) {
        var entries: [Entry] = []
        var through = seq
        for try await (place, index, taken, json) in try await database.client.query(
            """
            SELECT l.seq, l.index,
                (\(filter.namespace) = '*' OR l.namespace = '' OR l.namespace = \(filter.namespace)) AND EXISTS (
                    SELECT 1 FROM unnest(\(filter.topics.map(\.topic))::text[], \(filter.topics.map(\.key))::text[]) AS f(topic, key)
                    WHERE (f.topic = '*' OR f.topic = l.topic) AND (f.key = '*' OR f.key = l.key OR l.filter_keys ? f.key)),
                \(unescaped: Self.eventJSON)::text
            FROM drover_event_log l WHERE l.seq > \(seq) ORDER BY l.seq LIMIT \(Int32(limit))
            """, logger: database.logger
        ).decode((Int64, Int64, Bool, String).self) {
            through = place
            if taken { entries.append(Entry(seq: place, index: index, json: json)) }
        }
        return (entries, through)
    }

    /// A row of `drover_event_log l` as a ``StreamEvent``'s JSON.
    static let eventJSON = """
        jsonb_build_object('Topic', l.topic, 'Type', l.type, 'Key', l.key, 'Namespace', l.namespace, 'FilterKeys', l.filter_keys,
            'Index', l.index, 'Payload', l.payload)
        """

    /// Forgets published events older than `age`. - Returns: how many.
    public func prune(olderThan age: Duration) async throws -> Int {
        for try await count in try await database.client.query(
            """
            WITH gone AS (
                DELETE FROM drover_event_log WHERE time < now() - make_interval(secs => \(age.timeInterval))
                    AND seq <= (SELECT seq FROM drover_event_cursor WHERE name = 'published') RETURNING 1)
            SELECT count(*)::int FROM gone
            """, logger: database.logger
        ).decode(Int.self) {
            return count
        }
        return 0
    }
}

extension Database {
    /// The event stream's log.
    public var eventStream: EventStreamRepository { EventStreamRepository(self) }
}

/// Publishes the event stream on the public events exchange (`<exchange>.events`, `drover.events`
/// by default), under `event.<topic>.<type>.<key>` (``RoutingKey/event(topic:type:key:)``), each
/// event in a ``MessageEnvelope`` (message id `event-<n>`, stable if it is published again).
///
/// It runs in api-gateway and scheduler; one publishes at a time (an advisory lock held for a
/// pass), in the stream's order, from the place recorded as published. Messages are not
/// mandatory: an event no plugin is bound to is dropped by the broker. A publish that fails is
/// tried again from the same place; a message may then be published twice (its id is the same).
public struct EventRelay: Service {
    let database: Database
    let bus: any MessageBus
    let exchange: String
    let logger: Logger
    let batchSize: Int
    let pollInterval: Duration
    let minimumGap: Duration
    private let published = Counter(label: "drover_events_published_total")

    public init(
        database: Database, bus: any MessageBus, exchange: String, logger: Logger, batchSize: Int = 500, pollInterval: Duration = .seconds(1),
        minimumGap: Duration = .milliseconds(100)
    ) {
        self.minimumGap = minimumGap
        self.database = database
        self.bus = bus
        self.exchange = exchange
        self.logger = logger
        self.batchSize = batchSize
        self.pollInterval = pollInterval
    }

    public func run() async throws {
        let (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await database.listen(on: "drover_events", retryAfter: pollInterval, logger: logger) { wake.yield() } }
            group.addTask {
                while (try? await Task.sleep(for: pollInterval)) != nil { wake.yield() }
            }
            group.addTask {
                var ticks = wakeups.cancelOnGracefulShutdown().makeAsyncIterator()
                repeat {
                    do {
                        while try await pass() == batchSize, !Task.isShuttingDownGracefully, !Task.isCancelled {}
                    } catch {
                        logger.warning("Publishing events failed; trying again", metadata: ["error": "\(String(reflecting: error))"])
                    }
                    // Every commit that writes events wakes every relay: a pass at most every
                    // `minimumGap` publishes what arrived meanwhile together.
                    try? await Task.sleep(for: minimumGap)
                } while await ticks.next() != nil
            }
            await group.next()
            group.cancelAll()
        }
    }

    /// If no other relay is publishing: places the committed events (a short transaction of its
    /// own, so that stream readers are not held up while the broker confirms) and publishes the
    /// next batch. - Returns: how many it published.
    func pass() async throws -> Int {
        let publishing = try await database.transaction { work in
            guard try await Self.lockPublishing(in: work) else { return false }
            // A stream reader may be placing events this moment; they are placed either way.
            if try await EventStreamRepository.lockSequencing(in: work) {
                _ = try await EventStreamRepository.sequence(in: work, limit: 10_000)
            }
            return true
        }
        guard publishing else { return 0 }
        return try await database.transaction { work in
            guard try await Self.lockPublishing(in: work) else { return 0 }
            var from: Int64 = 0
            for try await seq in try await work.query("SELECT seq FROM drover_event_cursor WHERE name = 'published' FOR UPDATE").decode(Int64.self) {
                from = seq
            }
            var messages: [OutgoingMessage] = []
            var through = from
            for try await (seq, id, topic, type, key, time, event) in try await work.query(
                """
                SELECT l.seq, l.id, l.topic, l.routing_type, l.key, l.time, jsonb_build_object('id', 'event-' || l.id, 'type', 'event',
                    'version', 1, 'time', to_char(l.time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                    'data', \(unescaped: EventStreamRepository.eventJSON))::text
                FROM drover_event_log l WHERE l.seq > \(from) ORDER BY l.seq LIMIT \(Int32(batchSize))
                """
            ).decode((Int64, Int64, String, String, String, Date, String).self) {
                through = seq
                messages.append(
                    OutgoingMessage(
                        exchange: exchange, routingKey: RoutingKey.event(topic: topic, type: type, key: key), messageID: "event-\(id)",
                        type: StreamEvent.messageType, schemaVersion: StreamEvent.schemaVersion, timestamp: time, body: Array(event.utf8),
                        mandatory: false))
            }
            guard !messages.isEmpty else { return 0 }
            do {
                try await bus.publish(messages)
            } catch let refused as PublishRefused where refused.unroutable.isEmpty {
                // Too large for the broker: said, and passed over (the stream over HTTP still has them).
                logger.error("Events too large for the broker not published", metadata: ["message_ids": "\(refused.tooLarge)"])
            }
            try await work.query("UPDATE drover_event_cursor SET seq = \(through) WHERE name = 'published'")
            published.increment(by: messages.count)
            return messages.count
        }
    }

    /// Takes the lock that makes one publisher at a time, for the rest of `work`'s transaction.
    static func lockPublishing(in work: UnitOfWork) async throws -> Bool {
        try await work.tryLock("drover:event-publish")
    }

}
