import DroverProcess
import DroverTestSupport
import Foundation
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// One running executable of the build, its output kept in a file.
final class RunningService: Sendable {
    let name: String
    let log: URL
    private let process: Process
    private let exited: AsyncStream<Int32>
    /// The exit status, once it has been awaited.
    private let status = Locked<Int32?>(nil)
    private let listeningPort = Locked<Int?>(nil)

    /// The port it listens on: an ephemeral one, chosen by the system, read from its log.
    var port: Int { listeningPort.value ?? 0 }

    /// Starts each of `executables` (named after itself) at once, and returns once all listen.
    static func startAll(_ executables: [String], environment: [String: String], logDirectory: URL) async throws -> [RunningService] {
        try await withThrowingTaskGroup(of: (Int, RunningService).self) { group in
            for (position, executable) in executables.enumerated() {
                group.addTask {
                    (position, try await start(executable, name: executable, arguments: [], environment: environment, logDirectory: logDirectory))
                }
            }
            var started: [(Int, RunningService)] = []
            for try await entry in group { started.append(entry) }
            return started.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }

    /// Starts `executable` on an ephemeral HTTP port and returns once it listens.
    static func start(_ executable: String, name: String, arguments: [String], environment: [String: String], logDirectory: URL) async throws
        -> RunningService
    {
        let service = try RunningService(executable, name: name, arguments: arguments, environment: environment, logDirectory: logDirectory)
        do {
            try await service.waitUntilListening()
        } catch {
            _ = try? await service.terminate()
            throw error
        }
        return service
    }

    private init(_ executable: String, name: String, arguments: [String], environment: [String: String], logDirectory: URL) throws {
        self.name = name
        self.log = logDirectory.appendingPathComponent("\(name).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(TestEnvironment.binDirectory)).appendingPathComponent(executable)
        process.arguments = ["--http-port", "0"] + arguments
        process.standardInput = FileHandle.nullDevice
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let output = try FileHandle(forWritingTo: log)
        process.standardOutput = output
        process.standardError = output
        self.process = process
        let (exited, exit) = AsyncStream.makeStream(of: Int32.self, bufferingPolicy: .bufferingNewest(1))
        self.exited = exited
        process.terminationHandler = { finished in
            exit.yield(finished.terminationStatus)
            exit.finish()
        }
        try ProcessLaunch.run(process)
    }

    var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    /// Waits for the line every executable logs once its HTTP port listens
    /// (`address=[IPv4]127.0.0.1/127.0.0.1:PORT … HTTP listening`), and takes the port from it.
    private func waitUntilListening() async throws {
        try await eventually("\(name) listening", within: .seconds(60)) { [self] in
            guard let line = output.split(separator: "\n").first(where: { $0.contains("HTTP listening") }),
                let address = line.split(separator: " ").first(where: { $0.hasPrefix("address=") }),
                let port = address.split(separator: ":").last.flatMap({ Int($0) })
            else { return hasExited }
            listeningPort.withLock { $0 = port }
            return true
        }
        guard listeningPort.value != nil else { throw TestFailure("\(name) exited before it listened: \(output)") }
    }

    /// The ACL token every request sends, once ``bootstrap()`` has made it.
    var token: String? { bootstrapToken.value }
    private let bootstrapToken = Locked<String?>(nil)

    /// Bootstraps the gateway's ACLs; every request afterwards sends the management token.
    func bootstrap() async throws {
        let (status, body) = try await request("POST", "/v1/acl/bootstrap")
        let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        guard status == 200, let secret = object?["SecretID"] as? String else { throw TestFailure("ACL bootstrap: HTTP \(status) \(body)") }
        bootstrapToken.withLock { $0 = secret }
    }

    func get(_ path: String) async throws -> (status: Int, body: String) {
        try await request("GET", path)
    }

    /// What an agent needs to join through this gateway as node `nodeID`: a fresh enrollment
    /// token and the gateway's address.
    func joinEnvironment(for nodeID: String) async throws -> [String: String] {
        let (status, body) = try await request("POST", "/v1/enroll-tokens", body: #"{"NodeID": "\#(nodeID)"}"#)
        let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        guard status == 200, let secret = object?["Secret"] as? String else { throw TestFailure("enroll token: HTTP \(status) \(body)") }
        return ["DROVER_ENROLL_TOKEN": secret, "DROVER_ADDR": "http://127.0.0.1:\(port)"]
    }

    private func urlRequest(_ path: String) -> URLRequest {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        if let token { request.setValue(token, forHTTPHeaderField: "X-Nomad-Token") }
        return request
    }

    /// The answer's status and body as bytes.
    func bytes(_ path: String) async throws -> (status: Int, body: Data) {
        let (data, response) = try await URLSession.shared.data(for: urlRequest(path))
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
    }

    /// The answer's status, body and `X-Nomad-Index`, for blocking queries.
    func getWithIndex(_ path: String) async throws -> (status: Int, body: String, index: Int) {
        let (data, response) = try await URLSession.shared.data(for: urlRequest(path))
        let http = response as? HTTPURLResponse
        return (http?.statusCode ?? 0, String(decoding: data, as: UTF8.self), Int(http?.value(forHTTPHeaderField: "X-Nomad-Index") ?? "") ?? 0)
    }

    /// One header of the answer.
    func header(_ name: String, of path: String) async throws -> String? {
        let (_, response) = try await URLSession.shared.data(for: urlRequest(path))
        return (response as? HTTPURLResponse)?.value(forHTTPHeaderField: name)
    }

    func request(_ method: String, _ path: String, body: String? = nil) async throws -> (status: Int, body: String) {
        var request = urlRequest(path)
        request.httpMethod = method
        request.httpBody = body.map { Data($0.utf8) }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    /// Whether the process has exited and its status been awaited (after ``kill()``, say).
    var hasExited: Bool { status.value != nil || !process.isRunning }

    /// Kills the process outright (SIGKILL), as a crash or a lost machine would, and waits until it is gone.
    func kill() async throws {
        Foundation.kill(process.processIdentifier, SIGKILL)
        _ = try await exitStatus("exiting after SIGKILL")
    }

    /// Sends SIGTERM and waits for the exit status; a process that has already exited answers at
    /// once. One still running after 30 s is killed, and the test fails.
    func terminate() async throws -> Int32 {
        if let status = status.value { return status }
        process.terminate()
        do {
            return try await exitStatus("stopping after SIGTERM")
        } catch {
            let stacks = await threadStacks(of: process.processIdentifier)
            Foundation.kill(process.processIdentifier, SIGKILL)
            _ = try? await exitStatus("exiting after SIGKILL")
            throw TestFailure("\(error); the end of its log:\n\(output.suffix(3000))\nits threads:\n\(stacks)")
        }
    }

    private func exitStatus(_ what: String) async throws -> Int32 {
        try await withTimeout(.seconds(30), "\(name) \(what)") { [exited, status] in
            for await code in exited {
                status.withLock { $0 = code }
                return code
            }
            throw TestFailure("no exit status")
        }
    }

    deinit { if process.isRunning { process.interrupt() } }
}

/// Polls `condition` every 100 ms until it holds, failing after `limit`.
func eventually(_ what: String, within limit: Duration = .seconds(60), _ condition: @escaping @Sendable () async -> Bool) async throws {
    try await withTimeout(limit, what) {
        while await !condition() { try await Task.sleep(for: .milliseconds(100)) }
    }
}

/// A fresh database and RabbitMQ virtual host, for services started one by one.
struct Sandbox {
    let virtualHost: TestVirtualHost
    let database: String
    let url: String
    let logs: URL

    static func create() async throws -> Sandbox {
        let postgres = try #require(TestEnvironment.postgresURL)
        let virtualHost = try await TestVirtualHost.create("drover-e2e")
        let database = TestEnvironment.uniqueName("drover_e2e").replacingOccurrences(of: "-", with: "_")
        try await runShell("psql '\(postgres)' -v ON_ERROR_STOP=1 -qc 'CREATE DATABASE \(database)'")
        var components = try #require(URLComponents(string: postgres))
        components.path = "/\(database)"
        let logs = FileManager.default.temporaryDirectory.appendingPathComponent(database)
        try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
        return Sandbox(virtualHost: virtualHost, database: database, url: try #require(components.string), logs: logs)
    }

    func remove() async throws {
        let postgres = try #require(TestEnvironment.postgresURL)
        try await dropDatabase(database, at: postgres)
        try await virtualHost.delete()
    }
}

@Suite(.serialized, .enabled(if: TestEnvironment.runsEndToEnd), .timeLimit(.minutes(5)))
struct ServicesEndToEndTests {
    @Test func allServicesStartTogetherOnAFreshDatabaseAndAHeartbeatReachesPostgres() async throws {
        let sandbox = try await Sandbox.create()
        let (url, logs, virtualHost) = (sandbox.url, sandbox.logs, sandbox.virtualHost)
        let nodeID = TestEnvironment.uniqueName("e2e-node")
        let environment = [
            "DROVER_AMQP_URL": virtualHost.amqpURL, "DROVER_POSTGRES_URL": url, "DROVER_AMQP_MANAGEMENT_URL": TestEnvironment.amqpManagementURL ?? "",
            "DROVER_HEARTBEAT_INTERVAL": "0.2", "DROVER_HEARTBEAT_MIN_TTL": "0.2",
            "DROVER_NODE_DATA_DIR": logs.appendingPathComponent("agent").path,
        ]

        // Every service migrates the same empty database at the same moment.
        let services = try await RunningService.startAll(
            ["api-gateway", "scheduler", "health-monitor", "autoscaler", "log-collector"], environment: environment, logDirectory: logs)
        // The node joins with an enrollment token, as every node does.
        try await eventually("api-gateway ready") { (try? await services[0].get("/readyz"))?.status == 200 }
        try await services[0].bootstrap()
        let agent = try await RunningService.start(
            "node-agent", name: "node-agent", arguments: ["--node-id", nodeID],
            environment: environment.merging(try await services[0].joinEnvironment(for: nodeID)) { $1 }, logDirectory: logs)
        let all = services + [agent]

        for service in all {
            try await eventually("\(service.name) ready") { (try? await service.get("/readyz"))?.status == 200 }
            #expect(try await service.get("/healthz").status == 200)
            #expect(!service.output.contains("Start-up step failed"), "\(service.name): \(service.output)")
        }
        let migrations = try await runShell("psql '\(url)' -Atc 'SELECT count(*) FROM drover_schema_migrations'")
        #expect(migrations.trimmingCharacters(in: .whitespacesAndNewlines) == "21", "every migration this build knows")

        // agent ─heartbeat→ RabbitMQ ─→ health-monitor ─→ PostgreSQL
        try await eventually("the agent's heartbeat in PostgreSQL") {
            let row = try? await runShell("psql '\(url)' -Atc \"SELECT sequence FROM drover_node_heartbeats WHERE node_id = '\(nodeID)'\"")
            return Int(row?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0 >= 2
        }
        let metrics = try await services[2].get("/metrics")
        #expect(metrics.body.contains(#"drover_amqp_delivered_total{queue="health-monitor.heartbeats"}"#))
        let ready = try await agent.get("/readyz")
        #expect(ready.body == #"{"service":"node-agent","ready":true,"checks":{"amqp":true,"startup":true}}"#)

        for service in all.reversed() {
            let status = try await service.terminate()
            #expect(status == 0, "\(service.name) exited \(status) after SIGTERM: \(service.output.suffix(2000))")
        }
        try await sandbox.remove()
    }

    /// On a fresh broker, an agent that starts before health-monitor registers into the void:
    /// no queue is bound yet. It registers again quickly until it is answered, so the node is
    /// ready within seconds of health-monitor starting, not a registration interval later.
    @Test func anAgentThatStartsBeforeHealthMonitorIsRegisteredOnceItRuns() async throws {
        let sandbox = try await Sandbox.create()
        let (url, logs, virtualHost) = (sandbox.url, sandbox.logs, sandbox.virtualHost)
        let nodeID = TestEnvironment.uniqueName("e2e-node")
        let environment = [
            "DROVER_AMQP_URL": virtualHost.amqpURL, "DROVER_POSTGRES_URL": url, "DROVER_AMQP_MANAGEMENT_URL": TestEnvironment.amqpManagementURL ?? "",
            "DROVER_REGISTRATION_INTERVAL": "120",
            "DROVER_NODE_DATA_DIR": logs.appendingPathComponent("agent").path,
        ]
        // The gateway declares the exchanges the agent needs; nothing reads registrations yet.
        let gateway = try await RunningService.start("api-gateway", name: "api-gateway", arguments: [], environment: environment, logDirectory: logs)
        var all = [gateway]
        do {
            try await eventually("api-gateway ready") { (try? await gateway.get("/readyz"))?.status == 200 }
            try await gateway.bootstrap()
            let agent = try await RunningService.start(
                "node-agent", name: "node-agent", arguments: ["--node-id", nodeID],
                environment: environment.merging(try await gateway.joinEnvironment(for: nodeID)) { $1 }, logDirectory: logs)
            all.append(agent)
            try await eventually("node-agent ready") { (try? await agent.get("/readyz"))?.status == 200 }
            let monitor = try await RunningService.start(
                "health-monitor", name: "health-monitor", arguments: [], environment: environment, logDirectory: logs)
            all.append(monitor)
            try await eventually("node ready, well before the 120 s registration interval", within: .seconds(30)) {
                guard let node = try? await gateway.get("/v1/node/\(nodeID)"), node.status == 200,
                    let object = try? JSONSerialization.jsonObject(with: Data(node.body.utf8)) as? [String: Any]
                else { return false }
                return object["Status"] as? String == "ready"
            }
        } catch {
            for service in all.reversed() { _ = try? await service.terminate() }
            try? await sandbox.remove()
            throw error
        }
        for service in all.reversed() {
            let status = try await service.terminate()
            #expect(status == 0, "\(service.name) exited \(status) after SIGTERM: \(service.output.suffix(2000))")
        }
        try await sandbox.remove()
    }
}

/// What a test prints of a service that does not exit after SIGTERM (``threadStacks(of:)``).
@Suite struct StuckProcessDiagnosticsTests {
    /// Every thread of a running process is listed with its state, by its id and name.
    @Test func aRunningProcessIsDescribedThreadByThread() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sleep")
        process.arguments = ["60"]
        process.standardInput = FileHandle.nullDevice
        try ProcessLaunch.run(process)
        let pid = process.processIdentifier
        defer { Foundation.kill(pid, SIGKILL) }
        // Until it has become `sleep`, it is still the test's own fork.
        try await eventually("the child to be sleep", within: .seconds(30)) {
            (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) == "sleep\n"
        }
        let stacks = await threadStacks(of: pid)
        let line = try #require(stacks.split(separator: "\n").first { $0.hasPrefix("\(pid) (sleep) ") }, "\(stacks)")
        #expect(line.contains("wchan="), "\(line)")
    }
}
