import ArgumentParser
import DroverControlPlane
import DroverMessaging
import DroverStorage
import Foundation

@main
struct APIGateway: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "api-gateway", abstract: "Drover's HTTP API: writes desired state and publishes what changed through the outbox.")

    @OptionGroup var options: ControlPlaneOptions
    @OptionGroup var scheduling: SchedulingOptions

    @Option(help: "RabbitMQ's management API, with a user that may manage users, for node enrolment (env DROVER_AMQP_MANAGEMENT_URL).")
    var amqpManagementURL: String = ProcessInfo.processInfo.environment["DROVER_AMQP_MANAGEMENT_URL"] ?? "http://guest:guest@127.0.0.1:15680"

    func run() async throws {
        let plane = try ControlPlane(name: "api-gateway", options: options)
        let store = ClusterStore(database: plane.database)
        let watcher = IndexWatcher(store: store)
        let amqp = try options.bus.configuration()
        let api = NomadAPI(
            store: store,
            registrations: GroupCommit(limit: 200) { jobs in try await store.register(jobs).map { $0.mapError { $0 } } },
            processor: EvaluationProcessor(store: store, configuration: scheduling.configuration), watcher: watcher,
            address: plane.address(defaultPort: 4646), logger: plane.logger,
            brokerUsers: try BrokerUsers(
                managementURL: amqpManagementURL, vhost: amqp.endpoint.vhost, exchange: amqp.exchange, deadLetterExchange: amqp.deadLetterExchange),
            brokerEndpoint: amqp.endpoint)
        try await plane.run(
            defaultPort: 4646, workers: [OutboxRelay(database: plane.database, bus: plane.bus, logger: plane.logger), watcher],
            routes: api.addRoutes)
    }
}
