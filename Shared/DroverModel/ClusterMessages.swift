/// An evaluation waits for the scheduler, on `cluster.eval.<evalId>.pending`. The evaluation
/// itself is in PostgreSQL; this says which one to read.
public struct EvaluationPending: DroverMessage, Equatable {
    public static let messageType = "cluster.eval.pending"
    public static let schemaVersion = 1

    public var evalID: String
    public var jobID: String
    /// Why the evaluation was created: `job-register`, `job-deregister`, `node-update`, …
    public var triggeredBy: String

    public init(evalID: String, jobID: String, triggeredBy: String) {
        self.evalID = evalID
        self.jobID = jobID
        self.triggeredBy = triggeredBy
    }

    enum CodingKeys: String, CodingKey {
        case evalID = "EvalID"
        case jobID = "JobID"
        case triggeredBy = "TriggeredBy"
    }
}

/// An allocation for a node changed: a new one to run, or one to stop. Published on
/// `cluster.alloc.<nodeId>.<allocId>.updated`, read by that node only. Carries the job as it was
/// placed, so that the node needs nothing else to run it. Newer `ModifyIndex` wins.
public struct AllocationUpdate: DroverMessage, Equatable {
    public static let messageType = "cluster.alloc.updated"
    public static let schemaVersion = 1

    public var allocation: Allocation

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
