import ArgumentParser
import DroverMessaging
import Foundation
import Logging

/// Publish-with-confirms and consume-with-ack throughput of DroverMessaging and of a plain
/// librabbitmq loop, in one run against the same broker, with the ratio of the two.
@main
struct MessagingBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "messaging-bench", abstract: "DroverMessaging against raw librabbitmq.")

    @Option(help: "The broker (env DROVER_AMQP_URL).")
    var amqpURL: String = ProcessInfo.processInfo.environment["DROVER_AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5680"
    @Option(help: "Messages per measurement.") var messages = 30_000
    @Option(help: "Rounds; the median is reported.") var rounds = 5
    @Option(help: "Body size in bytes.") var bodyBytes = 200
    @Option(help: "Unconfirmed publishes at most, for both.") var window = 1000
    @Option(help: "Consumer prefetch, for both.") var prefetch: UInt16 = 100

    func run() async throws {
        let endpoint = try AMQPEndpoint(url: amqpURL)
        let word = "bench\(UInt32.random(in: 0...UInt32.max))"
        let body = Array(String(repeating: "x", count: bodyBytes).utf8)
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        var configuration = try AMQPBus.Configuration(url: amqpURL)
        configuration.maximumUnconfirmed = window
        let (rawQueue, busQueue) = ("\(word).raw", "\(word).bus")
        let raw: @Sendable () throws -> RawConnection = {
            try RawConnection(host: endpoint.host, port: endpoint.port, user: endpoint.user, password: endpoint.password, vhost: endpoint.vhost)
        }

        var results: [String: [Double]] = [:]
        for round in 1...rounds {
            try raw().prepareQueue(rawQueue, exchange: configuration.exchange, key: "\(word).raw")
            try raw().prepareQueue(busQueue, exchange: configuration.exchange, key: "\(word).bus")

            // Which side goes first alternates by round, so neither always meets the broker in the same state.
            let rawFirst = round % 2 == 1
            let bus = AMQPBus(configuration: configuration, logger: logger)
            let outgoing = (0..<messages).map {
                OutgoingMessage(
                    routingKey: "\(word).bus", messageID: "bus-\($0)", type: "bench.message", schemaVersion: 1, timestamp: Date(), body: body)
            }
            try await bus.publish(Array(outgoing.prefix(1)))  // connect before the clock starts, as the raw loop does
            let chunk = max(1, window / 4)
            let publishRaw = {
                try Self.measure(messages) {
                    try raw().publish(count: messages, body: body, exchange: configuration.exchange, key: "\(word).raw", window: window)
                }
            }
            let publishBus = {
                try await measureAsync(messages - 1) {
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for start in stride(from: 1, to: messages, by: chunk) {
                            group.addTask { try await bus.publish(Array(outgoing[start..<min(start + chunk, messages)])) }
                        }
                        try await group.waitForAll()
                    }
                }
            }
            // The raw consumer runs on a thread of its own, alongside the bus's consumer.
            let consumeRaw = {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Double, any Error>) in
                    Thread {
                        continuation.resume(
                            with: Result { try Self.measure(messages) { try raw().consume(count: messages, queue: rawQueue, prefetch: prefetch) } })
                    }.start()
                }
            }
            let consumeBus = {
                try await measureAsync(messages) {
                    let spec = ConsumerSpec(queue: busQueue, bindings: ["\(word).bus"], prefetch: prefetch, deadLettering: false)
                    var count = 0
                    for await delivery in try await bus.subscribe(spec) {
                        delivery.ack()
                        count += 1
                        if count == messages { break }
                    }
                }
            }
            var rawPublish = 0.0
            var busPublish = 0.0
            let rawConsume: Double
            let busConsume: Double
            if rawFirst {
                rawPublish = try publishRaw()
                busPublish = try await publishBus()
            } else {
                busPublish = try await publishBus()
                rawPublish = try publishRaw()
            }
            // Consumers run at the same time, so that both meet the broker in the same state.
            async let rawConsumed = consumeRaw()
            busConsume = try await consumeBus()
            rawConsume = try await rawConsumed
            await bus.shutdown()
            print(
                String(
                    format: "round %d: publish raw %.0f, bus %.0f msg/s; consume raw %.0f, bus %.0f msg/s", round, rawPublish, busPublish,
                    rawConsume, busConsume))
            results["rawPublish", default: []].append(rawPublish)
            results["busPublish", default: []].append(busPublish)
            results["rawConsume", default: []].append(rawConsume)
            results["busConsume", default: []].append(busConsume)
        }

        func median(_ key: String) -> Double { results[key]!.sorted()[results[key]!.count / 2] }
        print("messaging-bench: \(messages) messages of \(bodyBytes) bytes, window \(window), prefetch \(prefetch), median of \(rounds) rounds")
        print(
            String(
                format: "publish with confirms: raw librabbitmq %.0f msg/s, DroverMessaging %.0f msg/s, ratio %.2f", median("rawPublish"),
                median("busPublish"), median("busPublish") / median("rawPublish")))
        print(
            String(
                format: "consume with acks:     raw librabbitmq %.0f msg/s, DroverMessaging %.0f msg/s, ratio %.2f", median("rawConsume"),
                median("busConsume"), median("busConsume") / median("rawConsume")))
    }

    private static func measure(_ count: Int, _ body: () throws -> Void) throws -> Double {
        let start = ContinuousClock.now
        try body()
        return Double(count) / (ContinuousClock.now - start).seconds
    }

    private func measureAsync(_ count: Int, _ body: () async throws -> Void) async throws -> Double {
        let start = ContinuousClock.now
        try await body()
        return Double(count) / (ContinuousClock.now - start).seconds
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
