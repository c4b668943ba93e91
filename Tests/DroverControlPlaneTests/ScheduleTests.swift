import DroverModel
import DroverStorage
import DroverTestSupport
import Foundation
import Logging
import PostgresNIO
import Testing

@testable import DroverControlPlane

/// Time-based jobs against a real PostgreSQL, with the clock in the test's hands: definitions
/// are checked, `R3` fires three times and disables, two replicas ticking at once fire a due
/// time once, a run fired but never registered is registered by whoever settles, and ended runs
/// are counted.
@Suite(.serialized, .enabled(if: TestEnvironment.runsStorageIntegration))
struct ScheduleUseCaseTests {
    static let start = Date(timeIntervalSince1970: 1_800_000_000)

    static func runs(_ database: Database, _ name: String) async throws -> [String] {
        try await database.schedules.runs(of: name, limit: 100).reversed().map { "\($0.state.rawValue)" }
    }

    @Test func definitionsAreCheckedByField() async throws {
        try await withMigratedDatabase { database in
            let service = ScheduleService(database: database, replica: "a", logger: Logger(label: "test")) { Self.start }
            #expect(await refusedFields { try await service.put(ScheduledJob(name: "j", command: "true", schedule: "R/xx/PT1S")) } == ["schedule"])
            #expect(
                await refusedFields {
                    try await service.put(ScheduledJob(name: "j", command: "true", schedule: "R//PT1S", scheduleTimeZone: "Nowhere/X"))
                }
                    == ["scheduleTimeZone"])
            #expect(await refusedFields { try await service.put(ScheduledJob(name: "j", command: "true", parents: ["ghost"])) } == ["parents"])
            #expect(
                await refusedFields { try await service.put(ScheduledJob(name: "bad.name", command: "", schedule: "R//PT1S")) } == [
                    "name", "command",
                ])
            var epsilon = ScheduledJob(name: "j", command: "true", schedule: "R//PT1S")
            epsilon.epsilon = "soon"
            epsilon.missedRuns = "later"
            #expect(await refusedFields { try await service.put(epsilon) } == ["epsilon", "missedRuns"])
            // What the jobs API would refuse of every run is refused at once.
            var env = ScheduledJob(name: "j", command: "true", schedule: "R//PT1S")
            env.environmentVariables = [.init(name: "A=B", value: "x")]
            #expect(await refusedFields { try await service.put(env) } == ["command"])
            // Parents that would make a cycle are refused.
            try await service.put(ScheduledJob(name: "a", command: "true", schedule: "R//PT1H"))
            try await service.put(ScheduledJob(name: "b", command: "true", parents: ["a"]))
            try await service.put(ScheduledJob(name: "c", command: "true", parents: ["b"]))
            #expect(await refusedFields { try await service.put(ScheduledJob(name: "a", command: "true", parents: ["c"])) } == ["parents"])
            #expect(await refusedFields { try await service.delete(name: "b") } == ["name"], "c depends on it")
            // An empty start is now, kept as an instant.
            let stored = try #require(try await database.schedules.read(name: "a"))
            #expect(stored.job.schedule == "R/2027-01-15T08:00:00Z/PT1H" && stored.nextDue == Self.start.unixNanoseconds)
        }
    }

    @Test func r3FiresThreeTimesOnceEachThenDisables() async throws {
        try await withMigratedDatabase { database in
            let clock = AutoscaleUseCaseTests.Clock()
            clock.time.withLock { $0 = Self.start }
            let first = ScheduleService(database: database, replica: "a", logger: Logger(label: "test")) { clock.now }
            let second = ScheduleService(database: database, replica: "b", logger: Logger(label: "test")) { clock.now }
            try await first.put(ScheduledJob(name: "three", command: "echo hi", schedule: "R3//PT2S"))
            for _ in 0..<4 {
                // Two replicas tick at the same moment: each due time fires once.
                async let a = first.fire()
                async let b = second.fire()
                let fired = try await a + b
                #expect(fired.count <= 1)
                clock.advance(2)
            }
            #expect(try await Self.runs(database, "three") == ["pending", "pending", "pending"])
            let entry = try #require(try await database.schedules.read(name: "three"))
            #expect(entry.disabled && entry.job.disabled && entry.remaining == 0 && entry.nextDue == nil)
            // Each run is a batch job of its own, named after its due time.
            for offset in [0, 2, 4] {
                let id = ScheduledJob.runJobID(name: "three", due: Self.start.addingTimeInterval(Double(offset)))
                let job = try #require(try await database.jobs.read(JobKey(id: id)), "\(id)")
                #expect(job.type == .batch && job.parentID == "three" && job.meta?["drover.schedule.parent"] == "three")
            }
        }
    }

    /// The loop sleeps until the earliest enabled job is due (within a tick): a run fires at its
    /// due time, not up to a tick after it.
    @Test func theLoopWakesWhenTheEarliestEnabledJobIsDue() async throws {
        try await withMigratedDatabase { database in
            let clock = AutoscaleUseCaseTests.Clock()
            clock.time.withLock { $0 = Self.start }
            let service = ScheduleService(database: database, replica: "a", logger: Logger(label: "test")) { clock.now }
            #expect(try await service.untilNextDue() == nil)
            #expect(ScheduleLoop.pause(untilDue: nil, tick: .milliseconds(200)) == .milliseconds(200))
            try await service.put(ScheduledJob(name: "later", command: "true", schedule: "R/2027-01-15T08:00:03Z/PT1H"))
            try await service.put(ScheduledJob(name: "soon", command: "true", schedule: "R/2027-01-15T08:00:00.250Z/PT1H"))
            var off = ScheduledJob(name: "off", command: "true", schedule: "R/2027-01-15T08:00:00Z/PT1H")
            off.disabled = true
            try await service.put(off)
            // The clock stands at 2027-01-15T08:00:00Z.
            let wait = try #require(try await service.untilNextDue())
            #expect(wait > .milliseconds(249) && wait <= .milliseconds(250), "the enabled job due first, not the disabled one: \(wait)")
            #expect(ScheduleLoop.pause(untilDue: wait, tick: .milliseconds(200)) == .milliseconds(200))
            #expect(ScheduleLoop.pause(untilDue: wait, tick: .seconds(1)) == wait)
            clock.advance(5)
            #expect(try await service.untilNextDue() == .zero, "due already: fire now")
            #expect(ScheduleLoop.pause(untilDue: .zero, tick: .seconds(1)) == .milliseconds(10), "not a spin")
        }
    }

    @Test func aMissedBacklogRunsOnceAndARunNeverRegisteredIsRegisteredWhenSettled() async throws {
        try await withMigratedDatabase { database in
            let clock = AutoscaleUseCaseTests.Clock()
            clock.time.withLock { $0 = Self.start }
            let service = ScheduleService(database: database, replica: "a", logger: Logger(label: "test")) { clock.now }
            try await service.put(ScheduledJob(name: "minutely", command: "true", schedule: "R//PT1M"))
            // Nothing ran for ten and a half minutes: the latest due time runs, ten are skipped.
            clock.advance(630)
            #expect(try await service.fire() == [ScheduledJob.runJobID(name: "minutely", due: Self.start.addingTimeInterval(600))])
            #expect(try await Self.runs(database, "minutely") == Array(repeating: "skipped", count: 10) + ["pending"])
            #expect(try await database.schedules.read(name: "minutely")?.nextDue == Self.start.addingTimeInterval(660).unixNanoseconds)

            // A replica that died between its claim and the registration: the run is registered later.
            _ = try await database.transaction { work in
                try await work.schedules.record(
                    [
                        .init(
                            jobName: "minutely", due: Self.start.addingTimeInterval(660).unixNanoseconds, state: .pending,
                            jobID: "minutely-periodic-1800000660000")
                    ],
                    firedBy: "dead", at: clock.now.unixNanoseconds)
            }
            #expect(try await database.jobs.read(JobKey(id: "minutely-periodic-1800000660000")) == nil)
            clock.advance(11)
            try await service.settle()
            #expect(try await database.jobs.read(JobKey(id: "minutely-periodic-1800000660000")) != nil)
        }
    }

    @Test func endedRunsAreCounted() async throws {
        try await withMigratedDatabase { database in
            let clock = AutoscaleUseCaseTests.Clock()
            clock.time.withLock { $0 = Self.start }
            let service = ScheduleService(database: database, replica: "a", logger: Logger(label: "test")) { clock.now }
            let nodes = NodeLifecycle(database: database)
            try await nodes.register(node: testNode("n1", cpu: 4000))
            var definition = ScheduledJob(name: "job", command: "true", schedule: "R//PT1M")
            definition.owner = "ops@example.com"
            try await service.put(definition)
            let reports = ReportService(database: database)
            for (minute, status) in [(0, Allocation.ClientStatus.complete), (1, .failed), (2, .failed)] {
                clock.time.withLock { $0 = Self.start.addingTimeInterval(Double(minute) * 60) }
                let id = try #require(try await service.fire().first)
                for try await eval in try await database.client.query(
                    "SELECT id FROM drover_evaluations WHERE job_id = \(id)", logger: Logger(label: "test")
                )
                .decode(String.self) {
                    _ = try await EvaluationService(database: database).process(evalID: eval)
                }
                let allocation = try #require(try await database.allocations.list(job: JobKey(id: id)).first)
                #expect(try await service.settle() == 0, "still running")
                _ = try await reports.record(
                    AllocationStatusReport(nodeID: "n1", allocID: allocation.id, clientStatus: status, clientDescription: "", taskStates: [:]))
                #expect(try await service.settle() == 1)
            }
            let job = try #require(try await database.schedules.read(name: "job")).job
            #expect(
                job.successCount == 1 && job.errorCount == 2 && job.errorsSinceLastSuccess == 2 && !job.lastSuccess.isEmpty && !job.lastError.isEmpty)
            #expect(try await Self.runs(database, "job") == ["succeeded", "failed", "failed"])
            // Each failure is said on the bus, with the owner, for a notification plugin.
            let failures = try await AutoscaleUseCaseTests.outbox(database).filter { $0 == "cluster.job.job.failed" }
            #expect(failures.count == 2)
        }
    }
}

/// Nomad's periodic jobs on the same schedule core.
@Suite(.serialized, .enabled(if: TestEnvironment.runsStorageIntegration))
struct PeriodicJobTests {
    static func periodic(_ id: String, spec: String, type: JobType = .batch, timeZone: String = "Europe/Berlin") -> Job {
        var job = smallJob(id, cpu: 100)
        job.type = type
        job.periodic = Periodic(spec: spec, prohibitOverlap: true, timeZone: timeZone)
        return job
    }

    @Test func aPeriodicJobIsNeverPlacedItselfAndItsChildrenCopyIt() async throws {
        try await withMigratedDatabase { database in
            let clock = AutoscaleUseCaseTests.Clock()
            clock.time.withLock { $0 = ScheduleUseCaseTests.start }  // 2027-01-15T08:00:00Z, 09:00 in Berlin
            let jobs = JobService(database: database) { clock.now }
            let schedules = ScheduleService(database: database, replica: "a", logger: Logger(label: "test")) { clock.now }
            // Refused: a spec that is not cron, a zone that does not exist, a service job.
            for (job, field) in [
                (Self.periodic("p", spec: "R//PT1M"), "Job.Periodic.Spec"), (Self.periodic("p", spec: "61 * * * *"), "Job.Periodic.Spec"),
                (Self.periodic("p", spec: "* * * * *", timeZone: "Nowhere/X"), "Job.Periodic.TimeZone"),
                (Self.periodic("p", spec: "* * * * *", type: .service), "Job.Type"),
            ] {
                #expect(await refusedFields { _ = try await jobs.register(job) } == [field])
            }
            let registration = try await jobs.register(Self.periodic("nightly", spec: "*/5 * * * *"))
            #expect(registration.evalID == "", "no evaluation: the periodic job is not placed")
            #expect(try await count("drover_evaluations", in: database) == 0)
            let entry = try #require(try await database.schedules.read(name: "nightly"))
            #expect(entry.job.template?.id == "nightly" && entry.nextDue == ScheduleUseCaseTests.start.addingTimeInterval(300).unixNanoseconds)

            clock.advance(300)
            let child = try #require(try await schedules.fire().first)
            let spec = try #require(try await database.jobs.read(JobKey(id: child)))
            #expect(spec.parentID == "nightly" && spec.periodic == nil && spec.taskGroups == entry.job.template?.taskGroups)
            #expect(try await count("drover_evaluations", in: database) == 1, "the child's")
            // Forced: another child now.
            #expect(try await schedules.runNow(name: "nightly").evalID != "")
            // Stopped: its schedule goes with it.
            _ = try await jobs.deregister(JobKey(id: "nightly"), purge: false)
            #expect(try await database.schedules.read(name: "nightly") == nil)
        }
    }
}
