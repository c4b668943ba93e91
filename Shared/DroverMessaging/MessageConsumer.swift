public import DroverModel
public import Foundation
public import Logging
public import Metrics
public import ServiceLifecycle

/// Thrown by a handler to refuse a message for good: it goes to the dead-letter queue with `reason`.
public struct MessageRejected: Error, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// Consumes one queue of typed messages: decodes each, runs the handler, and acknowledges only
/// after the handler returns (so only after its transaction has committed).
///
/// - A body that does not decode, or names another type or a newer schema version, is
///   dead-lettered with the reason and counted in `drover_messages_dead_lettered_total`.
/// - A handler that throws ``MessageRejected`` dead-letters the message with its reason.
/// - Any other error is logged and the message requeued after `retryDelay`: it is retried.
public struct MessageConsumer<Message: DroverMessage>: Service {
    public typealias Handler = @Sendable (MessageEnvelope<Message>, Delivery) async throws -> Void

    private let bus: any MessageBus
    private let spec: ConsumerSpec
    private let logger: Logger
    private let retryDelay: Duration
    private let handler: Handler
    private let metrics: any MetricsFactory
    private let concurrency: Int

    /// - Parameter concurrency: how many messages are handled at once (at most the queue's
    ///   prefetch). Above 1, handlers run side by side and messages are settled in the order
    ///   their handlers finish; use it only where handlers are safe to run concurrently.
    public init(
        _ type: Message.Type = Message.self, bus: any MessageBus, spec: ConsumerSpec, logger: Logger, retryDelay: Duration = .seconds(1),
        concurrency: Int = 1, metrics: any MetricsFactory = MetricsSystem.factory, handler: @escaping Handler
    ) {
        self.metrics = metrics
        self.concurrency = max(1, min(concurrency, Int(spec.prefetch)))
        self.bus = bus
        self.spec = spec
        var logger = logger
        logger[metadataKey: "queue"] = "\(spec.queue)"
        self.logger = logger
        self.retryDelay = retryDelay
        self.handler = handler
    }

    public func run() async throws {
        let deliveries = try await bus.subscribe(spec)
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

    /// Settles one delivery; exposed so that tests can drive a consumer message by message.
    public func handle(_ delivery: Delivery, decoder: JSONDecoder = MessageCoding.decoder()) async throws {
        let envelope: MessageEnvelope<Message>
        do {
            envelope = try decoder.decode(MessageEnvelope<Message>.self, from: Data(delivery.body))
        } catch {
            return try await deadLetter(delivery, kind: "undecodable", reason: "undecodable body: \(describe(error))")
        }
        guard envelope.type == Message.messageType else {
            return try await deadLetter(
                delivery, kind: "unexpected_type", reason: "type '\(envelope.type)' is not '\(Message.messageType)' that this queue reads")
        }
        guard envelope.version <= Message.schemaVersion else {
            return try await deadLetter(
                delivery, kind: "unsupported_version",
                reason:
                    "schema version \(envelope.version) of \(envelope.type) is newer than \(Message.schemaVersion), the newest this consumer reads")
        }
        do {
            try await handler(envelope, delivery)
            delivery.ack()
        } catch let rejected as MessageRejected {
            try await deadLetter(delivery, kind: "rejected", reason: rejected.reason)
        } catch {
            logger.error(
                "Handler failed; message will be retried", metadata: ["message_id": "\(envelope.id)", "error": "\(String(reflecting: error))"])
            try? await Task.sleep(for: retryDelay)
            delivery.requeue()
        }
    }

    private func deadLetter(_ delivery: Delivery, kind: String, reason: String) async throws {
        logger.warning(
            "Message dead-lettered",
            metadata: ["message_id": "\(delivery.messageID ?? "-")", "routing_key": "\(delivery.routingKey)", "reason": "\(reason)"])
        Counter(label: "drover_messages_dead_lettered_total", dimensions: [("queue", spec.queue), ("reason", kind)], factory: metrics)
            .increment()
        try await bus.deadLetter(delivery, reason: reason)
    }
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
