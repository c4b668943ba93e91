public import ArgumentParser
public import DroverMessaging
public import DroverRuntime
public import DroverStorage
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
        self.database = try Database(url: options.database.postgresURL, logger: runtime.logger)
        self.options = options
    }

    /// Runs the database client, the bus and the HTTP port; applies migrations; then runs
    /// `workers` until SIGTERM or SIGINT. `/readyz` also checks that the database answers.
    public func run(defaultPort: Int, workers: [any Service]) async throws {
        let database = self.database
        try await runtime.runService(
            bus: bus, host: options.server.httpHost, port: options.server.configuredPort ?? defaultPort,
            readiness: [ReadinessCheck("postgres") { await database.ping() }], dependencies: [database.client],
            prepare: { try await database.migrate() }, workers: workers)
    }
}
