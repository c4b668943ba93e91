import ArgumentParser
import DroverModel
import Foundation

struct ACLCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "acl", abstract: "Bootstrap the cluster's ACLs; manage policies, roles and tokens.",
        subcommands: [ACLBootstrap.self, ACLPolicyCommand.self, ACLRoleCommand.self, ACLTokenCommand.self])
}

struct ACLBootstrap: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bootstrap", abstract: "Makes the first management token; works once per cluster. Keep its secret: it is shown only now.")

    @OptionGroup var api: AddressOptions
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the token as JSON.") var json = false

    func run() async throws {
        let (token, _) = try await APIClient(address: api.address, caCertificate: api.caCert).send(
            "POST", "/v1/acl/bootstrap", body: nil, as: ACLToken.self)
        printToken(token, json: json)
    }
}

// MARK: Policies

struct ACLPolicyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy", abstract: "Write, list, show and delete ACL policies.",
        subcommands: [ACLPolicyApply.self, ACLPolicyList.self, ACLPolicyInfo.self, ACLPolicyDelete.self])
}

struct ACLPolicyApply: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply", abstract: "Creates or replaces a policy from a file of rules, in HCL or JSON ('-' reads standard input).")

    @OptionGroup var api: AddressOptions
    @Option(name: .customLong("description", withSingleDash: true), help: "What the policy is for.") var description = ""
    @Argument(help: "The policy's name: letters, digits and dashes.") var name: String
    @Argument(help: "The file of rules, such as: namespace \"default\" { policy = \"read\" }") var file: String

    func run() async throws {
        let data: Data
        do {
            data = file == "-" ? FileHandle.standardInput.readDataToEndOfFile() : try Data(contentsOf: URL(fileURLWithPath: file))
        } catch {
            throw ValidationError("cannot read the rules from '\(file)': \(error.localizedDescription)")
        }
        let policy = ACLPolicy(name: name, description: description, rules: String(decoding: data, as: UTF8.self))
        let body = try JSONSerialization.data(withJSONObject: ["Name": policy.name, "Description": policy.description, "Rules": policy.rules])
        _ = try await api.client.raw("POST", "/v1/acl/policy/\(pathComponent(name))", body: body)
        print("Successfully wrote \"\(name)\" ACL policy!")
    }
}

struct ACLPolicyList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Lists policies.")

    @OptionGroup var api: AddressOptions
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the API's answer as JSON.") var json = false

    func run() async throws {
        if json { return print(try await api.client.get("/v1/acl/policies", as: RawJSON.self).0.pretty) }
        let (policies, _) = try await api.client.get("/v1/acl/policies", as: [ACLPolicyStub].self)
        if policies.isEmpty { return print("No policies found") }
        print(table(["Name", "Description"], policies.map { [$0.name, $0.description] }))
    }
}

struct ACLPolicyInfo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Shows a policy with its rules.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "The policy's name.") var name: String
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the API's answer as JSON.") var json = false

    func run() async throws {
        let path = "/v1/acl/policy/\(pathComponent(name))"
        if json { return print(try await api.client.get(path, as: RawJSON.self).0.pretty) }
        let (policy, _) = try await api.client.get(path, as: ACLPolicy.self)
        print("Name        = \(policy.name)\nDescription = \(policy.description)\nCreateIndex = \(policy.createIndex)")
        print("ModifyIndex = \(policy.modifyIndex)\n\nRules\n\n\(policy.rules)")
    }
}

struct ACLPolicyDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Deletes a policy; tokens holding it lose what it granted.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "The policy's name.") var name: String

    func run() async throws {
        _ = try await api.client.raw("DELETE", "/v1/acl/policy/\(pathComponent(name))")
        print("Successfully deleted \"\(name)\" ACL policy!")
    }
}

// MARK: Roles

struct ACLRoleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "role", abstract: "Create, change, list, show and delete ACL roles: named sets of policies that tokens hold.",
        subcommands: [ACLRoleCreate.self, ACLRoleUpdate.self, ACLRoleList.self, ACLRoleInfo.self, ACLRoleDelete.self])
}

/// What `acl role create` and `update` say of a role.
struct ACLRoleOptions: ParsableArguments {
    @Option(name: .customLong("name", withSingleDash: true), help: "The role's name: letters, digits and dashes.") var name: String
    @Option(name: .customLong("description", withSingleDash: true), help: "What the role is for.") var description = ""
    @Option(name: .customLong("policy", withSingleDash: true), help: "A policy the role grants; repeat for more.") var policies: [String] = []

    func validate() throws {
        if policies.isEmpty { throw ValidationError("-policy: name at least one policy the role grants") }
    }

    var role: ACLRole { ACLRole(name: name, description: description, policies: policies.map(ACLRole.PolicyLink.init)) }
}

struct ACLRoleCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Creates a role.")

    @OptionGroup var api: AddressOptions
    @OptionGroup var options: ACLRoleOptions
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the role as JSON.") var json = false

    func run() async throws {
        let (role, _) = try await api.client.send("POST", "/v1/acl/role", body: try JSONEncoder().encode(options.role), as: ACLRole.self)
        printRole(role, json: json)
    }
}

struct ACLRoleUpdate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update", abstract: "Replaces a role's name, description and policies; its tokens have the new grants at once.")

    @OptionGroup var api: AddressOptions
    @OptionGroup var options: ACLRoleOptions
    @Argument(help: "The role's id.") var id: String
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the role as JSON.") var json = false

    func run() async throws {
        var role = options.role
        role.id = id
        let (updated, _) = try await api.client.send(
            "POST", "/v1/acl/role/\(pathComponent(id))", body: try JSONEncoder().encode(role), as: ACLRole.self)
        printRole(updated, json: json)
    }
}

struct ACLRoleList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Lists roles.")

    @OptionGroup var api: AddressOptions
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the API's answer as JSON.") var json = false

    func run() async throws {
        if json { return print(try await api.client.get("/v1/acl/roles", as: RawJSON.self).0.pretty) }
        let (roles, _) = try await api.client.get("/v1/acl/roles", as: [ACLRole].self)
        if roles.isEmpty { return print("No ACL roles found") }
        print(
            table(
                ["ID", "Name", "Description", "Policies"],
                roles.map { [$0.id, $0.name, $0.description, $0.policies.map(\.name).joined(separator: ",")] }))
    }
}

struct ACLRoleInfo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Shows a role, by id or, with -by-name, by name.")

    @OptionGroup var api: AddressOptions
    @Flag(name: .customLong("by-name", withSingleDash: true), help: "The argument is the role's name.") var byName = false
    @Argument(help: "The role's id (or name, with -by-name).") var role: String
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the role as JSON.") var json = false

    func run() async throws {
        let path = byName ? "/v1/acl/role/name/\(pathComponent(role))" : "/v1/acl/role/\(pathComponent(role))"
        printRole(try await api.client.get(path, as: ACLRole.self).0, json: json)
    }
}

struct ACLRoleDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Deletes a role; its tokens lose what it granted.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "The role's id.") var id: String

    func run() async throws {
        _ = try await api.client.raw("DELETE", "/v1/acl/role/\(pathComponent(id))")
        print("ACL role \(id) successfully deleted")
    }
}

func printRole(_ role: ACLRole, json: Bool) {
    if json {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return print(String(decoding: (try? encoder.encode(role)) ?? Data(), as: UTF8.self))
    }
    print(
        """
        ID           = \(role.id)
        Name         = \(role.name)
        Description  = \(role.description)
        Policies     = \(role.policies.map(\.name).joined(separator: ","))
        Create Index = \(role.createIndex)
        Modify Index = \(role.modifyIndex)
        """)
}

// MARK: Tokens

struct ACLTokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Create, list, show and revoke ACL tokens.",
        subcommands: [ACLTokenCreate.self, ACLTokenList.self, ACLTokenInfo.self, ACLTokenSelf.self, ACLTokenDelete.self])
}

struct ACLTokenCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Creates a token; its secret is shown only now.")

    @OptionGroup var api: AddressOptions
    @Option(name: .customLong("name", withSingleDash: true), help: "A name for people.") var name = ""
    @Option(name: .customLong("type", withSingleDash: true), help: "client (holds policies) or management (may do anything).")
    var type = "client"
    @Option(name: .customLong("policy", withSingleDash: true), help: "A policy the token holds; repeat for more.") var policies: [String] = []
    @Option(name: .customLong("role-name", withSingleDash: true), help: "A role the token holds, by name; repeat for more.")
    var roleNames: [String] = []
    @Option(name: .customLong("role-id", withSingleDash: true), help: "A role the token holds, by id; repeat for more.")
    var roleIDs: [String] = []
    @Option(name: .customLong("ttl", withSingleDash: true), help: "How long the token lives, as 1h or 30m; forever when left out.")
    var ttl: String?
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the token as JSON.") var json = false

    func validate() throws {
        if let ttl, GoDuration.parse(ttl) == nil { throw ValidationError("-ttl: '\(ttl)' is not a duration such as 1h or 30m") }
    }

    func run() async throws {
        var body: [String: Any] = ["Name": name, "Type": type, "Policies": policies]
        let roles = roleNames.map { ["Name": $0] } + roleIDs.map { ["ID": $0] }
        if !roles.isEmpty { body["Roles"] = roles }
        if let ttl { body["ExpirationTTL"] = ttl }
        let (token, _) = try await api.client.send("POST", "/v1/acl/token", body: try JSONSerialization.data(withJSONObject: body), as: ACLToken.self)
        printToken(token, json: json)
    }
}

struct ACLTokenList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Lists tokens (never their secrets).")

    @OptionGroup var api: AddressOptions
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the API's answer as JSON.") var json = false

    func run() async throws {
        if json { return print(try await api.client.get("/v1/acl/tokens", as: RawJSON.self).0.pretty) }
        let (tokens, _) = try await api.client.get("/v1/acl/tokens", as: [ACLToken].self)
        print(
            table(
                ["Name", "Type", "Accessor ID", "Policies", "Expires"],
                tokens.map {
                    [$0.name, $0.type.rawValue, $0.accessorID, $0.policies.joined(separator: ","), $0.expirationTime.map { "\($0)" } ?? "never"]
                }))
    }
}

struct ACLTokenInfo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Shows a token by its accessor id.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "The token's accessor id.") var accessor: String
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the token as JSON.") var json = false

    func run() async throws {
        let (token, _) = try await api.client.get("/v1/acl/token/\(pathComponent(accessor))", as: ACLToken.self)
        printToken(token, json: json)
    }
}

struct ACLTokenSelf: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "self", abstract: "Shows the token this command sends.")

    @OptionGroup var api: AddressOptions
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the token as JSON.") var json = false

    func run() async throws {
        let (token, _) = try await api.client.get("/v1/acl/token/self", as: ACLToken.self)
        printToken(token, json: json)
    }
}

struct ACLTokenDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Revokes a token.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "The token's accessor id.") var accessor: String

    func run() async throws {
        _ = try await api.client.raw("DELETE", "/v1/acl/token/\(pathComponent(accessor))")
        print("Token \(accessor) successfully deleted")
    }
}

func printToken(_ token: ACLToken, json: Bool) {
    if json {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return print(String(decoding: (try? encoder.encode(token)) ?? Data(), as: UTF8.self))
    }
    print(
        """
        Accessor ID  = \(token.accessorID)
        Secret ID    = \(token.secretID ?? "<hidden>")
        Name         = \(token.name)
        Type         = \(token.type.rawValue)
        Global       = \(token.global)
        Policies     = [\(token.policies.joined(separator: " "))]
        Roles        = [\(token.roles.compactMap(\.name).joined(separator: " "))]
        Create Time  = \(token.createTime)
        Expiry Time  = \(token.expirationTime.map { "\($0)" } ?? "<none>")
        Create Index = \(token.createIndex)
        Modify Index = \(token.modifyIndex)
        """)
}

/// `text` made safe as one segment of a URL path.
func pathComponent(_ text: String) -> String {
    text.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? text
}
