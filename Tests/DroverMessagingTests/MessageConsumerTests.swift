import DroverMessaging
import DroverModel
import DroverTestSupport
import Foundation
import Logging
import MetricsTestKit
import Testing

/// The consumer's settlement rules, driven over the in-memory bus one delivery at a time.
@Suite struct MessageConsumerTests {
    let bus = InMemoryBus()
    let spec = ConsumerSpec(queue: "test.heartbeats", bindings: ["node.*.heartbeat"])
    let metrics = TestMetrics()
    let seen = Locked<[NodeHeartbeat]>([])

    /// No waiting between tries; three attempts; `Outage` is an outage.
    static let quickRetry = RetryPolicy(maximumAttempts: 3, initialDelay: .zero, maximumDelay: .zero) { $0 is Outage }

    struct Outage: Error {}

    private func consumer(
        retry: RetryPolicy = quickRetry, _ handler: @escaping MessageConsumer<NodeHeartbeat>.Handler = { _, _ in }
    ) -> MessageConsumer<NodeHeartbeat> {
        MessageConsumer(bus: bus, spec: spec, logger: Logger(label: "test"), retry: retry, metrics: metrics, handler: handler)
    }

    private func raw(_ body: String, type: String = NodeHeartbeat.messageType) -> OutgoingMessage {
        OutgoingMessage(
            routingKey: "node.n1.heartbeat", messageID: UUID().uuidString, type: type, schemaVersion: 1, timestamp: Date(),
            body: Array(body.utf8))
    }

    private func deadLetterCount(_ reason: String) throws -> Int64 {
        try metrics.expectCounter("drover_messages_dead_lettered_total", [("queue", spec.queue), ("reason", reason)]).totalValue
    }

    @Test func withConcurrencyHandlersRunSideBySideAndEveryMessageIsSettled() async throws {
        // Each handler waits until all four have started: one at a time, they never would.
        let started = Locked<(count: Int, waiting: [CheckedContinuation<Void, Never>])>((0, []))
        let consumer = MessageConsumer<NodeHeartbeat>(
            bus: bus, spec: spec, logger: Logger(label: "test"), concurrency: 4, metrics: metrics
        ) { envelope, _ in
            await withCheckedContinuation { continuation in
                let ready = started.withLock { state -> [CheckedContinuation<Void, Never>] in
                    state.count += 1
                    state.waiting.append(continuation)
                    guard state.count == 4 else { return [] }
                    defer { state.waiting = [] }
                    return state.waiting
                }
                for waiter in ready { waiter.resume() }
            }
            seen.withLock { $0.append(envelope.data) }
        }
        let running = Task { try await consumer.run() }
        try await withTimeout(.seconds(10), "the consumer subscribing") { [bus, spec] in
            while !bus.isSubscribed(spec.queue) { await Task.yield() }
        }
        for sequence in 1...4 {
            try await bus.publish(
                NodeHeartbeat(nodeID: "n1", sequence: UInt64(sequence), agentStartedAt: Date()), routingKey: RoutingKey.nodeHeartbeat("n1"))
        }
        // A bound for a machine loaded by the end-to-end suites beside it, not a speed check.
        try await withTimeout(.seconds(60), "four concurrent handlers") {
            while seen.value.count < 4 || bus.unackedCount(of: spec.queue) > 0 { await Task.yield() }
        }
        running.cancel()
        #expect(Set(seen.value.map(\.sequence)) == [1, 2, 3, 4])
    }

    private func batchConsumer(_ handler: @escaping MessageConsumer<NodeHeartbeat>.BatchHandler) -> MessageConsumer<NodeHeartbeat> {
        MessageConsumer(
            bus: bus, spec: spec, logger: Logger(label: "test"), retry: Self.quickRetry, batchLimit: 10, metrics: metrics, batchHandler: handler)
    }

    /// Publishes heartbeats with `sequences`, then `extra` raw messages, and returns their deliveries.
    private func publishHeartbeats(_ sequences: ClosedRange<Int>, extra: [OutgoingMessage] = []) async throws -> [Delivery] {
        var deliveries = try await bus.subscribe(spec).makeAsyncIterator()
        for sequence in sequences {
            try await bus.publish(
                NodeHeartbeat(nodeID: "n1", sequence: UInt64(sequence), agentStartedAt: Date()), routingKey: RoutingKey.nodeHeartbeat("n1"))
        }
        try await bus.publish(extra)
        var received: [Delivery] = []
        for _ in 0..<(sequences.count + extra.count) { received.append(try #require(await deliveries.next())) }
        return received
    }

    @Test func aBatchIsHandledAtOnceAndOnlyTheMessagesItRefusesAreDeadLettered() async throws {
        // An undecodable message among them is dead-lettered and never reaches the handler.
        let deliveries = try await publishHeartbeats(1...4, extra: [raw("{not json")])
        let batches = Locked<[[UInt64]]>([])
        try await batchConsumer { batch in
            batches.withLock { $0.append(batch.map(\.envelope.data.sequence)) }
            return [1: "sequence 2 is refused"]
        }.handleBatch(deliveries)
        #expect(batches.value == [[1, 2, 3, 4]])
        #expect(bus.unackedCount(of: spec.queue) == 0)
        #expect(bus.deadLetters(of: spec.queue).count == 2)
        #expect(bus.deadLetters(of: spec.queue).last?.headers[DeadLetterHeader.reason] == "sequence 2 is refused")
        #expect(try deadLetterCount("rejected") == 1)
        #expect(try deadLetterCount("undecodable") == 1)
    }

    @Test func aBatchThatFailsIsTriedAgainOneMessageAtATimeSoOnlyTheBadOneIsRetried() async throws {
        let deliveries = try await publishHeartbeats(1...3)
        let calls = Locked<[[UInt64]]>([])
        try await batchConsumer { batch in
            let sequences = batch.map(\.envelope.data.sequence)
            calls.withLock { $0.append(sequences) }
            if sequences.contains(2) { throw TestFailure("sequence 2 cannot be stored") }
            return [:]
        }.handleBatch(deliveries)
        #expect(calls.value == [[1, 2, 3], [1], [2], [3]])
        // 1 and 3 were acknowledged; 2 was sent round again, and so is delivered again.
        #expect(bus.unackedCount(of: spec.queue) == 1)
        #expect(bus.deadLetters(of: spec.queue).isEmpty)
    }

    @Test func decodesHandlesAndAcknowledges() async throws {
        var deliveries = try await bus.subscribe(spec).makeAsyncIterator()
        let heartbeat = NodeHeartbeat(nodeID: "n1", sequence: 7, agentStartedAt: Date(timeIntervalSince1970: 1_700_000_000.25))
        try await bus.publish(heartbeat, routingKey: RoutingKey.nodeHeartbeat("n1"))
        try await consumer { envelope, _ in seen.withLock { $0.append(envelope.data) } }.handle(try #require(await deliveries.next()))
        #expect(seen.value == [heartbeat])
        #expect(bus.unackedCount(of: spec.queue) == 0)
        #expect(bus.deadLetters(of: spec.queue).isEmpty)
    }

    @Test(arguments: [
        ("{not json", "undecodable", "undecodable body: the body:"),
        (
            #"{"id":"1","type":"node.heartbeat","version":1,"time":"2026-01-01T00:00:00Z","data":{"Sequence":1,"AgentStartedAt":"2026-01-01T00:00:00Z"}}"#,
            "undecodable", "data.NodeID: missing"
        ),
        (#"{"id":"1","type":"node.heartbeat","version":1,"time":"yesterday","data":{}}"#, "undecodable", "time: expected an ISO 8601 date"),
        (
            #"{"id":"1","type":"node.other","version":1,"time":"2026-01-01T00:00:00Z","data":{"NodeID":"n","Sequence":1,"AgentStartedAt":"2026-01-01T00:00:00Z"}}"#,
            "unexpected_type", "type 'node.other' is not 'node.heartbeat'"
        ),
        (
            #"{"id":"1","type":"node.heartbeat","version":9,"time":"2026-01-01T00:00:00Z","data":{"NodeID":"n","Sequence":1,"AgentStartedAt":"2026-01-01T00:00:00Z"}}"#,
            "unsupported_version", "schema version 9 of node.heartbeat is newer than 1"
        ),
    ])
    func deadLettersWhatItCannotRead(_ example: (body: String, kind: String, reason: String)) async throws {
        var deliveries = try await bus.subscribe(spec).makeAsyncIterator()
        try await bus.publish(raw(example.body))
        try await consumer { _, _ in Issue.record("the handler must not see a message that does not decode") }
            .handle(try #require(await deliveries.next()))
        let dead = try #require(bus.deadLetters(of: spec.queue).first)
        #expect(dead.headers[DeadLetterHeader.reason]?.contains(example.reason) == true, "reason was \(dead.headers)")
        #expect(dead.headers[DeadLetterHeader.originalRoutingKey] == "node.n1.heartbeat")
        #expect(dead.body == Array(example.body.utf8))
        #expect(try deadLetterCount(example.kind) == 1)
        #expect(bus.unackedCount(of: spec.queue) == 0)
    }

    @Test func aRejectionDeadLettersWithTheHandlersReason() async throws {
        var deliveries = try await bus.subscribe(spec).makeAsyncIterator()
        try await bus.publish(NodeHeartbeat(nodeID: "n9", sequence: 1, agentStartedAt: Date()), routingKey: "node.n9.heartbeat")
        try await consumer { _, _ in throw MessageRejected("node n9 is not enrolled") }.handle(try #require(await deliveries.next()))
        #expect(bus.deadLetters(of: spec.queue).map { $0.headers[DeadLetterHeader.reason] } == ["node n9 is not enrolled"])
        #expect(try deadLetterCount("rejected") == 1)
    }

    @Test func aFailureSendsTheMessageRoundAgainCountedAndTheRetrySucceeds() async throws {
        struct Transient: Error {}
        var deliveries = try await bus.subscribe(spec).makeAsyncIterator()
        try await bus.publish(NodeHeartbeat(nodeID: "n1", sequence: 1, agentStartedAt: Date()), routingKey: "node.n1.heartbeat")
        let attempts = Locked(0)
        let flaky = consumer { _, _ in
            let attempt = attempts.withLock {
                $0 += 1
                return $0
            }
            if attempt == 1 { throw Transient() }
        }
        let first = try #require(await deliveries.next())
        try await flaky.handle(first)
        let second = try #require(await deliveries.next())
        #expect(first.failures == 0 && second.failures == 1)
        // The copy went to this queue alone, and is delivered as the original was.
        #expect(second.routingKey == "node.n1.heartbeat" && second.exchange == bus.exchange && second.messageID == first.messageID)
        #expect(second.headers[RetryHeader.lastError]?.contains("Transient") == true)
        try await flaky.handle(second)
        #expect(attempts.value == 2)
        #expect(bus.unackedCount(of: spec.queue) == 0)
        #expect(bus.deadLetters(of: spec.queue).isEmpty)
        #expect(try metrics.expectCounter("drover_messages_retried_total", [("queue", spec.queue)]).totalValue == 1)
    }

    @Test func aMessageThatKeepsFailingIsDeadLetteredAfterTheLastAttempt() async throws {
        struct Broken: Error, CustomStringConvertible { var description: String { "value out of range for column" } }
        var deliveries = try await bus.subscribe(spec).makeAsyncIterator()
        try await bus.publish(NodeHeartbeat(nodeID: "n1", sequence: 1, agentStartedAt: Date()), routingKey: "node.n1.heartbeat")
        let attempts = Locked(0)
        let broken = consumer { _, _ in
            attempts.withLock { $0 += 1 }
            throw Broken()
        }
        while bus.deadLetters(of: spec.queue).isEmpty {
            try await broken.handle(try #require(await deliveries.next()))
        }
        #expect(attempts.value == 3)
        let dead = try #require(bus.deadLetters(of: spec.queue).first)
        #expect(dead.headers[DeadLetterHeader.reason] == "failed 3 times; the last error: value out of range for column")
        #expect(dead.headers[DeadLetterHeader.originalRoutingKey] == "node.n1.heartbeat")
        #expect(try deadLetterCount("failed") == 1)
        #expect(bus.unackedCount(of: spec.queue) == 0)
    }

    @Test func anOutageHoldsTheMessageAndTriesAgainWithoutCountingIt() async throws {
        var deliveries = try await bus.subscribe(spec).makeAsyncIterator()
        try await bus.publish(NodeHeartbeat(nodeID: "n1", sequence: 1, agentStartedAt: Date()), routingKey: "node.n1.heartbeat")
        let attempts = Locked(0)
        // Ten outages in a row: more than the three attempts a failing message gets.
        let patient = consumer { envelope, _ in
            let attempt = attempts.withLock {
                $0 += 1
                return $0
            }
            if attempt <= 10 { throw Outage() }
            seen.withLock { $0.append(envelope.data) }
        }
        try await patient.handle(try #require(await deliveries.next()))
        #expect(attempts.value == 11 && seen.value.count == 1)
        #expect(bus.unackedCount(of: spec.queue) == 0 && bus.deadLetters(of: spec.queue).isEmpty)
        #expect(bus.published.count == 1, "nothing was sent round again")
        #expect(try metrics.expectCounter("drover_consumer_outage_waits_total", [("queue", spec.queue)]).totalValue == 10)
    }

    @Test func aBatchThatMeetsAnOutageIsTriedAgainWhole() async throws {
        let deliveries = try await publishHeartbeats(1...3)
        let calls = Locked<[[UInt64]]>([])
        try await batchConsumer { batch in
            let first = calls.withLock {
                $0.append(batch.map(\.envelope.data.sequence))
                return $0.count == 1
            }
            if first { throw Outage() }
            return [:]
        }.handleBatch(deliveries)
        #expect(calls.value == [[1, 2, 3], [1, 2, 3]])
        #expect(bus.unackedCount(of: spec.queue) == 0 && bus.published.count == 3)
    }

    @Test func backoffDoublesIsCappedAndDrawsFromItsUpperHalf() {
        let policy = RetryPolicy(initialDelay: .milliseconds(200), maximumDelay: .seconds(5))
        #expect(policy.delay(afterFailures: 1, random: 1) == .milliseconds(200))
        #expect(policy.delay(afterFailures: 1, random: 0) == .milliseconds(100))
        #expect(policy.delay(afterFailures: 3, random: 1) == .milliseconds(800))
        #expect(policy.delay(afterFailures: 10, random: 1) == .seconds(5))
        #expect(policy.delay(afterFailures: Int.max, random: 0.5) == .milliseconds(3750))
        #expect(policy.delay(afterFailures: -4, random: 1) == .milliseconds(200))
        #expect(RetryPolicy(maximumAttempts: 0).maximumAttempts == 1)
    }

    @Test func aHostileFailureCountIsReadAsACountOrAsNone() {
        func delivery(_ count: String) -> Delivery {
            Delivery(
                queue: "q", exchange: "drover", routingKey: "k", messageID: nil, type: nil, headers: [RetryHeader.failures: count], body: [],
                redelivered: false, deliveryTag: 1, connectionGeneration: 0, acknowledger: bus)
        }
        #expect(delivery("2").failures == 2)
        #expect(delivery("-7").failures == 0)
        #expect(delivery("99999999999999999999999").failures == 0)
        #expect(delivery("\(Int.max)").failures == Int.max)
    }

    @Test func inMemoryRoutingFollowsTopicBindings() async throws {
        var heartbeats = try await bus.subscribe(ConsumerSpec(queue: "hb", bindings: ["node.*.heartbeat"])).makeAsyncIterator()
        var everything = try await bus.subscribe(ConsumerSpec(queue: "all", bindings: ["node.#", "cluster.#"])).makeAsyncIterator()
        for key in ["node.a.heartbeat", "node.a.log.info.low", "cluster.eval.e1.pending", "node.b.heartbeat"] {
            try await bus.publish(raw("{}").with(routingKey: key))
        }
        var hb: [String] = []
        for _ in 0..<2 { hb.append(try #require(await heartbeats.next()).routingKey) }
        var all: [String] = []
        for _ in 0..<4 { all.append(try #require(await everything.next()).routingKey) }
        #expect(hb == ["node.a.heartbeat", "node.b.heartbeat"])
        #expect(all == ["node.a.heartbeat", "node.a.log.info.low", "cluster.eval.e1.pending", "node.b.heartbeat"])
    }
}

extension OutgoingMessage {
    func with(routingKey: String) -> OutgoingMessage {
        var copy = self
        copy.routingKey = routingKey
        return copy
    }
}
