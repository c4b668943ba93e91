import DroverMessaging
import DroverModel
import DroverRuntime
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Runs an executable to completion, or kills it after `limit`; never blocks a thread of the
/// concurrency pool. - Returns: its exit code (nil when it could not start or was killed) and
/// the end of what it printed.
func runScript(_ path: String, limit: Duration, logger: Logger) async -> (exitCode: Int32?, output: String) {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("drover-script-\(UUID().uuidString)")
    FileManager.default.createFile(atPath: file.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: file) }
    guard let output = try? FileHandle(forWritingTo: file) else { return (nil, "") }
    defer { try? output.close() }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.standardInput = FileHandle.nullDevice
    process.standardOutput = output
    process.standardError = output
    let (exited, exit) = AsyncStream.makeStream(of: Int32.self, bufferingPolicy: .bufferingNewest(1))
    process.terminationHandler = {
        exit.yield($0.terminationStatus)
        exit.finish()
    }
    do {
        try process.run()
    } catch {
        return (nil, "cannot start \(path): \(error)")
    }
    let killed = KillFlag()
    let killer = Task {
        try await Task.sleep(for: limit)
        killed.value.store(true, ordering: .relaxed)
        logger.warning("Script ran out of time; killed", metadata: ["script": "\(path)", "limit": "\(limit)"])
        kill(-process.processIdentifier, SIGKILL)
        kill(process.processIdentifier, SIGKILL)
    }
    var code: Int32?
    for await status in exited { code = status }
    killer.cancel()
    let printed = String(decoding: ((try? Data(contentsOf: file)) ?? Data()).suffix(2048), as: UTF8.self)
    return (killed.value.load(ordering: .relaxed) ? nil : code, printed)
}

private final class KillFlag: Sendable {
    let value = Atomic<Bool>(false)
}

/// Runs the executables in `healthcheck.d` every interval (and once at start), as CycleCloud's
/// HealthCheck does, and reports the outcome on `node.<id>.health`: exit 254 is unhealthy, 0
/// healthy; any other exit is logged as the script's own error.
struct HealthChecks: Service {
    let bus: any MessageBus
    let nodeID: String
    let directory: URL
    let interval: Duration
    let logger: Logger

    func run() async throws {
        await repeatUntilShutdown(every: interval, logger: logger, failure: "HealthCheck report not sent") { try await checkOnce() }
    }

    func checkOnce() async throws {
        let scripts = ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).sorted()
            .map { directory.appendingPathComponent($0).path }
            .filter { FileManager.default.isExecutableFile(atPath: $0) && !$0.hasSuffix("~") }
        guard !scripts.isEmpty else { return }
        var checks: [NodeHealthReport.Check] = []
        for script in scripts {
            let (code, output) = await runScript(script, limit: min(interval, .seconds(300)), logger: logger)
            let exitCode = code ?? -1
            if NodeHealthReport.verdict(exitCode: exitCode) == nil {
                logger.warning(
                    "HealthCheck script failed itself", metadata: ["script": "\(script)", "exit_code": "\(exitCode)", "output": "\(output)"])
            }
            checks.append(NodeHealthReport.Check(script: script, exitCode: exitCode, output: output))
        }
        let healthy = !checks.contains { NodeHealthReport.verdict(exitCode: $0.exitCode) == false }
        if !healthy { logger.error("HealthCheck: node unhealthy", metadata: ["scripts": "\(checks.filter { $0.exitCode == 254 }.map(\.script))"]) }
        try await bus.publish(NodeHealthReport(nodeID: nodeID, healthy: healthy, checks: checks), routingKey: RoutingKey.node(nodeID, "health"))
    }
}

/// The scripts `drover run-on-shutdown` registered, kept in `<data-dir>/run-on-shutdown.json`
/// and run in order when the agent stops for good (SIGTERM or SIGINT).
struct ShutdownScripts: Service {
    let file: URL
    let logger: Logger

    func registered() -> [String] {
        guard let data = try? Data(contentsOf: file) else { return [] }
        return (try? JSONDecoder().decode([String].self, from: data)) ?? []
    }

    /// Adds `script`, once. - Returns: the scripts, in the order they run.
    func register(_ script: String) throws -> [String] {
        var scripts = registered()
        if !scripts.contains(script) { scripts.append(script) }
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try JSONEncoder().encode(scripts).write(to: file, options: .atomic)
        return scripts
    }

    func run() async throws {
        try? await gracefulShutdown()
        for script in registered() {
            let (code, output) = await runScript(script, limit: .seconds(60), logger: logger)
            logger.info(
                "Ran on shutdown", metadata: ["script": "\(script)", "exit_code": "\(code.map(String.init) ?? "killed")", "output": "\(output)"])
        }
    }
}

/// The users the cluster manages on this node: the newest list the control plane sent, kept in
/// `<data-dir>/users.json`, narrowed to this node's class.
struct NodeUsers: Sendable {
    let file: URL
    let nodeClass: String

    /// Keeps `list` unless an older one than kept (messages may arrive out of order).
    func update(_ list: ClusterUsers) throws {
        if let kept = stored(), kept.index >= list.index { return }
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try MessageCoding.encoder().encode(list).write(to: file, options: .atomic)
    }

    func current() -> [ClusterUser] {
        (stored()?.users ?? []).filter { $0.applies(toClass: nodeClass) }
    }

    private func stored() -> ClusterUsers? {
        guard let data = try? Data(contentsOf: file) else { return nil }
        return try? MessageCoding.decoder().decode(ClusterUsers.self, from: data)
    }
}
