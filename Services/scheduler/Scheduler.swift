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

    func run() async throws {
        let plane = try ControlPlane(name: "scheduler", options: options)
        let logger = plane.logger
        let evaluations = MessageConsumer(
            EvaluationPending.self, bus: plane.bus,
            spec: ConsumerSpec(queue: "scheduler.evaluations", bindings: ["cluster.eval.*.pending"]), logger: logger
        ) { envelope, _ in
            logger.info(
                "Evaluation received",
                metadata: [
                    "eval_id": "\(envelope.data.evalID)", "job_id": "\(envelope.data.jobID)", "triggered_by": "\(envelope.data.triggeredBy)",
                ])
        }
        try await plane.run(
            defaultPort: 4647, workers: [evaluations, OutboxRelay(database: plane.database, bus: plane.bus, logger: logger)])
    }
}
