import ArgumentParser
import DroverControlPlane
import DroverHealth
import DroverMessaging
import DroverModel
import DroverRuntime
import DroverStorage
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

@main
struct HealthMonitor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health-monitor",
        abstract:
            "Records what nodes report (heartbeats, registrations, allocation states) and marks down the nodes that fall silent. Replicas share the work."
    )

    @OptionGroup var options: ControlPlaneOptions

    @Option(help: "The shortest heartbeat TTL handed to a node, in seconds (env DROVER_HEARTBEAT_MIN_TTL).")
    var heartbeatMinTTL: Double = ProcessInfo.processInfo.environment["DROVER_HEARTBEAT_MIN_TTL"].flatMap(Double.init) ?? 10

    @Option(help: "Seconds a node may stay silent after its TTL before it is down (env DROVER_HEARTBEAT_GRACE).")
    var heartbeatGrace: Double = ProcessInfo.processInfo.environment["DROVER_HEARTBEAT_GRACE"].flatMap(Double.init) ?? 10

    @Option(help: "Heartbeats per second the fleet may send in all; TTLs grow to keep under it (env DROVER_MAX_HEARTBEATS_PER_SECOND).")
    var maxHeartbeatsPerSecond: Double = ProcessInfo.processInfo.environment["DROVER_MAX_HEARTBEATS_PER_SECOND"].flatMap(Double.init) ?? 50

    func validate() throws {
        guard heartbeatMinTTL > 0 else { throw ValidationError("--heartbeat-min-ttl: must be more than 0 seconds") }
        guard heartbeatGrace >= 0 else { throw ValidationError("--heartbeat-grace: must be 0 seconds or more") }
        guard maxHeartbeatsPerSecond > 0 else { throw ValidationError("--max-heartbeats-per-second: must be more than 0") }
    }

    func run() async throws {
        let plane = try ControlPlane(name: "health-monitor", options: options)
        let (logger, database, bus) = (plane.logger, plane.database, plane.bus)
        let policy = HeartbeatPolicy(
            minimumTTL: .milliseconds(Int(heartbeatMinTTL * 1000)), heartbeatsPerSecond: maxHeartbeatsPerSecond,
            grace: .milliseconds(Int(heartbeatGrace * 1000)))
        let store = ClusterStore(database: database, heartbeatPolicy: policy)
        let sweep = LivenessSweep(store: store, logger: logger)
        // A report the store refuses (an unknown node or allocation, another node's allocation)
        // is dead-lettered with the reason rather than retried.
        @Sendable func known(_ work: () async throws -> Void) async throws {
            do {
                try await work()
            } catch let error as ClusterStoreError {
                throw MessageRejected(error.description)
            }
        }
        let heartbeats = MessageConsumer(
            NodeHeartbeat.self, bus: bus, spec: ConsumerSpec(queue: "health-monitor.heartbeats", bindings: ["node.*.heartbeat"]), logger: logger
        ) { envelope, delivery in
            let beat = envelope.data
            try delivery.checkSentBy(node: beat.nodeID)
            let ttl = policy.ttl(nodeCount: sweep.liveNodes.load(ordering: .relaxed), stagger: Double.random(in: 0..<1))
            guard let status = try await store.heartbeat(beat, at: Date(), ttl: ttl) else { return }
            // The answer is advice for the next interval: published directly, not through the outbox.
            try await bus.publish(
                NodeHeartbeatTTL(nodeID: beat.nodeID, heartbeatTTL: ttl, status: status),
                routingKey: RoutingKey.clusterNode(beat.nodeID, "heartbeat-ttl"))
        }
        let registrations = MessageConsumer(
            NodeRegistration.self, bus: bus, spec: ConsumerSpec(queue: "health-monitor.registrations", bindings: ["node.*.register"]),
            logger: logger
        ) { envelope, delivery in
            let nodeID = envelope.data.node.id
            try delivery.checkSentBy(node: nodeID)
            let evaluations = try await store.register(node: envelope.data.node)
            logger.debug("Node registration recorded", metadata: ["node_id": "\(nodeID)", "evaluations": "\(evaluations.count)"])
            // The answer tells the agent it is known (it registers again quickly until one comes),
            // and when to heartbeat: a registration counts as a heartbeat with the minimum TTL.
            try await bus.publish(
                NodeHeartbeatTTL(nodeID: nodeID, heartbeatTTL: policy.minimumTTL, status: .ready),
                routingKey: RoutingKey.clusterNode(nodeID, "heartbeat-ttl"))
        }
        // Reports are recorded in batches, one transaction for all that arrived meanwhile.
        let allocationStates = MessageConsumer(
            AllocationStatusReport.self, bus: bus,
            spec: ConsumerSpec(queue: "health-monitor.alloc-status", bindings: ["node.*.alloc-status"], prefetch: 500), logger: logger,
            batchLimit: 500
        ) { batch in
            var refused: [Int: String] = [:]
            var accepted: [(position: Int, report: AllocationStatusReport)] = []
            for (position, item) in batch.enumerated() {
                do {
                    try item.delivery.checkSentBy(node: item.envelope.data.nodeID)
                    accepted.append((position, item.envelope.data))
                } catch let rejected as MessageRejected {
                    refused[position] = rejected.reason
                }
            }
            let recorded = try await store.record(accepted.map(\.report))
            for (index, error) in recorded.refused { refused[accepted[index].position] = error.description }
            return refused
        }
        // What a node says of its own health, and asks for itself.
        let health = MessageConsumer(
            NodeHealthReport.self, bus: bus, spec: ConsumerSpec(queue: "health-monitor.health", bindings: ["node.*.health"]), logger: logger
        ) { envelope, delivery in
            try delivery.checkSentBy(node: envelope.data.nodeID)
            try await known { try await store.record(envelope.data) }
        }
        let keepalives = MessageConsumer(
            NodeKeepalive.self, bus: bus, spec: ConsumerSpec(queue: "health-monitor.keepalive", bindings: ["node.*.keepalive"]), logger: logger
        ) { envelope, delivery in
            try delivery.checkSentBy(node: envelope.data.nodeID)
            try await known { try await store.setKeepalive(nodeID: envelope.data.nodeID, until: envelope.data.until) }
        }
        let shutdowns = MessageConsumer(
            NodeShutdownRequest.self, bus: bus, spec: ConsumerSpec(queue: "health-monitor.shutdown", bindings: ["node.*.shutdown"]), logger: logger
        ) { envelope, delivery in
            try delivery.checkSentBy(node: envelope.data.nodeID)
            try await known { try await store.requestTermination(nodeID: envelope.data.nodeID, reason: envelope.data.reason.rawValue) }
        }
        try await plane.run(
            defaultPort: 4648,
            workers: [
                heartbeats, registrations, allocationStates, health, keepalives, shutdowns, sweep,
                OutboxRelay(database: database, bus: bus, logger: logger),
            ])
    }
}

/// Marks down the nodes whose heartbeat deadline has passed and moves drains on (deadlines,
/// system allocations, completion), every half second (or a quarter of the grace period, if
/// shorter), and keeps the count of live nodes that TTLs scale with.
///
/// It starts one grace period after the service: heartbeats that queued up while no health
/// monitor ran are recorded first, so that a restart does not mark the whole fleet down.
final class LivenessSweep: Service, Sendable {
    let store: ClusterStore
    let logger: Logger
    let liveNodes = Atomic<Int>(0)

    init(store: ClusterStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    func run() async throws {
        let grace = store.heartbeatPolicy.grace
        liveNodes.store((try? await store.liveNodeCount()) ?? 0, ordering: .relaxed)
        await repeatUntilShutdown(
            every: max(min(.milliseconds(500), grace / 4), .milliseconds(50)), after: grace, logger: logger, failure: "Liveness sweep failed"
        ) {
            try await self.store.expireNodes(at: Date())
            try await self.store.advanceDrains(at: Date())
            self.liveNodes.store(try await self.store.liveNodeCount(), ordering: .relaxed)
        }
    }
}
