import DroverTestSupport
import Foundation
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

@Suite(.serialized, .enabled(if: TestEnvironment.runsEndToEnd), .timeLimit(.minutes(5)))
struct LogsEndToEndTests {
    static let line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
    static let total = 50 << 20

    /// The bytes `yes LINE | head -c total` writes.
    static var expected: Data {
        let line = Data(line.utf8)
        var data = Data(capacity: total + line.count)
        while data.count < total { data.append(line) }
        return data.prefix(total)
    }

    @Test func fiftyMegabytesOfOutputAreReadableInOrderEvenAfterTheAllocationIsGone() async throws {
        try await Cluster.with(environment: ["DROVER_OUTPUT_CAP_MB": "64"]) { cluster in
            let agent = try await cluster.addAgent("a")
            let command = "echo starting >&2; yes \(Self.line.dropLast()) 2>/dev/null | head -c \(Self.total)"
            let run = try await cluster.cli("job run \(try cluster.writeJob("big", job("big", command: command)))")
            #expect(run.status == 0, "\(run.output)")
            let alloc = try #require(try await cluster.allocations("big").first?["ID"] as? String)

            // The agent ships what the task wrote; wait until all of it has arrived.
            let logs = "/v1/client/fs/logs/\(alloc)?task=t&type=stdout"
            try await eventually("all output stored", within: .seconds(120)) {
                let end = try? await cluster.api.header("X-Drover-Log-Offset", of: "\(logs)&plain=true&origin=end&offset=0")
                return end == String(Self.total)
            }
            let (status, body) = try await cluster.api.bytes("\(logs)&plain=true")
            #expect(status == 200)
            #expect(body.count == Self.total)
            #expect(body == Self.expected, "every byte, in order")

            // Nomad's framed answer: JSON frames with base64 data and the offset after it.
            let (_, framed) = try await cluster.api.bytes("/v1/client/fs/logs/\(alloc)?task=t&type=stderr")
            let frame = try JSONSerialization.jsonObject(with: framed) as? [String: Any]
            #expect(frame?["Data"] as? String == Data("starting\n".utf8).base64EncodedString())
            #expect((frame?["Offset"] as? NSNumber)?.intValue == 9 && frame?["File"] as? String == "alloc/logs/t.stderr.0")

            let tail = try await cluster.cli("alloc logs -tail -n 2 \(alloc) t")
            #expect(
                tail.status == 0
                    && tail.output == String(decoding: Self.expected.suffix(Self.line.count + Self.total % Self.line.count), as: UTF8.self))
            let bad = try await cluster.api.get("\(logs)&origin=middle&offset=-1")
            #expect(bad.status == 400 && bad.body.contains(#""Field":"origin""#) && bad.body.contains(#""Field":"offset""#), "\(bad.body)")
            #expect(try await cluster.api.get("/v1/client/fs/logs/none?task=t").status == 404)

            // The node's messages become events: medium and high by default, low on request.
            let agentAddress = cluster.agentArguments("a", agent)
            // The agent's own routes need its token, which only its user can read.
            let anonymous = try await agent.request("POST", "/v1/agent/log", body: #"{"Message": "forged"}"#)
            #expect(anonymous.status == 401 && anonymous.body.contains("X-Drover-Agent-Token"), "\(anonymous)")
            let token = cluster.agentDirectory("a").appendingPathComponent("agent.token")
            #expect((try FileManager.default.attributesOfItem(atPath: token.path)[.posixPermissions] as? Int) == 0o600)
            let wrong = try await cluster.cli("log hello --agent http://127.0.0.1:\(agent.port) --agent-token \(String(repeating: "0", count: 32))")
            #expect(wrong.status != 0 && wrong.output.contains("X-Drover-Agent-Token"), "\(wrong.output)")
            #expect(try await cluster.cli("log 'disk nearly full' --level warn \(agentAddress)").status == 0)
            #expect(try await cluster.cli("log 'routine' --priority low \(agentAddress)").status == 0)
            let node = "\(cluster.run)-a"
            try await eventually("the warning listed") {
                let events = (try? await cluster.json("/v1/events?node=\(node)")) as? [[String: Any]] ?? []
                return events.contains { $0["Message"] as? String == "disk nearly full" && $0["Priority"] as? String == "medium" }
            }
            // Each message is its own delivery: the second may be recorded after the first is listed.
            try await eventually("the low-priority one listed on request") {
                let everything = (try? await cluster.json("/v1/events?node=\(node)&priority=all")) as? [[String: Any]] ?? []
                return everything.contains { $0["Message"] as? String == "routine" }
            }
            let defaults = try await cluster.json("/v1/events?node=\(node)") as? [[String: Any]] ?? []
            #expect(!defaults.contains { $0["Message"] as? String == "routine" }, "low priority is left out by default")
            let lifecycle = try await cluster.json("/v1/events?job=big&priority=all") as? [[String: Any]] ?? []
            #expect(Set(lifecycle.compactMap { $0["Type"] as? String }).isSuperset(of: ["JobRegistered", "AllocationPlaced"]))
            #expect(try await cluster.cli("log '' \(agentAddress)").status != 0)

            // With no --data-dir, from the root of a cluster deploy/local/up runs (its agent n's
            // state in .drover/agents/<n>, answering on 4650 + n), the command finds the token.
            let root = cluster.logs.appendingPathComponent("repository")
            let agents = root.appendingPathComponent(".drover/agents")
            try FileManager.default.createDirectory(at: agents, withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(
                at: agents.appendingPathComponent(String(agent.port - 4650)), withDestinationURL: cluster.agentDirectory("a"))
            let found = try await cluster.cli("log 'found without flags' --agent http://127.0.0.1:\(agent.port)", in: root)
            #expect(found.status == 0, "\(found.output)")
            try await eventually("the message found without flags listed") {
                let events = (try? await cluster.json("/v1/events?node=\(node)")) as? [[String: Any]] ?? []
                return events.contains { $0["Message"] as? String == "found without flags" }
            }
            // Elsewhere, the error names every place it looked.
            let lost = try await cluster.cli("log hello --agent http://127.0.0.1:\(agent.port)", in: cluster.logs)
            #expect(lost.status != 0 && lost.output.contains("looked in:") && lost.output.contains("agent.token (not there)"), "\(lost.output)")
            #expect(try await cluster.api.get("/v1/events?level=loud").status == 400)

            // The allocation and its node go; the output stays.
            _ = try await cluster.cli("job stop -purge big")
            try await agent.kill()
            let (after, again) = try await cluster.api.bytes("\(logs)&plain=true&origin=end&offset=\(Self.line.count)")
            #expect(after == 200 && again == Self.expected.suffix(Self.line.count))
        }
    }
}
