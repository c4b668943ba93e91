import DroverModel
import Testing

@testable import DroverScheduling

/// The rules of processing an evaluation, without a database.
struct EvaluationResultTests {
    func job(_ id: String, stopped: Bool = false) -> Job {
        var job = Job(id: id, type: .service, taskGroups: [TaskGroup(name: "g", tasks: [JobTask(name: "t", command: "/bin/true")])])
        job.stop = stopped
        return job
    }

    func eval(_ id: String, job: String, trigger: String = Evaluation.Trigger.jobRegister) -> Evaluation {
        Evaluation(id: id, priority: 50, type: .service, triggeredBy: trigger, jobID: job, createIndex: 1, modifyIndex: 1)
    }

    func plan(queued: Int) -> Plan {
        var plan = Plan(evalID: "e", jobID: "web")
        if queued > 0 {
            plan.failedGroups = ["g": AllocMetric()]
            plan.queued = ["g": queued]
        }
        return plan
    }

    @Test(arguments: [
        // (trigger, queued, job stopped) -> (status, a new blocked evaluation)
        (Evaluation.Trigger.jobRegister, 0, false, Evaluation.Status.complete, false),
        (Evaluation.Trigger.jobRegister, 2, false, .complete, true),
        (Evaluation.Trigger.jobRegister, 2, true, .complete, false),
        (Evaluation.Trigger.queuedAllocs, 2, false, .blocked, false),
        (Evaluation.Trigger.queuedAllocs, 0, false, .complete, false),
        (Evaluation.Trigger.nodeUpdate, 1, false, .complete, true),
    ])
    func anUnplacedAllocationLeavesOneBlockedEvaluationAndABlockedOneWaitsAgainAsItself(
        trigger: String, queued: Int, stopped: Bool, status: Evaluation.Status, newBlocked: Bool
    ) {
        let result = EvaluationResult.resolve(
            eval("e", job: "web", trigger: trigger), job: job("web", stopped: stopped), plan: plan(queued: queued), index: 9, now: 100,
            blockedID: "b")
        #expect(result.evaluation.status == status)
        #expect(result.evaluation.modifyIndex == 9 && result.evaluation.modifyTime == 100)
        #expect((result.blocked != nil) == newBlocked)
        if let blocked = result.blocked {
            #expect(blocked.id == "b" && blocked.status == .blocked && blocked.previousEval == "e")
            #expect(blocked.triggeredBy == Evaluation.Trigger.queuedAllocs && blocked.queuedAllocations == ["g": queued])
            #expect(result.evaluation.blockedEval == "b")
            #expect(result.evaluation.statusDescription == "\(queued) allocation(s) could not be placed")
        }
        if status == .blocked { #expect(result.evaluation.queuedAllocations == ["g": queued]) }
    }

    @Test func aGoneJobCompletesItsEvaluation() {
        let result = EvaluationResult.resolve(eval("e", job: "gone"), job: nil, plan: plan(queued: 1), index: 2, now: 0, blockedID: "b")
        #expect(result.evaluation.status == .complete && result.blocked == nil)
    }

    @Test func evaluationsAreSplitIntoRoundsOfOnePerJobOldestFirst() {
        var late = eval("a2", job: "a")
        late.createIndex = 5
        let rounds = EvaluationRound.rounds([late, eval("b1", job: "b"), eval("a1", job: "a")])
        #expect(rounds.map { $0.map(\.id) } == [["a1", "b1"], ["a2"]])
    }

    @Test func eachPlanOfARoundSeesTheRoomTheOnesBeforeItTook() {
        let node = Node(
            id: "n1", name: "n1", drivers: ["raw_exec": DriverInfo(detected: true, healthy: true)], attributes: [:],
            resources: Resources(cpu: 1000, memoryMB: 1024))
        func sized(_ id: String) -> Job {
            var job = Job(
                id: id,
                taskGroups: [TaskGroup(name: "g", tasks: [JobTask(name: "t", command: "/bin/true", resources: Resources(cpu: 600, memoryMB: 64))])])
            job = job.canonicalized()
            return job
        }
        var random = SplitMix64(seed: 1)
        let round = EvaluationRound.plan(
            [eval("ea", job: "a"), eval("eb", job: "b")], jobs: [JobKey(id: "a"): sized("a"), JobKey(id: "b"): sized("b")], allocations: [:],
            snapshot: ClusterSnapshot(nodes: [node], usage: [:], jobAllocations: []), configuration: .init(), now: 0, random: &random)
        #expect(round.entries.map(\.plan.placements.count) == [1, 0], "the second does not fit beside the first")
        #expect(round.entries[1].plan.queued == ["g": 1])
        #expect(round.snapshot.used[0].cpu == 600)
    }
}
