import ArgumentParser
import DroverControlPlane

@main
struct Autoscaler: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "autoscaler",
        abstract: "Keeps node arrays at their targets and their demand by asking provider plugins for machines, and takes idle ones away.")

    @OptionGroup var options: ControlPlaneOptions
    @OptionGroup var autoscale: AutoscaleOptions
    @OptionGroup var management: BrokerManagementOptions

    func run() async throws {
        let plane = try ControlPlane(name: "autoscaler", options: options)
        let service = AutoscaleService(
            database: plane.database, policy: autoscale.policy, gateway: autoscale.gateway, brokerUsers: try management.brokerUsers(for: options.bus),
            logger: plane.logger)
        try await plane.run(defaultPort: 4649, workers: plane.autoscalerWorkers(service: service, interval: autoscale.roundInterval))
    }
}
