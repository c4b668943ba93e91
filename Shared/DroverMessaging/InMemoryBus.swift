import Foundation
import Synchronization

/// A ``MessageBus`` inside one process, with the topic semantics of the AMQP bus: for unit tests
/// of logic. Queues exist from their first subscription; a requeued delivery comes back marked
/// redelivered; dead-lettered copies are kept for inspection.
public final class InMemoryBus: MessageBus {
    private struct Queue {
        var patterns: [TopicPattern]
        var continuation: AsyncStream<Delivery>.Continuation
        var nextTag: UInt64 = 1
        var unacked: [UInt64: Delivery] = [:]
    }

    private struct State {
        var queues: [String: Queue] = [:]
        var deadLetters: [String: [OutgoingMessage]] = [:]
        var published: [OutgoingMessage] = []
    }

    private let state = Mutex(State())
    /// The name deliveries report as their exchange.
    public let exchange: String

    /// An empty bus whose topic exchange is named `exchange`.
    public init(exchange: String = "drover") {
        self.exchange = exchange
    }

    /// Every message published so far, in order.
    public var published: [OutgoingMessage] { state.withLock { $0.published } }

    /// The dead-lettered copies in `queue`'s dead-letter queue.
    public func deadLetters(of queue: String) -> [OutgoingMessage] { state.withLock { $0.deadLetters[queue] ?? [] } }

    /// How many deliveries of `queue` are handed out and not yet settled.
    public func unackedCount(of queue: String) -> Int { state.withLock { $0.queues[queue]?.unacked.count ?? 0 } }

    /// Whether a consumer has subscribed to `queue` (messages published before are not kept).
    public func isSubscribed(_ queue: String) -> Bool { state.withLock { $0.queues[queue] != nil } }

    public func publish(_ messages: [OutgoingMessage]) async throws {
        state.withLock { state in
            for message in messages {
                state.published.append(message)
                guard message.exchange == nil || message.exchange == exchange else { continue }
                for name in state.queues.keys where state.queues[name]!.patterns.contains(where: { $0.matches(message.routingKey) }) {
                    Self.deliver(message, to: name, redelivered: false, in: &state, acknowledger: self)
                }
            }
        }
    }

    public func subscribe(_ spec: ConsumerSpec) async throws -> AsyncStream<Delivery> {
        let patterns = try spec.bindings.map(TopicPattern.init)
        let (stream, continuation) = AsyncStream.makeStream(of: Delivery.self)
        state.withLock { $0.queues[spec.queue] = Queue(patterns: patterns, continuation: continuation) }
        return stream
    }

    public func deadLetter(_ delivery: Delivery, reason: String) async throws {
        state.withLock {
            $0.deadLetters[delivery.queue, default: []].append(.deadLetter(of: delivery, reason: reason, exchange: "\(exchange).dead-letter"))
        }
        delivery.ack()
    }

    public func retry(_ delivery: Delivery, failures: Int, error: String) async throws {
        state.withLock { state in
            state.published.append(.retry(of: delivery, failures: failures, error: error))
            Self.deliver(
                .retry(of: delivery, failures: failures, error: error), to: delivery.queue, redelivered: false, in: &state, acknowledger: self)
        }
        delivery.ack()
    }

    private static func deliver(
        _ message: OutgoingMessage, to queue: String, redelivered: Bool, in state: inout State, acknowledger: InMemoryBus
    ) {
        guard var q = state.queues[queue] else { return }
        var headers = message.headers
        headers["x-schema-version"] = String(message.schemaVersion)
        let delivery = Delivery(
            queue: queue, exchange: message.exchange ?? acknowledger.exchange, routingKey: message.routingKey, messageID: message.messageID,
            type: message.type, headers: headers, body: message.body, redelivered: redelivered, deliveryTag: q.nextTag,
            connectionGeneration: 0, acknowledger: acknowledger
        ).restoringRetried()
        q.unacked[q.nextTag] = delivery
        q.nextTag += 1
        q.continuation.yield(delivery)
        state.queues[queue] = q
    }
}

extension InMemoryBus: DeliveryAcknowledger {
    public func settle(_ delivery: Delivery, _ outcome: Delivery.Outcome) {
        state.withLock { state in
            guard state.queues[delivery.queue]?.unacked.removeValue(forKey: delivery.deliveryTag) != nil else { return }
            if outcome == .requeue {
                let message = OutgoingMessage(
                    exchange: delivery.exchange, routingKey: delivery.routingKey, messageID: delivery.messageID ?? "", type: delivery.type ?? "",
                    schemaVersion: Int(delivery.headers["x-schema-version"] ?? "") ?? 0, timestamp: Date(), body: delivery.body,
                    headers: delivery.headers
                )
                Self.deliver(message, to: delivery.queue, redelivered: true, in: &state, acknowledger: self)
            }
        }
    }
}
