import DroverHealth
import DroverModel
import Foundation
import Testing

@Suite struct HeartbeatPolicyTests {
    @Test(arguments: [
        (0, 0.0, 10.0),  // an empty fleet still gets the minimum
        (100, 0.0, 10.0),  // 100 nodes ÷ 50/s = 2 s, below the minimum
        (1000, 0.0, 20.0),  // 1000 ÷ 50 = 20 s
        (10_000, 0.0, 200.0),
        (1000, 0.5, 30.0),  // stagger adds up to the base again
        (0, 0.999, 19.99),
        (0, 7.0, 20.0),  // a stagger out of range is clamped
    ])
    func ttlScalesWithTheFleet(nodes: Int, stagger: Double, seconds: Double) {
        let ttl = HeartbeatPolicy().ttl(nodeCount: nodes, stagger: stagger)
        #expect(abs(ttl.timeInterval - seconds) < 1e-9, "\(ttl)")
    }
}

@Suite struct NodeLivenessTests {
    let start = Date(timeIntervalSince1970: 1_800_000_000)
    func at(_ seconds: Double) -> Date { start.addingTimeInterval(seconds) }

    @Test func aNodeGoesDownOnlyOnceItsTTLAndGraceHavePassedWithoutAHeartbeat() {
        var node = NodeLiveness(status: .ready, expiresAt: nil)
        #expect(node.check(at: at(1_000)) == nil, "no heartbeat yet, no deadline")
        #expect(node.heartbeat(at: at(0), ttl: .seconds(10), grace: .seconds(10)) == nil)
        #expect(node.expiresAt == at(20))
        #expect(node.check(at: at(19.999)) == nil)
        #expect(node.status == .ready)
        #expect(node.check(at: at(20)) == .wentDown(deadline: at(20)))
        #expect(node.status == .down)
        #expect(node.check(at: at(30)) == nil, "down once, not again")
    }

    @Test func eachHeartbeatPushesTheDeadlineOn() {
        var node = NodeLiveness(status: .ready, expiresAt: nil)
        for beat in stride(from: 0.0, through: 100, by: 10) {
            _ = node.heartbeat(at: at(beat), ttl: .seconds(10), grace: .seconds(5))
            #expect(node.check(at: at(beat + 9.9)) == nil)
        }
        #expect(node.check(at: at(115)) == .wentDown(deadline: at(115)))
    }

    @Test func aHeartbeatFromADownNodeBringsItBack() {
        var node = NodeLiveness(status: .down, expiresAt: at(0))
        #expect(node.heartbeat(at: at(50), ttl: .seconds(10), grace: .seconds(10)) == .cameBack)
        #expect(node.status == .ready && node.expiresAt == at(70))
        #expect(node.heartbeat(at: at(55), ttl: .seconds(10), grace: .seconds(10)) == nil, "already back")
    }

    @Test func anInitializingNodeIsReadyAfterItsFirstHeartbeat() {
        var node = NodeLiveness(status: .initializing, expiresAt: nil)
        #expect(node.heartbeat(at: at(0), ttl: .seconds(1), grace: .seconds(1)) == nil)
        #expect(node.status == .ready)
    }
}

@Suite struct DrainDecisionTests {
    typealias Allocation = DrainDecision.Allocation
    static let noDeadline = DrainStrategy(drainSpec: DrainSpec(), forceDeadline: 0, startedAt: 0)

    @Test func serviceAllocationsAreLeftToTheSchedulerUntilTheDeadline() {
        let allocations = [
            Allocation(id: "web", system: false, wanted: true, running: true),
            Allocation(id: "agent", system: true, wanted: true, running: true),
        ]
        #expect(DrainDecision.next(Self.noDeadline, allocations: allocations, now: 1_000) == .init(stop: [], complete: false))
        let strategy = DrainStrategy(drainSpec: DrainSpec(deadline: 100), forceDeadline: 500, startedAt: 400)
        #expect(DrainDecision.next(strategy, allocations: allocations, now: 499) == .init(stop: [], complete: false))
        #expect(DrainDecision.next(strategy, allocations: allocations, now: 500) == .init(stop: ["web", "agent"], complete: false))
    }

    @Test func systemAllocationsStopLastUnlessIgnored() {
        let allocations = [
            Allocation(id: "old", system: false, wanted: false, running: false),
            Allocation(id: "agent", system: true, wanted: true, running: true),
        ]
        #expect(DrainDecision.next(Self.noDeadline, allocations: allocations, now: 0) == .init(stop: ["agent"], complete: false))
        let ignoring = DrainStrategy(drainSpec: DrainSpec(ignoreSystemJobs: true), forceDeadline: 0, startedAt: 0)
        #expect(DrainDecision.next(ignoring, allocations: allocations, now: 0) == .init(stop: [], complete: true))
    }

    @Test func aDrainCompletesOnlyOnceEveryAllocationHasActuallyStopped() {
        let stopping = [Allocation(id: "web", system: false, wanted: false, running: true)]
        #expect(DrainDecision.next(Self.noDeadline, allocations: stopping, now: 0) == .init(stop: [], complete: false))
        let stopped = [Allocation(id: "web", system: false, wanted: false, running: false)]
        #expect(DrainDecision.next(Self.noDeadline, allocations: stopped, now: 0) == .init(stop: [], complete: true))
        #expect(DrainDecision.next(Self.noDeadline, allocations: [], now: 0).complete)
    }

    @Test(arguments: [(0, 0), (-1, 1_000), (5_000, 6_000), (.max, .max), (.min, 1_000), (.max - 999, .max)] as [(Int64, Int64)])
    func deadlines(deadline: Int64, expected: Int64) {
        #expect(DrainDecision.forceDeadline(for: DrainSpec(deadline: deadline), now: 1_000) == expected)
    }
}

@Suite struct HealthDecisionTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func anUnhealthyNodeIsFlaggedUnlessAKeepaliveHolds() {
        #expect(HealthDecision.decide(healthy: true, keepaliveUntil: nil, now: now) == .none)
        #expect(HealthDecision.decide(healthy: false, keepaliveUntil: nil, now: now) == .makeIneligibleAndFlag)
        let later = now.addingTimeInterval(3600)
        #expect(HealthDecision.decide(healthy: false, keepaliveUntil: later, now: now) == .makeIneligibleAndKeep(until: later))
        #expect(HealthDecision.decide(healthy: false, keepaliveUntil: now, now: now) == .makeIneligibleAndFlag, "an expired keepalive holds nothing")
        #expect(HealthDecision.decide(healthy: false, keepaliveUntil: .distantFuture, now: now) == .makeIneligibleAndKeep(until: .distantFuture))
    }

    @Test(arguments: [(0, true), (254, false), (1, nil), (255, nil)] as [(Int32, Bool?)])
    func exitCodes(code: Int32, verdict: Bool?) {
        #expect(NodeHealthReport.verdict(exitCode: code) == verdict)
    }
}

@Suite struct OutageGraceTests {
    let t0 = Date(timeIntervalSince1970: 1_900_000_000)

    @Test func withoutAnOutageNodesMayGoDownAtAnyTime() {
        #expect(OutageGrace(grace: .seconds(10)).mayMarkNodesDown(at: t0))
    }

    @Test func theGraceRunsFromTheLastOutageSeenAndAnEarlierOneDoesNotShortenIt() {
        var grace = OutageGrace(grace: .seconds(10))
        grace.outage(at: t0)
        grace.outage(at: t0.addingTimeInterval(30))
        grace.outage(at: t0.addingTimeInterval(5))
        #expect(!grace.mayMarkNodesDown(at: t0.addingTimeInterval(39.9)))
        #expect(grace.mayMarkNodesDown(at: t0.addingTimeInterval(40)))
        #expect(grace.holdsUntil == t0.addingTimeInterval(40))
    }
}
