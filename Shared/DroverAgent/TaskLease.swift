import DroverModel
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The lease that keeps a node's tasks running while their agent is gone.
///
/// The agent writes `<data-dir>/lease` each time the control plane answers it. Each task that
/// must not run on without the control plane (what ``ClientDisconnect`` would stop) has a
/// watchdog beside it, in its wrapper, that outlives the agent. It reads the lease twice a
/// second, and when the lease has run out it stops the task's process group and records the task
/// as fenced, with the reason. A task that is fenced has stopped before its node could be declared
/// down, so it never runs beside its replacement. An agent that comes back in time renews the
/// lease with the next answer, and the task runs on.
///
/// The times are hundredths of a second of the boot-time clock (`/proc/uptime`), which wall-clock
/// changes do not move. The boot's id (`/proc/sys/kernel/random/boot_id`) comes first: a lease of an earlier boot
/// fences nothing, since none of that boot's tasks survived it.
enum TaskLease {
    /// The lease's one line: `<boot id> <answered> <gone> <earliest>`, in hundredths of a second
    /// of the boot-time clock (what `/proc/uptime` counts in).
    /// - `answered`: the answer's time. A group's `StopAfterClientDisconnect` counts from it.
    /// - `gone`: when a batch task must have ended. The control plane declares the node down, and
    ///   starts a replacement, no sooner than `ttl + grace` after the heartbeat that this answers
    ///   reached it. 2 s come off for the answer's trip back and the watchdog's half-second check.
    /// - `earliest`: no batch task is fenced before it, half the grace past the next heartbeat's
    ///   due time, so a living agent that answers on time never loses its tasks.
    ///
    /// A batch task is fenced at `gone` less its kill timeout (the time it may take to end after
    /// SIGTERM), but not before `earliest`. `answered` and `earliest` are rounded up and `gone`
    /// down, which keeps each bound on its safe side.
    static func line(bootID: String, answeredAt: Duration, ttl: Duration, grace: Duration) -> String {
        let ttl = max(ttl, .zero)
        let grace = max(grace, .zero)
        let gone = answeredAt + ttl + grace - .seconds(2)
        let earliest = answeredAt + ttl + grace / 2
        return "\(bootID) \(hundredths(answeredAt, up: true)) \(hundredths(gone, up: false)) \(hundredths(earliest, up: true))\n"
    }

    /// `duration` in hundredths of a second, rounded up or down.
    private static func hundredths(_ duration: Duration, up: Bool) -> Int64 {
        let (seconds, attoseconds) = duration.components
        let unit: Int64 = 10_000_000_000_000_000
        var whole = seconds * 100 + attoseconds / unit
        let rest = attoseconds % unit
        if up && rest > 0 { whole += 1 }
        if !up && rest < 0 { whole -= 1 }
        return whole
    }

    /// What the task's watchdog is told: `down` (fenced at the lease's batch deadline), a number
    /// of seconds after the last answer, or nil when the task is not fenced at all (a service
    /// with no `StopAfterClientDisconnect`, which runs on as it does with a living agent).
    static func fenceAfter(type: JobType, stopAfter: Int64?) -> String? {
        if let stopAfter {
            // Whole seconds, rounded up; a hostile value cannot trap.
            let nanoseconds = max(stopAfter, 0)
            return String(nanoseconds / 1_000_000_000 + (nanoseconds % 1_000_000_000 == 0 ? 0 : 1))
        }
        return type == .batch ? "down" : nil
    }

    /// The boot-time clock: time since boot, suspend included.
    static func bootTime() -> Duration {
        var now = timespec()
        clock_gettime(CLOCK_BOOTTIME, &now)
        return .seconds(now.tv_sec) + .nanoseconds(now.tv_nsec)
    }

    /// This boot's id, or nil where the kernel does not say.
    static let bootID: String? = (try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8))
        .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.flatMap { $0.isEmpty ? nil : $0 }

    /// The file an agent keeps its lease in.
    static func file(in dataDirectory: URL) -> URL { dataDirectory.appendingPathComponent("lease") }

    /// Writes the lease after an answer that asked for a heartbeat every `ttl`, with `grace`
    /// past it, whole or not at all.
    static func renew(_ file: URL, ttl: Duration, grace: Duration) throws {
        guard let bootID else { return }
        try FileReplacement.replace(file.path, with: Data(line(bootID: bootID, answeredAt: bootTime(), ttl: ttl, grace: grace).utf8))
    }

    /// The watchdog, run by the task's wrapper (`bash`) as a subshell in the background, so that
    /// `$$` is the wrapper's pid, which leads the task's process group. It closes every inherited
    /// descriptor above 2 (one of them tells the agent that the wrapper has ended, and `sh` cannot
    /// close those past 9), waits half a second at a time on a pipe of its own (no process started
    /// for it) and ends when the wrapper or the task has. What is left of the task after its kill
    /// timeout gets SIGKILL: its process group, and every process that carries its mark
    /// (``TaskProcess/marker``), as the agent's own stop does.
    static let watchdog = #"""
        trap '' TERM INT
        for fd in /proc/self/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null; done
        read -r boot < /proc/sys/kernel/random/boot_id
        exec {tick}<> <(:)
        while :; do
          read -r -t 0.5 -u "$tick"
          kill -0 "$$" 2>/dev/null || exit 0
          [ -e "$DROVER_EXIT_FILE" ] && exit 0
          read -r owner answered gone earliest < "$DROVER_LEASE_FILE" 2>/dev/null || continue
          [ "$owner" = "$boot" ] || continue
          if [ "$DROVER_FENCE_AFTER" = down ]; then
            deadline=$((gone - DROVER_KILL_TIMEOUT * 100))
            [ "$deadline" -lt "$earliest" ] 2>/dev/null && deadline=$earliest
          else
            deadline=$((answered + DROVER_FENCE_AFTER * 100))
          fi
          read -r now _ < /proc/uptime
          now=${now/./}
          now=$((10#$now))
          [ "$now" -lt "$deadline" ] 2>/dev/null && continue
          echo "no answer from the control plane for $(((now - answered) / 100))s: stopped before its node could be declared down" > "$DROVER_FENCE_FILE"
          kill -TERM -- "-$$" 2>/dev/null
          read -r -t "$DROVER_KILL_TIMEOUT" -u "$tick"
          for environ in /proc/[0-9]*/environ; do
            pid=${environ#/proc/}; pid=${pid%/environ}
            [ "$pid" = "$BASHPID" ] && continue
            grep -qzxF "DROVER_TASK=$DROVER_TASK" "$environ" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
          done
          kill -KILL -- "-$$" 2>/dev/null
          exit 0
        done
        """#

    /// Where a fenced task's reason is, if it was fenced.
    static func fenceReason(_ file: URL) -> String? {
        (try? String(contentsOf: file, encoding: .utf8)).map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
    }
}
