import DroverAccess
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

/// Nomad's ACLs on the gateway: every route of the OpenAPI document answers as its `x-drover-acl`
/// says, with no token, a read-only token and a management token; tokens and policies through
/// their API.
@Suite(.serialized, .enabled(if: TestEnvironment.runsStorageIntegration))
struct AccessTests {
    let logger = Logger(label: "test")

    /// Runs `body` with a client (sending no token of its own) of a gateway over a fresh database.
    func withGateway(
        access: AccessConfiguration = .init(), _ body: @escaping @Sendable (any TestClientProtocol, Database) async throws -> Void
    ) async throws {
        try await withTestGateway(access: access, logger: logger, body)
    }

    static let readOnlyRules =
        #"namespace "default" { policy = "read" } node { policy = "read" } agent { policy = "read" } operator { policy = "read" }"#

    static func object(_ response: TestResponse) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any], "\(String(buffer: response.body))")
    }

    static func send(
        _ client: any TestClientProtocol, _ method: HTTPRequest.Method, _ uri: String, token: String?, body: String? = nil,
        header: String = "X-Nomad-Token", value: ((String) -> String)? = nil
    ) async throws -> TestResponse {
        var headers: HTTPFields = [:]
        if let token { headers[.init(header)!] = value?(token) ?? token }
        return try await client.execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
    }

    /// Bootstraps, writes the read-only policy and makes a client token holding it.
    static func tokens(_ client: any TestClientProtocol) async throws -> (management: String, readOnly: String) {
        let bootstrap = try await send(client, .post, "/v1/acl/bootstrap", token: nil)
        #expect(bootstrap.status == .ok)
        let management = try #require(try object(bootstrap)["SecretID"] as? String)
        let policy = try await send(
            client, .post, "/v1/acl/policy/readonly", token: management,
            body: String(decoding: try JSONEncoder().encode(["Rules": readOnlyRules, "Description": "reads"]), as: UTF8.self))
        #expect(policy.status == .ok, "\(String(buffer: policy.body))")
        let token = try await send(client, .post, "/v1/acl/token", token: management, body: #"{"Name": "reader", "Policies": ["readonly"]}"#)
        #expect(token.status == .ok, "\(String(buffer: token.body))")
        return (management, try #require(try object(token)["SecretID"] as? String))
    }

    /// Every operation of the OpenAPI document with its `x-drover-acl`, read line by line from
    /// the document as the gateway serves it.
    static func operations(_ document: String) throws -> [(method: HTTPRequest.Method, path: String, requirement: Requirement?, stream: Bool)] {
        var found: [(HTTPRequest.Method, String, Requirement?, Bool)] = []
        var path: String?
        var inPaths = false
        for line in document.split(separator: "\n", omittingEmptySubsequences: false) {
            if line == "paths:" { inPaths = true } else if line == "components:" { inPaths = false }
            guard inPaths else { continue }
            if line.hasPrefix("  /"), line.hasSuffix(":"), !line.hasPrefix("   ") {
                path = String(line.dropFirst(2).dropLast())
            } else if let path, path.hasPrefix("/v1/"), line.hasPrefix("    "), !line.hasPrefix("     "),
                let method = ["get", "post", "put", "delete"].first(where: { line == "    \($0):" })
            {
                found.append((HTTPRequest.Method(rawValue: method.uppercased())!, path, nil, false))
            } else if line.hasPrefix("      x-drover-acl: "), let last = found.indices.last {
                found[last].2 = Requirement(String(line.dropFirst("      x-drover-acl: ".count)))
            } else if line == "      x-drover-stream: true", let last = found.indices.last {
                found[last].3 = true
            }
        }
        return found
    }

    @Test func everyDocumentedRouteAnswersAsItsRuleSays() async throws {
        try await withGateway { client, _ in
            let (management, readOnly) = try await Self.tokens(client)
            let document = try await client.execute(uri: "/v1/openapi.yaml", method: .get)
            #expect(document.status == .ok, "the document itself is open")
            let operations = try Self.operations(String(buffer: document.body))
            #expect(operations.count > 40)
            let reader = ACL(policies: [try PolicyRules(parsing: Self.readOnlyRules)])
            for operation in operations {
                let what = "\(operation.method) \(operation.path)"
                let requirement = try #require(operation.requirement, "\(what) has no x-drover-acl")
                // Any id will do: what is checked is whether the request got past the rule.
                let uri = operation.path.replacingOccurrences(of: #"\{[a-z]+\}"#, with: "x-1", options: .regularExpression)
                let body = operation.method == .get || operation.method == .delete ? nil : "{}"

                let anonymous = try await Self.send(client, operation.method, uri, token: nil, body: body)
                if requirement == .open {
                    #expect(anonymous.status != .unauthorized && anonymous.status != .forbidden, "\(what) is open")
                } else {
                    #expect(anonymous.status == .unauthorized, "\(what) without a token: \(anonymous.status)")
                    // Chronos's routes challenge with Basic (chronos-python sends the token as the password).
                    let chronos = operation.path.hasPrefix("/scheduler") || operation.path.hasPrefix("/v1/scheduler")
                    #expect(anonymous.headers[.wwwAuthenticate]?.hasPrefix(chronos ? "Basic" : "Bearer") == true, "\(what) challenges")
                }

                // A stream does not end: what its topics need is checked below, and a granted one
                // end to end (the pika test of the client libraries).
                if operation.stream { continue }
                let read = try await Self.send(client, operation.method, uri, token: readOnly, body: body)
                if reader.allows(requirement) {
                    #expect(read.status != .unauthorized && read.status != .forbidden, "\(what) with the read-only token: \(read.status)")
                } else {
                    #expect(read.status == .forbidden, "\(what) with the read-only token: \(read.status)")
                    #expect(try Self.object(read)["Error"] as? String == "Permission denied")
                }

                let managed = try await Self.send(client, operation.method, uri, token: management, body: body)
                #expect(managed.status != .unauthorized && managed.status != .forbidden, "\(what) with the management token: \(managed.status)")
            }
            // The event stream checks each topic asked for: all topics need a management token, the
            // job topics read-job in the namespace, the node topics node:read.
            let all = try await Self.send(client, .get, "/v1/event/stream", token: readOnly)
            let refusal = try Self.object(all)["Error"] as? String
            #expect(all.status == .forbidden && refusal?.contains("topic * needs management") == true, "\(refusal ?? "")")
            let other = try await Self.send(client, .get, "/v1/event/stream?topic=Job&namespace=other", token: readOnly)
            #expect(other.status == .forbidden, "the read-only token reads the default namespace only")
            #expect(try await Self.send(client, .get, "/v1/event/stream?topic=Job&index=-1", token: readOnly).status == .badRequest)
            // The undocumented twins (PUT for POST) carry the same rules.
            #expect(try await Self.send(client, .put, "/v1/jobs", token: readOnly, body: "{}").status == .forbidden)
            #expect(try await Self.send(client, .put, "/v1/system/gc", token: readOnly).status == .forbidden)
            #expect(try await Self.send(client, .post, "/v1/user/x", token: nil, body: "{}").status == .unauthorized)
        }
    }

    @Test func tokensComeInEveryHeaderAndSecretsAreShownOnce() async throws {
        try await withGateway { client, database in
            let (management, readOnly) = try await Self.tokens(client)
            #expect(try await Self.send(client, .post, "/v1/acl/bootstrap", token: nil).status == .badRequest, "bootstrap works once")

            // X-Nomad-Token, Bearer, and basic authentication's password.
            #expect(try await Self.send(client, .get, "/v1/jobs", token: readOnly).status == .ok)
            #expect(try await Self.send(client, .get, "/v1/jobs", token: readOnly, header: "Authorization", value: { "Bearer \($0)" }).status == .ok)
            let basic = { (secret: String) in "Basic " + Data("anyone:\(secret)".utf8).base64EncodedString() }
            #expect(try await Self.send(client, .get, "/v1/jobs", token: readOnly, header: "Authorization", value: basic).status == .ok)
            let unknown = try await Self.send(client, .get, "/v1/jobs", token: UUID().uuidString)
            #expect(try unknown.status == .unauthorized && (Self.object(unknown)["Error"] as? String) == "ACL token not found")

            let itself = try Self.object(try await Self.send(client, .get, "/v1/acl/token/self", token: readOnly))
            #expect(itself["Name"] as? String == "reader" && itself["Policies"] as? [String] == ["readonly"])
            #expect(itself["SecretID"] == nil, "a secret is shown once, when it is made")
            let accessor = try #require(itself["AccessorID"] as? String)
            let listed = try #require(
                try JSONSerialization.jsonObject(with: Data(buffer: try await Self.send(client, .get, "/v1/acl/tokens", token: management).body))
                    as? [[String: Any]])
            #expect(listed.count == 2 && listed.allSatisfy { $0["SecretID"] == nil })
            #expect(try await Self.send(client, .get, "/v1/acl/token/\(accessor)", token: management).status == .ok)
            // Only hashes are stored.
            for try await stored in try await database.client.query("SELECT encode(secret_hash, 'hex') FROM drover_acl_tokens").decode(String.self) {
                #expect(stored.count == 64 && !stored.contains(readOnly) && !stored.contains(management))
            }

            // Updating a token's policies takes effect at once here; revoking it too.
            let update = try await Self.send(
                client, .post, "/v1/acl/token/\(accessor)", token: management,
                body: #"{"Name": "renamed", "Type": "client", "Policies": ["readonly"]}"#)
            #expect(try update.status == .ok && (Self.object(update)["Name"] as? String) == "renamed")
            #expect(try await Self.send(client, .delete, "/v1/acl/token/\(accessor)", token: management).status == .ok)
            #expect(try await Self.send(client, .get, "/v1/jobs", token: readOnly).status == .unauthorized, "a revoked token is refused at once")
        }
    }

    @Test func aTokenExpiresAndAPolicyChangeTakesEffect() async throws {
        try await withGateway { client, database in
            let (management, _) = try await Self.tokens(client)
            let created = try await Self.send(
                client, .post, "/v1/acl/token", token: management, body: #"{"Policies": ["readonly"], "ExpirationTTL": "1h"}"#)
            let short = try #require(try Self.object(created)["SecretID"] as? String)
            let expires = try #require(
                (try Self.object(created)["ExpirationTime"] as? String).flatMap { try? Date($0, strategy: .iso8601) })
            #expect(abs(expires.timeIntervalSinceNow - 3600) < 60)
            #expect(try await Self.send(client, .get, "/v1/nodes", token: short).status == .ok)
            // Past its expiry (the clock is the resolver's argument), the same token is refused,
            // cached or not.
            let resolver = TokenResolver(database: database)
            #expect(try await resolver.resolve(secret: short, now: expires.addingTimeInterval(-1)) != .unknown)
            guard case .expired = try await resolver.resolve(secret: short, now: expires.addingTimeInterval(1)) else {
                Issue.record("a token past its expiry is not refused")
                return
            }

            let writer = try #require(
                try Self.object(try await Self.send(client, .post, "/v1/acl/token", token: management, body: #"{"Policies": ["readonly"]}"#))[
                    "SecretID"] as? String)
            #expect(try await Self.send(client, .post, "/v1/node/x/eligibility", token: writer, body: "{}").status == .forbidden)
            let widened = try await Self.send(
                client, .post, "/v1/acl/policy/readonly", token: management, body: #"{"Rules": "node { policy = \"write\" }"}"#)
            #expect(widened.status == .ok)
            #expect(try await Self.send(client, .post, "/v1/node/x/eligibility", token: writer, body: "{}").status != .forbidden)
            #expect(try await Self.send(client, .delete, "/v1/acl/policy/readonly", token: management).status == .ok)
            #expect(try await Self.send(client, .get, "/v1/nodes", token: writer).status == .forbidden, "a token whose policy is gone may do nothing")
        }
    }

    @Test func badPoliciesAndTokensAreA400NamingTheField() async throws {
        try await withGateway { client, _ in
            let (management, _) = try await Self.tokens(client)
            func fields(_ method: HTTPRequest.Method, _ uri: String, _ body: String) async throws -> [String] {
                let answer = try await Self.send(client, method, uri, token: management, body: body)
                #expect(answer.status == .badRequest, "\(uri) \(body): \(answer.status)")
                return (try Self.object(answer)["Fields"] as? [[String: Any]] ?? []).compactMap { $0["Field"] as? String }
            }
            #expect(
                try await fields(.post, "/v1/acl/policy/p", #"{"Rules": "namespace \"default\" { policy = \"root\" }"}"#) == [
                    "Rules.namespace.default.policy"
                ])
            #expect(try await fields(.post, "/v1/acl/policy/bad%20name", #"{"Rules": ""}"#).contains("Name"))
            #expect(try await fields(.post, "/v1/acl/policy/p", #"{"Name": "q", "Rules": ""}"#) == ["Name"])
            #expect(try await fields(.post, "/v1/acl/policy/p", #"{"Description": "no rules"}"#) == ["Rules"])
            #expect(try await fields(.post, "/v1/acl/token", #"{"Policies": ["nope"]}"#) == ["Policies[0]"])
            #expect(try await fields(.post, "/v1/acl/token", #"{"Type": "root"}"#) == ["Type"])
            #expect(try await fields(.post, "/v1/acl/token", #"{"Type": "client"}"#) == ["Policies"])
            #expect(try await fields(.post, "/v1/acl/token", #"{"Type": "management", "Policies": ["readonly"]}"#) == ["Policies"])
            #expect(try await fields(.post, "/v1/acl/token", #"{"Policies": ["readonly"], "ExpirationTTL": "forever"}"#) == ["ExpirationTTL"])
            #expect(try await fields(.post, "/v1/acl/token", #"{"Policies": ["readonly"], "ExpirationTTL": -5}"#) == ["ExpirationTTL"])
            #expect(try await fields(.post, "/v1/acl/bootstrap", #"{"BootstrapSecret": 5}"#) == ["BootstrapSecret"])
            #expect(try await Self.send(client, .get, "/v1/acl/policy/nope", token: management).status == .notFound)
            #expect(try await Self.send(client, .delete, "/v1/acl/token/nope", token: management).status == .notFound)
            // A management token may be made, and it may do anything.
            let made = try Self.object(try await Self.send(client, .post, "/v1/acl/token", token: management, body: #"{"Type": "management"}"#))
            #expect(try await Self.send(client, .put, "/v1/system/gc", token: try #require(made["SecretID"] as? String)).status == .ok)
        }
    }

    @Test func aRoleGrantsItsPoliciesToTheTokensThatLinkToIt() async throws {
        try await withGateway { client, _ in
            let (management, _) = try await Self.tokens(client)
            let writer = String(decoding: try JSONEncoder().encode(["Rules": #"namespace "default" { policy = "write" }"#]), as: UTF8.self)
            #expect(try await Self.send(client, .post, "/v1/acl/policy/writer", token: management, body: writer).status == .ok)
            let created = try await Self.send(
                client, .post, "/v1/acl/role", token: management, body: #"{"Name": "team", "Policies": [{"Name": "readonly"}]}"#)
            #expect(created.status == .ok, "\(String(buffer: created.body))")
            let roleID = try #require(try Self.object(created)["ID"] as? String)
            // Linked by name; the token shows the role by id and name.
            let made = try Self.object(
                try await Self.send(client, .post, "/v1/acl/token", token: management, body: #"{"Roles": [{"Name": "team"}]}"#))
            let secret = try #require(made["SecretID"] as? String)
            #expect((made["Roles"] as? [[String: Any]])?.first?["ID"] as? String == roleID)
            #expect(try await Self.send(client, .get, "/v1/jobs", token: secret).status == .ok, "the role's read policy")
            #expect(try await Self.send(client, .post, "/v1/jobs", token: secret, body: "{}").status == .forbidden)
            // Changing the role changes what its tokens may do.
            let widened = try await Self.send(
                client, .post, "/v1/acl/role/\(roleID)", token: management,
                body: #"{"Name": "team", "Policies": [{"Name": "readonly"}, {"Name": "writer"}]}"#)
            #expect(widened.status == .ok)
            #expect(try await Self.send(client, .post, "/v1/jobs", token: secret, body: "{}").status != .forbidden)
            #expect(try await Self.send(client, .get, "/v1/acl/role/name/team", token: management).status == .ok)
            let listed = try JSONSerialization.jsonObject(
                with: Data(buffer: try await Self.send(client, .get, "/v1/acl/roles", token: management).body))
            #expect((listed as? [[String: Any]])?.map { $0["Name"] as? String } == ["team"])
            // Refused: an unknown role or policy, a name taken, a role of no policy.
            let unknown = try await Self.send(client, .post, "/v1/acl/token", token: management, body: #"{"Roles": [{"Name": "nope"}]}"#)
            #expect(unknown.status == .badRequest && String(buffer: unknown.body).contains("Roles[0]"))
            let twice = try await Self.send(
                client, .post, "/v1/acl/role", token: management, body: #"{"Name": "team", "Policies": [{"Name": "writer"}]}"#)
            #expect(twice.status == .badRequest && String(buffer: twice.body).contains("another role"))
            #expect(try await Self.send(client, .post, "/v1/acl/role", token: management, body: #"{"Name": "empty"}"#).status == .badRequest)
            let missing = try await Self.send(
                client, .post, "/v1/acl/role", token: management, body: #"{"Name": "x", "Policies": [{"Name": "nope"}]}"#)
            #expect(missing.status == .badRequest && String(buffer: missing.body).contains("Policies[0]"))
            // A deleted role grants nothing, at once.
            #expect(try await Self.send(client, .delete, "/v1/acl/role/\(roleID)", token: management).status == .ok)
            #expect(try await Self.send(client, .get, "/v1/jobs", token: secret).status == .forbidden)
            #expect(try await Self.send(client, .get, "/v1/acl/role/\(roleID)", token: management).status == .notFound)
        }
    }

    @Test func anOperatorMayChooseTheBootstrapSecret() async throws {
        try await withGateway { client, _ in
            #expect(try await Self.send(client, .post, "/v1/acl/bootstrap", token: nil, body: #"{"BootstrapSecret": "short"}"#).status == .badRequest)
            let secret = UUID().uuidString.lowercased()
            let answer = try await Self.send(client, .post, "/v1/acl/bootstrap", token: nil, body: #"{"BootstrapSecret": "\#(secret)"}"#)
            #expect(try Self.object(answer)["SecretID"] as? String == secret)
            #expect(try await Self.send(client, .get, "/v1/acl/tokens", token: secret).status == .ok)
        }
    }

    @Test func withACLsOffEveryRouteIsOpen() async throws {
        try await withGateway(access: .disabled) { client, _ async throws in
            #expect(try await Self.send(client, .get, "/v1/jobs", token: nil).status == .ok)
            #expect(try await Self.send(client, .put, "/v1/system/gc", token: nil).status == .ok)
        }
    }
}

/// The challenge a 401 carries: Bearer on Nomad's routes; Basic on the Chronos-shaped ones, since
/// chronos-python (httplib2) sends its username and password (the token) only after a Basic challenge.
/// The guard fails closed: a route that answers a success without checking the namespace of
/// what it touched is a fault of the gateway's, and answers 403 with nothing of what it found.
@Suite(.serialized, .enabled(if: TestEnvironment.runsStorageIntegration))
struct FailClosedTests {
    @Test(arguments: [AccessConfiguration(), AccessConfiguration.disabled])
    func aRouteThatForgetsItsNamespaceCheckAnswers403AndOneThatChecksAnswers(access: AccessConfiguration) async throws {
        let probes: @Sendable (GuardedRouter) -> Void = { routes in
            routes.get("/probe/unchecked", .namespace(.readJob)) { _, _ in
                Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "secret")))
            }
            routes.get("/probe/checked", .namespace(.readJob)) { _, context in
                try context.caller.authorize(.readJob, in: "default")
                return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "allowed")))
            }
            routes.get("/probe/fixed", .namespace(.readJob), scope: .fixed("default")) { _, _ in Response(status: .ok) }
        }
        try await withTestGateway(access: access, extraRoutes: probes) { client, _ in
            var headers = HTTPFields()
            if access.enabled {
                let token = try await client.execute(uri: "/v1/acl/bootstrap", method: .post).body
                let secret = try #require((try JSONSerialization.jsonObject(with: Data(buffer: token)) as? [String: Any])?["SecretID"] as? String)
                headers[.init("X-Nomad-Token")!] = secret
            }
            let unchecked = try await client.execute(uri: "/probe/unchecked", method: .get, headers: headers)
            #expect(unchecked.status == .forbidden)
            #expect(!String(buffer: unchecked.body).contains("secret"))
            let checked = try await client.execute(uri: "/probe/checked", method: .get, headers: headers)
            #expect(checked.status == .ok && String(buffer: checked.body) == "allowed")
            #expect(try await client.execute(uri: "/probe/fixed", method: .get, headers: headers).status == .ok, "the guard checked it")
        }
    }
}

@Suite struct ChallengeTests {
    @Test(arguments: [("/v1/jobs", "Bearer"), ("/scheduler/jobs", "Basic"), ("/v1/scheduler/iso8601", "Basic")])
    func aMissingTokenIsChallengedAsTheRoutesClientsExpect(_ example: (path: String, scheme: String)) {
        let request = Request(
            head: .init(method: .get, scheme: "http", authority: "gateway", path: example.path), body: .init(buffer: ByteBuffer()))
        let response = Gateway.unauthorized(request, "ACL token missing")
        #expect(response.status == .unauthorized)
        #expect(response.headers[.wwwAuthenticate] == "\(example.scheme) realm=\"drover\"")
    }
}
