import Logging
import Metrics
import Synchronization

/// The broker connection a publisher or consumer thread keeps: opened on demand with backoff,
/// set up anew (exchanges, queues, confirms) on every fresh connection, dropped on any error.
///
/// Everything but ``isConnected`` belongs to the owning thread.
final class ReconnectingConnection: @unchecked Sendable {
    private let configuration: AMQPBus.Configuration
    private let logger: Logger
    private let wake: WakeSignal
    private let setUp: (AMQPConnection) throws(AMQPError) -> Void
    private let connected = Mutex(false)
    private let reconnects: Counter
    private var current: AMQPConnection?
    private var failures = 0

    /// - Parameters:
    ///   - role: `publisher` or `consumer`, for logs and the `drover_amqp_reconnects_total` metric.
    ///   - wake: raised by other threads; it cuts a backoff wait short.
    ///   - setUp: runs on each new connection before it is used.
    init(
        role: String, configuration: AMQPBus.Configuration, logger: Logger, wake: WakeSignal, dimensions: [(String, String)] = [],
        setUp: @escaping (AMQPConnection) throws(AMQPError) -> Void
    ) {
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "role"] = "\(role)"
        self.logger = logger
        self.wake = wake
        self.setUp = setUp
        self.reconnects = Counter(label: "drover_amqp_reconnects_total", dimensions: [("role", role)] + dimensions)
    }

    /// True while a set-up connection is open; readable from any thread.
    var isConnected: Bool { connected.withLock { $0 } }

    /// The open connection, or a new one when there is none. `isNew` is true for a connection
    /// opened by this call. `nil` when the broker cannot be reached, after waiting the backoff.
    func open() -> (connection: AMQPConnection, isNew: Bool)? {
        if let current { return (current, false) }
        do {
            let connection = try AMQPConnection(
                endpoint: configuration.endpoint, heartbeat: Int32(configuration.heartbeat), timeout: configuration.connectTimeout)
            try setUp(connection)
            logger.info(
                failures > 0 ? "AMQP connection restored" : "AMQP connection open", metadata: ["broker": "\(configuration.endpoint.redacted)"])
            failures = 0
            current = connection
            connected.withLock { $0 = true }
            return (connection, true)
        } catch {
            failures += 1
            logger.warning(
                "AMQP connection failed", metadata: ["broker": "\(configuration.endpoint.redacted)", "error": "\(error)", "attempt": "\(failures)"])
            wake.wait(timeout: configuration.backoff(afterFailures: failures))
            return nil
        }
    }

    /// Closes the connection after `error` ended it, and waits the first backoff.
    func drop(after error: any Error, metadata: Logger.Metadata = [:]) {
        logger.warning("AMQP connection lost", metadata: metadata.merging(["error": "\(error)"]) { $1 })
        close()
        reconnects.increment()
        failures = 1
        wake.wait(timeout: configuration.backoff(afterFailures: failures))
    }

    func close() {
        current?.close()
        current = nil
        connected.withLock { $0 = false }
    }
}
