import ArgumentParser
import DroverControlPlane
import DroverMessaging
import DroverModel
import DroverStorage
import Foundation

@main
struct HealthMonitor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health-monitor",
        abstract: "Records what nodes report: heartbeats, registrations, allocation states. Replicas share the work.")

    @OptionGroup var options: ControlPlaneOptions

    func run() async throws {
        let plane = try ControlPlane(name: "health-monitor", options: options)
        let (logger, database, bus) = (plane.logger, plane.database, plane.bus)
        let store = ClusterStore(database: database)
        // The routing key carries the publisher's node id, which the broker checks; a body that
        // speaks for another node is refused.
        @Sendable func sameNode(_ nodeID: String, _ delivery: Delivery) throws {
            guard delivery.routingKey.hasPrefix(RoutingKey.nodePrefix(nodeID)) else {
                throw MessageRejected("NodeID '\(nodeID)' does not match routing key '\(delivery.routingKey)'")
            }
        }
        let heartbeats = MessageConsumer(
            NodeHeartbeat.self, bus: bus, spec: ConsumerSpec(queue: "health-monitor.heartbeats", bindings: ["node.*.heartbeat"]), logger: logger
        ) { envelope, delivery in
            try sameNode(envelope.data.nodeID, delivery)
            try await database.transaction { connection in
                try await NodeHeartbeats.record(envelope.data, receivedAt: Date(), on: connection, logger: logger)
            }
        }
        let registrations = MessageConsumer(
            NodeRegistration.self, bus: bus, spec: ConsumerSpec(queue: "health-monitor.registrations", bindings: ["node.*.register"]),
            logger: logger
        ) { envelope, delivery in
            try sameNode(envelope.data.node.id, delivery)
            let evaluations = try await store.register(node: envelope.data.node)
            logger.debug("Node registration recorded", metadata: ["node_id": "\(envelope.data.node.id)", "evaluations": "\(evaluations.count)"])
        }
        let allocationStates = MessageConsumer(
            AllocationStatusReport.self, bus: bus,
            spec: ConsumerSpec(queue: "health-monitor.alloc-status", bindings: ["node.*.alloc-status"]), logger: logger, concurrency: 8
        ) { envelope, delivery in
            try sameNode(envelope.data.nodeID, delivery)
            do {
                try await store.record(envelope.data)
            } catch let error as ClusterStoreError {
                throw MessageRejected(error.description)
            }
        }
        try await plane.run(
            defaultPort: 4648, workers: [heartbeats, registrations, allocationStates, OutboxRelay(database: database, bus: bus, logger: logger)])
    }
}
