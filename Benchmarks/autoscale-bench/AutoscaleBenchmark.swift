import ArgumentParser
import DroverAutoscaling
import DroverControlPlane
import DroverModel
import DroverStorage
import Foundation
import Logging
import PostgresNIO

/// Two figures of the autoscaler:
///
/// - `decide`: one decision of the pure core (``Autoscale/decide(_:policy:)``) with `--machines`
///   machines and `--placements` pending placements (of `--shapes` kinds, some constrained to
///   one array), over `--decisions` runs;
/// - `latency` (with `--postgres-url`): from a blocked placement committed to the provider
///   request written, through the autoscaler's loop as it runs in production (rounds wake on the
///   cluster's index), over `--trials` jobs, each blocked on an array of its own.
///
/// Prints `RESULT` lines with the median and p99, and the p99 latency against Kubernetes
/// cluster-autoscaler's 30 s scale-up SLO as a ratio.
@main
struct AutoscaleBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "autoscale-bench", abstract: "Time of an autoscale decision, and from a blocked placement to the provider request.")

    @Option(help: "Machines in the decision's state.") var machines = 10_000
    @Option(help: "Pending placements in the decision's state.") var placements = 100_000
    @Option(help: "Kinds of placement (resources and constraints).") var shapes = 1_000
    @Option(help: "Node arrays.") var arrays = 8
    @Option(help: "Decisions to time.") var decisions = 20
    @Option(help: "A PostgreSQL URL whose user may create databases: also measure the latency.") var postgresURL: String?
    @Option(help: "Blocked jobs to time the latency of.") var trials = 50

    func validate() throws {
        guard machines >= 0, placements >= 0, shapes > 0, arrays > 0, decisions > 0, trials > 0 else {
            throw ValidationError("counts must be positive")
        }
    }

    func run() async throws {
        try measureDecisions()
        if let postgresURL { try await measureLatency(postgresURL) }
    }

    func percentile(_ values: [Double], _ p: Double) -> Double {
        let sorted = values.sorted()
        return sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded(.up)))]
    }

    func measureDecisions() throws {
        let second: Int64 = 1_000_000_000
        let now: Int64 = 1_800_000_000 * second
        let definitions = (0..<arrays).map { index in
            NodeArray(
                name: "array\(index)", machine: MachineType(cores: 4 << (index % 4), memoryMB: 16_384 << (index % 4)), maxCount: 100_000,
                idleTimeAfterJobs: 300, idleTimeBeforeJobs: 300, provider: "bench")
        }
        // Machines: most busy, some idle past their time, some coming up.
        let fleet = (0..<machines).map { index in
            let array = "array\(index % arrays)"
            let name = "\(array)-\(index / arrays + 1)"
            switch index % 10 {
            case 0: return Machine(name: name, array: array, state: .acquiring, since: now - second)
            case 1:
                return Machine(
                    name: name, array: array, state: .ready, since: now - 3600 * second, nodeID: "n\(index)", lastWorkAt: now - 900 * second)
            default:
                return Machine(name: name, array: array, state: .ready, since: now - 3600 * second, nodeID: "n\(index)", runningAllocations: 2)
            }
        }
        let perShape = max(1, placements / shapes)
        let demand = (0..<shapes).map { index in
            let constraints = index % 5 == 0 ? [Constraint("${meta.nodearray}", "=", "array\(index % arrays)")] : []
            return PendingPlacement(
                job: "job\(index)", group: "g", count: perShape, resources: Resources(cpu: 250 * (1 + index % 16), memoryMB: 256 * (1 + index % 8)),
                constraints: constraints)
        }
        let state = AutoscaleState(arrays: definitions, machines: fleet, demand: demand, now: now)
        var times: [Double] = []
        var actions = 0
        for _ in 0..<decisions {
            let start = ContinuousClock.now
            let plan = Autoscale.decide(state)
            times.append((ContinuousClock.now - start) / .milliseconds(1))
            actions = plan.actions.count
        }
        print(
            "RESULT decide machines=\(machines) placements=\(perShape * shapes) arrays=\(arrays) actions=\(actions) "
                + String(format: "p50_ms=%.1f p99_ms=%.1f", percentile(times, 0.5), percentile(times, 0.99)))
    }

    func measureLatency(_ url: String) async throws {
        var logger = Logger(label: "autoscale-bench")
        logger.logLevel = .error
        let admin = try Database(url: url, maximumConnections: 2, logger: logger)
        let name = "autoscale_bench_\(ProcessInfo.processInfo.processIdentifier)"
        guard var components = URLComponents(string: url) else { throw ValidationError("--postgres-url: not a URL") }
        components.path = "/\(name)"
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { await admin.client.run() }
            defer { group.cancelAll() }
            try await admin.client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"))
            do {
                try await latency(try Database(url: components.string ?? url, logger: logger), logger: logger)
            } catch {
                try? await admin.client.query(PostgresQuery(unsafeSQL: "DROP DATABASE \(name) WITH (FORCE)"))
                throw error
            }
            try await admin.client.query(PostgresQuery(unsafeSQL: "DROP DATABASE \(name) WITH (FORCE)"))
        }
    }

    func latency(_ database: Database, logger: Logger) async throws {
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { await database.client.run() }
            defer { group.cancelAll() }
            try await database.migrate()
            let watcher = IndexWatcher(database: database)
            let service = AutoscaleService(database: database, gateway: "http://127.0.0.1:4646", logger: logger)
            group.addTask { try await watcher.run() }
            group.addTask { try await AutoscaleLoop(service: service, watcher: watcher, interval: .seconds(5), logger: logger).run() }
            let arrays = NodeArrayService(database: database)
            let jobs = JobService(database: database)
            let scheduler = EvaluationService(database: database)
            var times: [Double] = []
            for trial in 0..<trials {
                let array = "bench\(trial)"
                _ = try await arrays.put(
                    NodeArray(name: array, machine: MachineType(cores: 2, memoryMB: 2048), maxCount: 1, provider: "bench"))
                var job = Job(
                    id: "job\(trial)", type: .batch,
                    taskGroups: [
                        TaskGroup(
                            name: "g", count: 1, tasks: [JobTask(name: "t", command: "/bin/true", resources: Resources(cpu: 500, memoryMB: 64))])
                    ])
                job.constraints = [Constraint("${meta.nodearray}", "=", array)]
                let eval = try await jobs.register(job).evalID
                _ = try await scheduler.process(evalID: eval)  // no node: blocked, committed
                let blocked = ContinuousClock.now
                let key = "cluster.provider.\(array).create"
                while true {
                    var found = false
                    for try await _ in try await database.client.query("SELECT 1 FROM drover_outbox WHERE routing_key = \(key)").decode(Int32.self) {
                        found = true
                    }
                    if found { break }
                    guard ContinuousClock.now - blocked < .seconds(60) else { throw ValidationError("no provider request for \(array) within 60 s") }
                    try await Task.sleep(for: .milliseconds(2))
                }
                times.append((ContinuousClock.now - blocked) / .milliseconds(1))
            }
            let p99 = percentile(times, 0.99)
            print(
                "RESULT latency trials=\(trials) "
                    + String(format: "p50_ms=%.1f p99_ms=%.1f cluster_autoscaler_slo_ms=30000 ratio=%.0f", percentile(times, 0.5), p99, 30_000 / p99))
        }
    }
}
