public import DroverModel
public import DroverStorage

/// The users the cluster manages on its nodes. Every change sends the whole list to every node
/// in the same unit of work.
public struct UserService: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// Creates or replaces `user`. - Returns: the index of the change.
    /// - Throws: ``ControlPlaneError/invalid(_:)`` with every bad field.
    public func put(user: ClusterUser) async throws -> Int64 {
        let errors = user.validate()
        guard errors.isEmpty else { throw ControlPlaneError.invalid(errors) }
        return try await database.transaction { work in
            let index = try await work.nextIndex()
            try await work.users.upsert(user, index: index)
            try await work.sendUsers(to: nil, index: index)
            return index
        }
    }

    /// Removes the user named `name`. - Throws: not found.
    public func deleteUser(name: String) async throws -> Int64 {
        try await database.transaction { work in
            guard try await work.users.delete(name: name) else { throw ControlPlaneError.notFound(kind: "user", id: name) }
            let index = try await work.nextIndex()
            try await work.sendUsers(to: nil, index: index)
            return index
        }
    }
}
