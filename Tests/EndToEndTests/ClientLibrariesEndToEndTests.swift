import DroverProcess
import DroverTestSupport
import Foundation
import Testing

/// Existing clients against a whole cluster with ACLs on, each through a script in
/// `Tests/Clients` run by the Python that `deploy/local/test` installs them into
/// (`DROVER_TEST_PYTHON`).
@Suite(.serialized, .enabled(if: TestEnvironment.runsClientLibraries), .timeLimit(.minutes(5)))
struct ClientLibrariesEndToEndTests {
    static let scripts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Clients")

    /// Runs `Tests/Clients/<script>` with the clients' Python and `arguments`, and expects it to
    /// exit 0 saying "all checks passed" (its output is the failure's message otherwise).
    static func runScript(_ script: String, _ arguments: String, within limit: Duration) async throws {
        let python = try #require(TestEnvironment.python, "DROVER_TEST_PYTHON is not set")
        let path = scripts.appendingPathComponent(script).path
        let run = try await runShellWithStatus("\(python) \(path) \(arguments) 2>&1", within: limit)
        #expect(run.status == 0 && run.output.contains("all checks passed"), "\(run.output)")
    }

    /// Every number and string field of every route in the OpenAPI document, sent Int64.max,
    /// Int64.min, 2^64, -1, 1e308, NaN, "" and a 10 MB string: a 2xx or a 4xx each time, and a
    /// gateway that still answers.
    @Test func hostileValuesInEveryFieldOfEveryRouteAre4xxAndTheGatewayLivesOn() async throws {
        try await Cluster.with { cluster in
            try await cluster.addAgent("hostile")
            let token = try #require(cluster.api.token)
            try await Self.runScript("hostile_values.py", "127.0.0.1 \(cluster.api.port) \(token)", within: .seconds(240))
            #expect(!cluster.api.output.contains("Fatal error"), "the gateway did not trap")
        }
    }

    @Test func pythonNomadRunsAJobWithATokenAndIsRefusedWithout() async throws {
        try await Cluster.with { cluster in
            try await cluster.addAgent("py")
            let token = try #require(cluster.api.token)
            try await Self.runScript("python_nomad.py", "127.0.0.1 \(cluster.api.port) \(token)", within: .seconds(120))
        }
    }

    /// A plugin's view, with pika: a queue bound to `event.allocation.#` on `drover.events` sees a
    /// batch job's allocation from placement to completion in order, the last event's allocation
    /// being what the HTTP API reports; `/v1/event/stream` gives the same events.
    @Test func aPikaConsumerSeesAnAllocationsWholeLifeOnTheEventsExchange() async throws {
        try await Cluster.with { cluster in
            try await cluster.addAgent("events")
            let token = try #require(cluster.api.token)
            let amqp = try #require(cluster.environment["DROVER_AMQP_URL"])
            try await Self.runScript("pika_events.py", "127.0.0.1 \(cluster.api.port) \(token) '\(amqp)'", within: .seconds(150))
        }
    }

    /// Plugin users as RabbitMQ enforces them: one reads what it is bound to on its own queue,
    /// and is refused the internal exchange, other keys, another plugin's queue and publishing.
    @Test func aPluginUserReadsItsOwnQueueAndNothingElse() async throws {
        try await Cluster.with { cluster in
            let token = try #require(cluster.api.token)
            try await Self.runScript("pika_plugin.py", "127.0.0.1 \(cluster.api.port) \(token)", within: .seconds(120))
        }
    }

    /// The example notifier plugin (`examples/plugins/python-notifier`): a failed allocation is
    /// reported with its job's owner and the last lines of its output.
    @Test func theExampleNotifierReportsAFailedAllocationWithItsOwnerAndOutput() async throws {
        try await Cluster.with { cluster in
            try await cluster.addAgent("notified")
            let token = try #require(cluster.api.token)
            try await Self.runScript("notifier_example.py", "127.0.0.1 \(cluster.api.port) \(token)", within: .seconds(150))
        }
    }

    /// chronos-python, unchanged, against the Chronos-shaped API: an `R3` job runs three times on
    /// a node and disables itself, a dependent job runs after its parent succeeds, stats, graph,
    /// search, update, delete, and a client without the token is refused.
    @Test func chronosPythonSchedulesRunsAndChainsJobs() async throws {
        try await Cluster.with { cluster in
            try await cluster.addAgent("chronos")
            let token = try #require(cluster.api.token)
            try await Self.runScript("chronos_python.py", "127.0.0.1:\(cluster.api.port) \(token)", within: .seconds(180))
        }
    }
}

/// The example provider plugin in Python (`examples/plugins/python-provider/provider.py`, pika) against
/// a whole cluster: it makes a node array's machine as a node agent, the job runs there, and it
/// takes the machine away once idle; every message it sends passes the autoscaler's checks.
@Suite(.serialized, .enabled(if: TestEnvironment.runsClientLibraries), .timeLimit(.minutes(5)))
struct PythonProviderEndToEndTests {
    @Test func theExampleProviderMakesAMachineForWaitingWorkAndTakesItAwayWhenIdle() async throws {
        let python = try #require(TestEnvironment.python, "DROVER_TEST_PYTHON is not set")
        let bin = try #require(TestEnvironment.binDirectory)
        try await Cluster.with(environment: ["DROVER_AUTOSCALE_INTERVAL": "0.5", "DROVER_SCALE_DOWN_COOLDOWN": "1"]) { cluster in
            let root = cluster.logs.appendingPathComponent("python-machines")
            let script = ClientLibrariesEndToEndTests.scripts.deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("examples/plugins/python-provider/provider.py").path
            let start =
                "\(bin)/node-agent --data-dir \(root.path)/{name} --node-id {node_id} --node-name {name} --node-class {array} "
                + "--meta nodearray={array} --cpu-total-compute {cpu} --memory-mb {memory_mb} --http-port 0"
            let log = cluster.logs.appendingPathComponent("python-provider.log")
            FileManager.default.createFile(atPath: log.path, contents: nil)
            let provider = Process()
            provider.executableURL = URL(fileURLWithPath: python)
            provider.arguments = [
                script, "--amqp-url", try #require(cluster.environment["DROVER_AMQP_URL"]), "--name", "python-example", "--start-command", start,
                "--gateway", "http://127.0.0.1:\(cluster.api.port)",
            ]
            provider.environment = ProcessInfo.processInfo.environment.merging(cluster.environment) { $1 }
            let output = try FileHandle(forWritingTo: log)
            provider.standardOutput = output
            provider.standardError = output
            try ProcessLaunch.run(provider)
            defer {
                // SIGTERM, and SIGKILL if it has not gone within 10 s: never wait for ever.
                if provider.isRunning { provider.terminate() }
                for _ in 0..<100 where provider.isRunning { usleep(100_000) }
                if provider.isRunning { kill(provider.processIdentifier, SIGKILL) }
            }
            let logText: @Sendable () -> String = { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }
            try await eventually("the provider ready") { logText().contains("provider python-example ready") }

            #expect(
                try await cluster.cli(
                    "nodearray create py --provider python-example --cores 1 --memory-mb 512 --max 1 --idle-after 2s --idle-before 2s"
                )
                .status == 0)
            let file = try cluster.writeJob(
                "py",
                job(
                    "py", command: "echo from a python-made machine",
                    constraints: #"{"LTarget": "${meta.nodearray}", "RTarget": "py", "Operand": "="}"#))
            #expect(try await cluster.cli("job run -detach \(file)").status == 0)
            try await eventually("the job complete on the new machine", within: .seconds(90)) {
                guard let (status, body) = try? await cluster.api.get("/v1/job/py/allocations"), status == 200 else { return false }
                return body.contains(#""ClientStatus":"complete""#)
            }
            try await eventually("the idle machine taken away", within: .seconds(60)) {
                (try? await cluster.cli("nodearray status py"))?.output.contains("py-1     Terminated") == true
            }
            let said = logText()
            #expect(said.contains("answered created for py: ['py-1']") && said.contains("answered terminated for py: ['py-1']"), "\(said)")
        }
    }
}
