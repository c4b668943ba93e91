import ArgumentParser
import Foundation

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

    @Option(
        name: .customLong("namespace", withSingleDash: true),
        help:
            "The namespace of the jobs, allocations and evaluations asked for; * for every one the token may read (env DROVER_NAMESPACE or NOMAD_NAMESPACE; default: default)."
    )
    var namespace: String? = ProcessInfo.processInfo.environment["DROVER_NAMESPACE"] ?? ProcessInfo.processInfo.environment["NOMAD_NAMESPACE"]

    /// A client of the API with the token to send.
    var client: APIClient { APIClient(address: address, token: resolvedToken, caCertificate: caCert, namespace: namespace) }

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

/// The cluster `deploy/local/up` runs on this machine, and where it keeps its management token:
/// `$DROVER_DATA_DIR/management.token`, else `.drover/management.token` in the current directory
/// or one above it, or above this executable (a build inside the repository).
enum LocalCluster {
    /// Where a local cluster's state may be: `DROVER_DATA_DIR`, then `.drover/` in the current
    /// directory or one above it, or above this executable.
    static func directories() -> [URL] {
        var candidates: [URL] = []
        if let data = ProcessInfo.processInfo.environment["DROVER_DATA_DIR"], !data.isEmpty { candidates.append(URL(fileURLWithPath: data)) }
        for start in [
            FileManager.default.currentDirectoryPath, CommandLine.arguments.first.map { URL(fileURLWithPath: $0).deletingLastPathComponent().path },
        ] {
            guard var directory = start.map({ URL(fileURLWithPath: $0).standardizedFileURL }) else { continue }
            while directory.path != "/" {
                candidates.append(directory.appendingPathComponent(".drover"))
                directory.deleteLastPathComponent()
            }
        }
        return candidates
    }

    static func managementToken() -> String? {
        let candidates = directories().map { $0.appendingPathComponent("management.token") }
        for file in candidates {
            if let text = try? String(contentsOf: file, encoding: .utf8) {
                let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
                if !token.isEmpty { return token }
            }
        }
        return nil
    }
}
