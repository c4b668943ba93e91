import DroverMessaging
import DroverModel
import Foundation

/// The messages the control plane sends, one constructor each.
enum Messages {
    /// Hands a pending evaluation to a scheduler.
    static func pending(_ eval: Evaluation) throws -> OutgoingMessage {
        try OutgoingMessage(
            EvaluationPending(evalID: eval.id, jobID: eval.jobID, namespace: eval.jobNamespace, triggeredBy: eval.triggeredBy),
            routingKey: RoutingKey.evaluation(eval.id, "pending"))
    }

    /// Tells an allocation's node what the control plane wants of it.
    static func update(_ allocation: Allocation) throws -> OutgoingMessage {
        try OutgoingMessage(AllocationUpdate(allocation: allocation), routingKey: RoutingKey.allocationUpdated(allocation))
    }

    /// The whole list of users, for one node or (nil) all of them.
    static func users(_ users: [ClusterUser], index: Int64, to nodeID: String?) throws -> OutgoingMessage {
        try OutgoingMessage(ClusterUsers(users: users, index: index), routingKey: RoutingKey.clusterUsers(nodeID))
    }
}

/// A new id for an evaluation or an allocation.
func newID() -> String { UUID().uuidString.lowercased() }
