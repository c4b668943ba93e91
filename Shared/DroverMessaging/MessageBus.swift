public import DroverModel
public import Foundation

/// A message ready to publish: routing key, envelope metadata and the JSON body.
public struct OutgoingMessage: Sendable, Equatable {
    /// The exchange to publish to; `nil` is the bus's own topic exchange.
    public var exchange: String?
    /// Where the exchange routes it.
    public var routingKey: String
    /// The AMQP `message-id`, the envelope's `id`: consumers deduplicate on it.
    public var messageID: String
    /// The AMQP `type`, the envelope's `type`.
    public var type: String
    /// The payload's schema version (header `x-schema-version`).
    public var schemaVersion: Int
    /// When the message was made (the AMQP `timestamp`).
    public var timestamp: Date
    /// W3C trace context, carried in the `traceparent` header.
    public var traceparent: String?
    /// The whole JSON body, envelope included.
    public var body: [UInt8]
    /// Further AMQP headers, e.g. the reason a message was dead-lettered.
    public var headers: [String: String]
    /// Whether the broker must route it to a queue: a mandatory message that no queue takes is
    /// refused (``PublishRefused``) rather than dropped. Off only for advice that may be lost.
    public var mandatory: Bool

    /// A message whose body is already encoded; ``init(_:routingKey:id:time:traceparent:)`` encodes a `DroverMessage`.
    public init(
        exchange: String? = nil, routingKey: String, messageID: String, type: String, schemaVersion: Int, timestamp: Date,
        traceparent: String? = nil, body: [UInt8], headers: [String: String] = [:], mandatory: Bool = true
    ) {
        self.mandatory = mandatory
        self.exchange = exchange
        self.routingKey = routingKey
        self.messageID = messageID
        self.type = type
        self.schemaVersion = schemaVersion
        self.timestamp = timestamp
        self.traceparent = traceparent
        self.body = body
        self.headers = headers
    }

    /// Encodes `message` in a fresh envelope.
    /// - Parameters:
    ///   - message: the payload.
    ///   - routingKey: where it goes, e.g. `RoutingKey.nodeHeartbeat(nodeID)`.
    ///   - id: the message id; pass a stable one (an outbox row's) when a retry must keep it.
    ///   - time: when the message was made.
    ///   - traceparent: the W3C trace context of the operation that makes it, if any.
    /// - Throws: `EncodingError` when the payload cannot be encoded.
    public init<M: DroverMessage>(
        _ message: M, routingKey: String, id: String = UUID().uuidString.lowercased(), time: Date = Date(), traceparent: String? = nil
    ) throws {
        let envelope = MessageEnvelope(message, id: id, time: time, traceparent: traceparent)
        self.init(
            routingKey: routingKey, messageID: id, type: M.messageType, schemaVersion: M.schemaVersion, timestamp: time,
            traceparent: traceparent, body: Array(try MessageCoding.encoder().encode(envelope))
        )
    }
}

/// The kind of queue a consumer declares.
public struct QueueKind: Sendable, Hashable, CustomStringConvertible {
    let argument: String?
    /// A durable classic queue: the right choice on a single broker.
    public static let classic = QueueKind(argument: nil)
    /// A quorum queue: replicated over a RabbitMQ cluster.
    public static let quorum = QueueKind(argument: "quorum")
    public var description: String { argument ?? "classic" }
}

/// What a consumer reads: one durable queue, bound to the bus's topic exchange.
public struct ConsumerSpec: Sendable, Equatable {
    /// The queue's name. Replicas of a service that use the same name share its messages.
    public var queue: String
    /// Binding patterns: words separated by dots; `*` matches one word, `#` zero or more.
    public var bindings: [String]
    /// How many unacknowledged deliveries the broker may hand this consumer at once.
    public var prefetch: UInt16
    /// Classic or quorum; a classic spec follows the bus's ``AMQPBus/Configuration/queueKind``.
    public var kind: QueueKind
    /// Whether the queue has a dead-letter queue of its own; false for reading a dead-letter queue.
    public var deadLettering: Bool

    /// A durable queue `queue` bound to the bus's exchange with `bindings`, with a dead-letter queue of its own unless `deadLettering` is false.
    public init(queue: String, bindings: [String], prefetch: UInt16 = 100, kind: QueueKind = .classic, deadLettering: Bool = true) {
        self.queue = queue
        self.bindings = bindings
        self.prefetch = prefetch
        self.kind = kind
        self.deadLettering = deadLettering
    }

    /// Whether the queue is a dead-letter queue, declared with the bus's bounds on its length and age.
    public var isDeadLetterQueue = false

    /// Whether the consumer declares its exchanges, queues and bindings on each connection; false
    /// to read a queue someone else made (a plugin's, whose broker user may declare nothing).
    public var declaresTopology = true

    /// A spec that reads the dead-letter queue of `queue`, for operators and tests.
    public static func deadLetters(of queue: String, kind: QueueKind = .classic) -> ConsumerSpec {
        var spec = ConsumerSpec(queue: "\(queue).dead-letter", bindings: [], kind: kind, deadLettering: false)
        spec.isDeadLetterQueue = true
        return spec
    }

    /// The queue where this queue's rejected messages go.
    public var deadLetterQueue: String { "\(queue).dead-letter" }
}

/// Settles a delivery on the connection that received it.
public protocol DeliveryAcknowledger: Sendable {
    /// Applies `outcome` to `delivery`; called once per delivery.
    func settle(_ delivery: Delivery, _ outcome: Delivery.Outcome)
}

/// One message handed to a consumer. Settle it exactly once: ``ack()`` after the work it asked
/// for has committed, ``requeue()`` to have it delivered again, or ``MessageBus/deadLetter(_:reason:)``.
public struct Delivery: Sendable {
    /// How a delivery is settled.
    public enum Outcome: Sendable, Equatable {
        /// Handled: the broker forgets it.
        case ack
        /// Not handled now: the broker delivers it again.
        case requeue
        /// Dropped by the broker (or dead-lettered by the queue's own policy).
        case reject
    }

    /// The queue it was read from.
    public var queue: String
    /// The exchange it was published to.
    public var exchange: String
    /// The routing key it was published under.
    public var routingKey: String
    /// The AMQP `message-id`: for Drover's messages, the envelope's `id`.
    public var messageID: String?
    /// The AMQP `type`: for Drover's messages, the envelope's `type`.
    public var type: String?
    /// Its AMQP headers whose values are text.
    public var headers: [String: String]
    /// The message body: for Drover's messages, the JSON envelope.
    public var body: [UInt8]
    /// True when the broker delivered this message before and it was not acknowledged.
    public var redelivered: Bool
    /// The broker's tag for this delivery on its connection.
    public var deliveryTag: UInt64
    /// Which connection of the consumer received it; a settlement for an older one is dropped,
    /// since the broker has already requeued the message.
    public var connectionGeneration: UInt64
    /// The publisher's broker user (`user-id`, which the broker validated), when it set one.
    public var userID: String?
    let acknowledger: any DeliveryAcknowledger

    /// A delivery as the broker handed it over; `acknowledger` settles it on the connection it came from.
    public init(
        queue: String, exchange: String, routingKey: String, messageID: String?, type: String?, headers: [String: String],
        body: [UInt8], redelivered: Bool, deliveryTag: UInt64, connectionGeneration: UInt64, acknowledger: any DeliveryAcknowledger,
        userID: String? = nil
    ) {
        self.userID = userID
        self.queue = queue
        self.exchange = exchange
        self.routingKey = routingKey
        self.messageID = messageID
        self.type = type
        self.headers = headers
        self.body = body
        self.redelivered = redelivered
        self.deliveryTag = deliveryTag
        self.connectionGeneration = connectionGeneration
        self.acknowledger = acknowledger
    }

    /// Done with: the broker forgets it. Call it once the work it asked for has committed.
    public func ack() { acknowledger.settle(self, .ack) }
    /// Not handled now: the broker delivers it again, to this consumer or another.
    public func requeue() { acknowledger.settle(self, .requeue) }
    /// Refused: the broker drops it, or moves it to the queue's dead-letter queue when it has one.
    public func reject() { acknowledger.settle(self, .reject) }
}

/// AMQP headers Drover sets on a dead-lettered copy.
public enum DeadLetterHeader {
    /// Why the message was refused, in words.
    public static let reason = "x-drover-reason"
    /// The routing key the message was first published with.
    public static let originalRoutingKey = "x-drover-original-routing-key"
    /// The queue that refused it.
    public static let queue = "x-drover-queue"
}

/// The bus services talk over: a topic exchange with confirmed publishes and acknowledged consumes.
public protocol MessageBus: Sendable {
    /// Publishes `messages` and returns once the broker has confirmed every one of them.
    ///
    /// A publish that is not confirmed (the broker refused it or the connection dropped) is sent
    /// again until it is, so a message may arrive twice but is never lost once this returns.
    /// - Throws: ``PublishRefused`` naming the messages that no queue took (mandatory ones) or
    ///   that are too large, once every other one is confirmed; ``MessagingError/shutdown`` when
    ///   the bus stops before all are confirmed; ``MessagingError/overloaded(limit:)`` when too
    ///   many messages wait already.
    func publish(_ messages: [OutgoingMessage]) async throws

    /// Declares `spec`'s queue and bindings and streams its deliveries until the bus shuts down
    /// or the caller stops iterating. Returns once the bindings exist, so that a message
    /// published afterwards reaches the queue; while the broker is unreachable it keeps trying.
    func subscribe(_ spec: ConsumerSpec) async throws -> AsyncStream<Delivery>

    /// Moves `delivery` to its queue's dead-letter queue with `reason` in the
    /// ``DeadLetterHeader/reason`` header, then acknowledges it.
    func deadLetter(_ delivery: Delivery, reason: String) async throws

    /// Publishes a copy of `delivery` to its own queue only, with `failures` in the
    /// ``RetryHeader/failures`` header and `error` as the last error, then acknowledges it. The
    /// copy is delivered with the original's routing key, exchange and publisher.
    func retry(_ delivery: Delivery, failures: Int, error: String) async throws
}

extension MessageBus {
    /// Publishes one message, as ``publish(_:)`` publishes several.
    public func publish(_ message: OutgoingMessage) async throws {
        try await publish([message])
    }

    /// Publishes `message` under `routingKey`; see ``OutgoingMessage/mandatory``.
    public func publish<M: DroverMessage>(_ message: M, routingKey: String, mandatory: Bool = true) async throws {
        var outgoing = try OutgoingMessage(message, routingKey: routingKey)
        outgoing.mandatory = mandatory
        try await publish([outgoing])
    }
}

extension OutgoingMessage {
    /// The copy of `delivery` that goes to its queue's dead-letter queue.
    public static func deadLetter(of delivery: Delivery, reason: String, exchange: String) -> OutgoingMessage {
        var headers = delivery.headers
        headers[DeadLetterHeader.reason] = reason
        headers[DeadLetterHeader.originalRoutingKey] = delivery.routingKey
        headers[DeadLetterHeader.queue] = delivery.queue
        return OutgoingMessage(
            exchange: exchange, routingKey: delivery.queue, messageID: delivery.messageID ?? UUID().uuidString.lowercased(),
            type: delivery.type ?? "unknown", schemaVersion: Int(delivery.headers["x-schema-version"] ?? "") ?? 0, timestamp: Date(),
            traceparent: delivery.headers["traceparent"], body: delivery.body, headers: headers
        )
    }
}

/// Messages of one ``MessageBus/publish(_:)`` call that the broker did not take; every other
/// message of the call was confirmed.
public struct PublishRefused: Error, CustomStringConvertible, Equatable {
    /// The ids of mandatory messages no queue was bound to take.
    public var unroutable: [String]
    /// The ids of messages larger than the broker accepts; none of them was sent.
    public var tooLarge: [String]

    /// The messages refused, by id.
    public init(unroutable: [String] = [], tooLarge: [String] = []) {
        self.unroutable = unroutable
        self.tooLarge = tooLarge
    }

    public var description: String {
        var parts: [String] = []
        if !unroutable.isEmpty {
            parts.append("\(unroutable.count) message(s) no queue is bound to take (\(unroutable.prefix(5).joined(separator: ", ")))")
        }
        if !tooLarge.isEmpty {
            parts.append("\(tooLarge.count) message(s) larger than the broker accepts (\(tooLarge.prefix(5).joined(separator: ", ")))")
        }
        return "not published: " + parts.joined(separator: "; ")
    }
}

/// Errors of the bus, each with what happened and what to do.
public enum MessagingError: Error, CustomStringConvertible, Equatable {
    /// The AMQP URL is not one; `reason` says why.
    case invalidURL(String, reason: String)
    /// A binding pattern that is not dot-separated words, `*` and `#`.
    case invalidBinding(String)
    /// The broker could not be reached or refused the connection.
    case connectionFailed(String)
    /// The bus stopped before the broker confirmed the message.
    case shutdown
    /// More messages wait to be published than the bus holds; the caller should retry later.
    case overloaded(limit: Int)

    public var description: String {
        switch self {
        case .invalidURL(let url, let reason):
            "invalid AMQP URL '\(url)': \(reason); expected amqp://USER:PASSWORD@HOST:PORT[/VHOST]"
        case .invalidBinding(let pattern):
            "invalid binding pattern '\(pattern)': use dot-separated words, '*' for one word and '#' for any number"
        case .connectionFailed(let reason): "AMQP connection failed: \(reason)"
        case .shutdown: "the message bus is shut down; the message was not confirmed"
        case .overloaded(let limit): "\(limit) messages already wait to be published (is the broker reachable?); try again later"
        }
    }
}
