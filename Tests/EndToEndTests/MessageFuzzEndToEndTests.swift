import DroverMessaging
import DroverModel
import DroverTestSupport
import Foundation
import Logging
import Testing

/// Hostile messages on every binding a control-plane consumer reads, as anything that can publish
/// on the bus could send them: random bytes, JSON that is not an envelope, envelopes of another
/// type or a newer version, bodies whose fields have the wrong types or numbers out of range, a
/// node speaking for another one, and bodies over a megabyte. Every one is dead-lettered and
/// counted, no service exits, and each still answers.
///
/// `DROVER_FUZZ_AMQP_MESSAGES` sets how many (default 10,000); `DROVER_FUZZ_SEED` the draw.
@Suite(.serialized, .enabled(if: TestEnvironment.runsEndToEnd), .timeLimit(.minutes(10)))
struct MessageFuzzEndToEndTests {
    /// What each control-plane consumer reads, as a routing key under node `fz1`, and a valid body
    /// that node `other` would send (for "speaks for another node"); nil where the body names no node.
    static let targets: [(key: String, type: String, foreign: (any DroverMessage)?)] = [
        ("node.fz1.heartbeat", NodeHeartbeat.messageType, NodeHeartbeat(nodeID: "other", sequence: 1, agentStartedAt: Date())),
        (
            "node.fz1.register", NodeRegistration.messageType,
            NodeRegistration(node: Node(id: "other", name: "other", resources: Resources(cpu: 1000, memoryMB: 1000, diskMB: 100)))
        ),
        (
            "node.fz1.alloc-status", AllocationStatusReport.messageType,
            AllocationStatusReport(nodeID: "other", allocID: "a1", clientStatus: .running, clientDescription: "", taskStates: [:])
        ),
        ("node.fz1.health", NodeHealthReport.messageType, NodeHealthReport(nodeID: "other", healthy: true, checks: [])),
        ("node.fz1.keepalive", NodeKeepalive.messageType, NodeKeepalive(nodeID: "other", until: nil)),
        ("node.fz1.shutdown", NodeShutdownRequest.messageType, NodeShutdownRequest(nodeID: "other", reason: .idle)),
        ("node.fz1.log.info.low", NodeLogMessage.messageType, NodeLogMessage(nodeID: "other", message: "hi", level: .info, priority: .low)),
        (
            "node.fz1.output.a1.t.stdout", TaskOutputChunk.messageType,
            TaskOutputChunk(nodeID: "other", allocID: "a1", task: "t", stream: .stdout, offset: 0, data: Data("x".utf8))
        ),
        ("cluster.eval.e1.pending", EvaluationPending.messageType, nil),
    ]

    /// A deterministic generator, so that a failing draw can be run again.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static func envelope(type: String, version: Int = 1, data: String) -> String {
        #"{"id":"\#(UUID().uuidString)","type":"\#(type)","version":\#(version),"time":"2026-01-01T00:00:00Z","data":\#(data)}"#
    }

    /// The `n`th hostile body for `target`, and what kind of hostility it is.
    static func hostile(_ n: Int, for target: (key: String, type: String, foreign: (any DroverMessage)?), random: inout SplitMix) -> (
        kind: String, body: [UInt8]
    ) {
        let extremes = [
            "1e400", "-1", "18446744073709551616", "18446744073709551615", "9223372036854775808", "-9223372036854775809", "1.5", "\"NaN\"", "null",
            "[]", "{}", "true",
            "99999999999999999999999999999999",
        ]
        switch n % 9 {
        case 0:
            return ("random bytes", (0..<Int.random(in: 0...2048, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) })
        case 1:
            return ("not an envelope", Array(["[]", "null", "\"x\"", "{}", "42", "{\"id\":1}", ""].randomElement(using: &random)!.utf8))
        case 2:
            return ("another type", Array(envelope(type: "node.nothing", data: "{}").utf8))
        case 3:
            return ("newer version", Array(envelope(type: target.type, version: 99, data: "{}").utf8))
        case 4:
            let fields = ["NodeID", "Sequence", "AgentStartedAt", "Node", "AllocID", "ClientStatus", "Offset", "Data", "EvalID", "Until", "Reason"]
            let data = fields.map { #""\#($0)":\#(extremes.randomElement(using: &random)!)"# }.joined(separator: ",")
            return ("wrong types and extreme numbers", Array(envelope(type: target.type, data: "{\(data)}").utf8))
        case 5:
            return ("fields missing", Array(envelope(type: target.type, data: "{}").utf8))
        case 6:
            guard let foreign = target.foreign, let message = try? OutgoingMessage(foreign, routingKey: target.key) else {
                return ("fields missing", Array(envelope(type: target.type, data: #"{"EvalID":5}"#).utf8))
            }
            return ("speaks for another node", message.body)
        case 7 where n % 200 == 7:
            // Over a megabyte: a chunk too big, or a string no decoder finishes happily.
            let huge = String(repeating: "A", count: (1 << 20) + 4096)
            return ("over a megabyte", Array(envelope(type: target.type, data: #"{"NodeID":"fz1","Data":"\#(huge)","Message":"\#(huge)"}"#).utf8))
        default:
            var text = envelope(type: target.type, data: #"{"NodeID":"fz1"}"#)
            let cut = Int.random(in: 0..<text.count, using: &random)
            text = String(text.prefix(cut))
            return ("truncated", Array(text.utf8))
        }
    }

    /// The sum of `drover_messages_dead_lettered_total` over a service's metrics.
    static func deadLettered(_ service: RunningService) async -> Int {
        guard let (status, body) = try? await service.get("/metrics"), status == 200 else { return -1 }
        return body.split(separator: "\n").filter { $0.hasPrefix("drover_messages_dead_lettered_total") }
            .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }.reduce(0) { $0 + Int($1) }
    }

    @Test func everyHostileMessageIsDeadLetteredAndCountedAndTheServicesStillAnswer() async throws {
        let total = Int(ProcessInfo.processInfo.environment["DROVER_FUZZ_AMQP_MESSAGES"] ?? "") ?? 10_000
        let seed = UInt64(ProcessInfo.processInfo.environment["DROVER_FUZZ_SEED"] ?? "") ?? 1
        try await Cluster.with { cluster in
            var configuration = try AMQPBus.Configuration(url: cluster.virtualHost.amqpURL)
            configuration.declaresExchanges = false
            let bus = AMQPBus(configuration: configuration, logger: Logger(label: "test.fuzz"))
            // What is under node.fz1. goes with node fz1's own broker user, as an enrolled node
            // would send it, so that it reaches past the sender check into every consumer.
            let (status, answer) = try await cluster.api.request("POST", "/v1/node/fz1/enroll")
            let nodeURL = try #require(
                (try JSONSerialization.jsonObject(with: Data(answer.utf8)) as? [String: Any])?["AMQPURL"] as? String, "\(status)")
            var nodeConfiguration = try AMQPBus.Configuration(url: nodeURL)
            nodeConfiguration.declaresExchanges = false
            let nodeBus = AMQPBus(configuration: nodeConfiguration, logger: Logger(label: "test.fuzz.node"))
            var random = SplitMix(state: seed)
            var kinds: [String: Int] = [:]
            var batch: [OutgoingMessage] = []
            for n in 0..<total {
                let target = Self.targets[n % Self.targets.count]
                let (kind, body) = Self.hostile(n / Self.targets.count, for: target, random: &random)
                kinds[kind, default: 0] += 1
                batch.append(
                    OutgoingMessage(
                        routingKey: target.key, messageID: "fuzz-\(n)", type: target.type, schemaVersion: 1, timestamp: Date(), body: body))
                if batch.count == 500 || n == total - 1 {
                    try await nodeBus.publish(batch.filter { $0.routingKey.hasPrefix("node.") })
                    try await bus.publish(batch.filter { !$0.routingKey.hasPrefix("node.") })
                    batch = []
                }
            }
            await bus.shutdown()
            await nodeBus.shutdown()
            print(
                "AMQP fuzz: \(total) messages (seed \(seed)): \(kinds.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))"
            )

            // Every one dead-lettered, by the consumers' own count.
            let consumers = cluster.services.filter { ["scheduler", "health-monitor", "log-collector"].contains($0.name) }
            try await eventually("\(total) messages dead-lettered", within: .seconds(300)) {
                var sum = 0
                for service in consumers { sum += await Self.deadLettered(service) }
                return sum == total
            }
            // And in the dead-letter queues, by the broker's.
            try await eventually("the dead-letter queues holding \(total)", within: .seconds(60)) {
                let counts = (try? await cluster.virtualHost.messageCounts()) ?? [:]
                return counts.filter { $0.key.hasSuffix(".dead-letter") }.values.reduce(0, +) == total
            }
            for service in cluster.services {
                #expect(!service.hasExited, "\(service.name) exited: \(service.output.suffix(2000))")
                #expect(try await service.get("/readyz").status == 200, "\(service.name) is not ready")
            }
            // The cluster still works: a node registers and is ready.
            try await cluster.addAgent("after")
        }
    }
}
