import Foundation
import Logging
import Metrics
import Synchronization

/// Reads one queue on a connection of its own, on a thread of its own, and streams deliveries.
///
/// Settlements (ack, requeue, reject) come back from any task through a queue that the thread
/// applies on the connection the delivery came from. After a lost connection the thread
/// reconnects with backoff, declares its topology again and resumes; settlements meant for the
/// old connection are dropped, since the broker requeues those deliveries itself.
final class AMQPConsumer: DeliveryAcknowledger, @unchecked Sendable {
    private struct Settlement {
        var generation: UInt64
        var tag: UInt64
        var outcome: Delivery.Outcome
    }

    private struct Shared {
        var settlements: [Settlement] = []
        var stopping = false
    }

    let spec: ConsumerSpec
    private let configuration: AMQPBus.Configuration
    private let logger: Logger
    private let shared = Mutex(Shared())
    private let wake = WakeSignal()
    private let continuation: AsyncStream<Delivery>.Continuation
    private let exited: AsyncStream<Never>
    private let exitContinuation: AsyncStream<Never>.Continuation
    private let ready: AsyncStream<Never>
    private let readyContinuation: AsyncStream<Never>.Continuation
    private let delivered: Counter
    /// How many messages this queue's dead-letter queue holds, read every 15 seconds.
    private let deadLetterDepth: Gauge
    private let link: ReconnectingConnection

    init(spec: ConsumerSpec, configuration: AMQPBus.Configuration, logger: Logger, continuation: AsyncStream<Delivery>.Continuation) {
        self.spec = spec
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "queue"] = "\(spec.queue)"
        self.logger = logger
        self.continuation = continuation
        (exited, exitContinuation) = AsyncStream.makeStream(of: Never.self)
        (ready, readyContinuation) = AsyncStream.makeStream(of: Never.self)
        delivered = Counter(label: "drover_amqp_delivered_total", dimensions: [("queue", spec.queue)])
        deadLetterDepth = Gauge(label: "drover_dead_letter_queue_messages", dimensions: [("queue", spec.queue)])
        link = ReconnectingConnection(
            role: "consumer", configuration: configuration, logger: self.logger, wake: wake, dimensions: [("queue", spec.queue)]
        ) { connection throws(AMQPError) in
            if spec.declaresTopology { try Self.declareTopology(of: spec, configuration: configuration, on: connection) }
            try connection.startConsuming(spec.queue, prefetch: spec.prefetch)
        }
        let thread = Thread { [self] in run() }
        thread.name = "drover-amqp-consumer"
        thread.start()
    }

    var isConnected: Bool { link.isConnected }

    /// Returns once the queue and its bindings are declared and consuming has started (or the
    /// consumer stopped first). Only one task may wait.
    func waitUntilReady() async {
        for await _ in ready {}
    }

    func settle(_ delivery: Delivery, _ outcome: Delivery.Outcome) {
        let wasEmpty = shared.withLock { shared in
            let wasEmpty = shared.settlements.isEmpty
            shared.settlements.append(Settlement(generation: delivery.connectionGeneration, tag: delivery.deliveryTag, outcome: outcome))
            return wasEmpty
        }
        if wasEmpty { wake.raise() }
    }

    /// Applies the settlements already made, closes the connection (the broker requeues what is
    /// unsettled) and ends the stream.
    func stop() async {
        shared.withLock { $0.stopping = true }
        wake.raise()
        for await _ in exited {}
    }

    // MARK: The consumer thread

    private func run() {
        var generation: UInt64 = 0
        var coalescer = AckCoalescer()
        var nextDepthCheck = ContinuousClock.now

        while true {
            let (settlements, stopping) = shared.withLock { shared in
                defer { shared.settlements = [] }
                return (shared.settlements, shared.stopping)
            }
            if stopping && !link.isConnected { break }
            guard let (open, isNew) = link.open() else { continue }
            if isNew {
                generation += 1
                coalescer = AckCoalescer()
                readyContinuation.finish()
            }
            do {
                let current = settlements.filter { $0.generation == generation }.map { (tag: $0.tag, outcome: $0.outcome) }
                for call in coalescer.calls(for: current) {
                    switch call {
                    case .ack(let tag, let multiple): try open.ack(tag, multiple: multiple)
                    case .requeue(let tag): try open.requeue(tag)
                    case .reject(let tag): try open.reject(tag)
                    }
                }
                if stopping { break }
                if spec.deadLettering, ContinuousClock.now >= nextDepthCheck {
                    deadLetterDepth.record(Int64(try open.messageCount(of: spec.deadLetterQueue)))
                    nextDepthCheck = .now + .seconds(15)
                }
                _ = open.waitReadable(wake: wake, timeout: .milliseconds(500))
                var received = 0
                while received < 64, let message = try open.nextDelivery() {
                    received += 1
                    delivered.increment()
                    continuation.yield(
                        Delivery(
                            queue: spec.queue, exchange: message.exchange, routingKey: message.routingKey, messageID: message.messageID,
                            type: message.type, headers: message.headers, body: message.body, redelivered: message.redelivered,
                            deliveryTag: message.deliveryTag, connectionGeneration: generation, acknowledger: self, userID: message.userID
                        ).restoringRetried())
                }
            } catch {
                link.drop(after: error)
            }
        }
        link.close()
        continuation.finish()
        readyContinuation.finish()
        exitContinuation.finish()
    }

    /// The exchange, the dead-letter exchange, this queue's dead-letter queue, the queue (whose
    /// own rejects also go to that dead-letter queue) and its bindings. Declaring is idempotent.
    private static func declareTopology(of spec: ConsumerSpec, configuration: AMQPBus.Configuration, on connection: AMQPConnection) throws(AMQPError)
    {
        let kind = spec.kind.argument.map { [("x-queue-type", QueueArgument.string($0))] } ?? []
        let passive = !configuration.declaresExchanges
        try connection.declareExchange(configuration.exchange, type: "topic", passive: passive)
        if spec.deadLettering {
            try connection.declareExchange(configuration.deadLetterExchange, type: "topic", passive: passive)
            try connection.declareQueue(spec.deadLetterQueue, arguments: kind + configuration.deadLetterQueueBounds)
            try connection.bindQueue(spec.deadLetterQueue, exchange: configuration.deadLetterExchange, pattern: spec.queue)
            try connection.declareQueue(
                spec.queue,
                arguments: kind + [
                    ("x-dead-letter-exchange", .string(configuration.deadLetterExchange)), ("x-dead-letter-routing-key", .string(spec.queue)),
                ])
        } else {
            try connection.declareQueue(spec.queue, arguments: kind + (spec.isDeadLetterQueue ? configuration.deadLetterQueueBounds : []))
        }
        for pattern in spec.bindings {
            try connection.bindQueue(spec.queue, exchange: configuration.exchange, pattern: pattern)
        }
    }
}
