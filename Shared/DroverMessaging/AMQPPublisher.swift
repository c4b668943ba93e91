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
    /// One `publish` call's messages: it returns when all are settled (confirmed, or refused as
    /// unroutable or too large), one fails, or its task is cancelled, whichever comes first.
    private final class Ticket: Sendable {
        enum Outcome {
            case confirmed
            case unroutable(String)
            case tooLarge(String)
        }

        private struct State {
            var remaining: Int
            var refused = PublishRefused()
            var continuation: CheckedContinuation<Void, any Error>?
        }
        private let state: Mutex<State>

        init(remaining: Int) {
            state = Mutex(State(remaining: remaining, continuation: nil))
        }

        /// Hands over the caller's continuation, resumed by whichever of the last settlement, a
        /// failure or cancellation comes first.
        func attach(_ continuation: CheckedContinuation<Void, any Error>) {
            state.withLock { $0.continuation = continuation }
        }

        func settleOne(_ outcome: Outcome) {
            state.withLock { state in
                switch outcome {
                case .confirmed: break
                case .unroutable(let id): state.refused.unroutable.append(id)
                case .tooLarge(let id): state.refused.tooLarge.append(id)
                }
                state.remaining -= 1
                guard state.remaining == 0 else { return }
                if state.refused == PublishRefused() {
                    state.continuation?.resume()
                } else {
                    state.continuation?.resume(throwing: state.refused)
                }
                state.continuation = nil
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
    private let unroutable = Counter(label: "drover_amqp_unroutable_total")
    private let tooLarge = Counter(label: "drover_amqp_too_large_total")
    /// Messages accepted and not yet settled: bounded by `maximumQueued`.
    private let outstanding = Atomic<Int>(0)
    private let link: ReconnectingConnection

    init(configuration: AMQPBus.Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        (exited, exitContinuation) = AsyncStream.makeStream(of: Never.self)
        link = ReconnectingConnection(role: "publisher", configuration: configuration, logger: logger, wake: wake) { connection throws(AMQPError) in
            try connection.declareExchange(configuration.exchange, type: "topic", passive: !configuration.declaresExchanges)
            try connection.declareExchange(configuration.deadLetterExchange, type: "topic", passive: !configuration.declaresExchanges)
            try connection.declareExchange(configuration.eventsExchange, type: "topic", passive: !configuration.declaresExchanges)
            try connection.enableConfirms()
        }
        let thread = Thread { [self] in run() }
        thread.name = "drover-amqp-publisher"
        thread.start()
    }

    var isConnected: Bool { link.isConnected }

    /// Returns once every message is confirmed, or throws ``PublishRefused`` for those the broker
    /// did not take once the rest are. Cancelling the calling task makes it throw
    /// `CancellationError` at once (a service stopping while the broker is unreachable); the
    /// messages may still be published.
    func publish(_ messages: [OutgoingMessage]) async throws {
        guard !messages.isEmpty else { return }
        let limit = configuration.maximumQueued
        guard outstanding.add(messages.count, ordering: .relaxed).newValue <= limit else {
            outstanding.subtract(messages.count, ordering: .relaxed)
            throw MessagingError.overloaded(limit: limit)
        }
        let ticket = Ticket(remaining: messages.count)
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                ticket.attach(continuation)
                if Task.isCancelled {
                    outstanding.subtract(messages.count, ordering: .relaxed)
                    return ticket.fail(CancellationError())
                }
                let (accepted, wasEmpty) = shared.withLock { shared -> (Bool, Bool) in
                    guard !shared.stopping else { return (false, false) }
                    let wasEmpty = shared.queue.isEmpty
                    shared.queue.append(contentsOf: messages.map { Pending(message: $0, ticket: ticket) })
                    return (true, wasEmpty)
                }
                guard accepted else {
                    outstanding.subtract(messages.count, ordering: .relaxed)
                    return ticket.fail(MessagingError.shutdown)
                }
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
        // Ids of returned messages whose confirm is still to come, and how many of each.
        var returned: [String: Int] = [:]
        var sizeLimit = configuration.maximumMessageBytes

        func settle(_ pending: Pending, _ outcome: Ticket.Outcome) {
            outstanding.subtract(1, ordering: .relaxed)
            pending.ticket.settleOne(outcome)
        }

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
                    _ = waiting.popFirst()
                    guard next.message.body.count <= sizeLimit else {
                        logger.error(
                            "Message larger than the broker takes; not sent",
                            metadata: [
                                "message_id": "\(next.message.messageID)", "routing_key": "\(next.message.routingKey)",
                                "bytes": "\(next.message.body.count)", "limit": "\(sizeLimit)",
                            ])
                        tooLarge.increment()
                        settle(next, .tooLarge(next.message.messageID))
                        continue
                    }
                    do {
                        try open.publish(next.message, defaultExchange: configuration.exchange, mandatory: next.message.mandatory)
                    } catch {
                        waiting.prepend([next])
                        throw error
                    }
                    _ = window.append(next)
                    sent += 1
                }
                let canSendMore = !waiting.isEmpty && window.count < configuration.maximumUnconfirmed
                _ = open.waitReadable(wake: wake, timeout: canSendMore ? .zero : .milliseconds(500))
                while let event = try open.nextConfirm() {
                    switch event {
                    case .ack(let tag, let multiple):
                        for pending in window.settle(tag: tag, multiple: multiple) {
                            let id = pending.message.messageID
                            if let count = returned[id] {
                                returned[id] = count > 1 ? count - 1 : nil
                                unroutable.increment()
                                logger.warning(
                                    "No queue is bound to take a message; it was not delivered",
                                    metadata: ["message_id": "\(id)", "routing_key": "\(pending.message.routingKey)"])
                                settle(pending, .unroutable(id))
                            } else {
                                confirmed.increment()
                                settle(pending, .confirmed)
                            }
                        }
                    case .nack(let tag, let multiple):
                        let refused = window.settle(tag: tag, multiple: multiple)
                        for pending in refused { returned[pending.message.messageID] = nil }
                        resent.increment(by: refused.count)
                        waiting.prepend(refused)
                    case .returned(let messageID, _):
                        returned[messageID, default: 0] += 1
                    }
                }
            } catch {
                let unconfirmed = window.reset()
                returned = [:]
                resent.increment(by: unconfirmed.count)
                waiting.prepend(unconfirmed)
                if let brokerLimit = Self.brokerSizeLimit(in: String(describing: error)), brokerLimit < sizeLimit {
                    // The broker closed the channel over a message's size: learn its limit, so that
                    // the message is refused on the next pass instead of sent for ever.
                    logger.warning("The broker takes smaller messages than configured", metadata: ["limit": "\(brokerLimit)"])
                    sizeLimit = brokerLimit
                }
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
        for pending in abandoned {
            outstanding.subtract(1, ordering: .relaxed)
            pending.ticket.fail(MessagingError.shutdown)
        }
        link.close()
        exitContinuation.finish()
    }

    /// The size limit in RabbitMQ's refusal of a message too large ("message size 2000 is
    /// larger than configured max size 1024"), if `text` is one.
    static func brokerSizeLimit(in text: String) -> Int? {
        guard let range = text.range(of: "larger than configured max size ") else { return nil }
        return Int(text[range.upperBound...].prefix { $0.isNumber })
    }
}
