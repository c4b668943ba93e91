import ArgumentParser
import DroverMessaging
import DroverModel
import DroverRuntime
import DroverStorage
import Foundation

@main
struct HealthMonitor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health-monitor", abstract: "Records node heartbeats and health reports. Replicas share the work.")

    @OptionGroup var bus: BusOptions
    @OptionGroup var database: DatabaseOptions
    @OptionGroup var server: ServerOptions

    func run() async throws {
        let runtime = ServiceRuntime.bootstrap(name: "health-monitor", logLevel: server.level)
        let logger = runtime.logger
        let amqp = AMQPBus(configuration: try bus.configuration(), logger: logger)
        let db = try Database(url: database.postgresURL, logger: logger)
        let heartbeats = MessageConsumer(
            NodeHeartbeat.self, bus: amqp, spec: ConsumerSpec(queue: "health-monitor.heartbeats", bindings: ["node.*.heartbeat"]),
            logger: logger
        ) { envelope, delivery in
            // The routing key carries the publisher's node id, which the broker checks; the body must agree.
            guard delivery.routingKey == RoutingKey.nodeHeartbeat(envelope.data.nodeID) else {
                throw MessageRejected("NodeID '\(envelope.data.nodeID)' does not match routing key '\(delivery.routingKey)'")
            }
            try await db.transaction { connection in
                try await NodeHeartbeats.record(envelope.data, receivedAt: Date(), on: connection, logger: logger)
            }
        }
        try await runtime.runService(
            bus: amqp, host: server.httpHost, port: server.configuredPort ?? 4648, readiness: [ReadinessCheck("postgres") { await db.ping() }],
            dependencies: [db.client], prepare: { try await db.migrate() }, workers: [heartbeats])
    }
}
