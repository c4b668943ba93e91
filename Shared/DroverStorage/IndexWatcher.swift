import Foundation
import Logging
import PostgresNIO
public import ServiceLifecycle
import Synchronization

/// Follows the cluster's index (``UnitOfWork/nextIndex()`` announces each committed change on `NOTIFY
/// drover_state`) so that blocking queries (`?index=N&wait=…`) can wait for a change without
/// polling the database each. It also reads the index every `pollInterval`, in case a
/// notification was missed while its connection was down.
///
/// Indexes come from a sequence, so transactions may commit out of index order: every
/// notification wakes every waiter (a blocking query may return without a change, as Nomad's
/// may), and ``latest`` is the highest index seen committed, which is what `X-Nomad-Index`
/// reports. A change that commits with an index at or below ``latest`` would be missed by a
/// client that already holds ``latest`` and asks to wait past it; so such a late commit moves
/// ``latest`` on to a fresh index from the sequence, past every index handed out so far.
public final class IndexWatcher: Service, Sendable {
    private struct State {
        var latest: Int64 = 0
        var waiters: [UUID: (after: Int64, continuation: CheckedContinuation<Void, Never>)] = [:]
    }

    private let database: Database
    private let pollInterval: Duration
    private let state = Mutex(State())
    private var logger: Logger { database.logger }

    public init(database: Database, pollInterval: Duration = .seconds(1)) {
        self.database = database
        self.pollInterval = pollInterval
    }

    public var latest: Int64 { state.withLock { $0.latest } }

    /// Returns once the index is past `index`, or after `timeout`, or when cancelled.
    public func wait(after index: Int64, timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: timeout) }
            group.addTask { await self.changed(after: index) }
            await group.next()
            group.cancelAll()
        }
    }

    private func changed(after index: Int64) async {
        let id = UUID()
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.latest > index || Task.isCancelled { return true }
                    state.waiters[id] = (index, continuation)
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.continuation.resume()
        }
    }

    /// Records a committed change. - Parameter notified: a notification wakes every waiter;
    /// a poll only those it moves the index past.
    func advance(to index: Int64, notified: Bool = false) {
        let ready = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard notified || index > state.latest else { return [] }
            state.latest = max(state.latest, index)
            let due = notified ? state.waiters : state.waiters.filter { $0.value.after < index }
            for key in due.keys { state.waiters.removeValue(forKey: key) }
            return due.values.map(\.continuation)
        }
        for continuation in ready { continuation.resume() }
    }

    public func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.listen() }
            group.addTask {
                repeat {
                    if let index = try? await self.database.currentIndex() { self.advance(to: index) }
                } while (try? await Task.sleep(for: self.pollInterval)) != nil
            }
            try? await gracefulShutdown()
            group.cancelAll()
        }
        for waiter in state.withLock({ state in
            defer { state.waiters = [:] }; return state.waiters.values
        }) { waiter.continuation.resume() }
    }

    private func listen() async {
        while !Task.isCancelled {
            do {
                try await database.client.withConnection { connection in
                    try await connection.listen(on: "drover_state") { notifications in
                        for try await notification in notifications {
                            guard let index = Int64(notification.payload) else { continue }
                            if index <= self.latest, let fresh = try? await self.database.reserveIndex() {
                                self.advance(to: fresh, notified: true)
                            } else {
                                self.advance(to: index, notified: true)
                            }
                        }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                logger.debug("Index LISTEN connection lost; polling until it is back", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: pollInterval)
            }
        }
    }
}
