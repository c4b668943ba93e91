import ArgumentParser
import DroverControlPlane
import DroverGateway
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
        let amqp = try options.bus.configuration()
        let watcher = IndexWatcher(database: plane.database)
        let gateway = Gateway(
            database: plane.database, watcher: watcher, scheduling: scheduling.configuration, address: plane.address(defaultPort: 4646),
            brokerUsers: try BrokerUsers(
                managementURL: amqpManagementURL, vhost: amqp.endpoint.vhost, exchange: amqp.exchange, deadLetterExchange: amqp.deadLetterExchange),
            brokerEndpoint: amqp.endpoint, logger: plane.logger)
        try await plane.run(defaultPort: 4646, workers: [plane.outboxRelay, watcher], routes: gateway.addRoutes)
    }
}
