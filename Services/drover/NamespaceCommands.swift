import ArgumentParser
import DroverModel
import Foundation

struct NamespaceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "namespace", abstract: "List, show, create or change, and delete namespaces.",
        subcommands: [NamespaceList.self, NamespaceStatus.self, NamespaceApply.self, NamespaceDelete.self])
}

struct NamespaceList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Lists the namespaces the token may use.")

    @OptionGroup var api: AddressOptions
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the API's answer as JSON.") var json = false

    func run() async throws {
        if json { return print(try await api.client.get("/v1/namespaces", as: RawJSON.self).0.pretty) }
        let (namespaces, _) = try await api.client.get("/v1/namespaces", as: [Namespace].self)
        print(table(["Name", "Description"], namespaces.map { [$0.name, $0.description] }))
    }
}

struct NamespaceStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Shows a namespace.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "The namespace's name.") var name: String
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the API's answer as JSON.") var json = false

    func run() async throws {
        let path = "/v1/namespace/\(pathComponent(name))"
        if json { return print(try await api.client.get(path, as: RawJSON.self).0.pretty) }
        let (namespace, _) = try await api.client.get(path, as: Namespace.self)
        print("Name        = \(namespace.name)\nDescription = \(namespace.description)")
        if let enabled = namespace.capabilities?.enabledTaskDrivers, !enabled.isEmpty {
            print("Enabled Task Drivers  = \(enabled.joined(separator: ","))")
        }
        if let disabled = namespace.capabilities?.disabledTaskDrivers, !disabled.isEmpty {
            print("Disabled Task Drivers = \(disabled.joined(separator: ","))")
        }
        if let meta = namespace.meta, !meta.isEmpty {
            print("\nMetadata")
            for key in meta.keys.sorted() { print("\(key) = \(meta[key] ?? "")") }
        }
    }
}

struct NamespaceApply: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply", abstract: "Creates a namespace, or changes one: its description, meta and the drivers its jobs may use.")

    @OptionGroup var api: AddressOptions
    @Option(name: .customLong("description", withSingleDash: true), help: "What the namespace is for.") var description = ""
    @Option(name: .customLong("meta", withSingleDash: true), help: "A key=value pair of its metadata; repeat for more.") var meta: [String] = []
    @Option(
        name: .customLong("enabled-task-drivers", withSingleDash: true), help: "Comma-separated: the only drivers its jobs may use.")
    var enabledTaskDrivers: String?
    @Option(name: .customLong("disabled-task-drivers", withSingleDash: true), help: "Comma-separated: drivers its jobs may not use.")
    var disabledTaskDrivers: String?
    @Argument(help: "The namespace's name: letters, digits and hyphens.") var name: String

    func validate() throws {
        guard Namespace.isValidName(name) else { throw ValidationError("'\(name)' is not a namespace name: use 1-128 letters, digits and hyphens") }
        for entry in meta where !entry.contains("=") { throw ValidationError("-meta: '\(entry)' is not key=value") }
    }

    func run() async throws {
        var entries: [String: String] = [:]
        for entry in meta {
            let parts = entry.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            entries[parts[0]] = parts[1]
        }
        let drivers = { (text: String?) in text.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } } }
        let capabilities =
            enabledTaskDrivers == nil && disabledTaskDrivers == nil
            ? nil
            : Namespace.Capabilities(enabledTaskDrivers: drivers(enabledTaskDrivers), disabledTaskDrivers: drivers(disabledTaskDrivers))
        let namespace = Namespace(name: name, description: description, meta: entries.isEmpty ? nil : entries, capabilities: capabilities)
        _ = try await api.client.raw("POST", "/v1/namespace/\(pathComponent(name))", body: try JSONEncoder().encode(namespace))
        print("Successfully applied namespace \"\(name)\"!")
    }
}

struct NamespaceDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Deletes a namespace that holds no jobs; default cannot be deleted.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "The namespace's name.") var name: String

    func run() async throws {
        _ = try await api.client.raw("DELETE", "/v1/namespace/\(pathComponent(name))")
        print("Successfully deleted namespace \"\(name)\"!")
    }
}
