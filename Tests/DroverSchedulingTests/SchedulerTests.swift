import DroverModel
import DroverScheduling
import Testing

@Suite struct SchedulerTests {
    @Test func registeringAJobPlacesEveryAllocationOnTenNodes() {
        var harness = SchedulerHarness()
        for index in 0..<10 { harness.upsert(node("n\(index)")) }
        harness.register(job("web", count: 10))
        let plan = harness.process("web")
        #expect(plan.placements.count == 10)
        #expect(plan.failedGroups.isEmpty && plan.stops.isEmpty)
        #expect(plan.desiredUpdates["web"]?.place == 10)
        #expect(Set(plan.placements.map(\.name)) == Set((0..<10).map { "web.web[\($0)]" }))
        // Processing again changes nothing.
        let again = harness.process("web")
        #expect(again.isEmpty && again.desiredUpdates["web"]?.ignore == 10)
    }

    @Test func binPackingPrefersTheFullerNodeAndSpreadTheEmptier() {
        for (algorithm, expected) in [(SchedulerConfiguration.Algorithm.binpack, "busy"), (.spread, "idle")] {
            var harness = SchedulerHarness()
            harness.configuration.algorithm = algorithm
            harness.upsert(node("busy"))
            harness.upsert(node("idle"))
            harness.register(job("other", cpu: 2000, memoryMB: 4096, constraints: [Constraint("${node.unique.name}", "=", "busy")]))
            harness.process("other")
            harness.register(job("new"))
            let plan = harness.process("new")
            #expect(plan.placements.map(\.nodeID) == [expected], "\(algorithm)")
        }
    }

    @Test func scalingDownStopsTheHighestIndexes() {
        var harness = SchedulerHarness()
        for index in 0..<3 { harness.upsert(node("n\(index)")) }
        harness.register(job("web", count: 3))
        harness.process("web")
        var smaller = job("web", count: 1)
        smaller.taskGroups[0] = harness.jobs["web"]!.taskGroups[0]
        smaller.taskGroups[0].count = 1
        harness.register(smaller)
        let plan = harness.process("web")
        #expect(plan.placements.isEmpty)
        let stopped = Set(plan.stops.map(\.allocationID))
        #expect(harness.allocations.filter { stopped.contains($0.id) }.map(\.index).sorted() == [1, 2])
        #expect(harness.live("web").map(\.name) == ["web.web[0]"])
    }

    @Test func aChangedTaskReplacesItsAllocations() {
        var harness = SchedulerHarness()
        harness.upsert(node("n1"))
        harness.register(job("web", count: 2))
        harness.process("web")
        var changed = job("web", count: 2)
        changed.taskGroups[0].tasks[0].config?.args = ["120"]
        harness.register(changed)
        let plan = harness.process("web")
        #expect(plan.stops.count == 2 && plan.placements.count == 2)
        #expect(plan.desiredUpdates["web"]?.destructiveUpdate == 2)
        #expect(Set(plan.placements.compactMap(\.previousAllocation)) == Set(plan.stops.map(\.allocationID)))
    }

    @Test func stoppingAJobStopsEverything() {
        var harness = SchedulerHarness()
        harness.upsert(node("n1"))
        harness.register(job("web", count: 2))
        harness.process("web")
        harness.jobs["web"]?.stop = true
        let plan = harness.process("web")
        #expect(plan.stops.count == 2 && plan.placements.isEmpty)
        #expect(harness.live("web").isEmpty)
        // A purged job (no job at all) stops what is left just the same.
        harness.register(job("batch", type: .batch))
        harness.process("batch")
        harness.jobs["batch"] = nil
        #expect(harness.process("batch").stops.count == 1)
    }

    @Test func allocationsOnANodeThatWentDownAreLostAndReplaced() {
        var harness = SchedulerHarness()
        harness.upsert(node("a"))
        harness.register(job("web", constraints: [Constraint("${node.unique.name}", "=", "a")]))
        harness.process("web")
        harness.register(job("web"))
        harness.process("web")
        #expect(harness.live("web").map(\.nodeID) == ["a"])
        harness.upsert(node("b"))
        harness.upsert(node("a", status: .down))
        let plan = harness.process("web")
        #expect(plan.stops.count == 1 && plan.stops[0].markLost)
        #expect(plan.placements.map(\.nodeID) == ["b"])
        #expect(harness.allocations.first { $0.id == plan.stops[0].allocationID }?.clientStatus == .lost)
    }

    @Test func aDrainingNodesAllocationsMoveAndStopOnlyOnceTheirReplacementsRun() {
        var harness = SchedulerHarness()
        harness.upsert(node("a"))
        harness.register(job("web", count: 2))
        harness.process("web")
        harness.setClientStatus(.running) { _ in true }
        let old = Set(harness.live("web").map(\.id))
        harness.upsert(node("b"))
        var draining = node("a")
        draining.drain = true
        draining.schedulingEligibility = .ineligible
        harness.upsert(draining)

        let first = harness.process("web")
        #expect(first.stops.isEmpty, "the old allocations run until their replacements do")
        #expect(first.placements.map(\.nodeID) == ["b", "b"])
        #expect(Set(first.placements.compactMap(\.previousAllocation)) == old)
        let waiting = harness.process("web")
        #expect(waiting.placements.isEmpty && waiting.stops.isEmpty, "pending replacements: nothing to do yet")
        #expect(waiting.desiredUpdates["web"]?.migrate == 2)

        harness.setClientStatus(.running) { $0.nodeID == "b" }
        let second = harness.process("web")
        #expect(Set(second.stops.map(\.allocationID)) == old && second.placements.isEmpty)
        #expect(harness.live("web").allSatisfy { $0.nodeID == "b" })
    }

    @Test func anIneligibleNodeKeepsTheSystemAllocationItRuns() {
        var harness = SchedulerHarness()
        harness.upsert(node("a"))
        harness.register(job("agent", type: .system))
        harness.process("agent")
        var ineligible = node("a")
        ineligible.schedulingEligibility = .ineligible
        harness.upsert(ineligible)
        let plan = harness.process("agent")
        #expect(plan.stops.isEmpty && plan.placements.isEmpty)
        #expect(harness.live("agent").count == 1)
    }

    @Test func aCompleteBatchAllocationStaysDoneAndAFailedOneIsRescheduledWithinItsPolicy() {
        var harness = SchedulerHarness()
        harness.upsert(node("n1"))
        harness.register(job("batch", type: .batch, count: 2))  // default policy: 1 attempt per 24 h
        harness.process("batch")
        harness.setClientStatus(.complete) { $0.name == "batch.web[0]" }
        harness.setClientStatus(.failed) { $0.name == "batch.web[1]" }
        let first = harness.process("batch")
        #expect(first.placements.map(\.name) == ["batch.web[1]"])
        #expect(first.placements[0].rescheduleTracker?.events.count == 1)
        let retried = harness.live("batch").first { $0.name == "batch.web[1]" }?.id
        harness.setClientStatus(.failed) { $0.id == retried }
        let second = harness.process("batch")
        #expect(second.isEmpty, "the one attempt is used up")
        #expect(second.desiredUpdates["web"]?.ignore == 2)
    }

    @Test func aGroupThatFitsNowhereSaysWhyPerReason() {
        var harness = SchedulerHarness()
        harness.upsert(node("small", cpu: 500, nodeClass: "tiny"))
        harness.upsert(node("windows", attributes: ["kernel.name": "windows"]))
        harness.upsert(node("nodriver", drivers: []))
        harness.upsert(node("down", status: .down))
        harness.register(job("big", count: 3, cpu: 1000, constraints: [Constraint("${attr.kernel.name}", "=", "linux")]))
        let plan = harness.process("big")
        #expect(plan.placements.isEmpty)
        let metric = try! #require(plan.failedGroups["web"])
        #expect(metric.nodesEvaluated == 4)
        #expect(metric.constraintFiltered == ["${attr.kernel.name} = linux": 1, "missing drivers": 1, "node down": 1])
        #expect(metric.dimensionExhausted == ["cpu": 1] && metric.classExhausted == ["tiny": 1])
        #expect(metric.coalescedFailures == 2 && plan.queued["web"] == 3)
        #expect(metric.nodesAvailable == ["dc1": 3])
    }

    @Test func distinctHostsPutsEachAllocationOnItsOwnNode() {
        var harness = SchedulerHarness()
        harness.upsert(node("a"))
        harness.upsert(node("b"))
        harness.register(job("web", count: 3, constraints: [Constraint("", "distinct_hosts", "true")]))
        let plan = harness.process("web")
        #expect(Set(plan.placements.map(\.nodeID)) == ["a", "b"])
        #expect(plan.failedGroups["web"]?.constraintFiltered["distinct_hosts"] == 2)
    }

    @Test func distinctPropertyAllowsOneAllocationPerValue() {
        var harness = SchedulerHarness()
        harness.upsert(node("r1a", meta: ["rack": "r1"]))
        harness.upsert(node("r1b", meta: ["rack": "r1"]))
        harness.upsert(node("r2", meta: ["rack": "r2"]))
        harness.upsert(node("norack"))
        harness.register(job("web", count: 3, constraints: [Constraint("${meta.rack}", "distinct_property", "")]))
        let plan = harness.process("web")
        let racks = plan.placements.map { placement in harness.nodes.first(where: { $0.id == placement.nodeID })?.meta["rack"] }
        #expect(racks.count == 2 && Set(racks) == ["r1", "r2"])
        #expect(plan.queued["web"] == 1)
        #expect(plan.failedGroups["web"]?.constraintFiltered["distinct_property: ${meta.rack} missing"] == 1)
    }

    @Test func aSpreadOverDatacentersBalancesThem() {
        var harness = SchedulerHarness()
        for index in 0..<4 { harness.upsert(node("east\(index)", datacenter: "east")) }
        for index in 0..<4 { harness.upsert(node("west\(index)", datacenter: "west")) }
        var spread = job("web", count: 6)
        spread.datacenters = ["east", "west"]
        spread.spreads = [Spread(attribute: "${node.datacenter}", weight: 100)]
        harness.register(spread)
        let plan = harness.process("web")
        let east = plan.placements.filter { $0.nodeID.hasPrefix("east") }.count
        #expect(plan.placements.count == 6 && east == 3)
    }

    @Test func anAffinityDrawsAllocationsToMatchingNodes() {
        var harness = SchedulerHarness()
        for index in 0..<4 { harness.upsert(node("plain\(index)")) }
        harness.upsert(node("ssd", meta: ["disk": "ssd"]))
        var preferring = job("web", count: 1)
        preferring.affinities = [Affinity("${meta.disk}", "=", "ssd", weight: 100)]
        harness.register(preferring)
        #expect(harness.process("web").placements.map(\.nodeID) == ["ssd"])
    }

    @Test func aSystemJobRunsOnEveryEligibleNodeIncludingOnesThatJoinLater() {
        var harness = SchedulerHarness()
        harness.upsert(node("a"))
        harness.upsert(node("b"))
        var ineligible = node("c")
        ineligible.schedulingEligibility = .ineligible
        harness.upsert(ineligible)
        harness.register(job("agent", type: .system))
        #expect(Set(harness.process("agent").placements.map(\.nodeID)) == ["a", "b"])
        harness.upsert(node("d"))
        harness.upsert(node("windows", attributes: ["kernel.name": "windows"]))
        harness.jobs["agent"]?.constraints = [Constraint("${attr.kernel.name}", "=", "linux")]
        let later = harness.process("agent")
        #expect(later.placements.map(\.nodeID) == ["d"])
        #expect(later.failedGroups.isEmpty, "a node a system job cannot use is skipped, not a failure")
        #expect(harness.live("agent").count == 3)
    }

    @Test func twoAllocationsOfOneJobAvoidSharingANodeWhenThereIsRoom() {
        var harness = SchedulerHarness()
        harness.upsert(node("a"))
        harness.upsert(node("b"))
        harness.register(job("web", count: 2))
        #expect(Set(harness.process("web").placements.map(\.nodeID)) == ["a", "b"])
    }
}

@Suite struct FeasibilityTests {
    static let linux = node(
        "n1", datacenter: "dc-east", nodeClass: "gpu",
        attributes: ["kernel.name": "linux", "cpu.numcores": "8", "os.version": "12.4", "tags": "a, b,c"], meta: ["rack": "r1"])

    @Test(arguments: [
        ("${attr.kernel.name}", "=", "linux", true),
        ("${attr.kernel.name}", "==", "windows", false),
        ("${attr.kernel.name}", "!=", "windows", true),
        ("${attr.missing}", "!=", "x", true),
        ("${attr.missing}", "=", "x", false),
        ("${attr.cpu.numcores}", ">", "4", true),
        ("${attr.cpu.numcores}", ">=", "10", false),
        ("${attr.cpu.numcores}", "<", "10", true),
        ("${attr.cpu.numcores}", "<=", "8", true),
        ("${attr.kernel.name}", "regexp", "^lin", true),
        ("${attr.kernel.name}", "regexp", "^win", false),
        ("${attr.os.version}", "version", ">= 12.0, < 13", true),
        ("${attr.os.version}", "version", "> 12.4", false),
        ("${attr.tags}", "set_contains", "a,c", true),
        ("${attr.tags}", "set_contains", "a,d", false),
        ("${attr.tags}", "set_contains_any", "d,b", true),
        ("${meta.rack}", "is_set", "", true),
        ("${meta.row}", "is_set", "", false),
        ("${meta.row}", "is_not_set", "", true),
        ("${meta.rack}", "=", "r1", true),
        ("${node.class}", "=", "gpu", true),
        ("${node.datacenter}", "=", "dc-east", true),
        ("${node.unique.name}", "=", "n1", true),
        ("${node.unknown}", "is_set", "", false),
    ])
    func constraintOperands(left: String, operand: String, right: String, expected: Bool) {
        #expect(ConstraintMatcher(Constraint(left, operand, right)).matches(Self.linux) == expected)
    }

    @Test func checksNameTheirReasons() {
        var down = Self.linux
        down.status = .down
        #expect(NodeReadyCheck().reject(down) == "node down")
        var draining = Self.linux
        draining.drain = true
        #expect(NodeReadyCheck().reject(draining) == "node draining")
        #expect(NodeReadyCheck().reject(Self.linux) == nil)
        #expect(DatacenterCheck(["dc-*"]).reject(Self.linux) == nil)
        #expect(DatacenterCheck(["dc1"]).reject(Self.linux) == "datacenter dc-east not in job")
        #expect(DriverCheck(["exec"]).reject(Self.linux) == "missing drivers")
        #expect(ConstraintCheck([Constraint("${attr.kernel.name}", "=", "darwin")]).reject(Self.linux) == "${attr.kernel.name} = darwin")
    }
}

@Suite struct ScoreTests {
    @Test(arguments: [
        (0, 0, SchedulerConfiguration.Algorithm.binpack, 0.0),
        (1000, 1000, .binpack, 1.0),
        (500, 500, .binpack, (20 - 2 * 3.1622776601683795) / 18),
        (0, 0, .spread, 1.0),
        (1000, 1000, .spread, 0.0),
    ])
    func fit(cpu: Int, memory: Int, algorithm: SchedulerConfiguration.Algorithm, expected: Double) {
        let score = Scores.fit(
            capacity: Resources(cpu: 1000, memoryMB: 1000), usedAfter: Resources(cpu: cpu, memoryMB: memory), algorithm: algorithm)
        #expect(abs(score - expected) < 1e-9)
    }

    @Test func antiAffinityAndSpreadBoosts() {
        #expect(Scores.jobAntiAffinity(collisions: 0, desiredCount: 4) == nil)
        #expect(Scores.jobAntiAffinity(collisions: 1, desiredCount: 4) == -0.5)
        #expect(Scores.evenSpread(count: 0, minimum: 0, maximum: 2) == 1)
        #expect(Scores.evenSpread(count: 1, minimum: 1, maximum: 1) == -1)
        #expect(Scores.evenSpread(count: 1, minimum: 1, maximum: 2) == 0.5)
        #expect(Scores.evenSpread(count: 3, minimum: 1, maximum: 3) < 0)
        #expect(Scores.targetSpread(desired: 4, count: 1) == 0.75)
        #expect(Scores.targetSpread(desired: 0, count: 0) == -1)
    }
}
