public import DroverHealth
import DroverMessaging
import DroverModel
import DroverRuntime
public import DroverScheduling
public import DroverStorage
import Foundation
public import Logging
public import ServiceLifecycle
import Synchronization

/// The workers of each control-plane service: its consumers, each handing what arrives to a use
/// case, and its periodic loops. A service's `main` builds them and runs them, in this order.
extension ControlPlane {
    /// The scheduler's: every replica reads the same queue, RabbitMQ hands each evaluation to one
    /// of them, and the database keeps two from planning one job at once. The evaluations that
    /// arrive while a batch is applied make the next batch, planned and written in one transaction.
    /// The resender sends again what went unanswered (``Resender``); the garbage
    /// collection removes what is over (``GarbageCollector``).
    /// - Parameter replica: who fires scheduled jobs from here, as `GET /v1/scheduler/leader` says.
    public func schedulerWorkers(configuration: SchedulerConfiguration, replica: String, scheduleTick: Duration = .milliseconds(200))
        -> [any Service]
    {
        let service = EvaluationService(database: database, configuration: configuration)
        let evaluations = MessageConsumer(
            EvaluationPending.self, bus: bus,
            spec: ConsumerSpec(queue: "scheduler.evaluations", bindings: ["cluster.eval.*.pending"], prefetch: 500), logger: logger,
            retry: retryPolicy, batchLimit: 500
        ) { batch in
            _ = try await service.process(evalIDs: batch.map(\.envelope.data.evalID))
            return [:]
        }
        let resender = ResenderLoop(resender: Resender(database: database), logger: logger)
        let collection = GarbageCollection(collector: GarbageCollector(database: database), logger: logger)
        let schedules = ScheduleLoop(
            service: ScheduleService(database: database, replica: replica, logger: logger), tick: scheduleTick, logger: logger)
        return [outboxRelay, eventRelay, evaluations, resender, collection, schedules]
    }

    /// Health-monitor's: what nodes report (heartbeats, registrations, allocation states, health,
    /// keepalives, shutdown requests), and the liveness sweep. A report a use case refuses (an
    /// unknown node or allocation, another node's allocation) is dead-lettered with the reason
    /// rather than retried.
    public func healthMonitorWorkers(policy: HeartbeatPolicy) -> [any Service] {
        let (bus, logger) = (self.bus, self.logger)
        let nodes = NodeLifecycle(database: database, heartbeatPolicy: policy)
        let reports = ReportService(database: database)
        let sweep = LivenessSweep(nodes: nodes, logger: logger) { [bus] in bus.isConnected }
        let heartbeats = MessageConsumer(
            NodeHeartbeat.self, bus: bus, spec: ConsumerSpec(queue: "health-monitor.heartbeats", bindings: ["node.*.heartbeat"]), logger: logger,
            retry: retryPolicy
        ) { envelope, delivery in
            let beat = envelope.data
            try delivery.checkSentBy(node: beat.nodeID, requireIdentity: requiresNodeIdentity)
            let ttl = policy.ttl(nodeCount: sweep.liveNodes.load(ordering: .relaxed), stagger: Double.random(in: 0..<1))
            var answer: Node.Status?
            try await Self.refusing { answer = try await nodes.heartbeat(beat, at: nodes.now(), ttl: ttl) }
            guard let status = answer else { return }
            // The answer is advice for the next interval: published directly, not through the
            // outbox, and not mandatory (a node that has gone has no queue to take it).
            try await bus.publish(
                NodeHeartbeatTTL(nodeID: beat.nodeID, heartbeatTTL: ttl, status: status, grace: policy.grace),
                routingKey: RoutingKey.clusterNode(beat.nodeID, "heartbeat-ttl"), mandatory: false)
        }
        let registrations = MessageConsumer(
            NodeRegistration.self, bus: bus, spec: ConsumerSpec(queue: "health-monitor.registrations", bindings: ["node.*.register"]), logger: logger,
            retry: retryPolicy
        ) { envelope, delivery in
            let nodeID = envelope.data.node.id
            try delivery.checkSentBy(node: nodeID, requireIdentity: requiresNodeIdentity)
            var evaluations: [String] = []
            try await Self.refusing { evaluations = try await nodes.register(node: envelope.data.node) }
            logger.debug("Node registration recorded", metadata: ["node_id": "\(nodeID)", "evaluations": "\(evaluations.count)"])
            // The answer tells the agent it is known (it registers again quickly until one comes),
            // and when to heartbeat: a registration counts as a heartbeat with the minimum TTL.
            try await bus.publish(
                NodeHeartbeatTTL(nodeID: nodeID, heartbeatTTL: policy.minimumTTL, status: .ready, grace: policy.grace),
                routingKey: RoutingKey.clusterNode(nodeID, "heartbeat-ttl"), mandatory: false)
        }
        // Reports are recorded in batches, one transaction for all that arrived meanwhile.
        let allocationStates = MessageConsumer(
            AllocationStatusReport.self, bus: bus,
            spec: ConsumerSpec(queue: "health-monitor.alloc-status", bindings: ["node.*.alloc-status"], prefetch: 500), logger: logger,
            retry: retryPolicy, batchLimit: 500
        ) { batch in
            var refused: [Int: String] = [:]
            var accepted: [(position: Int, report: AllocationStatusReport)] = []
            for (position, item) in batch.enumerated() {
                do {
                    try item.delivery.checkSentBy(node: item.envelope.data.nodeID, requireIdentity: requiresNodeIdentity)
                    accepted.append((position, item.envelope.data))
                } catch let rejected as MessageRejected {
                    refused[position] = rejected.reason
                }
            }
            let recorded = try await reports.record(accepted.map(\.report))
            for (index, error) in recorded.refused { refused[accepted[index].position] = error.description }
            return refused
        }
        // What a node says of its own health, and asks for itself.
        let health = nodeConsumer(NodeHealthReport.self, queue: "health-monitor.health", binding: "node.*.health", nodeID: \.nodeID) {
            try await nodes.record($0)
        }
        let keepalives = nodeConsumer(NodeKeepalive.self, queue: "health-monitor.keepalive", binding: "node.*.keepalive", nodeID: \.nodeID) {
            try await nodes.setKeepalive(nodeID: $0.nodeID, until: $0.until)
        }
        let shutdowns = nodeConsumer(NodeShutdownRequest.self, queue: "health-monitor.shutdown", binding: "node.*.shutdown", nodeID: \.nodeID) {
            try await nodes.requestTermination(nodeID: $0.nodeID, reason: $0.reason.rawValue)
        }
        return [outboxRelay, heartbeats, registrations, allocationStates, health, keepalives, shutdowns, sweep]
    }

    /// A consumer of what a node says of itself: checked to come from that node, and
    /// dead-lettered with the reason when the use case refuses it.
    private func nodeConsumer<Message: DroverMessage>(
        _ type: Message.Type, queue: String, binding: String, nodeID: @escaping @Sendable (Message) -> String,
        _ handle: @escaping @Sendable (Message) async throws -> Void
    ) -> MessageConsumer<Message> {
        MessageConsumer(type, bus: bus, spec: ConsumerSpec(queue: queue, bindings: [binding]), logger: logger, retry: retryPolicy) {
            envelope, delivery in
            try delivery.checkSentBy(node: nodeID(envelope.data), requireIdentity: requiresNodeIdentity)
            try await Self.refusing { try await handle(envelope.data) }
        }
    }

    /// Runs `work`; what the use case refuses (``ControlPlaneError``) is refused for good, so the
    /// message is dead-lettered with the reason instead of retried.
    static func refusing(_ work: () async throws -> Void) async throws {
        do {
            try await work()
        } catch let error as ControlPlaneError {
            throw MessageRejected(error.description)
        }
    }

    /// The autoscaler's: a round every `interval` (replicas take turns through a lock) and the
    /// providers' replies. A reply a use case refuses is dead-lettered with the reason.
    public func autoscalerWorkers(service: AutoscaleService, interval: Duration) -> [any Service] {
        let replies = MessageConsumer(
            ProviderReply.self, bus: bus, spec: ConsumerSpec(queue: "autoscaler.provider-replies", bindings: ["provider.*.*"]), logger: logger,
            retry: retryPolicy
        ) { envelope, _ in
            try await Self.refusing { try await service.record(envelope.data) }
        }
        let watcher = IndexWatcher(database: database)
        return [outboxRelay, replies, watcher, AutoscaleLoop(service: service, watcher: watcher, interval: interval, logger: logger)]
    }

    /// Log-collector's: node log messages as events (a redelivered one is recorded once, by its
    /// message id), task output (``OutputService``: a chunk stored before is ignored, by its
    /// offset), and retention.
    public func logCollectorWorkers(
        outputCap: Int64, outputRetention: Duration, eventRetention: Duration, eventStreamRetention: Duration = .seconds(3600)
    )
        -> [any Service]
    {
        let database = self.database
        let output = OutputService(database: database, cap: outputCap)
        let logs = MessageConsumer(
            NodeLogMessage.self, bus: bus, spec: ConsumerSpec(queue: "log-collector.logs", bindings: ["node.*.log.#"]), logger: logger,
            retry: retryPolicy
        ) { envelope, delivery in
            let message = envelope.data
            try delivery.checkSentBy(node: message.nodeID, requireIdentity: requiresNodeIdentity)
            let event = ClusterEvent(
                time: envelope.time, nodeID: message.nodeID, type: ClusterEvent.Kind.nodeLog, level: message.level, priority: message.priority,
                message: message.message)
            try await database.events.record(event, messageID: envelope.id)
        }
        // A chunk that is malformed, or for an allocation that is not the sender's, is dead-lettered.
        let chunks = MessageConsumer(
            TaskOutputChunk.self, bus: bus, spec: ConsumerSpec(queue: "log-collector.output", bindings: ["node.*.output.#"], prefetch: 64),
            logger: logger, retry: retryPolicy, concurrency: 8
        ) { envelope, delivery in
            try delivery.checkSentBy(node: envelope.data.nodeID, requireIdentity: requiresNodeIdentity)
            try await Self.refusing { try await output.append(envelope.data) }
        }
        return [
            logs, chunks,
            Retention(database: database, output: outputRetention, events: eventRetention, eventStream: eventStreamRetention, logger: logger),
        ]
    }

    /// This process's outbox relay: what its transactions commit is published at once.
    public var outboxRelay: OutboxRelay { OutboxRelay(database: database, bus: bus, logger: logger) }

    /// This process's event relay: publishes the event stream on the public events exchange
    /// (one relay of the cluster at a time). api-gateway and scheduler run one each: every
    /// relay holds a connection of its own for LISTEN, and two kinds of service are enough.
    public var eventRelay: EventRelay {
        EventRelay(database: database, bus: bus, exchange: bus.configuration.eventsExchange, logger: logger)
    }
}

/// Marks down the nodes whose heartbeat deadline has passed and moves drains on (deadlines,
/// system allocations, completion), every half second (or a quarter of the grace period, if
/// shorter), and keeps the count of live nodes that TTLs scale with.
///
/// It starts one grace period after the service: heartbeats that queued up while no health
/// monitor ran are recorded first, so that a restart does not mark the whole fleet down. After
/// an outage of the broker (the bus is not connected) or of the database (a sweep fails for
/// it), nodes get a fresh grace period the same way (``OutageGrace``).
final class LivenessSweep: Service, Sendable {
    let nodes: NodeLifecycle
    let logger: Logger
    let liveNodes = Atomic<Int>(0)
    private let busConnected: @Sendable () -> Bool
    private let grace: Mutex<OutageGrace>

    init(nodes: NodeLifecycle, logger: Logger, busConnected: @escaping @Sendable () -> Bool) {
        self.nodes = nodes
        self.logger = logger
        self.busConnected = busConnected
        self.grace = Mutex(OutageGrace(grace: nodes.heartbeatPolicy.grace))
    }

    func run() async throws {
        let grace = nodes.heartbeatPolicy.grace
        liveNodes.store((try? await nodes.liveNodeCount()) ?? 0, ordering: .relaxed)
        await repeatUntilShutdown(
            every: max(min(.milliseconds(500), grace / 4), .milliseconds(50)), after: grace, logger: logger, failure: "Liveness sweep failed"
        ) {
            try await self.sweep(at: self.nodes.now())
        }
    }

    /// One sweep at `now`. - Returns: the nodes it marked down.
    @discardableResult
    func sweep(at now: Date) async throws -> [String] {
        if !busConnected() { noteOutage(at: now) }
        do {
            var down: [String] = []
            if grace.withLock({ $0.mayMarkNodesDown(at: now) }) {
                down = try await nodes.expireNodes(at: now)
            }
            try await nodes.advanceDrains(at: now)
            liveNodes.store(try await nodes.liveNodeCount(), ordering: .relaxed)
            return down
        } catch  where Database.isOutage(error) {
            noteOutage(at: now)
            throw error
        }
    }

    private func noteOutage(at time: Date) {
        let first = grace.withLock { grace in
            defer { grace.outage(at: time) }
            return grace.mayMarkNodesDown(at: time)
        }
        if first { logger.warning("Heartbeats cannot arrive or be recorded; no node is marked down until they flow again for the grace period") }
    }
}

/// Drops task output, events and the event stream's published events past their retention,
/// once a minute.
struct Retention: Service {
    let database: Database
    let output: Duration
    let events: Duration
    let eventStream: Duration
    let logger: Logger

    func run() async throws {
        await repeatUntilShutdown(every: .seconds(60), logger: logger, failure: "Retention failed") {
            let chunks = try await database.output.prune(olderThan: output)
            let pruned = try await database.events.prune(olderThan: events)
            let streamed = try await database.eventStream.prune(olderThan: eventStream)
            if chunks + pruned + streamed > 0 {
                logger.info("Retention applied", metadata: ["output_chunks": "\(chunks)", "events": "\(pruned)", "stream_events": "\(streamed)"])
            }
        }
    }
}

/// Runs an autoscale round whenever the cluster changes (a blocked evaluation, a node that
/// registers, a target: each commit moves the index the watcher follows), at most every
/// `minimumGap`, and every `interval` in any case (idle timeouts pass without a change).
public struct AutoscaleLoop: Service {
    let service: AutoscaleService
    let watcher: IndexWatcher
    let interval: Duration
    let logger: Logger
    let minimumGap: Duration

    public init(service: AutoscaleService, watcher: IndexWatcher, interval: Duration, logger: Logger) {
        self.service = service
        self.watcher = watcher
        self.interval = interval
        self.logger = logger
        self.minimumGap = min(interval, .milliseconds(100))
    }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                let seen = watcher.latest
                let started = ContinuousClock.now
                do {
                    try await service.round()
                } catch {
                    logger.error("Autoscale round failed", metadata: ["error": "\(error)"])
                }
                try await Task.sleep(until: started + minimumGap)
                await watcher.wait(after: seen, timeout: interval)
            }
        }
    }
}
