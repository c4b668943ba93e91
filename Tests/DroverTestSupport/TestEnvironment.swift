import Foundation
import Synchronization

/// What the test command (`deploy/local/test`) hands the integration tests.
///
/// Run under that command, every integration test runs; with `swift test` alone they are
/// disabled, unless `DROVER_REQUIRE_INTEGRATION=1` says they must run, in which case a missing
/// server is a failure, never a skip.
public enum TestEnvironment {
    private static var environment: [String: String] { ProcessInfo.processInfo.environment }

    public static var amqpURL: String? { environment["DROVER_TEST_AMQP_URL"] }
    public static var postgresURL: String? { environment["DROVER_TEST_POSTGRES_URL"] }
    /// Stops the test broker; waits until it has stopped.
    public static var brokerStopCommand: String? { environment["DROVER_TEST_BROKER_STOP"] }
    /// Starts the test broker again; waits until it accepts connections.
    public static var brokerStartCommand: String? { environment["DROVER_TEST_BROKER_START"] }
    public static var binDirectory: String? { environment["DROVER_BIN_DIR"] }
    public static var integrationRequired: Bool { environment["DROVER_REQUIRE_INTEGRATION"] == "1" }

    /// Whether tests that need RabbitMQ should run.
    public static var runsMessagingIntegration: Bool { amqpURL != nil || integrationRequired }
    /// Whether tests that need PostgreSQL should run.
    public static var runsStorageIntegration: Bool { postgresURL != nil || integrationRequired }
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

/// Runs a shell command to completion without blocking a thread of the concurrency pool.
/// - Returns: its combined output.
/// - Throws: `TestFailure` when it exits non-zero.
@discardableResult
public func runShell(_ command: String) async throws -> String {
    let (output, status) = try await runShellWithStatus(command)
    guard status == 0 else { throw TestFailure("`\(command)` exited \(status): \(output)") }
    return output
}

/// Runs a shell command to completion. - Returns: its combined output and exit status.
public func runShellWithStatus(_ command: String) async throws -> (output: String, status: Int32) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/bash")
    process.arguments = ["-c", command]
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    let status: Int32 = try await withCheckedThrowingContinuation { continuation in
        process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
        do { try process.run() } catch { continuation.resume(throwing: error) }
    }
    return (String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self), status)
}

/// A value shared between a test and the tasks it starts.
public final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    public init(_ value: Value) { mutex = Mutex(value) }
    public var value: Value { mutex.withLock { $0 } }
    @discardableResult
    public func withLock<T: Sendable>(_ body: (inout Value) -> T) -> T { mutex.withLock { body(&$0) } }
}
