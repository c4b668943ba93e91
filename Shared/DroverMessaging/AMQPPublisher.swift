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
    /// One `publish` call's messages: it returns when all are confirmed, one fails, or its task
    /// is cancelled, whichever comes first.
    private final class Ticket: Sendable {
        private struct State {
            var remaining: Int
            var continuation: CheckedContinuation<Void, any Error>?
        }
        private let state: Mutex<State>

        init(remaining: Int) {
            state = Mutex(State(remaining: remaining, continuation: nil))
        }

        /// Hands over the caller's continuation, resumed by whichever of confirm, failure or cancellation comes first.
        func attach(_ continuation: CheckedContinuation<Void, any Error>) {
            state.withLock { $0.continuation = continuation }
        }

        func confirmOne() {
            state.withLock { state in
                state.remaining -= 1
                if state.remaining == 0 {
                    state.continuation?.resume()
                    state.continuation = nil
                }
            }
        }

        func fail(_ error: any Error) {
            state.withLock { state in
                state.continuation?.resume(throwing: error)
                state.continuation = nil
            }
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
            try connection.declareExchange(configuration.exchange, type: "topic", passive: !configuration.declaresExchanges)
            try connection.declareExchange(configuration.deadLetterExchange, type: "topic", passive: !configuration.declaresExchanges)
            try connection.enableConfirms()
        }
        let thread = Thread { [self] in run() }
        thread.name = "drover-amqp-publisher"
        thread.start()
    }

    var isConnected: Bool { link.isConnected }

    /// Returns once every message is confirmed. Cancelling the calling task makes it throw
    /// `CancellationError` at once (a service stopping while the broker is unreachable); the
    /// messages may still be published.
    func publish(_ messages: [OutgoingMessage]) async throws {
        guard !messages.isEmpty else { return }
        let ticket = Ticket(remaining: messages.count)
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                ticket.attach(continuation)
                if Task.isCancelled { return ticket.fail(CancellationError()) }
                let (accepted, wasEmpty) = shared.withLock { shared -> (Bool, Bool) in
                    guard !shared.stopping else { return (false, false) }
                    let wasEmpty = shared.queue.isEmpty
                    shared.queue.append(contentsOf: messages.map { Pending(message: $0, ticket: ticket) })
                    return (true, wasEmpty)
                }
                guard accepted else { return ticket.fail(MessagingError.shutdown) }
                if wasEmpty { wake.raise() }
            }
        } onCancel: {
            ticket.fail(CancellationError())
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
