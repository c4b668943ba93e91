public import Foundation

/// What happens to runs that were due while nothing could start them (every scheduler was down,
/// or the schedule starts in the past).
public enum MissedRuns: Sendable, Hashable, CustomStringConvertible {
    /// The latest due run starts now; the earlier ones are skipped. The default.
    case runOnce
    /// Only a run no later than the epsilon (a minute when the job sets none) starts.
    case skip
    /// The last `n` due runs start (those within the epsilon, if the job sets one), oldest first.
    case catchUp(Int)

    /// `run-once`, `skip` or `catch-up:N` (N from 1 to ``Firing/maximumCatchUp``).
    public init?(_ text: String) {
        switch text {
        case "", "run-once": self = .runOnce
        case "skip": self = .skip
        default:
            guard text.hasPrefix("catch-up:"), let count = Int(text.dropFirst("catch-up:".count)), (1...Firing.maximumCatchUp).contains(count)
            else { return nil }
            self = .catchUp(count)
        }
    }

    public var description: String {
        switch self {
        case .runOnce: "run-once"
        case .skip: "skip"
        case .catchUp(let count): "catch-up:\(count)"
        }
    }
}

/// How a job's due runs are decided.
public struct FiringPolicy: Sendable, Hashable {
    public var missed: MissedRuns
    /// How late a run may still start (Chronos's `epsilon`); nil: however late, for `runOnce`
    /// and `catchUp`, and a minute for `skip`.
    public var epsilon: ISO8601Duration?
    /// No new run while the previous one is still going (Nomad's `ProhibitOverlap`).
    public var prohibitOverlap: Bool

    public init(missed: MissedRuns = .runOnce, epsilon: ISO8601Duration? = nil, prohibitOverlap: Bool = false) {
        self.missed = missed
        self.epsilon = epsilon
        self.prohibitOverlap = prohibitOverlap
    }
}

/// A scheduled job's state as the firing core reads it.
public struct FiringState: Sendable, Hashable {
    /// When the next run is due; nil when none is.
    public var nextDue: Date?
    /// Runs left (`Rn`); nil for ever.
    public var remaining: Int?
    /// Whether a run of the job is still going.
    public var running: Bool

    public init(nextDue: Date?, remaining: Int? = nil, running: Bool = false) {
        self.nextDue = nextDue
        self.remaining = remaining
        self.running = running
    }
}

/// One due time that did not run, and why.
public struct SkippedRun: Sendable, Hashable {
    public var due: Date
    public var reason: String

    public init(due: Date, reason: String) {
        self.due = due
        self.reason = reason
    }
}

/// What to do at a tick: runs to start (by due time), runs skipped with their reasons, and the
/// job's next state.
public struct FiringDecision: Sendable, Hashable {
    public var runs: [Date]
    public var skipped: [SkippedRun]
    /// More due times were skipped than are listed (a long outage of a frequent schedule).
    public var skippedBeyondListed: Bool
    public var next: FiringState
    /// The repetitions are used up: the job is disabled.
    public var exhausted: Bool

    public static func nothing(_ state: FiringState) -> FiringDecision {
        FiringDecision(runs: [], skipped: [], skippedBeyondListed: false, next: state, exhausted: false)
    }
}

/// The firing core: (schedule, state, policy, now) → runs to start, runs skipped and the next
/// due time. Each due time is consumed once, run or skipped, and counts down `Rn`.
public enum Firing {
    public static let maximumCatchUp = 1000
    /// Due times looked at in one decision; a longer backlog is skipped in one entry.
    public static let maximumListed = 1000

    public static func decide(_ schedule: Schedule, _ state: FiringState, policy: FiringPolicy, now: Date) -> FiringDecision {
        guard let first = state.nextDue, first <= now else { return .nothing(state) }
        if let remaining = state.remaining, remaining <= 0 {
            return FiringDecision(
                runs: [], skipped: [], skippedBeyondListed: false, next: FiringState(nextDue: nil, remaining: 0, running: state.running),
                exhausted: true)
        }
        // Every due time up to now, within the repetitions left.
        var due = [first]
        var beyond = false
        while let last = due.last, let next = schedule.next(after: last), next <= now {
            if let remaining = state.remaining, due.count >= remaining { break }
            if due.count >= maximumListed - 1 {
                // A longer backlog: the rest is skipped as one, but the latest due time is the
                // one a policy looks at.
                beyond = true
                if let latest = latest(schedule, after: last, through: now) { due.append(latest) }
                break
            }
            due.append(next)
        }
        let tolerance = policy.epsilon.map(\.averageSeconds) ?? (policy.missed == .skip ? 60 : .infinity)
        let lateness = { (time: Date) in now.timeIntervalSince(time) }
        var runs: [Date] = []
        var skipped: [SkippedRun] = []
        let chosen: Set<Date>
        switch policy.missed {
        case .runOnce, .skip:
            chosen = lateness(due[due.count - 1]) <= tolerance ? [due[due.count - 1]] : []
        case .catchUp(let count):
            chosen = Set(due.suffix(count).filter { lateness($0) <= tolerance })
        }
        for time in due {
            if chosen.contains(time) {
                if policy.prohibitOverlap && (state.running || !runs.isEmpty) {
                    skipped.append(SkippedRun(due: time, reason: "the previous run is still going (ProhibitOverlap)"))
                } else {
                    runs.append(time)
                }
            } else if lateness(time) > tolerance && time == due.last {
                skipped.append(
                    SkippedRun(due: time, reason: "\(Int(lateness(time))) s late, past its epsilon of \(policy.epsilon?.description ?? "PT60S")"))
            } else {
                skipped.append(SkippedRun(due: time, reason: "missed while no scheduler could start it (\(policy.missed) policy)"))
            }
        }
        let consumed = due.count
        let remaining = state.remaining.map { max(0, $0 - consumed) }
        // The next due time after the backlog (past `now`, so nothing is looked at twice).
        let nextDue = remaining == 0 ? nil : schedule.next(after: max(now, due[due.count - 1]))
        return FiringDecision(
            runs: runs, skipped: skipped, skippedBeyondListed: beyond,
            next: FiringState(nextDue: nextDue, remaining: remaining, running: state.running || !runs.isEmpty),
            exhausted: remaining == 0 || nextDue == nil)
    }

    /// The last due time in `(after, through]`, found by looking back from `through` over a
    /// window that doubles (a second, two, four, …) instead of walking the whole backlog.
    static func latest(_ schedule: Schedule, after: Date, through: Date) -> Date? {
        var window = 1.0
        while window < through.timeIntervalSince(after) * 2 {
            if var found = schedule.next(after: max(after, through.addingTimeInterval(-window))), found <= through {
                while let next = schedule.next(after: found), next <= through { found = next }
                return found
            }
            window *= 2
        }
        return nil
    }
}
