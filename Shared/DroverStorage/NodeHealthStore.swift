public import DroverHealth
public import DroverModel
public import Foundation
import Logging
import PostgresNIO

/// HealthCheck outcomes, keepalives and termination requests: what a node says of its own
/// health, and what the control plane makes of it (see ``HealthDecision``).
extension ClusterStore {
    /// Records `report`: an unhealthy node becomes ineligible and, unless a keepalive holds, is
    /// flagged for termination.
    /// - Throws: ``ClusterStoreError/notFound(kind:id:)`` for an unknown node.
    @discardableResult
    public func record(_ report: NodeHealthReport, at now: Date = Date()) async throws -> HealthDecision {
        try await database.transaction { connection in
            let keepalive = try await Self.lockNode(report.nodeID, on: connection, logger: logger)
            let decision = HealthDecision.decide(healthy: report.healthy, keepaliveUntil: keepalive.map(Self.date), now: now)
            let nanos = Self.nanoseconds(now)
            let health = NodeHealth(healthy: report.healthy, checkedAt: nanos, checks: report.checks)
            let index = try await Self.nextIndex(connection, logger: logger)
            let termination: TerminationRequest? =
                decision == .makeIneligibleAndFlag ? TerminationRequest(reason: "unhealthy", requestedAt: nanos) : nil
            try await connection.query(
                """
                UPDATE drover_nodes SET health = \(try Self.encode(health))::jsonb, modify_index = \(index),
                    eligibility = CASE WHEN \(decision != .none) THEN 'ineligible' ELSE eligibility END,
                    termination = coalesce(termination, \(try termination.map { try Self.encode($0) })::jsonb)
                WHERE id = \(report.nodeID)
                """, logger: logger)
            let failed = report.checks.filter { NodeHealthReport.verdict(exitCode: $0.exitCode) == false }.map(\.script).joined(separator: ", ")
            switch decision {
            case .none:
                break
            case .makeIneligibleAndFlag:
                try await Events.note(
                    ClusterEvent.Kind.nodeUnhealthy, "Node \(report.nodeID) is unhealthy (\(failed)): ineligible, flagged for termination",
                    level: .error, priority: .high, nodeID: report.nodeID, on: connection, logger: logger)
            case .makeIneligibleAndKeep(let until):
                try await Events.note(
                    ClusterEvent.Kind.nodeUnhealthy,
                    "Node \(report.nodeID) is unhealthy (\(failed)): ineligible, kept by keepalive until \(Self.describe(until))", level: .error,
                    priority: .high, nodeID: report.nodeID, on: connection, logger: logger)
            }
            return decision
        }
    }

    /// Keeps the node from termination until `until` (nil: for ever); a flag set because it was
    /// unhealthy is lifted.
    public func setKeepalive(nodeID: String, until: Date?) async throws {
        try await database.transaction { connection in
            _ = try await Self.lockNode(nodeID, on: connection, logger: logger)
            let index = try await Self.nextIndex(connection, logger: logger)
            let nanos = until.map { Self.nanoseconds($0) } ?? Int64.max
            try await connection.query(
                """
                UPDATE drover_nodes SET keepalive_until = \(nanos), modify_index = \(index),
                    termination = CASE WHEN termination->>'Reason' = 'unhealthy' THEN NULL ELSE termination END
                WHERE id = \(nodeID)
                """, logger: logger)
            try await Events.note(
                ClusterEvent.Kind.keepalive, "Node \(nodeID) kept alive until \(until.map(Self.describe) ?? "forever")", priority: .medium,
                nodeID: nodeID, on: connection, logger: logger)
        }
    }

    /// The node asked to be taken away: it takes no new work and is flagged with `reason`.
    public func requestTermination(nodeID: String, reason: String, at now: Date = Date()) async throws {
        try await database.transaction { connection in
            _ = try await Self.lockNode(nodeID, on: connection, logger: logger)
            let index = try await Self.nextIndex(connection, logger: logger)
            let request = TerminationRequest(reason: reason, requestedAt: Self.nanoseconds(now))
            try await connection.query(
                """
                UPDATE drover_nodes SET eligibility = 'ineligible', termination = \(try Self.encode(request))::jsonb, modify_index = \(index)
                WHERE id = \(nodeID)
                """, logger: logger)
            try await Events.note(
                ClusterEvent.Kind.shutdownRequested, "Node \(nodeID) asked to be shut down (\(reason))", level: .warn, priority: .medium,
                nodeID: nodeID, on: connection, logger: logger)
        }
    }

    /// Locks the node's row. - Returns: its keepalive. - Throws: not found.
    private static func lockNode(_ nodeID: String, on connection: PostgresConnection, logger: Logger) async throws -> Int64? {
        var found = false
        var keepalive: Int64?
        for try await value in try await connection.query(
            "SELECT keepalive_until FROM drover_nodes WHERE id = \(nodeID) FOR UPDATE", logger: logger
        ).decode(Int64?.self) {
            found = true
            keepalive = value
        }
        guard found else { throw ClusterStoreError.notFound(kind: "node", id: nodeID) }
        return keepalive
    }

    static func date(_ nanoseconds: Int64) -> Date {
        nanoseconds == Int64.max ? .distantFuture : Date(timeIntervalSince1970: Double(nanoseconds) / 1e9)
    }

    static func describe(_ date: Date) -> String {
        date == .distantFuture ? "forever" : date.formatted(Date.ISO8601FormatStyle())
    }
}
