import ArgumentParser
import DroverMessaging
import DroverModel
import DroverRuntime
import DroverStorage

@main
struct Scheduler: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scheduler", abstract: "Turns pending evaluations into placement plans. Replicas share the work.")

    @OptionGroup var bus: BusOptions
    @OptionGroup var database: DatabaseOptions
    @OptionGroup var server: ServerOptions

    func run() async throws {
        let runtime = ServiceRuntime.bootstrap(name: "scheduler", logLevel: server.level)
        let logger = runtime.logger
        let amqp = AMQPBus(configuration: try bus.configuration(), logger: logger)
        let db = try Database(url: database.postgresURL, logger: logger)
        let evaluations = MessageConsumer(
            EvaluationPending.self, bus: amqp, spec: ConsumerSpec(queue: "scheduler.evaluations", bindings: ["cluster.eval.*.pending"]),
            logger: logger
        ) { envelope, _ in
            logger.info(
                "Evaluation received",
                metadata: [
                    "eval_id": "\(envelope.data.evalID)", "job_id": "\(envelope.data.jobID)", "triggered_by": "\(envelope.data.triggeredBy)",
                ])
        }
        try await runtime.runService(
            bus: amqp, host: server.httpHost, port: server.configuredPort ?? 4647, readiness: [ReadinessCheck("postgres") { await db.ping() }],
            dependencies: [db.client], prepare: { try await db.migrate() },
            workers: [evaluations, OutboxRelay(database: db, bus: amqp, logger: logger)])
    }
}
