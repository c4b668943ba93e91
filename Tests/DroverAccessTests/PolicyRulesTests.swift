import DroverModel
import Testing

@testable import DroverAccess

/// Policy rules as Nomad writes them, and what a token holding them may do.
struct PolicyRulesTests {
    static let hcl = """
        # Read everything in default, submit jobs too.
        namespace "default" {
          policy       = "read"
          capabilities = ["submit-job", "read-logs"]
        }
        namespace "team-*" { policy = "write" }
        node { policy = "read" }
        agent {
          policy = "read"
        }
        operator { policy = "deny" } // nothing of the operator's
        """

    @Test func hclAndItsJSONFormReadTheSame() throws {
        let fromHCL = try PolicyRules(parsing: Self.hcl)
        let fromJSON = try PolicyRules(
            parsing: """
                {"namespace": {"default": {"policy": "read", "capabilities": ["submit-job", "read-logs"]}, "team-*": {"policy": "write"}},
                 "node": {"policy": "read"}, "agent": {"policy": "read"}, "operator": {"policy": "deny"}}
                """)
        #expect(fromHCL == fromJSON)
        #expect(fromHCL.namespaces["default"] == Capability.read.union([.submitJob, .readLogs]))
        #expect(fromHCL.node == .read && fromHCL.agent == .read && fromHCL.operator == .deny)
    }

    @Test func whatATokenMayDo() throws {
        let acl = ACL(policies: [try PolicyRules(parsing: Self.hcl)])
        #expect(acl.allows(.namespace(.readJob)))
        #expect(acl.allows(.namespace(.submitJob)))
        #expect(!acl.allows(.namespace(.allocLifecycle)), "neither read nor the listed capabilities grant it")
        #expect(acl.allows(.namespace(.allocLifecycle), namespace: "team-a"), "the glob's write grants it")
        #expect(!acl.allows(.namespace(.readJob), namespace: "other"), "no rule for the namespace: nothing")
        #expect(acl.allows(.node(.read)) && !acl.allows(.node(.write)))
        #expect(!acl.allows(.operator(.read)), "deny grants nothing")
        #expect(!acl.allows(.management))
        #expect(acl.allows(.anyToken) && acl.allows(.open))
        #expect(ACL.management.allows(.management) && ACL.management.allows(.operator(.write)))
        #expect(!ACL(policies: []).allows(.namespace(.listJobs)))
    }

    @Test func denyWinsAcrossPolicies() throws {
        let writer = try PolicyRules(parsing: #"namespace "default" { policy = "write" }  node { policy = "write" }"#)
        let denier = try PolicyRules(parsing: #"namespace "default" { policy = "deny" }  node { policy = "deny" }"#)
        let acl = ACL(policies: [writer, denier])
        #expect(!acl.allows(.namespace(.readJob)))
        #expect(!acl.allows(.node(.read)))
        let both = ACL(policies: [writer, try PolicyRules(parsing: #"node { policy = "read" }"#)])
        #expect(both.allows(.node(.write)), "write and read combine to write")
    }

    @Test func theClosestGlobDecides() throws {
        let acl = ACL(policies: [
            try PolicyRules(
                parsing: #"namespace "*" { policy = "read" } namespace "prod-*" { policy = "deny" } namespace "prod-web" { policy = "write" }"#)
        ])
        #expect(acl.allows(.namespace(.readJob), namespace: "dev"))
        #expect(!acl.allows(.namespace(.readJob), namespace: "prod-db"), "prod-* is closer than *")
        #expect(acl.allows(.namespace(.submitJob), namespace: "prod-web"), "an exact rule wins")
        #expect(ACL.glob("a*b*c", matches: "axxbyyc") && !ACL.glob("a*b", matches: "abc") && ACL.glob("*", matches: ""))
    }

    @Test(arguments: [
        (#"namespace "default" { policy = "admin" }"#, "Rules.namespace.default.policy"),
        (#"namespace "default" { capabilities = ["read-job", "fly"] }"#, "Rules.namespace.default.capabilities[1]"),
        (#"node { policy = "write" extra = "x" }"#, "Rules.node.extra"),
        (#"node { }"#, "Rules.node.policy"),
        (#"quota { policy = "admin" }"#, "Rules.quota.policy"),
        (#"host_volume "data" { policy = "own" }"#, "Rules.host_volume.data.policy"),
        (#"namespace "a" { variables { path "*" { capabilities = ["fly"] } } }"#, "Rules.namespace.a.variables.path.*.capabilities[0]"),
        (#"storage { policy = "read" }"#, "Rules.storage"),
        (#"namespace { policy = "read" }"#, "Rules.namespace.policy"),
        (#"node { policy = "read""#, "Rules"),
        (#"node { policy = "read }"#, "Rules"),
        (#"{"node": {"policy": 1}}"#, "Rules"),
        (#"node = "read""#, "Rules.node"),
        ("namespace \"a\" {" + String(repeating: "x {", count: 20), "Rules"),
        ("", ""),
    ])
    func badRulesNameTheField(text: String, field: String) {
        do {
            let rules = try PolicyRules(parsing: text)
            #expect(field.isEmpty && rules == PolicyRules(), "empty rules grant nothing")
        } catch {
            #expect(error.fields.map(\.field).contains(field), "\(error.fields)")
        }
    }

    @Test func rulesOfWhatDroverDoesNotHaveYetAreReadAndGrantNothing() throws {
        let rules = try PolicyRules(
            parsing: #"""
                namespace "dev" {
                  policy = "read"
                  variables { path "project/*" { capabilities = ["read", "list"] } }
                }
                host_volume "data" { policy = "write" }
                plugin { policy = "read" }
                quota { policy = "read" }
                """#)
        #expect(rules.inert == ["host_volume", "plugin", "quota"])
        #expect(rules.namespaces == ["dev": Capability.read])
        let acl = ACL(policies: [rules])
        #expect(acl.allows(.namespace(.readJob), namespace: "dev") && !acl.allows(.namespace(.submitJob), namespace: "dev"))
        #expect(!acl.allows(.node(.read)) && !acl.allows(.operator(.read)), "an inert rule grants nothing else")
    }

    @Test func requirementsReadBackAsWritten() {
        let all: [Requirement] =
            [.open, .anyToken, .management, .node(.read), .ownNode, .agent(.write), .operator(.read)] + Capability.allCases.map { .namespace($0) }
        for requirement in all { #expect(Requirement(requirement.description) == requirement) }
        #expect(Requirement("namespace:fly") == nil && Requirement("node") == nil && Requirement("root:read") == nil)
    }
}
