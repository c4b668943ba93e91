public import DroverModel
public import Foundation
import PostgresNIO

/// Cluster-init projects (`drover_projects`, their files in `drover_project_files`) and what
/// they are assigned to (`drover_project_assignments`). SQL only.
public struct ProjectRepository: Sendable {
    let sql: SQLRunner

    init(_ sql: SQLRunner) { self.sql = sql }

    /// Stores `upload` (checked), replacing what that version held before.
    /// - Returns: whether it replaced an earlier upload of the version.
    @discardableResult
    public func store(_ upload: ProjectUpload, at time: Int64, index: Int64) async throws -> Bool {
        let specs = Project.specs(of: upload.files.map(\.path))
        let bytes = Int64(upload.files.reduce(0) { $0 + $1.content.count })
        var replaced = false
        for try await existed in try await sql.query(
            """
            WITH gone AS (DELETE FROM drover_projects WHERE name = \(upload.name) AND version = \(upload.version) RETURNING 1)
            SELECT count(*) > 0 FROM gone
            """
        ).decode(Bool.self) { replaced = existed }
        try await sql.query(
            """
            INSERT INTO drover_projects (name, version, specs, files, bytes, uploaded_at, modify_index)
            VALUES (\(upload.name), \(upload.version), \(specs), \(Int32(upload.files.count)), \(bytes), \(time), \(index))
            """)
        // One statement for all files: contents travel as base64 text, decoded by the server.
        try await sql.query(
            """
            INSERT INTO drover_project_files (name, version, path, mode, content)
            SELECT \(upload.name), \(upload.version), f.path, f.mode, decode(f.content, 'base64')
            FROM unnest(\(upload.files.map(\.path))::text[], \(upload.files.map { Int32($0.mode) })::int4[],
                        \(upload.files.map { $0.content.base64EncodedString() })::text[]) AS f(path, mode, content)
            """)
        return replaced
    }

    /// Every version of every project (or of project `name`), newest upload first.
    public func list(name: String? = nil) async throws -> [Project] {
        var found: [Project] = []
        for try await (name, version, specs, files, bytes, uploaded, index) in try await sql.query(
            """
            SELECT name, version, specs, files, bytes, uploaded_at, modify_index FROM drover_projects
            WHERE \(name)::text IS NULL OR name = \(name) ORDER BY name, uploaded_at DESC, version DESC
            """
        ).decode((String, String, [String], Int32, Int64, Int64, Int64).self) {
            found.append(
                Project(name: name, version: version, specs: specs, files: Int(files), bytes: bytes, uploadedAt: uploaded, modifyIndex: index))
        }
        return found
    }

    /// Forgets one version. - Returns: whether it existed.
    public func delete(name: String, version: String) async throws -> Bool {
        for try await deleted in try await sql.query(
            """
            WITH gone AS (DELETE FROM drover_projects WHERE name = \(name) AND version = \(version) RETURNING 1)
            SELECT count(*) > 0 FROM gone
            """
        ).decode(Bool.self) { return deleted }
        return false
    }

    // MARK: Assignments

    public func assign(_ assignment: ProjectAssignment) async throws {
        try await sql.query(
            """
            INSERT INTO drover_project_assignments (id, project, spec, version, array_name, node_id, create_index)
            VALUES (\(assignment.id), \(assignment.project), \(assignment.spec), \(assignment.version), \(assignment.nodeArray),
                    \(assignment.nodeID), \(assignment.createIndex))
            """)
    }

    /// Every assignment, in the order they were made.
    public func assignments() async throws -> [ProjectAssignment] {
        var found: [ProjectAssignment] = []
        for try await (id, project, spec, version, array, node, index) in try await sql.query(
            "SELECT id, project, spec, version, array_name, node_id, create_index FROM drover_project_assignments ORDER BY create_index, id"
        ).decode((String, String, String, String, String?, String?, Int64).self) {
            found.append(
                ProjectAssignment(id: id, project: project, spec: spec, version: version, nodeArray: array, nodeID: node, createIndex: index))
        }
        return found
    }

    /// Takes an assignment away. - Returns: whether it existed.
    public func unassign(id: String) async throws -> Bool {
        for try await deleted in try await sql.query(
            "WITH gone AS (DELETE FROM drover_project_assignments WHERE id = \(id) RETURNING 1) SELECT count(*) > 0 FROM gone"
        ).decode(Bool.self) { return deleted }
        return false
    }

    /// What node `nodeID` converges: the specs assigned to it or to the array its machine
    /// belongs to (as the autoscaler recorded it, not as the node claims), in assignment order,
    /// each at its version (the newest upload when none is named).
    public func clusterInit(forNode nodeID: String) async throws -> NodeClusterInit {
        var resolved: [(project: String, spec: String, wanted: String, version: String?)] = []
        for try await (project, spec, wanted, version) in try await sql.query(
            """
            SELECT a.project, a.spec, a.version,
                   (SELECT p.version FROM drover_projects p
                    WHERE p.name = a.project AND (a.version = '' OR p.version = a.version) AND a.spec = ANY (p.specs)
                    ORDER BY p.uploaded_at DESC, p.version DESC LIMIT 1)
            FROM drover_project_assignments a
            WHERE a.node_id = \(nodeID) OR a.array_name = (SELECT m.array_name FROM drover_machines m WHERE m.node_id = \(nodeID))
            ORDER BY a.create_index, a.id
            """
        ).decode((String, String, String, String?).self) {
            resolved.append((project, spec, wanted, version))
        }
        var specs: [ClusterInitSpec] = []
        var missing: [String] = []
        for entry in resolved {
            guard let version = entry.version else {
                missing.append("\(entry.project):\(entry.spec):\(entry.wanted)")
                continue
            }
            // The same spec assigned twice (to the node and to its array) runs once.
            if specs.contains(where: { $0.project == entry.project && $0.spec == entry.spec && $0.version == version }) { continue }
            let prefix = "specs/\(entry.spec)/cluster-init/"
            var files: [ProjectFile] = []
            for try await (path, mode, content) in try await sql.query(
                """
                SELECT path, mode, content FROM drover_project_files
                WHERE name = \(entry.project) AND version = \(version) AND starts_with(path, \(prefix)) ORDER BY path
                """
            ).decode((String, Int32, Data).self) {
                files.append(ProjectFile(path: String(path.dropFirst(prefix.count)), mode: Int(mode), content: content))
            }
            specs.append(ClusterInitSpec(project: entry.project, version: version, spec: entry.spec, files: files))
        }
        return NodeClusterInit(specs: specs, missing: missing)
    }

    /// Blob `path` (under `blobs/`) of project `project` as node `nodeID` may fetch it: of the
    /// version its assignment names (the newest upload when none), and only of a project
    /// assigned to it. - Returns: nil when there is no such blob for the node.
    public func blob(project: String, path: String, forNode nodeID: String) async throws -> Data? {
        for try await content in try await sql.query(
            """
            WITH assigned AS (
                SELECT a.version FROM drover_project_assignments a
                WHERE a.project = \(project)
                  AND (a.node_id = \(nodeID) OR a.array_name = (SELECT m.array_name FROM drover_machines m WHERE m.node_id = \(nodeID)))
                ORDER BY a.create_index LIMIT 1),
            version AS (
                SELECT p.version FROM drover_projects p, assigned
                WHERE p.name = \(project) AND (assigned.version = '' OR p.version = assigned.version)
                ORDER BY p.uploaded_at DESC, p.version DESC LIMIT 1)
            SELECT f.content FROM drover_project_files f, version
            WHERE f.name = \(project) AND f.version = version.version AND f.path = \("blobs/" + path)
            """
        ).decode(Data.self) { return content }
        return nil
    }
}

extension Database {
    public var projects: ProjectRepository { ProjectRepository(SQLRunner(self)) }
}

extension UnitOfWork {
    public var projects: ProjectRepository { ProjectRepository(SQLRunner(self)) }
}
