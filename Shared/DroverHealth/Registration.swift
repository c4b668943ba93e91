public import DroverModel

/// What a node's registration changes. Agents register at start and then every interval, so most
/// registrations repeat the last one; a repeat changes nothing, its heartbeat deadline included
/// (it may have queued long, from an agent now gone).
public enum Registration {
    /// The node as the control plane records it from what its agent reported: ready, with the
    /// fields the control plane sets left for it to set.
    public static func recorded(_ reported: Node) -> Node {
        var node = reported
        node.status = .ready
        node.statusDescription = nil
        node.createIndex = nil
        node.modifyIndex = nil
        return node
    }

    /// Whether `reported` repeats what is recorded of a node that is ready: the same but for what
    /// the control plane keeps of its own (eligibility, drain, indexes). A node that is new, or
    /// not ready (down, say), or changed is recorded again.
    public static func isRepeat(_ reported: Node, previous: Node?, status: Node.Status?) -> Bool {
        guard var before = previous, status == .ready else { return false }
        let node = recorded(reported)
        before.status = .ready
        before.schedulingEligibility = node.schedulingEligibility
        before.drain = node.drain
        before.createIndex = nil
        before.modifyIndex = nil
        return before == node
    }
}
