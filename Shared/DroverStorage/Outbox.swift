public import DroverMessaging
import DroverModel
import Foundation
public import Logging
import Metrics
import PostgresNIO
public import ServiceLifecycle
import Synchronization

/// The transactional outbox: state changes and the messages that announce them commit together.
public enum Outbox {
    /// How long a claim made as a row is written lasts: past it, any relay publishes the row.
    static let writtenClaim = 10.0

    /// Gives up the claim on the rows of `messageIDs`, and wakes every relay to publish them.
    static func release(_ messageIDs: [String], database: Database) async throws {
        try await database.client.query(
            """
            WITH released AS (UPDATE drover_outbox SET claimed_until = NULL WHERE message_id = ANY(\(messageIDs)) RETURNING 1)
            SELECT pg_notify('drover_outbox', '') FROM (SELECT count(*) AS rows FROM released) AS r WHERE r.rows > 0
            """, logger: database.logger)
    }

    /// Adds `messages` to `writes`, to be added to the outbox with them; with `claimed`, their
    /// rows are claimed for this process's relay (``writtenClaim``) and wake no other. A message
    /// id already in the outbox is not added twice. ``UnitOfWork`` is the caller.
    static func enqueue(_ messages: [OutgoingMessage], claimed: Bool, into writes: inout SQLWrites) throws {
        guard !messages.isEmpty else { return }
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let headers = try messages.map { String(decoding: try encoder.encode($0.headers), as: UTF8.self) }
        let claim: Double? = claimed ? writtenClaim : nil
        // One statement for them all; arrays hold no NULLs, so "" stands for none.
        try writes.add(
            """
            INSERT INTO drover_outbox (message_id, exchange, routing_key, type, schema_version, created_at, traceparent, headers, body,
                claimed_until)
            SELECT message_id, NULLIF(exchange, ''), routing_key, type, schema_version, created_at, NULLIF(traceparent, ''), headers::jsonb, body,
                now() + make_interval(secs => \(claim))
            FROM unnest(\(messages.map(\.messageID))::text[], \(messages.map { $0.exchange ?? "" })::text[], \(messages.map(\.routingKey))::text[],
                \(messages.map(\.type))::text[], \(messages.map(\.schemaVersion))::int[], \(messages.map(\.timestamp))::timestamptz[],
                \(messages.map { $0.traceparent ?? "" })::text[], \(headers)::text[], \(messages.map { ByteBuffer(bytes: $0.body) })::bytea[])
                AS m(message_id, exchange, routing_key, type, schema_version, created_at, traceparent, headers, body)
            ON CONFLICT (message_id) DO NOTHING
            """)
    }
}

/// Where a process's transactions hand the outbox messages they committed to its relay.
final class OutboxHandOff: Sendable {
    private let state = Mutex<(wake: AsyncStream<Void>.Continuation?, pending: [OutgoingMessage])>((nil, []))

    var isAttached: Bool { state.withLock { $0.wake != nil } }

    /// Starts taking messages. - Returns: a signal each time some arrive.
    func attach() -> AsyncStream<Void> {
        let (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        state.withLock { $0.wake = wake }
        return wakeups
    }

    /// Stops taking messages. - Returns: those handed over and not taken.
    func detach() -> [OutgoingMessage] {
        state.withLock { state in
            state.wake?.finish()
            state.wake = nil
            defer { state.pending = [] }
            return state.pending
        }
    }

    /// At most this many messages wait in memory (while the broker is away, say); the rows of
    /// any more stay claimed and are published by a relay pass once the claim runs out.
    static let pendingLimit = 10_000

    /// - Returns: false when no relay takes them.
    func handOff(_ messages: [OutgoingMessage]) -> Bool {
        state.withLock { state in
            guard let wake = state.wake else { return false }
            if state.pending.count < Self.pendingLimit { state.pending += messages }
            wake.yield()
            return true
        }
    }

    func take() -> [OutgoingMessage] {
        state.withLock { state in
            defer { state.pending = [] }
            return state.pending
        }
    }
}

/// Publishes the outbox: runs in every service that writes to it.
///
/// Each pass claims up to `batchSize` of the oldest unclaimed rows for `claimDuration` in one
/// statement (`FOR UPDATE SKIP LOCKED`, so replicas share the work), publishes them with
/// confirms, and then deletes them. No transaction stays open while the broker confirms. A
/// relay that dies after claiming and before deleting leaves the rows in place: once the claim
/// runs out they are published again (consumers are idempotent), never lost. A publish that
/// fails gives its claim back at once. The relay wakes on the outbox's `NOTIFY drover_outbox`,
/// and polls every `pollInterval` in case a notification was missed.
///
/// The rows its own process writes take a shorter way: they are claimed for this relay as they
/// are written (and so wake no relay), and handed to it when their transaction commits (see
/// ``Database/transaction(_:)``). It publishes them at once and deletes them; should it die
/// first, their claim runs out and any relay publishes them.
public struct OutboxRelay: Service {
    public struct Configuration: Sendable {
        public var batchSize: Int = 500
        public var pollInterval: Duration = .seconds(1)
        /// How long a pass owns the rows it claimed: longer than a publish can take.
        public var claimDuration: Duration = .seconds(10)
        /// The longest wait before a message that no queue took is tried again.
        public var maximumRetryDelay: Duration = .seconds(300)
        public init() {}
    }

    private let database: Database
    private let bus: any MessageBus
    private let configuration: Configuration
    private let logger: Logger
    private let published = Counter(label: "drover_outbox_published_total")
    private let unroutable = Counter(label: "drover_outbox_unroutable_total")
    private let deadLettered = Counter(label: "drover_outbox_dead_lettered_total")

    public init(database: Database, bus: any MessageBus, configuration: Configuration = .init(), logger: Logger) {
        self.database = database
        self.bus = bus
        self.configuration = configuration
        self.logger = logger
    }

    public func run() async throws {
        let (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let handedOff = database.outboxHandOff.attach()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await database.listen(on: "drover_outbox", retryAfter: configuration.pollInterval, logger: logger) { wake.yield() } }
            group.addTask {
                for await _ in handedOff.cancelOnGracefulShutdown() { await publishHandedOff(database.outboxHandOff.take()) }
            }
            group.addTask {
                while (try? await Task.sleep(for: configuration.pollInterval)) != nil { wake.yield() }
            }
            group.addTask {
                var ticks = wakeups.cancelOnGracefulShutdown().makeAsyncIterator()
                repeat {
                    while await relayAvailable() == configuration.batchSize, !Task.isShuttingDownGracefully, !Task.isCancelled {}
                } while await ticks.next() != nil
            }
            await group.next()
            group.cancelAll()
        }
        // What was handed over and not published goes to any relay now.
        let left = database.outboxHandOff.detach() + database.outboxHandOff.take()
        if !left.isEmpty { try? await Outbox.release(left.map(\.messageID), database: database) }
    }

    /// Publishes messages handed over by this process's transactions, and deletes their rows.
    func publishHandedOff(_ messages: [OutgoingMessage]) async {
        guard !messages.isEmpty else { return }
        do {
            try await publishAndDelete(messages)
        } catch {
            logger.warning("Publishing committed messages failed; any relay will", metadata: ["error": "\(String(reflecting: error))"])
            try? await Outbox.release(messages.map(\.messageID), database: database)
        }
    }

    /// Publishes `messages` and deletes their rows. What the broker refuses does not hold up the
    /// rest: a message no queue takes keeps its row, tried again after a backoff that grows with
    /// its attempts (up to ``Configuration/maximumRetryDelay``); one too large for the broker is
    /// set aside as dead, with the reason. Both are logged and counted.
    /// - Throws: when publishing fails otherwise (the broker is away); no row has been deleted.
    private func publishAndDelete(_ messages: [OutgoingMessage]) async throws {
        var refused = PublishRefused()
        do {
            try await bus.publish(messages)
        } catch let error as PublishRefused {
            refused = error
        }
        if !refused.tooLarge.isEmpty {
            // None of them was sent: set them aside, then publish the others of the batch.
            try await database.client.query(
                """
                UPDATE drover_outbox SET dead_at = now(), last_error = 'larger than the broker takes', claimed_until = NULL
                WHERE message_id = ANY(\(refused.tooLarge))
                """, logger: logger)
            deadLettered.increment(by: refused.tooLarge.count)
            logger.error("Outbox messages too large for the broker set aside", metadata: ["message_ids": "\(refused.tooLarge)"])
        }
        if !refused.unroutable.isEmpty {
            let most = configuration.maximumRetryDelay.timeInterval
            try await database.client.query(
                """
                UPDATE drover_outbox SET attempts = least(attempts, 1000000) + 1, last_error = 'no queue is bound to take it',
                    claimed_until = now() + make_interval(secs => least(\(most), power(2, least(attempts, 30))) * (0.5 + random() / 2))
                WHERE message_id = ANY(\(refused.unroutable))
                """, logger: logger)
            unroutable.increment(by: refused.unroutable.count)
            logger.warning(
                "Outbox messages that no queue takes kept for later",
                metadata: [
                    "message_ids": "\(refused.unroutable)",
                    "routing_keys": "\(Set(messages.filter { refused.unroutable.contains($0.messageID) }.map(\.routingKey)))",
                ])
        }
        let kept = Set(refused.unroutable + refused.tooLarge)
        let sent = messages.map(\.messageID).filter { !kept.contains($0) }
        guard !sent.isEmpty else { return }
        do {
            try await database.client.query("DELETE FROM drover_outbox WHERE message_id = ANY(\(sent))", logger: logger)
            published.increment(by: sent.count)
        } catch {
            // Published but still there: published again once the claim runs out.
            logger.warning("Deleting published outbox rows failed", metadata: ["error": "\(String(reflecting: error))"])
        }
    }

    /// Publishes one batch. - Returns: how many rows it published (0 on an error, which it logs).
    public func relayAvailable() async -> Int {
        do {
            return try await relayOnce()
        } catch is CancellationError {
            return 0
        } catch {
            logger.error("Outbox relay pass failed; will retry", metadata: ["error": "\(String(reflecting: error))"])
            return 0
        }
    }

    func relayOnce() async throws -> Int {
        let claim = configuration.claimDuration.timeInterval
        let rows = try await database.client.query(
            """
            UPDATE drover_outbox SET claimed_until = now() + make_interval(secs => \(claim))
            WHERE id IN (
                SELECT id FROM drover_outbox WHERE (claimed_until IS NULL OR claimed_until < now()) AND dead_at IS NULL
                ORDER BY id LIMIT \(configuration.batchSize) FOR UPDATE SKIP LOCKED)
            RETURNING id, message_id, exchange, routing_key, type, schema_version, created_at, traceparent, headers::text, body
            """, logger: logger)
        var claimed: [(id: Int64, message: OutgoingMessage)] = []
        let decoder = JSONDecoder()
        for try await (id, messageID, exchange, routingKey, type, version, createdAt, traceparent, headers, body) in rows.decode(
            (Int64, String, String?, String, String, Int, Date, String?, String, Data).self)
        {
            let message = OutgoingMessage(
                exchange: exchange, routingKey: routingKey, messageID: messageID, type: type, schemaVersion: version, timestamp: createdAt,
                traceparent: traceparent, body: Array(body), headers: (try? decoder.decode([String: String].self, from: Data(headers.utf8))) ?? [:])
            claimed.append((id, message))
        }
        guard !claimed.isEmpty else { return 0 }
        claimed.sort { $0.id < $1.id }  // RETURNING has no order; publish in the order of the outbox.
        do {
            try await publishAndDelete(claimed.map(\.message))
        } catch {
            // Give the rows back now rather than when the claim runs out.
            let ids = claimed.map(\.id)
            _ = try? await database.client.query("UPDATE drover_outbox SET claimed_until = NULL WHERE id = ANY(\(ids))", logger: logger)
            throw error
        }
        return claimed.count
    }

}

extension Database {
    /// Calls `notified` whenever `channel` is notified (`NOTIFY`), and once each time listening
    /// (re)starts, since what it announces may have happened before LISTEN took effect. While
    /// the connection is lost it tries again every `retryAfter` (callers also poll at that pace).
    /// Returns when the task is cancelled.
    func listen(on channel: String, retryAfter: Duration, logger: Logger, _ notified: @escaping @Sendable () -> Void) async {
        while !Task.isCancelled {
            do {
                try await client.withConnection { connection in
                    try await connection.listen(on: channel) { notifications in
                        notified()
                        for try await _ in notifications { notified() }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                logger.debug("LISTEN connection lost; polling until it is back", metadata: ["channel": "\(channel)", "error": "\(error)"])
                try? await Task.sleep(for: retryAfter)
            }
        }
    }
}
