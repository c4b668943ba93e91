import DroverHTTPClient
import DroverMessaging
import DroverModel
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The node's cluster-init, as CycleCloud's: fetches the project specs assigned to the node (or
/// to its array) from the gateway with the node's own secret, lays each out under
/// `<data-dir>/cluster-init/<project>/<version>/<spec>/`, and runs its `scripts/` in order, the
/// specs in the order they were assigned. The first script that fails ends the converge: the
/// node is then Failed and takes no work until a converge succeeds (`drover converge`).
/// `drover test` runs the specs' `tests/` the same way; `drover download` fetches a blob.
///
/// Each script runs with the agent's environment and `DROVER_NODE_ID`, `DROVER_PROJECT`,
/// `DROVER_PROJECT_VERSION`, `DROVER_SPEC` and `DROVER_SPEC_PATH` (also as
/// `CYCLECLOUD_SPEC_PATH`), in its spec's directory, for at most `scriptTimeout`.
final class ClusterInit: Sendable {
    let nodeID: String
    let secret: String
    let address: String
    let caCertificate: String?
    let directory: URL
    let scriptTimeout: Duration
    let logger: Logger
    /// Where each script's outcome goes besides the agent's log: the cluster's event log.
    let report: @Sendable (ScriptResult) async -> Void
    private let running = Mutex(false)

    struct Busy: Error, CustomStringConvertible {
        var description: String { "a converge or test is already running on this node; try again when it ends" }
    }

    init(
        nodeID: String, secret: String, address: String, caCertificate: String?, directory: URL, scriptTimeout: Duration, logger: Logger,
        report: @escaping @Sendable (ScriptResult) async -> Void
    ) {
        self.nodeID = nodeID
        self.secret = secret
        self.address = address
        self.caCertificate = caCertificate
        self.directory = directory
        self.scriptTimeout = scriptTimeout
        self.logger = logger
        self.report = report
    }

    /// Where the last converge's outcome is kept, so that a restarted agent need not run its
    /// scripts again (nor reach the gateway) once they succeeded.
    var stateFile: URL { directory.deletingLastPathComponent().appendingPathComponent("cluster-init.json") }

    /// The outcome of the last converge on this node, if one was kept.
    func lastState() -> ClusterInitState? {
        (try? Data(contentsOf: stateFile)).flatMap { try? JSONDecoder().decode(ClusterInitState.self, from: $0) }
    }

    /// At the agent's start: the kept outcome when the last converge succeeded; otherwise (the
    /// first start, or after a failure) a converge. - Throws: ``Busy``.
    func atStart(patience: Duration) async throws -> ClusterInitState {
        if let kept = lastState(), kept.status == .ready {
            logger.info("Cluster-init converged before; not run again until drover converge", metadata: ["specs": "\(kept.specs)"])
            return kept
        }
        return try await converge(patience: patience)
    }

    /// Fetches and runs the node's scripts, and keeps the outcome. A gateway that cannot be
    /// reached is asked again every 2 s for `patience`; after that the converge fails.
    /// - Throws: ``Busy``.
    func converge(patience: Duration = .seconds(5)) async throws -> ClusterInitState {
        let state = try await exclusively { await convergeOnce(patience: patience) }
        do {
            try JSONEncoder().encode(state).write(to: stateFile, options: .atomic)
        } catch {
            logger.warning("Cannot keep the converge's outcome; the next start converges again", metadata: ["error": "\(error)"])
        }
        return state
    }

    private func convergeOnce(patience: Duration) async -> ClusterInitState {
        let plan: NodeClusterInit
        do {
            plan = try await fetch(patience: patience)
        } catch {
            return failed("cannot fetch this node's projects from \(address): \(error)", specs: [], results: [])
        }
        let labels = plan.specs.map(\.label)
        guard plan.missing.isEmpty else {
            return failed("assigned but never uploaded: \(plan.missing.joined(separator: ", "))", specs: labels, results: [])
        }
        var results: [ScriptResult] = []
        var scripts = 0
        for spec in plan.specs {
            let place: URL
            do {
                place = try layOut(spec)
            } catch {
                return failed("\(spec.label) cannot be laid out: \(error)", specs: labels, results: results)
            }
            for script in spec.scripts {
                let result = await run(script, of: spec, in: place)
                results.append(result)
                scripts += 1
                guard result.succeeded else {
                    return failed("\(spec.label) \(script.path) \(Self.describe(result))", specs: labels, results: results)
                }
            }
        }
        logger.info("Cluster-init converged", metadata: ["specs": "\(labels)", "scripts": "\(scripts)"])
        return ClusterInitState(
            status: .ready, detail: "\(scripts) script(s) of \(labels.count) spec(s) succeeded", at: Date().unixNanoseconds, specs: labels,
            results: Self.kept(results))
    }

    /// Runs the `tests/` of every spec assigned to the node. - Throws: when the specs cannot
    /// be fetched or laid out, or ``Busy``.
    func test() async throws -> [ScriptResult] {
        try await exclusively {
            let plan = try await fetch(patience: .zero)
            var results: [ScriptResult] = []
            for spec in plan.specs {
                let place = try layOut(spec)
                for test in spec.tests { results.append(await run(test, of: spec, in: place)) }
            }
            return results
        }
    }

    /// Blob `path` of project `project`, as the gateway gives it to this node.
    func blob(project: String, path: String) async throws -> Data {
        var components = URLComponents(string: "\(address)/v1/node/\(nodeID)/project/\(project)/blob")
        components?.queryItems = [URLQueryItem(name: "path", value: path)]
        guard let url = components?.string else { throw Failure("'\(project)' and '\(path)' do not make a URL") }
        let answer = try await HTTPClients.send(
            "GET", url, headers: [Self.secretHeader: secret], body: nil, caCertificate: caCertificate, timeout: .seconds(300))
        guard answer.status == 200 else { throw Failure(Self.reason(answer.status, answer.body)) }
        return answer.body
    }

    // MARK: Steps

    private func exclusively<T>(_ body: () async throws -> T) async throws -> T {
        guard
            running.withLock({ running in
                defer { running = true }; return !running
            })
        else { throw Busy() }
        defer { running.withLock { $0 = false } }
        return try await body()
    }

    private func fetch(patience: Duration) async throws -> NodeClusterInit {
        let deadline = ContinuousClock.now + patience
        while true {
            do {
                let answer = try await HTTPClients.send(
                    "GET", "\(address)/v1/node/\(nodeID)/cluster-init", headers: [Self.secretHeader: secret], body: nil,
                    caCertificate: caCertificate, timeout: .seconds(60))
                guard answer.status == 200 else { throw Failure(Self.reason(answer.status, answer.body)) }
                return try JSONDecoder().decode(NodeClusterInit.self, from: answer.body)
            } catch {
                guard ContinuousClock.now < deadline else { throw error }
                logger.warning("Cannot fetch this node's projects yet; trying again", metadata: ["error": "\(error)"])
                try await Task.sleep(for: .seconds(2))
            }
        }
    }

    /// Writes `spec`'s files afresh under its directory, with their modes (no set-id bits).
    /// - Returns: the spec's directory.
    private func layOut(_ spec: ClusterInitSpec) throws -> URL {
        let problems = spec.validate()
        guard problems.isEmpty else { throw Failure(problems.map(\.description).joined(separator: "; ")) }
        let place = directory.appendingPathComponent(spec.project).appendingPathComponent(spec.version).appendingPathComponent(spec.spec)
        try? FileManager.default.removeItem(at: place)
        for folder in ["scripts", "files", "tests"] {
            try FileManager.default.createDirectory(at: place.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
        for file in spec.files {
            let target = place.appendingPathComponent(file.path)
            try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
            try file.content.write(to: target)
            guard chmod(target.path, mode_t(file.mode & 0o777)) == 0 else { throw POSIXError.fromErrno() }
        }
        return place
    }

    private func run(_ script: ProjectFile, of spec: ClusterInitSpec, in place: URL) async -> ScriptResult {
        let started = ContinuousClock.now
        let environment = [
            "DROVER_NODE_ID": nodeID, "DROVER_PROJECT": spec.project, "DROVER_PROJECT_VERSION": spec.version, "DROVER_SPEC": spec.spec,
            "DROVER_SPEC_PATH": place.path, "CYCLECLOUD_SPEC_PATH": place.path,
        ]
        let (code, output) = await runScript(
            place.appendingPathComponent(script.path).path, limit: scriptTimeout, environment: environment, directory: place, logger: logger)
        let elapsed = ContinuousClock.now - started
        let result = ScriptResult(
            spec: spec.label, script: script.path, exitCode: code,
            milliseconds: elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000, output: output)
        let metadata: Logger.Metadata = ["spec": "\(spec.label)", "script": "\(script.path)", "exit_code": "\(code.map(String.init) ?? "none")"]
        if result.succeeded {
            logger.info("Cluster-init script succeeded", metadata: metadata)
        } else {
            logger.error("Cluster-init script failed", metadata: metadata.merging(["output": "\(output.suffix(500))"]) { $1 })
        }
        await report(result)
        return result
    }

    private func failed(_ detail: String, specs: [String], results: [ScriptResult]) -> ClusterInitState {
        logger.error("Cluster-init failed; the node takes no work until a converge succeeds", metadata: ["detail": "\(detail)"])
        return ClusterInitState(
            status: .failed, detail: String(detail.prefix(4000)), at: Date().unixNanoseconds, specs: specs, results: Self.kept(results))
    }

    /// What a registration carries of the results: the last 50, each with the end of its output.
    static func kept(_ results: [ScriptResult]) -> [ScriptResult] {
        results.suffix(50).map { result in
            var result = result
            result.output = String(result.output.suffix(1000))
            return result
        }
    }

    static func describe(_ result: ScriptResult) -> String {
        result.exitCode.map { "exited \($0)" } ?? "could not start or ran out of time"
    }

    static let secretHeader = "X-Drover-Node-Secret"

    static func reason(_ status: Int, _ body: Data) -> String {
        let said = (try? JSONDecoder().decode(APIError.self, from: body).error) ?? String(decoding: body.prefix(500), as: UTF8.self)
        return "the gateway answered HTTP \(status): \(said)"
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}
