public import DroverMessaging
import Foundation
public import Logging
public import PostgresNIO
import Synchronization

/// One transaction of ``Database/transaction(_:)``: its connection, and the messages it will
/// send once it commits (the transactional outbox, made visible at the call site).
///
/// ``send(_:)`` only collects a message. The outbox rows of the messages collected so far are
/// written with the next ``execute(_:)``, in the same statement as its writes, so that they cost
/// no round trip of their own; whatever is left is written just before the commit. A message
/// is published after the commit, never when the transaction rolls back.
///
/// Repositories over this transaction: ``jobs``, ``nodes``, ``evaluations``, ``allocations``,
/// ``users``.
public final class UnitOfWork: Sendable {
    public let connection: PostgresConnection
    public let logger: Logger
    /// Whether this process's relay runs: the rows are then claimed for it as they are written,
    /// and handed to it at commit (see ``OutboxRelay``).
    let claimsForRelay: Bool
    private let messages = Mutex<(unwritten: [OutgoingMessage], written: [OutgoingMessage])>(([], []))

    init(connection: PostgresConnection, logger: Logger, claimsForRelay: Bool) {
        self.connection = connection
        self.logger = logger
        self.claimsForRelay = claimsForRelay
    }

    /// Sends `messages` once the transaction commits.
    public func send(_ messages: [OutgoingMessage]) {
        guard !messages.isEmpty else { return }
        self.messages.withLock { $0.unwritten += messages }
    }

    /// Sends `message` once the transaction commits.
    public func send(_ message: OutgoingMessage) { send([message]) }

    /// Runs `query` in the transaction.
    @discardableResult
    public func query(_ query: PostgresQuery) async throws -> PostgresRowSequence {
        try await connection.query(query, logger: logger)
    }

    /// Runs `writes`, with the outbox rows of the messages sent so far, as one statement.
    public func execute(_ writes: SQLWrites) async throws {
        var writes = writes
        try addUnwritten(to: &writes)
        try await writes.run(on: connection, logger: logger)
    }

    /// Runs `writes`, the outbox rows of the messages sent so far and `select` as one statement
    /// (see ``SQLWrites/run(on:logger:selecting:)``). - Returns: the select's rows.
    public func execute(_ writes: SQLWrites, selecting select: SQLClause) async throws -> PostgresRowSequence {
        var writes = writes
        try addUnwritten(to: &writes)
        return try await writes.run(on: connection, logger: logger, selecting: select)
    }

    /// Runs `body`, work that takes long between two queries (planning, say), on the concurrency
    /// pool rather than on the connection's event loop, which the transaction's queries run on
    /// (see ``Database/transaction(_:)``) and which other connections share.
    public func compute<Result: Sendable>(_ body: @Sendable () -> Result) async -> Result {
        await withTaskExecutorPreference(globalConcurrentExecutor) { body() }
    }

    /// Takes the next index of the cluster's state (Nomad's Raft index), announced to blocking
    /// queries (`NOTIFY drover_state`) when the transaction commits.
    public func nextIndex() async throws -> Int64 {
        var index: Int64 = 0
        for try await (value, _) in try await query(
            "SELECT index, pg_notify('drover_state', index::text) IS NULL FROM (SELECT nextval('drover_index') AS index) AS next"
        ).decode((Int64, Bool).self) {
            index = value
        }
        return index
    }

    /// Takes the advisory lock named `name` for the rest of the transaction, if no other
    /// transaction holds it. - Returns: whether it was taken.
    public func tryLock(_ name: String) async throws -> Bool {
        for try await taken in try await query("SELECT pg_try_advisory_xact_lock(hashtextextended(\(name), 0))").decode(Bool.self) {
            return taken
        }
        return false
    }

    /// Writes the outbox rows of the messages not written yet: just before the commit.
    func flush() async throws {
        var writes = SQLWrites()
        try addUnwritten(to: &writes)
        try await writes.run(on: connection, logger: logger)
    }

    /// The messages written to the outbox: what the relay publishes once the transaction commits.
    var written: [OutgoingMessage] { messages.withLock { $0.written } }

    private func addUnwritten(to writes: inout SQLWrites) throws {
        let unwritten = messages.withLock { state in
            defer {
                state.written += state.unwritten
                state.unwritten = []
            }
            return state.unwritten
        }
        try Outbox.enqueue(unwritten, claimed: claimsForRelay, into: &writes)
    }

    // MARK: Repositories over this transaction

    public var jobs: JobRepository { JobRepository(SQLRunner(self)) }
    public var nodes: NodeRepository { NodeRepository(SQLRunner(self)) }
    public var evaluations: EvaluationRepository { EvaluationRepository(SQLRunner(self)) }
    public var allocations: AllocationRepository { AllocationRepository(SQLRunner(self)) }
    public var users: UserRepository { UserRepository(SQLRunner(self)) }
}

/// Where a repository's statements run: on the pool (each statement on its own, for reads) or
/// in a ``UnitOfWork``'s transaction.
public struct SQLRunner: Sendable {
    private enum Target: Sendable {
        case pool(PostgresClient)
        case transaction(PostgresConnection)
    }

    private let target: Target
    let logger: Logger

    init(_ database: Database) {
        target = .pool(database.client)
        logger = database.logger
    }

    init(_ work: UnitOfWork) {
        target = .transaction(work.connection)
        logger = work.logger
    }

    @discardableResult
    func query(_ query: PostgresQuery) async throws -> PostgresRowSequence {
        switch target {
        case .pool(let client): try await client.query(query, logger: logger)
        case .transaction(let connection): try await connection.query(query, logger: logger)
        }
    }
}

extension Database {
    // MARK: Repositories over the pool, for reads

    public var jobs: JobRepository { JobRepository(SQLRunner(self)) }
    public var nodes: NodeRepository { NodeRepository(SQLRunner(self)) }
    public var evaluations: EvaluationRepository { EvaluationRepository(SQLRunner(self)) }
    public var allocations: AllocationRepository { AllocationRepository(SQLRunner(self)) }
    public var users: UserRepository { UserRepository(SQLRunner(self)) }

    /// The newest index handed out: what `X-Nomad-Index` says.
    public func currentIndex() async throws -> Int64 {
        let rows = try await client.query("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM drover_index", logger: logger)
        for try await value in rows.decode(Int64.self) { return value }
        return 0
    }

    /// A new index that no change uses: past every index handed out so far.
    public func reserveIndex() async throws -> Int64 {
        let rows = try await client.query("SELECT nextval('drover_index')", logger: logger)
        var index: Int64 = 0
        for try await value in rows.decode(Int64.self) { index = value }
        return index
    }
}

/// JSON as the state tables hold it (`spec` columns): sorted keys, so equal values are equal text.
enum JSONColumn {
    static func encode(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        try JSONDecoder().decode(type, from: Data(text.utf8))
    }

    /// A `LIKE` pattern matching what starts with `prefix`.
    static func likePrefix(_ prefix: String) -> String {
        prefix.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%").replacingOccurrences(of: "_", with: "\\_")
            + "%"
    }

    static func milliseconds(_ duration: Duration) -> Int64 { Int64((duration.timeInterval * 1000).rounded()) }
}
