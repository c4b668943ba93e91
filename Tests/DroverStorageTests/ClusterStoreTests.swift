import DroverHealth
import DroverModel
import DroverScheduling
import DroverTestSupport
import Foundation
import Logging
import PostgresNIO
import Testing

@testable import DroverStorage

func smallJob(_ id: String, count: Int = 1, cpu: Int = 600) -> Job {
    Job(
        id: id, type: .service,
        taskGroups: [
            TaskGroup(name: "g", count: count, tasks: [JobTask(name: "t", command: "/bin/true", resources: Resources(cpu: cpu, memoryMB: 64))])
        ])
}

func testNode(_ id: String, cpu: Int = 1000) -> Node {
    Node(
        id: id, name: id, drivers: ["raw_exec": DriverInfo(detected: true, healthy: true)], attributes: ["kernel.name": "linux"],
        resources: Resources(cpu: cpu, memoryMB: 4096, diskMB: 1000))
}

@Suite(.serialized, .enabled(if: TestEnvironment.runsStorageIntegration))
struct ClusterStoreTests {
    @Test func registeringWritesTheJobAVersionAnEvaluationAndItsMessageInOneTransaction() async throws {
        try await withFreshDatabase { url in
            let database = try Database(url: url, logger: Logger(label: "test"))
            try await withClient(database.client) {
                try await database.migrate()
                let store = ClusterStore(database: database)
                let first = try await store.register(smallJob("web"))
                let again = try await store.register(smallJob("web"))
                var changed = smallJob("web")
                changed.taskGroups[0].tasks[0].config?.args = ["x"]
                _ = try await store.register(changed)
                #expect(try await store.job(id: "web")?.version == 1, "an unchanged job keeps its version")
                #expect(try await count("drover_job_versions", in: database) == 2)
                #expect(try await count("drover_evaluations", in: database) == 3)
                #expect(try await count("drover_outbox", in: database) == 3)
                let current = try await store.currentIndex()
                #expect(again.index > first.index && current >= again.index)
                let invalid = await #expect(throws: ClusterStoreError.self) { try await store.register(smallJob("bad", count: -1)) }
                #expect(invalid == .invalid([FieldError("Job.TaskGroups[0].Count", "must be 0 or more, got -1")]))
                #expect(try await count("drover_evaluations", in: database) == 3, "a refused job writes nothing")
            }
        }
    }

    /// A batch (what the gateway's group commit writes): refusals by position, one index for a
    /// round of distinct ids, and a job given twice registered twice, one after the other.
    @Test func aBatchOfRegistrationsIsWrittenTogetherWithEachOutcomeInItsPlace() async throws {
        try await withFreshDatabase { url in
            let database = try Database(url: url, logger: Logger(label: "test"))
            try await withClient(database.client) {
                try await database.migrate()
                let store = ClusterStore(database: database)
                _ = try await store.register(smallJob("old"))
                var changed = smallJob("old")
                changed.taskGroups[0].tasks[0].config?.args = ["x"]
                let results = try await store.register([smallJob("a"), smallJob("bad", count: -1), smallJob("old"), smallJob("b"), changed])
                #expect(results.count == 5)
                let registered = results.compactMap { try? $0.get() }
                #expect(registered.count == 4)
                guard case .failure(.invalid(let errors)) = results[1] else {
                    Issue.record("the invalid job was not refused: \(results[1])")
                    return
                }
                #expect(errors == [FieldError("Job.TaskGroups[0].Count", "must be 0 or more, got -1")])
                // a, old (unchanged) and b in the first round; old again (changed) in a second.
                let first = try results[0].get().index
                #expect(try results[2].get().index == first && results[3].get().index == first)
                #expect(try results[4].get().index > first)
                #expect(Set(registered.map(\.evalID)).count == 4)
                #expect(try await store.job(id: "old")?.version == 1)
                #expect(try await store.job(id: "a")?.version == 0)
                #expect(try await store.job(id: "bad") == nil)
                #expect(try await count("drover_job_versions", in: database) == 4, "old v0 and v1, a, b")
                #expect(try await count("drover_evaluations", in: database) == 5)
                #expect(try await count("drover_outbox", in: database) == 5)
                #expect(try await count("drover_events", in: database) == 5)
            }
        }
    }

    /// Writes composed into one statement: each clause's values bound in its own place, and
    /// every clause run once.
    @Test func writesComposedIntoOneStatementEachRunWithTheirOwnValues() async throws {
        try await withFreshDatabase { url in
            let database = try Database(url: url, logger: Logger(label: "test"))
            try await withClient(database.client) {
                try await database.migrate()
                var writes = SQLWrites()
                #expect(writes.isEmpty)
                try writes.add("INSERT INTO drover_users (name, spec, modify_index) VALUES (\("ann"), \(#"{"n":1}"#)::jsonb, \(Int64(7)))")
                try writes.add("INSERT INTO drover_users (name, spec, modify_index) VALUES (\("bob"), '{}'::jsonb, \(Int64(8)))")
                try writes.add("DELETE FROM drover_users WHERE name = \("nobody")")
                #expect(writes.query.sql.hasPrefix("WITH w0 AS (") && writes.query.sql.contains("$6") && !writes.query.sql.contains("$7"))
                try await database.transaction { try await writes.run(on: $0, logger: Logger(label: "test")) }
                var rows: [String] = []
                for try await (name, index) in try await database.client.query(
                    "SELECT name, modify_index FROM drover_users ORDER BY name", logger: Logger(label: "test")
                ).decode((String, Int64).self) {
                    rows.append("\(name)=\(index)")
                }
                #expect(rows == ["ann=7", "bob=8"])
            }
        }
    }

    /// A select run with the writes sees what the transaction did before them, and none of them.
    @Test func aSelectRunWithWritesSeesTheDatabaseAsItWasBeforeTheStatement() async throws {
        try await withFreshDatabase { url in
            let database = try Database(url: url, logger: Logger(label: "test"))
            try await withClient(database.client) {
                try await database.migrate()
                let logger = Logger(label: "test")
                let seen = try await database.transaction { connection in
                    try await connection.query("INSERT INTO drover_users (name, spec, modify_index) VALUES ('ann', '{}', 1)", logger: logger)
                    var writes = SQLWrites()
                    try writes.add("INSERT INTO drover_users (name, spec, modify_index) VALUES (\("bob"), '{}'::jsonb, \(Int64(2)))")
                    var names: [String] = []
                    for try await name in try await writes.run(
                        on: connection, logger: logger, selecting: "SELECT name FROM drover_users WHERE modify_index < \(Int64(10)) ORDER BY name"
                    ).decode(String.self) {
                        names.append(name)
                    }
                    return names
                }
                #expect(seen == ["ann"])
                #expect(try await count("drover_users", in: database) == 2)
            }
        }
    }

    /// A transaction's body runs on its connection's event loop, before and after its queries,
    /// and the connections carry the name they were given.
    @Test func aTransactionRunsOnItsConnectionsEventLoopAndConnectionsCarryTheirName() async throws {
        try await withFreshDatabase { url in
            let database = try Database(url: url, applicationName: "storage-tests", logger: Logger(label: "test"))
            try await withClient(database.client) {
                let (before, after, name) = try await database.transaction { connection in
                    let before = connection.eventLoop.inEventLoop
                    var name = ""
                    for try await value in try await connection.query(
                        "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()", logger: Logger(label: "test")
                    ).decode(String.self) {
                        name = value
                    }
                    return (before, connection.eventLoop.inEventLoop, name)
                }
                #expect(before && after)
                #expect(name == "storage-tests")
                // A body that throws still comes out as its own error.
                await #expect(throws: BodyFailed.self) {
                    try await database.transaction { _ in throw BodyFailed() }
                }
            }
        }
    }

    @Test func twoSchedulersPlanningAtOnceNeverOvercommitANode() async throws {
        try await withFreshDatabase { url in
            let database = try Database(url: url, logger: Logger(label: "test"))
            try await withClient(database.client) {
                try await database.migrate()
                let store = ClusterStore(database: database)
                try await store.register(node: testNode("only", cpu: 1000))
                // Ten jobs each want 600 MHz of a 1000 MHz node: only one can have it.
                var evals: [String] = []
                for index in 0..<10 { evals.append(try await store.register(smallJob("job\(index)")).evalID) }
                let processor = EvaluationProcessor(store: store)
                let outcomes = try await withThrowingTaskGroup(of: EvaluationProcessor.Outcome.self) { group in
                    for eval in evals { group.addTask { try await processor.process(evalID: eval) } }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                let placed = outcomes.reduce(0) { total, outcome in
                    if case .applied(let placed, _, _) = outcome { return total + placed }
                    return total
                }
                #expect(placed == 1)
                let live = try await store.allocations(nodeID: "only").filter(\.isLive)
                #expect(live.count == 1 && live.reduce(0) { $0 + $1.resources.cpu } <= 1000)
                let blocked = try await store.evaluations().filter { $0.status == .blocked }
                #expect(blocked.count == 9)
                #expect(blocked.allSatisfy { $0.failedTGAllocs?["g"]?.dimensionExhausted["cpu"] == 1 })
                // Processing an evaluation again (a redelivered message) changes nothing.
                #expect(try await processor.process(evalID: evals[0]) == .skipped)
            }
        }
    }

    @Test func aNodeJoiningUnblocksWaitingEvaluationsAndReportsAreCheckedAgainstTheirNode() async throws {
        try await withFreshDatabase { url in
            let database = try Database(url: url, logger: Logger(label: "test"))
            try await withClient(database.client) {
                try await database.migrate()
                let store = ClusterStore(database: database)
                let processor = EvaluationProcessor(store: store)
                let eval = try await store.register(smallJob("web")).evalID
                #expect(try await processor.process(evalID: eval) == .applied(placed: 0, stopped: 0, queued: 1))
                let unblocked = try await store.register(node: testNode("n1"))
                #expect(unblocked.count == 1)
                #expect(try await store.register(node: testNode("n1")).isEmpty, "an unchanged registration changes nothing")
                #expect(try await processor.process(evalID: unblocked[0]) == .applied(placed: 1, stopped: 0, queued: 0))
                let allocation = try #require(try await store.allocations(jobID: "web").first)
                let foreign = AllocationStatusReport(
                    nodeID: "n2", allocID: allocation.id, clientStatus: .running, clientDescription: "", taskStates: [:])
                await #expect(throws: ClusterStoreError.self) { try await store.record(foreign) }
                var report = foreign
                report.nodeID = "n1"
                report.clientStatus = .complete
                #expect(try await store.record(report))
                report.clientStatus = .running
                #expect(!(try await store.record(report)), "a finished allocation does not come back")
                #expect(try await store.allocation(id: allocation.id)?.clientStatus == .complete)
                // A service allocation that ended is evaluated again so that it is replaced.
                #expect(try await store.evaluations(jobID: "web").contains { $0.triggeredBy == Evaluation.Trigger.allocFailure })
            }
        }
    }

    @Test func aBatchOfEvaluationsIsPlannedInOneTransactionEachPlanSeeingTheRoomTheOnesBeforeItTook() async throws {
        try await withFreshDatabase { url in
            let database = try Database(url: url, logger: Logger(label: "test"))
            try await withClient(database.client) {
                try await database.migrate()
                let store = ClusterStore(database: database)
                let processor = EvaluationProcessor(store: store)
                try await store.register(node: testNode("n1", cpu: 1300))
                // Two of these fit (600 MHz each); `a` is registered twice, so its second
                // evaluation is planned after its first and finds its allocation there.
                var evals: [String] = []
                for name in ["a", "b", "c", "a"] { evals.append(try await store.register(smallJob(name)).evalID) }
                let before = try await store.currentIndex()
                let outcomes = try await processor.process(evalIDs: evals)
                #expect(outcomes[evals[0]] == .applied(placed: 1, stopped: 0, queued: 0))
                #expect(outcomes[evals[1]] == .applied(placed: 1, stopped: 0, queued: 0))
                #expect(outcomes[evals[2]] == .applied(placed: 0, stopped: 0, queued: 1))
                #expect(outcomes[evals[3]] == .applied(placed: 0, stopped: 0, queued: 0))
                #expect(try await store.allocations(jobID: "a").count == 1)
                // One index per round: the second evaluation of `a` made a second round.
                #expect(try await store.currentIndex() == before + 2)
                #expect(try await processor.process(evalIDs: evals).values.allSatisfy { $0 == .skipped })

                // The blocked evaluation of `c`, unblocked and still without room, waits again as itself.
                let blocked = try await store.evaluations(jobID: "c").filter { $0.status == .blocked }
                #expect(blocked.count == 1)
                let unblocked = try await store.register(node: testNode("n1", cpu: 1301))
                #expect(unblocked == blocked.map(\.id))
                #expect(try await processor.process(evalIDs: unblocked) == [unblocked[0]: .applied(placed: 0, stopped: 0, queued: 1)])
                let after = try await store.evaluations(jobID: "c")
                #expect(after.count == 2)
                #expect(after.first { $0.id == unblocked[0] }?.status == .blocked)
                // Stopping the job cancels it, and its record says so.
                _ = try await store.deregister(jobID: "c", purge: false)
                #expect(try await store.evaluation(id: unblocked[0])?.status == .canceled)
            }
        }
    }

    /// Indexes come from a sequence, so a transaction may commit with an index below one a
    /// client already holds; a blocking query waiting past that index must still see it.
    @Test func aChangeCommittedWithAnOlderIndexStillMovesTheWatchedIndexPastWhatClientsHold() async throws {
        try await withFreshDatabase { url in
            let database = try Database(url: url, logger: Logger(label: "test"))
            try await withClient(database.client) {
                try await database.migrate()
                let store = ClusterStore(database: database)
                // Polling once, at start: from then on only notifications move the watcher.
                let watcher = IndexWatcher(store: store, pollInterval: .seconds(3600))
                let running = Task { try await watcher.run() }
                defer { running.cancel() }
                @Sendable func change() async throws -> Int64 {
                    try await database.transaction { try await ClusterStore.nextIndex($0, logger: store.logger) }
                }
                // Changes until one is seen: the watcher listens.
                try await withTimeout(.seconds(20), "the watcher hearing a change") {
                    while true {
                        let index = try await change()
                        for _ in 0..<20 where watcher.latest < index { try await Task.sleep(for: .milliseconds(10)) }
                        if watcher.latest >= index { return }
                    }
                }
                // `early` takes its index first and commits last.
                let (released, release) = AsyncStream.makeStream(of: Void.self)
                let (taken, took) = AsyncStream.makeStream(of: Int64.self)
                let early = Task {
                    try await database.transaction { connection in
                        took.yield(try await ClusterStore.nextIndex(connection, logger: store.logger))
                        for await _ in released { break }
                    }
                }
                var iterator = taken.makeAsyncIterator()
                let earlyIndex = try #require(await iterator.next())
                let lateIndex = try await change()
                #expect(lateIndex > earlyIndex)
                try await withTimeout(.seconds(20), "the later change seen") { while watcher.latest < lateIndex { await Task.yield() } }
                let held = watcher.latest
                release.yield()
                try await early.value
                try await withTimeout(.seconds(20), "the index moving past \(held) once the earlier change commits") {
                    while watcher.latest <= held { try await Task.sleep(for: .milliseconds(10)) }
                }
            }
        }
    }

    @Test func aBatchOfReportsIsAppliedInSequenceOrderOncePerAllocationAndRefusalsArePositional() async throws {
        try await withFreshDatabase { url in
            let database = try Database(url: url, logger: Logger(label: "test"))
            try await withClient(database.client) {
                try await database.migrate()
                let store = ClusterStore(database: database)
                let processor = EvaluationProcessor(store: store)
                try await store.register(node: testNode("n1", cpu: 2000))
                var allocations: [Allocation] = []
                for name in ["a", "b"] {
                    let eval = try await store.register(smallJob(name)).evalID
                    _ = try await processor.process(evalID: eval)
                    allocations.append(try #require(try await store.allocations(jobID: name).first))
                }
                let before = try await store.currentIndex()
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
                let recorded = try await store.record([
                    report(allocations[0], .complete, 3), report(ghost, .running, 1), report(allocations[0], .running, 2),
                    report(allocations[1], .running, 1, node: "n2"), report(allocations[1], .running, 1),
                ])
                #expect(recorded.changed == 2)
                #expect(recorded.refused.keys.sorted() == [1, 3])
                #expect(recorded.refused[1] == .notFound(kind: "allocation", id: "no-such-alloc"))
                #expect(try await store.allocation(id: allocations[0].id)?.clientStatus == .complete)
                #expect(try await store.allocation(id: allocations[1].id)?.clientStatus == .running)
                // One index for the whole batch.
                #expect(try await store.allocation(id: allocations[0].id)?.modifyIndex == before + 1)
                #expect(try await store.allocation(id: allocations[1].id)?.modifyIndex == before + 1)
                // A redelivery of the whole batch changes nothing.
                #expect(try await store.record([report(allocations[0], .running, 2), report(allocations[1], .running, 1)]).changed == 0)
            }
        }
    }

    /// Time is given, never read: the sweep runs at chosen instants, without sleeping.
    @Test func aSilentNodeGoesDownAtItsDeadlineItsJobsAreEvaluatedAndAHeartbeatBringsItBack() async throws {
        try await withFreshDatabase { url in
            let database = try Database(url: url, logger: Logger(label: "test"))
            try await withClient(database.client) {
                try await database.migrate()
                let store = ClusterStore(database: database, heartbeatPolicy: HeartbeatPolicy(minimumTTL: .seconds(10), grace: .seconds(5)))
                let processor = EvaluationProcessor(store: store)
                let t0 = Date(timeIntervalSince1970: 1_900_000_000)
                try await store.register(node: testNode("n1"), at: t0)
                let eval = try await store.register(smallJob("web")).evalID
                #expect(try await processor.process(evalID: eval) == .applied(placed: 1, stopped: 0, queued: 0))

                // Registered at t0 with the minimum TTL: up until t0 + 10 + 5.
                #expect(try await store.expireNodes(at: t0.addingTimeInterval(14.9)).isEmpty)
                let beat = NodeHeartbeat(nodeID: "n1", sequence: 1, agentStartedAt: t0)
                #expect(try await store.heartbeat(beat, at: t0.addingTimeInterval(10), ttl: .seconds(20)) == .ready)
                #expect(try await store.expireNodes(at: t0.addingTimeInterval(34.9)).isEmpty, "the heartbeat moved the deadline to t0 + 35")
                // A redelivered heartbeat and a repeated registration leave the deadline where it is
                // (the next line shows it unmoved).
                #expect(try await store.heartbeat(beat, at: t0.addingTimeInterval(20), ttl: .seconds(20)) == .ready)
                #expect(try await store.register(node: testNode("n1"), at: t0.addingTimeInterval(30)).isEmpty)
                #expect(try await store.expireNodes(at: t0.addingTimeInterval(35)) == ["n1"])
                #expect(try await store.expireNodes(at: t0.addingTimeInterval(100)).isEmpty, "down once")
                #expect(try await store.node(id: "n1")?.status == .down)
                let update = try #require(try await store.evaluations(jobID: "web").first { $0.triggeredBy == Evaluation.Trigger.nodeUpdate })
                #expect(try await processor.process(evalID: update.id) == .applied(placed: 0, stopped: 1, queued: 1))
                #expect(try await store.allocations(jobID: "web").map(\.clientStatus) == [.lost])

                // Back: ready again, and the lost allocation is sent to stop once more.
                let outbox = try await count("drover_outbox", in: database)
                var next = beat
                next.sequence = 2
                #expect(try await store.heartbeat(next, at: t0.addingTimeInterval(200), ttl: .seconds(20)) == .ready)
                #expect(try await store.node(id: "n1")?.status == .ready)
                #expect(try await count("drover_outbox", in: database) > outbox)
                #expect(try await store.allocations(jobID: "web").map(\.clientStatus) == [.lost], "lost stays lost")
            }
        }
    }

    @Test func taskOutputIsStoredOnceInOrderWhateverOrderItArrivesInAndCappedOldestFirst() async throws {
        try await withFreshDatabase { url in
            let database = try Database(url: url, logger: Logger(label: "test"))
            try await withClient(database.client) {
                try await database.migrate()
                func chunk(_ offset: Int64, _ text: String) -> TaskOutputChunk {
                    TaskOutputChunk(nodeID: "n1", allocID: "a1", task: "t", stream: .stdout, offset: offset, data: Data(text.utf8))
                }
                // "hello world!" in three pieces: the last first, one twice.
                #expect(try await TaskOutput.append(chunk(6, "world"), cap: 100, database: database))
                let gap = try await TaskOutput.read(allocID: "a1", task: "t", stream: .stdout, from: 0, database: database)
                #expect(gap.offset == 6, "nothing before the first chunk that arrived")
                #expect(try await TaskOutput.append(chunk(0, "hello "), cap: 100, database: database))
                #expect(!(try await TaskOutput.append(chunk(0, "hello "), cap: 100, database: database)), "a redelivery is stored once")
                #expect(try await TaskOutput.append(chunk(11, "!"), cap: 100, database: database))
                let all = try await TaskOutput.read(allocID: "a1", task: "t", stream: .stdout, from: 0, database: database)
                #expect(all.offset == 0 && String(decoding: all.data, as: UTF8.self) == "hello world!")
                let middle = try await TaskOutput.read(allocID: "a1", task: "t", stream: .stdout, from: 8, database: database)
                #expect(middle.offset == 8 && String(decoding: middle.data, as: UTF8.self) == "rld!")
                #expect(
                    try await TaskOutput.info(allocID: "a1", task: "t", stream: .stdout, database: database) == .init(startOffset: 0, endOffset: 12))

                // Over the cap the oldest chunks go.
                #expect(try await TaskOutput.append(chunk(12, " and more"), cap: 15, database: database))
                let capped = try await TaskOutput.read(allocID: "a1", task: "t", stream: .stdout, from: 0, database: database)
                #expect(capped.offset == 6 && String(decoding: capped.data, as: UTF8.self) == "world! and more")
                #expect(
                    try await TaskOutput.info(allocID: "a1", task: "t", stream: .stdout, database: database) == .init(startOffset: 6, endOffset: 21))
            }
        }
    }

    @Test func aDrainingNodeCannotBeMadeEligibleUntilItsDrainIsCancelled() async throws {
        try await withFreshDatabase { url in
            let database = try Database(url: url, logger: Logger(label: "test"))
            try await withClient(database.client) {
                try await database.migrate()
                let store = ClusterStore(database: database)
                try await store.register(node: testNode("n1"))
                _ = try await store.drain(nodeID: "n1", spec: DrainSpec(deadline: 3_600_000_000_000), markEligible: false)
                let node = try #require(try await store.node(id: "n1"))
                #expect(node.drain && node.schedulingEligibility == .ineligible && node.lastDrain?.status == .draining)
                let refused = await #expect(throws: ClusterStoreError.self) { try await store.setEligibility(nodeID: "n1", eligible: true) }
                #expect(refused.map { "\($0)" }?.contains("is draining") == true)
                await #expect(throws: ClusterStoreError.notFound(kind: "node", id: "none")) {
                    try await store.drain(nodeID: "none", spec: nil, markEligible: true)
                }
                _ = try await store.drain(nodeID: "n1", spec: nil, markEligible: true)
                let cancelled = try #require(try await store.node(id: "n1"))
                #expect(!cancelled.drain && cancelled.schedulingEligibility == .eligible && cancelled.lastDrain?.status == .canceled)
                // Nothing ran there: the next pass of the drainer has nothing to complete.
                #expect(try await store.advanceDrains(at: Date()).isEmpty)
            }
        }
    }
}

struct BodyFailed: Error {}
