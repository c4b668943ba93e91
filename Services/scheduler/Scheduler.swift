import ArgumentParser
import DroverControlPlane
import DroverMessaging
import DroverModel
import DroverStorage

@main
struct Scheduler: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scheduler", abstract: "Turns pending evaluations into placement plans. Replicas share the work.")

    @OptionGroup var options: ControlPlaneOptions
    @OptionGroup var scheduling: SchedulingOptions

    func run() async throws {
        let plane = try ControlPlane(name: "scheduler", options: options)
        let processor = EvaluationProcessor(store: ClusterStore(database: plane.database), configuration: scheduling.configuration)
        // Every replica reads the same queue: RabbitMQ hands each evaluation to one of them, and
        // the database keeps two from planning one job at once.
        let evaluations = MessageConsumer(
            EvaluationPending.self, bus: plane.bus,
            spec: ConsumerSpec(queue: "scheduler.evaluations", bindings: ["cluster.eval.*.pending"]), logger: plane.logger, concurrency: 8
        ) { envelope, _ in
            _ = try await processor.process(evalID: envelope.data.evalID)
        }
        try await plane.run(
            defaultPort: 4647, workers: [evaluations, OutboxRelay(database: plane.database, bus: plane.bus, logger: plane.logger)])
    }
}
