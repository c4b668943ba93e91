import ArgumentParser
import DroverControlPlane

@main
struct LogCollector: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log-collector",
        abstract: "Keeps node log messages as events and task output as it streams in, in PostgreSQL. Replicas share the work.")

    @OptionGroup var options: ControlPlaneOptions
    @OptionGroup var retention: RetentionOptions

    func run() async throws {
        let plane = try ControlPlane(name: "log-collector", options: options)
        try await plane.run(
            defaultPort: 4650,
            workers: plane.logCollectorWorkers(
                outputCap: retention.outputCap, outputRetention: retention.output, eventRetention: retention.events,
                eventStreamRetention: retention.eventStream))
    }
}
