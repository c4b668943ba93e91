import DroverTestSupport
import Foundation
import Testing

/// Cluster-init through the whole system: a project uploaded with the CLI and assigned to a
/// node runs in order on that node before it registers, its tests and blobs are reachable
/// through the agent, a failing script makes the node ineligible and a converge that succeeds
/// brings it back.
@Suite(.enabled(if: TestEnvironment.runsEndToEnd), .timeLimit(.minutes(5)))
struct ClusterInitEndToEndTests {
    /// Writes a project laid out as CycleCloud's under `root`: `files` by path, `executable` ones 0755.
    static func writeProject(_ root: URL, _ files: [String: String], executable: Set<String>) throws {
        for (path, text) in files {
            let file = root.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: file, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: executable.contains(path) ? 0o755 : 0o644], ofItemAtPath: file.path)
        }
    }

    @Test func aProjectRunsOnItsNodeInOrderAndAFailedConvergeKeepsWorkAway() async throws {
        try await Cluster.with { cluster in
            let mark = cluster.logs.appendingPathComponent("cluster-init.mark").path
            let nodeID = "\(cluster.run)-a"
            @Sendable func project(_ version: String, first: String) throws -> String {
                let root = cluster.logs.appendingPathComponent("project-\(version)")
                try Self.writeProject(
                    root,
                    [
                        "project.ini": "[project]\nname = app\nversion = \(version)\n",
                        "specs/default/cluster-init/scripts/10-first.sh": "#!/bin/sh\n\(first)\n",
                        // Not executable: run with /bin/sh.
                        "specs/default/cluster-init/scripts/20-second.sh": "echo second \"$DROVER_PROJECT_VERSION\" >> '\(mark)'\n",
                        "specs/default/cluster-init/files/app.conf": "setting=1\n",
                        "specs/default/cluster-init/tests/01-check.sh": "#!/bin/sh\ngrep -q second '\(mark)'\n",
                        "specs/default/chef/recipes/left-out.rb": "# not cluster-init\n",
                        "blobs/data/tool.txt": "blob \(version)\n",
                    ], executable: ["specs/default/cluster-init/scripts/10-first.sh", "specs/default/cluster-init/tests/01-check.sh"])
                return root.path
            }
            let first =
                "echo \"first $DROVER_PROJECT $DROVER_SPEC $DROVER_NODE_ID\" >> '\(mark)'\ncat \"$DROVER_SPEC_PATH/files/app.conf\" >> '\(mark)'"
            let upload = try await cluster.cli("project upload \(try project("1.0.0", first: first))")
            #expect(upload.status == 0 && upload.output.contains("Uploaded project app 1.0.0: 6 file(s), spec(s) default"), "\(upload.output)")
            #expect(upload.output.contains("Left out (not part of cluster-init): specs/default/chef/recipes/left-out.rb"), "\(upload.output)")
            let assign = try await cluster.cli("project assign app:default --node \(nodeID)")
            #expect(assign.status == 0 && assign.output.contains("Assigned app:default:newest to node \(nodeID)"), "\(assign.output)")
            #expect(try await cluster.cli("project assign app:nospec --node \(nodeID)").output.contains("has no spec 'nospec'"))

            // The agent converges before it registers: by the time the node is ready, both ran, in order.
            let agent = try await cluster.addAgent("a")
            #expect(try String(contentsOfFile: mark, encoding: .utf8) == "first app default \(nodeID)\nsetting=1\nsecond 1.0.0\n")
            @Sendable func node() async -> [String: Any] { ((try? await cluster.json("/v1/node/\(nodeID)")) as? [String: Any]) ?? [:] }
            let ready = await node()
            #expect((ready["ClusterInit"] as? [String: Any])?["Status"] as? String == "ready", "\(ready)")
            #expect(ready["SchedulingEligibility"] as? String == "eligible")

            let arguments = cluster.agentArguments("a", agent)
            let test = try await cluster.cli("test \(arguments)")
            #expect(
                test.status == 0 && test.output.contains("app:default:1.0.0 tests/01-check.sh: ok") && test.output.contains("1 passed, 0 failed"),
                "\(test.output)")
            let destination = cluster.logs.appendingPathComponent("downloads")
            try FileManager.default.createDirectory(at: destination, withIntermediateDirectories: true)
            let download = try await cluster.cli("download --project app data/tool.txt \(destination.path) \(arguments)")
            #expect(download.status == 0, "\(download.output)")
            #expect(try String(contentsOf: destination.appendingPathComponent("tool.txt"), encoding: .utf8) == "blob 1.0.0\n")
            let escape = try await cluster.cli("download --project app ../../etc/passwd \(destination.path) \(arguments)")
            #expect(escape.status != 0 && escape.output.contains("must not have an empty, '.' or '..' component"), "\(escape.output)")
            let missing = try await cluster.cli("download --project app nothing.bin \(destination.path) \(arguments)")
            #expect(missing.status != 0 && missing.output.contains("not found"), "\(missing.output)")
            // Only the node itself, with its own secret, may fetch its projects.
            let forged = try await runShellWithStatus(
                "curl -s -o /dev/null -w '%{http_code}' -H 'X-Drover-Node-Secret: forged' http://127.0.0.1:\(cluster.api.port)/v1/node/\(nodeID)/cluster-init"
            )
            #expect(forged.output == "401", "\(forged.output)")

            // A newer version whose first script fails: the converge says so and the node takes no work.
            _ = try await cluster.cli("project upload \(try project("2.0.0", first: "echo broken >&2\nexit 3"))")
            let failed = try await cluster.cli("converge \(arguments)")
            #expect(failed.status == 1 && failed.output.contains("Failed: app:default:2.0.0 scripts/10-first.sh exited 3"), "\(failed.output)")
            #expect(failed.output.contains("broken"), "the failing script's output is shown: \(failed.output)")
            try await eventually("the node ineligible") { await node()["SchedulingEligibility"] as? String == "ineligible" }
            let status = try await cluster.cli("node status \(nodeID)")
            #expect(status.output.contains("ClusterInit = failed: app:default:2.0.0 scripts/10-first.sh exited 3"), "\(status.output)")
            let events = try await cluster.json("/v1/events?node=\(nodeID)") as? [[String: Any]] ?? []
            #expect(events.contains { $0["Type"] as? String == "ClusterInit" && $0["Level"] as? String == "error" }, "\(events)")

            // Fixed: the next converge succeeds and the node takes work again.
            _ = try await cluster.cli("project upload \(try project("3.0.0", first: "true"))")
            let fixed = try await cluster.cli("converge \(arguments)")
            #expect(fixed.status == 0 && fixed.output.contains("Converged: 2 script(s) of 1 spec(s) succeeded"), "\(fixed.output)")
            try await eventually("the node eligible again") { await node()["SchedulingEligibility"] as? String == "eligible" }
            #expect(try await cluster.cli("project list").output.contains("3.0.0"))
        }
    }
}
