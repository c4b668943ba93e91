public import Foundation

/// How a consumer treats a handler that fails.
///
/// - An **outage** (``isOutage``: the database or the broker is away) is no fault of the
///   message. The consumer keeps it and tries it again, backing off with jitter up to
///   ``maximumDelay``, for as long as the outage lasts. No attempt is counted.
/// - Any **other failure** counts an attempt. The message is published again to its own queue
///   with the count in the ``RetryHeader/failures`` header after a backoff; once it has failed
///   ``maximumAttempts`` times it is dead-lettered with the last error as the reason.
public struct RetryPolicy: Sendable {
    /// Deliveries a message gets before it is dead-lettered, the first included; at least 1.
    public var maximumAttempts: Int
    /// The wait after the first failure; it doubles with each further one.
    public var initialDelay: Duration
    /// The longest wait between two tries.
    public var maximumDelay: Duration
    /// Whether an error means a dependency is away rather than the message is at fault.
    public var isOutage: @Sendable (any Error) -> Bool

    /// A policy; out-of-range values are raised to their least (one attempt, no negative delay).
    public init(
        maximumAttempts: Int = 5, initialDelay: Duration = .milliseconds(200), maximumDelay: Duration = .seconds(30),
        isOutage: @escaping @Sendable (any Error) -> Bool = RetryPolicy.isBusOutage
    ) {
        self.maximumAttempts = max(1, maximumAttempts)
        self.initialDelay = max(initialDelay, .zero)
        self.maximumDelay = max(maximumDelay, .zero)
        self.isOutage = isOutage
    }

    /// The wait after `failures` failures in a row: `initialDelay` doubled for each failure after
    /// the first, capped at `maximumDelay`, then drawn uniformly from its upper half, so that
    /// consumers that failed together do not retry together.
    public func delay(afterFailures failures: Int, random: Double = Double.random(in: 0...1)) -> Duration {
        let doublings = min(max(failures - 1, 0), 30)
        let capped = min(initialDelay * (1 << doublings), maximumDelay)
        return capped * (0.5 + 0.5 * min(max(random, 0), 1))
    }

    /// The bus's own outages: it is shut down or cannot reach the broker.
    public static let isBusOutage: @Sendable (any Error) -> Bool = { error in
        switch error as? MessagingError {
        case .shutdown, .connectionFailed: true
        default: false
        }
    }
}

/// AMQP headers of a message that failed and is tried again.
public enum RetryHeader {
    /// How many times it has failed so far.
    public static let failures = "x-drover-failures"
    /// The last failure, in words.
    public static let lastError = "x-drover-last-error"
    /// The routing key it was first published with (the retry goes straight to the queue).
    public static let routingKey = "x-drover-retry-routing-key"
    /// The exchange it was first published to.
    public static let exchange = "x-drover-retry-exchange"
    /// The broker user that first published it.
    public static let userID = "x-drover-retry-user-id"
}

extension Delivery {
    /// How many times this message has failed before, from ``RetryHeader/failures`` (0 when
    /// absent or not a count).
    public var failures: Int {
        guard let text = headers[RetryHeader.failures], let count = Int(text), count > 0 else { return 0 }
        return count
    }

    /// A delivery of a retried copy as the original was delivered: its routing key, exchange
    /// and publisher. Only a copy that came through the default exchange is one: publishing
    /// there needs a permission that node users do not have.
    func restoringRetried() -> Delivery {
        guard exchange.isEmpty, let routingKey = headers[RetryHeader.routingKey] else { return self }
        var original = self
        original.routingKey = routingKey
        original.exchange = headers[RetryHeader.exchange] ?? ""
        original.userID = headers[RetryHeader.userID]
        return original
    }
}

extension OutgoingMessage {
    /// The copy of `delivery` that is delivered again, through the default exchange, to its own
    /// queue only, with its failures counted.
    public static func retry(of delivery: Delivery, failures: Int, error: String) -> OutgoingMessage {
        var headers = delivery.headers
        headers.removeValue(forKey: "x-schema-version")
        headers.removeValue(forKey: "traceparent")
        headers[RetryHeader.failures] = String(failures)
        headers[RetryHeader.lastError] = String(error.prefix(1000))
        headers[RetryHeader.routingKey] = delivery.routingKey
        headers[RetryHeader.exchange] = delivery.exchange
        headers[RetryHeader.userID] = delivery.userID
        return OutgoingMessage(
            exchange: "", routingKey: delivery.queue, messageID: delivery.messageID ?? UUID().uuidString.lowercased(),
            type: delivery.type ?? "unknown", schemaVersion: Int(delivery.headers["x-schema-version"] ?? "") ?? 0, timestamp: Date(),
            traceparent: delivery.headers["traceparent"], body: delivery.body, headers: headers)
    }
}
