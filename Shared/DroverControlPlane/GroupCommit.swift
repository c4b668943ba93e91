import Synchronization

/// Group commit: calls made while a batch is being written become the next batch, written
/// together (one transaction for many requests, as a database's group commit shares one flush).
///
/// A lone call is written at once, alone, in its caller's task; under load each batch is what
/// arrived during the one before, up to `limit`. When a whole batch throws, its calls are tried again one by one, so
/// that a call that cannot be written fails alone. At most `maximumWaiting` calls wait; past
/// that a call fails at once with ``ControlPlaneError/overloaded(_:)``.
public final class GroupCommit<Input: Sendable, Output: Sendable>: Sendable {
    public typealias Write = @Sendable ([Input]) async throws -> [Result<Output, any Error>]
    private typealias Waiter = (input: Input, continuation: CheckedContinuation<Output, any Error>)

    private let limit: Int
    private let maximumWaiting: Int
    private let write: Write
    private let state = Mutex<(waiting: [Waiter], writing: Bool)>(([], false))

    /// - Parameter write: writes a batch; returns one result per input, in order.
    public init(limit: Int, maximumWaiting: Int = 10_000, write: @escaping Write) {
        precondition(limit > 0, "a batch holds one call at least")
        self.limit = limit
        self.maximumWaiting = max(maximumWaiting, 1)
        self.write = write
    }

    /// Adds `input` to the next batch. - Returns: its output once the batch is written.
    public func call(_ input: Input) async throws -> Output {
        // Nothing being written: write this call at once, in the caller's own task.
        let alone = state.withLock { state in
            defer { state.writing = true }
            return !state.writing
        }
        if alone {
            defer { writeWaiting() }
            return try await write([input]).first?.get() ?? { throw GroupCommitError.resultCount(expected: 1, got: 0) }()
        }
        return try await withCheckedThrowingContinuation { continuation in
            let lead = state.withLock { state -> Bool? in
                guard state.waiting.count < maximumWaiting else { return nil }
                state.waiting.append((input, continuation))
                defer { state.writing = true }
                return !state.writing
            }
            guard let lead else {
                return continuation.resume(throwing: ControlPlaneError.overloaded("\(maximumWaiting) writes wait already"))
            }
            // The writing ended meanwhile: start a writer, which runs until nothing waits.
            if lead { Task { await writeAll() } }
        }
    }

    /// After a call written alone: a writer for the calls that arrived meanwhile, if any.
    private func writeWaiting() {
        let waiting = state.withLock { state in
            if state.waiting.isEmpty { state.writing = false }
            return !state.waiting.isEmpty
        }
        if waiting { Task { await writeAll() } }
    }

    private func writeAll() async {
        while let batch = next() {
            do {
                let results = try await write(batch.map(\.input))
                guard results.count == batch.count else { throw GroupCommitError.resultCount(expected: batch.count, got: results.count) }
                for (waiter, result) in zip(batch, results) { waiter.continuation.resume(with: result) }
            } catch {
                guard batch.count > 1 else {
                    batch[0].continuation.resume(throwing: error)
                    continue
                }
                for waiter in batch {
                    do {
                        let result = try await write([waiter.input])
                        waiter.continuation.resume(with: result.first ?? .failure(GroupCommitError.resultCount(expected: 1, got: 0)))
                    } catch {
                        waiter.continuation.resume(throwing: error)
                    }
                }
            }
        }
    }

    /// How many calls wait for a batch (for tests).
    var waitingCount: Int { state.withLock { $0.waiting.count } }

    /// Whether a batch is being written (for tests).
    var isWriting: Bool { state.withLock { $0.writing } }

    /// The calls waiting, up to `limit`; nil (and no writer) when none wait.
    private func next() -> [Waiter]? {
        state.withLock { state in
            guard !state.waiting.isEmpty else {
                state.writing = false
                return nil
            }
            let batch = Array(state.waiting.prefix(limit))
            state.waiting.removeFirst(batch.count)
            return batch
        }
    }
}

/// A write that broke its contract.
enum GroupCommitError: Error, CustomStringConvertible {
    case resultCount(expected: Int, got: Int)

    var description: String {
        switch self {
        case .resultCount(let expected, let got): "a group commit's write returned \(got) results for \(expected) calls"
        }
    }
}
