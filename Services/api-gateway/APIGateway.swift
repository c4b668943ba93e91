import ArgumentParser
import DroverControlPlane
import DroverGateway
import DroverMessaging
import DroverModel
import DroverStorage
import Foundation

@main
struct APIGateway: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "api-gateway", abstract: "Drover's HTTP API: writes desired state and publishes what changed through the outbox.")

    @OptionGroup var options: ControlPlaneOptions
    @OptionGroup var scheduling: SchedulingOptions

    @OptionGroup var management: BrokerManagementOptions

    @Option(help: "The longest a blocking query (?index=) waits, and its default wait, as 5m (env DROVER_MAX_QUERY_WAIT).")
    var maxQueryWait: String = ProcessInfo.processInfo.environment["DROVER_MAX_QUERY_WAIT"] ?? "5m"

    @Option(help: "Check ACL tokens on every route: true (the default) or false, for development only (env DROVER_ACL_ENABLED).")
    var aclEnabled: String = ProcessInfo.processInfo.environment["DROVER_ACL_ENABLED"] ?? "true"

    @Option(help: "How long a token's lookup is reused before it is read again, as 30s (env DROVER_ACL_TOKEN_TTL).")
    var aclTokenTTL: String = ProcessInfo.processInfo.environment["DROVER_ACL_TOKEN_TTL"] ?? "30s"

    func validate() throws {
        guard GoBool.parse(aclEnabled) != nil else { throw ValidationError("--acl-enabled: '\(aclEnabled)' is not true or false") }
        guard let ttl = GoDuration.parse(aclTokenTTL), ttl <= .seconds(3600) else {
            throw ValidationError("--acl-token-ttl: '\(aclTokenTTL)' is not a duration of at most 1h, such as 30s")
        }
        guard let wait = GoDuration.parse(maxQueryWait), wait > .zero, wait <= .seconds(3600) else {
            throw ValidationError("--max-query-wait: '\(maxQueryWait)' is not a duration between 1ms and 1h, such as 5m")
        }
    }

    func run() async throws {
        let plane = try ControlPlane(name: "api-gateway", options: options)
        let amqp = try options.bus.configuration()
        let watcher = IndexWatcher(database: plane.database)
        let gateway = Gateway(
            database: plane.database, watcher: watcher, scheduling: scheduling.configuration, address: plane.address(defaultPort: 4646),
            brokerUsers: try management.brokerUsers(for: options.bus),
            brokerEndpoint: amqp.endpoint, maximumWait: GoDuration.parse(maxQueryWait) ?? .seconds(300),
            access: AccessConfiguration(enabled: GoBool.parse(aclEnabled) ?? true, tokenLifetime: GoDuration.parse(aclTokenTTL) ?? .seconds(30)),
            logger: plane.logger)
        if GoBool.parse(aclEnabled) == false {
            plane.logger.warning("ACLs are off: every route is open to anyone who can reach this port")
        }
        try await plane.run(defaultPort: 4646, workers: [plane.outboxRelay, plane.eventRelay, watcher], routes: gateway.addRoutes)
    }
}
