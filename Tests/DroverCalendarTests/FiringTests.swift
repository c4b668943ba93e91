import Foundation
import Testing

@testable import DroverCalendar

/// The firing core with the time passed in: each missed-run policy, the epsilon, overlap, and
/// `Rn` counting down.
struct FiringTests {
    static let start = ScheduleTests.instant("2026-06-01T12:00:00Z")
    static let minutely = try! Schedule(parsing: "R/2026-06-01T12:00:00Z/PT1M")

    static func decide(
        _ policy: FiringPolicy = FiringPolicy(), schedule: Schedule = minutely, due: Date = start, remaining: Int? = nil, running: Bool = false,
        at seconds: Double
    ) -> FiringDecision {
        Firing.decide(
            schedule, FiringState(nextDue: due, remaining: remaining, running: running), policy: policy, now: start.addingTimeInterval(seconds))
    }

    @Test func aRunOnTimeStartsAndTheNextIsDue() {
        let decision = Self.decide(at: 0.2)
        #expect(decision.runs == [Self.start] && decision.skipped.isEmpty)
        #expect(decision.next.nextDue == Self.start.addingTimeInterval(60) && decision.next.running && !decision.exhausted)
        #expect(Self.decide(at: -0.5).runs.isEmpty, "not due yet")
    }

    @Test(arguments: [
        // (policy, epsilon seconds, runs as minutes after the start, skipped count)
        (MissedRuns.runOnce, nil as Double?, [10], 10),
        (.skip, nil, [10], 10),
        (.catchUp(3), nil, [8, 9, 10], 8),
        (.catchUp(100), nil, Array(0...10), 0),
        (.runOnce, 20, [], 11),
        (.catchUp(3), 130, [9, 10], 9),
    ])
    func missedRunsFollowThePolicy(missed: MissedRuns, epsilon: Double?, runs: [Int], skipped: Int) {
        // Down from 12:00 to 12:10:30: eleven runs were due.
        let policy = FiringPolicy(missed: missed, epsilon: epsilon.map { ISO8601Duration(seconds: $0) })
        let decision = Self.decide(policy, at: 630)
        #expect(decision.runs == runs.map { Self.start.addingTimeInterval(Double($0) * 60) })
        #expect(decision.skipped.count == skipped)
        #expect(decision.next.nextDue == Self.start.addingTimeInterval(660), "nothing is looked at twice")
    }

    @Test func skippedRunsSayWhy() {
        let late = Self.decide(FiringPolicy(epsilon: ISO8601Duration(seconds: 30)), at: 45)
        #expect(late.runs.isEmpty && late.skipped == [SkippedRun(due: Self.start, reason: "45 s late, past its epsilon of PT30S")])
        let skip = Self.decide(FiringPolicy(missed: .skip), at: 61)
        #expect(skip.skipped.first?.reason == "missed while no scheduler could start it (skip policy)")
        #expect(Self.decide(FiringPolicy(missed: .skip), at: 59).runs == [Self.start], "on time within a minute")
        let overlap = Self.decide(FiringPolicy(prohibitOverlap: true), running: true, at: 1)
        #expect(overlap.runs.isEmpty && overlap.skipped.first?.reason == "the previous run is still going (ProhibitOverlap)")
        let catchUp = Self.decide(FiringPolicy(missed: .catchUp(3), prohibitOverlap: true), at: 630)
        #expect(catchUp.runs.count == 1, "catching up does not overlap either")
        #expect(Self.decide(FiringPolicy(prohibitOverlap: false), running: true, at: 1).runs == [Self.start])
    }

    @Test func repetitionsCountDownAndDisableAtZero() throws {
        let schedule = try Schedule(parsing: "R3/2026-06-01T12:00:00Z/PT2S")
        var state = FiringState(nextDue: Self.start, remaining: 3)
        var started: [Date] = []
        for second in [0.1, 2.1, 4.1, 6.1] {
            let decision = Firing.decide(schedule, state, policy: FiringPolicy(), now: Self.start.addingTimeInterval(second))
            started += decision.runs
            state = decision.next
            state.running = false
            if decision.exhausted { break }
        }
        #expect(started == [0, 2, 4].map { Self.start.addingTimeInterval($0) })
        #expect(state.remaining == 0 && state.nextDue == nil)
        // A backlog longer than what is left consumes only what is left.
        let backlog = Firing.decide(
            schedule, FiringState(nextDue: Self.start, remaining: 2), policy: FiringPolicy(), now: Self.start.addingTimeInterval(60))
        #expect(backlog.runs.count + backlog.skipped.count == 2 && backlog.exhausted && backlog.next.nextDue == nil)
    }

    @Test func aLongOutageOfAFrequentScheduleIsBounded() throws {
        let secondly = try Schedule(parsing: "R/2026-06-01T12:00:00Z/PT1S")
        let decision = Firing.decide(secondly, FiringState(nextDue: Self.start), policy: FiringPolicy(), now: Self.start.addingTimeInterval(86_400))
        #expect(decision.skippedBeyondListed && decision.skipped.count == Firing.maximumListed - 1)
        #expect(decision.runs == [Self.start.addingTimeInterval(86_400)], "the latest due time, not the last one listed")
        #expect(decision.next.nextDue == Self.start.addingTimeInterval(86_401))
    }

    @Test func missedRunPoliciesReadTheirNames() {
        #expect(MissedRuns("") == .runOnce && MissedRuns("skip") == .skip && MissedRuns("catch-up:5") == .catchUp(5))
        #expect(MissedRuns("catch-up:0") == nil && MissedRuns("catch-up:x") == nil && MissedRuns("later") == nil)
        #expect(MissedRuns.catchUp(5).description == "catch-up:5")
    }
}
