import DroverModel
import DroverScheduling

/// In-memory cluster state that evaluations are planned against and plans applied to, as
/// Nomad's scheduler tests do with their `Harness`: upsert nodes and jobs, process an
/// evaluation, look at the plan and the state after it.
struct SchedulerHarness {
    var nodes: [Node] = []
    var jobs: [String: Job] = [:]
    var allocations: [Allocation] = []
    var plans: [Plan] = []
    var configuration = SchedulerConfiguration()
    var now: Int64 = 1_000_000_000
    var random = SplitMix64(seed: 7)
    private var nextIndex: Int64 = 1

    mutating func upsert(_ node: Node) {
        nodes.removeAll { $0.id == node.id }
        nodes.append(node)
    }

    mutating func register(_ job: Job) { jobs[job.id] = job.canonicalized() }

    /// Plans one evaluation of `jobID` and applies the plan: new allocations, stops.
    @discardableResult
    mutating func process(_ jobID: String) -> Plan {
        let job = jobs[jobID]
        var usage: [String: Resources] = [:]
        for allocation in allocations where allocation.isLive {
            usage[allocation.nodeID] = (usage[allocation.nodeID] ?? Resources(cpu: 0, memoryMB: 0, diskMB: 0)) + allocation.resources
        }
        let snapshot = ClusterSnapshot(nodes: nodes, usage: usage, jobAllocations: allocations.filter { $0.jobID == jobID })
        let plan = JobScheduler.plan(
            evalID: "eval-\(plans.count)", jobID: jobID, job: job, snapshot: snapshot, configuration: configuration, now: now, random: &random)
        for stop in plan.stops {
            guard let index = allocations.firstIndex(where: { $0.id == stop.allocationID }) else { continue }
            allocations[index].desiredStatus = .stop
            if stop.markLost { allocations[index].clientStatus = .lost }
        }
        for placement in plan.placements {
            var allocation = Allocation(
                id: "alloc-\(nextIndex)", evalID: plan.evalID, name: placement.name, nodeID: placement.nodeID, nodeName: placement.nodeName,
                jobID: jobID, jobVersion: 0, taskGroup: placement.taskGroup, job: job, resources: placement.resources,
                createIndex: nextIndex, modifyIndex: nextIndex)
            allocation.previousAllocation = placement.previousAllocation
            allocation.rescheduleTracker = placement.rescheduleTracker
            allocations.append(allocation)
            nextIndex += 1
        }
        plans.append(plan)
        return plan
    }

    func live(_ jobID: String) -> [Allocation] { allocations.filter { $0.jobID == jobID && $0.isLive } }

    mutating func setClientStatus(_ status: Allocation.ClientStatus, where predicate: (Allocation) -> Bool) {
        for index in allocations.indices where predicate(allocations[index]) { allocations[index].clientStatus = status }
    }
}

func node(
    _ id: String, cpu: Int = 4000, memoryMB: Int = 8192, datacenter: String = "dc1", nodeClass: String = "",
    drivers: [String] = ["raw_exec"], attributes: [String: String] = [:], meta: [String: String] = [:], status: Node.Status = .ready
) -> Node {
    var attributes = attributes
    attributes["kernel.name"] = attributes["kernel.name"] ?? "linux"
    attributes["unique.hostname"] = id
    return Node(
        id: id, name: id, datacenter: datacenter, nodeClass: nodeClass,
        drivers: Dictionary(uniqueKeysWithValues: drivers.map { ($0, DriverInfo(detected: true, healthy: true)) }), attributes: attributes,
        meta: meta, resources: Resources(cpu: cpu, memoryMB: memoryMB, diskMB: 10_000), status: status)
}

func job(
    _ id: String, type: JobType = .service, count: Int = 1, cpu: Int = 100, memoryMB: Int = 64, driver: String = "raw_exec",
    constraints: [Constraint]? = nil
) -> Job {
    var job = Job(
        id: id, type: type,
        taskGroups: [
            TaskGroup(
                name: "web", count: count,
                tasks: [
                    JobTask(name: "server", driver: driver, command: "/bin/sleep", args: ["60"], resources: Resources(cpu: cpu, memoryMB: memoryMB))
                ])
        ])
    job.constraints = constraints
    return job
}
