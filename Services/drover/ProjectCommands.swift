import ArgumentParser
import DroverModel
import Foundation

struct ProjectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "project",
        abstract: "Cluster-init projects: scripts, files and tests that configure nodes, assigned to node arrays or nodes.",
        subcommands: [
            ProjectUploadCommand.self, ProjectList.self, ProjectInfo.self, ProjectDelete.self, ProjectAssign.self, ProjectAssignments.self,
            ProjectUnassign.self,
        ])
}

struct ProjectUploadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upload",
        abstract:
            "Uploads a project directory laid out as CycleCloud's: project.ini, specs/<spec>/cluster-init/{scripts,files,tests}/, blobs/.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "The project's directory.") var directory: String
    @Option(help: "Its name, instead of project.ini's.") var name: String?
    @Option(help: "Its version, instead of project.ini's.") var version: String?

    func run() async throws {
        let root = URL(fileURLWithPath: directory).standardizedFileURL
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ValidationError("'\(directory)' is not a directory")
        }
        let ini = (try? String(contentsOf: root.appendingPathComponent("project.ini"), encoding: .utf8)).map(Project.identity(fromINI:))
        guard let name = name ?? ini?.name, let version = version ?? ini?.version else {
            throw ValidationError("give --name and --version, or a project.ini with name = and version = in its [project] section")
        }
        let (files, skipped) = try Self.collect(root)
        let upload = ProjectUpload(name: name, version: version, files: files)
        let problems = upload.validate()
        guard problems.isEmpty else {
            throw ValidationError("the project cannot be uploaded:\n" + problems.map { "  \($0.field): \($0.reason)" }.joined(separator: "\n"))
        }
        _ = try await api.client.send(
            "PUT", "/v1/project/\(pathComponent(name))/\(pathComponent(version))", body: try JSONEncoder().encode(upload), as: [String: Int64].self)
        let specs = Project.specs(of: files.map(\.path))
        print("Uploaded project \(name) \(version): \(files.count) file(s), spec(s) \(specs.joined(separator: ", "))")
        if !skipped.isEmpty {
            print("Left out (not part of cluster-init): \(skipped.prefix(10).joined(separator: ", "))\(skipped.count > 10 ? ", …" : "")")
        }
    }

    /// The project's files that cluster-init uses, and the paths of those it does not.
    static func collect(_ root: URL) throws -> ([ProjectFile], [String]) {
        var files: [ProjectFile] = []
        var skipped: [String] = []
        guard let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey]) else { return ([], []) }
        for case let url as URL in walker {
            guard (try? url.resourceValues(forKeys: [.isRegularFileKey]))?.isRegularFile == true else { continue }
            let path = String(url.standardizedFileURL.path.dropFirst(root.path.count + 1))
            guard Project.pathProblem(path) == nil else {
                skipped.append(path)
                continue
            }
            let attributes = try FileManager.default.attributesOfItem(atPath: url.path)
            let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue ?? 0o644
            files.append(ProjectFile(path: path, mode: mode & 0o777, content: try Data(contentsOf: url)))
        }
        return (files.sorted { $0.path < $1.path }, skipped.sorted())
    }
}

struct ProjectList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Lists the projects uploaded, every version.")

    @OptionGroup var api: AddressOptions
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the API's answer as JSON.") var json = false

    func run() async throws {
        if json { return print(try await api.client.get("/v1/projects", as: RawJSON.self).0.pretty) }
        let (projects, _) = try await api.client.get("/v1/projects", as: [Project].self)
        if projects.isEmpty { return print("No projects") }
        print(ProjectInfo.rows(projects))
    }
}

struct ProjectInfo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Shows a project's versions and where it is assigned.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "The project's name.") var name: String

    func run() async throws {
        let (versions, _) = try await api.client.get("/v1/project/\(pathComponent(name))", as: [Project].self)
        print(Self.rows(versions))
        let (assignments, _) = try await api.client.get("/v1/project-assignments", as: [ProjectAssignment].self)
        let mine = assignments.filter { $0.project == name }
        print(mine.isEmpty ? "\nNot assigned" : "\n" + ProjectAssignments.rows(mine))
    }

    static func rows(_ projects: [Project]) -> String {
        table(
            ["Name", "Version", "Specs", "Files", "Bytes", "Uploaded"],
            projects.map {
                [
                    $0.name, $0.version, $0.specs.joined(separator: ","), String($0.files), String($0.bytes),
                    Date(timeIntervalSince1970: Double($0.uploadedAt) / 1e9).formatted(Date.ISO8601FormatStyle()),
                ]
            })
    }
}

struct ProjectDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Deletes one version of a project.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "The project's name.") var name: String
    @Argument(help: "The version.") var version: String

    func run() async throws {
        _ = try await api.client.raw("DELETE", "/v1/project/\(pathComponent(name))/\(pathComponent(version))")
        print("Project \(name) \(version) deleted")
    }
}

struct ProjectAssign: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "assign",
        abstract: "Assigns a project's spec to a node array or a node; its nodes run it when they start and on drover converge.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "PROJECT[:SPEC[:VERSION]]; spec default, the newest version when none is given.") var reference: String
    @Option(name: .customLong("nodearray"), help: "The node array whose machines run it.") var nodeArray: String?
    @Option(help: "The node (by id) that runs it.") var node: String?

    func validate() throws {
        guard (nodeArray == nil) != (node == nil) else { throw ValidationError("give exactly one of --nodearray and --node") }
        guard reference.split(separator: ":", omittingEmptySubsequences: false).count <= 3 else {
            throw ValidationError("'\(reference)' is not PROJECT[:SPEC[:VERSION]]")
        }
    }

    func run() async throws {
        let parts = reference.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        let assignment = ProjectAssignment(
            project: parts[0], spec: parts.count > 1 && !parts[1].isEmpty ? parts[1] : "default", version: parts.count > 2 ? parts[2] : "",
            nodeArray: nodeArray, nodeID: node)
        let (made, _) = try await api.client.send(
            "POST", "/v1/project-assignments", body: try JSONEncoder().encode(assignment), as: ProjectAssignment.self)
        print(
            "Assigned \(made.project):\(made.spec):\(made.version.isEmpty ? "newest" : made.version) to \(nodeArray.map { "node array \($0)" } ?? "node \(node ?? "")") as \(made.id)"
        )
    }
}

struct ProjectAssignments: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "assignments", abstract: "Lists what is assigned where.")

    @OptionGroup var api: AddressOptions

    func run() async throws {
        let (assignments, _) = try await api.client.get("/v1/project-assignments", as: [ProjectAssignment].self)
        print(assignments.isEmpty ? "No assignments" : Self.rows(assignments))
    }

    static func rows(_ assignments: [ProjectAssignment]) -> String {
        table(
            ["ID", "Project", "Spec", "Version", "Assigned to"],
            assignments.map {
                [
                    $0.id, $0.project, $0.spec, $0.version.isEmpty ? "newest" : $0.version,
                    $0.nodeArray.map { "nodearray \($0)" } ?? "node \($0.nodeID ?? "")",
                ]
            })
    }
}

struct ProjectUnassign: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unassign", abstract: "Removes an assignment (nodes keep what already ran).")

    @OptionGroup var api: AddressOptions
    @Argument(help: "The assignment's id (drover project assignments).") var id: String

    func run() async throws {
        _ = try await api.client.raw("DELETE", "/v1/project-assignment/\(pathComponent(id))")
        print("Assignment \(id) removed")
    }
}

// On a node, through its agent, as `jetpack converge`, `jetpack test` and `jetpack download`.

struct Converge: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fetches this node's cluster-init projects again and runs their scripts; exits 1 if one fails (the node then takes no work).")

    @OptionGroup var agent: AgentOptions

    func run() async throws {
        let (state, _) = try await agent.client.send("POST", "/v1/agent/converge", body: Data("{}".utf8), as: ClusterInitState.self)
        for result in state.results { print(TestCommand.line(result)) }
        print("\(state.status == .ready ? "Converged" : "Failed"): \(state.detail)")
        if state.status != .ready { throw ExitCode(1) }
    }
}

struct TestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test", abstract: "Runs the tests of this node's cluster-init projects and prints each result; exits 1 if one fails.")

    @OptionGroup var agent: AgentOptions

    func run() async throws {
        let (results, _) = try await agent.client.send("POST", "/v1/agent/test", body: Data("{}".utf8), as: [ScriptResult].self)
        for result in results { print(Self.line(result)) }
        let failed = results.filter { !$0.succeeded }.count
        print(results.isEmpty ? "No tests" : "\(results.count - failed) passed, \(failed) failed")
        if failed > 0 { throw ExitCode(1) }
    }

    static func line(_ result: ScriptResult) -> String {
        let outcome = result.succeeded ? "ok" : result.exitCode.map { "FAILED (exit \($0))" } ?? "FAILED (did not start or ran out of time)"
        var line = "\(result.spec) \(result.script): \(outcome) in \(result.milliseconds) ms"
        if !result.succeeded && !result.output.isEmpty {
            line += "\n" + result.output.split(separator: "\n").suffix(10).map { "    \($0)" }.joined(separator: "\n")
        }
        return line
    }
}

struct Download: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fetches a blob of a project assigned to this node (its blobs/ directory) to DEST, a file or a directory.")

    @OptionGroup var agent: AgentOptions
    @Option(help: "The project; the one whose script runs this when left out (env DROVER_PROJECT).") var project: String? =
        ProcessInfo.processInfo.environment["DROVER_PROJECT"]
    @Argument(help: "The blob's path under the project's blobs/.") var blob: String
    @Argument(help: "Where to write it: a file, or a directory to put it in.") var destination: String

    func run() async throws {
        guard let project, !project.isEmpty else { throw ValidationError("give --project: no DROVER_PROJECT names one here") }
        var components = URLComponents()
        components.queryItems = [URLQueryItem(name: "project", value: project), URLQueryItem(name: "path", value: blob)]
        let (data, _) = try await agent.client.raw("GET", "/v1/agent/blob?\(components.percentEncodedQuery ?? "")")
        var target = URL(fileURLWithPath: destination)
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: target.path, isDirectory: &isDirectory), isDirectory.boolValue {
            target.appendPathComponent(URL(fileURLWithPath: blob).lastPathComponent)
        }
        do {
            try data.write(to: target, options: .atomic)
        } catch {
            throw APIClient.Failure(description: "cannot write \(target.path): \(error.localizedDescription)")
        }
        print("Downloaded \(project) \(blob) (\(data.count) bytes) to \(target.path)")
    }
}
