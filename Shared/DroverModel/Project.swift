public import Foundation

/// A cluster-init project, laid out as CycleCloud lays one out: `project.ini` names it and its
/// version; each spec has `specs/<spec>/cluster-init/scripts` (run in order on the node),
/// `files` (placed beside them) and `tests` (`drover test`); `blobs/` holds files a node
/// fetches when it asks (`drover download`).
public struct ProjectFile: Codable, Sendable, Equatable {
    /// Relative to the project's root, `/`-separated.
    public var path: String
    /// Permission bits; what matters is whether it is executable.
    public var mode: Int
    /// Base64 in JSON.
    public var content: Data

    /// A file at `path` with `mode` and `content`.
    public init(path: String, mode: Int = 0o644, content: Data) {
        self.path = path
        self.mode = mode
        self.content = content
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case path = "Path"
        case mode = "Mode"
        case content = "Content"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        path = try container.decode(String.self, forKey: .path)
        mode = try container.decodeIfPresent(Int.self, forKey: .mode) ?? 0o644
        content = try container.decode(Data.self, forKey: .content)
    }

    /// Whether anyone may execute it.
    public var isExecutable: Bool { mode & 0o111 != 0 }
}

/// What `drover project upload` sends: every file of one version of a project.
public struct ProjectUpload: Codable, Sendable, Equatable {
    /// The project's name.
    public var name: String
    /// The version uploaded.
    public var version: String
    /// Its files.
    public var files: [ProjectFile]

    /// A project version of `files`.
    public init(name: String, version: String, files: [ProjectFile]) {
        self.name = name
        self.version = version
        self.files = files
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name = "Name"
        case version = "Version"
        case files = "Files"
    }

    /// Every reason to refuse it, by field. Paths are relative and stay inside the project
    /// (no `..`, no empty or `.` component, no NUL), under `blobs/` or a spec's
    /// `cluster-init/{scripts,files,tests}/` (or `project.ini`); at most
    /// ``Project/maximumFiles`` files and ``Project/maximumBytes`` in all.
    public func validate() -> [FieldError] {
        var errors: [FieldError] = []
        if !Project.isWord(name) { errors.append(FieldError("Name", Project.wordRule)) }
        if !Project.isWord(version) { errors.append(FieldError("Version", Project.wordRule)) }
        if files.count > Project.maximumFiles { errors.append(FieldError("Files", "at most \(Project.maximumFiles) files")) }
        var total = 0
        var seen: Set<String> = []
        for (position, file) in files.enumerated() {
            let field = "Files[\(position)]"
            total += file.content.count  // in memory already: cannot overflow
            if let reason = Project.pathProblem(file.path) {
                errors.append(FieldError("\(field).Path", reason))
            } else if !seen.insert(file.path).inserted {
                errors.append(FieldError("\(field).Path", "'\(file.path)' appears twice"))
            }
            if !(0...0o7777).contains(file.mode) { errors.append(FieldError("\(field).Mode", "must be permission bits, 0 to 0o7777")) }
            if errors.count >= 20 { break }
        }
        if total > Project.maximumBytes { errors.append(FieldError("Files", "at most \(Project.maximumBytes) bytes in all, not \(total)")) }
        if errors.isEmpty && Project.specs(of: files.map(\.path)).isEmpty && !files.contains(where: { $0.path.hasPrefix("blobs/") }) {
            errors.append(FieldError("Files", "no spec (specs/<spec>/cluster-init/...) and no blob: nothing to run or fetch"))
        }
        return errors
    }
}

/// One version of a project as the control plane keeps it.
public struct Project: Codable, Sendable, Equatable {
    /// The project's name.
    public var name: String
    /// The version.
    public var version: String
    /// Its specs (`specs/<spec>/cluster-init`).
    public var specs: [String]
    /// How many files it has.
    public var files: Int
    /// How many bytes they hold.
    public var bytes: Int64
    /// Unix nanoseconds.
    public var uploadedAt: Int64
    /// The cluster's index of its upload.
    public var modifyIndex: Int64

    /// A project version with every field given.
    public init(name: String, version: String, specs: [String], files: Int, bytes: Int64, uploadedAt: Int64, modifyIndex: Int64) {
        self.name = name
        self.version = version
        self.specs = specs
        self.files = files
        self.bytes = bytes
        self.uploadedAt = uploadedAt
        self.modifyIndex = modifyIndex
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name = "Name"
        case version = "Version"
        case specs = "Specs"
        case files = "Files"
        case bytes = "Bytes"
        case uploadedAt = "UploadedAt"
        case modifyIndex = "ModifyIndex"
    }

    /// The most files a project version may have.
    public static let maximumFiles = 10_000
    /// The most bytes a project version may hold (64 MB).
    public static let maximumBytes = 64 << 20
    static let wordRule = "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"

    /// A project, spec or version name: it becomes a directory name on every node.
    public static func isWord(_ text: String) -> Bool {
        let scalars = text.unicodeScalars
        guard let first = scalars.first, scalars.count <= 64, isAlphanumeric(first) else { return false }
        return scalars.allSatisfy { isAlphanumeric($0) || $0 == "." || $0 == "_" || $0 == "-" }
    }

    private static func isAlphanumeric(_ scalar: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
    }

    /// Why `path` cannot be a project's file, or nil when it can.
    public static func pathProblem(_ path: String) -> String? {
        guard !path.isEmpty, path.utf8.count <= 1024 else { return "must be 1-1024 bytes" }
        guard !path.hasPrefix("/"), !path.contains("\0"), !path.contains("\\") else {
            return "must be relative, '/'-separated, without NUL or backslash"
        }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
            return "must not have an empty, '.' or '..' component"
        }
        if path == "project.ini" { return nil }
        if parts.count >= 2 && parts[0] == "blobs" { return nil }
        if parts.count >= 5 && parts[0] == "specs" && isWord(String(parts[1])) && parts[2] == "cluster-init"
            && ["scripts", "files", "tests"].contains(parts[3])
        {
            return nil
        }
        return "must be project.ini, under blobs/, or under specs/<spec>/cluster-init/scripts|files|tests/"
    }

    /// The specs that `paths` hold, sorted.
    public static func specs(of paths: [String]) -> [String] {
        Set(
            paths.compactMap { path -> String? in
                let parts = path.split(separator: "/")
                return parts.count >= 5 && parts[0] == "specs" && parts[2] == "cluster-init" ? String(parts[1]) : nil
            }
        ).sorted()
    }

    /// The name and version `project.ini` gives (`[project]` section, `name =` and
    /// `version =`), as CycleCloud writes it.
    public static func identity(fromINI text: String) -> (name: String?, version: String?) {
        var section = ""
        var name: String?
        var version: String?
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("#") || line.hasPrefix(";") || line.isEmpty { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                section = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces).lowercased()
                continue
            }
            guard section == "project", let equals = line.firstIndex(of: "=") else { continue }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            if key == "name" { name = value }
            if key == "version" { version = value }
        }
        return (name, version)
    }
}

/// A project's spec given to a node array or to one node: `PROJECT[:SPEC[:VERSION]]`, as
/// CycleCloud's `[[[cluster-init project:spec:version]]]`. No version means the newest upload.
public struct ProjectAssignment: Codable, Sendable, Equatable {
    /// The assignment's id.
    public var id: String
    /// The project.
    public var project: String
    /// The spec of it.
    public var spec: String
    /// Empty: the newest version uploaded when the node converges.
    public var version: String
    /// The node array whose nodes run it; or
    public var nodeArray: String?
    /// the one node that runs it.
    public var nodeID: String?
    /// The cluster's index when it was made.
    public var createIndex: Int64

    /// An assignment with every field given.
    public init(
        id: String = "", project: String, spec: String = "default", version: String = "", nodeArray: String? = nil, nodeID: String? = nil,
        createIndex: Int64 = 0
    ) {
        self.id = id
        self.project = project
        self.spec = spec
        self.version = version
        self.nodeArray = nodeArray
        self.nodeID = nodeID
        self.createIndex = createIndex
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case id = "ID"
        case project = "Project"
        case spec = "Spec"
        case version = "Version"
        case nodeArray = "NodeArray"
        case nodeID = "NodeID"
        case createIndex = "CreateIndex"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decodeIfPresent(String.self, forKey: .id) ?? ""
        project = try container.decode(String.self, forKey: .project)
        spec = try container.decodeIfPresent(String.self, forKey: .spec) ?? "default"
        version = try container.decodeIfPresent(String.self, forKey: .version) ?? ""
        nodeArray = try container.decodeIfPresent(String.self, forKey: .nodeArray)
        nodeID = try container.decodeIfPresent(String.self, forKey: .nodeID)
        createIndex = try container.decodeIfPresent(Int64.self, forKey: .createIndex) ?? 0
    }

    /// The fields that are wrong, each with why; empty when it is valid.
    public func validate() -> [FieldError] {
        var errors: [FieldError] = []
        if !Project.isWord(project) { errors.append(FieldError("Project", Project.wordRule)) }
        if !Project.isWord(spec) { errors.append(FieldError("Spec", Project.wordRule)) }
        if !version.isEmpty && !Project.isWord(version) { errors.append(FieldError("Version", "empty (the newest) or " + Project.wordRule)) }
        switch (nodeArray, nodeID) {
        case (.some(let array), nil): if !NodeArray.isName(array) { errors.append(FieldError("NodeArray", "is not a node array name")) }
        case (nil, .some(let node)):
            if node.isEmpty || node.count > 128 { errors.append(FieldError("NodeID", "must be 1-128 characters")) }
        default: errors.append(FieldError("NodeArray", "give exactly one of NodeArray and NodeID"))
        }
        return errors
    }
}

/// One spec of a project as a node receives it, with the files it runs and tests (blobs are
/// fetched one by one, when asked for).
public struct ClusterInitSpec: Codable, Sendable, Equatable {
    /// The project.
    public var project: String
    /// The version given.
    public var version: String
    /// The spec.
    public var spec: String
    /// The spec's files, with paths relative to its `cluster-init/` directory
    /// (`scripts/10-setup.sh`, `files/app.conf`, `tests/check.sh`).
    public var files: [ProjectFile]

    /// A spec of a project version with its `files`.
    public init(project: String, version: String, spec: String, files: [ProjectFile]) {
        self.project = project
        self.version = version
        self.spec = spec
        self.files = files
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case project = "Project"
        case version = "Version"
        case spec = "Spec"
        case files = "Files"
    }

    /// Its scripts in the order they run: by name, as CycleCloud runs them.
    public var scripts: [ProjectFile] {
        files.filter { $0.path.hasPrefix("scripts/") }.sorted { $0.path.utf8.lexicographicallyPrecedes($1.path.utf8) }
    }
    /// Its tests, by name.
    public var tests: [ProjectFile] { files.filter { $0.path.hasPrefix("tests/") }.sorted { $0.path.utf8.lexicographicallyPrecedes($1.path.utf8) } }
    /// `project:spec:version`.
    public var label: String { "\(project):\(spec):\(version)" }

    /// Every reason a node should refuse it: the same rules as an upload, relative to the spec.
    public func validate() -> [FieldError] {
        var errors: [FieldError] = []
        for (field, word) in [("Project", project), ("Version", version), ("Spec", spec)] where !Project.isWord(word) {
            errors.append(FieldError(field, Project.wordRule))
        }
        for (position, file) in files.enumerated() {
            if let reason = Project.pathProblem("specs/\(spec)/cluster-init/\(file.path)") {
                errors.append(FieldError("Files[\(position)].Path", reason))
            }
        }
        return errors
    }
}

/// What one script or test did on a node.
public struct ScriptResult: Codable, Sendable, Equatable {
    /// `project:spec:version`.
    public var spec: String
    /// Relative to the spec's `cluster-init/`.
    public var script: String
    /// Nil when it could not start or ran out of time.
    public var exitCode: Int32?
    /// How long it ran.
    public var milliseconds: Int64
    /// The end of what it printed.
    public var output: String

    /// What `script` of `spec` did.
    public init(spec: String, script: String, exitCode: Int32?, milliseconds: Int64, output: String) {
        self.spec = spec
        self.script = script
        self.exitCode = exitCode
        self.milliseconds = milliseconds
        self.output = output
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case spec = "Spec"
        case script = "Script"
        case exitCode = "ExitCode"
        case milliseconds = "Milliseconds"
        case output = "Output"
    }

    /// Whether it exited 0.
    public var succeeded: Bool { exitCode == 0 }
}

/// Where a node's configuration stands, as its agent reports it with its registration.
public struct ClusterInitState: Codable, Sendable, Equatable {
    /// Where a node's configuration stands.
    public enum Status: String, Codable, Sendable {
        /// Every assigned script succeeded (or none is assigned).
        case ready
        /// A script failed: the node takes no work until a converge succeeds.
        case failed
    }

    /// Where it stands.
    public var status: Status
    /// Why, in words.
    public var detail: String
    /// When the converge ended (Unix nanoseconds).
    public var at: Int64
    /// The specs it ran, `project:spec:version`.
    public var specs: [String]
    /// What each script did.
    public var results: [ScriptResult]

    /// A state with every field given.
    public init(status: Status, detail: String, at: Int64, specs: [String], results: [ScriptResult]) {
        self.status = status
        self.detail = detail
        self.at = at
        self.specs = specs
        self.results = results
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case status = "Status"
        case detail = "Detail"
        case at = "At"
        case specs = "Specs"
        case results = "Results"
    }
}

/// What a node is given to converge: its assigned specs, in the order they were assigned, and
/// the assignments that name a project, version or spec that was never uploaded.
public struct NodeClusterInit: Codable, Sendable, Equatable {
    /// The specs to run, in the order they were assigned.
    public var specs: [ClusterInitSpec]
    /// `project:spec:version` (version empty: no version of the project at all).
    public var missing: [String]

    /// What a node is given: `specs`, and the assignments that could not be found.
    public init(specs: [ClusterInitSpec], missing: [String]) {
        self.specs = specs
        self.missing = missing
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case specs = "Specs"
        case missing = "Missing"
    }
}
