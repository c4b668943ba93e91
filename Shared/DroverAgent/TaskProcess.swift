import DroverModel
import DroverProcess
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One run of a task as an operating-system process, in a process group of its own (Foundation's
/// `Process` starts every child as a group leader), so that stopping it reaches everything it
/// started. What leaves the group (a child that starts its own session, a daemon) is still found:
/// every process of the task carries `DROVER_TASK=<its exit file>` in its environment, inherited
/// by all it starts, and a signal goes to each process that carries it too.
///
/// The task runs under a small `sh` wrapper that records its exit code in a file: a restarted
/// agent, which is no longer the task's parent, still learns how it ended.
final class TaskProcess: Sendable {
    let pid: Int32
    /// The process's start time in clock ticks since boot (/proc/<pid>/stat field 22): with the
    /// pid it names this process, not a later one that reused the pid.
    let startTicks: UInt64
    let exitFile: URL
    private let exit = ExitLatch()
    private let process: Process?

    /// The wrapper around a task: it records the task's exit code in a file, as root where the
    /// task runs as another user. For the exec driver it joins the task's cgroup and runs the
    /// task as its user without capabilities. Fenced by the agent's lease (``TaskLease``), it runs
    /// in `bash`, with the lease's watchdog beside the task, killed once the task has ended.
    static func wrapper(exec: Bool, fenced: Bool) -> String {
        var script = "trap : TERM INT; "
        if exec { script += #"echo $$ > "$DROVER_CGROUP/cgroup.procs" || exit 125; "# }
        if fenced { script += "( " + TaskLease.watchdog + " ) & drover_watchdog=$!; " }
        script +=
            exec
            ? #"setpriv --reuid="$DROVER_USER" --regid="$DROVER_GROUP" --init-groups --inh-caps=-all --bounding-set=-all --no-new-privs -- "$0" "$@"; "#
            : #""$0" "$@"; "#
        script += "code=$?; "
        if fenced { script += #"kill -KILL "$drover_watchdog" 2>/dev/null; "# }
        return script + #"echo "$code" > "$DROVER_EXIT_FILE"; exit "$code""#
    }

    /// What a task's watchdog needs: where the lease and the fence are, when to fence, and how
    /// long the task has between SIGTERM and SIGKILL.
    struct Fence {
        var leaseFile: URL
        var fenceFile: URL
        /// ``TaskLease/fenceAfter(type:stopAfter:)``.
        var after: String
        var killTimeoutSeconds: Int64
    }

    struct Launch {
        var command: String
        var args: [String]
        var environment: [String: String]
        var workingDirectory: URL
        var stdout: URL
        var stderr: URL
        var exitFile: URL
        /// For the exec driver: run as this user, inside this cgroup.
        var user: String?
        var cgroup: String?
        /// When set, the task stops itself once the agent's lease runs out.
        var fence: Fence?
    }

    /// Starts a task. - Throws: when the process cannot be started, with the reason.
    init(_ launch: Launch) throws {
        unlink(launch.exitFile.path)
        // Plain system calls: FileManager.createFile writes a temporary file and renames it.
        let stdout = try Self.openForAppending(launch.stdout.path)
        let stderr = try Self.openForAppending(launch.stderr.path)
        let process = Process()
        var environment = launch.environment
        // Join the cgroup as root, then drop to the task's user for the task alone: the wrapper
        // stays root and records the exit code where the task cannot write.
        if let fence = launch.fence {
            unlink(fence.fenceFile.path)
            environment["DROVER_LEASE_FILE"] = fence.leaseFile.path
            environment["DROVER_FENCE_FILE"] = fence.fenceFile.path
            environment["DROVER_FENCE_AFTER"] = fence.after
            environment["DROVER_KILL_TIMEOUT"] = String(max(fence.killTimeoutSeconds, 1))
        }
        process.executableURL = URL(fileURLWithPath: launch.fence == nil ? "/bin/sh" : "/bin/bash")
        process.arguments = ["-c", Self.wrapper(exec: launch.cgroup != nil, fenced: launch.fence != nil), launch.command] + launch.args
        environment["DROVER_EXIT_FILE"] = launch.exitFile.path
        environment[Self.marker] = launch.exitFile.path
        if let cgroup = launch.cgroup {
            environment["DROVER_CGROUP"] = cgroup
            // Numeric ids: a user's group need not share its name (Debian's nobody is in nogroup).
            let name = launch.user ?? "nobody"
            guard let entry = getpwnam(name) else { throw DriverError("user '\(name)' does not exist on this node") }
            environment["DROVER_USER"] = String(entry.pointee.pw_uid)
            environment["DROVER_GROUP"] = String(entry.pointee.pw_gid)
        }
        process.environment = environment
        process.currentDirectoryURL = launch.workingDirectory
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = stdout
        process.standardError = stderr
        let exit = self.exit
        process.terminationHandler = { finished in
            exit.complete(finished.terminationReason == .uncaughtSignal ? 128 + finished.terminationStatus : finished.terminationStatus)
        }
        // The child starts with the mask of the thread that spawns it, and the agent's threads
        // block most signals: a task would never see its SIGTERM, only the SIGKILL after its
        // kill timeout. Spawn with every signal open, then close them again. A signal sent to the
        // agent in that moment may reach this thread instead of the one that waits for it.
        var open = sigset_t()
        var previous = sigset_t()
        sigemptyset(&open)
        pthread_sigmask(SIG_SETMASK, &open, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        try ProcessLaunch.run(process)
        try? stdout.close()
        try? stderr.close()
        self.pid = process.processIdentifier
        self.startTicks = Self.startTicks(of: process.processIdentifier) ?? 0
        self.exitFile = launch.exitFile
        self.process = process
    }

    /// Opens `path` to append to, made if it is not there: a task's output goes on after what
    /// its earlier runs wrote.
    private static func openForAppending(_ path: String) throws -> FileHandle {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw POSIXError.fromErrno() }
        return FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
    }

    /// Takes over a task that a previous agent started and that still runs.
    init?(adopting pid: Int32, startTicks: UInt64, exitFile: URL) {
        guard Self.startTicks(of: pid) == startTicks else { return nil }
        self.pid = pid
        self.startTicks = startTicks
        self.exitFile = exitFile
        self.process = nil
    }

    /// Takes over a task whose pid was never recorded (the agent stopped between starting it and
    /// writing its state): the leader of the process group that carries the task's mark.
    convenience init?(adoptingMarked exitFile: URL) {
        guard let leader = Self.marked(exitFile.path).first(where: { getpgid($0) == $0 }), let ticks = Self.startTicks(of: leader) else {
            return nil
        }
        self.init(adopting: leader, startTicks: ticks, exitFile: exitFile)
    }

    /// Waits for the process to end. - Returns: its exit code (128 + signal when killed).
    func exitCode() async -> Int32 {
        if process == nil {
            // Not our child: watch /proc until it is gone, then read the code it left.
            while Self.startTicks(of: pid) == startTicks {
                try? await Task.sleep(for: .milliseconds(200))
            }
            return Self.recordedExitCode(exitFile) ?? 137
        }
        return await exit.wait()
    }

    /// The environment variable that marks every process of a task.
    static let marker = "DROVER_TASK"

    /// Sends `signal` to the task's whole process group, and to every process that carries its
    /// mark (those that left the group).
    func signal(_ signal: Int32) {
        _ = kill(-pid, signal)
        for straggler in Self.marked(exitFile.path) { _ = kill(straggler, signal) }
    }

    /// Whether any process of the task is left, in its group or out of it.
    var anyLeft: Bool {
        kill(-pid, 0) == 0 || !Self.marked(exitFile.path).isEmpty
    }

    /// The processes whose environment carries `DROVER_TASK=<mark>`, this agent's own excepted.
    static func marked(_ mark: String) -> [Int32] {
        let wanted = Array("\(marker)=\(mark)".utf8) + [0]
        let own = getpid()
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap { Int32($0) }.filter { pid in
            guard pid != own, let environ = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return false }
            // Each entry ends with a NUL; the mark is an entry of its own.
            var start = environ.startIndex
            while start < environ.endIndex {
                let end = environ[start...].firstIndex(of: 0) ?? environ.endIndex
                if environ[start..<min(end + 1, environ.endIndex)].elementsEqual(wanted) { return true }
                start = end + 1
            }
            return false
        }
    }

    static func recordedExitCode(_ file: URL) -> Int32? {
        (try? String(contentsOf: file, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    static func startTicks(of pid: Int32) -> UInt64? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after the command name: state is field 3, starttime field 22.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, fields[0] != "Z" else { return nil }
        return UInt64(fields[19])
    }
}

/// An exit code that arrives once, for any number of waiters.
final class ExitLatch: Sendable {
    private let state = Mutex<(code: Int32?, waiters: [CheckedContinuation<Int32, Never>])>((nil, []))

    func complete(_ code: Int32) {
        let waiters = state.withLock { state in
            state.code = code
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: code) }
    }

    func wait() async -> Int32 {
        await withCheckedContinuation { continuation in
            let code = state.withLock { state -> Int32? in
                if let code = state.code { return code }
                state.waiters.append(continuation)
                return nil
            }
            if let code { continuation.resume(returning: code) }
        }
    }
}

extension POSIXError {
    /// The error the last failing system call left in `errno`.
    static func fromErrno() -> POSIXError { POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
}
