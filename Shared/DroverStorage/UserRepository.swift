public import DroverModel
import PostgresNIO

/// The cluster's users (`drover_users`).
public struct UserRepository: Sendable {
    let sql: SQLRunner

    init(_ sql: SQLRunner) { self.sql = sql }

    public func list() async throws -> [ClusterUser] {
        var users: [ClusterUser] = []
        for try await spec in try await sql.query("SELECT spec::text FROM drover_users ORDER BY name").decode(String.self) {
            users.append(try JSONColumn.decode(ClusterUser.self, spec))
        }
        return users
    }

    public func upsert(_ user: ClusterUser, index: Int64) async throws {
        try await sql.query(
            """
            INSERT INTO drover_users (name, spec, modify_index) VALUES (\(user.name), \(try JSONColumn.encode(user))::jsonb, \(index))
            ON CONFLICT (name) DO UPDATE SET spec = EXCLUDED.spec, modify_index = EXCLUDED.modify_index
            """)
    }

    /// - Returns: whether there was such a user.
    public func delete(name: String) async throws -> Bool {
        var found = false
        for try await _ in try await sql.query("DELETE FROM drover_users WHERE name = \(name) RETURNING name").decode(String.self) { found = true }
        return found
    }
}
