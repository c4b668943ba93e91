import DroverModel

/// A task's restarts under its group's `RestartPolicy`, as Nomad's client counts them: at most
/// `Attempts` restarts per `Interval`, each after `Delay`; past that the task fails (mode
/// `fail`) or waits for the next interval (mode `delay`). A batch task that exits 0 is done.
/// Pure: time is passed in, so the runner sleeps for what this returns and tests need no clock.
struct RestartTracker: Sendable {
    enum Decision: Sendable, Equatable {
        /// The task succeeded: a batch task that exited 0.
        case done
        /// Start it again after this long.
        case restart(after: Duration)
        /// It has failed for good; the reason is the task event's message.
        case fail(String)
    }

    let policy: RestartPolicy
    let type: JobType
    private(set) var attempts = 0
    private var windowStart: ContinuousClock.Instant

    init(policy: RestartPolicy, type: JobType, now: ContinuousClock.Instant) {
        self.policy = policy
        self.type = type
        self.windowStart = now
    }

    /// The task exited with `code` at `now`: what to do next.
    mutating func exited(code: Int32, at now: ContinuousClock.Instant) -> Decision {
        if type == .batch && code == 0 { return .done }
        let interval = Duration.nanoseconds(max(0, policy.interval ?? 0))
        if now - windowStart > interval {
            attempts = 0
            windowStart = now
        }
        var wait = Duration.nanoseconds(max(0, policy.delay ?? 0))
        if attempts >= policy.attempts ?? 0 {
            guard policy.mode == "delay" else { return .fail("Exceeded allowed attempts \(policy.attempts ?? 0) in interval \(interval)") }
            wait = max(wait, windowStart + interval - now)
            attempts = 0
            windowStart = now + wait
        }
        attempts += 1
        return .restart(after: wait)
    }
}
