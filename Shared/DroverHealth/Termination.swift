public import Foundation

/// What a HealthCheck outcome does to a node, given its keepalive and the time: a pure function.
///
/// An unhealthy node takes no new work and is flagged for termination (which the autoscaler
/// carries out), unless a keepalive is in force; a healthy report changes nothing.
public enum HealthDecision: Sendable, Equatable {
    case none
    /// Ineligible, and flagged for termination.
    case makeIneligibleAndFlag
    /// Ineligible, but kept: the keepalive holds until the date given.
    case makeIneligibleAndKeep(until: Date)

    public static func decide(healthy: Bool, keepaliveUntil: Date?, now: Date) -> HealthDecision {
        guard !healthy else { return .none }
        if let keepaliveUntil, keepaliveUntil > now { return .makeIneligibleAndKeep(until: keepaliveUntil) }
        return .makeIneligibleAndFlag
    }
}
