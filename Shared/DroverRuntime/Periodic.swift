public import Logging
import ServiceLifecycle

/// Runs `body` (after `delay`) at once and then every `interval()` (asked anew at each turn)
/// until graceful shutdown or cancellation; the loop of every periodic worker. A failure of
/// `body` is logged as `failure` and tried again at the next turn.
public func repeatUntilShutdown(
    every interval: @escaping @Sendable () -> Duration, after delay: Duration = .zero, logger: Logger, failure: String,
    _ body: @escaping @Sendable () async throws -> Void
) async {
    try? await cancelWhenGracefulShutdown {
        if delay > .zero { try await Task.sleep(for: delay) }
        while true {
            do {
                try await body()
            } catch let error as CancellationError {
                throw error
            } catch {
                logger.warning("\(failure); trying again", metadata: ["error": "\(error)"])
            }
            try await Task.sleep(for: interval())
        }
    }
}

/// ``repeatUntilShutdown(every:after:logger:failure:_:)`` at a fixed interval.
public func repeatUntilShutdown(
    every interval: Duration, after delay: Duration = .zero, logger: Logger, failure: String, _ body: @escaping @Sendable () async throws -> Void
) async {
    await repeatUntilShutdown(every: { interval }, after: delay, logger: logger, failure: failure, body)
}
