import DroverTestSupport
import Foundation
import Testing

/// Every link over TLS, with certificates of the test run's own (`deploy/local/tls-certs`): the
/// gateway serves HTTPS, the services and the agent reach RabbitMQ over `amqps://` and
/// PostgreSQL with `sslmode=verify-full`, the CLI and the agent verify the gateway; a job runs end
/// to end over them. A client that does not trust the authority is refused on each link.
@Suite(.serialized, .enabled(if: TestEnvironment.runsTLS), .timeLimit(.minutes(5)))
struct TLSEndToEndTests {
    @Test func aJobRunsOverTLSOnEveryLinkAndAClientThatDoesNotTrustTheAuthorityIsRefused() async throws {
        let directory = try #require(TestEnvironment.tlsDirectory, "DROVER_TEST_TLS_DIR is not set")
        let amqpsPort = try #require(TestEnvironment.amqpsPort, "DROVER_TEST_AMQPS_PORT is not set")
        let (ca, other) = ("\(directory)/ca.pem", "\(directory)/other-ca.pem")
        let sandbox = try await Sandbox.create()
        var services: [RunningService] = []
        do {
            // The servers' certificates name localhost, so the clients connect by that name.
            var postgres = try #require(URLComponents(string: sandbox.url))
            postgres.host = "localhost"
            postgres.percentEncodedQuery = "sslmode=verify-full&sslrootcert=\(ca)"
            let amqps = "amqps://guest:guest@localhost:\(amqpsPort)/\(sandbox.virtualHost.name)?cacertfile=\(ca)"
            let environment = [
                "DROVER_AMQP_URL": amqps, "DROVER_POSTGRES_URL": try #require(postgres.string),
                "DROVER_AMQP_MANAGEMENT_URL": TestEnvironment.amqpManagementURL ?? "", "DROVER_HEARTBEAT_INTERVAL": "1",
                "DROVER_REGISTRATION_INTERVAL": "0.5",
            ]
            let gateway = try await RunningService.start(
                "api-gateway", name: "api-gateway",
                arguments: ["--tls-cert", "\(directory)/server.pem", "--tls-key", "\(directory)/server-key.pem"], environment: environment,
                logDirectory: sandbox.logs)
            services.append(gateway)
            services += try await RunningService.startAll(
                ["scheduler", "health-monitor", "log-collector"], environment: environment, logDirectory: sandbox.logs)
            for service in services.dropFirst() {
                try await eventually("\(service.name) ready over amqps and verify-full") { (try? await service.get("/readyz"))?.status == 200 }
            }
            let address = "https://localhost:\(gateway.port)"
            let binary = URL(fileURLWithPath: try #require(TestEnvironment.binDirectory)).appendingPathComponent("drover").path
            let token = Locked<String>("")
            @Sendable func cli(_ arguments: String, trusting authority: String? = ca) async throws -> (output: String, status: Int32) {
                try await runShellWithStatus(
                    "DROVER_ADDR=\(address) DROVER_CACERT=\(authority ?? "") DROVER_TOKEN=\(token.value) \(binary) \(arguments) 2>&1")
            }
            try await eventually("the gateway ready over https") { (try? await cli("status"))?.status == 0 }

            // Bootstrap, a node joined over https and amqps, and a job through all of it.
            let bootstrap = try await cli("acl bootstrap -json")
            let secret = try #require(json(bootstrap.output)?["SecretID"] as? String, "\(bootstrap.output)")
            token.withLock { $0 = secret }
            let enroll = try await cli("node enroll-token create -json")
            let enrollToken = try #require(json(enroll.output)?["Secret"] as? String, "\(enroll.output)")
            let agent = try await RunningService.start(
                "node-agent", name: "node-agent",
                arguments: ["--data-dir", sandbox.logs.appendingPathComponent("agent").path, "--node-name", "tls"],
                environment: environment.merging(["DROVER_ENROLL_TOKEN": enrollToken, "DROVER_ADDR": address, "DROVER_CACERT": ca]) { $1 },
                logDirectory: sandbox.logs)
            services.append(agent)
            try await eventually("the node ready") { (try? await cli("node status"))?.output.contains("ready") == true }
            let job = sandbox.logs.appendingPathComponent("tls.json")
            try
                #"{"Job": {"ID": "tls", "Type": "batch", "TaskGroups": [{"Name": "g", "Tasks": [{"Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/echo", "args": ["over tls"]}}]}]}}"#
                .write(to: job, atomically: true, encoding: .utf8)
            let run = try await cli("job run \(job.path)")
            #expect(run.status == 0 && run.output.contains("completed"), "\(run.output)")
            let allocations = try await runShell(
                "curl -sf --cacert \(ca) -H 'X-Nomad-Token: \(secret)' \(address)/v1/job/tls/allocations")
            let allocation = try #require((jsonValue(allocations) as? [[String: Any]])?.first?["ID"] as? String, "\(allocations)")
            try await eventually("the output shipped") { (try? await cli("alloc logs \(allocation) t"))?.output == "over tls\n" }

            // Refused: a client without the authority, or trusting another; plain HTTP.
            let untrusted = try await cli("status", trusting: nil)
            #expect(untrusted.status != 0 && untrusted.output.contains("TLS handshake"), "\(untrusted.output)")
            #expect(try await cli("status", trusting: other).status != 0)
            #expect((try? await runShell("curl -sf -o /dev/null http://localhost:\(gateway.port)/readyz")) == nil, "no plain HTTP")
            #expect(try await runShellWithStatus("curl -sf --cacert \(ca) -o /dev/null \(address)/readyz").status == 0)
            // A service whose roots are another authority's reaches neither server and is not ready.
            var wrongRoot = postgres
            wrongRoot.percentEncodedQuery = "sslmode=verify-full&sslrootcert=\(other)"
            let doubting = try await RunningService.start(
                "scheduler", name: "scheduler-untrusting", arguments: [],
                environment: environment.merging([
                    "DROVER_AMQP_URL": amqps.replacingOccurrences(of: ca, with: other), "DROVER_POSTGRES_URL": try #require(wrongRoot.string),
                ]) { $1 },
                logDirectory: sandbox.logs)
            services.append(doubting)
            try await eventually("both servers refused") {
                doubting.output.contains("SSL peer cert verification failed") && doubting.output.contains("CERTIFICATE_VERIFY_FAILED")
            }
            #expect((try? await doubting.get("/readyz"))?.status == 503)
        } catch {
            for service in services.reversed() { _ = try? await service.terminate() }
            try? await sandbox.remove()
            throw error
        }
        for service in services.reversed() { _ = try? await service.terminate() }
        try await sandbox.remove()
    }

    /// The JSON in a command's output, or nil (the caller's #require shows the output).
    private func json(_ text: String) -> [String: Any]? { jsonValue(text) as? [String: Any] }
    private func jsonValue(_ text: String) -> Any? { try? JSONSerialization.jsonObject(with: Data(text.utf8)) }
}
