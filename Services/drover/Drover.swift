import ArgumentParser
import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

@main
struct Drover: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drover", abstract: "Drover's command line: the cluster and this node.", version: "0.1.0",
        subcommands: [
            Status.self, JobCommand.self, NodeCommand.self, AllocCommand.self, EvalCommand.self, Events.self,
            // On a node, through its agent:
            Log.self, Keepalive.self, Shutdown.self, RunOnShutdown.self, Send.self, Config.self, Users.self, ReportIssue.self,
        ])
}

/// Where the API is: `--address`, else `DROVER_ADDR`, else the local default.
struct AddressOptions: ParsableArguments {
    @Option(name: .customLong("address"), help: "The API's address (env DROVER_ADDR).")
    var address: String = ProcessInfo.processInfo.environment["DROVER_ADDR"] ?? "http://127.0.0.1:4646"

    func validate() throws {
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
        let url = URL(string: api.address)!.appendingPathComponent("readyz")
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await URLSession.shared.data(from: url)
        } catch {
            throw CleanExit.message(
                "error: cannot reach the API at \(api.address) (\(error.localizedDescription)).\n"
                    + "Is Drover running? Start it locally with deploy/local/up, or point DROVER_ADDR at your cluster.")
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        if json {
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(status == 200 ? "ready: \(api.address)" : "not ready (HTTP \(status)): \(String(decoding: data, as: UTF8.self))")
        }
        if status != 200 { throw ExitCode(1) }
    }
}
