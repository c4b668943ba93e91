public import DroverModel
public import Foundation
public import Logging
public import Metrics
public import ServiceLifecycle
import Synchronization

/// Thrown by a handler to refuse a message for good: it goes to the dead-letter queue with `reason`.
public struct MessageRejected: Error, CustomStringConvertible {
    /// Why, as the dead-letter header says it.
    public var reason: String
    /// Refuses the message for `reason`.
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// Consumes one queue of typed messages: decodes each, runs the handler, and acknowledges only
/// after the handler returns (so only after its transaction has committed).
///
/// - A body that does not decode, or names another type or a newer schema version, is
///   dead-lettered with the reason and counted in `drover_messages_dead_lettered_total`.
/// - A handler that throws ``MessageRejected`` dead-letters the message with its reason.
/// - Any other error is retried as its ``RetryPolicy`` says: during an outage the message is
///   held and tried again with backoff, uncounted; any other failure counts an attempt, and the
///   message is dead-lettered once it has failed `maximumAttempts` times. Retries are counted in
///   `drover_messages_retried_total`, outage waits in `drover_consumer_outage_waits_total`.
///
/// A consumer made with a batch handler is handed every message that has arrived (up to a
/// limit) at once, so that it can do their work in one transaction. It names, by position,
/// the messages it refuses; the rest are acknowledged when it returns. When it throws for an
/// outage, the whole batch is tried again once the backoff has passed; for any other error, each
/// message of the batch is tried again on its own, so that one bad message holds up no other.
public struct MessageConsumer<Message: DroverMessage>: Service {
    /// Handles one message; returning acknowledges it, throwing retries it (or dead-letters it, for ``MessageRejected``).
    public typealias Handler = @Sendable (MessageEnvelope<Message>, Delivery) async throws -> Void

    /// One decoded message and its delivery.
    public struct Received: Sendable {
        /// The decoded message.
        public let envelope: MessageEnvelope<Message>
        /// The delivery to settle.
        public let delivery: Delivery
    }

    /// Handles a batch in one go. - Returns: the messages it refuses for good, by position in
    /// the batch, each with the reason it is dead-lettered with.
    public typealias BatchHandler = @Sendable ([Received]) async throws -> [Int: String]

    private enum Work: Sendable {
        case each(Handler)
        case batch(limit: Int, BatchHandler)
    }

    private let bus: any MessageBus
    private let spec: ConsumerSpec
    private let logger: Logger
    private let retry: RetryPolicy
    private let work: Work
    private let metrics: any MetricsFactory
    private let concurrency: Int

    /// A consumer of `spec`'s queue that hands each message to `handler`.
    /// - Parameters:
    ///   - type: the message type the queue carries; others are dead-lettered.
    ///   - bus: the bus to consume from.
    ///   - spec: the queue and its bindings.
    ///   - logger: where refusals and retries are logged.
    ///   - retry: how often and how soon a failed message is tried again.
    ///   - concurrency: how many messages are handled at once (at most the queue's prefetch).
    ///     Above 1, handlers run side by side and messages are settled in the order their
    ///     handlers finish; use it only where handlers are safe to run concurrently.
    ///   - metrics: where the consumer's counters go.
    ///   - handler: handles one message; see ``Handler``.
    public init(
        _ type: Message.Type = Message.self, bus: any MessageBus, spec: ConsumerSpec, logger: Logger, retry: RetryPolicy = RetryPolicy(),
        concurrency: Int = 1, metrics: any MetricsFactory = MetricsSystem.factory, handler: @escaping Handler
    ) {
        self.init(
            bus: bus, spec: spec, logger: logger, retry: retry, concurrency: max(1, min(concurrency, Int(spec.prefetch))),
            metrics: metrics, work: .each(handler))
    }

    /// A consumer that hands `handler` up to `batchLimit` messages at a time (at most the
    /// queue's prefetch): every message that has arrived while the previous batch was handled.
    public init(
        _ type: Message.Type = Message.self, bus: any MessageBus, spec: ConsumerSpec, logger: Logger, retry: RetryPolicy = RetryPolicy(),
        batchLimit: Int, metrics: any MetricsFactory = MetricsSystem.factory, batchHandler: @escaping BatchHandler
    ) {
        self.init(
            bus: bus, spec: spec, logger: logger, retry: retry, concurrency: 1, metrics: metrics,
            work: .batch(limit: max(1, min(batchLimit, Int(spec.prefetch))), batchHandler))
    }

    private init(
        bus: any MessageBus, spec: ConsumerSpec, logger: Logger, retry: RetryPolicy, concurrency: Int, metrics: any MetricsFactory, work: Work
    ) {
        self.metrics = metrics
        self.concurrency = concurrency
        self.bus = bus
        self.spec = spec
        var logger = logger
        logger[metadataKey: "queue"] = "\(spec.queue)"
        self.logger = logger
        self.retry = retry
        self.work = work
    }

    public func run() async throws {
        let deliveries = try await bus.subscribe(spec)
        if case .batch(let limit, let handler) = work {
            return try await runBatches(deliveries, limit: limit, handler: handler)
        }
        guard concurrency > 1 else {
            let decoder = MessageCoding.decoder()
            for await delivery in deliveries.cancelOnGracefulShutdown() {
                try await handle(delivery, decoder: decoder)
            }
            return
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            var running = 0
            for await delivery in deliveries.cancelOnGracefulShutdown() {
                if running == concurrency {
                    try await group.next()
                    running -= 1
                }
                group.addTask { try await handle(delivery) }
                running += 1
            }
            try await group.waitForAll()
        }
    }

    /// Hands what has arrived to `handler`, up to `limit` at a time, while the next deliveries
    /// gather; on shutdown, what has arrived is still handled.
    private func runBatches(_ deliveries: AsyncStream<Delivery>, limit: Int, handler: @escaping BatchHandler) async throws {
        let arrived = Arrivals()
        let (signals, signal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await delivery in deliveries.cancelOnGracefulShutdown() {
                    arrived.deliveries.withLock { $0.append(delivery) }
                    signal.yield()
                }
                signal.finish()
            }
            group.addTask {
                let decoder = MessageCoding.decoder()
                for await _ in signals {
                    while true {
                        let batch = arrived.deliveries.withLock { arrived in
                            defer { arrived.removeFirst(min(limit, arrived.count)) }
                            return Array(arrived.prefix(limit))
                        }
                        if batch.isEmpty { break }
                        try await handleBatch(batch, handler: handler, decoder: decoder)
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    /// Settles a batch of deliveries; exposed so that tests can drive a batch consumer.
    public func handleBatch(_ deliveries: [Delivery], decoder: JSONDecoder = MessageCoding.decoder()) async throws {
        guard case .batch(_, let handler) = work else {
            for delivery in deliveries { try await handle(delivery, decoder: decoder) }
            return
        }
        try await handleBatch(deliveries, handler: handler, decoder: decoder)
    }

    private func handleBatch(_ deliveries: [Delivery], handler: BatchHandler, decoder: JSONDecoder) async throws {
        var received: [Received] = []
        for delivery in deliveries {
            if let envelope = try await decode(delivery, decoder: decoder) { received.append(Received(envelope: envelope, delivery: delivery)) }
        }
        guard !received.isEmpty else { return }
        var outages = 0
        while true {
            do {
                let refused = try await handler(received)
                for (index, item) in received.enumerated() {
                    if let reason = refused[index] {
                        try await deadLetter(item.delivery, kind: "rejected", reason: reason)
                    } else {
                        item.delivery.ack()
                    }
                }
                return
            } catch is CancellationError {
                // Stopping: the broker delivers them again, to this consumer's successor.
                for item in received { item.delivery.requeue() }
                return
            } catch  where retry.isOutage(error) {
                outages += 1
                guard await waitOutOutage(error, failures: outages, id: received[0].envelope.id) else {
                    for item in received { item.delivery.requeue() }
                    return
                }
            } catch  where received.count > 1 {
                logger.warning(
                    "Batch handler failed; trying its messages one at a time",
                    metadata: ["count": "\(received.count)", "error": "\(String(reflecting: error))"])
                for item in received {
                    try await settle(item.delivery, id: item.envelope.id) {
                        if let reason = try await handler([item])[0] { throw MessageRejected(reason) }
                    }
                }
                return
            } catch {
                try await settle(received[0].delivery, id: received[0].envelope.id) { throw error }
                return
            }
        }
    }

    /// Settles one delivery; exposed so that tests can drive a consumer message by message.
    public func handle(_ delivery: Delivery, decoder: JSONDecoder = MessageCoding.decoder()) async throws {
        guard let envelope = try await decode(delivery, decoder: decoder) else { return }
        switch work {
        case .each(let handler):
            try await settle(delivery, id: envelope.id) { try await handler(envelope, delivery) }
        case .batch(_, let handler):
            try await settle(delivery, id: envelope.id) {
                if let reason = try await handler([Received(envelope: envelope, delivery: delivery)])[0] { throw MessageRejected(reason) }
            }
        }
    }

    /// The delivery's envelope; `nil` when it does not decode or is not for this consumer, in
    /// which case it has been dead-lettered.
    private func decode(_ delivery: Delivery, decoder: JSONDecoder) async throws -> MessageEnvelope<Message>? {
        let envelope: MessageEnvelope<Message>
        do {
            envelope = try decoder.decode(MessageEnvelope<Message>.self, from: Data(delivery.body))
        } catch {
            try await deadLetter(delivery, kind: "undecodable", reason: "undecodable body: \(describe(error))")
            return nil
        }
        guard envelope.type == Message.messageType else {
            try await deadLetter(
                delivery, kind: "unexpected_type", reason: "type '\(envelope.type)' is not '\(Message.messageType)' that this queue reads")
            return nil
        }
        guard envelope.version <= Message.schemaVersion else {
            try await deadLetter(
                delivery, kind: "unsupported_version",
                reason:
                    "schema version \(envelope.version) of \(envelope.type) is newer than \(Message.schemaVersion), the newest this consumer reads")
            return nil
        }
        return envelope
    }

    /// Runs `work` for one delivery: acknowledged when it returns, dead-lettered when it throws
    /// ``MessageRejected``, and otherwise retried as ``RetryPolicy`` says.
    private func settle(_ delivery: Delivery, id: String, _ work: () async throws -> Void) async throws {
        var outages = 0
        while true {
            do {
                try await work()
                delivery.ack()
            } catch let rejected as MessageRejected {
                try await deadLetter(delivery, kind: "rejected", reason: rejected.reason)
            } catch is CancellationError {
                delivery.requeue()
            } catch  where retry.isOutage(error) {
                outages += 1
                if await waitOutOutage(error, failures: outages, id: id) { continue }
                delivery.requeue()
            } catch {
                try await fail(delivery, id: id, error: error)
            }
            return
        }
    }

    /// Counts a failure of `delivery`: dead-letters it once it has failed as often as the policy
    /// allows, and otherwise sends it round again after a backoff.
    private func fail(_ delivery: Delivery, id: String, error: any Error) async throws {
        let failures = delivery.failures == Int.max ? Int.max : delivery.failures + 1
        let description = String(describing: error)
        guard failures < retry.maximumAttempts else {
            return try await deadLetter(delivery, kind: "failed", reason: "failed \(failures) times; the last error: \(description)")
        }
        logger.error(
            "Handler failed; message will be retried",
            metadata: ["message_id": "\(id)", "failures": "\(failures)", "error": "\(String(reflecting: error))"])
        Counter(label: "drover_messages_retried_total", dimensions: [("queue", spec.queue)], factory: metrics).increment()
        // On shutdown the copy goes at once: the count must not be lost with the wait.
        try? await cancelWhenGracefulShutdown { try await Task.sleep(for: retry.delay(afterFailures: failures)) }
        do {
            try await bus.retry(delivery, failures: failures, error: description)
        } catch {
            // The copy could not be published (the bus is stopping, or the broker away): the
            // broker has the message still, and hands it out again.
            logger.warning("Retry not published; message requeued", metadata: ["message_id": "\(id)", "error": "\(error)"])
            delivery.requeue()
        }
    }

    /// Waits out the backoff after `failures` outages in a row. - Returns: false when the
    /// service is stopping instead, so that the message goes back to the queue.
    private func waitOutOutage(_ error: any Error, failures: Int, id: String) async -> Bool {
        Counter(label: "drover_consumer_outage_waits_total", dimensions: [("queue", spec.queue)], factory: metrics).increment()
        if failures == 1 || failures.isMultiple(of: 10) {
            logger.warning(
                "A dependency is away; holding the message and trying again",
                metadata: ["message_id": "\(id)", "tries": "\(failures)", "error": "\(String(reflecting: error))"])
        }
        do {
            try await cancelWhenGracefulShutdown { try await Task.sleep(for: retry.delay(afterFailures: failures)) }
            return !Task.isCancelled && !Task.isShuttingDownGracefully
        } catch {
            return false
        }
    }

    private func deadLetter(_ delivery: Delivery, kind: String, reason: String) async throws {
        do {
            try await bus.deadLetter(delivery, reason: reason)
        } catch {
            // Not dead-lettered (the bus is stopping, or the broker away): the message is
            // handed out again rather than lost, and the consumer goes on.
            logger.warning(
                "Dead-lettering failed; message requeued", metadata: ["message_id": "\(delivery.messageID ?? "-")", "error": "\(error)"])
            delivery.requeue()
            return
        }
        logger.warning(
            "Message dead-lettered",
            metadata: ["message_id": "\(delivery.messageID ?? "-")", "routing_key": "\(delivery.routingKey)", "reason": "\(reason)"])
        Counter(label: "drover_messages_dead_lettered_total", dimensions: [("queue", spec.queue), ("reason", kind)], factory: metrics)
            .increment()
    }
}

/// Deliveries that have arrived and wait for the next batch.
private final class Arrivals: Sendable {
    let deliveries = Mutex<[Delivery]>([])
}

/// A decoding error in words: which field, and what was wrong with it.
func describe(_ error: any Error) -> String {
    func path(_ codingPath: [any CodingKey]) -> String {
        codingPath.isEmpty ? "the body" : codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
    switch error {
    case DecodingError.keyNotFound(let key, let context):
        return "\(path(context.codingPath + [key])): missing"
    case DecodingError.typeMismatch(let type, let context):
        return "\(path(context.codingPath)): expected \(type)"
    case DecodingError.valueNotFound(let type, let context):
        return "\(path(context.codingPath)): expected \(type), found null"
    case DecodingError.dataCorrupted(let context):
        let underlying = (context.underlyingError as? NSError)?.userInfo[NSDebugDescriptionErrorKey] as? String
        return "\(path(context.codingPath)): \(underlying ?? context.debugDescription)"
    default:
        return "\(error)"
    }
}
