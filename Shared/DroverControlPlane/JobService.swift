import DroverCalendar
public import DroverModel
public import DroverStorage
public import Foundation

/// Job registration and deregistration, and stopping one allocation: the use cases of a client
/// that submits work. Each writes the job, the evaluation that acts on it and the message that
/// hands the evaluation to a scheduler in one unit of work.
public struct JobService: Sendable {
    public let database: Database
    let now: @Sendable () -> Date

    public init(database: Database, now: @escaping @Sendable () -> Date = { Date() }) {
        self.database = database
        self.now = now
    }

    /// Registers a new job or a new version of one, with an evaluation and its message, in one
    /// transaction. An unchanged job keeps its version but is evaluated again (as in Nomad).
    /// - Throws: ``ControlPlaneError/invalid(_:)`` when the job does not validate.
    public func register(_ submitted: Job) async throws -> JobRegistration {
        try await register([submitted])[0].get()
    }

    /// Registers jobs as ``register(_:)-(Job)`` does, in one transaction and four round trips
    /// for them all: one index for the batch, their rows locked in id order. A job id given
    /// twice is registered twice, one after the other.
    /// - Returns: one result per job, in order: its registration, or why it was refused
    ///   (``ControlPlaneError/invalid(_:)``).
    public func register(_ submitted: [Job]) async throws -> [Result<JobRegistration, ControlPlaneError>] {
        var results = [Result<JobRegistration, ControlPlaneError>](repeating: .failure(.invalid([])), count: submitted.count)
        var valid: [(position: Int, job: Job)] = []
        for (position, job) in submitted.enumerated() {
            var errors = job.validate()
            // A periodic job's spec is read by the schedule core, in its time zone.
            if errors.isEmpty, let periodic = job.periodic, periodic.enabled {
                do {
                    _ = try Schedule(parsing: periodic.spec, timeZone: periodic.timeZone == "UTC" ? "" : periodic.timeZone)
                    if periodic.spec.hasPrefix("R") { errors.append(FieldError("Job.Periodic.Spec", "must be a cron expression")) }
                } catch {
                    errors.append(FieldError(error.field == "scheduleTimeZone" ? "Job.Periodic.TimeZone" : "Job.Periodic.Spec", error.description))
                }
            }
            if errors.isEmpty {
                var job = job.canonicalized()
                job.stop = false
                valid.append((position, job))
            } else {
                results[position] = .failure(.invalid(errors))
            }
        }
        // Rounds of distinct ids: a row is written once per statement.
        while !valid.isEmpty {
            var round: [(position: Int, job: Job)] = []
            var later: [(position: Int, job: Job)] = []
            var seen: Set<JobKey> = []
            for entry in valid { if seen.insert(entry.job.key).inserted { round.append(entry) } else { later.append(entry) } }
            let registrations = try await registerDistinct(round.map(\.job))
            for (entry, registration) in zip(round, registrations) { results[entry.position] = registration }
            valid = later
        }
        return results
    }

    /// Registers valid, canonical jobs with distinct ids in one transaction; a job whose
    /// namespace is missing or refuses its drivers, or whose id another namespace holds, is
    /// refused alone.
    private func registerDistinct(_ submitted: [Job]) async throws -> [Result<JobRegistration, ControlPlaneError>] {
        let time = now()
        return try await database.transaction { work in
            let (index, previous) = try await work.jobs.takeIndexLocking(submitted.map(\.key))
            let namespaces = try await work.namespaces.holding(Array(Set(submitted.map { $0.namespace ?? Namespace.defaultName })))
            let nanos = time.unixNanoseconds
            var jobs: [Job] = []
            var versions: [Job] = []
            var evals: [Evaluation] = []
            var registrations: [Result<JobRegistration, ControlPlaneError>] = []
            var events: [ClusterEvent] = []
            for var job in submitted {
                let before = previous[job.key]
                let refusals = Self.refusals(of: job, in: namespaces[job.key.namespace])
                guard refusals.isEmpty else {
                    registrations.append(.failure(.invalid(refusals)))
                    continue
                }
                let changed = before.map { $0.spec.userFields != job.userFields } ?? true
                let version = before.map { changed ? $0.version + 1 : $0.version } ?? 0
                job.version = version
                job.submitTime = nanos
                job.createIndex = before?.createIndex ?? index
                job.modifyIndex = index
                job.jobModifyIndex = index
                job.status = nil
                jobs.append(job)
                if changed { versions.append(job) }
                // A periodic job is never placed itself: its schedule runs children; no evaluation.
                if let scheduled = ScheduledJob.periodic(job) {
                    let schedule = try? Schedule(parsing: scheduled.schedule, timeZone: scheduled.scheduleTimeZone)
                    let kept = try await work.schedules.read(name: job.id, lock: true)
                    let nextDue =
                        kept?.job.schedule == scheduled.schedule && kept?.job.scheduleTimeZone == scheduled.scheduleTimeZone
                        ? kept?.nextDue : schedule?.next(after: time)?.unixNanoseconds
                    try await work.schedules.put(scheduled.keeping(statsOf: kept?.job), nextDue: nextDue, remaining: nil, index: index)
                    registrations.append(.success(JobRegistration(evalID: "", jobModifyIndex: index, warnings: "", index: index)))
                } else {
                    // No longer periodic: its schedule goes.
                    let scheduled = job.periodic != nil || previous[job.key]?.spec.periodic != nil
                    if scheduled, job.key.namespace == Namespace.defaultName { _ = try await work.schedules.delete(name: job.id) }
                    let evaluation = Evaluation(id: newID(), for: job, triggeredBy: Evaluation.Trigger.jobRegister, index: index, now: nanos)
                    evals.append(evaluation)
                    registrations.append(.success(JobRegistration(evalID: evaluation.id, jobModifyIndex: index, warnings: "", index: index)))
                }
                events.append(
                    ClusterEvent(
                        time: time, nodeID: nil, jobID: job.id, namespace: job.key.namespace, allocID: nil, type: ClusterEvent.Kind.jobRegistered,
                        level: .info,
                        priority: .low, message: "Job \(job.id) registered (version \(version))"))
            }
            var writes = SQLWrites()
            try work.jobs.upsert(jobs, versions: versions, submitTime: nanos, index: index, into: &writes)
            try work.evaluations.insert(evals, into: &writes)
            try work.events.record(events, into: &writes)
            work.send(try evals.map(Messages.pending))
            try await work.execute(writes)
            return registrations
        }
    }

    /// Why `job` may not be registered in `namespace` (nil: there is no such namespace):
    /// nothing when it may.
    static func refusals(of job: Job, in namespace: Namespace?) -> [FieldError] {
        let name = job.namespace ?? Namespace.defaultName
        guard let namespace else {
            return [FieldError("Job.Namespace", "namespace '\(name)' does not exist; create it with drover namespace apply \(name)")]
        }
        var errors: [FieldError] = []
        // Schedules are keyed by name alone, in the default namespace (as Chronos's jobs are).
        if job.isPeriodicParent, name != Namespace.defaultName {
            errors.append(FieldError("Job.Periodic", "not supported yet outside the default namespace"))
        }
        for (g, group) in job.taskGroups.enumerated() {
            for (t, task) in group.tasks.enumerated() where !(namespace.capabilities?.allows(driver: task.driver) ?? true) {
                errors.append(FieldError("Job.TaskGroups[\(g)].Tasks[\(t)].Driver", "driver '\(task.driver)' is not enabled in namespace '\(name)'"))
            }
        }
        return errors
    }

    /// Stops a job (its allocations are stopped by the evaluation this creates); with `purge`
    /// it is also forgotten. Its blocked evaluations have nothing left to wait for.
    /// - Throws: ``ControlPlaneError/notFound(kind:id:)``.
    public func deregister(_ key: JobKey, purge: Bool) async throws -> JobRegistration {
        let time = now()
        let jobID = key.id
        return try await database.transaction { work in
            guard var job = try await work.jobs.lock(key) else { throw ControlPlaneError.notFound(kind: "job", id: jobID) }
            let index = try await work.nextIndex()
            // A periodic job's schedule stops with it.
            if job.periodic != nil, key.namespace == Namespace.defaultName { _ = try await work.schedules.delete(name: jobID) }
            if purge {
                try await work.jobs.delete(key)
            } else {
                job.stop = true
                job.modifyIndex = index
                job.jobModifyIndex = index
                try await work.jobs.markStopped(job, index: index)
            }
            let eval = Evaluation(id: newID(), for: job, triggeredBy: Evaluation.Trigger.jobDeregister, index: index, now: time.unixNanoseconds)
            var writes = SQLWrites()
            try work.evaluations.cancelBlocked(of: [key], index: index, into: &writes)
            try work.evaluations.insert([eval], into: &writes)
            try work.events.record(
                [
                    ClusterEvent(
                        time: time, nodeID: nil, jobID: jobID, namespace: key.namespace, allocID: nil, type: ClusterEvent.Kind.jobDeregistered,
                        level: .info, priority: .low,
                        message: "Job \(jobID) stopped\(purge ? " and purged" : "")")
                ], into: &writes)
            work.send(try Messages.pending(eval))
            try await work.execute(writes)
            return JobRegistration(evalID: eval.id, jobModifyIndex: index, warnings: "", index: index)
        }
    }

    /// Stops one allocation and evaluates its job, which places a replacement where the job
    /// still wants one (Nomad's `alloc stop`).
    /// - Throws: ``ControlPlaneError/notFound(kind:id:)``.
    public func stopAllocation(id: String) async throws -> JobRegistration {
        let time = now()
        return try await database.transaction { work in
            guard let allocation = try await work.allocations.lock(id) else { throw ControlPlaneError.notFound(kind: "allocation", id: id) }
            let index = try await work.nextIndex()
            if allocation.desiredStatus == .run {
                try await work.stop(allocation, description: "alloc was stopped by a user", markLost: false, index: index, now: time)
            }
            let job = try await work.jobs.spec(allocation.jobKey) ?? Job(key: allocation.jobKey)
            let evals = try await work.evaluate([job], triggeredBy: Evaluation.Trigger.allocStop, index: index, now: time)
            return JobRegistration(evalID: evals[0], jobModifyIndex: job.jobModifyIndex ?? index, warnings: "", index: index)
        }
    }

    /// Per group, the job's allocations counted by client status; allocations still waiting for
    /// room (queued in a blocked evaluation) count as queued. Nil for an unknown job.
    public func summary(_ key: JobKey) async throws -> [String: GroupSummary]? {
        guard let job = try await database.jobs.read(key) else { return nil }
        var summary = Dictionary(job.taskGroups.map { ($0.name, GroupSummary()) }, uniquingKeysWith: { first, _ in first })
        for allocation in try await database.allocations.list(job: key) {
            var group = summary[allocation.taskGroup] ?? GroupSummary()
            switch allocation.clientStatus {
            case .pending: group.starting += 1
            case .running: group.running += 1
            case .complete: group.complete += 1
            case .failed: group.failed += 1
            case .lost: group.lost += 1
            }
            summary[allocation.taskGroup] = group
        }
        for eval in try await database.evaluations.list(job: key) where eval.status == .blocked {
            for (group, count) in eval.queuedAllocations ?? [:] { summary[group, default: GroupSummary()].queued += count }
        }
        return summary
    }
}
