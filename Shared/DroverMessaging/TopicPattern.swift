/// An AMQP topic binding pattern, matched the way RabbitMQ matches it.
public struct TopicPattern: Sendable, Hashable, CustomStringConvertible {
    /// The pattern as given.
    public let pattern: String
    private let words: [Substring]

    /// - Throws: ``MessagingError/invalidBinding(_:)`` when a word is empty or mixes wildcards with text.
    public init(_ pattern: String) throws {
        let words = pattern.split(separator: ".", omittingEmptySubsequences: false)
        for word in words where word.isEmpty || (word.count > 1 && (word.contains("*") || word.contains("#"))) {
            throw MessagingError.invalidBinding(pattern)
        }
        self.pattern = pattern
        self.words = words
    }

    public var description: String { pattern }

    /// Whether a message published with `routingKey` reaches a queue bound with this pattern.
    public func matches(_ routingKey: String) -> Bool {
        let key = routingKey.split(separator: ".", omittingEmptySubsequences: false)
        // Dynamic programming over (pattern word, key word): reachable[j] = pattern[..<i] matches key[..<j].
        var reachable = [Bool](repeating: false, count: key.count + 1)
        reachable[0] = true
        for word in words {
            var next = [Bool](repeating: false, count: key.count + 1)
            switch word {
            case "#":
                var any = false
                for j in 0...key.count {
                    any = any || reachable[j]
                    next[j] = any
                }
            case "*":
                for j in 0..<key.count where reachable[j] { next[j + 1] = true }
            default:
                for j in 0..<key.count where reachable[j] && key[j] == word { next[j + 1] = true }
            }
            reachable = next
        }
        return reachable[key.count]
    }
}
