public import DroverModel
public import DroverStorage
public import Foundation

/// Cluster-init projects: uploads, deletions and assignments to node arrays and nodes (the
/// writes behind `/v1/project*`), and what a node converges.
public struct ProjectService: Sendable {
    public let database: Database
    let now: @Sendable () -> Date

    public init(database: Database, now: @escaping @Sendable () -> Date = { Date() }) {
        self.database = database
        self.now = now
    }

    /// Stores `upload`, replacing an earlier upload of the same version.
    /// - Throws: ``ControlPlaneError/invalid(_:)`` with every bad field.
    public func upload(_ upload: ProjectUpload) async throws -> Int64 {
        let errors = upload.validate()
        guard errors.isEmpty else { throw ControlPlaneError.invalid(errors) }
        let time = now()
        return try await database.transaction { work in
            let index = try await work.nextIndex()
            let replaced = try await work.projects.store(upload, at: time.unixNanoseconds, index: index)
            let bytes = upload.files.reduce(0) { $0 + $1.content.count }
            try await work.note(
                ClusterEvent.Kind.projectChanged,
                "Project \(upload.name) \(upload.version) \(replaced ? "replaced" : "uploaded"): \(upload.files.count) file(s), \(bytes) bytes",
                at: time)
            return index
        }
    }

    public func delete(name: String, version: String) async throws -> Int64 {
        let time = now()
        return try await database.transaction { work in
            guard try await work.projects.delete(name: name, version: version) else {
                throw ControlPlaneError.notFound(kind: "project version", id: "\(name) \(version)")
            }
            let index = try await work.nextIndex()
            try await work.note(ClusterEvent.Kind.projectChanged, "Project \(name) \(version) deleted", at: time)
            return index
        }
    }

    /// Assigns a project's spec; the project, and the spec in it, must have been uploaded, and
    /// the array (if one is named) must exist. - Returns: the assignment, with its id.
    public func assign(_ request: ProjectAssignment) async throws -> ProjectAssignment {
        let errors = request.validate()
        guard errors.isEmpty else { throw ControlPlaneError.invalid(errors) }
        let time = now()
        return try await database.transaction { work in
            let versions = try await work.projects.list(name: request.project)
            guard !versions.isEmpty else { throw ControlPlaneError.invalid([FieldError("Project", "no project '\(request.project)' was uploaded")]) }
            let matching = versions.filter { request.version.isEmpty || $0.version == request.version }
            guard !matching.isEmpty else {
                throw ControlPlaneError.invalid([
                    FieldError("Version", "project '\(request.project)' has no version '\(request.version)' (it has \(versions.map(\.version)))")
                ])
            }
            guard matching.contains(where: { $0.specs.contains(request.spec) }) else {
                throw ControlPlaneError.invalid([FieldError("Spec", "project '\(request.project)' has no spec '\(request.spec)'")])
            }
            if let array = request.nodeArray, try await work.nodeArrays.array(named: array) == nil {
                throw ControlPlaneError.invalid([FieldError("NodeArray", "no node array is named '\(array)'")])
            }
            var assignment = request
            assignment.id = newID()
            assignment.createIndex = try await work.nextIndex()
            try await work.projects.assign(assignment)
            let target = assignment.nodeArray.map { "node array \($0)" } ?? "node \(assignment.nodeID ?? "")"
            try await work.note(
                ClusterEvent.Kind.projectChanged,
                "Project \(assignment.project):\(assignment.spec):\(assignment.version.isEmpty ? "newest" : assignment.version) assigned to \(target)",
                nodeID: assignment.nodeID, at: time)
            return assignment
        }
    }

    public func unassign(id: String) async throws -> Int64 {
        let time = now()
        return try await database.transaction { work in
            guard try await work.projects.unassign(id: id) else { throw ControlPlaneError.notFound(kind: "project assignment", id: id) }
            let index = try await work.nextIndex()
            try await work.note(ClusterEvent.Kind.projectChanged, "Project assignment \(id) removed", at: time)
            return index
        }
    }
}
