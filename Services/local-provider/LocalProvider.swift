import ArgumentParser
import DroverMessaging
import DroverModel
import DroverProviders
import DroverRuntime
import Foundation

/// The `local` provider plugin: makes a node array's machines as node-agent processes on this
/// machine, so that autoscaling runs end to end on one host. It speaks only the provider
/// contract on the bus (`cluster.provider.<array>.create|terminate` in, `provider.<array>.<status>`
/// out), as any provider plugin does.
@main
struct LocalProvider: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "local-provider", abstract: "A provider plugin that starts and stops node agents on this machine for node arrays.")

    @OptionGroup var bus: BusOptions
    @OptionGroup var server: ServerOptions

    @Option(help: "The provider name it answers for: requests whose Provider is another are left to others.") var name = "local"
    @Option(name: .customLong("data-root"), help: "Where each machine's data directory goes (env DROVER_PROVIDER_DATA).")
    var dataRoot = ProcessInfo.processInfo.environment["DROVER_PROVIDER_DATA"] ?? ".drover/local-provider"
    @Option(name: .customLong("agent-binary"), help: "The node-agent executable; the one beside this program by default.") var agentBinary: String?
    @Option(help: "At most this many machines at once; beyond, requests fail 'out of capacity'.") var capacity = 16
    @Option(
        help: "The gateway its agents join through, instead of the one the request names (env DROVER_ADDR): where this host reaches it.")
    var gateway = ProcessInfo.processInfo.environment["DROVER_ADDR"]

    func validate() throws {
        guard (1...1000).contains(capacity) else { throw ValidationError("--capacity: must be 1-1000") }
        guard NodeArray.isName(name) else { throw ValidationError("--name: '\(name)' must be a word of letters, digits, '_' or '-'") }
    }

    func run() async throws {
        let runtime = ServiceRuntime.bootstrap(name: "local-provider", logLevel: server.level)
        let logger = runtime.logger
        let binary =
            agentBinary
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("node-agent").path
        let machines = LocalMachines(
            root: URL(fileURLWithPath: dataRoot, isDirectory: true), agentBinary: binary, capacity: capacity, logger: logger)
        let amqp = AMQPBus(configuration: try bus.configuration(), logger: logger)
        let name = self.name
        let creates = MessageConsumer(
            ProviderCreateRequest.self, bus: amqp,
            spec: ConsumerSpec(queue: "provider.\(name).create", bindings: ["cluster.provider.*.create"]), logger: logger
        ) { envelope, _ in
            guard envelope.data.provider == name else { return }
            var request = envelope.data
            if let gateway { request.gateway = gateway }
            for reply in machines.create(request) {
                try await amqp.publish(reply, routingKey: RoutingKey.providerReply(reply.array, reply.status))
            }
        }
        let terminations = MessageConsumer(
            ProviderTerminateRequest.self, bus: amqp,
            spec: ConsumerSpec(queue: "provider.\(name).terminate", bindings: ["cluster.provider.*.terminate"]), logger: logger
        ) { envelope, _ in
            guard envelope.data.provider == name || envelope.data.provider.isEmpty else { return }
            let reply = await machines.terminate(envelope.data)
            try await amqp.publish(reply, routingKey: RoutingKey.providerReply(reply.array, reply.status))
        }
        try await ServiceRuntime.endProcess {
            try await runtime.runService(
                bus: amqp, host: server.httpHost, port: server.configuredPort ?? 4640, workers: [creates, terminations],
                tls: try server.tlsConfiguration(), shutdownTimeout: server.shutdownLimit(default: 25))
        }
    }
}
