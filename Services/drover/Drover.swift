import ArgumentParser
import Foundation

@main
struct Drover: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drover", abstract: "Drover's command line: the cluster and this node.", version: "0.1.0",
        subcommands: [
            Status.self, JobCommand.self, NodeCommand.self, AllocCommand.self, EvalCommand.self, Events.self, ACLCommand.self, NodeArrayCommand.self,
            AutoscaleCommand.self, ProjectCommand.self, ScheduleCommand.self, PluginCommand.self, NamespaceCommand.self,
            // On a node, through its agent:
            Log.self, Keepalive.self, Shutdown.self, RunOnShutdown.self, Send.self, Config.self, Users.self, ReportIssue.self, Converge.self,
            TestCommand.self, Download.self,
        ])
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
