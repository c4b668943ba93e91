import ArgumentParser
import DroverModel
import Foundation

/// `drover plugin`: broker users for plugins that read the cluster's events.
struct PluginCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugin", abstract: "Plugins' access to the events exchange: a broker user and a queue of their own each.",
        subcommands: [PluginCreate.self, PluginList.self, PluginDelete.self])
}

struct PluginCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Makes a plugin's broker user and its queue plugin.<name>, bound to drover.events as asked; prints its AMQP URL and queue.",
        discussion: """
            The user may read only its own queues (plugin.<name>, plugin.<name>.…), bind them to drover.events only with the
            keys given, and publish nowhere. The password is in the URL printed, and shown only now: running this again for the
            same name gives a new password (the old one stops working) and binds the queue with exactly the keys given.
            """)

    @OptionGroup var api: AddressOptions
    @Argument(help: "The plugin's name: lower-case letters, digits and '-'.") var name: String
    @Option(name: .customLong("bind"), help: "A binding key on drover.events, such as 'event.job.#' (repeatable; at least one).")
    var bindings: [String] = []
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the answer as JSON: an object with URL and Queue.") var json = false

    func validate() throws {
        let errors = PluginSpec(bindings: bindings).validate(name: name)
        if let error = errors.first {
            throw ValidationError("\(error.field == "Name" ? "name" : "--bind"): \(error.reason)")
        }
    }

    func run() async throws {
        let (data, _) = try await api.client.raw(
            "PUT", "/v1/bus/plugin/\(pathComponent(name))", body: try JSONEncoder().encode(PluginSpec(bindings: bindings)))
        if json { return print(String(decoding: data, as: UTF8.self)) }
        let plugin = try JSONDecoder().decode(PluginAccess.self, from: data)
        print("Plugin \(plugin.name): queue \(plugin.queue), bound to drover.events with \(plugin.bindings.joined(separator: ", "))")
        print("URL   = \(plugin.url)")
        print("Queue = \(plugin.queue)")
        print("The password in the URL is shown only now.")
    }
}

struct PluginList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Lists the plugins, their queues and bindings.")

    @OptionGroup var api: AddressOptions
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the API's answer as JSON.") var json = false

    func run() async throws {
        if json { return print(try await api.client.get("/v1/bus/plugins", as: RawJSON.self).0.pretty) }
        let plugins = try await api.client.get("/v1/bus/plugins", as: [PluginAccess].self).0
        if plugins.isEmpty { return print("No plugins") }
        print(table(["Name", "User", "Queue", "Bindings"], plugins.map { [$0.name, $0.user, $0.queue, $0.bindings.joined(separator: " ")] }))
    }
}

struct PluginDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Deletes a plugin's broker user (closing its connections) and its queue.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "The plugin's name.") var name: String

    func run() async throws {
        _ = try await api.client.raw("DELETE", "/v1/bus/plugin/\(pathComponent(name))")
        print("Plugin \(name) deleted")
    }
}
