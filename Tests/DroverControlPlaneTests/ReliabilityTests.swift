import DroverHealth
import DroverMessaging
import DroverModel
import DroverStorage
import DroverTestSupport
import Foundation
import Logging
import PostgresNIO
import Synchronization
import Testing

@testable import DroverControlPlane

/// What keeps a lost message or an outage from costing a job: the resender, and the fresh
/// grace period the fleet gets after an outage. Against a real PostgreSQL.
@Suite(.serialized, .enabled(if: TestEnvironment.runsStorageIntegration))
struct ReliabilityTests {
    /// The ids of the evaluations and allocations whose messages wait in the outbox.
    private func outboxTypes(_ database: Database) async throws -> [String] {
        var types: [String] = []
        for try await type in try await database.client.query("SELECT type FROM drover_outbox ORDER BY id", logger: database.logger).decode(
            String.self)
        {
            types.append(type)
        }
        return types
    }

    @Test func whatWentUnansweredIsSentAgainOncePerAge() async throws {
        try await withMigratedDatabase { database in
            let jobs = JobService(database: database)
            let nodes = NodeLifecycle(database: database)
            let processor = EvaluationService(database: database)
            let resender = Resender(database: database, age: .seconds(60))
            try await nodes.register(node: testNode("n1"))
            let placed = try await jobs.register(smallJob("web")).evalID
            #expect(try await processor.process(evalID: placed) == .applied(placed: 1, stopped: 0, queued: 0))
            let pending = try await jobs.register(smallJob("api", cpu: 100)).evalID
            try await database.client.query("DELETE FROM drover_outbox", logger: database.logger)

            // Fresh: nothing is stale yet.
            #expect(try await resender.resend() == ([], []))
            // A minute on, the pending evaluation and the allocation its node never reported are sent again.
            try await database.client.query(
                "UPDATE drover_evaluations SET notified_at = now() - interval '2 minutes'", logger: database.logger)
            try await database.client.query(
                "UPDATE drover_allocations SET notified_at = now() - interval '2 minutes'", logger: database.logger)
            let allocation = try #require(try await database.allocations.list(job: JobKey(id: "web")).first)
            let sent = try await resender.resend()
            #expect(sent.evaluations == [pending] && sent.allocations == [allocation.id])
            #expect(try await outboxTypes(database).sorted() == [AllocationUpdate.messageType, EvaluationPending.messageType].sorted())
            #expect(try await resender.resend() == ([], []), "once per age")

            // Reported running: acknowledged, so never sent again; told to stop and still running: sent again.
            let reports = ReportService(database: database)
            #expect(
                try await reports.record(
                    AllocationStatusReport(nodeID: "n1", allocID: allocation.id, clientStatus: .running, clientDescription: "", taskStates: [:])))
            try await database.client.query(
                "UPDATE drover_allocations SET notified_at = now() - interval '2 minutes'", logger: database.logger)
            #expect(try await resender.resend().allocations.isEmpty)
            let stopping = try await jobs.deregister(JobKey(id: "web"), purge: false).evalID
            _ = try await processor.process(evalID: stopping)
            #expect(try await database.allocations.read(id: allocation.id)?.desiredStatus == .stop)
            #expect(try await resender.resend().allocations.isEmpty, "a change of what is wanted counts as telling the node")
            try await database.client.query(
                "UPDATE drover_allocations SET notified_at = now() - interval '2 minutes'", logger: database.logger)
            #expect(try await resender.resend().allocations == [allocation.id])
        }
    }

    @Test func afterAnOutageNoNodeIsMarkedDownUntilHeartbeatsFlowForTheGracePeriod() async throws {
        try await withMigratedDatabase { database in
            let policy = HeartbeatPolicy(minimumTTL: .seconds(10), grace: .seconds(5))
            let t0 = Date(timeIntervalSince1970: 1_900_000_000)
            let connected = Atomic(true)
            let clock = Mutex(t0)
            let nodes = NodeLifecycle(database: database, heartbeatPolicy: policy, now: { clock.withLock { $0 } })
            let sweep = LivenessSweep(nodes: nodes, logger: Logger(label: "test")) { connected.load(ordering: .relaxed) }
            try await nodes.register(node: testNode("n1"), at: t0)
            try await nodes.register(node: testNode("n2"), at: t0)

            // The broker goes away at t0 + 12, before the deadlines (t0 + 15), and is back at t0 + 20.
            connected.store(false, ordering: .relaxed)
            #expect(try await sweep.sweep(at: t0.addingTimeInterval(12)).isEmpty)
            #expect(try await sweep.sweep(at: t0.addingTimeInterval(19)).isEmpty, "no heartbeat can arrive: nobody goes down")
            connected.store(true, ordering: .relaxed)
            // Back: n1's heartbeat arrives within the fresh grace period; n2 stays silent.
            #expect(try await sweep.sweep(at: t0.addingTimeInterval(20)).isEmpty)
            #expect(
                try await nodes.heartbeat(
                    NodeHeartbeat(nodeID: "n1", sequence: 1, agentStartedAt: t0), at: t0.addingTimeInterval(22), ttl: .seconds(10))
                    == .ready)
            #expect(try await sweep.sweep(at: t0.addingTimeInterval(23.9)).isEmpty, "the grace runs 5 s from the last outage seen, t0 + 19")
            #expect(try await sweep.sweep(at: t0.addingTimeInterval(24)) == ["n2"])
            #expect(try await database.nodes.read(id: "n1")?.status == .ready)
        }
    }

    @Test func pastItsBoundAGroupCommitRefusesAtOnceAndTheRestAreWritten() async throws {
        let release = AsyncStream.makeStream(of: Void.self)
        let commit = GroupCommit<Int, Int>(limit: 10, maximumWaiting: 3) { batch in
            for await _ in release.stream { break }
            return batch.map { .success($0) }
        }
        // The first call is written alone and holds the writer; three more wait; the fifth is refused.
        let first = Task { try await commit.call(0) }
        try await withTimeout(.seconds(10), "the first call writing") { while !commit.isWriting { await Task.yield() } }
        let waiting = (1...3).map { value in Task { try await commit.call(value) } }
        try await withTimeout(.seconds(10), "three calls waiting") { while commit.waitingCount < 3 { await Task.yield() } }
        await #expect(throws: ControlPlaneError.overloaded("3 writes wait already")) { try await commit.call(4) }
        release.continuation.yield()
        #expect(try await first.value == 0)
        release.continuation.yield()
        var written: [Int] = []
        for task in waiting { written.append(try await task.value) }
        #expect(written == [1, 2, 3])
    }
}

/// Nomad's garbage collection, against a real PostgreSQL.
@Suite(.serialized, .enabled(if: TestEnvironment.runsStorageIntegration))
struct GarbageCollectionTests {
    @Test func whatIsOverGoesOnceOldEnoughAndWhatRunsOrIsWantedStays() async throws {
        try await withMigratedDatabase { database in
            let jobs = JobService(database: database)
            let nodes = NodeLifecycle(database: database)
            let processor = EvaluationService(database: database)
            let reports = ReportService(database: database)
            try await nodes.register(node: testNode("n1", cpu: 4000))
            // A batch job that ran and finished.
            var done = smallJob("done", cpu: 100)
            done.type = .batch
            _ = try await processor.process(evalID: try await jobs.register(done).evalID)
            let finished = try #require(try await database.allocations.list(job: JobKey(id: "done")).first)
            #expect(
                try await reports.record(
                    AllocationStatusReport(nodeID: "n1", allocID: finished.id, clientStatus: .complete, clientDescription: "", taskStates: [:])))
            // A service that runs, registered in eight versions.
            for version in 0..<8 {
                var web = smallJob("web", cpu: 100)
                web.meta = ["version": "\(version)"]
                _ = try await processor.process(evalID: try await jobs.register(web).evalID)
            }
            let running = try await database.allocations.list(job: JobKey(id: "web")).filter { $0.desiredStatus == .run }
            #expect(running.count == 1)

            let collector = GarbageCollector(database: database)
            let young = try await collector.collect()
            #expect(young.jobs == 0 && young.evaluations == 0 && young.allocations == 0, "nothing is old enough yet: \(young)")
            #expect(young.jobVersions >= 1, "versions past the newest six go whatever their age")
            let collected = try await collector.collect(forced: true)
            #expect(collected.jobs == 1)
            #expect(try await database.jobs.read(JobKey(id: "done")) == nil)
            #expect(try await database.allocations.list(job: JobKey(id: "done")).isEmpty)
            #expect(try await database.evaluations.list(job: JobKey(id: "done")).isEmpty)
            // The service stays, with its running allocation and the versions it may need.
            #expect(try await database.jobs.read(JobKey(id: "web")) != nil)
            #expect(try await database.allocations.list(job: JobKey(id: "web")).filter { $0.desiredStatus == .run }.map(\.id) == running.map(\.id))
            var versions = 0
            for try await count in try await database.client.query(
                "SELECT count(*)::int8 FROM drover_job_versions WHERE job_id = 'web'", logger: database.logger
            ).decode(Int.self) {
                versions = count
            }
            #expect((6...7).contains(versions), "the newest six, and the one the allocation runs if older: \(versions)")
            #expect(try await collector.collect(forced: true).total == 0, "a second collection finds nothing")
        }
    }
}

/// A batch allocation lost with its node that completed all the same.
@Suite(.serialized, .enabled(if: TestEnvironment.runsStorageIntegration))
struct LateCompletionTests {
    @Test func aLostBatchAllocationReportedCompleteBeforeItsReplacementStartsCountsAndTheReplacementStops() async throws {
        try await withMigratedDatabase { database in
            let nodes = NodeLifecycle(database: database, heartbeatPolicy: HeartbeatPolicy(minimumTTL: .seconds(10), grace: .seconds(5)))
            let jobs = JobService(database: database)
            let processor = EvaluationService(database: database)
            let reports = ReportService(database: database)
            let t0 = Date()
            try await nodes.register(node: testNode("n1"), at: t0)
            var batch = smallJob("batch", cpu: 100)
            batch.type = .batch
            _ = try await processor.process(evalID: try await jobs.register(batch).evalID)
            let original = try #require(try await database.allocations.list(job: JobKey(id: "batch")).first)
            #expect(original.nodeID == "n1")
            try await nodes.register(node: testNode("n2"), at: t0.addingTimeInterval(10))
            // n1 falls silent: down, its allocation lost and replaced on n2 (not started yet).
            #expect(try await nodes.expireNodes(at: t0.addingTimeInterval(16)) == ["n1"])
            let update = try #require(
                try await database.evaluations.list(job: JobKey(id: "batch")).first { $0.triggeredBy == Evaluation.Trigger.nodeUpdate })
            _ = try await processor.process(evalID: update.id)
            let replacement = try #require(try await database.allocations.list(job: JobKey(id: "batch")).first { $0.id != original.id })
            #expect(replacement.nodeID == "n2" && replacement.previousAllocation == original.id)
            #expect(try await database.allocations.read(id: original.id)?.clientStatus == .lost)

            // n1's report that it completed arrives before n2 starts the replacement.
            #expect(
                try await reports.record(
                    AllocationStatusReport(nodeID: "n1", allocID: original.id, clientStatus: .complete, clientDescription: "done", taskStates: [:])))
            let counted = try #require(try await database.allocations.read(id: original.id))
            #expect(counted.clientStatus == .complete && counted.desiredStatus == .run)
            #expect(try await database.allocations.read(id: replacement.id)?.desiredStatus == .stop)
            // The job is done: evaluated again, nothing is placed.
            let again = try await jobs.register(batch).evalID
            #expect(try await processor.process(evalID: again) == .applied(placed: 0, stopped: 0, queued: 0))
        }
    }
}
