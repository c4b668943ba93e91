public import ArgumentParser
import DroverMessaging
import DroverModel
import DroverRuntime
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The node agent's settings: every flag with an environment variable behind it.
public struct AgentOptions: ParsableArguments, Sendable {
    @OptionGroup var bus: BusOptions
    @OptionGroup var server: ServerOptions

    public init() {}

    @Option(
        help:
            "Directory for the agent's state; the node id is kept there (env DROVER_NODE_DATA_DIR; default /var/lib/drover/agent for root, else ~/.local/state/drover/agent)."
    )
    var dataDir: String = NodeDataDirectory.configured()

    @Option(help: "This node's id; by default one is made on first start and kept in the data dir (env DROVER_NODE_ID).")
    var nodeID: String?

    /// `--node-id`, else `DROVER_NODE_ID`.
    var configuredNodeID: String? { nodeID ?? ProcessInfo.processInfo.environment["DROVER_NODE_ID"].flatMap { $0.isEmpty ? nil : $0 } }

    @Option(help: "Seconds between heartbeats until the control plane hands out a TTL (env DROVER_HEARTBEAT_INTERVAL).")
    var heartbeatInterval: Double = ProcessInfo.processInfo.environment["DROVER_HEARTBEAT_INTERVAL"].flatMap(Double.init) ?? 10

    @Option(
        help: "Seconds between repeated registrations, which the control plane ignores unless something changed (env DROVER_REGISTRATION_INTERVAL).")
    var registrationInterval: Double = ProcessInfo.processInfo.environment["DROVER_REGISTRATION_INTERVAL"].flatMap(Double.init) ?? 30

    @Option(help: "The node's datacenter (env DROVER_DATACENTER).")
    var datacenter: String = ProcessInfo.processInfo.environment["DROVER_DATACENTER"] ?? "dc1"

    @Option(help: "The node's class, for constraints on ${node.class}.")
    var nodeClass: String = ""

    @Option(help: "The node's name; the host name by default.")
    var nodeName: String?

    @Option(name: .customLong("meta"), help: "Node metadata KEY=VALUE, read as ${meta.KEY}; repeatable.")
    var meta: [String] = []

    @Option(
        name: .customLong("attribute"),
        help: "An attribute KEY=VALUE, read as ${attr.KEY}, over what is fingerprinted (a node array's machine type sets these); repeatable.")
    var attributes: [String] = []

    @Option(
        help: "Directory of HealthCheck executables: exit 254 unhealthy, 0 healthy (env DROVER_HEALTHCHECK_DIR; default <data-dir>/healthcheck.d).")
    var healthcheckDir: String? = ProcessInfo.processInfo.environment["DROVER_HEALTHCHECK_DIR"]

    @Option(help: "Seconds between HealthCheck runs (env DROVER_HEALTHCHECK_INTERVAL).")
    var healthcheckInterval: Double = ProcessInfo.processInfo.environment["DROVER_HEALTHCHECK_INTERVAL"].flatMap(Double.init) ?? 600

    @Option(help: "How long a finished allocation's directory is kept once its output is shipped, as 24h (env DROVER_ALLOC_RETENTION).")
    var allocRetention: String = ProcessInfo.processInfo.environment["DROVER_ALLOC_RETENTION"] ?? "24h"

    @Option(help: "CPU to offer in MHz, instead of cores x clock.")
    var cpuTotalCompute: Int?

    @Option(help: "Memory to offer in MB, instead of all of it.")
    var memoryMB: Int?

    @Option(help: "Disk to offer in MB, instead of what is free in the data dir.")
    var diskMB: Int?

    @Option(
        help:
            "A one-time enrollment token to join the cluster with, on the first start (env DROVER_ENROLL_TOKEN, or a file named by DROVER_ENROLL_TOKEN_FILE)."
    )
    var enrollToken: String? = SecretSetting.value("DROVER_ENROLL_TOKEN")

    @Option(name: .customLong("address"), help: "The API gateway the node joins through (env DROVER_ADDR).")
    var address: String = ProcessInfo.processInfo.environment["DROVER_ADDR"] ?? "http://127.0.0.1:4646"

    @Option(name: .customLong("ca-cert"), help: "The PEM file of the authorities an https gateway's certificate must chain to (env DROVER_CACERT).")
    var caCert: String? = ProcessInfo.processInfo.environment["DROVER_CACERT"]

    @Option(help: "Seconds a cluster-init script or test may run before it is killed and fails (env DROVER_CLUSTER_INIT_TIMEOUT).")
    var clusterInitTimeout: Double = ProcessInfo.processInfo.environment["DROVER_CLUSTER_INIT_TIMEOUT"].flatMap(Double.init) ?? 1800

    @Option(
        help: "Users exec tasks may run as, comma-separated; any user but root when empty (env DROVER_EXEC_USERS).")
    var execUsers: String = ProcessInfo.processInfo.environment["DROVER_EXEC_USERS"] ?? ""

    public func validate() throws {
        if let problem = SecretSetting.problem("DROVER_ENROLL_TOKEN") { throw ValidationError(problem) }
        if let nodeID = configuredNodeID, !RoutingKey.isValidWord(nodeID) {
            throw ValidationError("--node-id: '\(nodeID)' must be one routing-key word: no dots, '*', '#' or spaces")
        }
        for (name, seconds) in [
            ("--heartbeat-interval", heartbeatInterval), ("--registration-interval", registrationInterval),
            ("--healthcheck-interval", healthcheckInterval), ("--cluster-init-timeout", clusterInitTimeout),
        ] where !(seconds > 0 && seconds <= ServerOptions.maximumSeconds) {
            throw ValidationError("\(name): must be more than 0 and at most \(Int(ServerOptions.maximumSeconds)) seconds")
        }
        guard let retention = GoDuration.parse(allocRetention), retention >= .zero else {
            throw ValidationError("--alloc-retention: '\(allocRetention)' is not a duration such as 24h or 30m")
        }
        for pair in meta where !pair.contains("=") || pair.hasPrefix("=") {
            throw ValidationError("--meta: '\(pair)' is not KEY=VALUE")
        }
        for pair in attributes where !pair.contains("=") || pair.hasPrefix("=") {
            throw ValidationError("--attribute: '\(pair)' is not KEY=VALUE")
        }
        for (name, value) in [("--cpu-total-compute", cpuTotalCompute), ("--memory-mb", memoryMB), ("--disk-mb", diskMB)] {
            if let value, value < 0 { throw ValidationError("\(name): must be 0 or more") }
        }
    }
}

/// The node agent: registers the node, heartbeats, runs the allocations placed on it, ships their
/// output, runs its HealthCheck scripts, and serves the node's `drover` commands on its port.
public struct Agent: Sendable {
    let options: AgentOptions

    public init(options: AgentOptions) { self.options = options }

    /// Runs until SIGTERM or SIGINT; once it has stopped, ends the process
    /// (``ServiceRuntime/endProcess(after:)``).
    public func run() async throws -> Never { try await ServiceRuntime.endProcess { try await options.runAgent() } }
}

extension AgentOptions {
    /// Builds the agent's workers from these settings and runs them.
    fileprivate func runAgent() async throws {
        let dataDirectory = URL(fileURLWithPath: dataDir)
        let logFile = LogFile(url: dataDirectory.appendingPathComponent("logs/agent.log"))
        let runtime = ServiceRuntime.bootstrap(name: "node-agent", logLevel: server.level, logFile: logFile)
        let id = try configuredNodeID ?? NodeIdentity.loadOrCreate(in: dataDirectory)
        var logger = runtime.logger
        logger[metadataKey: "node_id"] = "\(id)"
        // The node's own identity: kept from an earlier join, or got now with an enrollment token.
        var joined = try NodeJoining.stored(in: dataDirectory)
        if let kept = joined, kept.nodeID != id {
            throw ValidationError("\(NodeJoining.file(in: dataDirectory).path) holds the credentials of node \(kept.nodeID), not \(id)")
        }
        if joined == nil, let enrollToken, !enrollToken.isEmpty {
            joined = try await NodeJoining.join(
                nodeID: id, token: enrollToken, address: address, caCertificate: caCert, in: dataDirectory, logger: logger)
            logger.notice("Node joined the cluster", metadata: ["address": "\(address)"])
        }
        // A node's broker user may not configure the exchanges; the control plane declares them.
        var busConfiguration = try bus.configuration()
        busConfiguration.declaresExchanges = false
        if let joined {
            let authorities = busConfiguration.endpoint.caCertificate
            busConfiguration.endpoint = try AMQPEndpoint(url: joined.amqpURL)
            // The authorities this node was given, not the path the gateway uses for its own.
            if let authorities { busConfiguration.endpoint.caCertificate = authorities }
        } else if BrokerUsers.nodeID(ofUser: busConfiguration.endpoint.user) != id {
            logger.warning(
                "This node has no identity of its own: a control plane that requires node identity refuses its messages; start it once with --enroll-token",
                metadata: ["broker_user": "\(busConfiguration.endpoint.user)"])
        }
        // What the node acts on comes from the control plane's broker user alone, once it is known.
        let controlPlaneUser = joined?.controlPlaneUser
        @Sendable func checkFromControlPlane(_ delivery: Delivery) throws {
            guard let controlPlaneUser, delivery.userID != controlPlaneUser else { return }
            throw MessageRejected(
                "published by broker user '\(delivery.userID ?? "unnamed")', not the control plane's ('\(controlPlaneUser)')")
        }
        let amqp = AMQPBus(configuration: busConfiguration, logger: logger)
        let pairs = { (list: [String]) in
            Dictionary(
                list.map { pair in
                    let parts = pair.split(separator: "=", maxSplits: 1)
                    return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
                }, uniquingKeysWith: { $1 })
        }
        let metadata = pairs(meta)
        let node = Fingerprint.node(
            id: id, dataDirectory: dataDirectory,
            configuration: Fingerprint.Configuration(
                datacenter: datacenter, nodeClass: nodeClass, meta: metadata, attributes: pairs(attributes), cpuTotalCompute: cpuTotalCompute,
                memoryMB: memoryMB, diskMB: diskMB, name: nodeName))
        let agentLogger = logger
        let (reports, reporter) = AsyncStream.makeStream(of: AllocationStatusReport.self)
        let shipper = OutputShipper(bus: amqp, nodeID: id, root: dataDirectory.appendingPathComponent("alloc"), logger: logger)
        let allowedUsers = Set(execUsers.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
        let manager = AllocationManager(
            nodeID: id, datacenter: datacenter, dataDirectory: dataDirectory, execUsers: ExecUsers(allowedUsers), logger: logger
        ) { report in
            shipper.track(report)
            reporter.yield(report)
        }
        let allocations = MessageConsumer(
            AllocationUpdate.self, bus: amqp, spec: ConsumerSpec(queue: "node.\(id)", bindings: ["cluster.alloc.\(id).#"]), logger: logger,
            concurrency: 8
        ) { envelope, delivery in
            try checkFromControlPlane(delivery)
            try await manager.apply(envelope.data.allocation)
        }
        let heartbeats = Heartbeats(bus: amqp, nodeID: id, interval: .milliseconds(Int(heartbeatInterval * 1000)), logger: logger)
        // Until the control plane says, the node is taken as declared down after two intervals
        // and the default grace of 10 s.
        let leaseFile = TaskLease.file(in: dataDirectory)
        let contact = ControlPlaneContact(downAfter: .milliseconds(Int(heartbeatInterval * 2000)) + .seconds(10))
        let registrations = Registrations(bus: amqp, node: node, interval: .milliseconds(Int(registrationInterval * 1000)), logger: logger)
        let control = MessageConsumer(
            NodeHeartbeatTTL.self, bus: amqp,
            spec: ConsumerSpec(queue: "node.\(id).control", bindings: ["cluster.node.\(id).#"], prefetch: 10), logger: logger
        ) { envelope, delivery in
            try checkFromControlPlane(delivery)
            registrations.acknowledge()
            heartbeats.use(ttl: envelope.data.ttl)
            contact.answered(downAfter: envelope.data.downAfter)
            do {
                try TaskLease.renew(leaseFile, ttl: envelope.data.ttl, grace: envelope.data.downAfter - envelope.data.ttl)
            } catch {
                agentLogger.warning("Could not renew the tasks' lease", metadata: ["file": "\(leaseFile.path)", "error": "\(error)"])
            }
        }
        let users = NodeUsers(file: dataDirectory.appendingPathComponent("users.json"), nodeClass: nodeClass)
        let usersConsumer = MessageConsumer(
            ClusterUsers.self, bus: amqp,
            spec: ConsumerSpec(queue: "node.\(id).users", bindings: ["cluster.users.\(id).#", "cluster.users.all.#"], prefetch: 10), logger: logger
        ) { envelope, delivery in
            try checkFromControlPlane(delivery)
            try users.update(envelope.data)
        }
        let shutdownScripts = ShutdownScripts(
            file: dataDirectory.appendingPathComponent("run-on-shutdown.json"), termination: NodeTermination(dataDirectory: dataDirectory),
            logger: logger)
        let agentToken = try AgentToken.loadOrCreate(in: dataDirectory)
        let healthChecks = HealthChecks(
            bus: amqp, nodeID: id, directory: URL(fileURLWithPath: healthcheckDir ?? dataDirectory.appendingPathComponent("healthcheck.d").path),
            interval: .milliseconds(Int(healthcheckInterval * 1000)), logger: logger)
        // Cluster-init needs the node's own secret: a node that never joined has none, and
        // runs no projects.
        let clusterInit = joined.flatMap { joined in
            joined.address.map { address in
                ClusterInit(
                    nodeID: id, secret: joined.nodeSecret, address: address, caCertificate: caCert,
                    directory: dataDirectory.appendingPathComponent("cluster-init"), scriptTimeout: .milliseconds(Int(clusterInitTimeout * 1000)),
                    logger: logger
                ) { result in
                    let level: NodeLogMessage.Level = result.succeeded ? .info : .error
                    let message = NodeLogMessage(
                        nodeID: id,
                        message: "cluster-init \(result.spec) \(result.script): \(result.succeeded ? "succeeded" : ClusterInit.describe(result))",
                        level: level, priority: result.succeeded ? .low : .high)
                    try? await amqp.publish(message, routingKey: RoutingKey.nodeLog(id, level: level, priority: message.priority))
                }
            }
        }
        let settings = [
            "amqp_url": busConfiguration.endpoint.redacted, "exchange": busConfiguration.exchange, "data_dir": dataDirectory.path,
            "healthcheck_dir": healthChecks.directory.path, "healthcheck_interval": "\(healthcheckInterval)s",
        ]
        try await runtime.runService(
            bus: amqp, host: server.httpHost, port: server.configuredPort ?? 4651,
            prepare: {
                // Pick up what a previous agent ran before saying what this node offers.
                await manager.recover()
                // Configure the node before it registers: until its scripts succeed it takes no work.
                if let clusterInit, let state = try? await clusterInit.atStart(patience: .seconds(120)) {
                    await registrations.update(clusterInit: state, publishNow: false)
                }
                agentLogger.info(
                    "Node fingerprinted",
                    metadata: [
                        "cpu_mhz": "\(node.resources.cpu)", "memory_mb": "\(node.resources.memoryMB)",
                        "drivers": "\(node.drivers.filter { $0.value.detected }.keys.sorted())",
                    ])
            },
            workers: [
                registrations, heartbeats, control, StatusReporter(bus: amqp, nodeID: id, reports: reports, logger: logger), allocations,
                shipper,
                healthChecks, shutdownScripts, usersConsumer, DisconnectWatch(contact: contact, manager: manager, logger: logger),
                AllocationRetention(manager: manager, retention: GoDuration.parse(allocRetention) ?? .seconds(86_400), logger: logger),
            ],
            routes: AgentAPI(
                bus: amqp, node: node, shutdownScripts: shutdownScripts, users: users, dataDirectory: dataDirectory, settings: settings,
                token: agentToken, joined: joined, caCertificate: caCert, clusterInit: clusterInit, registrations: registrations
            ).addRoutes, tls: try server.tlsConfiguration(),
            // Run-on-shutdown scripts have 60 s each when the node terminates.
            shutdownTimeout: server.shutdownLimit(default: 300))
    }
}

/// The secret the node's `drover` commands send to the agent's own routes, kept in
/// `<data-dir>/agent.token` (mode 0600): only the agent's user (and root) can read it, so a task
/// running as another user, such as an `exec` task as `nobody`, cannot call those routes.
enum AgentToken {
    static let header = "X-Drover-Agent-Token"

    static func loadOrCreate(in directory: URL) throws -> String {
        let file = directory.appendingPathComponent("agent.token")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        if let existing = try? String(contentsOf: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), existing.count >= 32 {
            guard chmod(file.path, 0o600) == 0 else { throw POSIXError.fromErrno() }
            return existing
        }
        var generator = SystemRandomNumberGenerator()
        let token = (0..<32).map { _ in String(UInt8.random(in: 0...15, using: &generator), radix: 16) }.joined()
        let descriptor = open(file.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw POSIXError.fromErrno() }
        defer { close(descriptor) }
        guard fchmod(descriptor, 0o600) == 0, write(descriptor, token + "\n", token.utf8.count + 1) == token.utf8.count + 1 else {
            throw POSIXError.fromErrno()
        }
        return token
    }

    /// Compares in time that does not depend on where the two differ.
    static func matches(_ given: String, _ expected: String) -> Bool {
        let a = Array(given.utf8)
        let b = Array(expected.utf8)
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
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

/// Publishes a heartbeat on `node.<id>.heartbeat`, starting at once: every `interval` until the
/// control plane answers with a TTL, then every TTL (as a Nomad client does).
final class Heartbeats: Service, Sendable {
    let bus: any MessageBus
    let nodeID: String
    let logger: Logger
    private let interval: Mutex<Duration>

    init(bus: any MessageBus, nodeID: String, interval: Duration, logger: Logger) {
        self.bus = bus
        self.nodeID = nodeID
        self.interval = Mutex(interval)
        self.logger = logger
    }

    /// Heartbeats from now on every `ttl`, as the control plane asked.
    func use(ttl: Duration) {
        guard ttl > .zero else { return }
        let previous = interval.withLock { interval in
            defer { interval = ttl }
            return interval
        }
        if previous != ttl { logger.debug("Heartbeat TTL changed", metadata: ["ttl": "\(ttl)"]) }
    }

    func run() async throws {
        let startedAt = Date()
        let sequence = Atomic<UInt64>(0)
        await repeatUntilShutdown(every: { self.interval.withLock { $0 } }, logger: logger, failure: "Heartbeat not sent") {
            let (_, next) = sequence.add(1, ordering: .relaxed)
            let beat = NodeHeartbeat(nodeID: self.nodeID, sequence: next, agentStartedAt: startedAt)
            try await self.bus.publish(beat, routingKey: RoutingKey.nodeHeartbeat(self.nodeID))
            self.logger.trace("Heartbeat sent", metadata: ["sequence": "\(next)"])
        }
    }
}

/// Publishes the node's registration on `node.<id>.register` at start and then every
/// `interval`: a control plane that was not listening yet (or lost its state) learns of the node
/// all the same, and an unchanged registration costs it nothing.
///
/// Until the control plane answers (any heartbeat TTL on the node's control queue), it
/// registers again after 1 s, doubling up to `interval`: on a fresh broker the first
/// registration may find no queue bound yet, and is dropped.
final class Registrations: Service, Sendable {
    let bus: any MessageBus
    let interval: Duration
    let logger: Logger
    private let current: Mutex<Node>
    private let answered = Atomic<Bool>(false)
    private let retry = Mutex<Duration>(.seconds(1))

    init(bus: any MessageBus, node: Node, interval: Duration, logger: Logger) {
        self.bus = bus
        self.current = Mutex(node)
        self.interval = interval
        self.logger = logger
    }

    /// The node as it registers.
    var node: Node { current.withLock { $0 } }

    /// Records how cluster-init converged; once registrations run, the node registers again at
    /// once with it (a failure there is repeated by the next registration).
    func update(clusterInit: ClusterInitState, publishNow: Bool) async {
        let node = current.withLock { node in
            node.clusterInit = clusterInit
            return node
        }
        guard publishNow else { return }
        do {
            try await bus.publish(NodeRegistration(node: node), routingKey: RoutingKey.nodeRegister(node.id))
        } catch {
            logger.warning("Registration not sent; the next one carries the converge", metadata: ["error": "\(error)"])
        }
    }

    /// The control plane has heard of the node: from now on, register every `interval`.
    func acknowledge() {
        if !answered.exchange(true, ordering: .relaxed) { logger.debug("Registration answered") }
    }

    /// How long until the next registration.
    func nextDelay() -> Duration {
        guard !answered.load(ordering: .relaxed) else { return interval }
        return retry.withLock { retry in
            defer { retry = min(retry * 2, interval) }
            return min(retry, interval)
        }
    }

    func run() async throws {
        await repeatUntilShutdown(every: { self.nextDelay() }, logger: logger, failure: "Registration not sent") {
            let node = self.node
            try await self.bus.publish(NodeRegistration(node: node), routingKey: RoutingKey.nodeRegister(node.id))
            self.logger.trace("Registration sent")
        }
    }
}
