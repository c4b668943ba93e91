/// Policy rules as read, before they mean anything: blocks of keys, strings and lists of strings.
/// A block key with labels (`namespace "default" { … }`) nests one block per label, which is
/// also how HCL's JSON form writes it.
indirect enum RuleTree: Equatable {
    case string(String)
    case list([String])
    /// Keys in the order written; a key written twice merges its blocks.
    case block([(key: String, value: RuleTree)])

    static func == (lhs: RuleTree, rhs: RuleTree) -> Bool {
        switch (lhs, rhs) {
        case (.string(let a), .string(let b)): a == b
        case (.list(let a), .list(let b)): a == b
        case (.block(let a), .block(let b)): a.map(\.key) == b.map(\.key) && zip(a, b).allSatisfy { $0.value == $1.value }
        default: false
        }
    }
}

/// What is wrong with the text of policy rules, with the line.
struct RuleSyntaxError: Error, CustomStringConvertible {
    var description: String
}

/// Reads the subset of HCL (and of JSON) that ACL policies use: blocks, labels, `key = "string"`
/// and `key = ["list", "of", "strings"]`, `#` and `//` comments. Nesting is bounded, so no input
/// can exhaust the stack.
enum RuleSyntax {
    static let maximumDepth = 8

    static func parse(_ text: String) throws(RuleSyntaxError) -> RuleTree {
        var reader = Reader(Array(text.utf8))
        reader.skipSpace()
        let tree: RuleTree
        if reader.peek == UInt8(ascii: "{") {
            tree = try reader.jsonValue(depth: 0)
        } else {
            tree = try reader.hclBody(depth: 0, closing: nil)
        }
        reader.skipSpace()
        guard reader.atEnd else { throw reader.error("unexpected text after the rules") }
        return tree
    }

    struct Reader {
        let bytes: [UInt8]
        var position = 0
        init(_ bytes: [UInt8]) { self.bytes = bytes }

        var atEnd: Bool { position >= bytes.count }
        var peek: UInt8? { atEnd ? nil : bytes[position] }

        func error(_ what: String) -> RuleSyntaxError {
            let line = bytes[..<min(position, bytes.count)].reduce(1) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
            return RuleSyntaxError(description: "line \(line): \(what)")
        }

        mutating func skipSpace() {
            while let byte = peek {
                if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r")
                    || byte == UInt8(ascii: ",")
                {
                    position += 1
                } else if byte == UInt8(ascii: "#")
                    || (byte == UInt8(ascii: "/") && position + 1 < bytes.count && bytes[position + 1] == UInt8(ascii: "/"))
                {
                    while let next = peek, next != UInt8(ascii: "\n") { position += 1 }
                } else {
                    return
                }
            }
        }

        mutating func expect(_ character: Character) throws(RuleSyntaxError) {
            skipSpace()
            guard peek == character.asciiValue else { throw error("expected '\(character)'") }
            position += 1
        }

        mutating func string() throws(RuleSyntaxError) -> String {
            skipSpace()
            guard peek == UInt8(ascii: "\"") else { throw error("expected a quoted string") }
            position += 1
            var out: [UInt8] = []
            while let byte = peek {
                position += 1
                switch byte {
                case UInt8(ascii: "\""): return String(decoding: out, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    guard let escaped = peek else { break }
                    position += 1
                    switch escaped {
                    case UInt8(ascii: "n"): out.append(UInt8(ascii: "\n"))
                    case UInt8(ascii: "t"): out.append(UInt8(ascii: "\t"))
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escaped)
                    default: throw error("unsupported escape '\\\(Character(UnicodeScalar(escaped)))' in a string")
                    }
                case UInt8(ascii: "\n"): throw error("a string does not end on its line")
                default: out.append(byte)
                }
            }
            throw error("a string does not end")
        }

        mutating func identifier() throws(RuleSyntaxError) -> String {
            skipSpace()
            let start = position
            while let byte = peek,
                (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                    || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
            {
                position += 1
            }
            guard position > start else { throw error("expected a name, such as namespace or node") }
            return String(decoding: bytes[start..<position], as: UTF8.self)
        }

        mutating func stringList() throws(RuleSyntaxError) -> [String] {
            try expect("[")
            var items: [String] = []
            while true {
                skipSpace()
                if peek == UInt8(ascii: "]") {
                    position += 1
                    return items
                }
                guard items.count < 1_000 else { throw error("a list holds at most 1000 strings") }
                items.append(try string())
            }
        }

        /// `key = value` and `key "label"… { body }` until `closing` (or the end of the text).
        mutating func hclBody(depth: Int, closing: UInt8?) throws(RuleSyntaxError) -> RuleTree {
            guard depth < RuleSyntax.maximumDepth else { throw error("rules nest too deeply") }
            var entries: [(key: String, value: RuleTree)] = []
            while true {
                skipSpace()
                if let closing, peek == closing {
                    position += 1
                    return .block(entries)
                }
                if atEnd {
                    guard closing == nil else { throw error("a block does not end: expected '}'") }
                    return .block(entries)
                }
                let key = peek == UInt8(ascii: "\"") ? try string() : try identifier()
                skipSpace()
                var labels: [String] = []
                while peek == UInt8(ascii: "\"") {
                    labels.append(try string())
                    skipSpace()
                }
                let value: RuleTree
                if peek == UInt8(ascii: "=") {
                    guard labels.isEmpty else { throw error("'\(key)' has a label and a value") }
                    position += 1
                    skipSpace()
                    value = peek == UInt8(ascii: "[") ? .list(try stringList()) : .string(try string())
                } else if peek == UInt8(ascii: "{") {
                    position += 1
                    var body = try hclBody(depth: depth + 1, closing: UInt8(ascii: "}"))
                    for label in labels.reversed() { body = .block([(label, body)]) }
                    value = body
                } else {
                    throw error("expected '=' or '{' after '\(key)'")
                }
                Self.insert(&entries, key, value)
            }
        }

        /// A JSON value of the rules: an object, a string or a list of strings.
        mutating func jsonValue(depth: Int) throws(RuleSyntaxError) -> RuleTree {
            guard depth < RuleSyntax.maximumDepth else { throw error("rules nest too deeply") }
            skipSpace()
            switch peek {
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "["): return .list(try stringList())
            case UInt8(ascii: "{"):
                position += 1
                var entries: [(key: String, value: RuleTree)] = []
                while true {
                    skipSpace()
                    if peek == UInt8(ascii: "}") {
                        position += 1
                        return .block(entries)
                    }
                    let key = try string()
                    try expect(":")
                    Self.insert(&entries, key, try jsonValue(depth: depth + 1))
                }
            default: throw error("expected an object, a string or a list of strings")
            }
        }

        /// Adds `key`; a block written twice under one key is merged, as HCL merges repeated blocks.
        static func insert(_ entries: inout [(key: String, value: RuleTree)], _ key: String, _ value: RuleTree) {
            if let index = entries.firstIndex(where: { $0.key == key }), case .block(let old) = entries[index].value,
                case .block(let new) = value
            {
                var merged = old
                for entry in new { insert(&merged, entry.key, entry.value) }
                entries[index].value = .block(merged)
            } else if let index = entries.firstIndex(where: { $0.key == key }) {
                entries[index].value = value
            } else {
                entries.append((key, value))
            }
        }
    }
}
