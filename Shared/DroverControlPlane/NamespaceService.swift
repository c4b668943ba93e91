public import DroverModel
public import DroverStorage
public import Foundation

/// Namespaces as operators manage them: the writes behind `/v1/namespace/:name`.
public struct NamespaceService: Sendable {
    public let database: Database
    let now: @Sendable () -> Date

    public init(database: Database, now: @escaping @Sendable () -> Date = { Date() }) {
        self.database = database
        self.now = now
    }

    /// Creates `namespace` or replaces its description, meta and capabilities.
    /// - Returns: the index of the change.
    /// - Throws: ``ControlPlaneError/invalid(_:)`` with every bad field.
    public func put(_ namespace: Namespace) async throws -> Int64 {
        let errors = namespace.validate()
        guard errors.isEmpty else { throw ControlPlaneError.invalid(errors) }
        let time = now()
        return try await database.transaction { work in
            let index = try await work.nextIndex()
            let existed = try await work.namespaces.read(name: namespace.name) != nil
            try await work.namespaces.upsert(namespace, index: index)
            try await work.note(
                ClusterEvent.Kind.namespaceChanged, "Namespace \(namespace.name) \(existed ? "updated" : "created")", level: .info, priority: .low,
                at: time)
            return index
        }
    }

    /// Deletes the namespace `name`, which must hold no jobs; `default` is never deleted.
    /// - Returns: the index of the change.
    /// - Throws: ``ControlPlaneError/notFound(kind:id:)``; ``ControlPlaneError/invalid(_:)`` for
    ///   `default` or a namespace that still holds jobs.
    public func delete(name: String) async throws -> Int64 {
        guard name != Namespace.defaultName else {
            throw ControlPlaneError.invalid([FieldError("name", "the default namespace cannot be deleted")])
        }
        let time = now()
        return try await database.transaction { work in
            switch try await work.namespaces.delete(name: name) {
            case .notFound: throw ControlPlaneError.notFound(kind: "namespace", id: name)
            case .holdsJobs(let count):
                throw ControlPlaneError.invalid([
                    FieldError("name", "namespace '\(name)' still holds \(count) job(s); stop and purge them first (drover job stop -purge)")
                ])
            case .deleted:
                let index = try await work.nextIndex()
                try await work.note(ClusterEvent.Kind.namespaceChanged, "Namespace \(name) deleted", level: .info, priority: .low, at: time)
                return index
            }
        }
    }
}
