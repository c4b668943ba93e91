import DroverTestSupport
import Foundation
import Testing

/// Autoscaling end to end on one machine: the five services, the `local` provider making node
/// agents as machines, and the CLI. Idle times, the cooldown and the provider timeout are
/// shortened; the rules behind them are the autoscale core's, tested on their own.
@Suite(.serialized, .enabled(if: TestEnvironment.runsEndToEnd), .timeLimit(.minutes(5)))
struct AutoscalingEndToEndTests {
    /// Kills every agent the provider started (their pids are in `<root>/<machine>/agent.pid`).
    static func killMachines(under root: URL) async {
        _ = try? await runShell("for file in \(root.path)/*/agent.pid; do [ -f \"$file\" ] && kill -9 \"$(cat \"$file\")\" 2>/dev/null; done; true")
    }

    @Test func machinesComeForWorkThatDoesNotFitAndGoWhenIdleTargetsHoldAndASilentProviderIsGivenUpOn() async throws {
        // The provider timeout leaves room for a busy machine: the local provider's answer has
        // taken over 3 s while other suites ran, and a request given up is asked again under a
        // new name (execute-3 instead of execute-1).
        try await Cluster.with(environment: [
            "DROVER_AUTOSCALE_INTERVAL": "0.5", "DROVER_SCALE_DOWN_COOLDOWN": "1", "DROVER_PROVIDER_TIMEOUT": "10",
        ]) { cluster in
            let root = cluster.logs.appendingPathComponent("machines")
            let provider = try await RunningService.start(
                "local-provider", name: "local-provider", arguments: ["--data-root", root.path, "--capacity", "4"],
                environment: cluster.environment.merging(["DROVER_ADDR": "http://127.0.0.1:\(cluster.api.port)"]) { $1 },
                logDirectory: cluster.logs)
            do {
                try await eventually("the provider ready") { (try? await provider.get("/readyz"))?.status == 200 }
                let created = try await cluster.cli(
                    "nodearray create execute --cores 1 --memory-mb 512 --min 0 --max 3 --idle-after 3s --idle-before 3s --boot-timeout 2m")
                #expect(created.status == 0, "\(created.output)")
                // Each machine runs the array's cluster-init project before its node takes work.
                let mark = cluster.logs.appendingPathComponent("array-init.mark").path
                let project = cluster.logs.appendingPathComponent("array-project")
                try ClusterInitEndToEndTests.writeProject(
                    project,
                    ["specs/default/cluster-init/scripts/setup.sh": "#!/bin/sh\necho \"$DROVER_NODE_ID\" >> '\(mark)'\n"],
                    executable: ["specs/default/cluster-init/scripts/setup.sh"])
                #expect(try await cluster.cli("project upload --name setup --version 1 \(project.path)").status == 0)
                #expect(try await cluster.cli("project assign setup --nodearray execute").status == 0)

                // Two allocations of 0.8 cores and no node: two 1-core machines come, join, run them.
                let file = try cluster.writeJob("wide", job("wide", count: 2, cpu: 800, command: "sleep 1"))
                // Nothing can place it yet: `job run` says so and returns, as Nomad's does.
                let run = try await cluster.cli("job run -detach \(file)")
                #expect(run.status == 0, "\(run.output)")
                try await eventually("both allocations complete on new machines", within: .seconds(90)) {
                    guard let (status, body) = try? await cluster.api.get("/v1/job/wide/allocations"), status == 200,
                        let allocations = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [[String: Any]]
                    else { return false }
                    return allocations.filter { $0["ClientStatus"] as? String == "complete" }.count == 2
                }
                // They ran on the array's new machines (which may already be going: idle times are short here).
                let (_, arrayBody) = try await cluster.api.get("/v1/nodearray/execute")
                let array = try #require(try JSONSerialization.jsonObject(with: Data(arrayBody.utf8)) as? [String: Any])
                let machines = try #require(array["Machines"] as? [[String: Any]])
                #expect(Set(machines.compactMap { $0["Name"] as? String }) == ["execute-1", "execute-2"], "\(arrayBody)")
                let (_, allocationsBody) = try await cluster.api.get("/v1/job/wide/allocations")
                let allocations = try #require(try JSONSerialization.jsonObject(with: Data(allocationsBody.utf8)) as? [[String: Any]])
                // Both on the new machines (both on one, if the first finished before the second machine came).
                #expect(Set(allocations.compactMap { $0["NodeID"] as? String }).isSubset(of: Set(machines.compactMap { $0["NodeID"] as? String })))
                let configured = try String(contentsOfFile: mark, encoding: .utf8).split(separator: "\n").map(String.init)
                #expect(Set(configured) == Set(machines.compactMap { $0["NodeID"] as? String }) && configured.count == 2, "\(configured)")

                // Idle past 3 s and the cooldown: drained, taken away, their nodes forgotten (MinCount 0).
                try await eventually("idle machines taken away", within: .seconds(60)) {
                    let shown = (try? await cluster.cli("nodearray status execute"))?.output ?? ""
                    return shown.contains("execute-1  Terminated") && shown.contains("execute-2  Terminated")
                }
                try await eventually("their nodes forgotten") { (try? await cluster.cli("node status"))?.output.contains("execute-") == false }
                // And their broker users removed: nothing can speak for those nodes again.
                let management = try #require(TestEnvironment.amqpManagementURL)
                for nodeID in machines.compactMap({ $0["NodeID"] as? String }) {
                    try await eventually("the broker user of \(nodeID) removed") {
                        let answer = try? await runShellWithStatus(
                            "curl -s -o /dev/null -w '%{http_code}' '\(management)/api/users/drover-node-\(nodeID)'")
                        return answer?.output == "404"
                    }
                }

                // A target: three machines, held while it lasts.
                let target = try await cluster.cli("autoscale --instancecount 3 --name execute --expiration 10m")
                #expect(target.status == 0, "\(target.output)")
                try await eventually("three ready machines", within: .seconds(90)) {
                    let shown = (try? await cluster.cli("nodearray list"))?.output ?? ""
                    return shown.split(separator: "\n").contains {
                        $0.hasPrefix("execute ") && $0.split(separator: " ").filter { !$0.isEmpty }[6] == "3"
                    }
                }

                // A provider nobody runs: the request times out, is recorded, and is asked again later.
                #expect(try await cluster.cli("nodearray create silent --provider nobody --cores 1 --memory-mb 512 --min 1 --max 1").status == 0)
                try await eventually("the silent provider given up on", within: .seconds(60)) {
                    let shown = (try? await cluster.cli("nodearray status silent"))?.output ?? ""
                    return shown.contains("silent-1  Failed") && shown.contains("backing off after 1 failure(s)")
                }
                let events = try await cluster.cli("events -priority all -json")
                #expect(events.output.contains("did not answer within 10 s"), "the decision is an event")
            } catch {
                await Self.killMachines(under: root)
                _ = try? await provider.terminate()
                throw error
            }
            await Self.killMachines(under: root)
            #expect(try await provider.terminate() == 0, "\(provider.output.suffix(2000))")
        }
    }
}
