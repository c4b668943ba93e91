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
        // the database keeps two from planning one job at once. The evaluations that arrive while
        // a batch is applied make the next batch, planned and written in one transaction.
        let evaluations = MessageConsumer(
            EvaluationPending.self, bus: plane.bus,
            spec: ConsumerSpec(queue: "scheduler.evaluations", bindings: ["cluster.eval.*.pending"], prefetch: 500), logger: plane.logger,
            batchLimit: 500
        ) { batch in
            _ = try await processor.process(evalIDs: batch.map(\.envelope.data.evalID))
            return [:]
        }
        try await plane.run(
            defaultPort: 4647, workers: [evaluations, OutboxRelay(database: plane.database, bus: plane.bus, logger: plane.logger)])
    }
}
