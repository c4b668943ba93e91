public import ArgumentParser
public import DroverAutoscaling
public import DroverHealth
public import DroverMessaging
import DroverModel
public import DroverRuntime
public import DroverScheduling
public import DroverStorage
import Foundation
public import Hummingbird
public import Logging
public import ServiceLifecycle

/// The options every control-plane service takes: the bus, the database, its HTTP port and logging.
public struct ControlPlaneOptions: ParsableArguments, Sendable {
    @OptionGroup public var bus: BusOptions
    @OptionGroup public var database: DatabaseOptions
    @OptionGroup public var server: ServerOptions

    @Option(
        help:
            "required: a node's messages count only from its own broker user; optional: also from a shared user, for development (env DROVER_NODE_IDENTITY)."
    )
    public var nodeIdentity: String = ProcessInfo.processInfo.environment["DROVER_NODE_IDENTITY"] ?? "required"

    public init() {}

    public func validate() throws {
        guard ["required", "optional"].contains(nodeIdentity) else {
            throw ValidationError("--node-identity: '\(nodeIdentity)' is not required or optional")
        }
    }
}

/// A control-plane service's connections: the bus and the database, with logging and metrics set
/// up. Build the service's workers from it, then ``run(defaultPort:workers:)``.
public struct ControlPlane: Sendable {
    public let runtime: ServiceRuntime
    public let bus: AMQPBus
    public let database: Database
    private let options: ControlPlaneOptions

    public var logger: Logger { runtime.logger }

    /// - Throws: when a URL in `options` cannot be used, with what is wrong with it.
    public init(name: String, options: ControlPlaneOptions) throws {
        self.runtime = ServiceRuntime.bootstrap(name: name, logLevel: options.server.level)
        self.bus = AMQPBus(configuration: try options.bus.configuration(), logger: runtime.logger)
        self.database = try Database(url: options.database.postgresURL, applicationName: name, logger: runtime.logger)
        self.options = options
    }

    /// Whether a node's messages count only from that node's own broker user (`--node-identity`).
    public var requiresNodeIdentity: Bool { options.nodeIdentity != "optional" }

    /// How its consumers retry: a database or broker outage is waited out, uncounted.
    public var retryPolicy: RetryPolicy {
        RetryPolicy(isOutage: { Database.isOutage($0) || RetryPolicy.isBusOutage($0) })
    }

    /// The HTTP address this service listens on, `host:port`.
    public func address(defaultPort: Int) -> String { "\(options.server.httpHost):\(options.server.configuredPort ?? defaultPort)" }

    /// Seconds a control-plane service has to shut down by default: within Kubernetes' default
    /// grace period (30 s) before SIGKILL.
    public static let shutdownTimeout: Double = 25

    /// Runs the database client, the bus and the HTTP port (the ops routes and `routes`);
    /// applies migrations; then runs `workers` until SIGTERM or SIGINT. `/readyz` also checks
    /// that the database answers. Once they have stopped, it ends the process
    /// (``ServiceRuntime/endProcess(after:)``).
    public func run(defaultPort: Int, workers: [any Service], routes: (Router<BasicRequestContext>) -> Void = { _ in }) async throws -> Never {
        let database = self.database
        try await ServiceRuntime.endProcess {
            try await runtime.runService(
                bus: bus, host: options.server.httpHost, port: options.server.configuredPort ?? defaultPort,
                readiness: [ReadinessCheck("postgres") { await database.ping() }], dependencies: [database.client],
                prepare: { try await database.migrate() }, workers: workers, routes: routes, tls: try options.server.tlsConfiguration(),
                shutdownTimeout: options.server.shutdownLimit(default: Self.shutdownTimeout))
        }
    }
}

/// The cluster's scheduler setting; the scheduler and the gateway's `job plan` must agree on it.
public struct SchedulingOptions: ParsableArguments, Sendable {
    @Option(help: "binpack (fill busy nodes first, Nomad's default) or spread (env DROVER_SCHEDULER_ALGORITHM).")
    public var schedulerAlgorithm: String = ProcessInfo.processInfo.environment["DROVER_SCHEDULER_ALGORITHM"] ?? "binpack"

    public init() {}

    public func validate() throws {
        guard SchedulerConfiguration.Algorithm(rawValue: schedulerAlgorithm) != nil else {
            throw ValidationError("--scheduler-algorithm: '\(schedulerAlgorithm)' is not binpack or spread")
        }
    }

    public var configuration: SchedulerConfiguration { SchedulerConfiguration(algorithm: .init(rawValue: schedulerAlgorithm) ?? .binpack) }
}

/// How the autoscaler runs: how often it decides, how long providers have, where new nodes join.
public struct AutoscaleOptions: ParsableArguments, Sendable {
    @Option(name: .customLong("autoscale-interval"), help: "Seconds between autoscale rounds (env DROVER_AUTOSCALE_INTERVAL).")
    public var interval: Double = ProcessInfo.processInfo.environment["DROVER_AUTOSCALE_INTERVAL"].flatMap(Double.init) ?? 5

    @Option(name: .customLong("provider-timeout"), help: "Seconds a provider has to answer a request (env DROVER_PROVIDER_TIMEOUT).")
    public var providerTimeout: Double = ProcessInfo.processInfo.environment["DROVER_PROVIDER_TIMEOUT"].flatMap(Double.init) ?? 120

    @Option(
        name: .customLong("scale-down-cooldown"),
        help: "Seconds after machines are asked for in which none of that array is taken away (env DROVER_SCALE_DOWN_COOLDOWN).")
    public var cooldown: Double = ProcessInfo.processInfo.environment["DROVER_SCALE_DOWN_COOLDOWN"].flatMap(Double.init) ?? 60

    @Option(name: .customLong("gateway-address"), help: "The gateway new machines' agents join through (env DROVER_ADDR).")
    public var gateway: String = ProcessInfo.processInfo.environment["DROVER_ADDR"] ?? "http://127.0.0.1:4646"

    public init() {}

    public func validate() throws {
        let most = ServerOptions.maximumSeconds
        for (flag, value) in [("--autoscale-interval", interval), ("--provider-timeout", providerTimeout)] where !(value >= 0.05 && value <= most) {
            throw ValidationError("\(flag): must be at least 0.05 and at most \(Int(most)) seconds")
        }
        guard cooldown >= 0 && cooldown <= most else { throw ValidationError("--scale-down-cooldown: must be 0 to \(Int(most)) seconds") }
        guard let url = URL(string: gateway), url.scheme == "http" || url.scheme == "https", url.host != nil else {
            throw ValidationError("--gateway-address: '\(gateway)' is not an http(s) URL")
        }
    }

    public var policy: AutoscalePolicy {
        AutoscalePolicy(requestTimeout: Int64(providerTimeout.rounded(.up)), cooldown: Int64(cooldown.rounded(.up)))
    }

    public var roundInterval: Duration { .milliseconds(Int(interval * 1000)) }
}

/// RabbitMQ's management API, where nodes' broker users are made and removed.
public struct BrokerManagementOptions: ParsableArguments, Sendable {
    @Option(
        help:
            "RabbitMQ's management API, with a user that may manage users, for nodes' broker users (env DROVER_AMQP_MANAGEMENT_URL, or a file named by DROVER_AMQP_MANAGEMENT_URL_FILE)."
    )
    public var amqpManagementURL: String = SecretSetting.value("DROVER_AMQP_MANAGEMENT_URL") ?? "http://guest:guest@127.0.0.1:15680"

    public init() {}

    public func validate() throws {
        if let problem = SecretSetting.problem("DROVER_AMQP_MANAGEMENT_URL") { throw ValidationError(problem) }
    }

    /// The node users of the cluster the bus settings `bus` name.
    public func brokerUsers(for bus: BusOptions) throws -> BrokerUsers {
        let amqp = try bus.configuration()
        return try BrokerUsers(
            managementURL: amqpManagementURL, vhost: amqp.endpoint.vhost, exchange: amqp.exchange, deadLetterExchange: amqp.deadLetterExchange)
    }
}

/// Health-monitor's heartbeat settings.
public struct HeartbeatOptions: ParsableArguments, Sendable {
    @Option(help: "The shortest heartbeat TTL handed to a node, in seconds (env DROVER_HEARTBEAT_MIN_TTL).")
    public var heartbeatMinTTL: Double = ProcessInfo.processInfo.environment["DROVER_HEARTBEAT_MIN_TTL"].flatMap(Double.init) ?? 10

    @Option(help: "Seconds a node may stay silent after its TTL before it is down (env DROVER_HEARTBEAT_GRACE).")
    public var heartbeatGrace: Double = ProcessInfo.processInfo.environment["DROVER_HEARTBEAT_GRACE"].flatMap(Double.init) ?? 10

    @Option(help: "Heartbeats per second the fleet may send in all; TTLs grow to keep under it (env DROVER_MAX_HEARTBEATS_PER_SECOND).")
    public var maxHeartbeatsPerSecond: Double =
        ProcessInfo.processInfo.environment["DROVER_MAX_HEARTBEATS_PER_SECOND"].flatMap(Double.init) ?? 50

    public init() {}

    public func validate() throws {
        let most = ServerOptions.maximumSeconds
        guard heartbeatMinTTL > 0 && heartbeatMinTTL <= most else {
            throw ValidationError("--heartbeat-min-ttl: must be more than 0 and at most \(Int(most)) seconds")
        }
        guard heartbeatGrace >= 0 && heartbeatGrace <= most else {
            throw ValidationError("--heartbeat-grace: must be 0 seconds or more, at most \(Int(most))")
        }
        guard maxHeartbeatsPerSecond > 0 && maxHeartbeatsPerSecond.isFinite else {
            throw ValidationError("--max-heartbeats-per-second: must be more than 0")
        }
    }

    public var policy: HeartbeatPolicy {
        HeartbeatPolicy(
            minimumTTL: .milliseconds(Int(heartbeatMinTTL * 1000)), heartbeatsPerSecond: maxHeartbeatsPerSecond,
            grace: .milliseconds(Int(heartbeatGrace * 1000)))
    }
}

/// Log-collector's caps and retention.
public struct RetentionOptions: ParsableArguments, Sendable {
    @Option(help: "Output kept per task and stream, in MB; beyond it the oldest is dropped (env DROVER_OUTPUT_CAP_MB).")
    public var outputCapMB: Int = ProcessInfo.processInfo.environment["DROVER_OUTPUT_CAP_MB"].flatMap(Int.init) ?? 100

    @Option(help: "How long task output is kept, as 168h (env DROVER_OUTPUT_RETENTION).")
    public var outputRetention: String = ProcessInfo.processInfo.environment["DROVER_OUTPUT_RETENTION"] ?? "168h"

    @Option(help: "How long events are kept, as 720h (env DROVER_EVENT_RETENTION).")
    public var eventRetention: String = ProcessInfo.processInfo.environment["DROVER_EVENT_RETENTION"] ?? "720h"

    @Option(
        help: """
            How long the event stream keeps published events, for clients that resume from an index, as 1h \
            (env DROVER_EVENT_STREAM_RETENTION).
            """)
    public var eventStreamRetention: String = ProcessInfo.processInfo.environment["DROVER_EVENT_STREAM_RETENTION"] ?? "1h"

    public init() {}

    public func validate() throws {
        guard outputCapMB > 0 else { throw ValidationError("--output-cap-mb: must be more than 0") }
        for (name, value) in [
            ("--output-retention", outputRetention), ("--event-retention", eventRetention), ("--event-stream-retention", eventStreamRetention),
        ] where GoDuration.parse(value) == nil {
            throw ValidationError("\(name): '\(value)' is not a duration such as 168h")
        }
    }

    /// Bytes kept per task and stream.
    public var outputCap: Int64 { Int64(outputCapMB) << 20 }
    public var output: Duration { GoDuration.parse(outputRetention) ?? .seconds(604_800) }
    public var events: Duration { GoDuration.parse(eventRetention) ?? .seconds(2_592_000) }
    public var eventStream: Duration { GoDuration.parse(eventStreamRetention) ?? .seconds(3600) }
}
