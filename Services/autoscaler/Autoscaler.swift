import ArgumentParser
import DroverMessaging
import DroverRuntime
import DroverStorage

@main
struct Autoscaler: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "autoscaler", abstract: "Keeps node arrays at their targets by asking a provider for machines.")

    @OptionGroup var bus: BusOptions
    @OptionGroup var database: DatabaseOptions
    @OptionGroup var server: ServerOptions

    func run() async throws {
        let runtime = ServiceRuntime.bootstrap(name: "autoscaler", logLevel: server.level)
        let amqp = AMQPBus(configuration: try bus.configuration(), logger: runtime.logger)
        let db = try Database(url: database.postgresURL, logger: runtime.logger)
        try await runtime.runService(
            bus: amqp, host: server.httpHost, port: server.configuredPort ?? 4649, readiness: [ReadinessCheck("postgres") { await db.ping() }],
            dependencies: [db.client], prepare: { try await db.migrate() }, workers: [])
    }
}
