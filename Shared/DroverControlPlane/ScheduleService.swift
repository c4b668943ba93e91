import DroverCalendar
import DroverMessaging
public import DroverModel
import DroverRuntime
public import DroverStorage
public import Foundation
public import Logging
public import ServiceLifecycle
import Synchronization

/// Time-based jobs: definitions, and the firing of their runs. A tick claims the jobs that are
/// due (`FOR UPDATE SKIP LOCKED`, so any number of replicas fire each due time once), asks the
/// schedule core (``Firing``) what is due under the job's missed-run policy, records each due
/// time as a run or a skip (one row per due time) and moves the job on, in one transaction.
/// Each run is a batch job (``ScheduledJob/runJob(due:)``), registered once the claim commits;
/// its id comes from the due time, so registering it again (after a replica died between the
/// two) changes nothing. ``settle()`` ends runs whose batch job ended and keeps the counts.
public struct ScheduleService: Sendable {
    public let database: Database
    let jobs: JobService
    /// Who fires, recorded with each run (`GET /leader` answers the latest).
    let replica: String
    let now: @Sendable () -> Date
    let logger: Logger

    public init(database: Database, replica: String, logger: Logger, now: @escaping @Sendable () -> Date = { Date() }) {
        self.database = database
        self.jobs = JobService(database: database)
        self.replica = replica
        self.logger = logger
        self.now = now
    }

    /// A run unregistered this long after it fired is registered by whoever settles.
    static let registrationGrace: Int64 = 10_000_000_000

    // MARK: Definitions

    /// Creates or replaces `job` (as Chronos's POST does for a name that exists). Its counts
    /// are kept; its firing state too, unless the schedule changed.
    /// - Throws: ``ControlPlaneError/invalid(_:)`` with every bad field, unknown parents and
    ///   cycles among them included.
    @discardableResult
    public func put(_ submitted: ScheduledJob) async throws -> ScheduledJob {
        var errors = submitted.validate()
        var schedule: Schedule?
        if errors.isEmpty && !submitted.schedule.isEmpty {
            do {
                schedule = try Schedule(parsing: submitted.schedule, timeZone: submitted.scheduleTimeZone)
            } catch {
                errors.append(FieldError(error.field, error.description))
            }
        }
        if !submitted.epsilon.isEmpty && ISO8601Duration(submitted.epsilon) == nil {
            errors.append(FieldError("epsilon", "'\(submitted.epsilon)' is not an ISO 8601 duration such as PT60S"))
        }
        // A run the jobs API would refuse is refused now, not at every due time.
        if errors.isEmpty {
            errors += submitted.runJob(due: now()).validate().map { FieldError("command", "its runs would be refused as jobs: \($0)") }
        }
        if MissedRuns(submitted.missedRuns) == nil {
            errors.append(
                FieldError("missedRuns", "'\(submitted.missedRuns)' is not run-once, skip or catch-up:N (N from 1 to \(Firing.maximumCatchUp))"))
        }
        guard errors.isEmpty else { throw ControlPlaneError.invalid(errors) }
        let time = now()
        return try await database.transaction { work in
            // A job without parents can be in no cycle: only one with parents reads the graph.
            if !submitted.parents.isEmpty {
                let all = Dictionary(try await work.schedules.list().map { ($0.job.name, $0.job.parents) }) { first, _ in first }
                let unknown = submitted.parents.filter { all[$0] == nil }
                guard unknown.isEmpty else { throw ControlPlaneError.invalid([FieldError("parents", "no job is named \(unknown)")]) }
                if let cycle = Self.cycle(from: submitted.name, parents: all.merging([submitted.name: submitted.parents]) { $1 }) {
                    throw ControlPlaneError.invalid([FieldError("parents", "would make a cycle: \(cycle.joined(separator: " → "))")])
                }
            }
            let previous = try await work.schedules.read(name: submitted.name, lock: true)
            let job = submitted.keeping(statsOf: previous?.job)
            var nextDue: Int64?
            var remaining: Int?
            if let previous, previous.job.schedule == job.schedule, previous.job.scheduleTimeZone == job.scheduleTimeZone {
                (nextDue, remaining) = (previous.nextDue, previous.remaining)
            } else if let schedule {
                let resolved = schedule.resolved(now: time)
                // An interval with an empty start starts now; the resolved start is kept.
                var stored = job
                if case .interval(let interval) = resolved.rule { stored.schedule = interval.description }
                // An interval is due from its start, even one in the past (what was missed then
                // follows the missed-run policy); cron from the next match after now.
                switch resolved.rule {
                case .interval(let interval): nextDue = interval.occurrence(0, in: resolved.timeZone)?.unixNanoseconds
                case .cron: nextDue = resolved.next(after: time)?.unixNanoseconds
                }
                remaining = resolved.repetitions
                let index = try await work.nextIndex()
                try await work.schedules.put(stored, nextDue: nextDue, remaining: remaining, index: index)
                try await work.note(
                    ClusterEvent.Kind.scheduleChanged, "Scheduled job \(job.name) \(previous == nil ? "created" : "updated"): \(stored.schedule)",
                    jobID: job.name, at: time)
                return stored
            }
            let index = try await work.nextIndex()
            try await work.schedules.put(job, nextDue: nextDue, remaining: remaining, index: index)
            try await work.note(
                ClusterEvent.Kind.scheduleChanged, "Scheduled job \(job.name) \(previous == nil ? "created" : "updated")", jobID: job.name, at: time)
            return job
        }
    }

    /// The first cycle through `name`'s parents, as names, or nil.
    static func cycle(from name: String, parents: [String: [String]]) -> [String]? {
        var path: [String] = [name]
        var seen: Set<String> = []
        func visit(_ current: String) -> [String]? {
            for parent in parents[current] ?? [] {
                if parent == name { return path + [parent] }
                guard seen.insert(parent).inserted else { continue }
                path.append(parent)
                if let found = visit(parent) { return found }
                path.removeLast()
            }
            return nil
        }
        return visit(name)
    }

    public func delete(name: String) async throws {
        let time = now()
        try await database.transaction { work in
            let children = try await work.schedules.children(of: name).map(\.job.name)
            guard children.isEmpty else {
                throw ControlPlaneError.invalid([
                    FieldError("name", "jobs \(children) depend on '\(name)'; delete them or change their parents first")
                ])
            }
            guard try await work.schedules.delete(name: name) else { throw ControlPlaneError.notFound(kind: "scheduled job", id: name) }
            try await work.note(ClusterEvent.Kind.scheduleChanged, "Scheduled job \(name) deleted", jobID: name, at: time)
        }
    }

    /// Starts a run now, whatever the schedule (Chronos's `PUT /job/{name}`, Nomad's
    /// `periodic/force`). - Returns: the run's batch job's registration.
    /// - Parameter arguments: appended to this run's command (Chronos's `?arguments=`), each
    ///   at most 4096 bytes, 64 at most.
    @discardableResult
    public func runNow(name: String, arguments: [String] = []) async throws -> JobRegistration {
        guard arguments.count <= 64, arguments.allSatisfy({ $0.utf8.count <= 4096 }) else {
            throw ControlPlaneError.invalid([FieldError("arguments", "at most 64, each at most 4096 bytes")])
        }
        let time = now()
        let job = try await database.transaction { work -> Job in
            guard let entry = try await work.schedules.read(name: name, lock: true) else {
                throw ControlPlaneError.notFound(kind: "scheduled job", id: name)
            }
            let run = entry.job.runJob(due: time, extraArguments: arguments)
            try await work.schedules.record(
                [ScheduleRepository.Run(jobName: name, due: time.unixNanoseconds, state: .pending, reason: "run by hand", jobID: run.id)],
                firedBy: replica, at: time.unixNanoseconds)
            return run
        }
        guard let registration = try await register([job]).first else { throw ControlPlaneError.notFound(kind: "scheduled job", id: name) }
        return try registration.get()
    }

    /// Stops the runs of `name` still going (Chronos's `DELETE /task/kill/{name}`); they end
    /// as failed. - Returns: how many were stopped.
    @discardableResult
    public func kill(name: String) async throws -> Int {
        guard try await database.schedules.read(name: name) != nil else { throw ControlPlaneError.notFound(kind: "scheduled job", id: name) }
        var stopped = 0
        for run in try await database.schedules.runs(of: name, limit: 1000) where run.state == .pending {
            guard let id = run.jobID else { continue }
            do {
                _ = try await jobs.deregister(JobKey(id: id), purge: false)
                stopped += 1
            } catch ControlPlaneError.notFound {
                continue
            }
        }
        return stopped
    }

    /// Run durations of `name`, as Chronos's `GET /job/stat/{name}` shows them (milliseconds).
    public func stats(name: String) async throws -> RunStatistics {
        guard try await database.schedules.read(name: name) != nil else { throw ControlPlaneError.notFound(kind: "scheduled job", id: name) }
        return RunStatistics(durations: try await database.schedules.durations(of: name, limit: 10_000).map { Double($0) / 1e6 })
    }

    // MARK: Firing

    /// One tick: fires what is due at the clock's time, at most `limit` jobs.
    /// - Returns: the runs started (their batch job ids).
    @discardableResult
    public func fire(limit: Int = 200) async throws -> [String] {
        let time = now()
        let nanos = time.unixNanoseconds
        let started = try await database.transaction { work -> [Job] in
            let entries = try await work.schedules.lockDue(at: nanos, limit: limit)
            guard !entries.isEmpty else { return [] }
            // One index and one statement for every job of the tick.
            let index = try await work.nextIndex()
            var started: [Job] = []
            var runs: [ScheduleRepository.Run] = []
            var advances: [ScheduleRepository.Advance] = []
            var events: [ClusterEvent] = []
            func note(_ job: String, _ message: String, _ level: NodeLogMessage.Level, _ priority: NodeLogMessage.Priority) {
                events.append(
                    ClusterEvent(time: time, jobID: job, type: ClusterEvent.Kind.scheduleChanged, level: level, priority: priority, message: message))
            }
            for entry in entries {
                let job = entry.job
                guard let schedule = try? Schedule(parsing: job.schedule, timeZone: job.scheduleTimeZone) else {
                    // Checked when stored; a time zone that left the system's database is not.
                    advances.append(.init(name: job.name, nextDue: nil, remaining: entry.remaining, disabled: true))
                    note(job.name, "Scheduled job \(job.name) disabled: its schedule can no longer be read", .error, .high)
                    continue
                }
                let policy = FiringPolicy(
                    missed: MissedRuns(job.missedRuns) ?? .runOnce, epsilon: job.epsilon.isEmpty ? nil : ISO8601Duration(job.epsilon),
                    prohibitOverlap: job.prohibitOverlap)
                let decision = Firing.decide(
                    schedule,
                    FiringState(nextDue: entry.nextDue.map(Date.init(unixNanoseconds:)), remaining: entry.remaining, running: entry.running),
                    policy: policy, now: time)
                for due in decision.runs {
                    let run = job.runJob(due: due)
                    runs.append(.init(jobName: job.name, due: due.unixNanoseconds, state: .pending, jobID: run.id))
                    started.append(run)
                }
                for skipped in decision.skipped {
                    runs.append(.init(jobName: job.name, due: skipped.due.unixNanoseconds, state: .skipped, reason: skipped.reason))
                }
                advances.append(
                    .init(
                        name: job.name, nextDue: decision.next.nextDue?.unixNanoseconds, remaining: decision.next.remaining,
                        disabled: decision.exhausted))
                if !decision.skipped.isEmpty {
                    note(
                        job.name,
                        "Scheduled job \(job.name): \(decision.skipped.count)\(decision.skippedBeyondListed ? "+" : "") run(s) skipped (\(decision.skipped.last?.reason ?? ""))",
                        .warn, .medium)
                }
                if decision.exhausted { note(job.name, "Scheduled job \(job.name) has no run left: disabled", .info, .low) }
            }
            var writes = SQLWrites()
            try work.schedules.record(runs, firedBy: replica, at: nanos, into: &writes)
            try work.schedules.advance(advances, index: index, into: &writes)
            try work.events.record(events, into: &writes)
            try await work.execute(writes)
            return started
        }
        try await register(started)
        return started.map(\.id)
    }

    /// How long until the earliest enabled job is due (zero when one is due already), or nil
    /// when none is.
    public func untilNextDue() async throws -> Duration? {
        guard let due = try await database.schedules.earliestDue() else { return nil }
        let nanos = max(0, due.subtractingReportingOverflow(now().unixNanoseconds).partialValue)
        return .nanoseconds(nanos)
    }

    /// Registers runs' batch jobs; one refused is logged (definitions whose runs would be
    /// refused are refused themselves, so this is a fault).
    @discardableResult
    private func register(_ runs: [Job]) async throws -> [Result<JobRegistration, ControlPlaneError>] {
        guard !runs.isEmpty else { return [] }
        let results = try await jobs.register(runs)
        for (job, result) in zip(runs, results) {
            if case .failure(let error) = result {
                logger.error("A scheduled run's job was refused", metadata: ["job_id": "\(job.id)", "error": "\(error)"])
            }
        }
        return results
    }

    /// Ends runs whose batch job ended (succeeded when an allocation completed, failed
    /// otherwise) and counts them in their job; registers runs a replica fired but did not
    /// register before it stopped. - Returns: the runs it ended.
    @discardableResult
    public func settle(limit: Int = 200) async throws -> Int {
        let time = now()
        let nanos = time.unixNanoseconds
        let (ended, unregistered) = try await database.transaction { work -> (Int, [Job]) in
            var ended = 0
            var unregistered: [Job] = []
            for run in try await work.schedules.lockOpenRuns(limit: limit) {
                guard let entry = try await work.schedules.read(name: run.jobName, lock: true) else { continue }
                if !run.registered {
                    if nanos &- run.createdAt >= Self.registrationGrace {
                        unregistered.append(entry.job.runJob(due: Date(unixNanoseconds: run.due)))
                    }
                    continue
                }
                guard run.live == 0, run.complete + run.failed > 0 else { continue }
                let succeeded = run.complete > 0
                try await work.schedules.finish(
                    jobName: run.jobName, due: run.due, state: succeeded ? .succeeded : .failed,
                    reason: succeeded ? nil : "\(run.failed) allocation(s) failed or lost", at: nanos)
                var job = entry.job
                let stamp = time.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
                if succeeded {
                    job.successCount += 1
                    job.lastSuccess = stamp
                    job.errorsSinceLastSuccess = 0
                    unregistered += try await releaseChildren(of: job.name, in: work, at: time)
                } else {
                    job.errorCount += 1
                    job.lastError = stamp
                    job.errorsSinceLastSuccess += 1
                    work.send(
                        try OutgoingMessage(
                            ScheduledRunFailed(
                                name: job.name, owner: job.owner, ownerName: job.ownerName, jobID: run.jobID, due: Date(unixNanoseconds: run.due),
                                reason: "\(run.failed) allocation(s) failed or lost", errorsSinceLastSuccess: job.errorsSinceLastSuccess),
                            routingKey: RoutingKey.scheduledJob(job.name, "failed")))
                    try await work.note(
                        ClusterEvent.Kind.scheduleChanged, "Scheduled job \(job.name): run \(run.jobID) failed (owner \(job.owner))", level: .error,
                        priority: .high, jobID: job.name, at: time)
                }
                try await work.schedules.updateSpec(job, index: try await work.nextIndex())
                ended += 1
            }
            return (ended, unregistered)
        }
        try await register(unregistered)
        return ended
    }

    /// After a run of `parent` succeeded: each enabled child whose every parent's latest run
    /// (this one included) succeeded runs now. - Returns: their runs' batch jobs.
    private func releaseChildren(of parent: String, in work: UnitOfWork, at time: Date) async throws -> [Job] {
        var released: [Job] = []
        for child in try await work.schedules.children(of: parent) where !child.disabled {
            var ready = true
            for other in child.job.parents where other != parent {
                if try await work.schedules.latestOutcome(of: other) != .succeeded { ready = false }
            }
            guard ready else { continue }
            let run = child.job.runJob(due: time)
            let new = try await work.schedules.record(
                [.init(jobName: child.job.name, due: time.unixNanoseconds, state: .pending, reason: "its parents succeeded", jobID: run.id)],
                firedBy: replica, at: time.unixNanoseconds)
            if new > 0 { released.append(run) }
        }
        return released
    }
}

/// Fires due runs and settles ended ones (every second), in every scheduler replica (the claims
/// keep them from firing a due time twice). It wakes when the earliest job is due, or after
/// `tick` at the latest (a job defined through another replica is seen within a tick), and
/// fires a backlog larger than one claim at once, claim after claim.
public struct ScheduleLoop: Service {
    let service: ScheduleService
    let tick: Duration
    let logger: Logger
    /// Jobs claimed in one transaction.
    let claim: Int

    public init(service: ScheduleService, tick: Duration, logger: Logger, claim: Int = 200) {
        self.service = service
        self.tick = tick
        self.logger = logger
        self.claim = claim
    }

    public func run() async throws {
        let settled = Mutex(ContinuousClock.now)
        let pause = Mutex(tick)
        let (service, tick, claim) = (self.service, self.tick, self.claim)
        await repeatUntilShutdown(every: { pause.withLock { $0 } }, logger: logger, failure: "Scheduled jobs not fired") {
            pause.withLock { $0 = tick }
            while try await service.fire(limit: claim).count >= claim {}
            let due = settled.withLock { last in
                guard ContinuousClock.now - last >= .seconds(1) else { return false }
                last = .now
                return true
            }
            if due { try await service.settle() }
            let wait = try await service.untilNextDue()
            pause.withLock { $0 = Self.pause(untilDue: wait, tick: tick) }
        }
    }

    /// How long the loop sleeps: until the next due time, within a tick, and at least 10 ms (a
    /// job due now that another replica holds is not polled in a spin).
    static func pause(untilDue wait: Duration?, tick: Duration) -> Duration {
        guard let wait else { return tick }
        return max(.milliseconds(10), min(tick, wait))
    }
}

/// Percentiles of run durations, in milliseconds, with Chronos's names.
public struct RunStatistics: Encodable, Sendable, Equatable {
    public var histogram: [String: Double]

    public init(durations: [Double]) {
        let sorted = durations.sorted()
        // Nearest rank.
        func percentile(_ p: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            let rank = Int((p * Double(sorted.count)).rounded(.up))
            return sorted[min(sorted.count - 1, max(0, rank - 1))]
        }
        histogram = [
            "count": Double(sorted.count), "mean": sorted.isEmpty ? 0 : sorted.reduce(0, +) / Double(sorted.count), "median": percentile(0.5),
            "75thPercentile": percentile(0.75), "95thPercentile": percentile(0.95), "98thPercentile": percentile(0.98),
            "99thPercentile": percentile(0.99),
        ]
    }
}

/// The dependency graph of scheduled jobs, as Chronos exports it.
public enum ScheduleGraph {
    /// Graphviz: an edge from each parent to each child.
    public static func dot(_ jobs: [ScheduledJob]) -> String {
        var lines = ["digraph G {"]
        for job in jobs.sorted(by: { $0.name < $1.name }) {
            lines.append("  \"\(job.name)\";")
            for parent in job.parents.sorted() { lines.append("  \"\(parent)\" -> \"\(job.name)\";") }
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }

    /// `node,<name>,<success|failure|fresh>,<running|idle>` and `link,<parent>,<child>` lines.
    public static func csv(_ jobs: [(job: ScheduledJob, running: Bool)]) -> String {
        var lines: [String] = []
        for (job, running) in jobs.sorted(by: { $0.job.name < $1.job.name }) {
            let last =
                job.lastSuccess.isEmpty && job.lastError.isEmpty ? "fresh" : (job.lastSuccess >= job.lastError ? "success" : "failure")
            lines.append("node,\(job.name),\(last),\(running ? "running" : "idle")")
        }
        for (job, _) in jobs.sorted(by: { $0.job.name < $1.job.name }) {
            for parent in job.parents.sorted() { lines.append("link,\(parent),\(job.name)") }
        }
        return lines.joined(separator: "\n") + (lines.isEmpty ? "" : "\n")
    }
}
