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

    private func consumer(
        retryDelay: Duration = .zero, _ handler: @escaping MessageConsumer<NodeHeartbeat>.Handler = { _, _ in }
    ) -> MessageConsumer<NodeHeartbeat> {
        MessageConsumer(bus: bus, spec: spec, logger: Logger(label: "test"), retryDelay: retryDelay, metrics: metrics, handler: handler)
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
        try await withTimeout(.seconds(10), "four concurrent handlers") {
            while seen.value.count < 4 || bus.unackedCount(of: spec.queue) > 0 { await Task.yield() }
        }
        running.cancel()
        #expect(Set(seen.value.map(\.sequence)) == [1, 2, 3, 4])
    }

    private func batchConsumer(_ handler: @escaping MessageConsumer<NodeHeartbeat>.BatchHandler) -> MessageConsumer<NodeHeartbeat> {
        MessageConsumer(
            bus: bus, spec: spec, logger: Logger(label: "test"), retryDelay: .zero, batchLimit: 10, metrics: metrics, batchHandler: handler)
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
        // 1 and 3 were acknowledged; 2 was requeued, and so is delivered again.
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

    @Test func anyOtherFailureRequeuesAndTheRetrySucceeds() async throws {
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
        #expect(!first.redelivered && second.redelivered)
        try await flaky.handle(second)
        #expect(attempts.value == 2)
        #expect(bus.unackedCount(of: spec.queue) == 0)
        #expect(bus.deadLetters(of: spec.queue).isEmpty)
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
