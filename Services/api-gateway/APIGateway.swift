import ArgumentParser
import DroverControlPlane
import DroverStorage

@main
struct APIGateway: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "api-gateway", abstract: "Drover's HTTP API: writes desired state and publishes what changed through the outbox.")

    @OptionGroup var options: ControlPlaneOptions

    func run() async throws {
        let plane = try ControlPlane(name: "api-gateway", options: options)
        try await plane.run(defaultPort: 4646, workers: [OutboxRelay(database: plane.database, bus: plane.bus, logger: plane.logger)])
    }
}
