public import ArgumentParser
public import DroverMessaging
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

    public init() {}
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

    /// The HTTP address this service listens on, `host:port`.
    public func address(defaultPort: Int) -> String { "\(options.server.httpHost):\(options.server.configuredPort ?? defaultPort)" }

    /// Runs the database client, the bus and the HTTP port (the ops routes and `routes`);
    /// applies migrations; then runs `workers` until SIGTERM or SIGINT. `/readyz` also checks
    /// that the database answers.
    public func run(defaultPort: Int, workers: [any Service], routes: (Router<BasicRequestContext>) -> Void = { _ in }) async throws {
        let database = self.database
        try await runtime.runService(
            bus: bus, host: options.server.httpHost, port: options.server.configuredPort ?? defaultPort,
            readiness: [ReadinessCheck("postgres") { await database.ping() }], dependencies: [database.client],
            prepare: { try await database.migrate() }, workers: workers, routes: routes)
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
