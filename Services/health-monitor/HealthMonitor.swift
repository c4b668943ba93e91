import ArgumentParser
import DroverControlPlane
import DroverMessaging
import DroverModel
import DroverStorage
import Foundation

@main
struct HealthMonitor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health-monitor", abstract: "Records node heartbeats and health reports. Replicas share the work.")

    @OptionGroup var options: ControlPlaneOptions

    func run() async throws {
        let plane = try ControlPlane(name: "health-monitor", options: options)
        let (logger, database) = (plane.logger, plane.database)
        let heartbeats = MessageConsumer(
            NodeHeartbeat.self, bus: plane.bus, spec: ConsumerSpec(queue: "health-monitor.heartbeats", bindings: ["node.*.heartbeat"]),
            logger: logger
        ) { envelope, delivery in
            // The routing key carries the publisher's node id, which the broker checks; the body must agree.
            guard delivery.routingKey == RoutingKey.nodeHeartbeat(envelope.data.nodeID) else {
                throw MessageRejected("NodeID '\(envelope.data.nodeID)' does not match routing key '\(delivery.routingKey)'")
            }
            try await database.transaction { connection in
                try await NodeHeartbeats.record(envelope.data, receivedAt: Date(), on: connection, logger: logger)
            }
        }
        try await plane.run(defaultPort: 4648, workers: [heartbeats])
    }
}
