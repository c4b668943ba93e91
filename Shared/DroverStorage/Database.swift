import DroverMessaging
import Foundation
public import Logging
import NIOSSL
public import PostgresNIO

/// Errors of the storage layer, each naming the input and what to do.
public enum StorageError: Error, CustomStringConvertible, Equatable {
    case invalidURL(String, reason: String)

    public var description: String {
        switch self {
        case .invalidURL(let url, let reason):
            "invalid PostgreSQL URL '\(url)': \(reason); expected postgres://USER:PASSWORD@HOST:PORT/DATABASE[?sslmode=disable|prefer|require]"
        }
    }
}

/// The PostgreSQL database that holds Drover's state: a pooled PostgresNIO client plus the
/// schema it expects. Run ``client`` in the service's `ServiceGroup`, then ``migrate()``.
public struct Database: Sendable {
    public let client: PostgresClient
    public let logger: Logger
    /// Where a transaction's outbox messages go once it commits, while this process's
    /// ``OutboxRelay`` runs.
    let outboxHandOff = OutboxHandOff()

    /// - Parameters:
    ///   - url: `postgres://USER:PASSWORD@HOST:PORT/DATABASE`, with an optional `sslmode` of
    ///     `disable` (the default), `prefer`, `require`, `verify-ca` or `verify-full`, as libpq
    ///     reads them, and `sslrootcert=PATH`, the roots a server's certificate must chain to
    ///     (the system's by default).
    ///   - applicationName: what PostgreSQL shows as the connections' `application_name`
    ///     (`pg_stat_activity`, the server log's `%a`): the service's name.
    /// - Throws: ``StorageError/invalidURL(_:reason:)``.
    public init(url: String, maximumConnections: Int = 20, applicationName: String? = nil, logger: Logger) throws {
        var configuration = try Self.configuration(url: url)
        configuration.options.maximumConnections = maximumConnections
        if let applicationName { configuration.options.additionalStartupParameters = [("application_name", applicationName)] }
        self.client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.logger = logger
    }

    static func configuration(url: String) throws -> PostgresClient.Configuration {
        guard let components = URLComponents(string: url) else { throw StorageError.invalidURL(url, reason: "not a URL") }
        guard components.scheme == "postgres" || components.scheme == "postgresql" else {
            throw StorageError.invalidURL(url, reason: "the scheme must be postgres")
        }
        guard let host = components.host, !host.isEmpty else { throw StorageError.invalidURL(url, reason: "no host") }
        guard let user = components.user, !user.isEmpty else { throw StorageError.invalidURL(url, reason: "no user") }
        let database = String(components.path.drop { $0 == "/" })
        guard !database.isEmpty else { throw StorageError.invalidURL(url, reason: "no database name") }
        let query = components.queryItems ?? []
        var trust = TLSConfiguration.makeClientConfiguration()
        if let roots = query.first(where: { $0.name == "sslrootcert" })?.value {
            guard roots.hasPrefix("/"), FileManager.default.isReadableFile(atPath: roots) else {
                throw StorageError.invalidURL(url, reason: "sslrootcert '\(roots)' is not a readable file given by its full path")
            }
            trust.trustRoots = .file(roots)
        }
        // As libpq reads sslmode: require encrypts without checking whom it talks to; verify-ca
        // checks the server's certificate chains to a trusted root; verify-full also checks its
        // name against the host.
        // libpq's rule: require with a root certificate given verifies as verify-ca does.
        var mode = query.first(where: { $0.name == "sslmode" })?.value ?? "disable"
        if mode == "require" && query.contains(where: { $0.name == "sslrootcert" }) { mode = "verify-ca" }
        let tls: PostgresClient.Configuration.TLS
        switch mode {
        case "disable": tls = .disable
        case "prefer":
            trust.certificateVerification = .none
            tls = try .prefer(trust)
        case "require":
            trust.certificateVerification = .none
            tls = try .require(trust)
        case "verify-ca":
            trust.certificateVerification = .noHostnameVerification
            tls = try .require(trust)
        case "verify-full":
            trust.certificateVerification = .fullVerification
            tls = try .require(trust)
        case let other:
            throw StorageError.invalidURL(url, reason: "sslmode '\(other)' is not one of disable, prefer, require, verify-ca, verify-full")
        }
        return PostgresClient.Configuration(
            host: host, port: components.port ?? 5432, username: user.removingPercentEncoding ?? user,
            password: components.password?.removingPercentEncoding, database: database, tls: tls)
    }

    /// Applies the migrations this build knows and the database has not seen. See ``Migrator``.
    @discardableResult
    public func migrate() async throws -> [Int] {
        try await Migrator(migrations: DroverSchema.migrations).migrate(client, logger: logger)
    }

    /// Runs `body` in a transaction, handed to it as a ``UnitOfWork``: commits when it returns,
    /// rolls back when it throws.
    ///
    /// Unlike `PostgresClient.withTransaction`, an error thrown by `body` comes out as itself
    /// once the rollback succeeded (so a caller can still match, say, `MessageRejected`); only a
    /// failure of `BEGIN`, `COMMIT` or `ROLLBACK` comes out as `PostgresTransactionError`.
    ///
    /// The messages the body sends (``UnitOfWork/send(_:)``) are written to the outbox in the
    /// transaction. While this process's ``OutboxRelay`` runs, they are claimed by it as they are
    /// written and handed to it when the transaction commits, so that they are published at once
    /// rather than when a relay wakes and finds them.
    public func transaction<Result: Sendable>(_ body: (UnitOfWork) async throws -> Result) async throws -> Result {
        let claims = outboxHandOff.isAttached
        var attempt = 1
        let (result, messages): (Result, [OutgoingMessage])
        while true {
            do {
                (result, messages) = try await plainTransaction { connection in
                    let work = UnitOfWork(connection: connection, logger: logger, claimsForRelay: claims)
                    let result = try await body(work)
                    try await work.flush()
                    return (result, work.written)
                }
                break
            } catch let error as PSQLError where error.serverInfo?[.sqlState] == "40P01" && attempt < 3 {
                // A deadlock: PostgreSQL rolled this transaction back so that the other one goes
                // on. Nothing of it was written, so it runs again, as PostgreSQL advises.
                logger.warning("Transaction ended by a deadlock; running it again", metadata: ["attempt": "\(attempt)"])
                attempt += 1
            }
        }
        if claims && !messages.isEmpty && !outboxHandOff.handOff(messages) {
            // The relay stopped meanwhile: give the rows to any relay now.
            try? await Outbox.release(messages.map(\.messageID), database: self)
        }
        return result
    }

    /// Runs `body` between `BEGIN` and `COMMIT` on a connection of the pool, with the task's
    /// jobs on that connection's event loop (``EventLoopTaskExecutor``): a transaction is a
    /// chain of round trips, and each would otherwise hop from the event loop to a thread of the
    /// concurrency pool and back, which costs more than the query on a busy or idle machine.
    /// Work that takes long between two queries goes off the loop (``UnitOfWork/compute(_:)``).
    private func plainTransaction<Result: Sendable>(_ body: (PostgresConnection) async throws -> Result) async throws -> Result {
        do {
            return try await client.withConnection { connection in
                try await withTaskExecutorPreference(EventLoopTaskExecutor(connection.eventLoop)) {
                    try await connection.withTransaction(logger: logger) { try await body($0) }
                }
            }
        } catch let error as PostgresTransactionError {
            throw error.bodyError ?? error
        }
    }

    /// Whether the database answers a trivial query: what readiness checks ask.
    public func ping() async -> Bool {
        do {
            try await client.query("SELECT 1", logger: logger)
            return true
        } catch {
            return false
        }
    }
}

extension PostgresTransactionError {
    /// The error the transaction's body threw, when `BEGIN` and the `ROLLBACK` after it both
    /// succeeded: what a caller matches on. `nil` for a failure of the transaction itself.
    var bodyError: (any Error)? {
        beginError == nil && rollbackError == nil && commitError == nil ? closureError : nil
    }
}

/// Runs a task's jobs on a NIO event loop, for ``Database/transaction(_:)``: PostgresNIO
/// completes each query on its connection's event loop, so the task resumes there at once and
/// its next query is written from the loop itself, without waking another thread either way.
/// Work between the queries runs on the loop too: a transaction body must not block, and hands
/// what takes long to ``UnitOfWork/compute(_:)``.
final class EventLoopTaskExecutor: TaskExecutor {
    let eventLoop: any EventLoop

    init(_ eventLoop: any EventLoop) { self.eventLoop = eventLoop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

extension Database {
    /// Whether `error` means the database is away (unreachable, restarting, shutting down, out
    /// of connections) rather than that the work itself failed: what consumers wait out
    /// without counting it against a message (``RetryPolicy/isOutage``).
    public static func isOutage(_ error: any Error) -> Bool {
        switch error {
        case let error as PSQLError:
            switch error.code {
            case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed:
                return true
            case .server:
                // Class 08: connection exception; 53: insufficient resources; 57P01–57P03:
                // the server is shutting down or starting up.
                let state = error.serverInfo?[.sqlState] ?? ""
                return state.hasPrefix("08") || state.hasPrefix("53") || ["57P01", "57P02", "57P03"].contains(state)
            default:
                return false
            }
        case let error as PostgresTransactionError:
            return [error.beginError, error.commitError, error.rollbackError, error.closureError].contains { $0.map(isOutage) ?? false }
        case is ChannelError, is IOError, is NIOConnectionError:
            return true
        default:
            // The pool's own errors (no connection could be made for a while) come from a module
            // PostgresNIO does not export.
            return String(describing: type(of: error)) == "ConnectionPoolError"
        }
    }
}
