import ArgumentParser
import DroverModel
import Foundation

struct AllocLogs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs", abstract: "Prints a task's stdout (or stderr), kept by the control plane even after its node is gone.")

    @OptionGroup var api: AddressOptions
    @Flag(name: .customLong("stderr", withSingleDash: true), help: "stderr instead of stdout.") var stderr = false
    @Flag(name: .customShort("f"), help: "Follow: keep printing as output arrives, until the allocation has finished.") var follow = false
    @Flag(name: .customLong("tail", withSingleDash: true), help: "Only the end: the last -n lines, or -c bytes.") var tail = false
    @Option(name: .customShort("n"), help: "With -tail: how many lines.") var lines = 10
    @Option(name: .customShort("c"), help: "With -tail: how many bytes, instead of lines.") var bytes: Int64?
    @Argument(help: "The allocation id, or a unique prefix of it.") var alloc: String
    @Argument(help: "The task; may be left out when the allocation has one task.") var task: String?

    func validate() throws {
        if lines < 0 { throw ValidationError("-n: must be 0 or more lines") }
        if let bytes, bytes < 0 { throw ValidationError("-c: must be 0 or more bytes") }
    }

    func run() async throws {
        let client = api.client
        let id = try await resolve(alloc, kind: "allocation", list: "/v1/allocations", client: client)
        var query = "type=\(stderr ? "stderr" : "stdout")&plain=true"
        if let task { query += "&task=\(task.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? task)" }
        let path = "/v1/client/fs/logs/\(id)?\(query)"
        var offset: Int64 = 0
        if tail {
            let window = bytes ?? max(Int64(lines) * 512, 65_536)
            let (data, http) = try await client.raw("GET", "\(path)&origin=end&offset=\(window)")
            FileHandle.standardOutput.write(bytes == nil ? Self.lastLines(data, lines) : data)
            // The answer says where its bytes start; following goes on from their end.
            offset = (Int64(http?.value(forHTTPHeaderField: "X-Drover-Log-Offset") ?? "") ?? 0) + Int64(data.count)
            guard follow else { return }
        }
        var quiet = 0
        while true {
            let (data, _) = try await client.raw("GET", "\(path)&offset=\(offset)")
            FileHandle.standardOutput.write(data)
            offset += Int64(data.count)
            guard follow else { return }
            if !data.isEmpty {
                quiet = 0
                continue
            }
            let (allocation, _) = try await client.get("/v1/allocation/\(id)", as: Allocation.self)
            quiet = allocation.clientStatus.isTerminal ? quiet + 1 : 0
            if quiet > 4 { return }
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    static func lastLines(_ data: Data, _ count: Int) -> Data {
        guard count > 0 else { return Data() }
        var newlines = 0
        var index = data.endIndex
        // A final newline ends the last line; it does not start another.
        if index > data.startIndex, data[data.index(before: index)] == UInt8(ascii: "\n") { index = data.index(before: index) }
        while index > data.startIndex {
            let previous = data.index(before: index)
            if data[previous] == UInt8(ascii: "\n") {
                newlines += 1
                if newlines == count { return data[index...] }
            }
            index = previous
        }
        return data
    }
}

struct Log: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sends a message from this node to the cluster's event log, as `jetpack log` does.",
        discussion: "Shown by `drover events` and GET /v1/events; by default only medium and high priorities are listed there.")

    @OptionGroup var agent: AgentOptions
    @Argument(help: "The message.") var message: String
    @Option(help: "info, warn or error.") var level = "info"
    @Option(help: "low, medium or high; an error is high unless given.") var priority: String?

    func validate() throws {
        if NodeLogMessage.Level(rawValue: level) == nil { throw ValidationError("--level: '\(level)' is not info, warn or error") }
        if let priority, NodeLogMessage.Priority(rawValue: priority) == nil {
            throw ValidationError("--priority: '\(priority)' is not low, medium or high")
        }
    }

    func run() async throws {
        var body: [String: String] = ["Message": message, "Level": level]
        body["Priority"] = priority
        _ = try await agent.client.raw("POST", "/v1/agent/log", body: try JSONEncoder().encode(body))
    }
}

struct Events: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Lists the cluster's events: node messages and what the control plane did (medium and high priority by default).")

    @OptionGroup var api: AddressOptions
    @Option(name: .customLong("node", withSingleDash: true), help: "Only this node's.") var node: String?
    @Option(name: .customLong("job", withSingleDash: true), help: "Only this job's.") var job: String?
    @Option(name: .customLong("level", withSingleDash: true), help: "Levels, comma-separated: info,warn,error.") var level: String?
    @Option(name: .customLong("priority", withSingleDash: true), help: "Priorities, comma-separated, or all.") var priority: String?
    @Option(name: .customLong("since", withSingleDash: true), help: "From this ISO 8601 time on.") var since: String?
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the API's answer as JSON.") var json = false
    @Flag(
        name: .customShort("f"),
        help: "Follow the event stream (GET /v1/event/stream): every change of the cluster's state as it happens, until interrupted.")
    var follow = false
    @Option(
        name: .customLong("topic", withSingleDash: true), help: "With -f: Topic or Topic:Key, such as Job:web or Node (repeatable; default: all).")
    var topics: [String] = []
    @Option(name: .customLong("index", withSingleDash: true), help: "With -f: start from this index (0: every event still kept).") var index: Int64?

    func run() async throws {
        if follow { return try await followStream() }
        var items: [URLQueryItem] = []
        for (name, value) in [("node", node), ("job", job), ("level", level), ("priority", priority), ("since", since)] {
            if let value { items.append(URLQueryItem(name: name, value: value)) }
        }
        var components = URLComponents()
        components.queryItems = items.isEmpty ? nil : items
        let path = "/v1/events\(components.string ?? "")"
        let client = api.client
        if json { return print(try await client.get(path, as: RawJSON.self).0.pretty) }
        let (events, _) = try await client.get(path, as: [ClusterEvent].self)
        if events.isEmpty { return print("No events") }
        print(
            table(
                ["Time", "Level", "Priority", "Node", "Type", "Message"],
                events.map {
                    [
                        $0.time.formatted(Date.ISO8601FormatStyle()), $0.level.rawValue, $0.priority.rawValue, $0.nodeID.map(short) ?? "-", $0.type,
                        $0.message,
                    ]
                }))
    }
}

extension Events {
    /// Prints each event of the stream as it comes: its index, topic, type and key (or, with
    /// `-json`, each frame as the server sent it).
    func followStream() async throws {
        var items = topics.map { URLQueryItem(name: "topic", value: $0) }
        if let index { items.append(URLQueryItem(name: "index", value: String(index))) }
        var components = URLComponents()
        components.queryItems = items.isEmpty ? nil : items
        // Written unbuffered: each event shows as it comes, also into a pipe.
        let output = FileHandle.standardOutput
        try await api.client.streamLines("/v1/event/stream\(components.string ?? "")") { line in
            if json {
                if line != "{}" { output.write(Data((line + "\n").utf8)) }
                return
            }
            guard let frame = try? JSONDecoder().decode(EventStreamFrame.self, from: Data(line.utf8)) else { return }
            for event in frame.events ?? [] {
                output.write(Data("\(event.index)  \(event.topic)  \(event.type)  \(event.key)\n".utf8))
            }
        }
    }
}

/// Where this node's agent answers, for the commands run on a node, and the agent's token:
/// `--agent-token`, else `DROVER_AGENT_TOKEN`, else `agent.token` in the agent's data directory
/// (readable by the agent's user and root only). Without `--data-dir` or `DROVER_NODE_DATA_DIR`,
/// the token is looked for where an agent keeps it by default, then in the agent directories of
/// a cluster `deploy/local/up` runs here (`.drover/agents/<n>`, the agent whose port `--agent`
/// names).
struct AgentOptions: ParsableArguments {
    @Option(name: .customLong("agent"), help: "The local node agent's address (env DROVER_AGENT_ADDR).")
    var agent: String = ProcessInfo.processInfo.environment["DROVER_AGENT_ADDR"] ?? "http://127.0.0.1:4651"

    @Option(
        name: .customLong("data-dir"),
        help:
            "The local agent's data directory, where its agent.token is (env DROVER_NODE_DATA_DIR; default: where the agent keeps it, or a local cluster's agent)."
    )
    var dataDir: String? = ProcessInfo.processInfo.environment["DROVER_NODE_DATA_DIR"].flatMap { $0.isEmpty ? nil : $0 }

    @Option(name: .customLong("agent-token"), help: "The agent's token, instead of reading it from the data directory (env DROVER_AGENT_TOKEN).")
    var agentToken: String?

    /// Where the agent's token may be, in the order looked.
    var tokenFiles: [URL] {
        if let dataDir { return [URL(fileURLWithPath: dataDir).appendingPathComponent("agent.token")] }
        var directories = [NodeDataDirectory.standard()]
        // deploy/local/up's agents: agent n answers on 4650 + n.
        let number = URL(string: agent).flatMap { url in url.port.map { $0 - 4650 } }.flatMap { $0 > 0 ? $0 : nil } ?? 1
        directories += LocalCluster.directories().map { $0.appendingPathComponent("agents/\(number)").path }
        return directories.map { URL(fileURLWithPath: $0).appendingPathComponent("agent.token") }
    }

    /// A client of the agent's routes, sending its token.
    var client: APIClient {
        get throws {
            var token = agentToken ?? ProcessInfo.processInfo.environment["DROVER_AGENT_TOKEN"]
            if token?.isEmpty ?? true {
                var tried: [String] = []
                for file in tokenFiles {
                    do {
                        token = try String(contentsOf: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
                        break
                    } catch {
                        tried.append("\(file.path) (\(FileManager.default.fileExists(atPath: file.path) ? "not readable" : "not there"))")
                    }
                }
                guard let found = token, !found.isEmpty else {
                    throw APIClient.Failure(
                        description: "cannot read the agent's token; looked in:\n  " + tried.joined(separator: "\n  ") + "\n"
                            + "Run this as the agent's user or root, point --data-dir (DROVER_NODE_DATA_DIR) at the agent's data directory, "
                            + "or pass --agent-token.")
                }
            }
            return APIClient(
                address: agent, headers: ["X-Drover-Agent-Token": token ?? ""],
                caCertificate: ProcessInfo.processInfo.environment["DROVER_CACERT"])
        }
    }
}
