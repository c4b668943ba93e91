import ArgumentParser
import Foundation

@main
struct Drover: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drover", abstract: "Drover's command line: the cluster and this node.", version: "0.1.0",
        subcommands: [
            Status.self, JobCommand.self, NodeCommand.self, AllocCommand.self, EvalCommand.self, Events.self, ACLCommand.self, NodeArrayCommand.self,
            AutoscaleCommand.self, ProjectCommand.self, ScheduleCommand.self, PluginCommand.self,
            // On a node, through its agent:
            Log.self, Keepalive.self, Shutdown.self, RunOnShutdown.self, Send.self, Config.self, Users.self, ReportIssue.self, Converge.self,
            TestCommand.self, Download.self,
        ])
}

/// Where the API is (`--address`, else `DROVER_ADDR`, else the local default) and the ACL token
/// to send (`--token`, else `DROVER_TOKEN`, else `NOMAD_TOKEN`, else the file `DROVER_TOKEN_FILE`
/// names, else, for a cluster on this machine, the management token `deploy/local/up` wrote).
struct AddressOptions: ParsableArguments {
    @Option(name: .customLong("address"), help: "The API's address (env DROVER_ADDR).")
    var address: String = ProcessInfo.processInfo.environment["DROVER_ADDR"] ?? "http://127.0.0.1:4646"

    @Option(
        name: .customLong("token"),
        help:
            "The ACL token's secret (env DROVER_TOKEN or NOMAD_TOKEN, or a file named by DROVER_TOKEN_FILE; for a local cluster, .drover/management.token)."
    )
    var token: String?

    @Option(
        name: .customLong("ca-cert"),
        help: "For an https address, the PEM file of the authority its certificate must chain to (env DROVER_CACERT or NOMAD_CACERT).")
    var caCert: String? = ProcessInfo.processInfo.environment["DROVER_CACERT"] ?? ProcessInfo.processInfo.environment["NOMAD_CACERT"]

    /// A client of the API with the token to send.
    var client: APIClient { APIClient(address: address, token: resolvedToken, caCertificate: caCert) }

    var resolvedToken: String? {
        let environment = ProcessInfo.processInfo.environment
        if let token, !token.isEmpty { return token }
        for name in ["DROVER_TOKEN", "NOMAD_TOKEN"] { if let value = environment[name], !value.isEmpty { return value } }
        // A token mounted as a file (a Kubernetes secret, say), without its line break.
        if let path = environment["DROVER_TOKEN_FILE"], !path.isEmpty, let data = FileManager.default.contents(atPath: path) {
            let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if !token.isEmpty { return token }
        }
        guard let host = URL(string: address)?.host, ["127.0.0.1", "localhost", "::1", "[::1]"].contains(host) else { return nil }
        return LocalCluster.managementToken()
    }

    func validate() throws {
        if let path = ProcessInfo.processInfo.environment["DROVER_TOKEN_FILE"], !path.isEmpty, !FileManager.default.isReadableFile(atPath: path) {
            throw ValidationError("DROVER_TOKEN_FILE: '\(path)' cannot be read")
        }
        guard let url = URL(string: address), url.scheme == "http" || url.scheme == "https", url.host != nil else {
            throw ValidationError("--address: '\(address)' is not an http(s) URL such as http://127.0.0.1:4646")
        }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Says whether the API gateway is up and ready, and what it checks.")

    @OptionGroup var api: AddressOptions
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the gateway's answer as JSON.") var json = false

    func run() async throws {
        let client = APIClient(address: api.address, caCertificate: api.caCert)
        let (status, _, data) = try await client.exchange("GET", "/readyz")
        if json {
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(status == 200 ? "ready: \(api.address)" : "not ready (HTTP \(status)): \(String(decoding: data, as: UTF8.self))")
        }
        if status != 200 { throw ExitCode(1) }
    }
}

/// The cluster `deploy/local/up` runs on this machine, and where it keeps its management token:
/// `$DROVER_DATA_DIR/management.token`, else `.drover/management.token` in the current directory
/// or one above it, or above this executable (a build inside the repository).
enum LocalCluster {
    static func managementToken() -> String? {
        var candidates: [URL] = []
        if let data = ProcessInfo.processInfo.environment["DROVER_DATA_DIR"] {
            candidates.append(URL(fileURLWithPath: data).appendingPathComponent("management.token"))
        }
        for start in [
            FileManager.default.currentDirectoryPath, CommandLine.arguments.first.map { URL(fileURLWithPath: $0).deletingLastPathComponent().path },
        ] {
            guard var directory = start.map({ URL(fileURLWithPath: $0).standardizedFileURL }) else { continue }
            while directory.path != "/" {
                candidates.append(directory.appendingPathComponent(".drover/management.token"))
                directory.deleteLastPathComponent()
            }
        }
        for file in candidates {
            if let text = try? String(contentsOf: file, encoding: .utf8) {
                let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
                if !token.isEmpty { return token }
            }
        }
        return nil
    }
}
