/// Routing keys of the `drover` topic exchange: dot-separated words, most general first.
///
/// The control plane publishes under `cluster.<kind>.<id>.<event>`; a node publishes only under
/// `node.<nodeId>.…` (the broker enforces that prefix per node user). Plugins bind with `*` (one
/// word) and `#` (zero or more words).
public enum RoutingKey {
    /// `node.<nodeId>.heartbeat`
    public static func nodeHeartbeat(_ nodeID: String) -> String { "node.\(nodeID).heartbeat" }
    /// `node.<nodeId>.send.<key>`: the counterpart of `jetpack send`.
    public static func nodeSend(_ nodeID: String, _ key: String) -> String { "node.\(nodeID).send.\(key)" }
    /// `cluster.eval.<evalId>.<event>`
    public static func evaluation(_ evalID: String, _ event: String) -> String { "cluster.eval.\(evalID).\(event)" }
    /// `cluster.alloc.<nodeId>.<allocId>.<event>`
    public static func allocation(node nodeID: String, alloc allocID: String, _ event: String) -> String {
        "cluster.alloc.\(nodeID).\(allocID).\(event)"
    }

    /// `event.<topic>.<type>.<key>`, on the public events exchange (`drover.events`): the topic in
    /// lower case (`job`, `allocation`, `nodedrain`…), the type as the event names the change
    /// (`registered`, `running`, `failed`, `blocked`, `down`…), and the object's key, with `.`,
    /// `%`, `*`, `#` and white space percent-encoded so that it stays one word.
    public static func event(topic: String, type: String, key: String) -> String {
        "event.\(topic.lowercased()).\(escapedWord(type)).\(escapedWord(key))"
    }

    /// `word` with what would split it or read as a wildcard percent-encoded; an empty word is `_`.
    static func escapedWord(_ word: String) -> String {
        guard !word.isEmpty else { return "_" }
        var escaped = ""
        for scalar in word.unicodeScalars {
            switch scalar {
            case ".", "%", "*", "#", "\u{00}"..."\u{20}", "\u{7F}":
                let hex = String(scalar.value, radix: 16, uppercase: true)
                escaped += "%" + (hex.count == 1 ? "0" + hex : hex)
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped
    }

    /// The node prefix that a node's broker user may publish under.
    public static func nodePrefix(_ nodeID: String) -> String { "node.\(nodeID)." }

    /// Whether `word` can stand as one word of a routing key: non-empty, no dots, no wildcards,
    /// no whitespace, at most 255 bytes in all.
    public static func isValidWord(_ word: some StringProtocol) -> Bool {
        !word.isEmpty && word.utf8.count <= 255
            && !word.contains { $0 == "." || $0 == "*" || $0 == "#" || $0.isWhitespace || $0.isNewline }
    }
}
