import ArgumentParser
import DroverMessaging
import DroverModel
import Foundation
import Logging

/// How fast a `MessageConsumer` takes typed messages off a queue (decode, handle, acknowledge),
/// over a real broker. It uses only what every version of the consumer has had, so that two
/// builds (before and after a change to how it settles messages) can be run side by side:
/// `farm-bench` pairs their runs and prints the ratio.
@main
struct ConsumerBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "consumer-bench", abstract: "MessageConsumer throughput.")

    @Option(help: "The broker (env DROVER_AMQP_URL).")
    var amqpURL: String = ProcessInfo.processInfo.environment["DROVER_AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5680"
    @Option(help: "Messages to consume.") var messages = 20_000

    func run() async throws {
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        let word = "consumer\(UInt32.random(in: 0...UInt32.max))"
        let bus = AMQPBus(configuration: try AMQPBus.Configuration(url: amqpURL), logger: logger)
        let spec = ConsumerSpec(queue: "bench.\(word)", bindings: ["\(word).node.*.heartbeat"])
        // Declare the queue, fill it, then let the consumer empty it against the clock.
        _ = try await bus.subscribe(spec)
        let started = Date(timeIntervalSince1970: 1_800_000_000)
        for first in stride(from: 0, to: messages, by: 500) {
            try await bus.publish(
                try (first..<min(first + 500, messages)).map {
                    try OutgoingMessage(
                        NodeHeartbeat(nodeID: "n1", sequence: UInt64($0), agentStartedAt: started), routingKey: "\(word).node.n1.heartbeat")
                })
        }
        let (done, finish) = AsyncStream.makeStream(of: Void.self)
        let count = Counter()
        let total = messages
        let consumer = MessageConsumer(NodeHeartbeat.self, bus: bus, spec: spec, logger: logger) { _, _ in
            if count.increment() == total { finish.yield() }
        }
        let clock = ContinuousClock()
        let start = clock.now
        let running = Task { try await consumer.run() }
        for await _ in done { break }
        let elapsed = clock.now - start
        running.cancel()
        await bus.shutdown()
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("consumer-bench: \(messages) messages in \(String(format: "%.3f", seconds)) s, \(Int(Double(messages) / seconds)) msg/s")
    }
}

/// A count shared by the handler's calls.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func increment() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value += 1
        return value
    }
}
