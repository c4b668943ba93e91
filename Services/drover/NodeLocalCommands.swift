import ArgumentParser
import DroverModel
import Foundation

// The commands a node's own scripts run, in Jetpack's words. They talk to the local agent,
// which speaks for the node on the bus.

struct Keepalive: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Keeps this node from being terminated (an unhealthy node is then not flagged) for a while, or for ever.")

    @OptionGroup var agent: AgentOptions
    @Argument(help: "How long, as 1h, 30m or 2h30m; or forever.") var duration = "1h"

    func validate() throws {
        if duration != "forever" && GoDuration.parse(duration) == nil {
            throw ValidationError("'\(duration)' is neither a duration such as 1h, 30m or 2h30m nor 'forever'")
        }
    }

    func run() async throws {
        let (answer, _) = try await agent.client.send(
            "POST", "/v1/agent/keepalive", body: try JSONEncoder().encode(["Duration": duration]), as: [String: String].self)
        print("Keepalive set until \(answer["Until"] ?? duration)")
    }
}

struct Shutdown: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Asks the control plane to take this node away, saying why.")

    @OptionGroup var agent: AgentOptions
    @Flag(help: "Because it is unhealthy.") var unhealthy = false
    @Flag(help: "Because it has nothing to do.") var idle = false
    @Flag(help: "To be deallocated rather than deleted.") var deallocate = false

    func validate() throws {
        if [unhealthy, idle, deallocate].filter({ $0 }).count > 1 { throw ValidationError("give at most one of --unhealthy, --idle, --deallocate") }
    }

    func run() async throws {
        let reason: NodeShutdownRequest.Reason = unhealthy ? .unhealthy : idle ? .idle : deallocate ? .deallocate : .requested
        _ = try await agent.client.raw("POST", "/v1/agent/shutdown", body: try JSONEncoder().encode(["Reason": reason.rawValue]))
        print("Shutdown requested (\(reason.rawValue))")
    }
}

struct RunOnShutdown: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run-on-shutdown", abstract: "Registers a script that the agent runs, after those registered before, when it stops for good.")

    @OptionGroup var agent: AgentOptions
    @Argument(help: "The executable to run.") var script: String

    func run() async throws {
        let path = URL(fileURLWithPath: script).standardizedFileURL.path
        let (answer, _) = try await agent.client.send(
            "POST", "/v1/agent/run-on-shutdown", body: try JSONEncoder().encode(["Script": path]), as: [String: [String]].self)
        print("Registered; on shutdown these run in order:")
        for script in answer["Scripts"] ?? [] { print("  \(script)") }
    }
}

struct Send: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publishes a message under node.<this node>.send.ROUTING_KEY, as `jetpack send` does, for plugins bound to it.")

    @OptionGroup var agent: AgentOptions
    @Argument(help: "Words separated by dots, without * or #.") var routingKey: String
    @Argument(help: "The message body.") var body: String?
    @Option(name: .customLong("file"), help: "Read the body from this file instead.") var file: String?

    func validate() throws {
        if (body == nil) == (file == nil) { throw ValidationError("give the body, or --file with it (not both)") }
    }

    func run() async throws {
        let text: String
        if let file {
            guard let contents = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw APIClient.Failure(description: "cannot read \(file) as UTF-8 text")
            }
            text = contents
        } else {
            text = body ?? ""
        }
        let (answer, _) = try await agent.client.send(
            "POST", "/v1/agent/send", body: try JSONEncoder().encode(["RoutingKey": routingKey, "Body": text]), as: [String: String].self)
        print("Sent on \(answer["RoutingKey"] ?? routingKey)")
    }
}

struct Config: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Prints this node's facts (as fingerprinted) and the settings it runs with, by dotted key.",
        discussion:
            "Keys: node.id, node.name, node.datacenter, node.class, node.resources.cpu, node.attributes.<name>, node.meta.<name>, cluster.<setting>, …"
    )

    @OptionGroup var agent: AgentOptions
    @Argument(help: "A key such as node.attributes.cpu.numcores; every key when left out.") var key: String?
    @Flag(name: .customLong("json"), help: "Print JSON.") var json = false

    func run() async throws {
        let (answer, _) = try await agent.client.send("GET", "/v1/agent/self", body: nil, as: AgentSelf.self)
        let values = Self.flatten(answer)
        if let key {
            guard let value = values[key] else {
                throw APIClient.Failure(description: "no key '\(key)'; `drover config` lists them all")
            }
            return print(json ? String(decoding: try JSONEncoder().encode(value), as: UTF8.self) : value)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            return print(String(decoding: try encoder.encode(values), as: UTF8.self))
        }
        for (key, value) in values.sorted(by: { $0.key < $1.key }) { print("\(key) = \(value)") }
    }

    struct AgentSelf: Decodable {
        var node: Node
        var settings: [String: String]
        enum CodingKeys: String, CodingKey {
            case node = "Node"
            case settings = "Settings"
        }
    }

    static func flatten(_ answer: AgentSelf) -> [String: String] {
        let node = answer.node
        var values = [
            "node.id": node.id, "node.name": node.name, "node.datacenter": node.datacenter, "node.class": node.nodeClass,
            "node.resources.cpu": String(node.resources.cpu), "node.resources.memory_mb": String(node.resources.memoryMB),
            "node.resources.disk_mb": String(node.resources.diskMB),
        ]
        for (name, value) in node.attributes { values["node.attributes.\(name)"] = value }
        for (name, value) in node.meta { values["node.meta.\(name)"] = value }
        for (name, driver) in node.drivers { values["node.drivers.\(name)"] = driver.detected ? "detected" : "not detected" }
        for (name, value) in answer.settings { values["cluster.\(name)"] = value }
        return values
    }
}

struct Users: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Lists the users the cluster manages on this node (set with PUT /v1/user/<name>).")

    @OptionGroup var agent: AgentOptions
    @Flag(name: .customLong("json"), help: "Print JSON.") var json = false

    func run() async throws {
        let client = try agent.client
        if json { return print(try await client.get("/v1/agent/users", as: RawJSON.self).0.pretty) }
        let (users, _) = try await client.get("/v1/agent/users", as: [ClusterUser].self)
        if users.isEmpty { return print("No users managed on this node") }
        print(
            table(
                ["Name", "UID", "Groups", "Shell", "Sudo", "SSH keys"],
                users.map {
                    [
                        $0.name, $0.uid.map(String.init) ?? "-", $0.groups.joined(separator: ","), $0.shell ?? "-", String($0.sudo),
                        String($0.sshKeys.count),
                    ]
                }))
    }
}

struct ReportIssue: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report-issue",
        abstract: "Archives this node's agent logs and state into a zip and says where it is; uploads it to the control plane unless --no-upload.")

    @OptionGroup var agent: AgentOptions
    @OptionGroup var api: AddressOptions
    @Argument(help: "Where to write the zip (a file, or a directory for it), under the agent's data directory; its issues/ when left out.") var path:
        String?
    @Flag(help: "Keep the archive on this node only.") var noUpload = false

    func run() async throws {
        var body: [String: String] = [:]
        body["Path"] = path.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        var request = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(body)) as? [String: Any] ?? [:]
        request["Upload"] = !noUpload
        let local = try agent.client
        let (answer, _) = try await local.send(
            "POST", "/v1/agent/report-issue", body: try JSONSerialization.data(withJSONObject: request), as: Answer.self)
        print("Archive of \(answer.files.count) file(s) written to \(answer.path)")
        if noUpload { return }
        // A joined node uploads it as itself; otherwise this command does, with its ACL token.
        if let id = answer.uploadedID {
            return print(
                "Uploaded as \(id); fetch it with: curl -H \"X-Nomad-Token: $DROVER_TOKEN\" -o report.zip \(api.address)/v1/issue-report/\(id)")
        }
        guard let data = FileManager.default.contents(atPath: answer.path) else {
            throw APIClient.Failure(description: "cannot read \(answer.path) to upload it; run this on the node, or use --no-upload")
        }
        let (node, _) = try await local.get("/v1/agent/self", as: Config.AgentSelf.self)
        let (uploaded, _) = try await api.client.send(
            "POST", "/v1/node/\(node.node.id)/issue-report", body: data, as: [String: RawJSON].self)
        let id = (uploaded["ID"]?.value as? String) ?? "?"
        print("Uploaded as \(id); fetch it with: curl -H \"X-Nomad-Token: $DROVER_TOKEN\" -o report.zip \(api.address)/v1/issue-report/\(id)")
    }

    struct Answer: Decodable {
        var path: String
        var files: [String]
        var uploadedID: String?
        enum CodingKeys: String, CodingKey {
            case path = "Path"
            case files = "Files"
            case uploadedID = "UploadedID"
        }
    }
}
