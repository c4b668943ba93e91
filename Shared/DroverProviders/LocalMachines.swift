public import DroverModel
import DroverProcess
public import Foundation
public import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The `local` provider's machines: each a `node-agent` process on this machine, with a data
/// directory of its own under `root/<name>`, that joins the cluster with the enrollment token
/// the autoscaler made for it. Its pid is kept in `root/<name>/agent.pid`, so a restarted
/// provider can still take it away.
public final class LocalMachines: Sendable {
    public let root: URL
    public let agentBinary: String
    /// At most this many machines at once; beyond, a request fails "out of capacity".
    public let capacity: Int
    let logger: Logger
    private let running = Mutex<[String: Process]>([:])

    public init(root: URL, agentBinary: String, capacity: Int, logger: Logger) {
        self.root = root
        self.agentBinary = agentBinary
        self.capacity = capacity
        self.logger = logger
    }

    /// Starts the request's machines. - Returns: the replies to send: those started
    /// (`created`), and those that could not be (`failed`, with why).
    public func create(_ request: ProviderCreateRequest) -> [ProviderReply] {
        var started: [String] = []
        var failed: [String: String] = [:]
        for machine in request.machines {
            guard Self.isSafeName(machine.name), RoutingKey.isValidWord(machine.nodeID) else {
                failed[machine.name] = "'\(machine.name.prefix(64))' is not a machine name this provider accepts"
                continue
            }
            if isAlive(machine.name) {
                started.append(machine.name)  // a redelivered request: it runs already
                continue
            }
            guard liveCount() < capacity else {
                failed[machine.name] = "out of capacity: this machine runs \(capacity) agents at most"
                continue
            }
            do {
                try start(machine, of: request)
                started.append(machine.name)
            } catch {
                failed[machine.name] = "cannot start \(agentBinary): \(error)"
            }
        }
        var replies: [ProviderReply] = []
        if !started.isEmpty { replies.append(ProviderReply(requestID: request.requestID, array: request.array, status: .created, machines: started)) }
        for (reason, names) in Dictionary(grouping: failed.keys, by: { failed[$0] ?? "" }) {
            replies.append(
                ProviderReply(requestID: request.requestID, array: request.array, status: .failed, machines: names.sorted(), reason: reason))
        }
        return replies
    }

    private func start(_ machine: ProviderCreateRequest.MachineToMake, of request: ProviderCreateRequest) throws {
        let directory = root.appendingPathComponent(machine.name)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try? FileManager.default.removeItem(at: directory.appendingPathComponent("terminating"))
        let type = request.machineType
        var arguments = [
            "--data-dir", directory.path, "--node-id", machine.nodeID, "--node-name", machine.name, "--http-port", "0",
            "--node-class", type.nodeClass.isEmpty ? request.array : type.nodeClass, "--meta", "nodearray=\(request.array)",
            "--cpu-total-compute", String(type.cpu), "--memory-mb", String(type.memoryMB),
            "--attribute", "cpu.numcores=\(type.cores)",
        ]
        if type.diskMB > 0 { arguments += ["--disk-mb", String(type.diskMB)] }
        for (key, value) in type.attributes.sorted(by: { $0.key < $1.key }) { arguments += ["--attribute", "\(key)=\(value)"] }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: agentBinary)
        process.arguments = arguments
        // The token travels in the environment, not on the command line other users can read.
        var environment = ProcessInfo.processInfo.environment
        environment["DROVER_ENROLL_TOKEN"] = machine.enrollToken
        environment["DROVER_ADDR"] = request.gateway
        environment.removeValue(forKey: "DROVER_NODE_ID")
        environment.removeValue(forKey: "DROVER_HTTP_PORT")
        process.environment = environment
        let log = directory.appendingPathComponent("agent.out")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let output = try FileHandle(forWritingTo: log)
        output.seekToEndOfFile()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        try ProcessLaunch.run(process)
        try "\(process.processIdentifier)\n".write(to: directory.appendingPathComponent("agent.pid"), atomically: true, encoding: .utf8)
        running.withLock { $0[machine.name] = process }
        logger.info(
            "Machine started", metadata: ["machine": "\(machine.name)", "node_id": "\(machine.nodeID)", "pid": "\(process.processIdentifier)"])
    }

    /// Takes the request's machines away: marks each node as terminating (so that its
    /// run-on-shutdown scripts run), stops its agent (SIGTERM, SIGKILL after `grace`), and
    /// removes its data unless the request deallocates. - Returns: the reply to send.
    public func terminate(_ request: ProviderTerminateRequest, grace: Duration = .seconds(30)) async -> ProviderReply {
        var gone: [String] = []
        for machine in request.machines where Self.isSafeName(machine.name) {
            let directory = root.appendingPathComponent(machine.name)
            FileManager.default.createFile(atPath: directory.appendingPathComponent("terminating").path, contents: nil)
            if let pid = pid(of: machine.name) {
                kill(pid, SIGTERM)
                let deadline = ContinuousClock.now + grace
                while isRunning(machine.name, pid) && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(100)) }
                if isRunning(machine.name, pid) { kill(pid, SIGKILL) }
            }
            // Reaped outside the lock: waiting holds nothing else up.
            running.withLock { $0.removeValue(forKey: machine.name) }?.waitUntilExit()
            if request.deallocate {
                try? FileManager.default.removeItem(at: directory.appendingPathComponent("agent.pid"))
            } else {
                try? FileManager.default.removeItem(at: directory)
            }
            logger.info("Machine taken away", metadata: ["machine": "\(machine.name)", "deallocated": "\(request.deallocate)"])
            gone.append(machine.name)
        }
        return ProviderReply(requestID: request.requestID, array: request.array, status: .terminated, machines: gone)
    }

    /// Stops every agent this provider started (when it shuts down with `--stop-machines`).
    public func stopAll() async {
        let names = running.withLock { Array($0.keys) }
        for name in names {
            _ = await terminate(
                ProviderTerminateRequest(requestID: "shutdown", array: "", provider: "", machines: [.init(name: name, nodeID: nil)], deallocate: true)
            )
        }
    }

    func pid(of name: String) -> pid_t? {
        if let process = running.withLock({ $0[name] }) { return process.isRunning ? process.processIdentifier : nil }
        guard let text = try? String(contentsOf: root.appendingPathComponent(name).appendingPathComponent("agent.pid"), encoding: .utf8),
            let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1, kill(pid, 0) == 0
        else { return nil }
        return pid
    }

    /// Whether the machine's agent still runs: asked of its `Process` when this provider started
    /// it (which reaps it), of the system otherwise (one a restarted provider found by its pid file).
    func isRunning(_ name: String, _ pid: pid_t) -> Bool {
        if let process = running.withLock({ $0[name] }) { return process.isRunning }
        return kill(pid, 0) == 0
    }

    func isAlive(_ name: String) -> Bool { pid(of: name) != nil }

    func liveCount() -> Int { running.withLock { $0.values.filter(\.isRunning).count } }

    /// A machine name that is safe as a directory name: `<array>-<n>`'s letters, digits, `_`, `-`.
    static func isSafeName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 128 && name.first != "-" && name != "." && name != ".."
            && name.unicodeScalars.allSatisfy {
                ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == "-"
            }
    }
}
