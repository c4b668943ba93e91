public import DroverMessaging
import Foundation
public import Hummingbird
import HummingbirdTLS
public import Logging
import Metrics
public import NIOSSL
import Prometheus
public import ServiceLifecycle
import Synchronization

/// One condition of readiness, e.g. "the bus is connected".
public struct ReadinessCheck: Sendable {
    public var name: String
    public var check: @Sendable () async -> Bool

    public init(_ name: String, _ check: @escaping @Sendable () async -> Bool) {
        self.name = name
        self.check = check
    }

    /// The check's answer, or false when it has none within `limit`: a database whose every
    /// connection attempt fails (a certificate not trusted, say) would otherwise never answer.
    public func evaluate(within limit: Duration) async -> Bool {
        let answer = FirstAnswer()
        return await withCheckedContinuation { continuation in
            answer.wait(continuation)
            let check = Task { answer.give(await self.check()) }
            Task {
                try? await Task.sleep(for: limit)
                if answer.give(false) { check.cancel() }
            }
        }
    }
}

/// Resumes one continuation with whichever answer comes first.
private final class FirstAnswer: Sendable {
    private let continuation = Mutex<CheckedContinuation<Bool, Never>?>(nil)
    func wait(_ waiting: CheckedContinuation<Bool, Never>) { continuation.withLock { $0 = waiting } }
    /// - Returns: whether this answer was the first.
    @discardableResult func give(_ value: Bool) -> Bool {
        guard let waiting = continuation.withLock({ $0.take() }) else { return false }
        waiting.resume(returning: value)
        return true
    }
}

/// Opens once: for "start-up work (migrations) has finished".
public final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [UUID: CheckedContinuation<Void, Never>])>((false, [:]))
    public init() {}
    public var isOpen: Bool { state.withLock { $0.open } }

    public func open() {
        let waiters = state.withLock { state in
            state.open = true
            defer { state.waiters = [:] }
            return state.waiters.values
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once the gate is open, or when the task is cancelled.
    public func wait() async {
        let id = UUID()
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state in
                    if state.open || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }
}

/// What every Drover executable shares: logging and metrics set up once, the ops HTTP routes,
/// and one `ServiceGroup` that shuts down gracefully on SIGTERM and SIGINT.
public struct ServiceRuntime: Sendable {
    public let name: String
    public let logger: Logger
    private let registry: PrometheusCollectorRegistry

    /// A runtime that sets up no process-wide system; ``bootstrap(name:logLevel:)`` is the one to use.
    init(name: String, logger: Logger, registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.name = name
        self.logger = logger
        self.registry = registry
    }

    /// Sets up the process-wide logging and metrics systems; call once, first thing in `main`.
    /// Logs go to standard error and, when `logFile` is given, to that file as well.
    public static func bootstrap(name: String, logLevel: Logger.Level, logFile: LogFile? = nil) -> ServiceRuntime {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = logLevel
            guard let logFile else { return handler }
            return MultiplexLogHandler([handler, FileLogHandler(label: label, file: logFile, logLevel: logLevel)])
        }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return ServiceRuntime(name: name, logger: Logger(label: name), registry: registry)
    }

    /// A router with the ops routes every service serves:
    /// - `GET /healthz`: 200 while the process runs;
    /// - `GET /readyz`: 200 when every check passes, else 503; the body names each check;
    /// - `GET /metrics`: Prometheus text exposition.
    public func router(readiness: [ReadinessCheck]) -> Router<BasicRequestContext> {
        let router = Router()
        let name = self.name
        router.get("/healthz") { _, _ in
            Response.json(.ok, #"{"service":"\#(name)","status":"ok"}"#)
        }
        router.get("/readyz") { _, _ in
            let results = await withTaskGroup(of: (Int, String, Bool).self) { group in
                for (position, check) in readiness.enumerated() {
                    group.addTask { (position, check.name, await check.evaluate(within: .seconds(2))) }
                }
                return await group.reduce(into: []) { $0.append($1) }.sorted { $0.0 < $1.0 }.map { ($0.1, $0.2) }
            }
            let ready = results.allSatisfy(\.1)
            let checks = results.map { #""\#($0.0)":\#($0.1)"# }.joined(separator: ",")
            return Response.json(ready ? .ok : .serviceUnavailable, #"{"service":"\#(name)","ready":\#(ready),"checks":{\#(checks)}}"#)
        }
        let registry = self.registry
        router.get("/metrics") { _, _ in
            var buffer: [UInt8] = []
            buffer.reserveCapacity(8 * 1024)
            registry.emit(into: &buffer)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: buffer)))
        }
        return router
    }

    /// The HTTP server for `router` on `host:port`, HTTPS with `tls`; logs once it listens.
    public func httpServer(router: Router<BasicRequestContext>, host: String, port: Int, tls: TLSConfiguration? = nil) throws -> some Service {
        let logger = self.logger
        return Application(
            router: router, server: try tls.map { try .tls(.http1(), tlsConfiguration: $0) } ?? .http1(),
            configuration: .init(address: .hostname(host, port: port), serverName: name),
            onServerRunning: { channel in
                logger.info(
                    "HTTP listening", metadata: ["address": "\(channel.localAddress?.description ?? "?")", "tls": "\(tls != nil)"])
            }, logger: logger)
    }

    /// Runs `services` until SIGTERM or SIGINT, then shuts them down in reverse order, each
    /// after the one behind it has stopped.
    ///
    /// Shutting down is logged when it begins and when it ends, and a service still stopping is
    /// named in a warning every `stallWarning`. After `shutdownTimeout` (nil: no limit) whatever
    /// still runs is cancelled, and `run` throws ``ShutdownTimedOut`` naming it; what does not end
    /// within `cancellationLimit` of a cancel ends the process with a crash (nil: no limit, for a
    /// test that runs services inside its own process).
    public func run(
        _ services: [any Service], shutdownTimeout: Duration? = nil, stallWarning: Duration = .seconds(5),
        cancellationLimit: Duration? = .seconds(5)
    ) async throws {
        let logger = self.logger
        let cancelled = CancelledServices()
        let watched: [any Service] =
            services.map { Watched($0, logger: logger, stallWarning: stallWarning, cancelled: cancelled) } + [ShutdownNotice(logger: logger)]
        var configuration = ServiceGroupConfiguration(
            services: watched.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        configuration.maximumGracefulShutdownDuration = shutdownTimeout
        configuration.maximumCancellationDuration = cancellationLimit
        try await ServiceGroup(configuration: configuration).run()
        let stuck = cancelled.names.withLock { $0 }
        guard stuck.isEmpty else {
            let error = ShutdownTimedOut(services: stuck)
            logger.error("Stopped late", metadata: ["error": "\(error)"])
            throw error
        }
        logger.info("Stopped")
    }
}

/// Logs that shutting down has begun. Run last in a group, it is the first to hear of it.
struct ShutdownNotice: Service {
    let logger: Logger

    func run() async throws {
        guard (try? await gracefulShutdown()) != nil else { return }
        logger.info("Shutting down")
    }
}

/// Runs `service`; once shutting down has begun, names it in a warning every `stallWarning`
/// while it has not stopped, so that a process that does not end says what it waits for. A
/// service that was still running when the group cancelled it is noted in `cancelled`.
struct Watched: Service {
    let service: any Service
    let logger: Logger
    let stallWarning: Duration
    let cancelled: CancelledServices?

    init(_ service: any Service, logger: Logger, stallWarning: Duration = .seconds(5), cancelled: CancelledServices? = nil) {
        self.service = service
        self.logger = logger
        self.stallWarning = stallWarning
        self.cancelled = cancelled
    }

    /// The wrapped service's type, or the worker's for one that waits for start-up.
    var name: String {
        if let gated = service as? AfterGate { return String(describing: type(of: gated.service)) }
        return String(describing: type(of: service))
    }

    func run() async throws {
        let (name, logger, stallWarning) = (self.name, self.logger, self.stallWarning)
        // Asked to stop before anything cancelled it: a service cancelled afterwards held the
        // shutdown up (one the group cancels before asking it did not).
        let asked = ShutdownAsked()
        defer {
            if Task.isCancelled && asked.isSet { cancelled?.names.withLock { $0.append(name) } }
        }
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                // Noted when the group asks, not when a task gets to run: under load a cancel can
                // come before the watch below has seen the request. An ask that comes after the
                // cancel does not count: a group that has timed out still asks the services it
                // had not reached yet, as it goes on down the list.
                try await withTaskCancellationHandler {
                    try await withGracefulShutdownHandler {
                        try await service.run()
                    } onGracefulShutdown: {
                        asked.set()
                    }
                } onCancel: {
                    asked.cancelled()
                }
                return true
            }
            group.addTask {
                guard (try? await gracefulShutdown()) != nil, !Task.isCancelled else { return false }
                let began = ContinuousClock.now
                while (try? await Task.sleep(for: stallWarning)) != nil {
                    logger.warning("Still stopping", metadata: ["service": "\(name)", "since_shutdown": "\(ContinuousClock.now - began)"])
                }
                return false
            }
            defer { group.cancelAll() }
            // The service's own end (or error) decides; the watch only ever ends by cancellation.
            while let finished = try await group.next() {
                if finished { return }
            }
        }
    }
}

/// The services a group cancelled while they were shutting down.
final class CancelledServices: Sendable {
    let names = Mutex<[String]>([])
}

/// Whether a service was asked to shut down before it was cancelled; set by one task, read by
/// another.
final class ShutdownAsked: Sendable {
    private let value = Mutex((asked: false, cancelled: false))
    var isSet: Bool { value.withLock { $0.asked } }
    /// Asked to shut down: counts only while not cancelled yet.
    func set() { value.withLock { if !$0.cancelled { $0.asked = true } } }
    func cancelled() { value.withLock { $0.cancelled = true } }
}

/// Shutting down took longer than allowed, and the services named were cancelled.
public struct ShutdownTimedOut: Error, CustomStringConvertible {
    public var services: [String]
    public var description: String {
        "shutting down took longer than --shutdown-timeout; cancelled: \(services.joined(separator: ", "))"
    }
}

/// Runs `prepare` (retrying with backoff until it succeeds, e.g. migrations while the database
/// starts) and opens `gate`; then stays up until shutdown.
public struct Startup: Service {
    private let prepare: @Sendable () async throws -> Void
    private let gate: Gate
    private let logger: Logger

    public init(gate: Gate, logger: Logger, prepare: @escaping @Sendable () async throws -> Void) {
        self.prepare = prepare
        self.gate = gate
        self.logger = logger
    }

    public func run() async throws {
        var delay = Duration.milliseconds(200)
        while true {
            do {
                try await prepare()
                break
            } catch {
                if Task.isCancelled || Task.isShuttingDownGracefully { return }
                logger.warning("Start-up step failed; retrying", metadata: ["error": "\(String(reflecting: error))", "retry_in": "\(delay)"])
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
        gate.open()
        logger.info("Ready")
        // A service that returns early fails its ServiceGroup: stay up until shutdown.
        try? await gracefulShutdown()
    }
}

/// Runs `service` once `gate` has opened: a worker that needs what start-up prepares.
public struct AfterGate: Service {
    let gate: Gate
    let service: any Service

    public init(_ gate: Gate, _ service: any Service) {
        self.gate = gate
        self.service = service
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown { await gate.wait() }
        guard gate.isOpen, !Task.isCancelled, !Task.isShuttingDownGracefully else { return }
        try await service.run()
    }
}

extension Response {
    static func json(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}

extension ServiceRuntime {
    /// Runs a Drover service: `dependencies` (such as the database client) first, then the bus,
    /// the HTTP port, and, once `prepare` has succeeded, the `workers`, each its own entry of
    /// the `ServiceGroup`. `/readyz` passes while the bus is connected, `prepare` has finished and
    /// every check in `readiness` passes. Shutdown runs in reverse: the last worker stops first,
    /// the bus and the database last, within `shutdownTimeout` (see ``run(_:shutdownTimeout:stallWarning:)``).
    /// `routes` adds the service's own HTTP routes to the ops routes.
    public func runService(
        bus: AMQPBus, host: String, port: Int, readiness: [ReadinessCheck] = [], dependencies: [any Service] = [],
        prepare: @escaping @Sendable () async throws -> Void = {}, workers: [any Service],
        routes: (Router<BasicRequestContext>) -> Void = { _ in }, tls: TLSConfiguration? = nil, shutdownTimeout: Duration?
    ) async throws {
        let gate = Gate()
        let checks = [ReadinessCheck("amqp") { bus.isConnected }] + readiness + [ReadinessCheck("startup") { gate.isOpen }]
        let router = router(readiness: checks)
        routes(router)
        let server = try httpServer(router: router, host: host, port: port, tls: tls)
        try await run(
            dependencies + [bus, server, Startup(gate: gate, logger: logger, prepare: prepare)] + workers.map { AfterGate(gate, $0) },
            shutdownTimeout: shutdownTimeout)
    }
}
