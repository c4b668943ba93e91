import Foundation
import Logging
import Metrics
import Synchronization

/// Publishes on a connection of its own, on a thread of its own, with publisher confirms.
///
/// Callers hand over messages and wait; the thread sends them, pipelined up to
/// `maximumUnconfirmed`, and answers each caller when the broker has confirmed all of its
/// messages. A nack or a lost connection puts the unconfirmed messages back at the front of the
/// queue; they are sent again after reconnecting, so nothing accepted is lost.
final class AMQPPublisher: @unchecked Sendable {
    /// One caller's batch. Touched only by the publisher thread once queued.
    private final class Ticket: @unchecked Sendable {
        var remaining: Int
        var continuation: CheckedContinuation<Void, any Error>?

        init(remaining: Int, continuation: CheckedContinuation<Void, any Error>) {
            self.remaining = remaining
            self.continuation = continuation
        }

        func confirmOne() {
            remaining -= 1
            if remaining == 0 {
                continuation?.resume()
                continuation = nil
            }
        }

        func fail(_ error: any Error) {
            continuation?.resume(throwing: error)
            continuation = nil
        }
    }

    private struct Pending: Sendable {
        var message: OutgoingMessage
        var ticket: Ticket
    }

    private struct Shared {
        var queue: [Pending] = []
        var stopping = false
    }

    private let configuration: AMQPBus.Configuration
    private let logger: Logger
    private let shared = Mutex(Shared())
    private let wake = WakeSignal()
    private let exited: AsyncStream<Never>
    private let exitContinuation: AsyncStream<Never>.Continuation
    private let confirmed = Counter(label: "drover_amqp_published_total")
    private let resent = Counter(label: "drover_amqp_republished_total")
    private let link: ReconnectingConnection

    init(configuration: AMQPBus.Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        (exited, exitContinuation) = AsyncStream.makeStream(of: Never.self)
        link = ReconnectingConnection(role: "publisher", configuration: configuration, logger: logger, wake: wake) { connection throws(AMQPError) in
            try connection.declareExchange(configuration.exchange, type: "topic")
            try connection.declareExchange(configuration.deadLetterExchange, type: "topic")
            try connection.enableConfirms()
        }
        let thread = Thread { [self] in run() }
        thread.name = "drover-amqp-publisher"
        thread.start()
    }

    var isConnected: Bool { link.isConnected }

    func publish(_ messages: [OutgoingMessage]) async throws {
        guard !messages.isEmpty else { return }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let ticket = Ticket(remaining: messages.count, continuation: continuation)
            let (accepted, wasEmpty) = shared.withLock { shared -> (Bool, Bool) in
                guard !shared.stopping else { return (false, false) }
                let wasEmpty = shared.queue.isEmpty
                shared.queue.append(contentsOf: messages.map { Pending(message: $0, ticket: ticket) })
                return (true, wasEmpty)
            }
            guard accepted else { return continuation.resume(throwing: MessagingError.shutdown) }
            if wasEmpty { wake.raise() }
        }
    }

    /// Stops accepting messages, waits up to the grace period for those accepted to be
    /// confirmed, fails the rest with ``MessagingError/shutdown``, and closes the connection.
    func shutdown() async {
        shared.withLock { $0.stopping = true }
        wake.raise()
        for await _ in exited {}
    }

    // MARK: The publisher thread

    private func run() {
        var waiting = FIFO<Pending>()
        var window = ConfirmWindow<Pending>()
        var stopDeadline: ContinuousClock.Instant?

        while true {
            let (incoming, stopping) = shared.withLock { shared in
                defer { shared.queue = [] }
                return (shared.queue, shared.stopping)
            }
            waiting.append(contentsOf: incoming)
            if stopping {
                let deadline = stopDeadline ?? .now + configuration.shutdownGracePeriod
                stopDeadline = deadline
                if (waiting.isEmpty && window.isEmpty) || .now >= deadline { break }
            }
            guard let open = link.open()?.connection else { continue }
            do {
                var sent = 0
                while let next = waiting.first, window.count < configuration.maximumUnconfirmed, sent < 256 {
                    try open.publish(next.message, defaultExchange: configuration.exchange)
                    _ = waiting.popFirst()
                    _ = window.append(next)
                    sent += 1
                }
                let canSendMore = !waiting.isEmpty && window.count < configuration.maximumUnconfirmed
                _ = open.waitReadable(wake: wake, timeout: canSendMore ? .zero : .milliseconds(500))
                while let event = try open.nextConfirm() {
                    switch event {
                    case .ack(let tag, let multiple):
                        for pending in window.settle(tag: tag, multiple: multiple) {
                            confirmed.increment()
                            pending.ticket.confirmOne()
                        }
                    case .nack(let tag, let multiple):
                        let refused = window.settle(tag: tag, multiple: multiple)
                        resent.increment(by: refused.count)
                        waiting.prepend(refused)
                    }
                }
            } catch {
                let unconfirmed = window.reset()
                resent.increment(by: unconfirmed.count)
                waiting.prepend(unconfirmed)
                link.drop(after: error, metadata: ["unconfirmed": "\(unconfirmed.count)"])
            }
        }

        let abandoned =
            window.reset() + waiting.removeAll()
            + shared.withLock { shared in
                defer { shared.queue = [] }
                return shared.queue
            }
        if !abandoned.isEmpty {
            logger.error("Publisher stopped with unconfirmed messages", metadata: ["count": "\(abandoned.count)"])
        }
        abandoned.forEach { $0.ticket.fail(MessagingError.shutdown) }
        link.close()
        exitContinuation.finish()
    }
}
