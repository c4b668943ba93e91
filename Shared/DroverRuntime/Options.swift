public import ArgumentParser
public import DroverMessaging
import Foundation
public import Logging
public import NIOSSL

private func environment(_ name: String) -> String? {
    ProcessInfo.processInfo.environment[name].flatMap { $0.isEmpty ? nil : $0 }
}

/// A setting that holds a secret (a URL with a password, a token) comes from the environment
/// as `NAME`, or from the file `NAME_FILE` names: a mounted Kubernetes or compose secret, or a
/// systemd credential, so that the secret is in no process's environment or command line.
public enum SecretSetting {
    /// `NAME`, else the contents of the file `NAME_FILE` (without its trailing line break); nil
    /// when neither is set, or the file cannot be read (``problem(_:in:)`` says so).
    /// - Parameter environment: the environment to read; the process's when nil.
    public static func value(_ name: String, in environment: [String: String]? = nil) -> String? {
        let environment = environment ?? ProcessInfo.processInfo.environment
        if let value = environment[name], !value.isEmpty { return value }
        guard let path = environment[name + "_FILE"], !path.isEmpty, let data = FileManager.default.contents(atPath: path) else { return nil }
        var text = String(decoding: data, as: UTF8.self)
        while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
        return text.isEmpty ? nil : text
    }

    /// Why `NAME_FILE` cannot be used: both it and `NAME` are set, or the file cannot be read or
    /// is empty. Nil when all is well.
    /// - Parameter environment: the environment to read; the process's when nil.
    public static func problem(_ name: String, in environment: [String: String]? = nil) -> String? {
        let environment = environment ?? ProcessInfo.processInfo.environment
        guard let path = environment[name + "_FILE"], !path.isEmpty else { return nil }
        if let value = environment[name], !value.isEmpty { return "\(name) and \(name)_FILE are both set; set one" }
        guard let data = FileManager.default.contents(atPath: path) else { return "\(name)_FILE: '\(path)' cannot be read" }
        guard !String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            return "\(name)_FILE: '\(path)' is empty"
        }
        return nil
    }
}

/// How a service reaches RabbitMQ.
public struct BusOptions: ParsableArguments, Sendable {
    @Option(
        name: .customLong("amqp-url"),
        help:
            "RabbitMQ URL, amqp://USER:PASSWORD@HOST:PORT[/VHOST], or amqps://… for TLS (env DROVER_AMQP_URL, or a file named by DROVER_AMQP_URL_FILE)."
    )
    public var amqpURL: String = SecretSetting.value("DROVER_AMQP_URL") ?? "amqp://guest:guest@127.0.0.1:5680"

    @Option(
        name: .customLong("amqp-ca-cert"),
        help:
            "With amqps://, the PEM file of the authorities the broker's certificate must chain to; the system's by default (env DROVER_AMQP_CA_CERT)."
    )
    public var amqpCACert: String? = environment("DROVER_AMQP_CA_CERT")

    @Option(help: "The topic exchange Drover publishes to (env DROVER_EXCHANGE).")
    public var exchange: String = environment("DROVER_EXCHANGE") ?? "drover"

    @Flag(help: "Declare quorum queues, for a clustered broker (env DROVER_QUORUM_QUEUES=1).")
    public var quorumQueues: Bool = environment("DROVER_QUORUM_QUEUES") == "1"

    public init() {}

    public func validate() throws {
        if let problem = SecretSetting.problem("DROVER_AMQP_URL") { throw ValidationError(problem) }
        do { _ = try AMQPEndpoint(url: amqpURL) } catch { throw ValidationError("--amqp-url: \(error)") }
        guard !exchange.isEmpty else { throw ValidationError("--exchange: must not be empty") }
    }

    /// The bus configuration these options describe.
    public func configuration() throws -> AMQPBus.Configuration {
        var configuration = try AMQPBus.Configuration(url: amqpURL)
        if let amqpCACert, !amqpCACert.isEmpty { configuration.endpoint.caCertificate = amqpCACert }
        configuration.exchange = exchange
        configuration.queueKind = quorumQueues ? .quorum : .classic
        return configuration
    }
}

/// How a control-plane service reaches PostgreSQL.
public struct DatabaseOptions: ParsableArguments, Sendable {
    @Option(
        name: .customLong("postgres-url"),
        help:
            "PostgreSQL URL, postgres://USER:PASSWORD@HOST:PORT/DATABASE[?sslmode=…] (env DROVER_POSTGRES_URL, or a file named by DROVER_POSTGRES_URL_FILE)."
    )
    public var postgresURL: String = SecretSetting.value("DROVER_POSTGRES_URL") ?? "postgres://drover:drover@127.0.0.1:5440/drover"

    public init() {}

    public func validate() throws {
        if let problem = SecretSetting.problem("DROVER_POSTGRES_URL") { throw ValidationError(problem) }
    }
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

    @Option(help: "Serve HTTPS with this PEM certificate chain, with --tls-key (env DROVER_TLS_CERT).")
    public var tlsCert: String? = environment("DROVER_TLS_CERT")

    @Option(help: "The PEM private key of --tls-cert (env DROVER_TLS_KEY).")
    public var tlsKey: String? = environment("DROVER_TLS_KEY")

    @Option(
        help:
            "Seconds shutting down may take before whatever still runs is cancelled; 0 for no limit (env DROVER_SHUTDOWN_TIMEOUT; each executable has its own default)."
    )
    public var shutdownTimeout: Double?

    public init() {}

    public func validate() throws {
        if let text = environment("DROVER_HTTP_PORT"), Int(text) == nil {
            throw ValidationError("DROVER_HTTP_PORT: '\(text)' is not a port number")
        }
        if let port = configuredPort, !(0...65535).contains(port) { throw ValidationError("--http-port: \(port) is not a port (0-65535)") }
        switch (tlsCert?.isEmpty == false ? tlsCert : nil, tlsKey?.isEmpty == false ? tlsKey : nil) {
        case (nil, nil): break
        case (let cert?, let key?):
            for (flag, file) in [("--tls-cert", cert), ("--tls-key", key)] where !FileManager.default.isReadableFile(atPath: file) {
                throw ValidationError("\(flag): '\(file)' is not a readable file")
            }
        default: throw ValidationError("--tls-cert and --tls-key go together: give both, or neither for plain HTTP")
        }
        if let text = environment("DROVER_SHUTDOWN_TIMEOUT"), Double(text) == nil {
            throw ValidationError("DROVER_SHUTDOWN_TIMEOUT: '\(text)' is not a number of seconds")
        }
        if let seconds = configuredShutdownTimeout, !(seconds >= 0 && seconds <= Self.maximumSeconds) {
            throw ValidationError("--shutdown-timeout: must be 0 (no limit) to \(Int(Self.maximumSeconds)) seconds")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level: '\(logLevel)' is not one of trace, debug, info, notice, warning, error, critical")
        }
    }

    /// `--http-port`, else `DROVER_HTTP_PORT`; `nil` means the service's own default.
    public var configuredPort: Int? { httpPort ?? environment("DROVER_HTTP_PORT").flatMap(Int.init) }

    public var level: Logger.Level { Logger.Level(rawValue: logLevel) ?? .info }

    /// `--shutdown-timeout`, else `DROVER_SHUTDOWN_TIMEOUT`; `nil` means the executable's own default.
    var configuredShutdownTimeout: Double? { shutdownTimeout ?? environment("DROVER_SHUTDOWN_TIMEOUT").flatMap(Double.init) }

    /// How long shutting down may take: the configured seconds, else `seconds`; nil for no limit (0).
    public func shutdownLimit(default seconds: Double) -> Duration? {
        let chosen = configuredShutdownTimeout ?? seconds
        return chosen > 0 ? .milliseconds(Int64((chosen * 1000).rounded(.up))) : nil
    }
}

extension ServerOptions {
    /// The HTTPS settings `--tls-cert` and `--tls-key` describe, or nil for plain HTTP.
    /// - Throws: when a file does not hold what it should, saying which.
    public func tlsConfiguration() throws -> TLSConfiguration? {
        guard let tlsCert, !tlsCert.isEmpty, let tlsKey, !tlsKey.isEmpty else { return nil }
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(tlsCert).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: tlsKey, format: .pem)
            return TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        } catch {
            throw ValidationError("--tls-cert/--tls-key: cannot read \(tlsCert) and \(tlsKey) as a PEM certificate chain and key: \(error)")
        }
    }
}
