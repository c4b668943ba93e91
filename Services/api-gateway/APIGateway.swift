import ArgumentParser
import DroverMessaging
import DroverRuntime
import DroverStorage

@main
struct APIGateway: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "api-gateway", abstract: "Drover's HTTP API: writes desired state and publishes what changed through the outbox.")

    @OptionGroup var bus: BusOptions
    @OptionGroup var database: DatabaseOptions
    @OptionGroup var server: ServerOptions

    func run() async throws {
        let runtime = ServiceRuntime.bootstrap(name: "api-gateway", logLevel: server.level)
        let amqp = AMQPBus(configuration: try bus.configuration(), logger: runtime.logger)
        let db = try Database(url: database.postgresURL, logger: runtime.logger)
        try await runtime.runService(
            bus: amqp, host: server.httpHost, port: server.configuredPort ?? 4646, readiness: [ReadinessCheck("postgres") { await db.ping() }],
            dependencies: [db.client], prepare: { try await db.migrate() },
            workers: [OutboxRelay(database: db, bus: amqp, logger: runtime.logger)])
    }
}
