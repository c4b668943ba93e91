import DroverTestSupport
import Foundation
import Testing

@Suite(.serialized, .enabled(if: TestEnvironment.runsEndToEnd), .timeLimit(.minutes(5)))
struct NodesEndToEndTests {
    /// With a 2 s minimum TTL and 2 s of grace, a TTL handed out is under 4 s (the stagger adds
    /// up to the minimum again), so a silent node is down within 4 + 2 + 1 s.
    static let liveness = ["DROVER_HEARTBEAT_MIN_TTL": "2", "DROVER_HEARTBEAT_GRACE": "2"]

    @Test func aKilledAgentsNodeGoesDownItsWorkRunsElsewhereAndNothingRunsTwiceWhenItReturns() async throws {
        try await Cluster.with(environment: Self.liveness) { cluster in
            try await cluster.addAgent("a")
            let marker = "lost-\(cluster.run)"
            #expect(
                try await cluster.api.request("POST", "/v1/jobs", body: job("web", type: "service", command: "sleep 300 # \(marker)")).status == 200)
            try await eventually("web running on a") {
                let allocation = (try? await cluster.allocations("web"))?.first
                return allocation?["ClientStatus"] as? String == "running" && allocation?["NodeName"] as? String == "a"
            }
            try await cluster.addAgent("b")
            let original = try await processes(matching: marker)
            #expect(!original.isEmpty)

            // The agent dies; its task, in a process group of its own, goes on.
            try await cluster.agents.value[0].kill()
            let killed = Date()
            try await eventually("node a down", within: .seconds(30)) { await cluster.nodeStatus("a") == "down" }
            // The deadline it was declared down at, not when the sweep got to it on a busy machine:
            // no later than the TTL and the grace after the last heartbeat, which came before the kill.
            let down = try await cluster.json("/v1/node/\(cluster.run)-a") as? [String: Any]
            let description = try #require(down?["StatusDescription"] as? String)
            let deadline = try Date.ISO8601FormatStyle().parse(String(description.dropFirst("no heartbeat since ".count)))
            #expect(deadline.timeIntervalSince(killed) <= 7, "\(description), killed at \(killed)")
            try await eventually("web replaced on b") {
                let allocations = (try? await cluster.allocations("web")) ?? []
                return allocations.contains { $0["NodeName"] as? String == "a" && $0["ClientStatus"] as? String == "lost" }
                    && allocations.contains { $0["NodeName"] as? String == "b" && $0["ClientStatus"] as? String == "running" }
            }
            let node = try await cluster.json("/v1/node/\(cluster.run)-a") as? [String: Any]
            #expect((node?["StatusDescription"] as? String)?.hasPrefix("no heartbeat since") == true, "\(String(describing: node))")

            // The agent comes back: the node is ready again, and the task it still ran is stopped.
            try await eventually("the replacement started") {
                ((try? await processes(matching: marker)) ?? "").split(separator: "\n").count > original.split(separator: "\n").count
            }
            try await cluster.addAgent("a")
            let replacement = Set(try await processes(matching: marker).split(separator: "\n")).subtracting(original.split(separator: "\n"))
            #expect(!replacement.isEmpty)
            try await eventually("only the replacement left") {
                Set(((try? await processes(matching: marker)) ?? "").split(separator: "\n")) == replacement
            }
            let allocations = try await cluster.allocations("web")
            #expect(allocations.count == 2)
            #expect(allocations.filter { $0["ClientStatus"] as? String == "running" }.map { $0["NodeName"] as? String } == ["b"])
            #expect(allocations.filter { $0["ClientStatus"] as? String == "lost" }.map { $0["NodeName"] as? String } == ["a"], "lost stays lost")
            _ = try await cluster.cli("job stop web")
            try await eventually("web stopped") { ((try? await processes(matching: marker)) ?? "x").isEmpty }
        }
    }

    /// Six batch tasks on a node whose agent is killed with SIGKILL: each task's watchdog stops it
    /// before the node is declared down, so its replacement never runs beside it, and the agent
    /// that comes back reports them lost and runs none of them again. The grace is 4 s here, so
    /// that the fence has room before the declaration.
    @Test func batchTasksOfAKilledAgentFenceThemselvesSoNoneRunsTwiceAndEveryJobCompletes() async throws {
        try await Cluster.with(environment: ["DROVER_HEARTBEAT_MIN_TTL": "2", "DROVER_HEARTBEAT_GRACE": "4"]) { cluster in
            try await cluster.addAgent("a")
            let marker = "fence-\(cluster.run)"
            let runs = cluster.logs.appendingPathComponent("runs-\(marker)")
            // Each run says when it started, and when it ended or was stopped, by the boot-time clock.
            let at = #"$(cut -d\  -f1 /proc/uptime)"#
            let command =
                ": \(marker); trap 'echo stopped $NOMAD_ALLOC_NAME \(at) >> \(runs.path); exit 143' TERM; "
                + "echo start $NOMAD_ALLOC_NAME \(at) >> \(runs.path); sleep 15 & wait $!; echo end $NOMAD_ALLOC_NAME \(at) >> \(runs.path)"
            let submitted = try await cluster.api.request("POST", "/v1/jobs", body: job("fenced", count: 6, command: command))
            #expect(submitted.status == 200, "\(submitted.body)")
            try await eventually("six running on a") {
                let allocations = (try? await cluster.allocations("fenced")) ?? []
                return allocations.count == 6
                    && allocations.allSatisfy { $0["ClientStatus"] as? String == "running" && $0["NodeName"] as? String == "a" }
            }
            try await cluster.addAgent("b")
            try await cluster.agents.value[0].kill()
            try await eventually("node a down", within: .seconds(30)) { await cluster.nodeStatus("a") == "down" }
            try await eventually("every task done on b", within: .seconds(90)) {
                let allocations = (try? await cluster.allocations("fenced")) ?? []
                return allocations.filter { $0["NodeName"] as? String == "b" && $0["ClientStatus"] as? String == "complete" }.count == 6
            }
            // The agent comes back to its fenced tasks: reported lost, none started again.
            try await cluster.addAgent("a")
            try await eventually("the job complete") {
                ((try? await cluster.json("/v1/job/fenced")) as? [String: Any])?["Status"] as? String == "dead"
            }
            let allocations = try await cluster.allocations("fenced")
            #expect(allocations.filter { $0["NodeName"] as? String == "a" && $0["ClientStatus"] as? String == "lost" }.count == 6)
            #expect(try await processes(matching: marker).isEmpty)

            let lines = try String(contentsOf: runs, encoding: .utf8).split(separator: "\n").map { $0.split(separator: " ") }
            let names = Set(lines.map { String($0[1]) })
            #expect(names.count == 6, "\(lines)")
            for name in names {
                let events = lines.filter { $0[1] == name }.map { (String($0[0]), Double($0[2]) ?? -1) }
                #expect(events.map(\.0) == ["start", "stopped", "start", "end"], "\(name): \(events)")
                if events.count == 4 { #expect(events[1].1 < events[2].1, "\(name) stopped before its replacement started: \(events)") }
            }
        }
    }

    @Test func aDrainStartsReplacementsElsewhereBeforeStoppingAndCompletesOnceBothStopped() async throws {
        try await Cluster.with { cluster in
            try await cluster.addAgent("a")
            let marker = "drain-\(cluster.run)"
            #expect(
                try await cluster.api.request("POST", "/v1/jobs", body: job("web", type: "service", count: 2, command: "sleep 300 # \(marker)"))
                    .status == 200)
            try await eventually("both on a") {
                let allocations = (try? await cluster.allocations("web")) ?? []
                return allocations.count == 2
                    && allocations.allSatisfy { $0["ClientStatus"] as? String == "running" && $0["NodeName"] as? String == "a" }
            }
            try await cluster.addAgent("b")

            let drain = try await cluster.cli("node drain -enable -deadline 1m \(cluster.run)-a")
            #expect(drain.status == 0 && drain.output.contains("drain complete"), "\(drain.output)")
            let node = try await cluster.json("/v1/node/\(cluster.run)-a") as? [String: Any]
            #expect(node?["Drain"] as? Bool == false && node?["SchedulingEligibility"] as? String == "ineligible")
            #expect((node?["LastDrain"] as? [String: Any])?["Status"] as? String == "complete")

            let allocations = try await cluster.allocations("web")
            let old = allocations.filter { $0["NodeName"] as? String == "a" }
            let new = allocations.filter { $0["NodeName"] as? String == "b" }
            #expect(old.count == 2 && old.allSatisfy { $0["ClientStatus"] as? String == "complete" && $0["DesiredStatus"] as? String == "stop" })
            #expect(new.count == 2 && new.allSatisfy { $0["ClientStatus"] as? String == "running" })
            // Each replacement started before the allocation it replaces was told to stop.
            func time(_ allocation: [String: Any], _ type: String) -> Int64? {
                let task = (allocation["TaskStates"] as? [String: Any])?["t"] as? [String: Any]
                let events = task?["Events"] as? [[String: Any]] ?? []
                return events.first { $0["Type"] as? String == type }.flatMap { ($0["Time"] as? NSNumber)?.int64Value }
            }
            for replacement in new {
                let previous = try #require(old.first { $0["ID"] as? String == replacement["PreviousAllocation"] as? String })
                let started = try #require(time(replacement, "Started"))
                let killing = try #require(time(previous, "Killing"))
                #expect(started < killing)
            }

            // Eligibility: refused while draining is not the case now; set and read back.
            let eligible = try await cluster.cli("node eligibility -enable \(cluster.run)-a")
            #expect(eligible.status == 0, "\(eligible.output)")
            #expect((try await cluster.json("/v1/node/\(cluster.run)-a") as? [String: Any])?["SchedulingEligibility"] as? String == "eligible")
            let bad = try await cluster.api.request("POST", "/v1/node/\(cluster.run)-a/eligibility", body: #"{"Eligibility": "maybe"}"#)
            #expect(bad.status == 400 && bad.body.contains(#""Field":"Eligibility""#), "\(bad.body)")
            #expect(try await cluster.api.request("POST", "/v1/node/none/drain", body: #"{"DrainSpec": null}"#).status == 404)
            _ = try await cluster.cli("job stop web")
            try await eventually("web stopped") { ((try? await processes(matching: marker)) ?? "x").isEmpty }
        }
    }

    @Test func anUnhealthyNodeIsIneligibleAndFlaggedUnlessKeptAliveAndTheNodeCommandsWork() async throws {
        try await Cluster.with { cluster in
            let failing = "#!/bin/sh\necho disk gone\nexit 254\n"
            func checks(_ name: String) throws -> URL {
                let directory = cluster.logs.appendingPathComponent("healthcheck-\(name)")
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                return directory
            }
            func install(_ script: String, in directory: URL) throws {
                let file = directory.appendingPathComponent("check")
                try script.write(to: file, atomically: true, encoding: .utf8)
                try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: file.path)
            }
            let (directoryA, directoryB) = (try checks("a"), try checks("b"))
            try install(failing, in: directoryB)
            let a = try await cluster.addAgent("a", arguments: ["--healthcheck-dir", directoryA.path, "--healthcheck-interval", "0.5"])
            let b = try await cluster.addAgent("b", arguments: ["--healthcheck-dir", directoryB.path, "--healthcheck-interval", "0.5"])
            @Sendable func node(_ name: String) async -> [String: Any] {
                ((try? await cluster.json("/v1/node/\(cluster.run)-\(name)")) as? [String: Any]) ?? [:]
            }

            // Unhealthy without a keepalive: ineligible and flagged.
            try await eventually("b flagged") {
                let b = await node("b")
                return b["SchedulingEligibility"] as? String == "ineligible"
                    && (b["Termination"] as? [String: Any])?["Reason"] as? String == "unhealthy"
            }
            // With a keepalive: ineligible, not flagged.
            let keep = try await cluster.cli("keepalive 2h \(cluster.agentArguments("a", a))")
            #expect(keep.status == 0 && keep.output.hasPrefix("Keepalive set until"), "\(keep.output)")
            try await eventually("keepalive recorded") { await node("a")["KeepaliveUntil"] != nil }
            try install(failing, in: directoryA)
            try await eventually("a unhealthy") { (await node("a")["Health"] as? [String: Any])?["Healthy"] as? Bool == false }
            let nodeA = await node("a")
            #expect(nodeA["SchedulingEligibility"] as? String == "ineligible" && nodeA["Termination"] == nil, "\(nodeA)")
            let status = try await cluster.cli("node status \(cluster.run)-a")
            #expect(status.output.contains("Keepalive   = until") && status.output.contains("unhealthy"), "\(status.output)")
            let events = try await cluster.json("/v1/events?node=\(cluster.run)-a") as? [[String: Any]] ?? []
            #expect(events.contains { $0["Type"] as? String == "NodeUnhealthy" && ($0["Message"] as? String)?.contains("kept by keepalive") == true })

            // The node's own commands, through its agent.
            let agentB = cluster.agentArguments("b", b)
            let name = try await cluster.cli("config node.name \(agentB)")
            #expect(name.status == 0 && name.output == "b\n", "\(name.output)")
            let cores = try await cluster.cli("config \(agentB)")
            #expect(cores.output.contains("node.attributes.cpu.numcores = ") && cores.output.contains("cluster.exchange = drover"))
            #expect(try await cluster.cli("config node.nothing \(agentB)").status != 0)
            #expect(try await cluster.cli("keepalive soon \(agentB)").status != 0)

            let shutdown = try await cluster.cli("shutdown --idle \(agentB)")
            #expect(shutdown.status == 0, "\(shutdown.output)")
            try await eventually("b asked to go") { ((await node("b"))["Termination"] as? [String: Any])?["Reason"] as? String == "idle" }

            try await cluster.virtualHost.bindQueue("plugin", to: "node.*.send.#")
            let sent = try await cluster.cli("send backup.done '{\"ok\": true}' \(agentB)")
            #expect(sent.status == 0 && sent.output.contains("node.\(cluster.run)-b.send.backup.done"), "\(sent.output)")
            let messages = try await cluster.virtualHost.takeMessages(from: "plugin")
            #expect(messages.map(\.routingKey) == ["node.\(cluster.run)-b.send.backup.done"] && messages.first?.body == #"{"ok": true}"#)
            #expect(try await cluster.cli("send 'bad.*' x \(agentB)").status != 0)

            let marker = cluster.logs.appendingPathComponent("shutdown-ran")
            let script = cluster.logs.appendingPathComponent("on-shutdown.sh")
            try install("#!/bin/sh\necho ran > \(marker.path)\n", in: cluster.logs)
            try FileManager.default.moveItem(at: cluster.logs.appendingPathComponent("check"), to: script)
            let registered = try await cluster.cli("run-on-shutdown \(script.path) \(agentB)")
            #expect(registered.status == 0, "\(registered.output)")
            #expect(registered.output.contains(script.path), "\(registered.output)")
            #expect(try await cluster.cli("run-on-shutdown /no/such/script \(agentB)").status != 0)
            // A script others may change is refused: it would run as the agent's user.
            let loose = cluster.logs.appendingPathComponent("loose.sh")
            try "#!/bin/sh\n".write(to: loose, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: loose.path)
            let refused = try await cluster.cli("run-on-shutdown \(loose.path) \(agentB)")
            #expect(refused.status != 0 && refused.output.contains("chmod go-w"), "\(refused.output)")
            // A restart of the agent is not the node's termination: the scripts wait.
            #expect(try await b.terminate() == 0)
            #expect(!FileManager.default.fileExists(atPath: marker.path), "the script waits for the node's termination")
            #expect(b.output.contains("run-on-shutdown scripts kept for its termination"))
            // Terminated (the machine stopping, or a provider's marker): they run.
            let again = try await cluster.addAgent("b", arguments: ["--healthcheck-dir", directoryB.path, "--healthcheck-interval", "0.5"])
            try "".write(to: cluster.agentDirectory("b").appendingPathComponent("terminating"), atomically: true, encoding: .utf8)
            #expect(try await again.terminate() == 0)
            #expect((try? String(contentsOf: marker, encoding: .utf8)) == "ran\n", "the script ran when the node was terminated")
        }
    }

    @Test func theUsersSetOverTheAPIReachTheirNodesAndAnIssueReportArchivesTheAgentsLogsAndState() async throws {
        try await Cluster.with { cluster in
            let bad = try await cluster.api.request("PUT", "/v1/user/Alice", body: #"{"UID": 5, "Shell": "bash"}"#)
            #expect(bad.status == 400 && bad.body.contains(#""Field":"Name""#) && bad.body.contains(#""Field":"UID""#), "\(bad.body)")
            #expect(bad.body.contains(#""Field":"Shell""#))
            let alice = #"{"UID": 2001, "Groups": ["users"], "Shell": "/bin/bash", "SSHKeys": ["ssh-ed25519 AAAA alice"], "Sudo": true}"#
            #expect(try await cluster.api.request("PUT", "/v1/user/alice", body: alice).status == 200)
            #expect(try await cluster.api.request("PUT", "/v1/user/bob", body: #"{"NodeClasses": ["gpu"]}"#).status == 200)
            // A node that joins later is sent the list when it becomes ready.
            let agent = try await cluster.addAgent("a")
            let address = cluster.agentArguments("a", agent)
            try await eventually("alice on a") { (try? await cluster.cli("users \(address)"))?.output.contains("alice") == true }
            let listed = try await cluster.cli("users --json \(address)")
            #expect(listed.output.contains(#""UID" : 2001"#) && !listed.output.contains("bob"), "bob is for gpu nodes only: \(listed.output)")
            #expect(try await cluster.api.request("DELETE", "/v1/user/alice").status == 200)
            try await eventually("alice gone from a") { (try? await cluster.cli("users \(address)"))?.output.contains("No users") == true }
            #expect(try await cluster.api.request("DELETE", "/v1/user/alice").status == 404)

            // report-issue: the agent's logs and state in a zip any unzip reads, kept here or uploaded.
            let directory = cluster.agentDirectory("a").appendingPathComponent("reports")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            // The agent writes only under its data directory, whatever it is asked.
            let outside = try await cluster.cli("report-issue \(cluster.logs.path) --no-upload \(address)")
            #expect(outside.status != 0 && outside.output.contains("must be under the node's data directory"), "\(outside.output)")
            let kept = try await cluster.cli("report-issue \(directory.path) --no-upload \(address)")
            #expect(kept.status == 0 && kept.output.contains("written to \(directory.path)/"), "\(kept.output)")
            let zip = try #require(try FileManager.default.contentsOfDirectory(atPath: directory.path).first { $0.hasSuffix(".zip") })
            let listing = try await runShell(
                "python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(*z.namelist(), sep=chr(10))' "
                    + directory.appendingPathComponent(zip).path)
            #expect(listing.contains("logs/agent.log") && listing.contains("node.json") && listing.contains("users.json"), "\(listing)")
            let uploaded = try await cluster.cli("report-issue \(address) --address http://127.0.0.1:\(cluster.api.port)")
            #expect(uploaded.status == 0 && uploaded.output.contains("fetch it with: curl"), "\(uploaded.output)")
            let reports = try await cluster.json("/v1/issue-reports") as? [[String: Any]] ?? []
            let report = try #require(reports.first)
            #expect(report["NodeID"] as? String == "\(cluster.run)-a")
            let (status, archive) = try await cluster.api.bytes("/v1/issue-report/\(report["ID"] as? String ?? "")")
            #expect(status == 200 && archive.count == (report["Size"] as? NSNumber)?.intValue && archive.starts(with: [0x50, 0x4b, 0x03, 0x04]))
        }
    }

    @Test func eachNodeHasItsOwnBrokerUserThatSpeaksOnlyForItselfAndARemovedNodeCannotConnect() async throws {
        try await Cluster.with { cluster in
            func enroll(_ name: String) async throws -> String {
                let enrolled = try await cluster.cli("node enroll \(cluster.run)-\(name)")
                #expect(enrolled.status == 0, "\(enrolled.output)")
                let line = enrolled.output.split(separator: "\n").first { $0.hasPrefix("DROVER_AMQP_URL=") }
                return String(try #require(line).dropFirst("DROVER_AMQP_URL=".count))
            }
            let (urlA, urlB) = (try await enroll("a"), try await enroll("b"))
            #expect(urlA.contains("drover-node-\(cluster.run)-a:") && urlA != urlB)

            // The agent runs with its own user: it registers, heartbeats and runs work.
            let agent = try await cluster.addAgent("a", environment: ["DROVER_AMQP_URL": urlA], join: false)
            let run = try await cluster.cli("job run \(try cluster.writeJob("hello", job("hello", command: "echo hello")))")
            #expect(run.status == 0, "\(run.output)")

            // With a's user: its own prefix is allowed; speaking for b, or reading b's queue, is refused by the broker.
            let exchange = "-e drover -C application/json -b '{}'"
            let own = try await runShellWithStatus("amqp-publish --url '\(urlA)' \(exchange) -r node.\(cluster.run)-a.send.test 2>&1")
            #expect(own.status == 0, "\(own.output)")
            let forged = try await runShellWithStatus("amqp-publish --url '\(urlA)' \(exchange) -r node.\(cluster.run)-b.heartbeat 2>&1")
            #expect(forged.status != 0 && forged.output.contains("ACCESS_REFUSED"), "\(forged.output)")
            let dead = try await runShellWithStatus(
                "amqp-publish --url '\(urlA)' -e drover.dead-letter -C application/json -b '{}' -r health-monitor.heartbeats 2>&1")
            #expect(dead.status != 0 && dead.output.contains("ACCESS_REFUSED"), "dead letters only for its own queues: \(dead.output)")
            let peek = try await runShellWithStatus("amqp-get --url '\(urlA)' -q node.\(cluster.run)-b 2>&1")
            #expect(peek.status != 0 && peek.output.contains("ACCESS_REFUSED"), "\(peek.output)")

            // Removed: its connections are closed and it cannot log in again.
            let purge = try await cluster.cli("node purge \(cluster.run)-a")
            #expect(purge.status == 0, "\(purge.output)")
            let after = try await runShellWithStatus("amqp-publish --url '\(urlA)' \(exchange) -r node.\(cluster.run)-a.send.test 2>&1")
            #expect(after.status != 0, "\(after.output)")
            try await eventually("the agent disconnected") { (try? await agent.get("/readyz"))?.status != 200 }
            #expect(try await cluster.api.get("/v1/node/\(cluster.run)-a").status == 404)
            #expect(try await cluster.api.request("POST", "/v1/node/none/purge").status == 404)
            #expect(try await cluster.api.request("POST", "/v1/node/bad.id/enroll").status == 400)
        }
    }

    /// A node joins with a one-time enrollment token: it gets its own broker user and secret, the
    /// token is used up, a node without an identity of its own is not heard, and the joined node
    /// uploads its issue reports as itself.
    @Test func aNodeJoinsOnceWithAnEnrollmentTokenAndOnlyItsOwnUserSpeaksForIt() async throws {
        try await Cluster.with { cluster in
            let node = "\(cluster.run)-j"
            let created = try await cluster.cli("node enroll-token create --ttl 10m --node \(node) -json")
            #expect(created.status == 0, "\(created.output)")
            let token = try #require(
                (try JSONSerialization.jsonObject(with: Data(created.output.utf8)) as? [String: Any])?["Secret"] as? String)
            let agent = try await cluster.addAgent(
                "j", environment: ["DROVER_ENROLL_TOKEN": token, "DROVER_ADDR": "http://127.0.0.1:\(cluster.api.port)"], join: false)
            let credentials = cluster.agentDirectory("j").appendingPathComponent("credentials.json")
            #expect((try FileManager.default.attributesOfItem(atPath: credentials.path)[.posixPermissions] as? Int) == 0o600)
            let joinKey = cluster.agentDirectory("j").appendingPathComponent("join-key").path
            #expect(!FileManager.default.fileExists(atPath: joinKey), "the join's key goes once its answer is kept")
            let kept = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: credentials)) as? [String: Any])
            #expect((kept["AMQPURL"] as? String)?.contains("drover-node-\(node):") == true, "its own broker user")
            #expect(try await cluster.cli("node enroll-token list").output.contains(node))

            // Used up; and a token for one node does not let another join.
            let again = try await cluster.api.request("POST", "/v1/node/\(node)/join", body: #"{"EnrollToken": "\#(token)"}"#)
            #expect(again.status == 401 && again.body.contains("already used"), "\(again)")
            let anotherKey = try await cluster.api.request(
                "POST", "/v1/node/\(node)/join", body: #"{"EnrollToken": "\#(token)", "JoinKey": "\#(UUID().uuidString)"}"#)
            #expect(anotherKey.status == 401, "only the key of the join that used it: \(anotherKey)")
            let other = try await cluster.enrollToken(for: "\(cluster.run)-k")
            #expect(try await cluster.api.request("POST", "/v1/node/\(node)/join", body: #"{"EnrollToken": "\#(other)"}"#).status == 401)
            #expect(try await cluster.api.request("POST", "/v1/node/\(node)/join", body: "{}").status == 400)

            // The joined node uploads its report as itself: no ACL token needed on the node.
            let report = try await cluster.cli("report-issue \(cluster.agentArguments("j", agent)) --token not-a-token")
            #expect(report.status == 0 && report.output.contains("Uploaded as"), "\(report.output)")
            #expect((try await cluster.json("/v1/issue-reports") as? [[String: Any]])?.first?["NodeID"] as? String == node)
            let forged = try await cluster.api.request("POST", "/v1/node/\(node)/issue-report", body: "PK")
            #expect(forged.status == 200, "the management token may upload for any node")

            // A node without an identity of its own (the shared broker user) is not heard.
            let shared = try await cluster.addAgentWithoutWaiting("s")
            try await eventually("the shared user's registrations dead-lettered") {
                guard let metrics = try? await cluster.services[2].get("/metrics").body else { return false }
                return metrics.split(separator: "\n").contains {
                    $0.hasPrefix(#"drover_messages_dead_lettered_total{queue="health-monitor.registrations""#) && !$0.hasSuffix(" 0")
                }
            }
            #expect(try await cluster.api.get("/v1/node/\(cluster.run)-s").status == 404)
            #expect(shared.output.contains("no identity of its own"))
        }
    }

    /// Secrets as mounted files, as a container gets them: the CLI reads its token from
    /// DROVER_TOKEN_FILE and writes the enrollment token's secret to a file of its own
    /// (`--secret-file`, mode 0600), and the agent joins with DROVER_ENROLL_TOKEN_FILE.
    @Test func aNodeJoinsWithTokensReadFromFiles() async throws {
        try await Cluster.with { cluster in
            let node = "\(cluster.run)-f"
            let management = cluster.logs.appendingPathComponent("management-token")
            try Data((try #require(cluster.api.token) + "\n").utf8).write(to: management)
            let secret = cluster.logs.appendingPathComponent("enroll-token")
            let binary = URL(fileURLWithPath: try #require(TestEnvironment.binDirectory)).appendingPathComponent("drover").path
            let created = try await runShellWithStatus(
                "env -u DROVER_TOKEN -u NOMAD_TOKEN DROVER_ADDR=http://127.0.0.1:\(cluster.api.port) DROVER_TOKEN_FILE=\(management.path) "
                    + "\(binary) node enroll-token create --ttl 10m --node \(node) --secret-file \(secret.path) 2>&1")
            #expect(created.status == 0 && created.output.contains("Wrote the secret"), "\(created.output)")
            #expect((try FileManager.default.attributesOfItem(atPath: secret.path)[.posixPermissions] as? Int) == 0o600)
            #expect(!created.output.contains(try String(contentsOf: secret, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))

            _ = try await cluster.addAgent(
                "f", environment: ["DROVER_ENROLL_TOKEN_FILE": secret.path, "DROVER_ADDR": "http://127.0.0.1:\(cluster.api.port)"], join: false)
            let credentials = try Data(contentsOf: cluster.agentDirectory("f").appendingPathComponent("credentials.json"))
            #expect(String(decoding: credentials, as: UTF8.self).contains("drover-node-\(node):"), "joined as itself")

            let unreadable = try await runShellWithStatus(
                "DROVER_ADDR=http://127.0.0.1:\(cluster.api.port) DROVER_TOKEN_FILE=/nonexistent \(binary) node status 2>&1")
            #expect(unreadable.status != 0 && unreadable.output.contains("DROVER_TOKEN_FILE: '/nonexistent' cannot be read"), "\(unreadable.output)")
        }
    }
}
