public import Foundation

/// A time-based or dependent job, with Chronos's fields and names (`name`, `command`,
/// `schedule`, `parents`, …), so that Chronos clients read and write it unchanged. Each run is a
/// batch job of its own (``runJob(due:extraArguments:)``).
public struct ScheduledJob: Codable, Sendable, Equatable {
    /// The job's name, unique; Chronos's key.
    public var name: String
    /// The command each run runs.
    public var command: String
    /// Its arguments, when it is not run with a shell.
    public var arguments: [String]
    /// Run `command` with `/bin/sh -c` (Chronos's default), or as an executable with `arguments`.
    public var shell: Bool
    /// `R[n]/<start>/<period>` or a cron expression; empty for a dependent job.
    public var schedule: String
    /// IANA time zone the schedule is read in; empty for UTC.
    public var scheduleTimeZone: String
    /// Jobs whose latest runs must all have succeeded before this one runs.
    public var parents: [String]
    /// How late a run may still start (ISO 8601 duration); empty for no bound.
    public var epsilon: String
    /// `run-once` (default), `skip` or `catch-up:N`: what becomes of runs missed while no
    /// scheduler could start them.
    public var missedRuns: String
    /// No new run while the previous one is still going.
    public var prohibitOverlap: Bool
    /// Times a failed run is tried again.
    public var retries: Int
    /// The owner, by Chronos's custom an e-mail address; failed runs name it.
    public var owner: String
    /// The owner's name.
    public var ownerName: String
    /// What the job is for, in words.
    public var description: String
    /// Whether runs are held back.
    public var disabled: Bool
    /// Cores each run needs.
    public var cpus: Double
    /// MB.
    public var mem: Double
    /// MB.
    public var disk: Double
    /// The environment of each run.
    public var environmentVariables: [EnvironmentVariable]
    /// Chronos constraints: `[attribute, "EQUALS" | "LIKE" | "UNLIKE", value]`.
    public var constraints: [[String]]
    /// For a Nomad periodic job: the job each run copies, instead of a command.
    public var template: Job?

    // Kept by the control plane.
    /// Runs that succeeded.
    public var successCount: Int
    /// Runs that failed (after their retries).
    public var errorCount: Int
    /// ISO 8601, empty when never.
    public var lastSuccess: String
    /// ISO 8601 time of the last failure, empty when never.
    public var lastError: String
    /// Runs failed in a row since the last success.
    public var errorsSinceLastSuccess: Int

    /// One environment variable of a run, as Chronos writes it.
    public struct EnvironmentVariable: Codable, Sendable, Equatable {
        /// The variable's name.
        public var name: String
        /// Its value.
        public var value: String

        /// The variable `name` set to `value`.
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }

        enum CodingKeys: String, CodingKey, CaseIterable {
            case name, value
        }
    }

    /// A job with every field given; counts and times start empty.
    public init(
        name: String, command: String, schedule: String = "", parents: [String] = [], scheduleTimeZone: String = "", arguments: [String] = [],
        shell: Bool = true
    ) {
        self.name = name
        self.command = command
        self.arguments = arguments
        self.shell = shell
        self.schedule = schedule
        self.scheduleTimeZone = scheduleTimeZone
        self.parents = parents
        self.epsilon = ""
        self.missedRuns = "run-once"
        self.prohibitOverlap = false
        self.retries = 2
        self.owner = ""
        self.ownerName = ""
        self.description = ""
        self.disabled = false
        self.cpus = 0.1
        self.mem = 128
        self.disk = 256
        self.environmentVariables = []
        self.constraints = []
        self.template = nil
        self.successCount = 0
        self.errorCount = 0
        self.lastSuccess = ""
        self.lastError = ""
        self.errorsSinceLastSuccess = 0
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, command, arguments, shell, schedule, scheduleTimeZone, parents, epsilon, missedRuns, prohibitOverlap, retries, owner,
            ownerName, description, disabled, cpus, mem, disk, environmentVariables, constraints, template, successCount, errorCount,
            lastSuccess, lastError, errorsSinceLastSuccess
    }

    /// Chronos's defaults for what is left out (`shell` true, `retries` 2, `cpus` 0.1, `mem` 128,
    /// `disk` 256); what the control plane keeps starts at zero.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(name: try container.decode(String.self, forKey: .name), command: try container.decodeIfPresent(String.self, forKey: .command) ?? "")
        arguments = try container.decodeIfPresent([String].self, forKey: .arguments) ?? []
        shell = try container.decodeIfPresent(Bool.self, forKey: .shell) ?? true
        schedule = try container.decodeIfPresent(String.self, forKey: .schedule) ?? ""
        scheduleTimeZone = try container.decodeIfPresent(String.self, forKey: .scheduleTimeZone) ?? ""
        parents = try container.decodeIfPresent([String].self, forKey: .parents) ?? []
        epsilon = try container.decodeIfPresent(String.self, forKey: .epsilon) ?? ""
        missedRuns = try container.decodeIfPresent(String.self, forKey: .missedRuns) ?? "run-once"
        prohibitOverlap = try container.decodeIfPresent(Bool.self, forKey: .prohibitOverlap) ?? false
        retries = try container.decodeIfPresent(Int.self, forKey: .retries) ?? 2
        owner = try container.decodeIfPresent(String.self, forKey: .owner) ?? ""
        ownerName = try container.decodeIfPresent(String.self, forKey: .ownerName) ?? ""
        description = try container.decodeIfPresent(String.self, forKey: .description) ?? ""
        disabled = try container.decodeIfPresent(Bool.self, forKey: .disabled) ?? false
        cpus = try container.decodeIfPresent(Double.self, forKey: .cpus) ?? 0.1
        mem = try container.decodeIfPresent(Double.self, forKey: .mem) ?? 128
        disk = try container.decodeIfPresent(Double.self, forKey: .disk) ?? 256
        environmentVariables = try container.decodeIfPresent([EnvironmentVariable].self, forKey: .environmentVariables) ?? []
        constraints = try container.decodeIfPresent([[String]].self, forKey: .constraints) ?? []
        template = try container.decodeIfPresent(Job.self, forKey: .template)
        successCount = try container.decodeIfPresent(Int.self, forKey: .successCount) ?? 0
        errorCount = try container.decodeIfPresent(Int.self, forKey: .errorCount) ?? 0
        lastSuccess = try container.decodeIfPresent(String.self, forKey: .lastSuccess) ?? ""
        lastError = try container.decodeIfPresent(String.self, forKey: .lastError) ?? ""
        errorsSinceLastSuccess = try container.decodeIfPresent(Int.self, forKey: .errorsSinceLastSuccess) ?? 0
    }

    /// What a client may set, with what the control plane keeps taken from `kept`.
    public func keeping(statsOf kept: ScheduledJob?) -> ScheduledJob {
        var job = self
        job.successCount = kept?.successCount ?? 0
        job.errorCount = kept?.errorCount ?? 0
        job.lastSuccess = kept?.lastSuccess ?? ""
        job.lastError = kept?.lastError ?? ""
        job.errorsSinceLastSuccess = kept?.errorsSinceLastSuccess ?? 0
        return job
    }

    /// The name of run `due` as a batch job: `<name>-periodic-<Unix milliseconds>` (Nomad's
    /// children are `<name>/periodic-<seconds>`, but a job id here has no `/`, and two runs by
    /// hand may fall in one second), so a run is registered once whoever registers it.
    public static func runJobID(name: String, due: Date) -> String {
        "\(name)-periodic-\(Int64((due.timeIntervalSince1970 * 1000).rounded(.down)))"
    }

    /// A run as a batch job: one task running the command with the job's resources,
    /// environment and constraints, restarted `retries` times on failure.
    /// - Parameters:
    ///   - due: when the run was due; it names the run (``runJobID(name:due:)``).
    ///   - extraArguments: appended to this run's command (Chronos's `?arguments=`).
    public func runJob(due: Date, extraArguments: [String] = []) -> Job {
        if var child = template {
            child.id = Self.runJobID(name: name, due: due)
            child.parentID = name
            child.periodic = nil
            child.stop = nil
            child.status = nil
            child.version = nil
            child.meta = (child.meta ?? [:]).merging(
                ["drover.schedule.parent": name, "drover.schedule.due": due.formatted(Date.ISO8601FormatStyle())]) { $1 }
            return child
        }
        let command = shell ? "/bin/sh" : self.command
        let args = shell ? ["-c", ([self.command] + arguments + extraArguments).joined(separator: " ")] : arguments + extraArguments
        var task = JobTask(
            name: "run", command: command, args: args,
            resources: Resources(cpu: max(1, Int((cpus * 1000).rounded())), memoryMB: max(1, Int(mem.rounded())), diskMB: max(0, Int(disk.rounded())))
        )
        if !environmentVariables.isEmpty {
            task.env = Dictionary(environmentVariables.map { ($0.name, $0.value) }) { _, last in last }
        }
        var group = TaskGroup(name: "run", count: 1, tasks: [task])
        group.restartPolicy = RestartPolicy(attempts: retries, interval: 86_400_000_000_000, delay: 1_000_000_000, mode: "fail")
        group.reschedulePolicy = ReschedulePolicy(attempts: 0, interval: 0, delay: 0, unlimited: false)
        var job = Job(id: Self.runJobID(name: name, due: due), type: .batch, taskGroups: [group])
        job.parentID = name
        job.constraints = constraints.compactMap(Self.constraint)
        job.meta = ["drover.schedule.parent": name, "drover.schedule.due": due.formatted(Date.ISO8601FormatStyle()), "owner": owner]
        return job
    }

    /// A Chronos constraint as Nomad's: `EQUALS` is `=`, `LIKE` and `UNLIKE` are regular
    /// expressions; the attribute is a node attribute, or `hostname`.
    static func constraint(_ parts: [String]) -> Constraint? {
        guard parts.count == 3 else { return nil }
        let target = parts[0] == "hostname" ? "${attr.unique.hostname}" : "${attr.\(parts[0])}"
        switch parts[1] {
        case "EQUALS": return Constraint(target, "=", parts[2])
        case "LIKE": return Constraint(target, "regexp", "^(\(parts[2]))$")
        case "UNLIKE": return Constraint(target, "!=", parts[2])
        default: return nil
        }
    }

    /// Every reason to refuse it, by Chronos's field names. The schedule itself is read by the
    /// schedule core; here its size is bounded.
    public func validate() -> [FieldError] {
        var errors: [FieldError] = []
        func check(_ condition: Bool, _ field: String, _ reason: @autoclosure () -> String) {
            if !condition { errors.append(FieldError(field, reason())) }
        }
        check(Self.isName(name), "name", "must be 1-100 letters, digits, '_' or '-'")
        check((template != nil || !command.isEmpty) && command.utf8.count <= 65_536, "command", "must be 1-65536 bytes")
        check(arguments.count <= 256 && arguments.allSatisfy { $0.utf8.count <= 4096 }, "arguments", "at most 256, each at most 4096 bytes")
        check(schedule.utf8.count <= 256, "schedule", "must be at most 256 bytes")
        check(scheduleTimeZone.utf8.count <= 64, "scheduleTimeZone", "must be at most 64 bytes")
        check(parents.count <= 100 && parents.allSatisfy(Self.isName), "parents", "at most 100 job names")
        check(!parents.contains(name), "parents", "a job cannot be its own parent")
        check(schedule.isEmpty != parents.isEmpty, "schedule", "give a schedule (POST /iso8601) or parents (POST /dependency), not both")
        check(epsilon.utf8.count <= 64, "epsilon", "must be an ISO 8601 duration such as PT60S")
        check((0...100).contains(retries), "retries", "must be 0-100")
        for (field, text) in [("owner", owner), ("ownerName", ownerName)] { check(text.utf8.count <= 1024, field, "must be at most 1024 bytes") }
        check(description.utf8.count <= 65_536, "description", "must be at most 65536 bytes")
        check(cpus.isFinite && cpus > 0 && cpus <= 1024, "cpus", "must be more than 0 and at most 1024")
        check(mem.isFinite && mem >= 1 && mem <= Double(Resources.maximumTotal), "mem", "must be 1-\(Resources.maximumTotal) MB")
        check(disk.isFinite && disk >= 0 && disk <= Double(Resources.maximumTotal), "disk", "must be 0-\(Resources.maximumTotal) MB")
        check(
            environmentVariables.count <= 256
                && environmentVariables.allSatisfy { !$0.name.isEmpty && $0.name.utf8.count <= 256 && $0.value.utf8.count <= 65_536 },
            "environmentVariables", "at most 256, each a name of 1-256 bytes and a value of at most 65536")
        check(
            constraints.count <= 64
                && constraints.allSatisfy { $0.count == 3 && ["EQUALS", "LIKE", "UNLIKE"].contains($0[1]) && $0[0].utf8.count <= 256 },
            "constraints", "each is [attribute, EQUALS|LIKE|UNLIKE, value], at most 64")
        return errors
    }

    /// A job name: it becomes a job id and a routing-key word.
    public static func isName(_ text: String) -> Bool {
        let scalars = text.unicodeScalars
        guard !scalars.isEmpty, scalars.count <= 100 else { return false }
        return scalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == "-"
        }
    }
}

extension ScheduledJob {
    /// The scheduled job behind Nomad periodic job `job`: its children copy it.
    public static func periodic(_ job: Job) -> ScheduledJob? {
        guard let periodic = job.periodic, periodic.enabled else { return nil }
        var scheduled = ScheduledJob(
            name: job.id, command: "", schedule: periodic.spec, scheduleTimeZone: periodic.timeZone == "UTC" ? "" : periodic.timeZone)
        scheduled.prohibitOverlap = periodic.prohibitOverlap
        scheduled.retries = 0
        scheduled.description = "Nomad periodic job \(job.id)"
        scheduled.template = job
        return scheduled
    }
}
