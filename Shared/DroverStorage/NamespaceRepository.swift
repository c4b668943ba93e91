public import DroverModel
import PostgresNIO

/// Namespaces (`drover_namespaces`). A job names one that exists (a foreign key), so a namespace
/// that holds jobs cannot be deleted, whatever runs beside the delete.
public struct NamespaceRepository: Sendable {
    let sql: SQLRunner

    init(_ sql: SQLRunner) { self.sql = sql }

    /// Every namespace, by name.
    public func list() async throws -> [Namespace] {
        try await read("SELECT name, description, meta::text, capabilities::text, create_index, modify_index FROM drover_namespaces ORDER BY name")
    }

    /// The namespace `name`; nil when there is none.
    public func read(name: String) async throws -> Namespace? {
        try await read(
            """
            SELECT name, description, meta::text, capabilities::text, create_index, modify_index FROM drover_namespaces WHERE name = \(name)
            """
        ).first
    }

    /// The namespaces among `names` that exist, by name, their rows held (`FOR KEY SHARE`) until
    /// the transaction ends: none of them can be deleted meanwhile.
    public func holding(_ names: [String]) async throws -> [String: Namespace] {
        let found = try await read(
            """
            SELECT name, description, meta::text, capabilities::text, create_index, modify_index FROM drover_namespaces
            WHERE name = ANY(\(names)) ORDER BY name FOR KEY SHARE
            """)
        return Dictionary(found.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    private func read(_ query: PostgresQuery) async throws -> [Namespace] {
        var found: [Namespace] = []
        for try await (name, description, meta, capabilities, create, modify) in try await sql.query(query).decode(
            (String, String, String, String?, Int64, Int64).self)
        {
            let entries = try JSONColumn.decode([String: String].self, meta)
            found.append(
                Namespace(
                    name: name, description: description, meta: entries.isEmpty ? nil : entries,
                    capabilities: try capabilities.map { try JSONColumn.decode(Namespace.Capabilities.self, $0) }, createIndex: create,
                    modifyIndex: modify))
        }
        return found
    }

    /// Creates `namespace` or replaces what it says, at `index`.
    public func upsert(_ namespace: Namespace, index: Int64) async throws {
        try await sql.query(
            """
            INSERT INTO drover_namespaces (name, description, meta, capabilities, create_index, modify_index)
            VALUES (\(namespace.name), \(namespace.description), \(try JSONColumn.encode(namespace.meta ?? [:]))::jsonb,
                \(try namespace.capabilities.map { try JSONColumn.encode($0) })::jsonb, \(index), \(index))
            ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, meta = EXCLUDED.meta, capabilities = EXCLUDED.capabilities,
                modify_index = EXCLUDED.modify_index
            """)
    }

    /// What deleting a namespace did.
    public enum Deletion: Sendable, Equatable {
        case deleted
        case notFound
        /// It still holds this many jobs.
        case holdsJobs(Int)
    }

    /// Deletes the namespace `name` unless it holds jobs; its row is locked first, so a job
    /// registered beside the delete either lands before it (and the delete is refused) or
    /// after it (and is refused by the foreign key).
    public func delete(name: String) async throws -> Deletion {
        var exists = false
        for try await _ in try await sql.query("SELECT name FROM drover_namespaces WHERE name = \(name) FOR UPDATE").decode(String.self) {
            exists = true
        }
        guard exists else { return .notFound }
        var jobs = 0
        for try await count in try await sql.query("SELECT count(*) FROM drover_jobs WHERE namespace = \(name)").decode(Int.self) { jobs = count }
        guard jobs == 0 else { return .holdsJobs(jobs) }
        try await sql.query("DELETE FROM drover_namespaces WHERE name = \(name)")
        return .deleted
    }
}

extension UnitOfWork {
    public var namespaces: NamespaceRepository { NamespaceRepository(SQLRunner(self)) }
}

extension Database {
    public var namespaces: NamespaceRepository { NamespaceRepository(SQLRunner(self)) }
}
