import ArgumentParser
import DroverControlPlane
import DroverStorage

@main
struct APIGateway: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "api-gateway", abstract: "Drover's HTTP API: writes desired state and publishes what changed through the outbox.")

    @OptionGroup var options: ControlPlaneOptions
    @OptionGroup var scheduling: SchedulingOptions

    func run() async throws {
        let plane = try ControlPlane(name: "api-gateway", options: options)
        let store = ClusterStore(database: plane.database)
        let watcher = IndexWatcher(store: store)
        let api = NomadAPI(
            store: store, processor: EvaluationProcessor(store: store, configuration: scheduling.configuration), watcher: watcher,
            address: plane.address(defaultPort: 4646), logger: plane.logger)
        try await plane.run(
            defaultPort: 4646, workers: [OutboxRelay(database: plane.database, bus: plane.bus, logger: plane.logger), watcher],
            routes: api.addRoutes)
    }
}
