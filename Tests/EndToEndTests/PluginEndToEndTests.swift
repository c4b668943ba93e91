import DroverProcess
import DroverTestSupport
import Foundation
import Testing

/// Plugins in Swift and the CLI's view of the event stream, against a whole cluster.
@Suite(.serialized, .enabled(if: TestEnvironment.runsEndToEnd), .timeLimit(.minutes(5)))
struct PluginEndToEndTests {
    /// The Swift plugin example (`examples/plugins/swift-audit`, on `DroverMessaging`): a job's
    /// registration and its allocation's whole life arrive in order, the last status the one the
    /// HTTP API reports; a message on its queue that is not an event goes to its dead-letter queue.
    @Test func theSwiftAuditPluginFollowsAJobAndRefusesWhatIsNotAnEvent() async throws {
        try await Cluster.with { cluster in
            try await cluster.addAgent("audited")
            let created = try await cluster.cli("plugin create audit --bind 'event.job.#' --bind 'event.allocation.#' -json")
            #expect(created.status == 0, "\(created.output)")
            let plugin = try #require(try JSONSerialization.jsonObject(with: Data(created.output.utf8)) as? [String: Any], "\(created.output)")
            let url = try #require(plugin["URL"] as? String)
            #expect(plugin["Queue"] as? String == "plugin.audit")

            let output = cluster.logs.appendingPathComponent("audit-plugin.out")
            let log = cluster.logs.appendingPathComponent("audit-plugin.log")
            let running = try BackgroundProcess(
                "audit-plugin", environment: ["DROVER_PLUGIN_URL": url, "DROVER_PLUGIN_NAME": "audit"], output: output, errors: log)

            let file = try cluster.writeJob("audited", job("audited", command: "echo audited"))
            #expect(try await cluster.cli("job run \(file)").status == 0)
            let allocations = try await cluster.allocations("audited")
            let allocation = try #require(allocations.first?["ID"] as? String)
            let reported = try #require(allocations.first?["ClientStatus"] as? String)
            #expect(reported == "complete")

            @Sendable func lines() -> [[String: Any]] {
                ((try? String(contentsOf: output, encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
                    try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
                }
            }
            try await eventually("the allocation's last state in the trail", within: .seconds(30)) {
                lines().contains { $0["Key"] as? String == allocation && $0["Status"] as? String == reported }
            }
            let trail = lines()
            #expect(
                trail.contains { $0["Topic"] as? String == "Job" && $0["Type"] as? String == "JobRegistered" && $0["Key"] as? String == "audited" })
            let ofAllocation = trail.filter { $0["Key"] as? String == allocation }
            let statuses = ofAllocation.compactMap { $0["Status"] as? String }
            #expect(statuses.first == "pending" && statuses.last == "complete", "\(statuses)")
            let indexes = ofAllocation.compactMap { ($0["Index"] as? NSNumber)?.int64Value }
            #expect(indexes == indexes.sorted(), "in the order of the changes: \(indexes)")
            #expect(Set(trail.compactMap { $0["ID"] as? String }).count == trail.count, "each event written once")
            #expect(!trail.contains { $0["Topic"] as? String == "Node" }, "only what the plugin is bound to")

            // Something that is not an event, put on its queue by someone who may: refused, kept aside.
            let management = try #require(TestEnvironment.amqpManagementURL)
            let published = try await runShellWithStatus(
                "curl -s -X POST '\(management)/api/exchanges/\(cluster.virtualHost.name)/amq.default/publish' -H 'content-type: application/json' "
                    + #"-d '{"properties":{},"routing_key":"plugin.audit","payload":"not an event","payload_encoding":"string"}'"#)
            #expect(published.output.contains(#""routed":true"#), "\(published.output)")
            try await eventually("the refusal logged") { (try? String(contentsOf: log, encoding: .utf8))?.contains("Message refused") == true }
            try await eventually("the message in the plugin's dead-letter queue") {
                let answer = try? await runShellWithStatus(
                    "curl -s -X POST '\(management)/api/queues/\(cluster.virtualHost.name)/plugin.audit.dead-letter/get' -H 'content-type: application/json' "
                        + #"-d '{"count":1,"ackmode":"ack_requeue_true","encoding":"auto"}'"#)
                return answer?.output.contains("not an event") == true
            }

            #expect(try await running.stop(SIGTERM) == 0, "\((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
            #expect(try await cluster.cli("plugin delete audit").status == 0)
        }
    }

    /// `drover events -f` follows the stream: a job registered while it runs is printed (with
    /// `-json`, in Nomad's frames), and a topic it was not asked for is not.
    @Test func theCLIFollowsTheEventStream() async throws {
        try await Cluster.with { cluster in
            let output = cluster.logs.appendingPathComponent("events-follow.out")
            let follower = try BackgroundProcess(
                "drover", arguments: ["events", "-f", "-topic", "Job", "-json"],
                environment: ["DROVER_ADDR": "http://127.0.0.1:\(cluster.api.port)", "DROVER_TOKEN": cluster.api.token ?? ""], output: output,
                errors: output)

            try await cluster.addAgent("followed")
            let file = try cluster.writeJob("followed", job("followed", command: "true"))
            #expect(try await cluster.cli("job run \(file)").status == 0)
            try await eventually("the registration printed", within: .seconds(30)) {
                ((try? String(contentsOf: output, encoding: .utf8)) ?? "").contains("JobRegistered")
            }
            let text = try String(contentsOf: output, encoding: .utf8)
            // With -json, each frame as the server sent it: {"Index": N, "Events": [...]}.
            let frames = text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            let events = frames.flatMap { $0["Events"] as? [[String: Any]] ?? [] }
            #expect(events.contains { $0["Type"] as? String == "JobRegistered" && $0["Key"] as? String == "followed" }, "\(text)")
            #expect(events.allSatisfy { $0["Topic"] as? String == "Job" }, "only the topic asked for: \(text)")
            _ = try await follower.stop(SIGINT)
        }
    }
}

/// An executable of the build run in the background, its output in files; stopped (and waited
/// for without holding a thread) by ``stop(_:)``, or interrupted when it goes away.
final class BackgroundProcess: Sendable {
    private let process: Process
    private let exited: AsyncStream<Int32>

    init(_ executable: String, arguments: [String] = [], environment: [String: String], output: URL, errors: URL) throws {
        for file in Set([output, errors]) { _ = FileManager.default.createFile(atPath: file.path, contents: nil) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(TestEnvironment.binDirectory)).appendingPathComponent(executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = try FileHandle(forWritingTo: output)
        process.standardError = errors == output ? process.standardOutput : try FileHandle(forWritingTo: errors)
        let (exited, exit) = AsyncStream.makeStream(of: Int32.self, bufferingPolicy: .bufferingNewest(1))
        process.terminationHandler = { finished in
            exit.yield(finished.terminationStatus)
            exit.finish()
        }
        try ProcessLaunch.run(process)
        self.process = process
        self.exited = exited
    }

    /// Sends `signal` and returns the exit status, within 30 s.
    func stop(_ signal: Int32) async throws -> Int32 {
        kill(process.processIdentifier, signal)
        return try await withTimeout(.seconds(30), "\(process.executableURL?.lastPathComponent ?? "a process") stopping") { [exited] in
            for await status in exited { return status }
            throw TestFailure("no exit status")
        }
    }

    deinit { if process.isRunning { process.interrupt() } }
}
