import ArgumentParser
import DroverMessaging
import DroverModel
import DroverRuntime
import Foundation
import Logging
import ServiceLifecycle

@main
struct NodeAgent: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node-agent", abstract: "Runs on every node: heartbeats and receives the node's allocations. Holds no database access.")

    @OptionGroup var bus: BusOptions
    @OptionGroup var server: ServerOptions

    @Option(help: "Directory for the agent's state; the node id is kept there (env DROVER_NODE_DATA_DIR).")
    var dataDir: String = ProcessInfo.processInfo.environment["DROVER_NODE_DATA_DIR"] ?? ".drover/node-agent"

    @Option(help: "This node's id; by default one is made on first start and kept in the data dir (env DROVER_NODE_ID).")
    var nodeID: String?

    /// `--node-id`, else `DROVER_NODE_ID`.
    var configuredNodeID: String? { nodeID ?? ProcessInfo.processInfo.environment["DROVER_NODE_ID"].flatMap { $0.isEmpty ? nil : $0 } }

    @Option(help: "Seconds between heartbeats (env DROVER_HEARTBEAT_INTERVAL).")
    var heartbeatInterval: Double = ProcessInfo.processInfo.environment["DROVER_HEARTBEAT_INTERVAL"].flatMap(Double.init) ?? 10

    func validate() throws {
        if let nodeID = configuredNodeID, !RoutingKey.isValidWord(nodeID) {
            throw ValidationError("--node-id: '\(nodeID)' must be one routing-key word: no dots, '*', '#' or spaces")
        }
        guard heartbeatInterval > 0 else { throw ValidationError("--heartbeat-interval: must be more than 0 seconds") }
    }

    func run() async throws {
        let runtime = ServiceRuntime.bootstrap(name: "node-agent", logLevel: server.level)
        let id = try configuredNodeID ?? NodeIdentity.loadOrCreate(in: URL(fileURLWithPath: dataDir))
        var logger = runtime.logger
        logger[metadataKey: "node_id"] = "\(id)"
        let amqp = AMQPBus(configuration: try bus.configuration(), logger: logger)
        let allocations = NodeQueue(
            bus: amqp, spec: ConsumerSpec(queue: "node.\(id)", bindings: ["cluster.alloc.\(id).#"]), logger: logger)
        try await runtime.runService(
            bus: amqp, host: server.httpHost, port: server.configuredPort ?? 4651,
            workers: [Heartbeats(bus: amqp, nodeID: id, interval: .milliseconds(Int(heartbeatInterval * 1000)), logger: logger), allocations])
    }
}

/// The node id, kept in the data directory so that a restarted agent is the same node.
enum NodeIdentity {
    static func loadOrCreate(in directory: URL) throws -> String {
        let file = directory.appendingPathComponent("node-id")
        if let existing = try? String(contentsOf: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), !existing.isEmpty {
            return existing
        }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let id = UUID().uuidString.lowercased()
        try id.write(to: file, atomically: true, encoding: .utf8)
        return id
    }
}

/// Publishes a heartbeat on `node.<id>.heartbeat` every `interval`, starting at once.
struct Heartbeats: Service {
    let bus: any MessageBus
    let nodeID: String
    let interval: Duration
    let logger: Logger

    func run() async throws {
        let startedAt = Date()
        do {
            try await cancelWhenGracefulShutdown {
                var sequence: UInt64 = 0
                while true {
                    sequence += 1
                    let beat = NodeHeartbeat(nodeID: nodeID, sequence: sequence, agentStartedAt: startedAt)
                    try await bus.publish(beat, routingKey: RoutingKey.nodeHeartbeat(nodeID))
                    logger.trace("Heartbeat sent", metadata: ["sequence": "\(sequence)"])
                    try await Task.sleep(for: interval)
                }
            }
        } catch is CancellationError {
            return
        }
    }
}

/// The node's own queue: allocation messages for this node only.
struct NodeQueue: Service {
    let bus: any MessageBus
    let spec: ConsumerSpec
    let logger: Logger

    func run() async throws {
        for await delivery in try await bus.subscribe(spec).cancelOnGracefulShutdown() {
            logger.info("Allocation message received", metadata: ["routing_key": "\(delivery.routingKey)", "type": "\(delivery.type ?? "-")"])
            delivery.ack()
        }
    }
}
