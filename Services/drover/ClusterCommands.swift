import ArgumentParser
import DroverModel
import Foundation

struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node", abstract: "Inspect the cluster's nodes, drain them, and set their eligibility.",
        subcommands: [NodeStatus.self, NodeDrain.self, NodeEligibility.self, NodeEnroll.self, EnrollTokenCommand.self, NodePurge.self])
}

struct NodeStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Lists nodes, or shows one with its allocations.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "A node id; all nodes when left out.") var id: String?
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the API's answer as JSON.") var json = false

    func run() async throws {
        let client = api.client
        guard let id else {
            if json { return print(try await client.get("/v1/nodes", as: RawJSON.self).0.pretty) }
            let (nodes, _) = try await client.get("/v1/nodes", as: [Node].self)
            if nodes.isEmpty { return print("No nodes registered") }
            print(
                table(
                    ["ID", "DC", "Name", "Class", "Drain", "Eligibility", "Status"],
                    nodes.map {
                        [
                            short($0.id), $0.datacenter, $0.name, $0.nodeClass.isEmpty ? "<none>" : $0.nodeClass, String($0.drain),
                            $0.schedulingEligibility.rawValue, $0.status.rawValue,
                        ]
                    }))
            return
        }
        if json { return print(try await client.get("/v1/node/\(id)", as: RawJSON.self).0.pretty) }
        let (node, _) = try await client.get("/v1/node/\(id)", as: Node.self)
        let (allocations, _) = try await client.get("/v1/node/\(id)/allocations", as: [Allocation].self)
        let live = allocations.filter(\.isLive)
        let used = live.reduce(Resources(cpu: 0, memoryMB: 0, diskMB: 0)) { $0 + $1.resources }
        print(
            table(
                ["ID", "Name", "Class", "DC", "Drain", "Eligibility", "Status", "Drivers"],
                [
                    [
                        node.id, node.name, node.nodeClass.isEmpty ? "<none>" : node.nodeClass, node.datacenter, String(node.drain),
                        node.schedulingEligibility.rawValue, node.status.rawValue,
                        node.drivers.filter { $0.value.detected }.keys.sorted().joined(separator: ","),
                    ]
                ]))
        if let health = node.health {
            let failing = health.checks.filter { $0.exitCode == 254 }.map(\.script)
            print("\nHealth      = \(health.healthy ? "healthy" : "unhealthy (\(failing.joined(separator: ", ")))") at \(date(health.checkedAt))")
        }
        if let clusterInit = node.clusterInit {
            print("ClusterInit = \(clusterInit.status.rawValue): \(clusterInit.detail) at \(date(clusterInit.at))")
        }
        if let until = node.keepaliveUntil { print("Keepalive   = until \(until == Int64.max ? "forever" : date(until))") }
        if let termination = node.termination {
            print("Termination = requested (\(termination.reason)) at \(date(termination.requestedAt))")
        }
        print("\nAllocated Resources")
        print(
            table(
                ["CPU", "Memory", "Disk"],
                [
                    [
                        "\(used.cpu)/\(node.resources.cpu) MHz", "\(used.memoryMB)/\(node.resources.memoryMB) MiB",
                        "\(used.diskMB)/\(node.resources.diskMB) MiB",
                    ]
                ]))
        print("\nAllocations")
        print(allocationTable(allocations))
    }
}

struct AllocCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "alloc", abstract: "Inspect allocations and their tasks' output.", subcommands: [AllocStatus.self, AllocLogs.self])
}

struct AllocStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Shows an allocation and the state of each of its tasks.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "The allocation id, or a unique prefix of it.") var id: String
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the API's answer as JSON.") var json = false

    func run() async throws {
        let client = api.client
        let id = try await resolve(self.id, kind: "allocation", list: "/v1/allocations", client: client)
        if json { return print(try await client.get("/v1/allocation/\(id)", as: RawJSON.self).0.pretty) }
        let (allocation, _) = try await client.get("/v1/allocation/\(id)", as: Allocation.self)
        print(
            """
            ID                  = \(allocation.id)
            Eval ID             = \(short(allocation.evalID))
            Name                = \(allocation.name)
            Node ID             = \(short(allocation.nodeID))
            Node Name           = \(allocation.nodeName)
            Job ID              = \(allocation.jobID)
            Job Version         = \(allocation.jobVersion)
            Client Status       = \(allocation.clientStatus.rawValue)
            Client Description  = \(allocation.clientDescription)
            Desired Status      = \(allocation.desiredStatus.rawValue)
            Desired Description = \(allocation.desiredDescription.isEmpty ? "<none>" : allocation.desiredDescription)
            Created             = \(date(allocation.createTime))
            Modified            = \(date(allocation.modifyTime))
            """)
        for (name, state) in (allocation.taskStates ?? [:]).sorted(by: { $0.key < $1.key }) {
            print("\nTask \"\(name)\" is \"\(state.state.rawValue)\"\(state.failed ? " (failed)" : "")")
            print("Restarts = \(state.restarts)   Exit Code = \(state.exitCode.map(String.init) ?? "-")")
            print("Recent Events:")
            print(
                table(
                    ["Time", "Type", "Description"],
                    state.events.suffix(10).reversed().map { [date($0.time), $0.type, $0.displayMessage] }))
        }
    }
}

struct EvalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "eval", abstract: "Inspect evaluations.", subcommands: [EvalStatus.self])
}

struct EvalStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Shows an evaluation and why anything was not placed.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "The evaluation id, or a unique prefix of it.") var id: String
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the API's answer as JSON.") var json = false

    func run() async throws {
        let client = api.client
        let id = try await resolve(self.id, kind: "evaluation", list: "/v1/evaluations", client: client)
        if json { return print(try await client.get("/v1/evaluation/\(id)", as: RawJSON.self).0.pretty) }
        let (eval, _) = try await client.get("/v1/evaluation/\(id)", as: Evaluation.self)
        print(
            """
            ID                 = \(eval.id)
            Status             = \(eval.status.rawValue)
            Status Description = \(eval.statusDescription.isEmpty ? "<none>" : eval.statusDescription)
            Type               = \(eval.type.rawValue)
            TriggeredBy        = \(eval.triggeredBy)
            Job ID             = \(eval.jobID)
            Priority           = \(eval.priority)
            Placement Failures = \(!(eval.failedTGAllocs ?? [:]).isEmpty)
            Blocked Eval       = \(eval.blockedEval.map(short) ?? "<none>")
            """)
        if let failed = eval.failedTGAllocs, !failed.isEmpty {
            print("\nFailed Placements")
            printFailures(failed)
        }
    }
}

/// A full id from a unique prefix, as Nomad's CLI accepts.
func resolve(_ prefix: String, kind: String, list path: String, client: APIClient) async throws -> String {
    if prefix.count == 36 { return prefix }
    let (matches, _) = try await client.get("\(path)?prefix=\(prefix)", as: [Identified].self)
    switch matches.count {
    case 1: return matches[0].id
    case 0: throw APIClient.Failure(description: "no \(kind) with id or prefix '\(prefix)'; list them with the status command of its kind")
    default: throw APIClient.Failure(description: "'\(prefix)' matches \(matches.count) \(kind)s; give more of the id")
    }
}

struct Identified: Decodable {
    var id: String
    enum CodingKeys: String, CodingKey { case id = "ID" }
}
