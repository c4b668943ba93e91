import DroverControlPlane
import DroverMessaging
import DroverModel
import DroverStorage
import DroverTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Testing

@testable import DroverGateway

/// The gateway's routes driven in process (`buildApplication`) against a real PostgreSQL: what a
/// Nomad client sends, what it gets back, and the 4xx that bad input gets.
@Suite(.serialized, .enabled(if: TestEnvironment.runsStorageIntegration))
struct GatewayTests {
    let logger = Logger(label: "test")

    /// Runs `body` with a client of a gateway over a fresh database.
    func withGateway(_ body: @escaping @Sendable (any TestClientProtocol, Database) async throws -> Void) async throws {
        try await withTestGateway(logger: logger) { client, database in
            try await body(try await TokenClient.bootstrapped(client), database)
        }
    }

    static func json(_ buffer: ByteBuffer) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(buffer: buffer), options: [.fragmentsAllowed])
    }

    static let job =
        #"{"Job": {"ID": "web", "Type": "batch", "TaskGroups": [{"Name": "g", "Count": 2, "Tasks": [{"Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/true"}, "Resources": {"CPU": 100, "MemoryMB": 64}}]}]}}"#

    @Test func aJobIsRegisteredReadListedSummarisedPlannedAndStopped() async throws {
        try await withGateway { client, database in
            let registered = try await client.execute(uri: "/v1/jobs", method: .post, body: ByteBuffer(string: Self.job))
            #expect(registered.status == .ok)
            let answer = try #require(try Self.json(registered.body) as? [String: Any])
            let evalID = try #require(answer["EvalID"] as? String)
            #expect(registered.headers[.init("X-Nomad-Index")!] == String(answer["Index"] as? Int ?? -1))

            let job = try await client.execute(uri: "/v1/job/web", method: .get)
            #expect(job.status == .ok)
            #expect((try Self.json(job.body) as? [String: Any])?["Status"] as? String == "pending", "no node: its evaluation waits")
            let list = try #require(try Self.json(try await client.execute(uri: "/v1/jobs?prefix=w", method: .get).body) as? [[String: Any]])
            #expect(list.map { $0["ID"] as? String } == ["web"])
            #expect(try Self.json(try await client.execute(uri: "/v1/jobs?prefix=x", method: .get).body) as? [Any] != nil)
            let evaluation = try await client.execute(uri: "/v1/evaluation/\(evalID)", method: .get)
            #expect((try Self.json(evaluation.body) as? [String: Any])?["Status"] as? String == "pending")
            let summary = try #require(try Self.json(try await client.execute(uri: "/v1/job/web/summary", method: .get).body) as? [String: Any])
            #expect((summary["Summary"] as? [String: Any])?["g"] != nil)

            // No node yet: the plan says why nothing would be placed.
            let plan = try await client.execute(uri: "/v1/job/web/plan", method: .post, body: ByteBuffer(string: Self.job))
            #expect(plan.status == .ok)
            #expect(((try Self.json(plan.body) as? [String: Any])?["FailedTGAllocs"] as? [String: Any])?["g"] != nil)

            let stopped = try await client.execute(uri: "/v1/job/web?purge=true", method: .delete)
            #expect(stopped.status == .ok)
            #expect(try await client.execute(uri: "/v1/job/web", method: .get).status == .notFound)
            #expect(try await count("drover_outbox", in: database) == 2, "each change's message, in its transaction")
            // A forced garbage collection, as Nomad's `PUT /v1/system/gc`.
            #expect(try await client.execute(uri: "/v1/system/gc", method: .put).status == .ok)
            #expect(try await client.execute(uri: "/v1/system/gc", method: .post).status == .ok)
        }
    }

    @Test func badInputIsA4xxThatNamesTheField() async throws {
        try await withGateway { client, _ in
            func error(_ response: TestResponse) throws -> (message: String, fields: [String]) {
                let body = try #require(try Self.json(response.body) as? [String: Any])
                let fields = (body["Fields"] as? [[String: Any]] ?? []).compactMap { $0["Field"] as? String }
                return (body["Error"] as? String ?? "", fields)
            }
            let notJSON = try await client.execute(uri: "/v1/jobs", method: .post, body: ByteBuffer(string: "{"))
            #expect(notJSON.status == .badRequest)
            let badCount = try await client.execute(
                uri: "/v1/jobs", method: .post, body: ByteBuffer(string: Self.job.replacingOccurrences(of: #""Count": 2"#, with: #""Count": -1"#)))
            #expect(badCount.status == .badRequest)
            #expect(try error(badCount).fields == ["Job.TaskGroups[0].Count"])
            // Past a limit of the OpenAPI document: Count, KillTimeout.
            let limits = try await client.execute(
                uri: "/v1/jobs", method: .post,
                body: ByteBuffer(
                    string: Self.job.replacingOccurrences(of: #""Count": 2"#, with: #""Count": 4611686018427387904"#)
                        .replacingOccurrences(of: #""Tasks": [{"Name": "t""#, with: #""Tasks": [{"KillTimeout": 9223372036854775807, "Name": "t""#)))
            #expect(limits.status == .badRequest)
            #expect(try error(limits).fields == ["Job.TaskGroups[0].Count", "Job.TaskGroups[0].Tasks[0].KillTimeout"])
            let otherID = try await client.execute(uri: "/v1/job/other", method: .post, body: ByteBuffer(string: Self.job))
            #expect(try error(otherID).fields == ["Job.ID"])
            #expect(try error(try await client.execute(uri: "/v1/jobs?index=soon", method: .get)).fields == ["index"])
            #expect(try error(try await client.execute(uri: "/v1/jobs?index=1&wait=forever", method: .get)).fields == ["wait"])
            // Once a trap that ended the gateway: a wait too long for a duration.
            #expect(try error(try await client.execute(uri: "/v1/jobs?index=1&wait=1e300", method: .get)).fields == ["wait"])
            // Once a trap that ended the gateway: two tasks whose CPU together overflowed.
            let huge = Self.job.replacingOccurrences(of: #""CPU": 100"#, with: #""CPU": 4611686018427387904"#)
                .replacingOccurrences(
                    of: #""Tasks": [{"Name": "t""#,
                    with: #""Tasks": [{"Name": "u", "Config": {"command": "/bin/true"}, "Resources": {"CPU": 4611686018427387904}}, {"Name": "t""#)
            let plan = try await client.execute(uri: "/v1/job/web/plan", method: .post, body: ByteBuffer(string: huge))
            #expect(plan.status == .badRequest)
            #expect(try error(plan).fields.contains("Job.TaskGroups[0].Tasks[1].Resources.CPU"))
            #expect(try error(try await client.execute(uri: "/v1/job/web?purge=yes", method: .delete)).fields == ["purge"])
            #expect(try await client.execute(uri: "/v1/job/none?purge=T", method: .delete).status == .notFound, "T is true, as in Go")
            #expect(try await client.execute(uri: "/v1/allocation/none", method: .get).status == .notFound)
            #expect(try await client.execute(uri: "/v1/allocation/none/stop", method: .post).status == .notFound)
            #expect(try await client.execute(uri: "/v1/node/none/drain", method: .post, body: ByteBuffer(string: "{}")).status == .notFound)
            let eligibility = try await client.execute(
                uri: "/v1/node/none/eligibility", method: .post, body: ByteBuffer(string: #"{"Eligibility": "maybe"}"#))
            #expect(eligibility.status == .badRequest)
            #expect(try error(eligibility).fields == ["Eligibility"])
            let logs = try await client.execute(uri: "/v1/client/fs/logs/none?type=stdin&offset=-1", method: .get)
            #expect(logs.status == .badRequest)
            #expect(Set(try error(logs).fields) == ["type", "offset"])
            let events = try await client.execute(uri: "/v1/events?limit=0&level=loud", method: .get)
            #expect(events.status == .badRequest)
            #expect(Set(try error(events).fields) == ["limit", "level"])
            let user = try await client.execute(uri: "/v1/user/ann", method: .put, body: ByteBuffer(string: #"{"Name": "bob"}"#))
            #expect(user.status == .badRequest)
        }
    }

    @Test func aBlockingQueryReturnsOnceTheIndexPassesTheOneItHolds() async throws {
        try await withGateway { client, _ in
            let first = try await client.execute(uri: "/v1/jobs", method: .post, body: ByteBuffer(string: Self.job))
            let index = try #require((try Self.json(first.body) as? [String: Any])?["Index"] as? Int)
            // The watcher has seen the registration (a blocking query may return early, as Nomad's
            // may, when a notification of an older change arrives while it waits).
            try await withTimeout(.seconds(20), "the watcher seeing the registration") {
                while Int(try await client.execute(uri: "/v1/jobs", method: .get).headers[.init("X-Nomad-Index")!] ?? "") ?? 0 < index {
                    try await Task.sleep(for: .milliseconds(10))
                }
            }
            // Held at the current index, the query waits for the next change: a second registration.
            async let waited = client.execute(uri: "/v1/jobs?index=\(index)&wait=30s", method: .get)
            _ = try await client.execute(uri: "/v1/job/web", method: .put, body: ByteBuffer(string: Self.job))
            let answer = try await waited
            let seen = Int(answer.headers[.init("X-Nomad-Index")!] ?? "") ?? 0
            #expect(answer.status == .ok && seen > index)
            // Index 0 is no blocking query at all, as in Nomad (found by fuzzing: it waited five minutes).
            let unblocked = try await withTimeout(.seconds(20), "index=0 answering without a change") {
                try await client.execute(uri: "/v1/jobs?index=0&wait=10m", method: .get)
            }
            #expect(unblocked.status == .ok)
        }
    }

    @Test func usersArePutReadAndDeletedAndEachChangeIsSentToTheNodes() async throws {
        try await withGateway { client, database in
            let put = try await client.execute(
                uri: "/v1/user/ann", method: .put, body: ByteBuffer(string: #"{"Name": "ann", "UID": 1500, "Groups": ["users"]}"#))
            #expect(put.status == .ok)
            let users = try #require(try Self.json(try await client.execute(uri: "/v1/users", method: .get).body) as? [[String: Any]])
            #expect(users.map { $0["Name"] as? String } == ["ann"])
            #expect(try await client.execute(uri: "/v1/user/ann", method: .delete).status == .ok)
            #expect(try await client.execute(uri: "/v1/user/ann", method: .delete).status == .notFound)
            #expect(try await count("drover_outbox", in: database) == 2)
        }
    }

    @Test func nodeArraysAreDefinedShownAndDeletedAndTargetsSetAsJetpackAutoscaleSetsThem() async throws {
        try await withGateway { client, _ in
            let array = #"{"Name": "execute", "MachineType": {"Cores": 2, "MemoryMB": 2048}, "MaxCount": 4, "IdleTimeAfterJobs": 30}"#
            #expect(try await client.execute(uri: "/v1/nodearray/execute", method: .put, body: ByteBuffer(string: array)).status == .ok)
            let answer = try await client.execute(uri: "/v1/nodearray/execute", method: .get)
            let shown = try #require(try Self.json(answer.body) as? [String: Any], "\(answer.status) \(String(buffer: answer.body))")
            let definition = try #require(shown["NodeArray"] as? [String: Any])
            #expect(definition["IdleTimeAfterJobs"] as? Int == 30 && definition["IdleTimeBeforeJobs"] as? Int == 1800)
            #expect(definition["Provider"] as? String == "local" && (shown["Machines"] as? [Any])?.isEmpty == true)

            // Bad definitions name the field; a name that differs from the path's is refused.
            let bad = try await client.execute(
                uri: "/v1/nodearray/execute", method: .put,
                body: ByteBuffer(string: #"{"Name": "execute", "MachineType": {"Cores": 0, "MemoryMB": 2048}, "MinCount": 5, "MaxCount": 4}"#))
            #expect(bad.status == .badRequest)
            let fields = (try Self.json(bad.body) as? [String: Any])?["Fields"] as? [[String: Any]]
            #expect(Set(fields?.compactMap { $0["Field"] as? String } ?? []) == ["MachineType.Cores", "MinCount"])
            #expect(try await client.execute(uri: "/v1/nodearray/other", method: .put, body: ByteBuffer(string: array)).status == .badRequest)
            // CycleCloud's fields that Drover does not implement yet are refused by name.
            let spot = try await client.execute(
                uri: "/v1/nodearray/execute", method: .put,
                body: ByteBuffer(string: array.replacingOccurrences(of: #""MaxCount": 4"#, with: #""MaxCount": 4, "Interruptible": true"#)))
            let spotFields = (try Self.json(spot.body) as? [String: Any])?["Fields"] as? [[String: Any]]
            #expect(spot.status == .badRequest && spotFields?.first?["Field"] as? String == "Interruptible", "\(String(buffer: spot.body))")
            let chronos = try await client.execute(
                uri: "/v1/scheduler/iso8601", method: .post,
                body: ByteBuffer(string: #"{"name": "n", "command": "true", "schedule": "R/2030-01-01T00:00:00Z/PT1H", "runAsUser": "nobody"}"#))
            let chronosFields = (try Self.json(chronos.body) as? [String: Any])?["Fields"] as? [[String: Any]]
            #expect(chronos.status == .badRequest && chronosFields?.first?["Field"] as? String == "runAsUser", "\(String(buffer: chronos.body))")

            // Targets: jetpack's file format; an unknown array and a target with neither count are refused.
            let set = try await client.execute(
                uri: "/v1/autoscale", method: .post, body: ByteBuffer(string: #"[{"Name": "execute", "TargetCount": 3, "Expiration": "10m"}]"#))
            #expect(set.status == .ok, "\(String(buffer: set.body))")
            let targets = try #require(try Self.json(try await client.execute(uri: "/v1/autoscale", method: .get).body) as? [[String: Any]])
            #expect(targets.count == 1 && targets.first?["TargetCount"] as? Int == 3)
            let unknown = try await client.execute(
                uri: "/v1/autoscale", method: .post, body: ByteBuffer(string: #"[{"Name": "gpu", "TargetCount": 1}]"#))
            #expect(unknown.status == .badRequest && String(buffer: unknown.body).contains("no node array is named 'gpu'"))
            let neither = try await client.execute(uri: "/v1/autoscale", method: .post, body: ByteBuffer(string: #"[{"Name": "execute"}]"#))
            #expect(neither.status == .badRequest && String(buffer: neither.body).contains("[0].TargetCoreCount"))

            #expect(try await client.execute(uri: "/v1/nodearray/execute", method: .delete).status == .ok)
            #expect(try await client.execute(uri: "/v1/nodearray/execute", method: .get).status == .notFound)
            #expect(try await client.execute(uri: "/v1/nodearrays", method: .get).status == .ok)
        }
    }

    @Test func theAPIServesItsOwnDescription() async throws {
        try await withGateway { client, _ in
            let document = try await client.execute(uri: "/v1/openapi.yaml", method: .get)
            #expect(document.status == .ok && String(buffer: document.body).hasPrefix("openapi:"))
            // What it serves is what docs/ publishes.
            let published = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../docs/openapi.yaml")
            #expect(String(buffer: document.body) == (try String(contentsOf: published, encoding: .utf8)), "docs/openapi.yaml is the served document")
            #expect(try await client.execute(uri: "/v1/status/leader", method: .get).status == .ok)
        }
    }

    @Test func aFieldDroverDoesNotImplementIsRefusedByNameAndAnEmptyOneIsNot() async throws {
        try await withGateway { client, database in
            func fields(_ body: String) async throws -> [String] {
                let answer = try await client.execute(uri: "/v1/jobs", method: .post, body: ByteBuffer(string: body))
                #expect(answer.status == .badRequest, "\(body.prefix(200)): \(answer.status)")
                let object = try #require(try Self.json(answer.body) as? [String: Any])
                let listed = (object["Fields"] as? [[String: Any]] ?? []).map { ($0["Field"] as? String ?? "", $0["Reason"] as? String ?? "") }
                #expect(listed.allSatisfy { $0.1 == "not supported yet" }, "\(listed)")
                return listed.map(\.0)
            }
            let unsupported = Self.job
                .replacingOccurrences(
                    of: #""Type": "batch","#, with: #""Type": "batch", "ParameterizedJob": {"Payload": "required"}, "Update": {"MaxParallel": 2},"#
                )
                .replacingOccurrences(of: #""Count": 2,"#, with: #""Count": 2, "Networks": [{"Mode": "bridge"}], "Services": [{"Name": "web"}],"#)
                .replacingOccurrences(of: #""Driver": "raw_exec","#, with: #""Driver": "raw_exec", "Templates": [{"DestPath": "local/a"}],"#)
            #expect(
                try await fields(unsupported) == [
                    "Job.ParameterizedJob", "Job.TaskGroups[0].Networks", "Job.TaskGroups[0].Services", "Job.TaskGroups[0].Tasks[0].Templates",
                    "Job.Update",
                ])
            // The same for a bare job, for the driver's config, for resources and for the
            // request's own fields.
            let bare = String(Self.job.dropFirst(#"{"Job": "#.count).dropLast())
            #expect(
                try await fields(bare.replacingOccurrences(of: #""ID": "web","#, with: #""ID": "web", "Multiregion": {"Regions": [{"Name": "a"}]},"#))
                    == ["Job.Multiregion"])
            #expect(
                try await fields(Self.job.replacingOccurrences(of: #""command": "/bin/true""#, with: #""command": "/bin/true", "image": "redis:7""#))
                    == ["Job.TaskGroups[0].Tasks[0].Config.image"])
            #expect(
                try await fields(Self.job.replacingOccurrences(of: #""MemoryMB": 64"#, with: #""MemoryMB": 64, "Cores": 2, "MemoryMaxMB": 0"#)) == [
                    "Job.TaskGroups[0].Tasks[0].Resources.Cores"
                ])
            #expect(try await fields(Self.job.replacingOccurrences(of: #"{"Job": "#, with: #"{"EnforceIndex": true, "Job": "#)) == ["EnforceIndex"])
            #expect(try await count("drover_jobs", in: database) == 0, "nothing refused was stored")

            // Empty fields ask for nothing: what clients that send every field of Nomad's send.
            let empty = Self.job
                .replacingOccurrences(
                    of: #""Type": "batch","#,
                    with: #""Type": "batch", "ParameterizedJob": null, "Update": {"MaxParallel": 0}, "AllAtOnce": false, "ConsulToken": "","#
                )
                .replacingOccurrences(of: #""Count": 2,"#, with: #""Count": 2, "Networks": [], "Services": null, "EphemeralDisk": {},"#)
            let accepted = try await client.execute(uri: "/v1/jobs", method: .post, body: ByteBuffer(string: empty))
            #expect(accepted.status == .ok, "\(String(buffer: accepted.body))")
        }
    }

    @Test func hostileNumbersAndSizesAre4xxAndTheGatewayLivesOn() async throws {
        try await withGateway { client, database in
            // A drain deadline past the end of time is the end of time, not a crash.
            try await database.transaction { work in
                try await work.nodes.upsertReady(
                    Node(id: "n1", name: "n1", resources: Resources(cpu: 1000, memoryMB: 1024)), index: try await work.nextIndex())
            }
            for deadline in ["9223372036854775807", "-9223372036854775808", "18446744073709551616", "1e308", "-1"] {
                let answer = try await client.execute(
                    uri: "/v1/node/n1/drain", method: .post, body: ByteBuffer(string: #"{"DrainSpec": {"Deadline": \#(deadline)}}"#))
                #expect(answer.status == .ok || answer.status == .badRequest, "Deadline \(deadline): \(answer.status)")
            }
            #expect(try await client.execute(uri: "/v1/node/n1", method: .get).status == .ok, "the gateway lives on")
            // A body past the limit is a 413 that names it.
            let large = try await client.execute(
                uri: "/v1/jobs", method: .post, body: ByteBuffer(string: #"{"Job": {"ID": ""# + String(repeating: "x", count: 9 << 20) + #""}}"#))
            #expect(large.status == .contentTooLarge)
            #expect(
                (try Self.json(large.body) as? [String: Any])?["Error"] as? String
                    == "the body is larger than this route's limit of 8388608 bytes; send a smaller one", "\(String(buffer: large.body))")
        }
    }
}

/// A test client that sends a token with every request: the management token of a fresh
/// bootstrap, unless a request sets its own `X-Nomad-Token`.
struct TokenClient: TestClientProtocol {
    let client: any TestClientProtocol
    let secret: String

    static func bootstrapped(_ client: any TestClientProtocol) async throws -> TokenClient {
        let answer = try await client.execute(uri: "/v1/acl/bootstrap", method: .post)
        let token = try JSONSerialization.jsonObject(with: Data(buffer: answer.body)) as? [String: Any]
        return TokenClient(client: client, secret: try #require(token?["SecretID"] as? String, "bootstrap: \(answer.status)"))
    }

    func executeRequest(uri: String, method: HTTPRequest.Method, headers: HTTPFields, body: ByteBuffer?) async throws -> TestResponse {
        var headers = headers
        if headers[.init("X-Nomad-Token")!] == nil { headers[.init("X-Nomad-Token")!] = secret }
        return try await client.executeRequest(uri: uri, method: method, headers: headers, body: body)
    }

    var port: Int? { client.port }
}
