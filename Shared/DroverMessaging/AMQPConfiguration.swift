import Foundation

/// Where the bus connects: parsed from `amqp://USER:PASSWORD@HOST:PORT[/VHOST]`, or
/// `amqps://…` for TLS (port 5671 by default), with `?cacertfile=PATH` naming the certificate
/// authority the broker's certificate must chain to (else the system's).
public struct AMQPEndpoint: Sendable, Equatable {
    /// The broker's host name or address.
    public var host: String
    /// The broker's port: 5672, or 5671 for `amqps`, unless the URL names one.
    public var port: Int
    /// The broker user (`guest` when the URL has none).
    public var user: String
    /// The broker user's password (`guest` when the URL has none).
    public var password: String
    /// The virtual host: the URL's path, `/` when it has none.
    public var vhost: String
    /// Whether the connection runs over TLS, verifying the broker's certificate and host name.
    public var tls: Bool
    /// The PEM file of the authorities the broker's certificate must chain to; the system's
    /// when nil.
    public var caCertificate: String?

    /// - Throws: ``MessagingError/invalidURL(_:reason:)`` naming what is wrong.
    public init(url: String) throws {
        guard let components = URLComponents(string: url) else { throw MessagingError.invalidURL(url, reason: "not a URL") }
        guard components.scheme == "amqp" || components.scheme == "amqps" else {
            throw MessagingError.invalidURL(url, reason: "the scheme must be amqp, or amqps for TLS")
        }
        guard let host = components.host, !host.isEmpty else { throw MessagingError.invalidURL(url, reason: "no host") }
        tls = components.scheme == "amqps"
        let port = components.port ?? (tls ? 5671 : 5672)
        guard (1...65535).contains(port) else { throw MessagingError.invalidURL(url, reason: "port \(port) is out of range") }
        self.host = host
        self.port = port
        self.user = components.user?.removingPercentEncoding ?? "guest"
        self.password = components.password?.removingPercentEncoding ?? "guest"
        let path = components.percentEncodedPath
        self.vhost = path.isEmpty || path == "/" ? "/" : String(path.dropFirst()).removingPercentEncoding ?? "/"
        for item in components.queryItems ?? [] {
            guard item.name == "cacertfile" else {
                throw MessagingError.invalidURL(url, reason: "unknown query parameter '\(item.name)'; only cacertfile is understood")
            }
            guard tls else { throw MessagingError.invalidURL(url, reason: "cacertfile is for amqps:// URLs") }
            guard let value = item.value, value.hasPrefix("/") else {
                throw MessagingError.invalidURL(url, reason: "cacertfile must be an absolute path")
            }
            caCertificate = value
        }
    }

    /// The URL without its password, for logs.
    public var redacted: String { "\(tls ? "amqps" : "amqp")://\(user)@\(host):\(port)/\(vhost == "/" ? "" : vhost)" }

    /// The endpoint as a URL, with its password.
    public var url: String {
        var components = URLComponents()
        components.scheme = tls ? "amqps" : "amqp"
        components.user = user
        components.password = password
        components.host = host
        components.port = port
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~"))
        components.percentEncodedPath = vhost == "/" ? "" : "/" + (vhost.addingPercentEncoding(withAllowedCharacters: allowed) ?? vhost)
        if let caCertificate { components.queryItems = [URLQueryItem(name: "cacertfile", value: caCertificate)] }
        return components.string ?? redacted
    }
}

extension AMQPBus {
    /// How the bus connects and behaves; every field has a default but the URL.
    public struct Configuration: Sendable {
        /// Where the broker is and who connects.
        public var endpoint: AMQPEndpoint
        /// The durable topic exchange everything is published to.
        public var exchange: String = "drover"
        /// Seconds between AMQP heartbeats; a silent broker is given up on after two.
        public var heartbeat: Int = 30
        /// How long opening a connection may take.
        public var connectTimeout: Duration = .seconds(5)
        /// The first wait before reconnecting; it doubles, with jitter, up to `maximumBackoff`.
        public var initialBackoff: Duration = .milliseconds(100)
        /// The longest wait between two connection attempts.
        public var maximumBackoff: Duration = .seconds(5)
        /// How many publishes may wait for their confirm at once.
        public var maximumUnconfirmed: Int = 2000
        /// How many messages may wait to be sent (while the broker is away, say); past it a
        /// publish fails with ``MessagingError/overloaded(limit:)`` rather than taking memory.
        public var maximumQueued: Int = 100_000
        /// The largest message body the broker takes (RabbitMQ's `max_message_size`); a larger
        /// one is refused before it is sent. Lowered by itself if the broker says it is lower.
        public var maximumMessageBytes: Int = 16 << 20
        /// On shutdown, how long publishes already accepted may take to be confirmed.
        public var shutdownGracePeriod: Duration = .seconds(5)
        /// The kind of queue consumers declare unless their spec says otherwise.
        public var queueKind: QueueKind = .classic
        /// Whether connections declare the exchanges (the control plane), or only check that
        /// they exist (a node, whose broker user may not configure them).
        public var declaresExchanges = true

        /// A configuration for the broker at `url`, every other field at its default.
        /// - Throws: ``MessagingError/invalidURL(_:reason:)`` naming what is wrong.
        public init(url: String) throws {
            self.endpoint = try AMQPEndpoint(url: url)
        }

        /// The most messages a dead-letter queue keeps; past it the oldest are dropped. 0: no bound.
        public var deadLetterQueueLength: Int = 100_000
        /// How long a dead-lettered message is kept. `nil`: until the length bound drops it.
        public var deadLetterTTL: Duration? = .seconds(14 * 86_400)

        /// The arguments that bound a dead-letter queue.
        var deadLetterQueueBounds: [(String, QueueArgument)] {
            var bounds: [(String, QueueArgument)] = []
            if deadLetterQueueLength > 0 { bounds.append(("x-max-length", .integer(Int64(deadLetterQueueLength)))) }
            if let deadLetterTTL { bounds.append(("x-message-ttl", .integer(deadLetterTTL.components.seconds * 1000))) }
            return bounds
        }

        /// The exchange dead-lettered copies go to; each queue's dead-letter queue is bound to it
        /// with the queue's name.
        public var deadLetterExchange: String { "\(exchange).dead-letter" }

        /// The public exchange the cluster's events are published on (`drover.events`): what
        /// plugins bind their queues to, under `event.<topic>.<type>.<key>`.
        public var eventsExchange: String { "\(exchange).events" }

        func backoff(afterFailures failures: Int) -> Duration {
            let doubled = initialBackoff * (1 << min(max(failures - 1, 0), 16))
            let capped = min(doubled, maximumBackoff)
            return capped * Double.random(in: 0.5...1.0)
        }
    }
}
