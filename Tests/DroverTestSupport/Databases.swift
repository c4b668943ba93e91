public import DroverStorage
import Foundation
import Logging
public import PostgresNIO

/// Creates a database of its own for `body`, runs `body` with its URL, and drops it afterwards.
public func withFreshDatabase(_ body: (String) async throws -> Void) async throws {
    guard let url = TestEnvironment.postgresURL else { throw TestFailure("DROVER_TEST_POSTGRES_URL is not set") }
    let name = TestEnvironment.uniqueName("drover_test").replacingOccurrences(of: "-", with: "_")
    let admin = try Database(url: url, maximumConnections: 2, logger: Logger(label: "test.admin"))
    try await withClient(admin.client) {
        try await admin.client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"))
        do {
            guard var components = URLComponents(string: url) else { throw TestFailure("'\(url)' is not a URL") }
            components.path = "/\(name)"
            try await body(components.string ?? url)
        } catch {
            try? await admin.client.query(PostgresQuery(unsafeSQL: "DROP DATABASE \(name) WITH (FORCE)"))
            throw error
        }
        try await admin.client.query(PostgresQuery(unsafeSQL: "DROP DATABASE \(name) WITH (FORCE)"))
    }
}

/// Runs `body` with a database of its own, migrated, its client running.
public func withMigratedDatabase(_ body: (Database) async throws -> Void) async throws {
    try await withFreshDatabase { url in
        let database = try Database(url: url, logger: Logger(label: "test"))
        try await withClient(database.client) {
            try await database.migrate()
            try await body(database)
        }
    }
}

/// Runs `client` for as long as `body` takes.
public func withClient<T: Sendable>(_ client: PostgresClient, _ body: () async throws -> T) async throws -> T {
    let running = Task { await client.run() }
    defer { running.cancel() }
    return try await body()
}

public func count(_ table: String, in database: Database) async throws -> Int {
    for try await value in try await database.client.query(PostgresQuery(unsafeSQL: "SELECT count(*)::int8 FROM \(table)")).decode(Int.self) {
        return value
    }
    return -1
}
