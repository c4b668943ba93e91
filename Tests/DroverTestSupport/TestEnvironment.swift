import DroverProcess
import Foundation
import Synchronization

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// What the test command (`deploy/local/test`) hands the integration tests.
///
/// Run under that command, every integration test runs; with `swift test` alone they are
/// disabled, unless `DROVER_REQUIRE_INTEGRATION=1` says they must run, in which case a missing
/// server is a failure, never a skip.
public enum TestEnvironment {
    private static var environment: [String: String] { ProcessInfo.processInfo.environment }

    public static var amqpURL: String? { environment["DROVER_TEST_AMQP_URL"] }
    public static var postgresURL: String? { environment["DROVER_TEST_POSTGRES_URL"] }
    /// The test server's port, from ``postgresURL``.
    public static var postgresPort: Int { postgresURL.flatMap { URLComponents(string: $0)?.port } ?? 5432 }
    /// Stops the test broker; waits until it has stopped.
    public static var brokerStopCommand: String? { environment["DROVER_TEST_BROKER_STOP"] }
    /// Starts the test broker again; waits until it accepts connections.
    public static var brokerStartCommand: String? { environment["DROVER_TEST_BROKER_START"] }
    /// The test broker's management API, `http://user:password@host:port`.
    public static var amqpManagementURL: String? { environment["DROVER_TEST_AMQP_MANAGEMENT_URL"] }
    public static var binDirectory: String? { environment["DROVER_BIN_DIR"] }
    public static var integrationRequired: Bool { environment["DROVER_REQUIRE_INTEGRATION"] == "1" }
    /// Where `deploy/local/tls-certs` made the run's certificates: `ca.pem`, `server.pem`,
    /// `server-key.pem`, `other-ca.pem`. The test servers also speak TLS with them.
    public static var tlsDirectory: String? { environment["DROVER_TEST_TLS_DIR"] }
    /// The test broker's AMQP-over-TLS port.
    public static var amqpsPort: Int? { environment["DROVER_TEST_AMQPS_PORT"].flatMap(Int.init) }

    /// Whether tests that need RabbitMQ should run.
    public static var runsMessagingIntegration: Bool { amqpURL != nil || integrationRequired }
    /// Whether tests that need PostgreSQL should run.
    public static var runsStorageIntegration: Bool { postgresURL != nil || integrationRequired }
    /// A Python with the client libraries the end-to-end tests drive (python-nomad).
    public static var python: String? { environment["DROVER_TEST_PYTHON"] }
    /// Whether the client-library tests should run: they need a cluster and that Python.
    public static var runsClientLibraries: Bool { (runsEndToEnd && python != nil) || integrationRequired }
    /// Whether the TLS end-to-end test should run: it needs the servers' TLS as well.
    public static var runsTLS: Bool { (runsEndToEnd && tlsDirectory != nil && amqpsPort != nil) || integrationRequired }
    /// Whether tests that need both servers and the built executables should run.
    public static var runsEndToEnd: Bool { (amqpURL != nil && postgresURL != nil && binDirectory != nil) || integrationRequired }

    /// A name no other test run uses, for queues, databases and directories.
    public static func uniqueName(_ prefix: String) -> String {
        "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
    }
}

public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Runs `operation`, failing with `TestFailure` if it has not finished within `limit`.
///
/// The limit guards against a hang; it never stands in for waiting on a condition. On a time-out
/// the operation is cancelled but not awaited: work that ignores cancellation cannot hold up the
/// failing test.
public func withTimeout<T: Sendable>(
    _ limit: Duration, _ what: String, _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    let pending = Locked<CheckedContinuation<T, any Error>?>(nil)
    let timer = Locked<Task<Void, Never>?>(nil)
    let resume: @Sendable (Result<T, any Error>) -> Void = { result in
        pending.withLock { continuation in
            continuation?.resume(with: result)
            continuation = nil
        }
        timer.value?.cancel()
    }
    return try await withCheckedThrowingContinuation { continuation in
        pending.withLock { $0 = continuation }
        let work = Task { resume(await Result(catching: operation)) }
        timer.withLock {
            $0 = Task {
                guard (try? await Task.sleep(for: limit)) != nil else { return }
                work.cancel()
                resume(.failure(TestFailure("\(what) did not finish within \(limit)")))
            }
        }
    }
}

extension Result where Failure == any Error {
    fileprivate init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}

/// Drops database `name` of the server at `serverURL`, ending its connections. An autovacuum
/// worker (the superuser's) may still be on it, which `FORCE` may not end as a plain user: the
/// drop is tried again, up to ten times, 200 ms apart.
public func dropDatabase(_ name: String, at serverURL: String) async throws {
    for attempt in 1...10 {
        do {
            try await runShell("psql '\(serverURL)' -qc 'DROP DATABASE IF EXISTS \(name) WITH (FORCE)'")
            return
        } catch  where attempt < 10 {
            try await Task.sleep(for: .milliseconds(200))
        }
    }
}

/// Runs a shell command to completion without blocking a thread of the concurrency pool.
/// - Returns: its combined output.
/// - Throws: `TestFailure` when it exits non-zero or does not finish within `limit`.
@discardableResult
public func runShell(_ command: String, within limit: Duration = .seconds(120)) async throws -> String {
    let (output, status) = try await runShellWithStatus(command, within: limit)
    guard status == 0 else { throw TestFailure("`\(command)` exited \(status): \(output)") }
    return output
}

/// Runs a shell command to completion. - Returns: its combined output and exit status.
///
/// The output goes to a file, never a pipe, so a command that writes a lot cannot block on a full
/// pipe, and a process it leaves behind cannot hold the read open. A command still running after
/// `limit` is killed with its whole process group and the test fails, saying what it printed.
public func runShellWithStatus(_ command: String, within limit: Duration = .seconds(120)) async throws -> (output: String, status: Int32) {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("drover-shell-\(UUID().uuidString)")
    FileManager.default.createFile(atPath: file.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: file) }
    let output = try FileHandle(forWritingTo: file)
    defer { try? output.close() }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/bash")
    process.arguments = ["-c", command]
    process.standardInput = FileHandle.nullDevice
    process.standardOutput = output
    process.standardError = output
    let (exited, exit) = AsyncStream.makeStream(of: Int32.self, bufferingPolicy: .bufferingNewest(1))
    process.terminationHandler = {
        exit.yield($0.terminationStatus)
        exit.finish()
    }
    try ProcessLaunch.run(process)
    let printed = { String(decoding: (try? Data(contentsOf: file)) ?? Data(), as: UTF8.self) }
    do {
        let status = try await withTimeout(limit, "`\(command)`") {
            for await status in exited { return status }
            throw TestFailure("no exit status")
        }
        return (printed(), status)
    } catch {
        kill(-process.processIdentifier, SIGKILL)
        kill(process.processIdentifier, SIGKILL)
        throw TestFailure("\(error); it printed: \(printed().suffix(4000))")
    }
}

/// What each thread of process `pid` is doing, for a test that found it stuck: each thread's
/// state from `/proc`, and its stack from gdb where gdb is installed (lines cut at 240 characters).
public func threadStacks(of pid: Int32) async -> String {
    let command = """
        for t in /proc/\(pid)/task/*; do echo "$(basename "$t") $(cut -d' ' -f2-3 "$t/stat") wchan=$(cat "$t/wchan" 2>/dev/null)"; done
        if command -v gdb >/dev/null; then
            gdb -p \(pid) -batch -nx -iex 'set debuginfod enabled off' -ex 'thread apply all bt 40' 2>/dev/null | grep -E '^(Thread|#)' | cut -c1-240
        fi
        """
    let result = try? await runShellWithStatus(command, within: .seconds(90))
    return result.map { String($0.output.suffix(60_000)) } ?? "(could not read them)"
}

/// A RabbitMQ virtual host of a test's own, so that messages one test leaves in a durable queue
/// never reach the services of the next.
public struct TestVirtualHost: Sendable {
    public let name: String
    /// `DROVER_TEST_AMQP_URL` pointed at this virtual host.
    public let amqpURL: String

    /// Creates the virtual host through the management API and lets the test user use it.
    public static func create(_ prefix: String) async throws -> TestVirtualHost {
        guard let base = TestEnvironment.amqpURL, var components = URLComponents(string: base) else {
            throw TestFailure("DROVER_TEST_AMQP_URL is not set")
        }
        let name = TestEnvironment.uniqueName(prefix)
        components.path = "/\(name)"
        let host = TestVirtualHost(name: name, amqpURL: components.string ?? base)
        try await host.manage("PUT", "/api/vhosts/\(name)", body: "{}")
        try await host.manage(
            "PUT", "/api/permissions/\(name)/\(components.user ?? "guest")", body: #"{"configure": ".*", "write": ".*", "read": ".*"}"#)
        return host
    }

    /// Deletes the virtual host with every queue in it.
    public func delete() async throws {
        try await manage("DELETE", "/api/vhosts/\(name)")
    }

    /// Declares queue `name` bound to `pattern` on the `drover` exchange, for a test to read.
    public func bindQueue(_ name: String, to pattern: String) async throws {
        try await manage("PUT", "/api/queues/\(self.name)/\(name)", body: #"{"durable": false, "auto_delete": false}"#)
        try await manage("POST", "/api/bindings/\(self.name)/e/drover/q/\(name)", body: #"{"routing_key": "\#(pattern)"}"#)
    }

    /// Takes up to `count` messages from queue `name`. - Returns: each one's routing key and body.
    public func takeMessages(from name: String, count: Int = 10) async throws -> [(routingKey: String, body: String)] {
        let data = try await manage(
            "POST", "/api/queues/\(self.name)/\(name)/get", body: #"{"count": \#(count), "ackmode": "ack_requeue_false", "encoding": "auto"}"#)
        let messages = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] ?? []
        return messages.map { (($0["routing_key"] as? String) ?? "", ($0["payload"] as? String) ?? "") }
    }

    /// How many messages each queue of the virtual host holds, by name (the management API's
    /// figures, refreshed every few seconds).
    public func messageCounts() async throws -> [String: Int] {
        let data = try await manage("GET", "/api/queues/\(self.name)?columns=name,messages")
        let queues = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] ?? []
        return Dictionary(queues.map { (($0["name"] as? String) ?? "", ($0["messages"] as? Int) ?? 0) }) { $1 }
    }

    @discardableResult
    private func manage(_ method: String, _ path: String, body: String? = nil) async throws -> Data {
        guard let base = TestEnvironment.amqpManagementURL, let components = URLComponents(string: base),
            let url = URL(string: "\(components.scheme ?? "http")://\(components.host ?? "127.0.0.1"):\(components.port ?? 15672)\(path)")
        else { throw TestFailure("DROVER_TEST_AMQP_MANAGEMENT_URL is not set or not a URL") }
        var request = URLRequest(url: url)
        request.httpMethod = method
        let credentials = Data("\(components.user ?? "guest"):\(components.password ?? "guest")".utf8).base64EncodedString()
        request.setValue("Basic \(credentials)", forHTTPHeaderField: "Authorization")
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = body.map { Data($0.utf8) }
        let (data, response) = try await URLSession.shared.data(for: request)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard (200..<300).contains(status) else {
            throw TestFailure("\(method) \(path) on the RabbitMQ management API: HTTP \(status) \(String(decoding: data, as: UTF8.self))")
        }
        return data
    }
}

/// A value shared between a test and the tasks it starts.
public final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    public init(_ value: Value) { mutex = Mutex(value) }
    public var value: Value { mutex.withLock { $0 } }
    @discardableResult
    public func withLock<T: Sendable>(_ body: (inout Value) -> T) -> T { mutex.withLock { body(&$0) } }
}
