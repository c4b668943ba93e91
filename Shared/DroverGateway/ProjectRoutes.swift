import DroverControlPlane
import DroverModel
import Foundation
import Hummingbird

/// Cluster-init projects: `/v1/projects`, `/v1/project/:name[/:version]`, their assignments
/// (`/v1/project-assignments`), and what a node fetches for itself with its own secret
/// (`/v1/node/:id/cluster-init`, `/v1/node/:id/project/:project/blob?path=`). Reading needs
/// `operator:read`, changing `operator:write`.
extension Gateway {
    func addProjectRoutes(to routes: GuardedRouter) {
        let projects = ProjectService(database: database)
        routes.get("/v1/projects", .operator(.read)) { request, _ in try await read(request) { try await database.projects.list() } }
        routes.get("/v1/project/:name", .operator(.read)) { request, context in
            let name = context.parameters.get("name") ?? ""
            return try await read(request) {
                let versions = try await database.projects.list(name: name)
                guard !versions.isEmpty else { throw ControlPlaneError.notFound(kind: "project", id: name) }
                return versions
            }
        }
        for method in [HTTPRequest.Method.put, .post] {
            routes.on("/v1/project/:name/:version", method: method, .operator(.write)) { request, context in
                try await handle {
                    // Base64 makes the largest project (64 MiB of files) about 86 MiB of JSON.
                    let body = try await Self.body(of: request, upTo: 96 << 20)
                    try Self.refuseUnsupported(body, shape: .projectUpload, root: "")
                    let upload = try Self.decodeBody(ProjectUpload.self, body)
                    let (name, version) = (context.parameters.get("name") ?? "", context.parameters.get("version") ?? "")
                    var mismatches: [FieldError] = []
                    if upload.name != name { mismatches.append(FieldError("Name", "'\(upload.name)' does not match '\(name)' in the path")) }
                    if upload.version != version {
                        mismatches.append(FieldError("Version", "'\(upload.version)' does not match '\(version)' in the path"))
                    }
                    guard mismatches.isEmpty else { throw ControlPlaneError.invalid(mismatches) }
                    let index = try await projects.upload(upload)
                    return Self.json(["Index": index], index: index)
                }
            }
        }
        routes.delete("/v1/project/:name/:version", .operator(.write)) { _, context in
            try await handle {
                let index = try await projects.delete(name: context.parameters.get("name") ?? "", version: context.parameters.get("version") ?? "")
                return Self.json(["Index": index], index: index)
            }
        }
        routes.get("/v1/project-assignments", .operator(.read)) { request, _ in
            try await read(request) { try await database.projects.assignments() }
        }
        for method in [HTTPRequest.Method.put, .post] {
            routes.on("/v1/project-assignments", method: method, .operator(.write)) { request, _ in
                try await handle {
                    let assignment = try await projects.assign(try await Self.decodeBody(ProjectAssignment.self, request))
                    return Self.json(assignment, index: assignment.createIndex)
                }
            }
        }
        routes.delete("/v1/project-assignment/:id", .operator(.write)) { _, context in
            try await handle {
                let index = try await projects.unassign(id: context.parameters.get("id") ?? "")
                return Self.json(["Index": index], index: index)
            }
        }
        routes.get("/v1/node/:id/cluster-init", .ownNode) { _, context in
            try await handle { Self.json(try await database.projects.clusterInit(forNode: context.parameters.get("id") ?? ""), index: nil) }
        }
        routes.get("/v1/node/:id/project/:project/blob", .ownNode) { request, context in
            try await handle {
                let project = context.parameters.get("project") ?? ""
                let path = request.uri.queryParameters.get("path").map { String($0) } ?? ""
                if let reason = Project.pathProblem("blobs/" + path) { throw ControlPlaneError.invalid([FieldError("path", reason)]) }
                guard let data = try await database.projects.blob(project: project, path: path, forNode: context.parameters.get("id") ?? "")
                else {
                    throw ControlPlaneError.notFound(kind: "blob of a project assigned to this node", id: "\(project) \(path)")
                }
                return Response(
                    status: .ok, headers: [.contentType: "application/octet-stream"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
            }
        }
    }
}
