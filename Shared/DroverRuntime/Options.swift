public import ArgumentParser
public import DroverMessaging
import Foundation
public import Logging

private func environment(_ name: String) -> String? {
    ProcessInfo.processInfo.environment[name].flatMap { $0.isEmpty ? nil : $0 }
}

/// How a service reaches RabbitMQ.
public struct BusOptions: ParsableArguments, Sendable {
    @Option(name: .customLong("amqp-url"), help: "RabbitMQ URL, amqp://USER:PASSWORD@HOST:PORT[/VHOST] (env DROVER_AMQP_URL).")
    public var amqpURL: String = environment("DROVER_AMQP_URL") ?? "amqp://guest:guest@127.0.0.1:5680"

    @Option(help: "The topic exchange Drover publishes to (env DROVER_EXCHANGE).")
    public var exchange: String = environment("DROVER_EXCHANGE") ?? "drover"

    @Flag(help: "Declare quorum queues, for a clustered broker (env DROVER_QUORUM_QUEUES=1).")
    public var quorumQueues: Bool = environment("DROVER_QUORUM_QUEUES") == "1"

    public init() {}

    public func validate() throws {
        do { _ = try AMQPEndpoint(url: amqpURL) } catch { throw ValidationError("--amqp-url: \(error)") }
        guard !exchange.isEmpty else { throw ValidationError("--exchange: must not be empty") }
    }

    /// The bus configuration these options describe.
    public func configuration() throws -> AMQPBus.Configuration {
        var configuration = try AMQPBus.Configuration(url: amqpURL)
        configuration.exchange = exchange
        configuration.queueKind = quorumQueues ? .quorum : .classic
        return configuration
    }
}

/// How a control-plane service reaches PostgreSQL.
public struct DatabaseOptions: ParsableArguments, Sendable {
    @Option(
        name: .customLong("postgres-url"),
        help: "PostgreSQL URL, postgres://USER:PASSWORD@HOST:PORT/DATABASE[?sslmode=…] (env DROVER_POSTGRES_URL).")
    public var postgresURL: String = environment("DROVER_POSTGRES_URL") ?? "postgres://drover:drover@127.0.0.1:5440/drover"

    public init() {}
}

/// Where the service's HTTP port listens, and how it logs.
public struct ServerOptions: ParsableArguments, Sendable {
    /// The longest interval, in seconds, a flag of seconds takes (a year): longer ones are refused,
    /// so that no conversion of it can overflow.
    public static let maximumSeconds: Double = 365 * 24 * 3600

    @Option(help: "Address the HTTP port binds to (env DROVER_HTTP_HOST).")
    public var httpHost: String = environment("DROVER_HTTP_HOST") ?? "127.0.0.1"

    @Option(help: "HTTP port for /healthz, /readyz and /metrics (env DROVER_HTTP_PORT; each service has its own default).")
    public var httpPort: Int?

    @Option(help: "trace, debug, info, notice, warning, error or critical (env DROVER_LOG_LEVEL).")
    public var logLevel: String = environment("DROVER_LOG_LEVEL") ?? "info"

    public init() {}

    public func validate() throws {
        if let text = environment("DROVER_HTTP_PORT"), Int(text) == nil {
            throw ValidationError("DROVER_HTTP_PORT: '\(text)' is not a port number")
        }
        if let port = configuredPort, !(0...65535).contains(port) { throw ValidationError("--http-port: \(port) is not a port (0-65535)") }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level: '\(logLevel)' is not one of trace, debug, info, notice, warning, error, critical")
        }
    }

    /// `--http-port`, else `DROVER_HTTP_PORT`; `nil` means the service's own default.
    public var configuredPort: Int? { httpPort ?? environment("DROVER_HTTP_PORT").flatMap(Int.init) }

    public var level: Logger.Level { Logger.Level(rawValue: logLevel) ?? .info }
}
