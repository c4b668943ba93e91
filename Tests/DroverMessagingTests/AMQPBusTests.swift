import DroverMessaging
import DroverModel
import DroverTestSupport
import Foundation
import Logging
import MetricsTestKit
import Synchronization
import Testing

/// The AMQP bus against the real RabbitMQ that `deploy/local/test` starts. Serialized: one test
/// restarts the broker.
@Suite(.serialized, .enabled(if: TestEnvironment.runsMessagingIntegration))
struct AMQPBusTests {
    private func makeBus() throws -> AMQPBus {
        var configuration = try AMQPBus.Configuration(url: try #require(TestEnvironment.amqpURL, "DROVER_TEST_AMQP_URL is not set"))
        configuration.initialBackoff = .milliseconds(50)
        configuration.maximumBackoff = .milliseconds(500)
        return AMQPBus(configuration: configuration, logger: Logger(label: "test.bus"))
    }

    private func message(_ key: String, id: String, body: String = "{}") -> OutgoingMessage {
        OutgoingMessage(routingKey: key, messageID: id, type: "test.message", schemaVersion: 1, timestamp: Date(), body: Array(body.utf8))
    }

    @Test func publishesWithConfirmsAndConsumesWithAcks() async throws {
        let word = TestEnvironment.uniqueName("basic")
        let spec = ConsumerSpec(queue: "test.\(word)", bindings: ["\(word).#"])
        let ids = (0..<500).map { "m\($0)" }

        let bus = try makeBus()
        var deliveries = try await bus.subscribe(spec).makeAsyncIterator()
        try await bus.publish(ids.map { message("\(word).item", id: $0, body: #"{"n":"\#($0)"}"#) })
        var received: [String] = []
        for _ in ids {
            let delivery = try #require(await deliveries.next())
            #expect(delivery.body == Array(#"{"n":"\#(delivery.messageID ?? "")"}"#.utf8))
            #expect(delivery.type == "test.message" && delivery.headers["x-schema-version"] == "1")
            received.append(try #require(delivery.messageID))
            delivery.ack()
        }
        #expect(received == ids)
        await bus.shutdown()

        // Had an ack been lost, its message would come back before the sentinel: the queue is FIFO.
        let again = try makeBus()
        var after = try await again.subscribe(spec).makeAsyncIterator()
        try await again.publish(message("\(word).sentinel", id: "sentinel"))
        let first = try #require(await after.next())
        #expect(first.messageID == "sentinel")
        first.ack()
        await again.shutdown()
    }

    @Test func aRequeuedDeliveryComesBackMarkedRedelivered() async throws {
        let word = TestEnvironment.uniqueName("requeue")
        let bus = try makeBus()
        var deliveries = try await bus.subscribe(ConsumerSpec(queue: "test.\(word)", bindings: ["\(word).#"])).makeAsyncIterator()
        try await bus.publish(message("\(word).x", id: "once"))
        let first = try #require(await deliveries.next())
        #expect(!first.redelivered)
        first.requeue()
        let second = try #require(await deliveries.next())
        #expect(second.messageID == "once" && second.redelivered)
        second.ack()
        await bus.shutdown()
    }

    @Test func quorumQueuesCarryMessagesAndDeadLettersToo() async throws {
        let word = TestEnvironment.uniqueName("quorum")
        let spec = ConsumerSpec(queue: "test.\(word)", bindings: ["\(word).#"], kind: .quorum)
        let bus = try makeBus()
        var deliveries = try await bus.subscribe(spec).makeAsyncIterator()
        try await bus.publish([message("\(word).a", id: "q1"), message("\(word).b", id: "q2")])
        let first = try #require(await deliveries.next())
        first.ack()
        let second = try #require(await deliveries.next())
        #expect([first.messageID, second.messageID] == ["q1", "q2"])
        // A broker-side reject goes to the quorum queue's dead-letter queue through its own policy.
        second.reject()
        var deadLetters = try await bus.subscribe(.deadLetters(of: spec.queue, kind: .quorum)).makeAsyncIterator()
        let dead = try #require(await deadLetters.next())
        #expect(dead.messageID == "q2" && dead.routingKey == spec.queue)
        dead.ack()
        await bus.shutdown()
    }

    /// The same bindings and keys on RabbitMQ and on the in-memory bus route the same way.
    @Test func topicBindingsRouteLikeTheInMemoryBus() async throws {
        let word = TestEnvironment.uniqueName("topics")
        let bindings: [String: [String]] = [
            "heartbeats": ["\(word).node.*.heartbeat"],
            "node-all": ["\(word).node.#"],
            "logs": ["\(word).node.*.log.#"],
            "evals": ["\(word).cluster.eval.*.pending", "\(word).cluster.eval.*.blocked"],
        ]
        let keys = [
            "node.n1.heartbeat", "node.n1.log.info.low", "node.n2.log", "node.n2.heartbeat.extra", "cluster.eval.e1.pending",
            "cluster.eval.e1.complete", "cluster.eval.e2.blocked", "node", "nodes.n1.heartbeat",
        ].map { "\(word).\($0)" }

        func route(on bus: any MessageBus) async throws -> [String: [String]] {
            var iterators: [String: AsyncStream<Delivery>.Iterator] = [:]
            for (name, patterns) in bindings {
                // Every queue also hears the sentinel, published last: once it arrives, nothing else is coming.
                let spec = ConsumerSpec(queue: "test.\(word).\(name)", bindings: patterns + ["\(word).sentinel"])
                iterators[name] = try await bus.subscribe(spec).makeAsyncIterator()
            }
            // Not mandatory: some keys are meant to reach no queue.
            let messages = (keys.map { message($0, id: $0) } + [message("\(word).sentinel", id: "sentinel")]).map { message in
                var message = message
                message.mandatory = false
                return message
            }
            try await bus.publish(messages)
            var routed: [String: [String]] = [:]
            for name in bindings.keys {
                var iterator = iterators[name]!
                while let delivery = await iterator.next() {
                    delivery.ack()
                    if delivery.messageID == "sentinel" { break }
                    routed[name, default: []].append(String(delivery.routingKey.dropFirst(word.count + 1)))
                }
            }
            return routed
        }

        let bus = try makeBus()
        let amqp = try await route(on: bus)
        await bus.shutdown()
        let memory = try await route(on: InMemoryBus())
        #expect(amqp == memory)
        #expect(amqp["heartbeats"] == ["node.n1.heartbeat"])
        #expect(amqp["node-all"] == ["node.n1.heartbeat", "node.n1.log.info.low", "node.n2.log", "node.n2.heartbeat.extra", "node"])
        #expect(amqp["logs"] == ["node.n1.log.info.low", "node.n2.log"])
        #expect(amqp["evals"] == ["cluster.eval.e1.pending", "cluster.eval.e2.blocked"])
    }

    /// A mandatory message that no queue takes is refused by name, once the rest are confirmed.
    @Test func aMandatoryMessageNoQueueTakesIsRefusedByNameAndTheRestArePublished() async throws {
        let word = TestEnvironment.uniqueName("mandatory")
        let bus = try makeBus()
        var deliveries = try await bus.subscribe(ConsumerSpec(queue: "test.\(word)", bindings: ["\(word).bound"])).makeAsyncIterator()
        var advice = message("\(word).unbound", id: "advice")
        advice.mandatory = false
        try await bus.publish([advice])
        let error = await #expect(throws: PublishRefused.self) {
            try await bus.publish([message("\(word).bound", id: "a"), message("\(word).unbound", id: "lost"), message("\(word).bound", id: "b")])
        }
        #expect(error == PublishRefused(unroutable: ["lost"]))
        var received: [String] = []
        for _ in 0..<2 {
            let delivery = try #require(await deliveries.next())
            received.append(delivery.messageID ?? "")
            delivery.ack()
        }
        #expect(received == ["a", "b"])
        await bus.shutdown()
    }

    @Test func aMalformedBodyIsDeadLetteredAndTheNextMessageStillProcessed() async throws {
        let word = TestEnvironment.uniqueName("dlq")
        let spec = ConsumerSpec(queue: "test.\(word)", bindings: ["\(word).node.*.heartbeat"])
        let bus = try makeBus()
        let metrics = TestMetrics()
        let (handled, handledContinuation) = AsyncStream.makeStream(of: NodeHeartbeat.self)
        let consumer = MessageConsumer(NodeHeartbeat.self, bus: bus, spec: spec, logger: Logger(label: "test"), metrics: metrics) { envelope, _ in
            handledContinuation.yield(envelope.data)
        }
        // Declare the queue before publishing, then let the consumer read it.
        var direct = try await bus.subscribe(spec).makeAsyncIterator()
        try await bus.publish(message("\(word).node.n1.heartbeat", id: "bad", body: #"{"id":"bad","type":"node.heartbeat""#))
        let good = NodeHeartbeat(nodeID: "n1", sequence: 2, agentStartedAt: Date(timeIntervalSince1970: 1_800_000_000))
        try await bus.publish(OutgoingMessage(good, routingKey: "\(word).node.n1.heartbeat", id: "good"))

        try await consumer.handle(try #require(await direct.next()))
        try await consumer.handle(try #require(await direct.next()))
        var handledIterator = handled.makeAsyncIterator()
        #expect(await handledIterator.next() == good)

        var deadLetters = try await bus.subscribe(.deadLetters(of: spec.queue)).makeAsyncIterator()
        let dead = try #require(await deadLetters.next())
        #expect(dead.messageID == "bad")
        #expect(dead.headers[DeadLetterHeader.reason]?.hasPrefix("undecodable body:") == true, "headers: \(dead.headers)")
        #expect(dead.headers[DeadLetterHeader.originalRoutingKey] == "\(word).node.n1.heartbeat")
        #expect(dead.headers[DeadLetterHeader.queue] == spec.queue)
        dead.ack()
        let counter = try metrics.expectCounter("drover_messages_dead_lettered_total", [("queue", spec.queue), ("reason", "undecodable")])
        #expect(counter.totalValue == 1)
        await bus.shutdown()
    }

    /// A handler that keeps failing: the message goes round its own queue (and no other that
    /// its routing key reaches) with its failures counted, then to the dead-letter queue.
    @Test func aMessageThatKeepsFailingGoesRoundItsOwnQueueThenToTheDeadLetterQueue() async throws {
        let word = TestEnvironment.uniqueName("attempts")
        let spec = ConsumerSpec(queue: "test.\(word)", bindings: ["\(word).node.*.heartbeat"])
        let bystander = ConsumerSpec(queue: "test.\(word).bystander", bindings: ["\(word).#"])
        let bus = try makeBus()
        let metrics = TestMetrics()
        let seen = Mutex<[(failures: Int, routingKey: String, exchange: String, userID: String?)]>([])
        let consumer = MessageConsumer(
            NodeHeartbeat.self, bus: bus, spec: spec, logger: Logger(label: "test"),
            retry: RetryPolicy(maximumAttempts: 4, initialDelay: .milliseconds(10), maximumDelay: .milliseconds(50)), metrics: metrics
        ) { _, delivery in
            seen.withLock { $0.append((delivery.failures, delivery.routingKey, delivery.exchange, delivery.userID)) }
            throw CocoaError(.fileWriteOutOfSpace)
        }
        var bystanderDeliveries = try await bus.subscribe(bystander).makeAsyncIterator()
        var direct = try await bus.subscribe(spec).makeAsyncIterator()
        let beat = NodeHeartbeat(nodeID: "n1", sequence: 1, agentStartedAt: Date())
        try await bus.publish(OutgoingMessage(beat, routingKey: "\(word).node.n1.heartbeat", id: "failing"))
        try await bus.publish(message("\(word).sentinel", id: "sentinel"))

        var deadLetters = try await bus.subscribe(.deadLetters(of: spec.queue)).makeAsyncIterator()
        for _ in 0..<4 { try await consumer.handle(try #require(await direct.next())) }
        let dead = try #require(await deadLetters.next())
        dead.ack()
        #expect(dead.messageID == "failing")
        #expect(dead.headers[DeadLetterHeader.reason]?.hasPrefix("failed 4 times; the last error:") == true, "headers: \(dead.headers)")
        #expect(dead.headers[DeadLetterHeader.originalRoutingKey] == "\(word).node.n1.heartbeat")
        let tries = seen.withLock { $0 }
        #expect(tries.map(\.failures) == [0, 1, 2, 3])
        #expect(Set(tries.map(\.routingKey)) == ["\(word).node.n1.heartbeat"] && Set(tries.map(\.exchange)) == ["drover"])
        #expect(Set(tries.map(\.userID)).count == 1, "every try carries the first publisher's user")
        #expect(try metrics.expectCounter("drover_messages_retried_total", [("queue", spec.queue)]).totalValue == 3)
        // The queue bound with '#' saw the message once, then the sentinel: no retry reached it.
        let once = try #require(await bystanderDeliveries.next())
        let next = try #require(await bystanderDeliveries.next())
        #expect([once.messageID, next.messageID] == ["failing", "sentinel"])
        once.ack()
        next.ack()
        await bus.shutdown()
    }

    /// 10,000 messages, with the broker stopped and started in the middle: every one arrives at
    /// least once. Duplicates are allowed (consumers are idempotent) and reported.
    @Test func survivesABrokerRestartInTheMiddleOfAStream() async throws {
        let stop = try #require(TestEnvironment.brokerStopCommand, "DROVER_TEST_BROKER_STOP is not set")
        let start = try #require(TestEnvironment.brokerStartCommand, "DROVER_TEST_BROKER_START is not set")
        let word = TestEnvironment.uniqueName("restart")
        let total = 10_000
        let chunks = stride(from: 0, to: total, by: 100).map { from in (from..<(from + 100)).map { "m\($0)" } }
        let bus = try makeBus()
        let deliveries = try await bus.subscribe(ConsumerSpec(queue: "test.\(word)", bindings: ["\(word).#"], prefetch: 200))

        let consumer = Task {
            var seen = Set<String>()
            var duplicates = 0
            for await delivery in deliveries {
                if !seen.insert(delivery.messageID ?? "").inserted { duplicates += 1 }
                delivery.ack()
                if seen.count == total { break }
            }
            return (seen, duplicates)
        }

        let publish: @Sendable ([[String]]) async throws -> Void = { chunks in
            for chunk in chunks { try await bus.publish(chunk.map { message("\(word).stream", id: $0) }) }
        }
        try await withTimeout(.seconds(240), "the stream across a broker restart") {
            try await publish(Array(chunks[0..<20]))
            // Publishing goes on while the broker stops, and while it is down and starting again.
            async let during: Void = publish(Array(chunks[20..<50]))
            try await runShell(stop)
            try await during
            async let afterwards: Void = publish(Array(chunks[50...]))
            try await runShell(start)
            try await afterwards
        }
        let (seen, duplicates) = try await withTimeout(.seconds(120), "consuming every message") { await consumer.value }
        print("broker restart: \(seen.count) distinct of \(total) published, \(duplicates) duplicates")
        #expect(seen == Set(chunks.joined()))
        #expect(bus.isConnected)
        await bus.shutdown()
    }
}
