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
