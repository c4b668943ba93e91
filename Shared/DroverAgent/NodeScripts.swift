import DroverMessaging
import DroverModel
import DroverProcess
import DroverRuntime
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Runs an executable to completion, or kills it after `limit`; never blocks a thread of the
/// concurrency pool. A file that is not executable runs with `/bin/sh`.
/// - Parameters:
///   - environment: what it gets besides the agent's own environment.
///   - directory: where it runs; the agent's working directory when nil.
/// - Returns: its exit code (nil when it could not start or was killed) and the end of what it
///   printed.
func runScript(
    _ path: String, limit: Duration, environment: [String: String] = [:], directory: URL? = nil, logger: Logger
) async -> (exitCode: Int32?, output: String) {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("drover-script-\(UUID().uuidString)")
    FileManager.default.createFile(atPath: file.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: file) }
    guard let output = try? FileHandle(forWritingTo: file) else { return (nil, "") }
    defer { try? output.close() }
    let process = Process()
    if FileManager.default.isExecutableFile(atPath: path) {
        process.executableURL = URL(fileURLWithPath: path)
    } else {
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = [path]
    }
    if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    if let directory { process.currentDirectoryURL = directory }
    process.standardInput = FileHandle.nullDevice
    process.standardOutput = output
    process.standardError = output
    let (exited, exit) = AsyncStream.makeStream(of: Int32.self, bufferingPolicy: .bufferingNewest(1))
    process.terminationHandler = {
        exit.yield($0.terminationStatus)
        exit.finish()
    }
    do {
        try ProcessLaunch.run(process)
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
/// and run in order when the node is terminated, as Jetpack's are: when the agent stops while
/// the node terminates (``NodeTermination``), not on every restart of the agent. A script is
/// taken, and later run, only while it is owned by root or the agent's user and nobody else may
/// write it.
struct ShutdownScripts: Service {
    let file: URL
    let termination: NodeTermination
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

    /// Why `script` may not run as the agent, or nil when it may: it must be owned by root or
    /// the agent's user, and neither its group nor others may write it.
    static func untrusted(_ script: String) -> String? {
        var status = stat()
        guard stat(script, &status) == 0 else { return "'\(script)' cannot be read: \(String(cString: strerror(errno)))" }
        guard status.st_uid == 0 || status.st_uid == geteuid() else {
            return "'\(script)' is owned by uid \(status.st_uid); it must be owned by root or by the agent's user (uid \(geteuid()))"
        }
        guard status.st_mode & 0o022 == 0 else {
            return "'\(script)' may be written by its group or others (mode \(String(status.st_mode & 0o777, radix: 8))); chmod go-w it"
        }
        return nil
    }

    func run() async throws {
        try? await gracefulShutdown()
        let scripts = registered()
        guard !scripts.isEmpty else { return }
        guard termination.isTerminating() else {
            logger.info(
                "Agent stopping while the node is not terminating; run-on-shutdown scripts kept for its termination",
                metadata: ["scripts": "\(scripts.count)"])
            return
        }
        for script in scripts {
            if let problem = Self.untrusted(script) {
                logger.error("Run-on-shutdown script skipped", metadata: ["script": "\(script)", "reason": "\(problem)"])
                continue
            }
            let (code, output) = await runScript(script, limit: .seconds(60), logger: logger)
            logger.info(
                "Ran on shutdown", metadata: ["script": "\(script)", "exit_code": "\(code.map(String.init) ?? "killed")", "output": "\(output)"])
        }
    }
}

/// Whether the node is being terminated, as opposed to its agent being restarted: the machine is
/// shutting down (systemd says `stopping`), or whoever terminates the node without shutting the
/// machine down (a provider that runs agents as processes, say) has created
/// `<data-dir>/terminating` before stopping the agent.
struct NodeTermination: Sendable {
    let dataDirectory: URL

    var marker: URL { dataDirectory.appendingPathComponent("terminating") }

    func isTerminating() -> Bool {
        FileManager.default.fileExists(atPath: marker.path) || Self.systemStopping()
    }

    /// `systemctl is-system-running` answers `stopping` while the machine shuts down.
    static func systemStopping() -> Bool {
        guard FileManager.default.isExecutableFile(atPath: "/bin/systemctl") else { return false }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/systemctl")
        process.arguments = ["is-system-running"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? ProcessLaunch.run(process)) != nil else { return false }
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) == "stopping"
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
