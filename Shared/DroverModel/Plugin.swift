/// A plugin's access to the events: a broker user of its own (`drover-plugin-<name>`) that may
/// read only its own queues (`plugin.<name>`, `plugin.<name>.…`) and bind them to the public
/// events exchange only with the keys it was given. What `PUT /v1/bus/plugin/:name` takes.
public struct PluginSpec: Codable, Sendable, Equatable {
    /// Binding keys on `drover.events`, such as `event.job.#` or `event.allocation.failed.*`.
    public var bindings: [String]

    /// A plugin bound with `bindings`.
    public init(bindings: [String]) { self.bindings = bindings }

    enum CodingKeys: String, CodingKey { case bindings = "Bindings" }

    /// Every problem with `name` and the bindings, each naming its field; empty when valid.
    public func validate(name: String) -> [FieldError] {
        var errors: [FieldError] = []
        if !Self.isName(name) { errors.append(FieldError("Name", "must be 1-64 lower-case letters, digits or '-', starting with a letter or digit")) }
        if bindings.isEmpty || bindings.count > 64 { errors.append(FieldError("Bindings", "must hold 1-64 binding keys, got \(bindings.count)")) }
        for (index, binding) in bindings.enumerated() where !Self.isBinding(binding) {
            errors.append(
                FieldError(
                    "Bindings[\(index)]",
                    "'\(binding.prefix(100))' is not a binding key of the events exchange: event.<topic>.<type>.<key>, words of letters, digits, '-', '_' or '%', or * and #, at most 255 bytes"
                ))
        }
        return errors
    }

    /// Whether `name` may name a plugin: 1 to 64 lowercase letters, digits and `-`, not starting with `-`.
    public static func isName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...64).contains(bytes.count), let first = bytes.first, first != UInt8(ascii: "-") else { return false }
        return bytes.allSatisfy { (97...122).contains($0) || (48...57).contains($0) || $0 == UInt8(ascii: "-") }
    }

    /// A binding key under `event`: dot-separated words, each `*`, `#`, or letters, digits,
    /// `-`, `_` and `%` (the escapes of ``RoutingKey/event(topic:type:key:)``).
    public static func isBinding(_ key: String) -> Bool {
        guard key.utf8.count <= 255 else { return false }
        let words = key.split(separator: ".", omittingEmptySubsequences: false)
        guard words.first == "event" || words.first == "#" else { return false }
        return words.allSatisfy { word in
            word == "*" || word == "#"
                || (!word.isEmpty
                    && word.unicodeScalars.allSatisfy { $0.properties.isAlphabetic || ("0"..."9").contains($0) || "-_%".unicodeScalars.contains($0) })
        }
    }
}

/// A plugin as Drover made it: its broker user, the URL to connect with (with the password, shown
/// once, when it is made), its queue and the keys it is bound with.
public struct PluginAccess: Codable, Sendable, Equatable {
    /// The plugin's name.
    public var name: String
    /// Its broker user, `drover-plugin-<name>`.
    public var user: String
    /// `amqp://drover-plugin-<name>:<password>@host:port/vhost`; without the password in a list.
    public var url: String
    /// Its queue, `plugin.<name>`, already bound when this is returned.
    public var queue: String
    /// The keys its queue is bound to `drover.events` with.
    public var bindings: [String]

    /// A plugin's access, as `drover plugin create` prints it.
    public init(name: String, user: String, url: String, queue: String, bindings: [String]) {
        self.name = name
        self.user = user
        self.url = url
        self.queue = queue
        self.bindings = bindings
    }

    enum CodingKeys: String, CodingKey {
        case name = "Name", user = "User", url = "URL", queue = "Queue", bindings = "Bindings"
    }
}
