import ArgumentParser
import DroverModel
import Foundation

/// Which node a node command is about: an id (or unique prefix) given, or with `-self` the node
/// this command runs on.
struct NodeSelection: ParsableArguments {
    @Flag(name: .customLong("self", withSingleDash: true), help: "The node this command runs on (its agent's id).") var this = false
    @Option(help: "The local agent's data directory, where -self finds the node id (env DROVER_NODE_DATA_DIR).")
    var dataDir: String = ProcessInfo.processInfo.environment["DROVER_NODE_DATA_DIR"] ?? ".drover/node-agent"
    @Argument(help: "The node id, or a unique prefix of it.") var id: String?

    func validate() throws {
        if this == (id != nil) { throw ValidationError("give a node id, or -self for this node (not both)") }
    }

    func nodeID(client: APIClient) async throws -> String {
        if let id { return try await resolve(id, kind: "node", list: "/v1/nodes", client: client) }
        return try LocalNode.id(dataDirectory: dataDir)
    }
}

/// The node this command runs on, as its agent knows it.
enum LocalNode {
    static func id(dataDirectory: String) throws -> String {
        if let id = ProcessInfo.processInfo.environment["DROVER_NODE_ID"], !id.isEmpty { return id }
        let file = URL(fileURLWithPath: dataDirectory).appendingPathComponent("node-id")
        guard let id = try? String(contentsOf: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), !id.isEmpty else {
            throw APIClient.Failure(
                description:
                    "no node id in \(file.path): is a node agent running here? Set DROVER_NODE_ID, or --data-dir to the agent's data directory")
        }
        return id
    }
}

struct NodeDrain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain",
        abstract: "Drains a node: no new work, and what runs there moves elsewhere (a replacement starts before the old one stops).",
        discussion: "With -enable the command follows the drain until it completes, unless -detach.")

    @OptionGroup var api: AddressOptions
    @OptionGroup var node: NodeSelection
    @Flag(name: .customLong("enable", withSingleDash: true), help: "Start draining.") var enable = false
    @Flag(name: .customLong("disable", withSingleDash: true), help: "Cancel the drain.") var disable = false
    @Option(name: .customLong("deadline", withSingleDash: true), help: "After this (as 1h, 30m, 10s) what is left is stopped.")
    var deadline = "1h"
    @Flag(name: .customLong("no-deadline", withSingleDash: true), help: "Wait for ever for allocations to move.") var noDeadline = false
    @Flag(name: .customLong("force", withSingleDash: true), help: "Stop everything at once.") var force = false
    @Flag(name: .customLong("ignore-system", withSingleDash: true), help: "Leave system jobs' allocations running.") var ignoreSystem = false
    @Flag(name: .customLong("keep-ineligible", withSingleDash: true), help: "With -disable: leave the node ineligible.")
    var keepIneligible = false
    @Flag(name: .customLong("detach", withSingleDash: true), help: "Return once the drain has started.") var detach = false

    func validate() throws {
        if enable == disable { throw ValidationError("give -enable to start a drain or -disable to cancel one") }
        if GoDuration.parse(deadline) == nil { throw ValidationError("-deadline: '\(deadline)' is not a duration such as 1h, 30m or 10s") }
    }

    func run() async throws {
        let client = api.client
        let id = try await node.nodeID(client: client)
        var spec: DrainSpec?
        if enable {
            let nanoseconds = force ? -1 : noDeadline ? 0 : GoDuration.nanoseconds(GoDuration.parse(deadline) ?? .seconds(3600))
            spec = DrainSpec(deadline: nanoseconds, ignoreSystemJobs: ignoreSystem)
        }
        let request = DrainBody(drainSpec: spec, markEligible: disable && !keepIneligible)
        let (_, index) = try await client.send("POST", "/v1/node/\(id)/drain", body: try JSONEncoder().encode(request), as: RawJSON.self)
        guard enable else { return print("Node \"\(id)\" drain cancelled\(request.markEligible ? "; it is eligible again" : "")") }
        print("Node \"\(id)\" drain strategy set")
        if detach { return }
        var seen = index
        while true {
            let (current, next) = try await client.get("/v1/node/\(id)?index=\(seen)&wait=30s", as: Node.self)
            seen = max(seen, next)
            if !current.drain {
                let outcome = current.lastDrain?.status ?? .complete
                print(outcome == .complete ? "Node \"\(id)\" has marked all allocations for migration; drain complete" : "Drain \(outcome.rawValue)")
                return
            }
        }
    }

    struct DrainBody: Encodable {
        var drainSpec: DrainSpec?
        var markEligible: Bool
        enum CodingKeys: String, CodingKey {
            case drainSpec = "DrainSpec"
            case markEligible = "MarkEligible"
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(drainSpec, forKey: .drainSpec)  // null cancels
            try container.encode(markEligible, forKey: .markEligible)
        }
    }
}

struct NodeEligibility: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eligibility", abstract: "Lets a node take new allocations, or not; what runs there stays.")

    @OptionGroup var api: AddressOptions
    @OptionGroup var node: NodeSelection
    @Flag(name: .customLong("enable", withSingleDash: true), help: "Eligible for new allocations.") var enable = false
    @Flag(name: .customLong("disable", withSingleDash: true), help: "Ineligible for new allocations.") var disable = false

    func validate() throws {
        if enable == disable { throw ValidationError("give -enable or -disable") }
    }

    func run() async throws {
        let client = api.client
        let id = try await node.nodeID(client: client)
        let body = try JSONEncoder().encode(["Eligibility": enable ? "eligible" : "ineligible"])
        _ = try await client.send("POST", "/v1/node/\(id)/eligibility", body: body, as: RawJSON.self)
        print("Node \"\(id)\" scheduling eligibility set: \(enable ? "eligible" : "ineligible") for scheduling")
    }
}

struct NodeEnroll: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enroll",
        abstract: "Gives a node its own broker user and prints (or writes) the settings its agent runs with.",
        discussion: "The node may then publish only under node.<id>. and read only its own queues; `drover node purge` takes it away.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "The node's id; a new one when left out.") var id: String?
    @Option(name: .customLong("output", withSingleDash: true), help: "Write the settings to this file (mode 0600) instead of printing them.")
    var output: String?

    func run() async throws {
        let id = self.id ?? UUID().uuidString.lowercased()
        let (credentials, _) = try await api.client.send(
            "POST", "/v1/node/\(id)/enroll", body: Data("{}".utf8), as: [String: String].self)
        let settings = "DROVER_NODE_ID=\(credentials["NodeID"] ?? id)\nDROVER_AMQP_URL=\(credentials["AMQPURL"] ?? "")\n"
        guard let output else { return print(settings, terminator: "") }
        guard FileManager.default.createFile(atPath: output, contents: Data(settings.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw APIClient.Failure(description: "cannot write \(output); check that its directory exists and is writable")
        }
        print("Node \(id) enrolled; its agent's settings are in \(output)")
    }
}

struct NodePurge: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "purge", abstract: "Removes a node: its broker user goes, its connections close, and its allocations are replaced.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "The node's id.") var id: String

    func run() async throws {
        _ = try await api.client.raw("POST", "/v1/node/\(id)/purge", body: Data("{}".utf8))
        print("Node \(id) purged")
    }
}
