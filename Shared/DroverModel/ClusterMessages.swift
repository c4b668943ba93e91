public import Foundation

/// An evaluation waits for the scheduler, on `cluster.eval.<evalId>.pending`. The evaluation
/// itself is in PostgreSQL; this says which one to read.
public struct EvaluationPending: DroverMessage, Equatable {
    public static let messageType = "cluster.eval.pending"
    public static let schemaVersion = 1

    /// The evaluation to process.
    public var evalID: String
    /// The job it evaluates.
    public var jobID: String
    /// That job's namespace; `default` when absent (messages of schema version 1 before
    /// namespaces).
    public var namespace: String?
    /// Why the evaluation was created: `job-register`, `job-deregister`, `node-update`, …
    public var triggeredBy: String

    /// Evaluation `evalID` of job `jobID` of `namespace` waits.
    public init(evalID: String, jobID: String, namespace: String = "default", triggeredBy: String) {
        self.evalID = evalID
        self.jobID = jobID
        self.namespace = namespace
        self.triggeredBy = triggeredBy
    }

    enum CodingKeys: String, CodingKey {
        case evalID = "EvalID"
        case jobID = "JobID"
        case namespace = "Namespace"
        case triggeredBy = "TriggeredBy"
    }
}

/// An allocation for a node changed: a new one to run, or one to stop. Published on
/// `cluster.alloc.<nodeId>.<allocId>.updated`, read by that node only. Carries the job as it was
/// placed, so that the node needs nothing else to run it. Newer `ModifyIndex` wins.
public struct AllocationUpdate: DroverMessage, Equatable {
    public static let messageType = "cluster.alloc.updated"
    public static let schemaVersion = 1

    /// The allocation, with the job as it was placed.
    public var allocation: Allocation

    /// The update of `allocation`.
    public init(allocation: Allocation) { self.allocation = allocation }

    enum CodingKeys: String, CodingKey {
        case allocation = "Allocation"
    }
}

extension RoutingKey {
    /// `cluster.alloc.<nodeId>.<allocId>.updated`
    public static func allocationUpdated(_ allocation: Allocation) -> String {
        RoutingKey.allocation(node: allocation.nodeID, alloc: allocation.id, "updated")
    }
}

/// The control plane's answer to a heartbeat, on `cluster.node.<nodeId>.heartbeat-ttl`: the
/// interval to heartbeat at from now on (Nomad's `HeartbeatTTL`). It grows with the fleet; the
/// node is marked down once the TTL and a grace period pass without a heartbeat.
public struct NodeHeartbeatTTL: DroverMessage, Equatable {
    public static let messageType = "cluster.node.heartbeat-ttl"
    public static let schemaVersion = 1

    /// The node answered.
    public var nodeID: String
    /// Nanoseconds, as Nomad writes durations.
    public var heartbeatTTL: Int64
    /// The node's status once the heartbeat was recorded.
    public var status: Node.Status
    /// Nanoseconds the node may stay silent past its TTL before it is declared down; absent
    /// from senders that predate it.
    public var heartbeatGrace: Int64?

    /// The answer to node `nodeID`: heartbeat every `heartbeatTTL`; declared down `grace` after a missed one.
    public init(nodeID: String, heartbeatTTL: Duration, status: Node.Status, grace: Duration? = nil) {
        self.nodeID = nodeID
        self.heartbeatTTL = GoDuration.nanoseconds(heartbeatTTL)
        self.status = status
        self.heartbeatGrace = grace.map(GoDuration.nanoseconds)
    }

    /// The TTL as a duration.
    public var ttl: Duration { .nanoseconds(heartbeatTTL) }

    /// How long after this answer the node is declared down without another heartbeat: its TTL
    /// and the grace (the TTL again when the grace is not given). Negative values count as 0.
    public var downAfter: Duration {
        .nanoseconds(max(heartbeatTTL, 0)) + .nanoseconds(max(heartbeatGrace ?? heartbeatTTL, 0))
    }

    enum CodingKeys: String, CodingKey {
        case nodeID = "NodeID"
        case heartbeatTTL = "HeartbeatTTL"
        case status = "Status"
        case heartbeatGrace = "HeartbeatGrace"
    }
}

extension RoutingKey {
    /// `cluster.node.<nodeId>.<event>`: what the control plane tells one node.
    public static func clusterNode(_ nodeID: String, _ event: String) -> String { "cluster.node.\(nodeID).\(event)" }
}

/// A run of a time-based or dependent job failed: published on `cluster.job.<name>.failed`
/// with the job's owner, for a notification plugin to act on.
public struct ScheduledRunFailed: DroverMessage, Equatable {
    public static let messageType = "cluster.job.failed"
    public static let schemaVersion = 1

    /// The scheduled job's name.
    public var name: String
    /// The scheduled job's owner, as set on it (an e-mail address, by Chronos's custom).
    public var owner: String
    /// The owner's name.
    public var ownerName: String
    /// The run's batch job.
    public var jobID: String
    /// When the run was due.
    public var due: Date
    /// Why the run failed, in words.
    public var reason: String
    /// Runs failed in a row, this one included.
    public var errorsSinceLastSuccess: Int

    /// A failed run of scheduled job `name`.
    public init(name: String, owner: String, ownerName: String, jobID: String, due: Date, reason: String, errorsSinceLastSuccess: Int) {
        self.name = name
        self.owner = owner
        self.ownerName = ownerName
        self.jobID = jobID
        self.due = due
        self.reason = reason
        self.errorsSinceLastSuccess = errorsSinceLastSuccess
    }

    enum CodingKeys: String, CodingKey {
        case name = "Name"
        case owner = "Owner"
        case ownerName = "OwnerName"
        case jobID = "JobID"
        case due = "Due"
        case reason = "Reason"
        case errorsSinceLastSuccess = "ErrorsSinceLastSuccess"
    }
}

extension RoutingKey {
    /// `cluster.job.<name>.<event>`: what happened to a scheduled job's run.
    public static func scheduledJob(_ name: String, _ event: String) -> String { "cluster.job.\(name).\(event)" }
}
