import DroverControlPlane
import DroverMessaging
import DroverModel
import Hummingbird

/// Plugins' access to the events (`drover plugin`): a broker user and a queue of their own each,
/// kept in the broker (RabbitMQ's management API), not in the database.
extension Gateway {
    func addPluginRoutes(to routes: GuardedRouter) {
        // Makes (or re-keys, and binds again) a plugin: its password is shown in this answer only.
        routes.put("/v1/bus/plugin/:name", .operator(.write)) { request, context in
            try await handle {
                let name = context.parameters.get("name") ?? ""
                let spec = try await Self.decodeBody(PluginSpec.self, request)
                let errors = spec.validate(name: name)
                guard errors.isEmpty else { throw ControlPlaneError.invalid(errors) }
                let bindings = Array(Set(spec.bindings)).sorted()
                let (user, password) = try await brokerManagement { try await brokerUsers.createPlugin(name: name, bindings: bindings) }
                var endpoint = brokerEndpoint
                endpoint.user = user
                endpoint.password = password
                logger.notice("Plugin made", metadata: ["plugin": "\(name)", "bindings": "\(bindings)"])
                return Self.json(
                    PluginAccess(name: name, user: user, url: endpoint.url, queue: BrokerUsers.queue(ofPlugin: name), bindings: bindings), index: nil)
            }
        }
        routes.get("/v1/bus/plugins", .operator(.read)) { _, _ in
            try await handle {
                let plugins = try await brokerManagement { try await brokerUsers.plugins() }
                return Self.json(
                    plugins.map { plugin in
                        // Without the password, which was shown once.
                        var endpoint = brokerEndpoint
                        endpoint.user = BrokerUsers.userName(ofPlugin: plugin.name)
                        return PluginAccess(
                            name: plugin.name, user: endpoint.user, url: endpoint.redacted, queue: BrokerUsers.queue(ofPlugin: plugin.name),
                            bindings: plugin.bindings)
                    }, index: nil)
            }
        }
        routes.delete("/v1/bus/plugin/:name", .operator(.write)) { _, context in
            try await handle {
                let name = context.parameters.get("name") ?? ""
                guard PluginSpec.isName(name) else {
                    throw ControlPlaneError.invalid([FieldError("Name", "'\(name.prefix(100))' is not a plugin name")])
                }
                guard try await brokerManagement({ try await brokerUsers.removePlugin(name: name) }) else {
                    throw ControlPlaneError.notFound(kind: "plugin", id: name)
                }
                logger.notice("Plugin deleted", metadata: ["plugin": "\(name)"])
                return Response(status: .noContent)
            }
        }
    }
}
