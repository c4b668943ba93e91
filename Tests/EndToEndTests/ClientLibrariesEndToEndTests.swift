import DroverTestSupport
import Foundation
import Testing

/// Existing clients against a whole cluster with ACLs on, each through a script in
/// `Tests/Clients` run by the Python that `deploy/local/test` installs them into
/// (`DROVER_TEST_PYTHON`).
@Suite(.serialized, .enabled(if: TestEnvironment.runsClientLibraries), .timeLimit(.minutes(5)))
struct ClientLibrariesEndToEndTests {
    static let scripts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Clients")

    @Test func pythonNomadRunsAJobWithATokenAndIsRefusedWithout() async throws {
        let python = try #require(TestEnvironment.python, "DROVER_TEST_PYTHON is not set")
        try await Cluster.with { cluster in
            try await cluster.addAgent("py")
            let token = try #require(cluster.api.token)
            let script = Self.scripts.appendingPathComponent("python_nomad.py").path
            let run = try await runShellWithStatus("\(python) \(script) 127.0.0.1 \(cluster.api.port) \(token) 2>&1", within: .seconds(120))
            #expect(run.status == 0 && run.output.contains("all checks passed"), "\(run.output)")
        }
    }
}
