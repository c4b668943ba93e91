import ArgumentParser
import DroverMessaging
import DroverModel
import DroverRuntime
import DroverStorage
import Logging

@main
struct LogCollector: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log-collector", abstract: "Collects node log messages and task output. Replicas share the work.")

    @OptionGroup var bus: BusOptions
    @OptionGroup var database: DatabaseOptions
    @OptionGroup var server: ServerOptions

    func run() async throws {
        let runtime = ServiceRuntime.bootstrap(name: "log-collector", logLevel: server.level)
        let logger = runtime.logger
        let amqp = AMQPBus(configuration: try bus.configuration(), logger: logger)
        let db = try Database(url: database.postgresURL, logger: logger)
        let logs = MessageConsumer(
            NodeLogMessage.self, bus: amqp, spec: ConsumerSpec(queue: "log-collector.logs", bindings: ["node.*.log.#"]), logger: logger
        ) { envelope, _ in
            let message = envelope.data
            let level: Logger.Level =
                switch message.level {
                case .info: .info
                case .warn: .warning
                case .error: .error
                }
            logger.log(
                level: level, "Node log",
                metadata: ["node_id": "\(message.nodeID)", "priority": "\(message.priority.rawValue)", "message": "\(message.message)"])
        }
        try await runtime.runService(
            bus: amqp, host: server.httpHost, port: server.configuredPort ?? 4650, readiness: [ReadinessCheck("postgres") { await db.ping() }],
            dependencies: [db.client], prepare: { try await db.migrate() }, workers: [logs])
    }
}
