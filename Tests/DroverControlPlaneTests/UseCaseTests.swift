import DroverHealth
import DroverModel
import DroverScheduling
import DroverStorage
import DroverTestSupport
import Foundation
import Logging
import Testing

@testable import DroverControlPlane

func smallJob(_ id: String, count: Int = 1, cpu: Int = 600) -> Job {
    Job(
        id: id, type: .service,
        taskGroups: [
            TaskGroup(name: "g", count: count, tasks: [JobTask(name: "t", command: "/bin/true", resources: Resources(cpu: cpu, memoryMB: 64))])
        ])
}

/// The fields a use case refused `work` for (``ControlPlaneError/invalid(_:)``); empty when it went through.
func refusedFields(_ work: () async throws -> Void) async -> [String] {
    do {
        try await work()
        return []
    } catch ControlPlaneError.invalid(let errors) {
        return errors.map(\.field)
    } catch {
        return ["unexpected \(error)"]
    }
}

func testNode(_ id: String, cpu: Int = 1000) -> Node {
    Node(
        id: id, name: id, drivers: ["raw_exec": DriverInfo(detected: true, healthy: true)], attributes: ["kernel.name": "linux"],
        resources: Resources(cpu: cpu, memoryMB: 4096, diskMB: 1000))
}

/// The use cases of the application layer against a real PostgreSQL: each test on a database of
/// its own, time passed in where a rule depends on it.
@Suite(.serialized, .enabled(if: TestEnvironment.runsStorageIntegration))
struct UseCaseTests {
    @Test func aPurgedNodeStaysGoneUntilItEnrollsAgain() async throws {
        try await withMigratedDatabase { database in
            let nodes = NodeLifecycle(database: database)
            try await nodes.register(node: testNode("n1"))
            #expect(try await nodes.purge(nodeID: "n1"))
            // A registration still queued when the node was purged does not bring it back.
            #expect(await refusedFields { try await nodes.register(node: testNode("n1")) } == ["Node.ID"])
            #expect(try await database.nodes.status("n1", lock: false) == nil)
            // Enrolled again, it registers.
            let enrollment = EnrollmentService(database: database)
            let token = try await enrollment.createToken(lifetime: .seconds(600), nodeID: "n1")
            _ = try await enrollment.join(nodeID: "n1", secret: try #require(token.secret)) { _ in ("amqp://n1@broker", "drover") }
            try await nodes.register(node: testNode("n1"))
            #expect(try await database.nodes.status("n1", lock: false) == .ready)
        }
    }

    /// A join whose answer was lost: the same node asking again with the same token and join key
    /// joins again, its new secret replacing the one it never got; any other repeat is refused.
    @Test func aJoinAskedAgainWithItsKeyJoinsAgainAndNoOtherRepeatDoes() async throws {
        try await withMigratedDatabase { database in
            let enrollment = EnrollmentService(database: database)
            let broker: @Sendable (String) async throws -> (amqpURL: String, controlPlaneUser: String) = { ("amqp://\($0)@broker", "drover") }
            let token = try #require(try await enrollment.createToken(lifetime: .seconds(600), nodeID: nil).secret)
            let key = String(repeating: "k", count: 32)
            let first = try await enrollment.join(nodeID: "n1", secret: token, joinKey: key, makeBrokerUser: broker)
            let second = try await enrollment.join(nodeID: "n1", secret: token, joinKey: key, makeBrokerUser: broker)
            #expect(first.nodeSecret != second.nodeSecret)
            #expect(try await enrollment.verify(nodeID: "n1", secret: second.nodeSecret))
            #expect(try await !enrollment.verify(nodeID: "n1", secret: first.nodeSecret), "replaced")
            let unauthorized = ControlPlaneError.unauthorized("enrollment token not found, already used, expired, or for another node")
            await #expect(throws: unauthorized, "another key") {
                try await enrollment.join(nodeID: "n1", secret: token, joinKey: String(repeating: "x", count: 32), makeBrokerUser: broker)
            }
            await #expect(throws: unauthorized, "no key") { try await enrollment.join(nodeID: "n1", secret: token, makeBrokerUser: broker) }
            await #expect(throws: unauthorized, "another node with the key") {
                try await enrollment.join(nodeID: "n2", secret: token, joinKey: key, makeBrokerUser: broker)
            }
            #expect(try await enrollment.verify(nodeID: "n1", secret: second.nodeSecret), "a refused join changes nothing")
            let short = await refusedFields { _ = try await enrollment.join(nodeID: "n1", secret: token, joinKey: "short", makeBrokerUser: broker) }
            #expect(short == ["JoinKey"])

            // A token used without a key cannot be used again, even by its node.
            let keyless = try #require(try await enrollment.createToken(lifetime: .seconds(600), nodeID: "n3").secret)
            _ = try await enrollment.join(nodeID: "n3", secret: keyless, makeBrokerUser: broker)
            await #expect(throws: unauthorized) { try await enrollment.join(nodeID: "n3", secret: keyless, makeBrokerUser: broker) }
            await #expect(throws: unauthorized, "a key added later") {
                try await enrollment.join(nodeID: "n3", secret: keyless, joinKey: key, makeBrokerUser: broker)
            }

            // An expired token is refused even with its key.
            let later = Date().addingTimeInterval(601)
            await #expect(throws: unauthorized) {
                try await enrollment.join(nodeID: "n1", secret: token, joinKey: key, now: later, makeBrokerUser: broker)
            }
        }
    }

    @Test func registeringWritesTheJobAVersionAnEvaluationAndItsMessageInOneTransaction() async throws {
        try await withMigratedDatabase { database in
            let jobs = JobService(database: database)
            let first = try await jobs.register(smallJob("web"))
            let again = try await jobs.register(smallJob("web"))
            var changed = smallJob("web")
            changed.taskGroups[0].tasks[0].config?.args = ["x"]
            _ = try await jobs.register(changed)
            #expect(try await database.jobs.read(JobKey(id: "web"))?.version == 1, "an unchanged job keeps its version")
            #expect(try await count("drover_job_versions", in: database) == 2)
            #expect(try await count("drover_evaluations", in: database) == 3)
            #expect(try await count("drover_outbox", in: database) == 3)
            let current = try await database.currentIndex()
            #expect(again.index > first.index && current >= again.index)
            let invalid = await #expect(throws: ControlPlaneError.self) { try await jobs.register(smallJob("bad", count: -1)) }
            #expect(invalid == .invalid([FieldError("Job.TaskGroups[0].Count", "must be between 0 and 10000, got -1")]))
            #expect(try await count("drover_evaluations", in: database) == 3, "a refused job writes nothing")
        }
    }

    /// A batch (what the gateway's group commit writes): refusals by position, one index for a
    /// round of distinct ids, and a job given twice registered twice, one after the other.
    @Test func aBatchOfRegistrationsIsWrittenTogetherWithEachOutcomeInItsPlace() async throws {
        try await withMigratedDatabase { database in
            let jobs = JobService(database: database)
            _ = try await jobs.register(smallJob("old"))
            var changed = smallJob("old")
            changed.taskGroups[0].tasks[0].config?.args = ["x"]
            let results = try await jobs.register([smallJob("a"), smallJob("bad", count: -1), smallJob("old"), smallJob("b"), changed])
            #expect(results.count == 5)
            let registered = results.compactMap { try? $0.get() }
            #expect(registered.count == 4)
            guard case .failure(.invalid(let errors)) = results[1] else {
                Issue.record("the invalid job was not refused: \(results[1])")
                return
            }
            #expect(errors == [FieldError("Job.TaskGroups[0].Count", "must be between 0 and 10000, got -1")])
            // a, old (unchanged) and b in the first round; old again (changed) in a second.
            let first = try results[0].get().index
            #expect(try results[2].get().index == first && results[3].get().index == first)
            #expect(try results[4].get().index > first)
            #expect(Set(registered.map(\.evalID)).count == 4)
            #expect(try await database.jobs.read(JobKey(id: "old"))?.version == 1)
            #expect(try await database.jobs.read(JobKey(id: "a"))?.version == 0)
            #expect(try await database.jobs.read(JobKey(id: "bad")) == nil)
            #expect(try await count("drover_job_versions", in: database) == 4, "old v0 and v1, a, b")
            #expect(try await count("drover_evaluations", in: database) == 5)
            #expect(try await count("drover_outbox", in: database) == 5)
            #expect(try await count("drover_events", in: database) == 5)
        }
    }

    @Test func twoSchedulersPlanningAtOnceNeverOvercommitANode() async throws {
        try await withMigratedDatabase { database in
            let jobs = JobService(database: database)
            let nodes = NodeLifecycle(database: database)
            try await nodes.register(node: testNode("only", cpu: 1000))
            // Ten jobs each want 600 MHz of a 1000 MHz node: only one can have it.
            var evals: [String] = []
            for index in 0..<10 { evals.append(try await jobs.register(smallJob("job\(index)")).evalID) }
            let processor = EvaluationService(database: database)
            let outcomes = try await withThrowingTaskGroup(of: EvaluationService.Outcome.self) { group in
                for eval in evals { group.addTask { try await processor.process(evalID: eval) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let placed = outcomes.reduce(0) { total, outcome in
                if case .applied(let placed, _, _) = outcome { return total + placed }
                return total
            }
            #expect(placed == 1)
            let live = try await database.allocations.list(nodeID: "only").filter(\.isLive)
            #expect(live.count == 1 && live.reduce(0) { $0 + $1.resources.cpu } <= 1000)
            let blocked = try await database.evaluations.list().filter { $0.status == .blocked }
            #expect(blocked.count == 9)
            #expect(blocked.allSatisfy { $0.failedTGAllocs?["g"]?.dimensionExhausted["cpu"] == 1 })
            // Processing an evaluation again (a redelivered message) changes nothing.
            #expect(try await processor.process(evalID: evals[0]) == .skipped)
        }
    }

    @Test func aNodeJoiningUnblocksWaitingEvaluationsAndReportsAreCheckedAgainstTheirNode() async throws {
        try await withMigratedDatabase { database in
            let jobs = JobService(database: database)
            let nodes = NodeLifecycle(database: database)
            let reports = ReportService(database: database)
            let processor = EvaluationService(database: database)
            let eval = try await jobs.register(smallJob("web")).evalID
            #expect(try await processor.process(evalID: eval) == .applied(placed: 0, stopped: 0, queued: 1))
            let unblocked = try await nodes.register(node: testNode("n1"))
            #expect(unblocked.count == 1)
            #expect(try await nodes.register(node: testNode("n1")).isEmpty, "an unchanged registration changes nothing")
            #expect(try await processor.process(evalID: unblocked[0]) == .applied(placed: 1, stopped: 0, queued: 0))
            let allocation = try #require(try await database.allocations.list(job: JobKey(id: "web")).first)
            let foreign = AllocationStatusReport(
                nodeID: "n2", allocID: allocation.id, clientStatus: .running, clientDescription: "", taskStates: [:])
            await #expect(throws: ControlPlaneError.self) { try await reports.record(foreign) }
            var report = foreign
            report.nodeID = "n1"
            report.clientStatus = .complete
            #expect(try await reports.record(report))
            report.clientStatus = .running
            #expect(!(try await reports.record(report)), "a finished allocation does not come back")
            #expect(try await database.allocations.read(id: allocation.id)?.clientStatus == .complete)
            // A service allocation that ended is evaluated again so that it is replaced.
            #expect(try await database.evaluations.list(job: JobKey(id: "web")).contains { $0.triggeredBy == Evaluation.Trigger.allocFailure })
        }
    }

    @Test func aBatchOfEvaluationsIsPlannedInOneTransactionEachPlanSeeingTheRoomTheOnesBeforeItTook() async throws {
        try await withMigratedDatabase { database in
            let jobs = JobService(database: database)
            let nodes = NodeLifecycle(database: database)
            let processor = EvaluationService(database: database)
            try await nodes.register(node: testNode("n1", cpu: 1300))
            // Two of these fit (600 MHz each); `a` is registered twice, so its second
            // evaluation is planned after its first and finds its allocation there.
            var evals: [String] = []
            for name in ["a", "b", "c", "a"] { evals.append(try await jobs.register(smallJob(name)).evalID) }
            let before = try await database.currentIndex()
            let outcomes = try await processor.process(evalIDs: evals)
            #expect(outcomes[evals[0]] == .applied(placed: 1, stopped: 0, queued: 0))
            #expect(outcomes[evals[1]] == .applied(placed: 1, stopped: 0, queued: 0))
            #expect(outcomes[evals[2]] == .applied(placed: 0, stopped: 0, queued: 1))
            #expect(outcomes[evals[3]] == .applied(placed: 0, stopped: 0, queued: 0))
            #expect(try await database.allocations.list(job: JobKey(id: "a")).count == 1)
            // One index per round: the second evaluation of `a` made a second round.
            #expect(try await database.currentIndex() == before + 2)
            #expect(try await processor.process(evalIDs: evals).values.allSatisfy { $0 == .skipped })

            // The blocked evaluation of `c`, unblocked and still without room, waits again as itself.
            let blocked = try await database.evaluations.list(job: JobKey(id: "c")).filter { $0.status == .blocked }
            #expect(blocked.count == 1)
            let unblocked = try await nodes.register(node: testNode("n1", cpu: 1301))
            #expect(unblocked == blocked.map(\.id))
            #expect(try await processor.process(evalIDs: unblocked) == [unblocked[0]: .applied(placed: 0, stopped: 0, queued: 1)])
            let after = try await database.evaluations.list(job: JobKey(id: "c"))
            #expect(after.count == 2)
            #expect(after.first { $0.id == unblocked[0] }?.status == .blocked)
            // Stopping the job cancels it, and its record says so.
            _ = try await jobs.deregister(JobKey(id: "c"), purge: false)
            #expect(try await database.evaluations.read(id: unblocked[0])?.status == .canceled)
        }
    }

    @Test func aBatchOfReportsIsAppliedInSequenceOrderOncePerAllocationAndRefusalsArePositional() async throws {
        try await withMigratedDatabase { database in
            let jobs = JobService(database: database)
            let nodes = NodeLifecycle(database: database)
            let reports = ReportService(database: database)
            let processor = EvaluationService(database: database)
            try await nodes.register(node: testNode("n1", cpu: 2000))
            var allocations: [Allocation] = []
            for name in ["a", "b"] {
                let eval = try await jobs.register(smallJob(name)).evalID
                _ = try await processor.process(evalID: eval)
                allocations.append(try #require(try await database.allocations.list(job: JobKey(id: name)).first))
            }
            let before = try await database.currentIndex()
            func report(_ allocation: Allocation, _ status: Allocation.ClientStatus, _ sequence: Int64, node: String = "n1")
                -> AllocationStatusReport
            {
                AllocationStatusReport(
                    nodeID: node, allocID: allocation.id, clientStatus: status, clientDescription: "\(status)", taskStates: [:],
                    sequence: sequence)
            }
            let ghost = Allocation(
                id: "no-such-alloc", evalID: "", name: "x", nodeID: "n1", nodeName: "n1", jobID: "a", jobVersion: 0, taskGroup: "g",
                resources: Resources(cpu: 1, memoryMB: 1), createIndex: 0, modifyIndex: 0, createTime: 0, modifyTime: 0)
            // Out of order, as concurrent deliveries may be: the newest report of `a` wins.
            let recorded = try await reports.record([
                report(allocations[0], .complete, 3), report(ghost, .running, 1), report(allocations[0], .running, 2),
                report(allocations[1], .running, 1, node: "n2"), report(allocations[1], .running, 1),
            ])
            #expect(recorded.changed == 2)
            #expect(recorded.refused.keys.sorted() == [1, 3])
            #expect(recorded.refused[1] == .notFound(kind: "allocation", id: "no-such-alloc"))
            #expect(try await database.allocations.read(id: allocations[0].id)?.clientStatus == .complete)
            #expect(try await database.allocations.read(id: allocations[1].id)?.clientStatus == .running)
            // One index for the whole batch.
            #expect(try await database.allocations.read(id: allocations[0].id)?.modifyIndex == before + 1)
            #expect(try await database.allocations.read(id: allocations[1].id)?.modifyIndex == before + 1)
            // A redelivery of the whole batch changes nothing.
            #expect(try await reports.record([report(allocations[0], .running, 2), report(allocations[1], .running, 1)]).changed == 0)
        }
    }

    /// Time is given, never read: the sweep runs at chosen instants, without sleeping.
    @Test func aSilentNodeGoesDownAtItsDeadlineItsJobsAreEvaluatedAndAHeartbeatBringsItBack() async throws {
        try await withMigratedDatabase { database in
            let nodes = NodeLifecycle(database: database, heartbeatPolicy: HeartbeatPolicy(minimumTTL: .seconds(10), grace: .seconds(5)))
            let jobs = JobService(database: database)
            let processor = EvaluationService(database: database)
            let t0 = Date(timeIntervalSince1970: 1_900_000_000)
            try await nodes.register(node: testNode("n1"), at: t0)
            let eval = try await jobs.register(smallJob("web")).evalID
            #expect(try await processor.process(evalID: eval) == .applied(placed: 1, stopped: 0, queued: 0))

            // Registered at t0 with the minimum TTL: up until t0 + 10 + 5.
            #expect(try await nodes.expireNodes(at: t0.addingTimeInterval(14.9)).isEmpty)
            let beat = NodeHeartbeat(nodeID: "n1", sequence: 1, agentStartedAt: t0)
            #expect(try await nodes.heartbeat(beat, at: t0.addingTimeInterval(10), ttl: .seconds(20)) == .ready)
            #expect(try await nodes.expireNodes(at: t0.addingTimeInterval(34.9)).isEmpty, "the heartbeat moved the deadline to t0 + 35")
            // A redelivered heartbeat and a repeated registration leave the deadline where it is
            // (the next line shows it unmoved).
            #expect(try await nodes.heartbeat(beat, at: t0.addingTimeInterval(20), ttl: .seconds(20)) == .ready)
            #expect(try await nodes.register(node: testNode("n1"), at: t0.addingTimeInterval(30)).isEmpty)
            #expect(try await nodes.expireNodes(at: t0.addingTimeInterval(35)) == ["n1"])
            // A sequence past what a bigint holds once ended health-monitor on a conversion trap.
            await #expect(throws: ControlPlaneError.self) {
                try await nodes.heartbeat(
                    NodeHeartbeat(nodeID: "n1", sequence: UInt64.max, agentStartedAt: t0), at: t0.addingTimeInterval(36), ttl: .seconds(20))
            }
            #expect(try await nodes.expireNodes(at: t0.addingTimeInterval(100)).isEmpty, "down once")
            #expect(try await database.nodes.read(id: "n1")?.status == .down)
            let update = try #require(
                try await database.evaluations.list(job: JobKey(id: "web")).first { $0.triggeredBy == Evaluation.Trigger.nodeUpdate })
            #expect(try await processor.process(evalID: update.id) == .applied(placed: 0, stopped: 1, queued: 1))
            #expect(try await database.allocations.list(job: JobKey(id: "web")).map(\.clientStatus) == [.lost])

            // Back: ready again, and the lost allocation is sent to stop once more.
            let outbox = try await count("drover_outbox", in: database)
            var next = beat
            next.sequence = 2
            #expect(try await nodes.heartbeat(next, at: t0.addingTimeInterval(200), ttl: .seconds(20)) == .ready)
            #expect(try await database.nodes.read(id: "n1")?.status == .ready)
            #expect(try await count("drover_outbox", in: database) > outbox)
            #expect(try await database.allocations.list(job: JobKey(id: "web")).map(\.clientStatus) == [.lost], "lost stays lost")
        }
    }

    @Test func aDrainingNodeCannotBeMadeEligibleUntilItsDrainIsCancelled() async throws {
        try await withMigratedDatabase { database in
            let nodes = NodeLifecycle(database: database)
            try await nodes.register(node: testNode("n1"))
            _ = try await nodes.drain(nodeID: "n1", spec: DrainSpec(deadline: 3_600_000_000_000), markEligible: false)
            let node = try #require(try await database.nodes.read(id: "n1"))
            #expect(node.drain && node.schedulingEligibility == .ineligible && node.lastDrain?.status == .draining)
            let refused = await #expect(throws: ControlPlaneError.self) { try await nodes.setEligibility(nodeID: "n1", eligible: true) }
            #expect(refused.map { "\($0)" }?.contains("is draining") == true)
            await #expect(throws: ControlPlaneError.notFound(kind: "node", id: "none")) {
                try await nodes.drain(nodeID: "none", spec: nil, markEligible: true)
            }
            _ = try await nodes.drain(nodeID: "n1", spec: nil, markEligible: true)
            let cancelled = try #require(try await database.nodes.read(id: "n1"))
            #expect(!cancelled.drain && cancelled.schedulingEligibility == .eligible && cancelled.lastDrain?.status == .canceled)
            // Nothing ran there: the next pass of the drainer has nothing to complete.
            #expect(try await nodes.advanceDrains(at: Date()).isEmpty)
        }
    }

    /// A node ships output only for its own allocations, in chunks of sane offsets and sizes.
    @Test func taskOutputIsCheckedAgainstItsAllocationsNodeAndStoredOnce() async throws {
        try await withMigratedDatabase { database in
            let (jobs, nodes) = (JobService(database: database), NodeLifecycle(database: database))
            try await nodes.register(node: testNode("n1"))
            _ = try await EvaluationService(database: database).process(evalID: try await jobs.register(smallJob("web")).evalID)
            let allocation = try #require(try await database.allocations.list(job: JobKey(id: "web")).first)
            let output = OutputService(database: database, cap: 1 << 20)
            func chunk(node: String = "n1", alloc: String? = nil, offset: Int64 = 0, size: Int = 5) -> TaskOutputChunk {
                TaskOutputChunk(
                    nodeID: node, allocID: alloc ?? allocation.id, task: "t", stream: .stdout, offset: offset, data: Data(repeating: 65, count: size))
            }
            #expect(try await output.append(chunk()))
            #expect(!(try await output.append(chunk())), "a redelivered chunk is stored once")
            await #expect(throws: ControlPlaneError.notFound(kind: "allocation", id: "ghost")) { try await output.append(chunk(alloc: "ghost")) }
            let foreign = await #expect(throws: ControlPlaneError.self) { try await output.append(chunk(node: "n2")) }
            #expect(foreign == .invalid([FieldError("NodeID", "allocation \(allocation.id) is not on node n2")]))
            let bad = await #expect(throws: ControlPlaneError.self) {
                try await output.append(chunk(offset: -1, size: TaskOutputChunk.maximumSize + 1))
            }
            guard case .invalid(let fields) = bad else { return }
            #expect(fields.map(\.field) == ["Offset", "Data"])
            #expect(try await database.output.read(allocID: allocation.id, task: "t", stream: .stdout, from: 0).data.count == 5)
        }
    }

    /// A failed allocation is an event (written with its record), and a keepalive from a node,
    /// however far away, is kept rather than overflowing.
    @Test func aFailureIsAnEventAndAFarKeepaliveIsForEver() async throws {
        try await withMigratedDatabase { database in
            let (jobs, nodes, reports) = (JobService(database: database), NodeLifecycle(database: database), ReportService(database: database))
            try await nodes.register(node: testNode("n1"))
            _ = try await EvaluationService(database: database).process(evalID: try await jobs.register(smallJob("web")).evalID)
            let allocation = try #require(try await database.allocations.list(job: JobKey(id: "web")).first)
            #expect(
                try await reports.record(
                    AllocationStatusReport(nodeID: "n1", allocID: allocation.id, clientStatus: .failed, clientDescription: "exit 3", taskStates: [:]))
            )
            let failed = try await database.events.list(EventRepository.Filter(jobID: "web")).filter { $0.type == ClusterEvent.Kind.allocationFailed }
            #expect(failed.map(\.message) == ["Allocation web.g[0] failed: exit 3"] && failed.first?.allocID == allocation.id)

            let farAway = Date(timeIntervalSince1970: 32_503_680_000)  // the year 3000
            try await nodes.setKeepalive(nodeID: "n1", until: farAway)
            #expect(try await database.nodes.read(id: "n1")?.keepaliveUntil == Int64.max)
            let unhealthy = NodeHealthReport(nodeID: "n1", healthy: false, checks: [])
            #expect(try await nodes.record(unhealthy) == .makeIneligibleAndKeep(until: .distantFuture))
        }
    }
}
