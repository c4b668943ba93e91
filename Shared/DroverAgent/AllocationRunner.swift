import DroverModel
import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// What the agent keeps on disk for one allocation, so that a restarted agent knows what it runs.
struct AllocationRecord: Codable {
    struct TaskRecord: Codable {
        var pid: Int32?
        var startTicks: UInt64?
        var state: TaskState
        enum CodingKeys: String, CodingKey {
            case pid = "Pid", startTicks = "StartTicks", state = "State"
        }
    }

    var allocation: Allocation
    var clientStatus: Allocation.ClientStatus
    var clientDescription: String
    var tasks: [String: TaskRecord]
    /// Numbers the reports about this allocation, across agent restarts.
    var reports: Int64?

    enum CodingKeys: String, CodingKey {
        case allocation = "Allocation", clientStatus = "ClientStatus", clientDescription = "ClientDescription", tasks = "Tasks"
        case reports = "Reports"
    }

    /// What changes as the allocation runs: the record but its allocation.
    private struct Progress: Encodable {
        var clientStatus: Allocation.ClientStatus
        var clientDescription: String
        var tasks: [String: TaskRecord]
        var reports: Int64?
        enum CodingKeys: String, CodingKey {
            case clientStatus = "ClientStatus", clientDescription = "ClientDescription", tasks = "Tasks", reports = "Reports"
        }
    }

    /// The record as JSON (keys sorted), with `allocation`, the allocation already encoded:
    /// the allocation (with its job) never changes and is most of the record, so it is encoded
    /// once, not on every change of state.
    func encoded(allocation: Data) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let progress = try encoder.encode(
            Progress(clientStatus: clientStatus, clientDescription: clientDescription, tasks: tasks, reports: reports))
        // "Allocation" sorts before every other key: `{"Allocation":…,` and the rest of the object.
        var data = Data(#"{"Allocation":"#.utf8)
        data.append(allocation)
        data.append(UInt8(ascii: ","))
        data.append(progress.dropFirst())
        return data
    }
}

/// Runs one allocation: every task of its group, each restarted per the group's RestartPolicy,
/// and reports each change of state. Nomad's directory layout: `<alloc>/alloc/logs/<task>.stdout.0`,
/// `<alloc>/<task>/local`.
actor AllocationRunner {
    let directory: URL
    /// The users `exec` tasks may run as.
    let execUsers: ExecUsers
    private var record: AllocationRecord
    private var processes: [String: TaskProcess] = [:]
    private var loops: [String: Task<Void, Never>] = [:]
    private var stopping = false
    /// Whether the allocation's directory is known to exist.
    private var directoryMade = false
    /// The allocation, encoded the first time the record is saved.
    private var encodedAllocation: Data?
    private let nodeID: String
    private let datacenter: String
    private let report: @Sendable (AllocationStatusReport) -> Void
    private let logger: Logger
    /// The agent's lease (``TaskLease``): tasks that must not outlive it are fenced by it. Nil
    /// runs every task unfenced.
    private let leaseFile: URL?

    var allocation: Allocation { record.allocation }
    var clientStatus: Allocation.ClientStatus { record.clientStatus }

    init(
        record: AllocationRecord, directory: URL, nodeID: String, datacenter: String, execUsers: ExecUsers = ExecUsers(), leaseFile: URL? = nil,
        logger: Logger, report: @escaping @Sendable (AllocationStatusReport) -> Void
    ) {
        self.execUsers = execUsers
        self.leaseFile = leaseFile
        self.record = record
        self.directory = directory
        self.nodeID = nodeID
        self.datacenter = datacenter
        var logger = logger
        logger[metadataKey: "alloc_id"] = "\(record.allocation.id)"
        logger[metadataKey: "job_id"] = "\(record.allocation.jobID)"
        self.logger = logger
        self.report = report
    }

    private var group: TaskGroup? { record.allocation.job?.group(named: record.allocation.taskGroup) }

    // MARK: Starting and recovering

    /// Starts every task of a new allocation.
    func start() {
        guard let group else {
            finish(.failed, "the allocation carries no task group '\(record.allocation.taskGroup)'")
            return
        }
        for task in group.tasks {
            record.tasks[task.name] = AllocationRecord.TaskRecord(
                state: TaskState(state: .pending, events: [event("Received", "Task received by client")]))
        }
        publish()
        for task in group.tasks { loops[task.name] = Task { await self.run(task, adopted: nil) } }
    }

    /// Picks up an allocation a previous agent ran: a task still running is adopted; one that
    /// ended meanwhile continues as if the agent had seen it end (its exit code is on disk); one
    /// that left no trace makes the allocation lost.
    func recover() {
        // Say where it stands (once): a report lost while the agent was down is sent again.
        guard !record.clientStatus.isTerminal, let group else { return publish() }
        for task in group.tasks {
            guard let taskRecord = record.tasks[task.name], taskRecord.state.state != .dead else { continue }
            let exitFile = paths(task.name).exit
            if let reason = TaskLease.fenceReason(paths(task.name).fence) {
                // Its watchdog stopped it while the agent was away: its allocation has been
                // replaced, so it is lost, never run again here.
                return fenced(task.name, reason: reason)
            }
            if let pid = taskRecord.pid, let ticks = taskRecord.startTicks,
                let process = TaskProcess(adopting: pid, startTicks: ticks, exitFile: exitFile)
            {
                logger.info("Task still running after agent restart; adopted", metadata: ["task": "\(task.name)", "pid": "\(pid)"])
                processes[task.name] = process
                loops[task.name] = Task { await self.run(task, adopted: process) }
            } else if taskRecord.pid != nil, let code = TaskProcess.recordedExitCode(exitFile) {
                loops[task.name] = Task { await self.run(task, adopted: nil, alreadyExited: code) }
            } else if let process = TaskProcess(adoptingMarked: exitFile) {
                // Started, but the agent stopped before it recorded the pid: found by its mark.
                logger.info(
                    "Task started before the agent stopped found by its mark; adopted", metadata: ["task": "\(task.name)", "pid": "\(process.pid)"])
                processes[task.name] = process
                record.tasks[task.name]?.pid = process.pid
                record.tasks[task.name]?.startTicks = process.startTicks
                record.tasks[task.name]?.state.state = .running
                loops[task.name] = Task { await self.run(task, adopted: process) }
            } else {
                stopping = true
                for process in processes.values { process.signal(SIGKILL) }
                return finish(.lost, "task \(task.name) was not running when the agent restarted")
            }
        }
        publish()
    }

    // MARK: Stopping

    /// Stops every task: SIGTERM to its processes (its group and all that carry its mark),
    /// SIGKILL to those left after the task's KillTimeout, including children that ignore
    /// SIGTERM or left the group, so that nothing of it outlives the allocation.
    func stop(description: String, status: Allocation.ClientStatus = .complete) async {
        guard !stopping, !record.clientStatus.isTerminal else { return }
        stopping = true
        for (name, process) in processes {
            append(name, event("Killing", "Sent interrupt. Waiting \(timeoutText(name)) before force killing"))
            process.signal(SIGTERM)
        }
        publish()
        await withTaskGroup(of: Void.self) { group in
            for (name, process) in processes {
                let timeout = taskSpec(name)?.killTimeoutNanoseconds ?? 5_000_000_000
                group.addTask {
                    let deadline = ContinuousClock.now + .nanoseconds(min(max(timeout, 0), JobLimits.killTimeout))
                    let killer = Task {
                        try await Task.sleep(until: deadline)
                        process.signal(SIGKILL)
                    }
                    _ = await process.exitCode()
                    killer.cancel()
                    // The task's main process has gone; what it left behind gets the rest of
                    // the timeout, then SIGKILL.
                    while process.anyLeft, ContinuousClock.now < deadline {
                        try? await Task.sleep(for: .milliseconds(50))
                    }
                    if process.anyLeft { process.signal(SIGKILL) }
                }
            }
        }
        for loop in loops.values { loop.cancel() }
        for name in record.tasks.keys where record.tasks[name]?.state.state != .dead {
            let finishedAt = record.tasks[name]?.state.finishedAt ?? Self.rfc3339()
            record.tasks[name]?.state.state = .dead
            record.tasks[name]?.state.finishedAt = finishedAt
            append(name, event("Killed", "Task successfully killed"))
        }
        finish(status, description)
    }

    /// Whether the allocation has finished for good (its last report made).
    var isFinished: Bool { record.clientStatus.isTerminal }

    /// The allocation, while it has not finished and is not being stopped.
    func runningAllocation() -> Allocation? {
        stopping || record.clientStatus.isTerminal ? nil : record.allocation
    }

    private func taskSpec(_ task: String) -> JobTask? { group?.tasks.first { $0.name == task } }

    private func timeoutText(_ task: String) -> String {
        "\(Double(taskSpec(task)?.killTimeoutNanoseconds ?? 5_000_000_000) / 1e9)s"
    }

    // MARK: The task loop

    private func run(_ task: JobTask, adopted: TaskProcess?, alreadyExited: Int32? = nil) async {
        var restarts = RestartTracker(
            policy: group?.restartPolicy ?? RestartPolicy(attempts: 0, interval: 0, delay: 0, mode: "fail"),
            type: record.allocation.job?.jobType ?? .service, now: .now)
        var current = adopted
        var pendingExit = alreadyExited
        while !stopping {
            let code: Int32
            if let exited = pendingExit {
                code = exited
                pendingExit = nil
            } else {
                if current == nil {
                    do {
                        current = try launch(task)
                    } catch {
                        append(task.name, event("Driver Failure", "failed to start task: \(error)"))
                        taskDead(task.name, failed: true, exitCode: nil)
                        return
                    }
                }
                guard let process = current else { return }
                code = await process.exitCode()
                processes[task.name] = nil
                current = nil
            }
            if stopping { return }
            if let reason = TaskLease.fenceReason(paths(task.name).fence) {
                // Stopped by its watchdog while this agent had no answers: never restarted here.
                return fenced(task.name, reason: reason, exitCode: code)
            }
            record.tasks[task.name]?.pid = nil
            append(task.name, event("Terminated", "Exit Code: \(code)", exitCode: Int(code)))
            switch restarts.exited(code: code, at: .now) {
            case .done:
                taskDead(task.name, failed: false, exitCode: Int(code))
                return
            case .fail(let reason):
                append(task.name, event("Not Restarting", reason))
                taskDead(task.name, failed: true, exitCode: Int(code))
                return
            case .restart(let wait):
                record.tasks[task.name]?.state.restarts += 1
                record.tasks[task.name]?.state.state = .pending
                append(task.name, event("Restarting", "Task restarting in \(wait)"))
                publish()
                try? await Task.sleep(for: wait)
            }
        }
    }

    private func launch(_ task: JobTask) throws -> TaskProcess {
        let paths = paths(task.name)
        // An exec task runs as its user: it owns its own directories (and the shared data
        // directory), never the allocation's, where the agent keeps its state and exit codes.
        var owner: (uid: uid_t, gid: gid_t)?
        if task.driver == "exec" { owner = try execUsers.check(task.user ?? "nobody") }
        // Parents first, each one mkdir: FileManager's intermediate directories cost a stat of
        // every component. Modes are set outright, whatever the umask.
        let data = paths.allocDir.appendingPathComponent("data")
        for (directory, mode, owned) in [
            (directory, 0o755, false), (paths.control, 0o700, false), (paths.allocDir, 0o755, false), (paths.logs, 0o755, false),
            (data, 0o777, false), (paths.taskDir, 0o755, true), (paths.local, 0o755, true),
        ] as [(URL, mode_t, Bool)] {
            guard mkdir(directory.path, mode) == 0 || errno == EEXIST else { throw POSIXError.fromErrno() }
            guard chmod(directory.path, mode) == 0 else { throw POSIXError.fromErrno() }
            if owned, let owner { guard chown(directory.path, owner.uid, owner.gid) == 0 else { throw POSIXError.fromErrno() } }
        }
        let allocation = record.allocation
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("DROVER_") }
        let resources = task.taskResources
        let nomad: [String: String] = [
            "NOMAD_ALLOC_ID": allocation.id, "NOMAD_ALLOC_INDEX": String(allocation.index), "NOMAD_ALLOC_NAME": allocation.name,
            "NOMAD_JOB_ID": allocation.jobID, "NOMAD_JOB_NAME": allocation.job?.jobName ?? allocation.jobID,
            "NOMAD_GROUP_NAME": allocation.taskGroup, "NOMAD_TASK_NAME": task.name, "NOMAD_ALLOC_DIR": paths.allocDir.path,
            "NOMAD_TASK_DIR": paths.local.path, "NOMAD_CPU_LIMIT": String(resources.cpu), "NOMAD_MEMORY_LIMIT": String(resources.memoryMB),
            "NOMAD_DC": datacenter, "NOMAD_REGION": allocation.job?.region ?? "global",
            "NOMAD_NAMESPACE": allocation.job?.namespace ?? "default", "NOMAD_NODE_ID": nodeID,
        ]
        environment.merge(nomad) { $1 }
        environment.merge(task.env ?? [:]) { $1 }
        var fence: TaskProcess.Fence?
        if let leaseFile, let after = TaskLease.fenceAfter(type: allocation.job?.jobType ?? .service, stopAfter: group?.stopAfterClientDisconnect) {
            if Self.bashAvailable {
                let timeout = min(max(task.killTimeoutNanoseconds, 0), JobLimits.killTimeout)
                fence = TaskProcess.Fence(
                    leaseFile: leaseFile, fenceFile: paths.fence, after: after, killTimeoutSeconds: (timeout + 999_999_999) / 1_000_000_000)
            } else {
                logger.warning("No /bin/bash on this node: the task runs without its lease's fence", metadata: ["task": "\(task.name)"])
            }
        }
        var cgroup: String?
        if task.driver == "exec" {
            cgroup = try ExecDriver.prepareCgroup(allocation: allocation.id, task: task.name, resources: resources)
            environment = LoaderEnvironment.scrubbed(environment)
        }
        let process = try TaskProcess(
            TaskProcess.Launch(
                command: task.config?.command ?? "", args: task.config?.args ?? [], environment: environment, workingDirectory: paths.taskDir,
                stdout: paths.logs.appendingPathComponent("\(task.name).stdout.0"),
                stderr: paths.logs.appendingPathComponent("\(task.name).stderr.0"), exitFile: paths.exit, user: task.user, cgroup: cgroup,
                fence: fence))
        processes[task.name] = process
        record.tasks[task.name]?.pid = process.pid
        record.tasks[task.name]?.startTicks = process.startTicks
        record.tasks[task.name]?.state.state = .running
        record.tasks[task.name]?.state.startedAt = Self.rfc3339()
        append(task.name, event("Started", "Task started by client"))
        logger.debug("Task started", metadata: ["task": "\(task.name)", "pid": "\(process.pid)"])
        publish()
        return process
    }

    private struct Paths {
        var allocDir: URL
        var logs: URL
        var taskDir: URL
        var local: URL
        /// The agent's own directory in the allocation (mode 0700): no task can write there.
        var control: URL
        /// Where the task's exit code is recorded: in ``control``, so a task cannot forge it.
        var exit: URL
        /// Where the task's watchdog records why it fenced the task, in ``control`` too.
        var fence: URL
    }

    private static let bashAvailable = FileManager.default.isExecutableFile(atPath: "/bin/bash")

    private func paths(_ task: String) -> Paths {
        let allocDir = directory.appendingPathComponent("alloc")
        let taskDir = directory.appendingPathComponent(task)
        let control = directory.appendingPathComponent(".drover")
        return Paths(
            allocDir: allocDir, logs: allocDir.appendingPathComponent("logs"), taskDir: taskDir, local: taskDir.appendingPathComponent("local"),
            control: control, exit: control.appendingPathComponent("\(task).exit"), fence: control.appendingPathComponent("\(task).fence"))
    }

    // MARK: State

    private func taskDead(_ name: String, failed: Bool, exitCode: Int?) {
        record.tasks[name]?.state.state = .dead
        record.tasks[name]?.state.failed = failed
        record.tasks[name]?.state.exitCode = exitCode
        record.tasks[name]?.state.finishedAt = Self.rfc3339()
        let states = record.tasks.values.map(\.state)
        if failed {
            // One failed task fails the allocation: stop its siblings.
            stopping = true
            for (sibling, process) in processes where sibling != name {
                append(sibling, event("Sibling Task Failed", "Task's sibling \"\(name)\" failed"))
                process.signal(SIGKILL)
            }
            finish(.failed, "Failed tasks")
        } else if states.allSatisfy({ $0.state == .dead }) {
            finish(.complete, "All tasks have completed")
        } else {
            publish()
        }
    }

    /// Task `name` was fenced by its lease: the allocation is lost, what is left of it killed.
    private func fenced(_ name: String, reason: String, exitCode: Int32? = nil) {
        stopping = true
        append(name, event("Fenced", reason, exitCode: exitCode.map(Int.init)))
        // Every process of the group's tasks, those adopted and those found by their mark.
        for process in processes.values { process.signal(SIGKILL) }
        for task in record.tasks.keys {
            for straggler in TaskProcess.marked(paths(task).exit.path) { kill(straggler, SIGKILL) }
        }
        for sibling in record.tasks.keys where record.tasks[sibling]?.state.state != .dead {
            record.tasks[sibling]?.state.state = .dead
            record.tasks[sibling]?.state.failed = true
            record.tasks[sibling]?.state.finishedAt = Self.rfc3339()
        }
        record.tasks[name]?.state.exitCode = exitCode.map(Int.init)
        record.tasks[name]?.pid = nil
        logger.warning("Task fenced by the agent's lease", metadata: ["task": "\(name)", "reason": "\(reason)"])
        finish(.lost, "task \(name) was fenced: \(reason)")
    }

    private func finish(_ status: Allocation.ClientStatus, _ description: String) {
        record.clientStatus = status
        record.clientDescription = description
        logger.info("Allocation finished", metadata: ["client_status": "\(status.rawValue)"])
        publish()
    }

    private func append(_ task: String, _ event: TaskEvent) {
        record.tasks[task]?.state.events.append(event)
        if record.tasks[task]?.state.events.count ?? 0 > 20 { record.tasks[task]?.state.events.removeFirst() }
    }

    private func event(_ type: String, _ message: String, exitCode: Int? = nil) -> TaskEvent {
        TaskEvent(type: type, time: Date().unixNanoseconds, displayMessage: message, exitCode: exitCode)
    }

    /// Saves the record and reports the allocation's state.
    private func publish() {
        if record.clientStatus == .pending, record.tasks.values.contains(where: { $0.state.state == .running }) {
            record.clientStatus = .running
            record.clientDescription = "Tasks are running"
        }
        record.reports = (record.reports ?? 0) + 1
        save()
        report(
            AllocationStatusReport(
                nodeID: nodeID, allocID: record.allocation.id, clientStatus: record.clientStatus, clientDescription: record.clientDescription,
                taskStates: record.tasks.mapValues(\.state), sequence: record.reports ?? 0))
    }

    /// Writes `state.json` whole or not at all (a new file renamed over the old one), for a
    /// restarted agent to read. It is not flushed to disk: it has to outlive the agent, not the
    /// machine, whose tasks would be gone with it (their node goes down and they are replaced).
    private func save() {
        do {
            if !directoryMade {
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                directoryMade = true
            }
            if encodedAllocation == nil {
                let encoder = JSONEncoder()
                encoder.outputFormatting = .sortedKeys
                encodedAllocation = try encoder.encode(record.allocation)
            }
            let file = directory.appendingPathComponent("state.json").path
            try FileReplacement.replace(file, with: try record.encoded(allocation: encodedAllocation ?? Data()))
        } catch {
            logger.error("Could not save allocation state", metadata: ["error": "\(error)"])
        }
    }

    static func rfc3339(_ date: Date = Date()) -> String { date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)) }
}

/// The isolating driver: a cgroup v2 group per task with the task's CPU and memory as limits,
/// and the task's user (default `nobody`).
enum ExecDriver {
    static func prepareCgroup(allocation: String, task: String, resources: Resources) throws -> String {
        if let problem = Drivers.execUnavailable() { throw DriverError(problem) }
        let root = Drivers.cgroupRoot + "/drover"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try "+cpu +memory".write(toFile: Drivers.cgroupRoot + "/cgroup.subtree_control", atomically: false, encoding: .utf8)
        try "+cpu +memory".write(toFile: root + "/cgroup.subtree_control", atomically: false, encoding: .utf8)
        let path = "\(root)/\(allocation)-\(task)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try "\(resources.memoryMB * 1_048_576)".write(toFile: path + "/memory.max", atomically: false, encoding: .utf8)
        // CPU as a share of the machine: MHz asked over MHz per core, as a quota per 100 ms.
        let quota = max(1000, Int(Double(resources.cpu) / Double(Fingerprint.cpuMHz()) * 100_000))
        try "\(quota) 100000".write(toFile: path + "/cpu.max", atomically: false, encoding: .utf8)
        return path
    }
}

struct DriverError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
