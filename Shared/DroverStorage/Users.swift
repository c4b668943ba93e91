import DroverMessaging
public import DroverModel
import Foundation
import Logging
import PostgresNIO

/// The users the cluster manages on its nodes. Every change sends the whole list to every node
/// through the outbox, in the same transaction.
extension ClusterStore {
    public func users() async throws -> [ClusterUser] {
        var users: [ClusterUser] = []
        for try await spec in try await database.client.query("SELECT spec::text FROM drover_users ORDER BY name", logger: logger)
            .decode(String.self)
        {
            users.append(try Self.decode(ClusterUser.self, spec))
        }
        return users
    }

    /// Creates or replaces `user`. - Returns: the index of the change.
    /// - Throws: ``ClusterStoreError/invalid(_:)`` with every bad field.
    public func put(user: ClusterUser) async throws -> Int64 {
        let errors = user.validate()
        guard errors.isEmpty else { throw ClusterStoreError.invalid(errors) }
        return try await database.transaction { connection in
            let index = try await Self.nextIndex(connection, logger: logger)
            try await connection.query(
                """
                INSERT INTO drover_users (name, spec, modify_index) VALUES (\(user.name), \(try Self.encode(user))::jsonb, \(index))
                ON CONFLICT (name) DO UPDATE SET spec = EXCLUDED.spec, modify_index = EXCLUDED.modify_index
                """, logger: logger)
            try await Self.sendUsers(to: nil, index: index, on: connection, logger: logger)
            return index
        }
    }

    /// Removes the user named `name`. - Throws: not found.
    public func deleteUser(name: String) async throws -> Int64 {
        try await database.transaction { connection in
            var found = false
            for try await _ in try await connection.query("DELETE FROM drover_users WHERE name = \(name) RETURNING name", logger: logger)
                .decode(String.self)
            {
                found = true
            }
            guard found else { throw ClusterStoreError.notFound(kind: "user", id: name) }
            let index = try await Self.nextIndex(connection, logger: logger)
            try await Self.sendUsers(to: nil, index: index, on: connection, logger: logger)
            return index
        }
    }

    /// Puts the whole list in the outbox, for one node or (nil) all of them.
    static func sendUsers(to nodeID: String?, index: Int64, on connection: PostgresConnection, logger: Logger) async throws {
        var users: [ClusterUser] = []
        for try await spec in try await connection.query("SELECT spec::text FROM drover_users ORDER BY name", logger: logger).decode(String.self) {
            users.append(try decode(ClusterUser.self, spec))
        }
        try await Outbox.enqueue(
            [try OutgoingMessage(ClusterUsers(users: users, index: index), routingKey: RoutingKey.clusterUsers(nodeID))], on: connection,
            logger: logger)
    }
}
