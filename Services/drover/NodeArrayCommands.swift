import ArgumentParser
import DroverModel
import Foundation

struct NodeArrayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nodearray", abstract: "Node arrays: machines of one type that the autoscaler adds and takes away through a provider.",
        subcommands: [NodeArrayCreate.self, NodeArrayList.self, NodeArrayStatusCommand.self, NodeArrayDelete.self])
}

struct NodeArrayCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Defines a node array, or redefines it (running machines are never taken away by a new limit alone).")

    @OptionGroup var api: AddressOptions
    @Argument(help: "The array's name; its machines are named <name>-<n>.") var name: String
    @Option(help: "The provider plugin that makes its machines.") var provider = "local"
    @Option(help: "Cores per machine.") var cores: Int
    @Option(name: .customLong("cpu-per-core"), help: "MHz per core (what the node offers is cores × this).") var cpuPerCore = 1000
    @Option(name: .customLong("memory-mb"), help: "Memory per machine, in MB.") var memoryMB: Int
    @Option(name: .customLong("disk-mb"), help: "Disk per machine, in MB (0: not constrained).") var diskMB = 0
    @Option(help: "GPUs per machine.") var gpus = 0
    @Option(name: .customLong("attribute"), help: "An attribute its nodes report, KEY=VALUE (repeatable).") var attributes: [String] = []
    @Option(name: .customLong("node-class"), help: "Its nodes' class (the array's name by default).") var nodeClass = ""
    @Option(name: .customLong("min"), help: "Machines it always has.") var minCount = 0
    @Option(name: .customLong("max"), help: "Machines it may have at most.") var maxCount: Int
    @Option(name: .customLong("max-cores"), help: "Cores it may have at most.") var maxCores: Int?
    @Option(name: .customLong("idle-after"), help: "How long a node that ran work may sit idle, as 30s or 30m.") var idleAfter = "30m"
    @Option(name: .customLong("idle-before"), help: "How long a node that never ran work may sit idle.") var idleBefore = "30m"
    @Option(name: .customLong("boot-timeout"), help: "How long a machine has to become a ready node.") var bootTimeout = "30m"

    func run() async throws {
        var parsed: [String: String] = [:]
        for attribute in attributes {
            let parts = attribute.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { throw ValidationError("--attribute: '\(attribute)' is not KEY=VALUE") }
            parsed[String(parts[0])] = String(parts[1])
        }
        let machine = MachineType(
            cores: cores, cpuPerCore: cpuPerCore, memoryMB: memoryMB, diskMB: diskMB, gpus: gpus, attributes: parsed, nodeClass: nodeClass)
        let array = NodeArray(
            name: name, machine: machine, minCount: minCount, maxCount: maxCount, maxCoreCount: maxCores,
            idleTimeAfterJobs: try Self.seconds(idleAfter, "--idle-after"), idleTimeBeforeJobs: try Self.seconds(idleBefore, "--idle-before"),
            bootTimeout: try Self.seconds(bootTimeout, "--boot-timeout"), provider: provider)
        _ = try await api.client.send(
            "PUT", "/v1/nodearray/\(pathComponent(name))", body: try JSONEncoder().encode(array), as: [String: Int64].self)
        print("Node array \(name): \(minCount)-\(maxCount) machines of \(cores) cores and \(memoryMB) MB, provider \(provider)")
    }

    static func seconds(_ text: String, _ flag: String) throws -> Int64 {
        guard let duration = GoDuration.parse(text), duration >= .seconds(1) else {
            throw ValidationError("\(flag): '\(text)' is not a duration of a second or more, such as 30s or 30m")
        }
        return duration.components.seconds
    }
}

struct NodeArrayList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Lists node arrays with their machines by state.")

    @OptionGroup var api: AddressOptions
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the API's answer as JSON.") var json = false

    func run() async throws {
        if json { return print(try await api.client.get("/v1/nodearrays", as: RawJSON.self).0.pretty) }
        let (arrays, _) = try await api.client.get("/v1/nodearrays", as: [NodeArrayStatus].self)
        if arrays.isEmpty { return print("No node arrays") }
        print(
            table(
                ["Name", "Provider", "Machine", "Min", "Max", "Target", "Ready", "Coming", "Going"],
                arrays.map { status in
                    let array = status.array
                    let count = { (states: [MachineState]) in String(states.reduce(0) { $0 + (status.counts[$1.rawValue] ?? 0) }) }
                    return [
                        array.name, array.provider, "\(array.machine.cores)c/\(array.machine.memoryMB)MB", String(array.minCount),
                        String(array.maxCount),
                        status.lastDecision.map { String($0.target) } ?? "-", count([.ready]), count([.acquiring, .preparing]), count([.terminating]),
                    ]
                }))
    }
}

struct NodeArrayStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Shows arrays' targets, the demand behind them, machines by state and the last decision with its reason.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "One array; all when left out.") var name: String?
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the API's answer as JSON.") var json = false

    func run() async throws {
        let path = name.map { "/v1/nodearray/\(pathComponent($0))" } ?? "/v1/nodearrays"
        if json { return print(try await api.client.get(path, as: RawJSON.self).0.pretty) }
        let arrays: [NodeArrayStatus] =
            if name != nil { [try await api.client.get(path, as: NodeArrayStatus.self).0] } else {
                try await api.client.get(path, as: [NodeArrayStatus].self).0
            }
        if arrays.isEmpty { return print("No node arrays") }
        print(arrays.map(Self.describe).joined(separator: "\n\n"))
    }

    static func describe(_ status: NodeArrayStatus) -> String {
        let array = status.array
        var lines = [
            "Name          = \(array.name)",
            "Provider      = \(array.provider)",
            "Machine type  = \(array.machine.cores) cores, \(array.machine.memoryMB) MB",
            "Limits        = \(array.minCount)-\(array.maxCount) machines" + (array.maxCoreCount.map { ", at most \($0) cores" } ?? ""),
            "Idle timeout  = \(array.idleTimeAfterJobs) s after jobs, \(array.idleTimeBeforeJobs) s before",
            "Target        = " + (status.target.map { $0.count.map { "\($0) machine(s)" } ?? "\($0.coreCount ?? 0) core(s)" } ?? "none"),
        ]
        if let decision = status.lastDecision {
            lines.append("Decision      = \(decision.target) machine(s): \(decision.reason)")
            lines.append("Demand        = \(decision.demandPlacements) placement(s) filling \(decision.demandMachines) machine(s)")
        }
        if let backoff = status.backoff { lines.append("Provider      = backing off after \(backoff.failures) failure(s): \(backoff.reason)") }
        lines.append("")
        lines.append(
            status.machines.isEmpty
                ? "No machines"
                : table(
                    ["Machine", "State", "Node", "Allocations"],
                    status.machines.map { [$0.name, $0.state.rawValue, $0.nodeID ?? "-", String($0.runningAllocations)] }))
        return lines.joined(separator: "\n")
    }
}

struct NodeArrayDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Deletes a node array; its machines are taken away.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "The array's name.") var name: String

    func run() async throws {
        _ = try await api.client.send("DELETE", "/v1/nodearray/\(pathComponent(name))", body: nil, as: [String: Int64].self)
        print("Node array \(name) deleted; its machines are being taken away")
    }
}

/// `jetpack autoscale`: sets how many cores or machines an array should have, for a while.
struct AutoscaleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "autoscale",
        abstract: "Sets node arrays' targets, as jetpack autoscale does: --corecount N, --instancecount N, or --file targets.json.",
        discussion: """
            A target merges into those in force and holds for --expiration (5 minutes) after the last request. The autoscaler
            keeps each array at the larger of its target and what pending work needs, within the array's limits.
            The file is jetpack's: [{"Name": "execute", "TargetCoreCount": 100}, {"Name": "gpu", "TargetCount": 2}].
            """)

    @OptionGroup var api: AddressOptions
    @Option(name: .customLong("corecount"), help: "Cores the array should have.") var coreCount: Int?
    @Option(name: .customLong("instancecount"), help: "Machines the array should have.") var instanceCount: Int?
    @Option(help: "The node array.") var name = "execute"
    @Option(help: "A JSON file of targets, as jetpack autoscale --file reads.") var file: String?
    @Option(help: "How long the targets hold, as 10m or 1h.") var expiration: String?

    func validate() throws {
        let given = [coreCount != nil, instanceCount != nil, file != nil].filter { $0 }.count
        guard given == 1 else { throw ValidationError("give one of --corecount, --instancecount or --file") }
    }

    func run() async throws {
        var requests: [TargetRequest]
        if let file {
            let data: Data
            do { data = try Data(contentsOf: URL(fileURLWithPath: file)) } catch {
                throw ValidationError("--file: cannot read \(file): \(error.localizedDescription)")
            }
            do { requests = try JSONDecoder().decode([TargetRequest].self, from: data) } catch {
                throw ValidationError(
                    "--file: \(file) is not a list of targets such as [{\"Name\": \"execute\", \"TargetCoreCount\": 100}] (\(error))")
            }
        } else {
            requests = [TargetRequest(array: name, coreCount: coreCount, count: instanceCount)]
        }
        if let expiration {
            requests = requests.map {
                var request = $0; request.expiration = request.expiration ?? expiration; return request
            }
        }
        let (targets, _) = try await api.client.send("POST", "/v1/autoscale", body: try JSONEncoder().encode(requests), as: [ScaleTarget].self)
        for target in targets {
            let what = target.count.map { "\($0) machine(s)" } ?? "\(target.coreCount ?? 0) core(s)"
            print("\(target.array): \(what) until \(Date(timeIntervalSince1970: Double(target.expiresAt) / 1e9))")
        }
    }
}
