import ArgumentParser
import DroverTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import ServiceLifecycle
import ServiceLifecycleTestKit
import Synchronization
import Testing

@testable import DroverRuntime

@Suite struct OpsRoutesTests {
    let runtime = ServiceRuntime(name: "test-service", logger: Logger(label: "test"))

    @Test func readyzNamesEachCheckAndAnswers503UntilAllPass() async throws {
        let database = Mutex(false)
        let app = Application(
            router: runtime.router(readiness: [ReadinessCheck("amqp") { true }, ReadinessCheck("postgres") { database.withLock { $0 } }]))
        try await app.test(.router) { client in
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(String(buffer: response.body) == #"{"service":"test-service","ready":false,"checks":{"amqp":true,"postgres":false}}"#)
            }
            database.withLock { $0 = true }
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == #"{"service":"test-service","ready":true,"checks":{"amqp":true,"postgres":true}}"#)
            }
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "application/json")
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "text/plain; version=0.0.4; charset=utf-8")
            }
        }
    }

    /// A check that never answers (a database pool retrying a refused certificate forever)
    /// counts as failed instead of holding `/readyz`.
    @Test func aCheckThatNeverAnswersFailsWithinItsLimit() async throws {
        let hanging = ReadinessCheck("postgres") {
            try? await Task.sleep(for: .seconds(3600))  // until the limit cancels it
            return true
        }
        #expect(await hanging.evaluate(within: .milliseconds(50)) == false)
        #expect(await ReadinessCheck("amqp") { true }.evaluate(within: .seconds(60)) == true)
    }

    @Test func aGateOpensOnce() {
        let gate = Gate()
        #expect(!gate.isOpen)
        gate.open()
        #expect(gate.isOpen)
    }

    /// A worker waits for start-up (which retries until its step succeeds), runs once the gate is
    /// open, and a waiter that is cancelled first never runs it.
    @Test func workersRunOnlyOnceStartUpHasSucceeded() async throws {
        struct Worker: Service {
            let ran: AsyncStream<Void>.Continuation
            func run() async throws {
                ran.yield()
                try? await gracefulShutdown()
            }
        }
        let gate = Gate()
        let attempts = Mutex(0)
        let (ran, signal) = AsyncStream.makeStream(of: Void.self)
        let startup = Startup(gate: gate, logger: Logger(label: "test")) {
            let attempt = attempts.withLock { value -> Int in
                value += 1
                return value
            }
            if attempt < 3 { throw StartupFailed() }
        }
        let worker = Task { try await AfterGate(gate, Worker(ran: signal)).run() }
        let starting = Task { try await startup.run() }
        var deliveries = ran.makeAsyncIterator()
        await deliveries.next()
        #expect(gate.isOpen && attempts.withLock { $0 } == 3, "the worker ran only after the third attempt succeeded")
        worker.cancel()
        starting.cancel()

        let closed = Gate()
        let (never, neverSignal) = AsyncStream.makeStream(of: Void.self)
        let waiting = Task { try await AfterGate(closed, Worker(ran: neverSignal)).run() }
        waiting.cancel()
        try await waiting.value
        neverSignal.finish()
        var nothing = never.makeAsyncIterator()
        #expect(await nothing.next() == nil, "a cancelled waiter does not run its worker")
    }

    struct StartupFailed: Error {}

    /// A service that ignores being asked to stop.
    struct Stubborn: Service {
        let started: AsyncStream<Void>.Continuation
        func run() async throws {
            started.yield()
            try? await Task.sleep(for: .seconds(3600))  // until cancelled
        }
    }

    /// A service that stops when asked.
    struct Polite: Service {
        let started: AsyncStream<Void>.Continuation
        func run() async throws {
            started.yield()
            try? await gracefulShutdown()
        }
    }

    /// Shutting down is announced, and a service that does not stop is named, again and again,
    /// while it holds the process up (with no time limit, until the run is cancelled). The one
    /// behind it, not asked yet, is not named.
    @Test func aServiceThatIgnoresShutdownIsNamedWhileItHoldsTheProcessUp() async throws {
        let logs = RecordedLogs()
        let runtime = ServiceRuntime(name: "test", logger: Logger(label: "test") { _ in logs })
        let (starts, started) = AsyncStream.makeStream(of: Void.self)
        try await testGracefulShutdown { trigger in
            let run = Task {
                try await runtime.run(
                    [Polite(started: started), Stubborn(started: started)], stallWarning: .milliseconds(50), cancellationLimit: nil)
            }
            var iterator = starts.makeAsyncIterator()
            _ = await iterator.next()
            _ = await iterator.next()
            trigger.triggerGracefulShutdown()
            // Two warnings: it is named for as long as it holds the process up.
            try await withTimeout(.seconds(60), "two warnings naming Stubborn") {
                while logs.lines.filter({ $0 == "Still stopping service=Stubborn" }).count < 2 { try await Task.sleep(for: .milliseconds(20)) }
            }
            run.cancel()
            _ = await run.result
        }
        let messages = logs.lines
        #expect(messages.first == "Shutting down", "\(messages)")
        #expect(!messages.contains("Still stopping service=Polite"), "\(messages)")
    }

    /// Once the shutdown timeout has passed, what still runs is cancelled so that the process
    /// ends, and `run` throws ``ShutdownTimedOut`` naming only the service that held it up.
    @Test func aServiceThatIgnoresShutdownIsCancelledAfterTheTimeout() async throws {
        let logs = RecordedLogs()
        let runtime = ServiceRuntime(name: "test", logger: Logger(label: "test") { _ in logs })
        let (starts, started) = AsyncStream.makeStream(of: Void.self)
        let error = await testGracefulShutdown { trigger in
            await withTaskGroup(of: ShutdownTimedOut?.self) { group in
                group.addTask {
                    await #expect(throws: ShutdownTimedOut.self) {
                        try await runtime.run(
                            [Polite(started: started), Stubborn(started: started)], shutdownTimeout: .milliseconds(500), stallWarning: .seconds(3600),
                            cancellationLimit: nil)
                    }
                }
                // Both run; then shutting down begins.
                var iterator = starts.makeAsyncIterator()
                _ = await iterator.next()
                _ = await iterator.next()
                trigger.triggerGracefulShutdown()
                return await group.next() ?? nil
            }
        }
        #expect(error?.services == ["Stubborn"], "only the one that held the shutdown up")
        let messages = logs.lines
        #expect(messages.first == "Shutting down", "\(messages)")
        #expect(messages.last == "Stopped late", "\(messages)")
    }

    /// A group whose services all stop in time says so, and `run` returns.
    @Test func servicesThatStopInTimeEndTheRunQuietly() async throws {
        struct Polite: Service {
            func run() async throws { try? await gracefulShutdown() }
        }
        let logs = RecordedLogs()
        let runtime = ServiceRuntime(name: "test", logger: Logger(label: "test") { _ in logs })
        try await testGracefulShutdown { trigger in
            trigger.triggerGracefulShutdown()
            try await runtime.run([Polite(), Polite()], shutdownTimeout: .seconds(60), stallWarning: .seconds(60), cancellationLimit: nil)
        }
        #expect(logs.lines == ["Shutting down", "Stopped"])
    }
}

/// Keeps each log message with its `service` metadata, for tests.
final class RecordedLogs: LogHandler, @unchecked Sendable {
    private let recorded = Mutex<[String]>([])
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    var lines: [String] { recorded.withLock { $0 } }

    func log(event: LogEvent) {
        let service = event.metadata?["service"].map { " service=\($0)" } ?? ""
        recorded.withLock { $0.append("\(event.message)\(service)") }
    }
}

@Suite struct OptionsTests {
    @Test(arguments: [
        (["--amqp-url", "http://broker:5672"], "--amqp-url: invalid AMQP URL 'http://broker:5672': the scheme must be amqp"),
        (["--exchange", ""], "--exchange: must not be empty"),
    ])
    func badBusOptionsSayWhatIsWrong(_ example: (arguments: [String], message: String)) {
        let error = #expect(throws: (any Error).self) { try BusOptions.parse(example.arguments) }
        #expect(error.map { BusOptions.message(for: $0) }?.contains(example.message) == true, "\(String(describing: error))")
    }

    @Test(arguments: [
        (["--log-level", "loud"], "--log-level: 'loud' is not one of trace, debug, info"),
        (["--http-port", "70000"], "--http-port: 70000 is not a port"),
        (["--shutdown-timeout=-1"], "--shutdown-timeout: must be 0 (no limit) to"),
        (["--shutdown-timeout", "nan"], "--shutdown-timeout: must be 0 (no limit) to"),
    ])
    func badServerOptionsSayWhatIsWrong(_ example: (arguments: [String], message: String)) {
        let error = #expect(throws: (any Error).self) { try ServerOptions.parse(example.arguments) }
        #expect(error.map { ServerOptions.message(for: $0) }?.contains(example.message) == true, "\(String(describing: error))")
    }

    /// A secret comes from `NAME`, or from the file `NAME_FILE` names (as a mounted secret),
    /// without its line break; a file that cannot be used, or both set, is refused with a reason.
    @Test func aSecretSettingComesFromItsVariableOrFromAFile() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("secret-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("amqp-url")
        try "amqp://u:p@broker:5672/prod\n".write(to: file, atomically: true, encoding: .utf8)
        let empty = directory.appendingPathComponent("empty")
        try "\n".write(to: empty, atomically: true, encoding: .utf8)

        #expect(SecretSetting.value("DROVER_AMQP_URL", in: ["DROVER_AMQP_URL": "amqp://a"]) == "amqp://a")
        #expect(SecretSetting.value("DROVER_AMQP_URL", in: ["DROVER_AMQP_URL_FILE": file.path]) == "amqp://u:p@broker:5672/prod")
        #expect(SecretSetting.value("DROVER_AMQP_URL", in: [:]) == nil)
        #expect(SecretSetting.problem("DROVER_AMQP_URL", in: ["DROVER_AMQP_URL_FILE": file.path]) == nil)
        #expect(
            SecretSetting.problem("DROVER_AMQP_URL", in: ["DROVER_AMQP_URL": "amqp://a", "DROVER_AMQP_URL_FILE": file.path])?.contains("both set")
                == true)
        let missing = directory.appendingPathComponent("nothing").path
        #expect(SecretSetting.value("DROVER_AMQP_URL", in: ["DROVER_AMQP_URL_FILE": missing]) == nil)
        #expect(
            SecretSetting.problem("DROVER_AMQP_URL", in: ["DROVER_AMQP_URL_FILE": missing]) == "DROVER_AMQP_URL_FILE: '\(missing)' cannot be read")
        #expect(SecretSetting.problem("DROVER_AMQP_URL", in: ["DROVER_AMQP_URL_FILE": empty.path])?.hasSuffix("is empty") == true)
    }

    @Test func goodOptionsBuildTheBusConfiguration() throws {
        let options = try BusOptions.parse(["--amqp-url", "amqp://u:p@broker:5680/prod", "--exchange", "fleet", "--quorum-queues"])
        let configuration = try options.configuration()
        #expect(configuration.endpoint.host == "broker" && configuration.endpoint.vhost == "prod")
        #expect(configuration.exchange == "fleet" && configuration.deadLetterExchange == "fleet.dead-letter")
        #expect(configuration.queueKind == .quorum)
        #expect(try ServerOptions.parse(["--http-port", "9000"]).configuredPort == 9000)
        #expect(try ServerOptions.parse(["--shutdown-timeout", "0"]).shutdownLimit(default: 25) == nil, "0 is no limit")
        #expect(try ServerOptions.parse(["--shutdown-timeout", "1.5"]).shutdownLimit(default: 25) == .milliseconds(1500))
        #expect(try ServerOptions.parse([]).shutdownLimit(default: 25) == .seconds(25))
    }
}
