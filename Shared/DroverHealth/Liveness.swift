public import DroverModel
public import Foundation

/// How often nodes heartbeat and how long a silent node stays up, as Nomad reckons it.
///
/// The TTL handed to a node grows with the fleet, so that the control plane never has to take more
/// than `heartbeatsPerSecond` heartbeats in all: TTL = max(`minimumTTL`, nodes ÷
/// `heartbeatsPerSecond`), plus a random stagger of up to the same again, so that nodes that
/// started together do not heartbeat together. A node is down once `grace` has passed after its
/// TTL without a heartbeat.
public struct HeartbeatPolicy: Sendable, Equatable {
    public var minimumTTL: Duration
    public var heartbeatsPerSecond: Double
    public var grace: Duration

    public init(minimumTTL: Duration = .seconds(10), heartbeatsPerSecond: Double = 50, grace: Duration = .seconds(10)) {
        self.minimumTTL = minimumTTL
        self.heartbeatsPerSecond = heartbeatsPerSecond
        self.grace = grace
    }

    /// The TTL for one node in a fleet of `nodeCount`.
    /// - Parameter stagger: a number in `0..<1`, drawn at random by the caller; 0 gives the base TTL.
    public func ttl(nodeCount: Int, stagger: Double) -> Duration {
        let scaled = Double(max(nodeCount, 0)) / max(heartbeatsPerSecond, .leastNonzeroMagnitude)
        let base = max(minimumTTL, .seconds(scaled))
        return base + base * min(max(stagger, 0), 1)
    }
}

/// Whether one node is alive, as a state machine driven by heartbeats and the passing of time.
///
/// It does no I/O and reads no clock: every event carries its time. Its state is what the
/// database keeps for the node (its status and when it expires), so any replica of the
/// health monitor can load it, apply an event and store the result.
public struct NodeLiveness: Sendable, Equatable {
    public enum Transition: Sendable, Equatable {
        /// No heartbeat came before the deadline.
        case wentDown(deadline: Date)
        /// A heartbeat came from a node that was down.
        case cameBack
    }

    public private(set) var status: Node.Status
    /// When the node goes down unless it heartbeats first; nil until its first heartbeat.
    public private(set) var expiresAt: Date?

    public init(status: Node.Status, expiresAt: Date?) {
        self.status = status
        self.expiresAt = expiresAt
    }

    /// A heartbeat (or a registration) at `now`, answered with `ttl`: the node is up until
    /// `now + ttl + grace`.
    public mutating func heartbeat(at now: Date, ttl: Duration, grace: Duration) -> Transition? {
        expiresAt = now.addingTimeInterval((ttl + grace).timeInterval)
        defer { status = .ready }
        return status == .down ? .cameBack : nil
    }

    /// Time has reached `now`: a node past its deadline goes down. A node that has never
    /// heartbeated has no deadline and stays as it is.
    public mutating func check(at now: Date) -> Transition? {
        guard status != .down, let expiresAt, now >= expiresAt else { return nil }
        status = .down
        return .wentDown(deadline: expiresAt)
    }
}

/// A fresh grace period for the whole fleet after an outage of what carries heartbeats.
///
/// While the broker or the database is away, heartbeats cannot arrive or be recorded, and once
/// it is back they arrive late, in a backlog. So no node is marked down until heartbeats have
/// flowed for `grace` again after the last outage seen: a node that is alive heartbeats in that
/// time; one that is not is marked down when it ends. It reads no clock: every call carries its time.
public struct OutageGrace: Sendable, Equatable {
    public let grace: Duration
    /// Before this time no node is marked down; nil when no outage has been seen.
    public private(set) var holdsUntil: Date?

    public init(grace: Duration) {
        self.grace = grace
    }

    /// Heartbeats could not be received or recorded at `time`.
    public mutating func outage(at time: Date) {
        let end = time.addingTimeInterval(grace.timeInterval)
        holdsUntil = max(holdsUntil ?? end, end)
    }

    /// Whether nodes whose deadline has passed may be marked down at `time`.
    public func mayMarkNodesDown(at time: Date) -> Bool {
        guard let holdsUntil else { return true }
        return time >= holdsUntil
    }
}
