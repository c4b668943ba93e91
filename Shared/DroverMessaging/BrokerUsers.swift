public import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Each node's own broker user, managed through RabbitMQ's management API.
///
/// A node user may publish on the exchange only under `node.<its id>.`, bind its queues only to
/// what the control plane sends it (`cluster.{alloc,node,users}.<its id>.…` and
/// `cluster.users.all.…`), dead-letter only into its own queues' dead-letter queues, and declare,
/// read and write only its own queues (`node.<its id>`, `node.<its id>.…`). The broker checks
/// the `user-id` of what it publishes.
public struct BrokerUsers: Sendable {
    /// The management API refused or could not be reached; `description` says which call and what it answered.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    let base: URL
    let authorization: String
    let vhost: String
    let exchange: String
    let deadLetterExchange: String

    /// - Parameters:
    ///   - managementURL: `http://admin:password@host:15672`.
    ///   - vhost: the virtual host the cluster uses.
    ///   - exchange: the cluster's internal exchange (`drover`); plugins read `<exchange>.events`.
    ///   - deadLetterExchange: the exchange of its dead-letter queues.
    /// - Throws: when `managementURL` is not an http(s) URL with a host.
    public init(managementURL: String, vhost: String, exchange: String, deadLetterExchange: String) throws {
        guard let components = URLComponents(string: managementURL), let host = components.host, components.scheme?.hasPrefix("http") == true,
            let base = URL(string: "\(components.scheme ?? "http")://\(host):\(components.port ?? 15672)")
        else { throw Failure(description: "'\(managementURL)' is not an http(s) URL of the RabbitMQ management API") }
        self.base = base
        self.authorization = "Basic " + Data("\(components.user ?? "guest"):\(components.password ?? "guest")".utf8).base64EncodedString()
        self.vhost = vhost
        self.exchange = exchange
        self.deadLetterExchange = deadLetterExchange
    }

    /// The broker user name of node `nodeID`.
    public static func userName(of nodeID: String) -> String { "drover-node-\(nodeID)" }

    /// The node whose broker user `user` is, if it is one.
    public static func nodeID(ofUser user: String) -> String? {
        user.hasPrefix("drover-node-") ? String(user.dropFirst("drover-node-".count)) : nil
    }

    /// Creates (or re-keys) node `nodeID`'s user with a new password and its permissions.
    /// - Returns: the user and its password.
    public func enroll(nodeID: String) async throws -> (user: String, password: String) {
        let user = Self.userName(of: nodeID)
        var random = SystemRandomNumberGenerator()
        let password = (0..<32).map { _ in String("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".randomElement(using: &random)!) }
            .joined()
        let id = NSRegularExpression.escapedPattern(for: nodeID)
        let own = #"node\.\#(id)(\..+)?"#
        let exchanges = "\(NSRegularExpression.escapedPattern(for: exchange))|\(NSRegularExpression.escapedPattern(for: deadLetterExchange))"
        try await send("PUT", "/api/users/\(escaped(user))", ["password": password, "tags": ""])
        try await send(
            "PUT", "/api/permissions/\(escaped(vhost))/\(escaped(user))",
            ["configure": "^\(own)$", "write": "^(\(own)|\(exchanges))$", "read": "^(\(own)|\(exchanges))$"])
        try await send(
            "PUT", "/api/topic-permissions/\(escaped(vhost))/\(escaped(user))",
            ["exchange": exchange, "write": #"^node\.\#(id)\."#, "read": #"^cluster\.((alloc|node|users)\.\#(id)|users\.all)\."#])
        // Dead letters are routed by queue name: the node's own queues only.
        try await send(
            "PUT", "/api/topic-permissions/\(escaped(vhost))/\(escaped(user))",
            ["exchange": deadLetterExchange, "write": "^\(own)$", "read": "^\(own)$"])
        return (user, password)
    }

    /// Deletes node `nodeID`'s user and closes every connection it has open.
    /// - Returns: whether there was such a user.
    @discardableResult
    public func remove(nodeID: String) async throws -> Bool {
        try await removeUser(Self.userName(of: nodeID))
    }

    /// Deletes broker user `user` and closes every connection it has open.
    /// - Returns: whether there was such a user.
    private func removeUser(_ user: String) async throws -> Bool {
        let (status, _) = try await request("DELETE", "/api/users/\(escaped(user))", body: nil)
        guard status != 404 else { return false }
        guard (200..<300).contains(status) else { throw Failure(description: "deleting broker user \(user): HTTP \(status)") }
        // Deleting a user does not end its connections; close them.
        let (_, data) = try await request("GET", "/api/connections?columns=name,user", body: nil)
        let connections = (try? JSONSerialization.jsonObject(with: data)) as? [[String: Any]] ?? []
        for connection in connections where connection["user"] as? String == user {
            guard let name = connection["name"] as? String else { continue }
            _ = try await request("DELETE", "/api/connections/\(escaped(name))", body: nil)
        }
        return true
    }

    // MARK: Plugins

    /// The public exchange the events are published on.
    var eventsExchange: String { "\(exchange).events" }

    /// The broker user name of plugin `name`.
    public static func userName(ofPlugin name: String) -> String { "drover-plugin-\(name)" }

    /// Plugin `name`'s queue.
    public static func queue(ofPlugin name: String) -> String { "plugin.\(name)" }

    /// Where plugin `name`'s queue moves what the plugin rejects.
    public static func deadLetterQueue(ofPlugin name: String) -> String { "plugin.\(name).dead-letter" }

    /// Creates (or re-keys) plugin `name`'s user with a new password, its queue (what the plugin
    /// rejects moves to ``deadLetterQueue(ofPlugin:)``), and the queue's
    /// bindings to the events exchange: exactly `bindings`. The user may declare, read and bind
    /// only its own queues (`plugin.<name>`, `plugin.<name>.…`), bind them to the events exchange
    /// only with `bindings`, and publish nowhere. - Returns: the user and its password.
    public func createPlugin(name: String, bindings: [String]) async throws -> (user: String, password: String) {
        let user = Self.userName(ofPlugin: name)
        let queue = Self.queue(ofPlugin: name)
        var random = SystemRandomNumberGenerator()
        let password = (0..<32).map { _ in String("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".randomElement(using: &random)!) }
            .joined()
        let own = #"plugin\.\#(NSRegularExpression.escapedPattern(for: name))(\..+)?"#
        let keys = bindings.map { NSRegularExpression.escapedPattern(for: $0) }.joined(separator: "|")
        try await send("PUT", "/api/users/\(escaped(user))", ["password": password, "tags": ""])
        try await send(
            "PUT", "/api/permissions/\(escaped(vhost))/\(escaped(user))",
            ["configure": "^\(own)$", "write": "^\(own)$", "read": "^(\(own)|\(NSRegularExpression.escapedPattern(for: eventsExchange)))$"])
        try await send(
            "PUT", "/api/topic-permissions/\(escaped(vhost))/\(escaped(user))", ["exchange": eventsExchange, "write": "^$", "read": "^(\(keys))$"])
        // What the plugin rejects goes to its own dead-letter queue, through the default exchange
        // (dead-lettering is the broker's, not the plugin user's, so it needs no permission).
        let deadLetters = Self.deadLetterQueue(ofPlugin: name)
        try await send(
            "PUT", "/api/queues/\(escaped(vhost))/\(escaped(deadLetters))",
            ["durable": true, "auto_delete": false, "arguments": ["x-max-length": 100_000, "x-message-ttl": 14 * 86_400 * 1000]])
        try await send(
            "PUT", "/api/queues/\(escaped(vhost))/\(escaped(queue))",
            [
                "durable": true, "auto_delete": false,
                "arguments": ["x-dead-letter-exchange": "", "x-dead-letter-routing-key": deadLetters],
            ])
        // Exactly the bindings asked for: those of an earlier creation that are not are removed.
        var bound: Set<String> = []
        for binding in try await boundKeys(of: queue) {
            if bindings.contains(binding.key) {
                bound.insert(binding.key)
            } else {
                try await send(
                    "DELETE", "/api/bindings/\(escaped(vhost))/e/\(escaped(eventsExchange))/q/\(escaped(queue))/\(escaped(binding.properties))", nil)
            }
        }
        for key in bindings where !bound.contains(key) {
            try await send(
                "POST", "/api/bindings/\(escaped(vhost))/e/\(escaped(eventsExchange))/q/\(escaped(queue))",
                ["routing_key": key, "arguments": [String: String]()])
        }
        return (user, password)
    }

    /// The plugins' names and the keys their queues are bound to the events exchange with.
    public func plugins() async throws -> [(name: String, bindings: [String])] {
        let (status, data) = try await request("GET", "/api/users", body: nil)
        guard (200..<300).contains(status) else { throw Failure(description: "listing broker users: HTTP \(status)") }
        let users = (try? JSONSerialization.jsonObject(with: data)) as? [[String: Any]] ?? []
        var plugins: [(String, [String])] = []
        for name in users.compactMap({ $0["name"] as? String }).filter({ $0.hasPrefix("drover-plugin-") }).sorted() {
            let plugin = String(name.dropFirst("drover-plugin-".count))
            plugins.append((plugin, try await boundKeys(of: Self.queue(ofPlugin: plugin)).map(\.key).sorted()))
        }
        return plugins
    }

    /// Deletes plugin `name`'s user (closing its connections) and its queue.
    /// - Returns: whether there was such a plugin.
    @discardableResult
    public func removePlugin(name: String) async throws -> Bool {
        let existed = try await removeUser(Self.userName(ofPlugin: name))
        var found = existed
        for queue in [Self.queue(ofPlugin: name), Self.deadLetterQueue(ofPlugin: name)] {
            let (status, _) = try await request("DELETE", "/api/queues/\(escaped(vhost))/\(escaped(queue))", body: nil)
            guard status == 404 || (200..<300).contains(status) else { throw Failure(description: "deleting \(queue): HTTP \(status)") }
            found = found || status != 404
        }
        return found
    }

    /// The bindings of `queue` to the events exchange: each key and its properties key (what
    /// deletes it).
    private func boundKeys(of queue: String) async throws -> [(key: String, properties: String)] {
        let (status, data) = try await request("GET", "/api/queues/\(escaped(vhost))/\(escaped(queue))/bindings", body: nil)
        guard status != 404 else { return [] }
        guard (200..<300).contains(status) else { throw Failure(description: "reading the bindings of \(queue): HTTP \(status)") }
        let bindings = (try? JSONSerialization.jsonObject(with: data)) as? [[String: Any]] ?? []
        return bindings.filter { $0["source"] as? String == eventsExchange }.compactMap { binding in
            guard let key = binding["routing_key"] as? String, let properties = binding["properties_key"] as? String else { return nil }
            return (key, properties)
        }
    }

    private func escaped(_ segment: String) -> String {
        segment.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? segment
    }

    private func send(_ method: String, _ path: String, _ body: [String: Any]?) async throws {
        let (status, data) = try await request(method, path, body: try body.map { try JSONSerialization.data(withJSONObject: $0) })
        guard (200..<300).contains(status) else {
            throw Failure(description: "\(method) \(path) on the broker: HTTP \(status) \(String(decoding: data, as: UTF8.self))")
        }
    }

    private func request(_ method: String, _ path: String, body: Data?) async throws -> (Int, Data) {
        guard let url = URL(string: base.absoluteString + path) else { throw Failure(description: "bad management path \(path)") }
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.httpBody = body
        request.timeoutInterval = 30
        request.setValue(authorization, forHTTPHeaderField: "Authorization")
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        do {
            let (data, response) = try await URLSession.shared.data(for: request)
            return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
        } catch {
            throw Failure(description: "cannot reach the RabbitMQ management API at \(base.absoluteString): \(error.localizedDescription)")
        }
    }
}

extension Delivery {
    /// Refuses a message that speaks for another node than the one that sent it: its routing key
    /// must be under `node.<nodeID>.`, and when a node's broker user published it (the broker
    /// has checked `user-id`), that user must be node `nodeID`'s.
    /// - Parameters:
    ///   - nodeID: the node the message says it is from.
    ///   - requireIdentity: also refuse what any other user published (a shared user, or none
    ///     named): only node `nodeID`'s own user may speak for it.
    /// - Throws: ``MessageRejected`` saying why.
    public func checkSentBy(node nodeID: String, requireIdentity: Bool = false) throws {
        guard routingKey.hasPrefix("node.\(nodeID).") else {
            throw MessageRejected("NodeID '\(nodeID)' does not match routing key '\(routingKey)'")
        }
        if let userID, let sender = BrokerUsers.nodeID(ofUser: userID) {
            guard sender == nodeID else { throw MessageRejected("NodeID '\(nodeID)' was sent by broker user '\(userID)' of another node") }
            return
        }
        if requireIdentity {
            throw MessageRejected(
                "a message of node '\(nodeID)' must come from its own broker user (\(BrokerUsers.userName(of: nodeID))), not "
                    + (userID.map { "'\($0)'" } ?? "an unnamed user") + "; join the node with an enrollment token")
        }
    }
}
