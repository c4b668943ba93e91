import DroverControlPlane
import DroverMessaging
import DroverStorage
import DroverTestSupport
import Hummingbird
import HummingbirdTesting
import Logging

@testable import DroverGateway

/// Runs `body` with a client (sending no token of its own) of a gateway in this process, over
/// a fresh database; its broker users point nowhere. `extraRoutes` adds routes of the test's own
/// beside the gateway's.
func withTestGateway(
    access: AccessConfiguration = .init(), logger: Logger = Logger(label: "test"), extraRoutes: (@Sendable (GuardedRouter) -> Void)? = nil,
    _ body: @escaping @Sendable (any TestClientProtocol, Database) async throws -> Void
) async throws {
    try await withMigratedDatabase { database in
        let watcher = IndexWatcher(database: database)
        let watching = Task { try await watcher.run() }
        defer { watching.cancel() }
        let gateway = Gateway(
            database: database, watcher: watcher, scheduling: .init(), address: "127.0.0.1:4646",
            brokerUsers: try BrokerUsers(
                managementURL: "http://guest:guest@127.0.0.1:1", vhost: "/", exchange: "drover", deadLetterExchange: "drover.dead-letter"),
            brokerEndpoint: try AMQPEndpoint(url: "amqp://guest:guest@127.0.0.1:5672"), access: access, logger: logger)
        let router = Router()
        gateway.addRoutes(to: router)
        extraRoutes?(GuardedRouter(router: router, gateway: gateway))
        try await Application(router: router, logger: logger).test(.router) { client in try await body(client, database) }
    }
}
