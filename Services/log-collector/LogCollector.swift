import ArgumentParser
import DroverControlPlane
import DroverMessaging
import DroverModel
import Logging

@main
struct LogCollector: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log-collector", abstract: "Collects node log messages and task output. Replicas share the work.")

    @OptionGroup var options: ControlPlaneOptions

    func run() async throws {
        let plane = try ControlPlane(name: "log-collector", options: options)
        let logger = plane.logger
        let logs = MessageConsumer(
            NodeLogMessage.self, bus: plane.bus, spec: ConsumerSpec(queue: "log-collector.logs", bindings: ["node.*.log.#"]), logger: logger
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
        try await plane.run(defaultPort: 4650, workers: [logs])
    }
}
