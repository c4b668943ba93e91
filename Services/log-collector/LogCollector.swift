import ArgumentParser
import DroverControlPlane
import DroverMessaging
import DroverModel
import DroverRuntime
import DroverStorage
import Foundation
import Logging
import ServiceLifecycle

@main
struct LogCollector: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log-collector",
        abstract: "Keeps node log messages as events and task output as it streams in, in PostgreSQL. Replicas share the work.")

    @OptionGroup var options: ControlPlaneOptions

    @Option(help: "Output kept per task and stream, in MB; beyond it the oldest is dropped (env DROVER_OUTPUT_CAP_MB).")
    var outputCapMB: Int = ProcessInfo.processInfo.environment["DROVER_OUTPUT_CAP_MB"].flatMap(Int.init) ?? 100

    @Option(help: "How long task output is kept, as 168h (env DROVER_OUTPUT_RETENTION).")
    var outputRetention: String = ProcessInfo.processInfo.environment["DROVER_OUTPUT_RETENTION"] ?? "168h"

    @Option(help: "How long events are kept, as 720h (env DROVER_EVENT_RETENTION).")
    var eventRetention: String = ProcessInfo.processInfo.environment["DROVER_EVENT_RETENTION"] ?? "720h"

    func validate() throws {
        guard outputCapMB > 0 else { throw ValidationError("--output-cap-mb: must be more than 0") }
        for (name, value) in [("--output-retention", outputRetention), ("--event-retention", eventRetention)] where GoDuration.parse(value) == nil {
            throw ValidationError("\(name): '\(value)' is not a duration such as 168h")
        }
    }

    func run() async throws {
        let plane = try ControlPlane(name: "log-collector", options: options)
        let (logger, database, bus) = (plane.logger, plane.database, plane.bus)
        let cap = Int64(outputCapMB) << 20
        let logs = MessageConsumer(
            NodeLogMessage.self, bus: bus, spec: ConsumerSpec(queue: "log-collector.logs", bindings: ["node.*.log.#"]), logger: logger
        ) { envelope, delivery in
            let message = envelope.data
            try delivery.checkSentBy(node: message.nodeID)
            let event = ClusterEvent(
                time: envelope.time, nodeID: message.nodeID, type: ClusterEvent.Kind.nodeLog, level: message.level, priority: message.priority,
                message: message.message)
            try await database.transaction { connection in
                try await Events.record(event, messageID: envelope.id, on: connection, logger: logger)
            }
        }
        let output = MessageConsumer(
            TaskOutputChunk.self, bus: bus, spec: ConsumerSpec(queue: "log-collector.output", bindings: ["node.*.output.#"], prefetch: 64),
            logger: logger, concurrency: 8
        ) { envelope, delivery in
            try delivery.checkSentBy(node: envelope.data.nodeID)
            try await TaskOutput.append(envelope.data, cap: cap, database: database)
        }
        let retention = Retention(
            database: database, output: GoDuration.parse(outputRetention) ?? .seconds(604_800),
            events: GoDuration.parse(eventRetention) ?? .seconds(2_592_000), logger: logger)
        try await plane.run(defaultPort: 4650, workers: [logs, output, retention])
    }
}

/// Drops task output and events past their retention, once a minute.
struct Retention: Service {
    let database: Database
    let output: Duration
    let events: Duration
    let logger: Logger

    func run() async throws {
        await repeatUntilShutdown(every: .seconds(60), logger: logger, failure: "Retention failed") {
            let chunks = try await TaskOutput.prune(olderThan: output, database: database)
            let pruned = try await Events.prune(olderThan: events, database: database)
            if chunks + pruned > 0 { logger.info("Retention applied", metadata: ["output_chunks": "\(chunks)", "events": "\(pruned)"]) }
        }
    }
}
