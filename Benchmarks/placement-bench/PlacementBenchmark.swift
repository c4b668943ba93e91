import ArgumentParser
import DroverModel
import DroverScheduling
import Foundation

/// Measures the pure placement core: `--jobs` jobs of one group of `--tasks` allocations each,
/// planned one after another onto `--nodes` simulated nodes, each plan's placements added to the
/// cluster's usage before the next. Only `JobScheduler.plan` is timed.
@main
struct PlacementBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "placement-bench", abstract: "Placements per second of the scheduling core, on one core.")

    @Option(help: "Jobs to place, one evaluation each.") var jobs = 1000
    @Option(help: "Allocations per job (the group's Count).") var tasks = 1000
    @Option(help: "Simulated nodes.") var nodes = 5000
    @Option(help: "binpack or spread.") var algorithm: String = "binpack"
    @Option(help: "Job type: service or batch (batch looks at 2 nodes per placement, service at log2(nodes)).") var type: String = "service"
    @Flag(help: "Instead: what one scheduler round of a single small job costs, snapshot included, on 10 to --nodes nodes.")
    var roundCost = false

    func run() throws {
        guard let algorithm = SchedulerConfiguration.Algorithm(rawValue: algorithm) else {
            throw ValidationError("--algorithm: '\(algorithm)' is not binpack or spread")
        }
        guard let jobType = JobType(rawValue: type), jobType != .system else { throw ValidationError("--type: service or batch") }
        guard nodes > 0, jobs > 0, tasks > 0 else { throw ValidationError("--nodes, --jobs and --tasks must be at least 1") }
        if roundCost { return measureRounds(jobType: jobType, algorithm: algorithm) }
        let perNode = (jobs * tasks + nodes - 1) / nodes
        let cluster = (0..<nodes).map { index in
            Node(
                id: "node-\(index)", name: "node-\(index)", datacenter: "dc\(index % 3 + 1)",
                drivers: ["raw_exec": DriverInfo(detected: true, healthy: true)],
                attributes: ["kernel.name": "linux", "cpu.numcores": "32"],
                resources: Resources(cpu: perNode * 100 + 1000, memoryMB: perNode * 64 + 1024, diskMB: 100_000))
        }
        var snapshot = ClusterSnapshot(
            nodes: cluster, used: Array(repeating: Resources(cpu: 0, memoryMB: 0, diskMB: 0), count: nodes), jobAllocations: [])
        var random = SplitMix64(seed: 42)
        var placed = 0
        var failed = 0
        var elapsed = Duration.zero
        let clock = ContinuousClock()
        for number in 0..<jobs {
            var job = Job(
                id: "job-\(number)", type: jobType,
                taskGroups: [
                    TaskGroup(
                        name: "work", count: tasks,
                        tasks: [JobTask(name: "run", command: "/bin/true", resources: Resources(cpu: 100, memoryMB: 64))])
                ])
            job.constraints = [Constraint("${attr.kernel.name}", "=", "linux")]
            job = job.canonicalized()
            var plan: Plan!
            elapsed += clock.measure {
                plan = JobScheduler.plan(
                    evalID: "eval-\(number)", jobID: job.id, job: job, snapshot: snapshot, configuration: .init(algorithm: algorithm),
                    now: 0, random: &random)
            }
            for placement in plan.placements {
                snapshot.used[placement.nodeIndex] = snapshot.used[placement.nodeIndex] + placement.resources
            }
            placed += plan.placements.count
            failed += plan.queued.values.reduce(0, +)
        }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("placement-bench: \(jobs) jobs x \(tasks) allocations on \(nodes) nodes (\(type), \(algorithm.rawValue))")
        print("  placed \(placed), unplaced \(failed), in \(String(format: "%.3f", seconds)) s of planning")
        print("  \(Int(Double(placed) / seconds)) placements/s")
    }

    /// The median time of one round as the scheduler plans it, for one evaluation of a job of one
    /// allocation: the snapshot built from the nodes as read, then `EvaluationRound.plan`.
    func measureRounds(jobType: JobType, algorithm: SchedulerConfiguration.Algorithm) {
        var job = Job(
            id: "job", type: jobType,
            taskGroups: [TaskGroup(name: "work", tasks: [JobTask(name: "run", command: "/bin/true", resources: Resources(cpu: 100, memoryMB: 64))])])
        job = job.canonicalized()
        let eval = Evaluation(id: "eval", priority: 50, type: jobType, triggeredBy: Evaluation.Trigger.jobRegister, jobID: job.id)
        let clock = ContinuousClock()
        var random = SplitMix64(seed: 42)
        print("placement-bench: one round of one evaluation of a job of one allocation (\(type), \(algorithm.rawValue)), median of 201")
        for count in [10, 100, 1000, 5000, 20000] where count <= max(nodes, 10) {
            let cluster = (0..<count).map { index in
                Node(
                    id: "node-\(index)", name: "node-\(index)", datacenter: "dc\(index % 3 + 1)",
                    drivers: ["raw_exec": DriverInfo(detected: true, healthy: true)], attributes: ["kernel.name": "linux", "cpu.numcores": "32"],
                    resources: Resources(cpu: 32000, memoryMB: 65536, diskMB: 100_000))
            }
            let usage = Dictionary(uniqueKeysWithValues: cluster.map { ($0.id, Resources(cpu: 100, memoryMB: 64)) })
            var times: [Duration] = []
            for _ in 0..<201 {
                times.append(
                    clock.measure {
                        let snapshot = ClusterSnapshot(nodes: cluster, usage: usage, jobAllocations: [])
                        _ = EvaluationRound.plan(
                            [eval], jobs: [job.key: job], allocations: [:], snapshot: snapshot, configuration: .init(algorithm: algorithm), now: 0,
                            random: &random)
                    })
            }
            let median = times.sorted()[times.count / 2]
            print(
                String(format: "  %5d nodes: %8.1f µs", count, Double(median.components.attoseconds) / 1e12 + Double(median.components.seconds) * 1e6)
            )
        }
    }
}
