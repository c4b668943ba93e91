import DroverTestSupport
import Foundation
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A whole Drover on a fresh database and a RabbitMQ virtual host of its own: the five
/// control-plane services and node agents, each a built executable talking to the test RabbitMQ
/// and PostgreSQL.
final class Cluster: Sendable {
    let database: String
    let url: String
    let virtualHost: TestVirtualHost
    let logs: URL
    let environment: [String: String]
    let services: [RunningService]
    let agents = Locked<[RunningService]>([])
    let run = TestEnvironment.uniqueName("e2e")

    init(algorithm: String = "binpack", environment extra: [String: String] = [:]) async throws {
        let postgres = try #require(TestEnvironment.postgresURL)
        database = TestEnvironment.uniqueName("drover_jobs").replacingOccurrences(of: "-", with: "_")
        try await runShell("psql '\(postgres)' -v ON_ERROR_STOP=1 -qc 'CREATE DATABASE \(database)'")
        var components = try #require(URLComponents(string: postgres))
        components.path = "/\(database)"
        url = try #require(components.string)
        logs = FileManager.default.temporaryDirectory.appendingPathComponent(database)
        try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
        virtualHost = try await TestVirtualHost.create("drover-jobs")
        environment = [
            "DROVER_AMQP_URL": virtualHost.amqpURL, "DROVER_POSTGRES_URL": url,
            "DROVER_AMQP_MANAGEMENT_URL": TestEnvironment.amqpManagementURL ?? "", "DROVER_HEARTBEAT_INTERVAL": "1",
            "DROVER_REGISTRATION_INTERVAL": "0.5", "DROVER_SCHEDULER_ALGORITHM": algorithm,
        ].merging(extra) { $1 }
        let (environment, logs) = (self.environment, self.logs)
        services = try await RunningService.startAll(
            ["api-gateway", "scheduler", "health-monitor", "autoscaler", "log-collector"], environment: environment, logDirectory: logs)
        do {
            for service in services {
                try await eventually("\(service.name) ready") { (try? await service.get("/readyz"))?.status == 200 }
            }
            try await services[0].bootstrap()
        } catch {
            await tearDown()
            throw error
        }
    }

    /// Starts a cluster, runs `body` with it and shuts it down, whether `body` succeeds or not.
    static func with(
        algorithm: String = "binpack", environment: [String: String] = [:], _ body: (Cluster) async throws -> Void
    ) async throws {
        let cluster = try await Cluster(algorithm: algorithm, environment: environment)
        do {
            try await body(cluster)
            try await cluster.shutdown()
        } catch {
            await cluster.tearDown()
            throw error
        }
    }

    var api: RunningService { services[0] }

    /// Starts an agent named `name` offering `cpu` MHz and `memory` MB, and waits until it is a
    /// ready node. The same name again is the same node (its id and data directory), restarted.
    ///
    /// A new node joins with an enrollment token, as every node does (`join: false` leaves it
    /// to the environment's broker user); a restarted one uses the credentials it kept.
    @discardableResult
    func addAgent(
        _ name: String, cpu: Int = 1000, memory: Int = 1000, arguments: [String] = [], environment extra: [String: String] = [:],
        join: Bool = true
    ) async throws -> RunningService {
        var environment = environment.merging(extra) { $1 }
        if join, !FileManager.default.fileExists(atPath: agentDirectory(name).appendingPathComponent("credentials.json").path) {
            environment["DROVER_ENROLL_TOKEN"] = try await enrollToken(for: "\(run)-\(name)")
            environment["DROVER_ADDR"] = "http://127.0.0.1:\(api.port)"
        }
        let agent = try await RunningService.start(
            "node-agent", name: "agent-\(name)-\(agents.value.count)",
            arguments: [
                "--node-id", "\(run)-\(name)", "--node-name", name, "--data-dir", agentDirectory(name).path,
                "--cpu-total-compute", String(cpu), "--memory-mb", String(memory),
            ] + arguments, environment: environment, logDirectory: logs)
        agents.withLock { $0.append(agent) }
        try await eventually("node \(name) ready") { await self.nodeStatus(name) == "ready" }
        return agent
    }

    /// Starts an agent named `name` with the cluster's shared broker user and no enrollment, and
    /// does not wait for its node: a control plane that requires node identity never hears it.
    func addAgentWithoutWaiting(_ name: String) async throws -> RunningService {
        let agent = try await RunningService.start(
            "node-agent", name: "agent-\(name)-\(agents.value.count)",
            arguments: ["--node-id", "\(run)-\(name)", "--node-name", name, "--data-dir", agentDirectory(name).path],
            environment: environment, logDirectory: logs)
        agents.withLock { $0.append(agent) }
        return agent
    }

    /// A one-time enrollment token for node `nodeID`.
    func enrollToken(for nodeID: String) async throws -> String {
        let (status, body) = try await api.request("POST", "/v1/enroll-tokens", body: #"{"TTL": "10m", "NodeID": "\#(nodeID)"}"#)
        let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        guard status == 200, let secret = object?["Secret"] as? String else { throw TestFailure("enroll token: HTTP \(status) \(body)") }
        return secret
    }

    /// The data directory of the agent named `name`.
    func agentDirectory(_ name: String) -> URL { logs.appendingPathComponent("agent-\(name)") }

    /// The CLI's arguments for a node command through the agent named `name`: its address, and
    /// its data directory, where the command reads the agent's token.
    func agentArguments(_ name: String, _ agent: RunningService) -> String {
        "--agent http://127.0.0.1:\(agent.port) --data-dir \(agentDirectory(name).path)"
    }

    /// The status of the node an agent named `name` runs.
    func nodeStatus(_ name: String) async -> String? {
        let node = try? await json("/v1/node/\(run)-\(name)")
        return (node as? [String: Any])?["Status"] as? String
    }

    func json(_ path: String) async throws -> Any {
        let (status, body) = try await api.get(path)
        guard status == 200 else { throw TestFailure("GET \(path): HTTP \(status) \(body)") }
        return try JSONSerialization.jsonObject(with: Data(body.utf8))
    }

    func allocations(_ job: String) async throws -> [[String: Any]] {
        try await json("/v1/job/\(job)/allocations") as? [[String: Any]] ?? []
    }

    /// Runs the `drover` CLI against this cluster. - Returns: its output and exit status.
    /// - Parameter directory: where it runs; the test's own working directory when nil.
    func cli(_ arguments: String, in directory: URL? = nil) async throws -> (output: String, status: Int32) {
        let binary = URL(fileURLWithPath: try #require(TestEnvironment.binDirectory)).appendingPathComponent("drover").path
        let change = directory.map { "cd '\($0.path)' && " } ?? ""
        return try await runShellWithStatus(
            "\(change)DROVER_ADDR=http://127.0.0.1:\(api.port) DROVER_TOKEN=\(api.token ?? "") \(binary) \(arguments) 2>&1")
    }

    func writeJob(_ name: String, _ json: String) throws -> String {
        let file = logs.appendingPathComponent("\(name).json")
        try json.write(to: file, atomically: true, encoding: .utf8)
        return file.path
    }

    /// Stops every process, expecting each to exit cleanly, and removes the database and virtual host.
    func shutdown() async throws {
        for service in (agents.value + services).reversed() where !service.hasExited {
            let status = try await service.terminate()
            #expect(status == 0, "\(service.name) exited \(status) after SIGTERM: \(service.output.suffix(2000))")
        }
        try await removeStorage()
    }

    /// After a failure: stops what still runs and removes what it can, without further checks.
    func tearDown() async {
        for service in (agents.value + services).reversed() { _ = try? await service.terminate() }
        try? await removeStorage()
    }

    private func removeStorage() async throws {
        if let postgres = TestEnvironment.postgresURL {
            try await dropDatabase(database, at: postgres)
        }
        try await virtualHost.delete()
    }
}

func job(_ id: String, type: String = "batch", count: Int = 1, cpu: Int = 100, command: String, constraints: String = "") -> String {
    """
    {"Job": {"ID": "\(id)", "Type": "\(type)", "Constraints": [\(constraints)], "TaskGroups": [{"Name": "g", "Count": \(count),
      "RestartPolicy": {"Attempts": 0, "Mode": "fail"},
      "Tasks": [{"Name": "t", "Driver": "raw_exec", "KillTimeout": 2000000000,
        "Config": {"command": "/bin/sh", "args": ["-c", \(jsonString(command))]},
        "Resources": {"CPU": \(cpu), "MemoryMB": 32}}]}]}}
    """
}

/// `text` as a JSON string literal, quotes and escapes included (encoding a string cannot fail).
func jsonString(_ text: String) -> String {
    (try? JSONEncoder().encode(text)).map { String(decoding: $0, as: UTF8.self) } ?? #""""#
}

/// The pids of processes whose command line contains `text` (`[x]yz` keeps pgrep's own shell out).
func processes(matching text: String) async throws -> String {
    let pattern = "[\(text.prefix(1))]\(text.dropFirst())"
    return try await runShell("pgrep -f '\(pattern)' || true").trimmingCharacters(in: .whitespacesAndNewlines)
}

@Suite(.serialized, .enabled(if: TestEnvironment.runsEndToEnd), .timeLimit(.minutes(5)))
struct JobsEndToEndTests {
    @Test func jobsRunOnTwoAgentsFromSubmissionToCompletion() async throws {
        try await Cluster.with(algorithm: "binpack") { cluster in
            try await cluster.addAgent("a")
            try await cluster.addAgent("b")

            // A batch job of three runs to completion through the CLI, each allocation a real
            // process with Nomad's environment.
            let file = try cluster.writeJob(
                "three", job("three", count: 3, command: "echo \"$NOMAD_JOB_ID $NOMAD_ALLOC_INDEX $NOMAD_GROUP_NAME $NOMAD_TASK_NAME\""))
            let run = try await cluster.cli("job run \(file)")
            #expect(run.status == 0 && run.output.contains("3 of 3 allocation(s) completed"), "\(run.output)")
            let three = try await cluster.allocations("three")
            #expect(three.count == 3 && three.allSatisfy { $0["ClientStatus"] as? String == "complete" })
            #expect(Set(three.compactMap { $0["NodeName"] as? String }) == ["a", "b"], "allocations of one job avoid sharing a node")
            let outputs = try FileManager.default.subpathsOfDirectory(atPath: cluster.logs.path).filter { $0.hasSuffix("logs/t.stdout.0") }
            let lines = try outputs.map { try String(contentsOfFile: cluster.logs.appendingPathComponent($0).path, encoding: .utf8) }
            #expect(Set(lines) == ["three 0 g t\n", "three 1 g t\n", "three 2 g t\n"])

            // Bin packing: with node a busier, a new allocation goes to a.
            let pinned = job(
                "pinned", type: "service", cpu: 500, command: "sleep 300 # \(cluster.run)",
                constraints: #"{"LTarget": "${node.unique.name}", "Operand": "=", "RTarget": "a"}"#)
            #expect(try await cluster.api.request("POST", "/v1/jobs", body: pinned).status == 200)
            try await eventually("pinned running") { (try? await cluster.allocations("pinned"))?.first?["ClientStatus"] as? String == "running" }
            let packed = try await cluster.cli("job run \(try cluster.writeJob("packed", job("packed", command: "true")))")
            #expect(packed.status == 0, "\(packed.output)")
            #expect(try await cluster.allocations("packed").first?["NodeName"] as? String == "a")

            // A constraint keeps a group off a node.
            let avoid = job("avoid", count: 2, command: "true", constraints: #"{"LTarget": "${node.unique.name}", "Operand": "!=", "RTarget": "a"}"#)
            #expect(try await cluster.cli("job run \(try cluster.writeJob("avoid", avoid))").status == 0)
            #expect(try await cluster.allocations("avoid").map { $0["NodeName"] as? String } == ["b", "b"])

            // Stopping a service job ends its processes.
            let marker = "svc-\(cluster.run)"
            let service = job("svc", type: "service", count: 2, command: "sleep 300 # \(marker)")
            #expect(try await cluster.api.request("POST", "/v1/jobs", body: service).status == 200)
            try await eventually("svc running") {
                let allocations = (try? await cluster.allocations("svc")) ?? []
                return allocations.count == 2 && allocations.allSatisfy { $0["ClientStatus"] as? String == "running" }
            }
            #expect(!(try await processes(matching: marker)).isEmpty)
            let stop = try await cluster.cli("job stop svc")
            #expect(stop.status == 0, "\(stop.output)")
            try await eventually("svc stopped") {
                ((try? await cluster.allocations("svc")) ?? []).allSatisfy { $0["ClientStatus"] as? String == "complete" }
            }
            try await eventually("svc processes gone") { ((try? await processes(matching: marker)) ?? "x").isEmpty }

            _ = try await cluster.cli("job stop -purge pinned")
            try await eventually("pinned stopped") { ((try? await processes(matching: "sleep 300 # \(cluster.run)")) ?? "x").isEmpty }
        }
    }

    @Test func theSameJobIDRunsInTwoNamespacesSideBySide() async throws {
        try await Cluster.with { cluster in
            try await cluster.addAgent("a")
            let created = try await cluster.cli("namespace apply -description 'the dev team' dev")
            #expect(created.status == 0, "\(created.output)")
            let file = try cluster.writeJob("twin", job("twin", count: 2, command: "echo \"$NOMAD_NAMESPACE $NOMAD_JOB_ID\""))
            for namespace in ["default", "dev"] {
                let run = try await cluster.cli("job run -namespace \(namespace) \(file)")
                #expect(run.status == 0 && run.output.contains("2 of 2 allocation(s) completed"), "\(namespace): \(run.output)")
            }
            // Two jobs, each with its own allocations, each having run in its own namespace.
            let listed = try await cluster.cli("namespace list")
            #expect(listed.output.contains("default") && listed.output.contains("dev"), "\(listed.output)")
            let outputs = try FileManager.default.subpathsOfDirectory(atPath: cluster.logs.path).filter { $0.hasSuffix("logs/t.stdout.0") }
            let lines = try outputs.map { try String(contentsOfFile: cluster.logs.appendingPathComponent($0).path, encoding: .utf8) }
            #expect(lines.sorted() == ["default twin\n", "default twin\n", "dev twin\n", "dev twin\n"])
            #expect(try await cluster.allocations("twin").count == 2, "default's twin has its own two")
            let dev = try await cluster.api.request("GET", "/v1/job/twin/allocations?namespace=dev")
            let devAllocations = try JSONSerialization.jsonObject(with: Data(dev.body.utf8)) as? [[String: Any]] ?? []
            #expect(
                devAllocations.count == 2
                    && devAllocations.allSatisfy { $0["Namespace"] as? String == "dev" && $0["ClientStatus"] as? String == "complete" })
            // A namespace that holds a job stays until the job is purged.
            #expect(try await cluster.cli("namespace delete dev").status != 0)
            #expect(try await cluster.cli("job stop -namespace dev -purge twin").status == 0)
            #expect(try await cluster.cli("namespace delete dev").status == 0)
            #expect(try await cluster.allocations("twin").count == 2, "default's twin is untouched")
        }
    }

    @Test func aJobThatFitsNowhereSaysWhyAndRunsOnceANodeWithRoomJoins() async throws {
        try await Cluster.with { cluster in
            try await cluster.addAgent("small", cpu: 500)
            let big = job(
                "big", type: "service", cpu: 900, command: "sleep 300 # big-\(cluster.run)",
                constraints: #"{"LTarget": "${meta.rack}", "Operand": "=", "RTarget": "r9"}"#)
            let file = try cluster.writeJob("big", big)

            let plan = try await cluster.cli("job plan \(file)")
            #expect(plan.status == 1)
            #expect(plan.output.contains(#"Constraint "${meta.rack} = r9": 1 nodes excluded by filter"#), "\(plan.output)")
            let run = try await cluster.cli("job run \(file)")
            #expect(run.status == 2 && run.output.contains("waiting for additional capacity"), "\(run.output)")
            let summary = try await cluster.json("/v1/job/big/summary") as? [String: Any]
            #expect(((summary?["Summary"] as? [String: Any])?["g"] as? [String: Any])?["Queued"] as? Int == 1)

            // A node on rack r9 but without room changes nothing; one with room takes the allocation.
            try await cluster.addAgent("r9-small", cpu: 500, arguments: ["--meta", "rack=r9"])
            try await cluster.addAgent("r9-big", cpu: 2000, arguments: ["--meta", "rack=r9"])
            try await eventually("big running on r9-big") {
                let allocation = (try? await cluster.allocations("big"))?.first
                return allocation?["ClientStatus"] as? String == "running" && allocation?["NodeName"] as? String == "r9-big"
            }
            let evaluations = try await cluster.json("/v1/job/big/evaluations") as? [[String: Any]] ?? []
            #expect(evaluations.contains { $0["TriggeredBy"] as? String == "queued-allocs" && $0["Status"] as? String == "complete" })

            _ = try await cluster.cli("job stop big")
            try await eventually("big stopped") { ((try? await processes(matching: "big-\(cluster.run)")) ?? "x").isEmpty }
        }
    }

    @Test func aFailingTaskIsRestartedPerItsPolicyAndARestartedAgentAdoptsItsTasks() async throws {
        try await Cluster.with { cluster in
            let agent = try await cluster.addAgent("a")

            // Attempts 1, Delay 0: one restart, then the allocation fails (and is not rescheduled:
            // ReschedulePolicy Attempts 0).
            let failing = """
                {"Job": {"ID": "failing", "Type": "batch", "TaskGroups": [{"Name": "g",
                  "RestartPolicy": {"Attempts": 1, "Interval": 60000000000, "Delay": 0, "Mode": "fail"},
                  "ReschedulePolicy": {"Attempts": 0},
                  "Tasks": [{"Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/sh", "args": ["-c", "exit 3"]},
                    "Resources": {"CPU": 100, "MemoryMB": 32}}]}]}}
                """
            let run = try await cluster.cli("job run \(try cluster.writeJob("failing", failing))")
            #expect(run.status == 1 && run.output.contains("0 of 1 allocation(s) completed"), "\(run.output)")
            let allocation = try #require(try await cluster.allocations("failing").first)
            let id = try #require(allocation["ID"] as? String)
            let detail = try await cluster.json("/v1/allocation/\(id)") as? [String: Any]
            let task = (detail?["TaskStates"] as? [String: Any])?["t"] as? [String: Any]
            #expect(detail?["ClientStatus"] as? String == "failed")
            #expect((task?["Restarts"] as? NSNumber)?.intValue == 1, "\(String(describing: task))")
            #expect(
                (task?["Failed"] as? NSNumber)?.boolValue == true && (task?["ExitCode"] as? NSNumber)?.intValue == 3, "\(String(describing: task))")
            #expect(try await cluster.allocations("failing").count == 1)

            // The agent stops; its task goes on; the next agent adopts it instead of running it twice.
            let marker = "adopt-\(cluster.run)"
            #expect(
                try await cluster.api.request("POST", "/v1/jobs", body: job("long", type: "service", command: "sleep 300 # \(marker)")).status == 200)
            try await eventually("long running") { (try? await cluster.allocations("long"))?.first?["ClientStatus"] as? String == "running" }
            let pid = try await processes(matching: marker)
            #expect(!pid.isEmpty)
            #expect(try await agent.terminate() == 0)
            #expect(try await processes(matching: marker) == pid, "the task outlives its agent")
            let again = try await RunningService.start(
                "node-agent", name: "agent-a-again",
                arguments: [
                    "--node-id", "\(cluster.run)-a", "--node-name", "a", "--data-dir", cluster.logs.appendingPathComponent("agent-a").path,
                    "--cpu-total-compute", "1000", "--memory-mb", "1000",
                ], environment: cluster.environment, logDirectory: cluster.logs)
            cluster.agents.withLock { agents in agents = agents.filter { $0 !== agent } + [again] }
            try await eventually("task adopted") { again.output.contains("adopted") }
            #expect(try await processes(matching: marker) == pid, "not started twice")
            _ = try await cluster.cli("job stop long")
            try await eventually("long stopped") { ((try? await processes(matching: marker)) ?? "x").isEmpty }
            // The agent reports the stop once the task is gone.
            try await eventually("long reported complete") {
                (try? await cluster.allocations("long"))?.first?["ClientStatus"] as? String == "complete"
            }
        }
    }

    @Test func badInputIsRefusedWithTheFieldAndUnknownIdsAre404() async throws {
        try await Cluster.with { cluster in
            let bad = try await cluster.api.request(
                "POST", "/v1/jobs", body: #"{"Job": {"ID": "x", "TaskGroups": [{"Name": "g", "Count": -2, "Tasks": []}]}}"#)
            #expect(bad.status == 400)
            #expect(
                bad.body.contains(#""Field":"Job.TaskGroups[0].Count""#) && bad.body.contains(#""Field":"Job.TaskGroups[0].Tasks""#), "\(bad.body)")
            let notJSON = try await cluster.api.request("POST", "/v1/jobs", body: "{oops")
            #expect(notJSON.status == 400 && notJSON.body.contains(#""Field":"body""#))
            let mismatch = try await cluster.api.request("POST", "/v1/job/other", body: job("x", command: "true"))
            #expect(mismatch.status == 400 && mismatch.body.contains("does not match"))
            for path in ["/v1/job/none", "/v1/job/none/allocations", "/v1/node/none", "/v1/allocation/none", "/v1/evaluation/none"] {
                let answer = try await cluster.api.get(path)
                #expect(answer.status == 404 && answer.body.contains("not found"), "\(path): \(answer)")
            }
            #expect(try await cluster.api.request("DELETE", "/v1/job/none").status == 404)
            #expect(try await cluster.api.get("/v1/jobs?index=abc").status == 400)
            // A blocking query returns once the index moves past the one given.
            // The index is taken once the first job's evaluation is done (blocked: there are no
            // nodes), so that only the second job can move it.
            #expect(try await cluster.api.request("POST", "/v1/jobs", body: job("first", command: "true")).status == 200)
            try await eventually("first evaluated") {
                let evaluations = (try? await cluster.json("/v1/job/first/evaluations")) as? [[String: Any]] ?? []
                return evaluations.contains { $0["Status"] as? String == "complete" }
            }
            let evaluations = try await cluster.json("/v1/job/first/evaluations") as? [[String: Any]] ?? []
            let indexes = evaluations.compactMap { ($0["ModifyIndex"] as? NSNumber)?.intValue }
            let index = try #require(indexes.max())
            // As a Nomad client does: a blocking query may return on another change (any commit
            // wakes it), so ask again from the index it answered with until the job shows.
            let waiting = Task { () -> (status: Int, body: String) in
                var next = index
                for _ in 0..<50 {
                    let answer = try await cluster.api.getWithIndex("/v1/jobs?index=\(next)&wait=20s")
                    guard answer.status == 200, !answer.body.contains(#""ID":"second""#), answer.index > next else {
                        return (answer.status, answer.body)
                    }
                    next = answer.index
                }
                return (0, "the index kept moving without the job")
            }
            #expect(try await cluster.api.request("POST", "/v1/jobs", body: job("second", command: "true")).status == 200)
            let answer = try await waiting.value
            #expect(answer.status == 200 && answer.body.contains(#""ID":"second""#), "\(answer.body)")
            let openapi = try await cluster.api.get("/v1/openapi.yaml")
            #expect(openapi.status == 200 && openapi.body.contains("/v1/job/{id}/plan"))
        }
    }

    /// The CLI's ACL commands against the real gateway: a policy from an HCL file, a client token
    /// holding it, and what that token may and may not do, with errors that say what to do.
    @Test func theCLIManagesPoliciesAndTokensAndTokensLimitWhatItMayDo() async throws {
        try await Cluster.with { cluster in
            let rules = cluster.logs.appendingPathComponent("reader.hcl")
            try #"namespace "default" { policy = "read" }"#.write(to: rules, atomically: true, encoding: .utf8)
            let applied = try await cluster.cli("acl policy apply -description 'reads jobs' reader \(rules.path)")
            #expect(applied.status == 0 && applied.output.contains("Successfully wrote"), "\(applied.output)")
            #expect(try await cluster.cli("acl policy list").output.contains("reads jobs"))
            #expect(try await cluster.cli("acl policy info reader").output.contains(#"policy = "read""#))

            let created = try await cluster.cli("acl token create -name ci -policy reader -json")
            #expect(created.status == 0, "\(created.output)")
            let token = try #require(try JSONSerialization.jsonObject(with: Data(created.output.utf8)) as? [String: Any])
            let secret = try #require(token["SecretID"] as? String)
            let accessor = try #require(token["AccessorID"] as? String)
            #expect(try await cluster.cli("acl token list").output.contains(accessor))
            let info = try await cluster.cli("acl token info \(accessor)")
            #expect(info.output.contains("Secret ID    = <hidden>") && info.output.contains("[reader]"), "\(info.output)")

            // The reader's token: it lists jobs, it may not submit one, and `self` shows it.
            let mine = try await cluster.cli("acl token self --token \(secret)")
            #expect(mine.output.contains("Name         = ci"), "\(mine.output)")
            #expect(try await cluster.cli("job status --token \(secret)").status == 0)
            let refused = try await cluster.cli("job run --token \(secret) \(try cluster.writeJob("nope", job("nope", command: "true")))")
            #expect(refused.status != 0 && refused.output.contains("Permission denied") && refused.output.contains("drover acl token create"))
            let unknown = try await cluster.cli("job status --token \(UUID().uuidString)")
            #expect(unknown.status != 0 && unknown.output.contains("ACL token not found") && unknown.output.contains("--token"), "\(unknown.output)")

            #expect(try await cluster.cli("acl token delete \(accessor)").status == 0)
            #expect(try await cluster.cli("job status --token \(secret)").status != 0, "a revoked token is refused")

            // A role: the token holds it by name and has its policies.
            let role = try await cluster.cli("acl role create -name readers -description 'read jobs' -policy reader -json")
            #expect(role.status == 0, "\(role.output)")
            let roleID = try #require((try JSONSerialization.jsonObject(with: Data(role.output.utf8)) as? [String: Any])?["ID"] as? String)
            #expect(try await cluster.cli("acl role list").output.contains("readers"))
            #expect(try await cluster.cli("acl role info -by-name readers").output.contains(roleID))
            let held = try await cluster.cli("acl token create -name via-role -role-name readers -json")
            let viaRole = try #require((try JSONSerialization.jsonObject(with: Data(held.output.utf8)) as? [String: Any])?["SecretID"] as? String)
            #expect(try await cluster.cli("job status --token \(viaRole)").status == 0)
            #expect(try await cluster.cli("acl role delete \(roleID)").status == 0)
            #expect(try await cluster.cli("job status --token \(viaRole)").status != 0, "a deleted role grants nothing")
            #expect(try await cluster.cli("acl policy delete reader").status == 0)
            #expect(try await cluster.cli("acl bootstrap").output.contains("already done"), "bootstrap works once")
        }
    }
}
