import DroverAccess
import DroverControlPlane
import DroverModel
import DroverStorage
import DroverTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Testing

@testable import DroverGateway

/// Namespaces that isolate: two namespaces and a token scoped to each; every namespaced route of
/// the OpenAPI document, asked with the other namespace's token, answers 403 or 404 and nothing of
/// what that namespace holds. Namespaces as objects; Nomad's precedence for the namespace of a job.
@Suite(.serialized, .enabled(if: TestEnvironment.runsStorageIntegration))
struct NamespaceTests {
    let logger = Logger(label: "test")

    typealias Send = AccessTests

    /// A job of `namespace` whose command and environment are what must not leak.
    static func job(_ id: String, namespace: String? = nil, marker: String = "marker") -> String {
        let named = namespace.map { #""Namespace": "\#($0)", "# } ?? ""
        return #"""
            {"Job": {"ID": "\#(id)", \#(named)"Type": "batch", "TaskGroups": [{"Name": "g", "Tasks": [{"Name": "t", "Driver": "raw_exec",
            "Config": {"command": "/bin/\#(marker)-command"}, "Env": {"SECRET": "\#(marker)-env"}, "Resources": {"CPU": 100, "MemoryMB": 64}}]}]}}
            """#
    }

    /// Management, and a write token for each of `default` and `dev`.
    static func tokens(_ client: any TestClientProtocol) async throws -> (management: String, defaultWriter: String, devWriter: String) {
        let bootstrap = try await Send.send(client, .post, "/v1/acl/bootstrap", token: nil)
        let management = try #require(try Send.object(bootstrap)["SecretID"] as? String)
        let created = try await Send.send(client, .post, "/v1/namespace/dev", token: management, body: #"{"Description": "the dev team"}"#)
        #expect(created.status == .ok, "\(String(buffer: created.body))")
        var secrets: [String] = []
        for namespace in ["default", "dev"] {
            let rules = String(decoding: try JSONEncoder().encode(["Rules": #"namespace "\#(namespace)" { policy = "write" }"#]), as: UTF8.self)
            #expect(try await Send.send(client, .post, "/v1/acl/policy/\(namespace)-write", token: management, body: rules).status == .ok)
            let token = try await Send.send(client, .post, "/v1/acl/token", token: management, body: #"{"Policies": ["\#(namespace)-write"]}"#)
            secrets.append(try #require(try Send.object(token)["SecretID"] as? String))
        }
        return (management, secrets[0], secrets[1])
    }

    @Test func theOtherNamespacesTokenGetsNothingOfIt() async throws {
        try await withTestGateway(logger: logger) { client, database in
            let (management, defaultWriter, devWriter) = try await Self.tokens(client)
            let registered = try await Send.send(client, .post, "/v1/jobs", token: defaultWriter, body: Self.job("example"))
            #expect(registered.status == .ok, "\(String(buffer: registered.body))")
            let evalID = try #require(try Send.object(registered)["EvalID"] as? String)
            // An allocation of it, as a scheduler would place one.
            let allocID = UUID().uuidString.lowercased()
            try await database.transaction { work in
                var writes = SQLWrites()
                let allocation = Allocation(
                    id: allocID, evalID: evalID, name: "example.g[0]", nodeID: "n1", nodeName: "n1", jobID: "example", jobVersion: 0,
                    taskGroup: "g", resources: Resources(cpu: 100, memoryMB: 64))
                try work.allocations.insert([allocation], index: try await work.nextIndex(), into: &writes)
                try await work.execute(writes)
            }
            let stored = try await Send.send(client, .get, "/v1/allocation/\(allocID)", token: defaultWriter)
            #expect(try Send.object(stored)["Namespace"] as? String == "default", "an allocation carries its job's namespace")

            let document = try await client.execute(uri: "/v1/openapi.yaml", method: .get)
            let operations = try AccessTests.operations(String(buffer: document.body)).filter {
                if case .namespace = $0.requirement { return true }
                return false
            }
            #expect(operations.count >= 15, "the namespaced routes of the document")
            let secrets = ["marker-command", "marker-env", allocID, evalID]
            for operation in operations {
                let id = operation.path.hasPrefix("/v1/allocation") ? allocID : operation.path.hasPrefix("/v1/evaluation") ? evalID : "example"
                let path = operation.path.replacingOccurrences(of: "{alloc}", with: allocID).replacingOccurrences(of: "{name}", with: "example")
                    .replacingOccurrences(of: "{id}", with: id)
                let body =
                    operation.method == .get || operation.method == .delete ? nil : Self.job("example", namespace: "default", marker: "intruder")
                for query in ["", "namespace=dev", "namespace=*", "namespace=default"] {
                    let uri = query.isEmpty ? path : path + (path.contains("?") ? "&" : "?") + query
                    let what = "\(operation.method) \(uri)"
                    if operation.stream {
                        // A stream's topics are checked before it starts (the event stream's own test).
                        continue
                    }
                    let answer = try await Send.send(client, operation.method, uri, token: devWriter, body: body)
                    let text = String(buffer: answer.body)
                    for secret in secrets { #expect(!text.contains(secret), "\(what) shows \(secret): \(text.prefix(300))") }
                    switch answer.status {
                    case .forbidden, .notFound: continue
                    case .ok:
                        // Only lists of what the token may read, and writes into its own namespace.
                        let listed = try JSONSerialization.jsonObject(with: Data(buffer: answer.body)) as? [Any]
                        #expect(listed != nil || query == "namespace=dev", "\(what): \(answer.status) \(text.prefix(300))")
                    case .badRequest:
                        // `*` where one namespace is meant, or a request about dev's own job.
                        #expect(query == "namespace=*" || query == "namespace=dev", "\(what): \(text.prefix(300))")
                    default:
                        Issue.record("\(what) with the other namespace's token: \(answer.status) \(text.prefix(300))")
                    }
                }
            }
            // What default holds is as it was: not purged, not stopped, not replaced.
            let example = try Send.object(try await Send.send(client, .get, "/v1/job/example", token: management))
            #expect(example["Stop"] as? Bool == false && example["Version"] as? Int == 0 && example["Namespace"] as? String == "default")
            #expect(try await database.allocations.read(id: allocID)?.desiredStatus == .run)
            // And the default token sees none of dev.
            #expect(try await Send.send(client, .get, "/v1/jobs?namespace=dev", token: defaultWriter).status == .forbidden)
            let everywhere = try #require(
                try JSONSerialization.jsonObject(
                    with: Data(buffer: try await Send.send(client, .get, "/v1/jobs?namespace=*", token: defaultWriter).body))
                    as? [[String: Any]])
            #expect(everywhere.map { $0["ID"] as? String } == ["example"])
        }
    }

    @Test func aJobGoesToTheRequestsNamespaceByNomadsPrecedence() async throws {
        try await withTestGateway(logger: logger) { client, _ in
            let (management, defaultWriter, devWriter) = try await Self.tokens(client)
            // The body's namespace, with no query.
            #expect(try await Send.send(client, .post, "/v1/jobs", token: devWriter, body: Self.job("a", namespace: "dev")).status == .ok)
            // The query's, over the body's.
            let overridden = try await Send.send(client, .post, "/v1/jobs?namespace=dev", token: devWriter, body: Self.job("b", namespace: "default"))
            #expect(overridden.status == .ok, "\(String(buffer: overridden.body))")
            // Neither: default, which the dev token may not write.
            #expect(try await Send.send(client, .post, "/v1/jobs", token: devWriter, body: Self.job("c")).status == .forbidden)
            for id in ["a", "b"] {
                let read = try Send.object(try await Send.send(client, .get, "/v1/job/\(id)?namespace=dev", token: devWriter))
                #expect(read["Namespace"] as? String == "dev", "\(id)")
                #expect(try await Send.send(client, .get, "/v1/job/\(id)", token: devWriter).status == .forbidden, "default is not dev's")
                #expect(try await Send.send(client, .get, "/v1/job/\(id)", token: management).status == .notFound, "\(id) is not in default")
            }
            let listed = try #require(
                try JSONSerialization.jsonObject(
                    with: Data(buffer: try await Send.send(client, .get, "/v1/jobs?namespace=*", token: management).body))
                    as? [[String: Any]])
            #expect(listed.map { "\($0["Namespace"] as? String ?? "")/\($0["ID"] as? String ?? "")" } == ["dev/a", "dev/b"])
            // A periodic job lives in default, as Chronos's do, until schedules are namespaced.
            let periodic = Self.job("p", namespace: "dev").replacingOccurrences(
                of: #""Type": "batch","#, with: #""Type": "batch", "Periodic": {"Spec": "0 3 * * *"},"#)
            let refusedPeriodic = try await Send.send(client, .post, "/v1/jobs", token: devWriter, body: periodic)
            #expect(refusedPeriodic.status == .badRequest && String(buffer: refusedPeriodic.body).contains("Job.Periodic"))
            // The same id in another namespace is another job.
            #expect(try await Send.send(client, .post, "/v1/jobs", token: defaultWriter, body: Self.job("a", marker: "other")).status == .ok)
            let inDefault = try Send.object(try await Send.send(client, .get, "/v1/job/a", token: defaultWriter))
            #expect(inDefault["Namespace"] as? String == "default" && "\(inDefault)".contains("other-command"))
            #expect(!"\(try Send.object(try await Send.send(client, .get, "/v1/job/a?namespace=dev", token: devWriter)))".contains("other-command"))
            // A namespace that does not exist takes no job.
            let missing = try await Send.send(client, .post, "/v1/jobs?namespace=nowhere", token: management, body: Self.job("d"))
            #expect(missing.status == .badRequest && String(buffer: missing.body).contains("namespace 'nowhere' does not exist"))
            #expect(try await Send.send(client, .get, "/v1/jobs?namespace=bad%20name", token: management).status == .badRequest)
            // Stopped and purged in its own namespace only.
            #expect(try await Send.send(client, .delete, "/v1/job/b?purge=true", token: management).status == .notFound)
            #expect(try await Send.send(client, .delete, "/v1/job/a?namespace=dev&purge=true", token: devWriter).status == .ok)
            #expect(try await Send.send(client, .get, "/v1/job/a?namespace=dev", token: devWriter).status == .notFound)
            #expect(try await Send.send(client, .get, "/v1/job/a", token: defaultWriter).status == .ok, "default's a is another job")
        }
    }

    @Test func namespacesAreObjects() async throws {
        try await withTestGateway(logger: logger) { client, _ in
            let (management, defaultWriter, devWriter) = try await Self.tokens(client)
            func names(_ token: String) async throws -> [String] {
                let listed = try JSONSerialization.jsonObject(
                    with: Data(buffer: try await Send.send(client, .get, "/v1/namespaces", token: token).body))
                return (listed as? [[String: Any]] ?? []).compactMap { $0["Name"] as? String }
            }
            #expect(try await names(management) == ["default", "dev"])
            #expect(try await names(devWriter) == ["dev"], "a token lists the namespaces it may use")
            #expect(try await names(defaultWriter) == ["default"])
            let dev = try Send.object(try await Send.send(client, .get, "/v1/namespace/dev", token: devWriter))
            #expect(dev["Description"] as? String == "the dev team")
            #expect(try await Send.send(client, .get, "/v1/namespace/dev", token: defaultWriter).status == .notFound)
            #expect(try await Send.send(client, .post, "/v1/namespace/qa", token: devWriter, body: "{}").status == .forbidden, "management only")

            // Capabilities decide which drivers its jobs may use.
            let limited = try await Send.send(
                client, .post, "/v1/namespace/dev", token: management, body: #"{"Capabilities": {"EnabledTaskDrivers": ["exec"]}}"#)
            #expect(limited.status == .ok)
            let refused = try await Send.send(client, .post, "/v1/jobs?namespace=dev", token: devWriter, body: Self.job("x"))
            #expect(refused.status == .badRequest && String(buffer: refused.body).contains("Job.TaskGroups[0].Tasks[0].Driver"))
            #expect(try await Send.send(client, .post, "/v1/namespace/dev", token: management, body: "{}").status == .ok)
            #expect(try await Send.send(client, .post, "/v1/jobs?namespace=dev", token: devWriter, body: Self.job("x")).status == .ok)

            // What Drover does not implement is refused by name.
            let quota = try await Send.send(client, .post, "/v1/namespace/qa", token: management, body: #"{"Quota": "small", "Meta": {"a": "b"}}"#)
            let quotaFields = try Send.object(quota)["Fields"] as? [[String: Any]]
            #expect(quota.status == .badRequest && quotaFields?.first?["Field"] as? String == "Quota")
            let badName = try await Send.send(client, .post, "/v1/namespace", token: management, body: #"{"Name": "no spaces"}"#)
            #expect(badName.status == .badRequest)

            // A namespace with jobs stays; default always does.
            let holding = try await Send.send(client, .delete, "/v1/namespace/dev", token: management)
            #expect(holding.status == .badRequest && String(buffer: holding.body).contains("still holds 1 job"))
            #expect(try await Send.send(client, .delete, "/v1/namespace/default", token: management).status == .badRequest)
            #expect(try await Send.send(client, .delete, "/v1/job/x?namespace=dev&purge=true", token: devWriter).status == .ok)
            #expect(try await Send.send(client, .delete, "/v1/namespace/dev", token: management).status == .ok)
            #expect(try await Send.send(client, .delete, "/v1/namespace/dev", token: management).status == .notFound)
            #expect(try await names(management) == ["default"])
        }
    }
}
