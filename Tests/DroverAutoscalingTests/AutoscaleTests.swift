import DroverModel
import Testing

@testable import DroverAutoscaling

/// The autoscale core, table by table, with the time passed in.
@Suite struct AutoscaleTests {
    static let second: Int64 = 1_000_000_000
    static let now: Int64 = 1_000_000 * second

    static func array(
        _ name: String = "execute", cores: Int = 2, memoryMB: Int = 2048, min: Int = 0, max: Int = 4, maxCores: Int? = nil, idle: Int64 = 30,
        attributes: [String: String] = [:]
    ) -> NodeArray {
        NodeArray(
            name: name, machine: MachineType(cores: cores, memoryMB: memoryMB, attributes: attributes), minCount: min, maxCount: max,
            maxCoreCount: maxCores, idleTimeAfterJobs: idle, idleTimeBeforeJobs: idle, bootTimeout: 300, provider: "local")
    }

    static func ready(_ name: String, since: Int64 = now - 3600 * second, running: Int = 0, lastWork: Int64? = nil) -> Machine {
        Machine(name: name, array: "execute", state: .ready, since: since, nodeID: "node-\(name)", runningAllocations: running, lastWorkAt: lastWork)
    }

    static func pending(_ count: Int, cpu: Int = 1000, memoryMB: Int = 512, constraints: [Constraint] = []) -> PendingPlacement {
        PendingPlacement(job: "j", group: "g", count: count, resources: Resources(cpu: cpu, memoryMB: memoryMB), constraints: constraints)
    }

    static func decide(
        _ arrays: [NodeArray], _ machines: [Machine] = [], demand: [PendingPlacement] = [], targets: [ScaleTarget] = [],
        backoffs: [ProviderBackoff] = [], lastScaleUp: [String: Int64] = [:], at time: Int64 = now
    ) -> AutoscalePlan {
        Autoscale.decide(
            AutoscaleState(
                arrays: arrays, machines: machines, demand: demand, targets: targets, backoffs: backoffs, lastScaleUp: lastScaleUp, now: time))
    }

    // MARK: Up

    @Test(arguments: [
        // (placements of 1 core, machines asked for: 2 cores each, max 4)
        (0, 0), (1, 1), (2, 1), (3, 2), (8, 4), (9, 4), (100_000, 4),
    ])
    func pendingPlacementsAskForTheFewestMachinesThatHoldThemWithinMaxCount(placements: Int, machines: Int) {
        let plan = Self.decide([Self.array()], demand: placements > 0 ? [Self.pending(placements)] : [])
        let asked = plan.actions.compactMap { action -> [String]? in
            if case .acquire(_, let names) = action { return names }
            return nil
        }
        #expect(asked.flatMap { $0 }.count == machines)
        if machines > 0 { #expect(asked.first?.first == "execute-1") }
    }

    @Test func machinesStillComingUpOrReadyWithoutWorkAbsorbDemandBeforeMoreAreAsked() {
        let coming = [
            Machine(name: "execute-1", array: "execute", state: .acquiring, since: Self.now - Self.second),
            Self.ready("execute-2", since: Self.now - Self.second),
        ]
        // 4 placements fill 2 machines; 2 are on their way: nothing more.
        #expect(Self.decide([Self.array()], coming, demand: [Self.pending(4)]).actions.isEmpty)
        // 6 fill 3: one more, named after the lowest free number.
        #expect(Self.decide([Self.array()], coming, demand: [Self.pending(6)]).actions == [.acquire(array: "execute", names: ["execute-3"])])
    }

    @Test func aTargetAndTheDemandCombineAndTheLargerWins() {
        let target = ScaleTarget(array: "execute", count: 3, expiresAt: Self.now + 300 * Self.second)
        let byTarget = Self.decide([Self.array()], demand: [Self.pending(2)], targets: [target])
        #expect(byTarget.actions == [.acquire(array: "execute", names: ["execute-1", "execute-2", "execute-3"])])
        #expect(byTarget.decisions.first?.reason.contains("autoscale target") == true)
        let cores = ScaleTarget(array: "execute", coreCount: 5, expiresAt: Self.now + Self.second)
        #expect(Self.decide([Self.array()], targets: [cores]).decisions.first?.target == 3, "5 cores on 2-core machines")
        let expired = ScaleTarget(array: "execute", count: 3, expiresAt: Self.now)
        #expect(Self.decide([Self.array()], targets: [expired]).actions.isEmpty)
    }

    @Test func minCountIsKeptAndMaxCoreCountCaps() {
        #expect(Self.decide([Self.array(min: 2)]).actions == [.acquire(array: "execute", names: ["execute-1", "execute-2"])])
        let capped = Self.decide([Self.array(max: 10, maxCores: 5)], demand: [Self.pending(100)])
        #expect(capped.decisions.first?.target == 2, "5 cores hold two 2-core machines")
    }

    @Test func placementsGoToTheSmallestTypeThatMeetsTheirConstraintsAndTheRestAreUnplaceable() {
        let small = Self.array("small", cores: 2)
        let gpu = Self.array("gpu", cores: 8, memoryMB: 8192, attributes: ["gpu.count": "1"])
        let needsGPU = Constraint("${attr.gpu.count}", "=", "1")
        let packing = DemandPacking.pack(
            [Self.pending(3), Self.pending(2, constraints: [needsGPU]), Self.pending(1, cpu: 64_000)], arrays: [gpu, small])
        #expect(packing.machines == ["small": 2, "gpu": 1])
        #expect(packing.unplaceable == 1, "64 cores fit no machine type")
        let byClass = Constraint("${meta.nodearray}", "=", "gpu")
        #expect(DemandPacking.pack([Self.pending(1, constraints: [byClass])], arrays: [gpu, small]).machines == ["gpu": 1])
    }

    @Test func mixedShapesShareMachines() {
        // 1 × 1.5 cores and 2 × 0.5 cores fill two 2-core machines (first fit decreasing).
        let shapes: [Resources: Int] = [Resources(cpu: 1500, memoryMB: 100): 1, Resources(cpu: 500, memoryMB: 100): 2]
        #expect(DemandPacking.machinesFor(shapes, on: MachineType(cores: 2, memoryMB: 1024)) == 2)
        // A small allocation goes into the room a large one left.
        #expect(
            DemandPacking.machinesFor(
                [Resources(cpu: 1500, memoryMB: 100): 4, Resources(cpu: 500, memoryMB: 100): 4], on: MachineType(cores: 2, memoryMB: 1024)) == 4)
        #expect(
            DemandPacking.machinesFor(
                [Resources(cpu: 1500, memoryMB: 100): 3, Resources(cpu: 500, memoryMB: 100): 5], on: MachineType(cores: 2, memoryMB: 1024)) == 4)
        // Memory binds as well as CPU.
        #expect(DemandPacking.machinesFor([Resources(cpu: 100, memoryMB: 600): 4], on: MachineType(cores: 2, memoryMB: 1024)) == 4)
    }

    @Test func hostileNumbersNeitherTrapNorAskForTheImpossible() {
        let huge = Self.array(cores: Int.max, memoryMB: Int.max, max: Int.max, maxCores: Int.max)
        let plan = Self.decide([huge], demand: [Self.pending(Int.max, cpu: 1, memoryMB: 1)])
        #expect(plan.decisions.count == 1)
        #expect(DemandPacking.pack([Self.pending(5, cpu: -1)], arrays: [Self.array()]).unplaceable == 5)
        #expect(Saturating.nanoseconds(Int64.max) == Int64.max)
        // A limit nobody validated asks for no more than a round's worth.
        let unbounded = Self.array(max: Int.max)
        let many = Self.decide([unbounded], targets: [ScaleTarget(array: "execute", count: Int.max, expiresAt: Self.now + Self.second)])
        #expect(many.actions.first.map { if case .acquire(_, let names) = $0 { names.count } else { 0 } } == 1000)
    }

    // MARK: Down

    @Test func anIdleMachineIsDrainedThenTerminatedNeverBelowMinCount() {
        let idleSince = Self.now - 31 * Self.second
        let machines = [Self.ready("execute-1", lastWork: idleSince), Self.ready("execute-2", lastWork: idleSince - Self.second)]
        let plan = Self.decide([Self.array(min: 1)], machines)
        #expect(
            plan.actions == [.drain(machine: "execute-2", nodeID: "node-execute-2", idle: true, reason: "idle for 32 s")], "the longest idle goes")
        var drained = machines[1]
        drained.state = .terminating
        drained.terminatingForIdleness = true
        let next = Self.decide([Self.array(min: 1)], [machines[0], drained], at: Self.now + Self.second)
        #expect(next.actions == [.terminate(machine: "execute-2", nodeID: "node-execute-2", deallocate: false, reason: "drained")])
        // Sent once: not again until the provider has had the request timeout to confirm.
        drained.terminateRequestedAt = Self.now + Self.second
        #expect(Self.decide([Self.array(min: 1)], [machines[0], drained], at: Self.now + 2 * Self.second).actions.isEmpty)
        #expect(Self.decide([Self.array(min: 1)], [machines[0], drained], at: Self.now + 122 * Self.second).actions.count == 1)
    }

    @Test func aMachineWithWorkOrAKeepaliveOrNotIdleLongEnoughStays() {
        var keptAlive = Self.ready("execute-3", lastWork: Self.now - 3600 * Self.second)
        keptAlive.keepaliveUntil = Self.now + Self.second
        let machines = [
            Self.ready("execute-1", running: 1, lastWork: Self.now - 3600 * Self.second),
            Self.ready("execute-2", lastWork: Self.now - 29 * Self.second),
            keptAlive,
        ]
        #expect(Self.decide([Self.array()], machines).actions.isEmpty)
    }

    @Test func noScaleInWhileTheArrayHasDemandOrWithinTheCooldownOfAScaleUp() {
        let idle = [Self.ready("execute-1", lastWork: Self.now - 3600 * Self.second)]
        // Demand that does not fit the idle machine (it needs more than one), and is asked for.
        #expect(
            !Self.decide([Self.array()], idle, demand: [Self.pending(3, cpu: 1500)]).actions.contains { if case .drain = $0 { true } else { false } })
        // No demand, but machines were asked for 10 s ago: flapping is what the cooldown stops.
        #expect(Self.decide([Self.array()], idle, lastScaleUp: ["execute": Self.now - 10 * Self.second]).actions.isEmpty)
        #expect(Self.decide([Self.array()], idle, lastScaleUp: ["execute": Self.now - 61 * Self.second]).actions.count == 1)
    }

    @Test func scaleUpIsNotBlockedByADrainAndAnIdleMachineBeingDrainedIsTakenBackFirst() {
        var draining = Self.ready("execute-1", lastWork: Self.now - 3600 * Self.second)
        draining.state = .terminating
        draining.terminatingForIdleness = true
        var flagged = Self.ready("execute-2", running: 2)
        flagged.state = .terminating
        flagged.termination = TerminationRequest(reason: "unhealthy", requestedAt: Self.now)
        let plan = Self.decide([Self.array()], [draining, flagged], demand: [Self.pending(4)])
        #expect(plan.actions == [.reclaim(machine: "execute-1", nodeID: "node-execute-1"), .acquire(array: "execute", names: ["execute-3"])])
    }

    @Test func theLimitsAreHardCapsThatCountMachinesBeingTakenAway() {
        var going = Self.ready("execute-1", running: 1)
        going.state = .terminating
        going.termination = TerminationRequest(reason: "unhealthy", requestedAt: Self.now)
        let plan = Self.decide([Self.array(max: 2)], [going, Self.ready("execute-2", running: 1, lastWork: Self.now)], demand: [Self.pending(10)])
        #expect(plan.actions.isEmpty)
        #expect(plan.decisions.first?.reason.contains("limits") == true)
    }

    // MARK: Flags and timeouts

    @Test func aFlaggedMachineIsDrainedAndTerminatedAndReplaced() {
        var unhealthy = Self.ready("execute-1", running: 1)
        unhealthy.termination = TerminationRequest(reason: "HealthCheck failed", requestedAt: Self.now)
        let plan = Self.decide([Self.array(min: 1)], [unhealthy])
        #expect(
            plan.actions == [
                .drain(machine: "execute-1", nodeID: "node-execute-1", idle: false, reason: "HealthCheck failed"),
                .acquire(array: "execute", names: ["execute-2"]),
            ])
    }

    @Test func aNodeThatAskedToBeDeallocatedIsDeallocated() {
        var asked = Self.ready("execute-1")
        asked.state = .terminating
        asked.termination = TerminationRequest(reason: "deallocate", requestedAt: Self.now)
        #expect(
            Self.decide([Self.array()], [asked]).actions == [
                .terminate(machine: "execute-1", nodeID: "node-execute-1", deallocate: true, reason: "deallocate")
            ])
    }

    @Test func aProviderThatNeverAnswersIsGivenUpOnBackedOffFromAndAskedAgain() {
        let silent = Machine(name: "execute-1", array: "execute", state: .acquiring, since: Self.now - 121 * Self.second)
        let plan = Self.decide([Self.array(min: 1)], [silent])
        let backoff = ProviderBackoff(
            array: "execute", failures: 1, until: Self.now + 10 * Self.second, reason: "the provider 'local' did not answer")
        #expect(plan.actions == [.giveUp(machine: "execute-1", reason: "the provider 'local' did not answer within 120 s"), .backOff(backoff)])
        #expect(plan.decisions.first?.reason.contains("asking again in 10 s") == true)
        var failed = silent
        failed.state = .failed
        #expect(Self.decide([Self.array(min: 1)], [failed], backoffs: [backoff], at: Self.now + 5 * Self.second).actions.isEmpty)
        #expect(
            Self.decide([Self.array(min: 1)], [failed], backoffs: [backoff], at: Self.now + 10 * Self.second).actions == [
                .acquire(array: "execute", names: ["execute-2"])
            ], "the failed machine keeps its name until its provider confirms it gone")
        #expect(ProviderBackoff.delay(afterFailures: 2) == 20 * Self.second && ProviderBackoff.delay(afterFailures: 60) == 300 * Self.second)
    }

    @Test func aMachineNotReadyWithinBootTimeoutIsGivenUpAndReplaced() {
        let slow = Machine(
            name: "execute-1", array: "execute", state: .preparing, since: Self.now - 100 * Self.second, requestedAt: Self.now - 301 * Self.second)
        let plan = Self.decide([Self.array(min: 1)], [slow])
        #expect(
            plan.actions == [
                .giveUp(machine: "execute-1", reason: "not ready within BootTimeout (300 s)"), .acquire(array: "execute", names: ["execute-2"]),
            ])
    }

    @Test func aMachineWhoseClusterInitFailedIsKeptCountsAgainstTheLimitsAndGoesWhenFlagged() {
        var failed = Self.ready("execute-1")
        failed.state = .failed
        failed.clusterInitFailure = "app:default:1 scripts/10-setup.sh exited 3"
        #expect(failed.isKeptAfterFailure)
        // Demand for 4 machines with MaxCount 2: the kept machine leaves room for one, not two.
        let plan = Self.decide([Self.array(max: 2)], [failed], demand: [Self.pending(8)])
        #expect(plan.actions == [.acquire(array: "execute", names: ["execute-2"])])
        // Nothing takes it away on its own: it stays for whoever looks into it ...
        #expect(Self.decide([Self.array(max: 2)], [failed], at: Self.now + 86_400 * Self.second).actions.isEmpty)
        // ... until it is flagged (drover shutdown on it).
        failed.termination = TerminationRequest(reason: "requested", requestedAt: Self.now)
        #expect(
            Self.decide([Self.array(max: 2)], [failed]).actions == [
                .terminate(machine: "execute-1", nodeID: "node-execute-1", deallocate: false, reason: "requested")
            ])
        // A machine given up (its provider asked to take it away) is not kept.
        var givenUp = failed
        givenUp.termination = nil
        givenUp.terminateRequestedAt = Self.now
        #expect(!givenUp.isKeptAfterFailure)
        #expect(
            Self.decide([Self.array(max: 2)], [givenUp], demand: [Self.pending(8)]).actions == [
                .acquire(array: "execute", names: ["execute-2", "execute-3"])
            ])
    }

    @Test func machinesOfADeletedArrayAreTerminated() {
        let orphan = Machine(name: "old-1", array: "old", state: .ready, since: Self.now, nodeID: "n")
        #expect(
            Self.decide([], [orphan]).actions == [.terminate(machine: "old-1", nodeID: "n", deallocate: false, reason: "its node array was deleted")])
    }
}
