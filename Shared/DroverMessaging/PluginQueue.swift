public import DroverModel
public import Foundation
public import Logging
import Metrics

/// A plugin's own queue, made and bound to `drover.events` by `drover plugin create NAME --bind
/// KEY…`, read on a connection of its own: what a plugin written in Swift needs to follow the
/// cluster's events.
///
/// It declares and publishes nothing, since a plugin's broker user may do neither; the queue
/// and its bindings are the control plane's to make. After a lost connection it reconnects with
/// backoff and goes on; an event not acknowledged by then is delivered again
/// (``PluginEvent/redelivered``). A message that is not an event it can read is rejected, which
/// moves it to the plugin's dead-letter queue (`plugin.<name>.dead-letter`), and is logged with
/// the reason and counted (`drover_plugin_refused_total`).
///
/// ```swift
/// let queue = try PluginQueue(url: plugin.url, plugin: "audit", logger: logger)
/// for await event in queue.events() {
///     print(event.event.topic, event.event.type, event.event.key)
///     event.ack()
/// }
/// ```
public final class PluginQueue: Sendable {
    /// The queue read: `plugin.<name>`.
    public let queue: String
    private let consumer: AMQPConsumer
    private let deliveries: AsyncStream<Delivery>
    private let logger: Logger
    private let refused: Counter

    /// Starts reading plugin `name`'s queue.
    /// - Parameters:
    ///   - url: the AMQP URL `drover plugin create` printed (the plugin's own broker user).
    ///   - name: the plugin's name; its queue is `plugin.<name>`.
    ///   - prefetch: how many events may be handed over and not yet acknowledged.
    ///   - logger: where connections and refusals are logged.
    /// - Throws: ``MessagingError/invalidURL(_:reason:)`` for a URL that is not one.
    public init(url: String, plugin name: String, prefetch: UInt16 = 100, logger: Logger) throws {
        var configuration = try AMQPBus.Configuration(url: url)
        configuration.declaresExchanges = false
        queue = BrokerUsers.queue(ofPlugin: name)
        var spec = ConsumerSpec(queue: queue, bindings: [], prefetch: max(prefetch, 1), deadLettering: false)
        spec.declaresTopology = false
        let (deliveries, continuation) = AsyncStream.makeStream(of: Delivery.self)
        self.deliveries = deliveries
        self.logger = logger
        refused = Counter(label: "drover_plugin_refused_total", dimensions: [("queue", queue)])
        consumer = AMQPConsumer(spec: spec, configuration: configuration, logger: logger, continuation: continuation)
    }

    /// True while the connection is open and the queue is being read.
    public var isConnected: Bool { consumer.isConnected }

    /// Returns once the queue is being read (or reading stopped first).
    public func waitUntilReady() async { await consumer.waitUntilReady() }

    /// The events as they arrive, in the order the queue holds them, until ``stop()``. Iterate it
    /// from one task only. Settle each event once: ``PluginEvent/ack()`` when handled.
    public func events() -> AsyncCompactMapSequence<AsyncStream<Delivery>, PluginEvent> {
        let (logger, refused) = (self.logger, self.refused)
        let decoder = MessageCoding.decoder()
        return deliveries.compactMap { delivery in
            switch PluginEvent.read(delivery, decoder: decoder) {
            case .success(let event): return event
            case .failure(let reason):
                logger.warning(
                    "Message refused: not an event this plugin reads; moved to its dead-letter queue",
                    metadata: ["queue": "\(delivery.queue)", "routing_key": "\(delivery.routingKey)", "reason": "\(reason.description)"])
                refused.increment()
                delivery.reject()
                return nil
            }
        }
    }

    /// Applies the settlements made, closes the connection (the broker keeps what is not
    /// acknowledged for the next reader) and ends ``events()``.
    public func stop() async { await consumer.stop() }
}

/// One cluster event read from a plugin's queue, to be settled once.
public struct PluginEvent: Sendable {
    /// The event: topic, type, key, index and the object as the HTTP API shows it.
    public let event: StreamEvent
    /// The message's id, `event-<n>` with `n` the event's number in the log: the same event delivered
    /// twice has the same id.
    public let id: String
    /// When the change was published.
    public let time: Date
    /// The routing key, `event.<topic>.<type>.<key>`.
    public let routingKey: String
    /// True when the broker delivered this event before and it was not acknowledged.
    public let redelivered: Bool
    private let delivery: Delivery

    /// Done with: the broker forgets it.
    public func ack() { delivery.ack() }
    /// Not handled now: the broker delivers it again.
    public func requeue() { delivery.requeue() }
    /// Refused: the broker moves it to the plugin's dead-letter queue.
    public func reject() { delivery.reject() }

    /// Why a message is not an event of a version this library reads.
    struct Refusal: Error, CustomStringConvertible {
        var description: String
    }

    static func read(_ delivery: Delivery, decoder: JSONDecoder) -> Result<PluginEvent, Refusal> {
        struct Header: Decodable {
            var type: String
            var version: Int
        }
        let body = Data(delivery.body)
        guard let header = try? decoder.decode(Header.self, from: body) else {
            return .failure(Refusal(description: "not a Drover message envelope"))
        }
        guard header.type == StreamEvent.messageType else {
            return .failure(Refusal(description: "type '\(header.type)' is not '\(StreamEvent.messageType)'"))
        }
        guard header.version <= StreamEvent.schemaVersion else {
            return .failure(
                Refusal(description: "version \(header.version) is newer than \(StreamEvent.schemaVersion), the newest this plugin reads"))
        }
        do {
            let envelope = try decoder.decode(MessageEnvelope<StreamEvent>.self, from: body)
            return .success(
                PluginEvent(
                    event: envelope.data, id: envelope.id, time: envelope.time, routingKey: delivery.routingKey, redelivered: delivery.redelivered,
                    delivery: delivery))
        } catch {
            return .failure(Refusal(description: "an event with a bad field: \(error)"))
        }
    }
}
