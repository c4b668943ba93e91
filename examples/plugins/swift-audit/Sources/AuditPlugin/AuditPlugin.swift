import Dispatch
import DroverMessaging
import DroverModel
import Foundation
import Logging

/// An audit trail of the cluster: every event the plugin's queue is bound to, one JSON line
/// each on standard output, in the order the queue holds them.
///
/// Set up with `drover plugin create audit --bind 'event.job.#' --bind 'event.allocation.#'`;
/// run with the URL it printed in `DROVER_PLUGIN_URL` (and `DROVER_PLUGIN_NAME` if not `audit`).
/// Delivery is at least once: an event delivered again after a reconnect has the same `id`, and
/// is written once per run. SIGTERM or SIGINT stops it after the event in hand.
@main
struct AuditPlugin {
    /// One line of the trail.
    struct Line: Encodable {
        var id: String
        var time: Date
        var index: Int64
        var topic: String
        var type: String
        var key: String
        var namespace: String
        /// An allocation's client status, or a job's status, when the payload has one.
        var status: String?

        enum CodingKeys: String, CodingKey {
            case id = "ID", time = "Time", index = "Index", topic = "Topic", type = "Type", key = "Key", namespace = "Namespace"
            case status = "Status"
        }
    }

    static func main() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let url = environment["DROVER_PLUGIN_URL"], !url.isEmpty else {
            FileHandle.standardError.write(Data("DROVER_PLUGIN_URL is not set: give it the URL `drover plugin create` printed\n".utf8))
            exit(2)
        }
        let logger = Logger(label: "audit-plugin")
        let queue = try PluginQueue(url: url, plugin: environment["DROVER_PLUGIN_NAME"] ?? "audit", logger: logger)
        let stops = stopOnSignals(queue)
        defer { stops.forEach { $0.cancel() } }

        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var written: Set<String> = []
        for await delivered in queue.events() {
            let event = delivered.event
            if written.insert(delivered.id).inserted {
                let line = Line(
                    id: delivered.id, time: delivered.time, index: event.index, topic: event.topic, type: event.type, key: event.key,
                    namespace: event.namespace, status: status(of: event))
                FileHandle.standardOutput.write(try encoder.encode(line) + Data("\n".utf8))
            }
            delivered.ack()
        }
        logger.info("Stopped")
    }

    /// Stops reading `queue` on SIGTERM or SIGINT (``PluginQueue/stop()`` ends its events).
    nonisolated static func stopOnSignals(_ queue: PluginQueue) -> [any DispatchSourceSignal] {
        [SIGTERM, SIGINT].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { @Sendable in Task { await queue.stop() } }
            source.resume()
            return source
        }
    }

    /// The object's status field, if it has one: `ClientStatus` of an allocation, `Status` of a job.
    static func status(of event: StreamEvent) -> String? {
        guard case .object(let payload) = event.payload, case .object(let object)? = payload[event.topic] else { return nil }
        for field in ["ClientStatus", "Status"] {
            if case .string(let value)? = object[field] { return value }
        }
        return nil
    }
}
