public import Logging
public import ServiceLifecycle
import Synchronization

/// The ``MessageBus`` over RabbitMQ (AMQP 0-9-1, librabbitmq): one publisher connection and one
/// connection per consumer, each on a dedicated thread.
///
/// Run it in the service's `ServiceGroup` before anything that uses it: on graceful shutdown it
/// stops its consumers, lets accepted publishes be confirmed within the grace period, and closes.
public final class AMQPBus: MessageBus, Service {
    /// How this bus connects and behaves.
    public let configuration: Configuration
    private let logger: Logger
    private let publisher: AMQPPublisher
    private let consumers = Mutex<[AMQPConsumer]>([])

    /// A bus for `configuration`; it connects on first use and keeps reconnecting until it runs and shuts down.
    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.publisher = AMQPPublisher(configuration: configuration, logger: logger)
    }

    /// True while the publisher and every consumer hold an open connection.
    public var isConnected: Bool {
        publisher.isConnected && consumers.withLock { $0.allSatisfy(\.isConnected) }
    }

    public func publish(_ messages: [OutgoingMessage]) async throws {
        try await publisher.publish(messages)
    }

    public func subscribe(_ spec: ConsumerSpec) async throws -> AsyncStream<Delivery> {
        for pattern in spec.bindings { _ = try TopicPattern(pattern) }
        var spec = spec
        if spec.kind == .classic { spec.kind = configuration.queueKind }
        let (stream, continuation) = AsyncStream.makeStream(of: Delivery.self)
        let consumer = AMQPConsumer(spec: spec, configuration: configuration, logger: logger, continuation: continuation)
        consumers.withLock { $0.append(consumer) }
        continuation.onTermination = { [weak self] _ in
            Task { await self?.remove(consumer) }
        }
        await consumer.waitUntilReady()
        if Task.isCancelled {
            await remove(consumer)
            throw CancellationError()
        }
        return stream
    }

    public func deadLetter(_ delivery: Delivery, reason: String) async throws {
        try await publisher.publish([.deadLetter(of: delivery, reason: reason, exchange: configuration.deadLetterExchange)])
        delivery.ack()
    }

    public func retry(_ delivery: Delivery, failures: Int, error: String) async throws {
        try await publisher.publish([.retry(of: delivery, failures: failures, error: error)])
        delivery.ack()
    }

    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Stops every consumer, then the publisher.
    public func shutdown() async {
        let all = consumers.withLock { consumers in
            defer { consumers = [] }
            return consumers
        }
        for consumer in all { await consumer.stop() }
        await publisher.shutdown()
    }

    private func remove(_ consumer: AMQPConsumer) async {
        await consumer.stop()
        consumers.withLock { $0.removeAll { $0 === consumer } }
    }
}
