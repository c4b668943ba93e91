import ArgumentParser
import DroverModel
import Foundation

struct EnrollTokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enroll-token", abstract: "One-time tokens nodes join the cluster with (node-agent --enroll-token).",
        subcommands: [EnrollTokenCreate.self, EnrollTokenList.self, EnrollTokenDelete.self])
}

struct EnrollTokenCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Makes a token one node may join with, once, before it expires; its secret is shown only now.")

    @OptionGroup var api: AddressOptions
    @Option(name: .customLong("ttl"), help: "How long it may be used, as 1h or 30m (at most 720h).") var ttl = "1h"
    @Option(name: .customLong("node"), help: "The only node id that may join with it; any when left out.") var node: String?
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the token as JSON.") var json = false
    @Option(
        name: .customLong("secret-file"),
        help: "Write only the secret to this file (mode 0600), for node-agent's DROVER_ENROLL_TOKEN_FILE, and print nothing else.")
    var secretFile: String?

    func validate() throws {
        guard GoDuration.parse(ttl) != nil else { throw ValidationError("--ttl: '\(ttl)' is not a duration such as 1h or 30m") }
        if secretFile?.isEmpty == true { throw ValidationError("--secret-file: give a path") }
    }

    func run() async throws {
        var body: [String: Any] = ["TTL": ttl]
        if let node { body["NodeID"] = node }
        let (token, _) = try await api.client.send(
            "POST", "/v1/enroll-tokens", body: try JSONSerialization.data(withJSONObject: body), as: EnrollmentToken.self)
        if let secretFile {
            guard let secret = token.secret else { throw APIClient.Failure(description: "the gateway answered without the token's secret") }
            let written = FileManager.default.createFile(
                atPath: secretFile, contents: Data((secret + "\n").utf8), attributes: [.posixPermissions: 0o600])
            guard written, chmod(secretFile, 0o600) == 0 else {
                throw APIClient.Failure(
                    description: "cannot write \(secretFile): \(String(cString: strerror(errno))); give a path in a writable directory")
            }
            return print("Wrote the secret of enrollment token \(token.accessorID) to \(secretFile)")
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            return print(String(decoding: try encoder.encode(token), as: UTF8.self))
        }
        print(
            """
            Accessor ID = \(token.accessorID)
            Secret      = \(token.secret ?? "")
            Node        = \(token.nodeID ?? "<any>")
            Expires     = \(token.expiresAt)

            Start the node's agent once with it:
              DROVER_ENROLL_TOKEN=\(token.secret ?? "") DROVER_ADDR=\(api.address) node-agent
            """)
    }
}

struct EnrollTokenList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Lists enrollment tokens (never their secrets).")

    @OptionGroup var api: AddressOptions
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the API's answer as JSON.") var json = false

    func run() async throws {
        if json { return print(try await api.client.get("/v1/enroll-tokens", as: RawJSON.self).0.pretty) }
        let (tokens, _) = try await api.client.get("/v1/enroll-tokens", as: [EnrollmentToken].self)
        if tokens.isEmpty { return print("No enrollment tokens") }
        print(
            table(
                ["Accessor ID", "Node", "Expires", "Used by"],
                tokens.map { [$0.accessorID, $0.nodeID ?? "<any>", "\($0.expiresAt)", $0.usedBy ?? "-"] }))
    }
}

struct EnrollTokenDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Revokes an enrollment token not used yet.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "The token's accessor id.") var accessor: String

    func run() async throws {
        _ = try await api.client.raw("DELETE", "/v1/enroll-token/\(pathComponent(accessor))")
        print("Enrollment token \(accessor) deleted")
    }
}
