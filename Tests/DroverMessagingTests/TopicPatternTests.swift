import DroverMessaging
import Testing

@Suite struct TopicPatternTests {
    static let cases: [(pattern: String, key: String, matches: Bool)] = [
        ("node.*.heartbeat", "node.n1.heartbeat", true),
        ("node.*.heartbeat", "node.n1.log.info", false),
        ("node.*.heartbeat", "node.heartbeat", false),
        ("node.#", "node", true),
        ("node.#", "node.n1.log.error.high", true),
        ("node.#", "nodes.n1", false),
        ("node.*.log.#", "node.n1.log", true),
        ("node.*.log.#", "node.n1.log.warn.medium", true),
        ("node.*.log.#", "node.n1.output.a.t.stdout", false),
        ("#", "anything.at.all", true),
        ("#", "", true),
        ("*", "one", true),
        ("*", "one.two", false),
        ("#.heartbeat", "node.n1.heartbeat", true),
        ("#.heartbeat", "heartbeat", true),
        ("cluster.#.updated", "cluster.alloc.n1.a1.updated", true),
        ("cluster.#.updated", "cluster.alloc.n1.a1.placed", false),
        ("*.*.*", "a.b.c", true),
        ("*.*.*", "a.b", false),
        ("a.#.#.b", "a.b", true),
        ("exact.key", "exact.key", true),
        ("exact.key", "exact.keys", false),
    ]

    @Test(arguments: cases)
    func matching(_ example: (pattern: String, key: String, matches: Bool)) throws {
        #expect(try TopicPattern(example.pattern).matches(example.key) == example.matches)
    }

    @Test(arguments: ["node.*x", "a..b", "#a", ".node"])
    func refusesMalformedPatterns(_ pattern: String) {
        #expect(throws: MessagingError.invalidBinding(pattern)) { try TopicPattern(pattern) }
    }
}

@Suite struct AMQPEndpointTests {
    @Test func parsesAFullURL() throws {
        let endpoint = try AMQPEndpoint(url: "amqp://drover:s%40cret@broker.local:5680/prod")
        #expect(endpoint.host == "broker.local" && endpoint.port == 5680 && endpoint.vhost == "prod")
        #expect(endpoint.user == "drover" && endpoint.password == "s@cret")
        #expect(endpoint.redacted == "amqp://drover@broker.local:5680/prod")
    }

    @Test func defaultsPortUserAndVhost() throws {
        let endpoint = try AMQPEndpoint(url: "amqp://127.0.0.1")
        #expect(endpoint.port == 5672 && endpoint.user == "guest" && endpoint.password == "guest" && endpoint.vhost == "/")
        #expect(try AMQPEndpoint(url: "amqp://h:1/").vhost == "/")
        #expect(try AMQPEndpoint(url: "amqp://h:1/%2F").vhost == "/")
    }

    @Test func readsTLSAndItsAuthority() throws {
        let endpoint = try AMQPEndpoint(url: "amqps://drover:p@broker.local/prod?cacertfile=/etc/drover/ca.pem")
        #expect(endpoint.tls && endpoint.port == 5671 && endpoint.caCertificate == "/etc/drover/ca.pem")
        #expect(endpoint.redacted == "amqps://drover@broker.local:5671/prod")
        #expect(try AMQPEndpoint(url: endpoint.url) == endpoint)
        #expect(try AMQPEndpoint(url: "amqp://h").tls == false)
    }

    @Test(arguments: [
        ("http://h:5672", "scheme"),
        ("amqp://:5672", "no host"),
        ("amqp://h:70000", "out of range"),
        ("amqp://h?cacertfile=/ca.pem", "for amqps"),
        ("amqps://h?cacertfile=ca.pem", "absolute path"),
        ("amqps://h?verify=none", "unknown query parameter 'verify'"),
    ])
    func refusesBadURLs(_ example: (url: String, reason: String)) {
        let error = #expect(throws: MessagingError.self) { try AMQPEndpoint(url: example.url) }
        #expect(error?.description.contains(example.reason) == true)
    }
}

@Suite struct SenderCheckTests {
    struct Unsettled: DeliveryAcknowledger {
        func settle(_ delivery: Delivery, _ outcome: Delivery.Outcome) {}
    }

    func delivery(_ routingKey: String, user: String?) -> Delivery {
        Delivery(
            queue: "q", exchange: "drover", routingKey: routingKey, messageID: nil, type: nil, headers: [:], body: [], redelivered: false,
            deliveryTag: 1, connectionGeneration: 0, acknowledger: Unsettled(), userID: user)
    }

    @Test func aMessageMustComeFromTheNodeItSpeaksFor() throws {
        try delivery("node.n1.heartbeat", user: "drover-node-n1").checkSentBy(node: "n1")
        try delivery("node.n1.heartbeat", user: "guest").checkSentBy(node: "n1")  // a control-plane or unenrolled user
        try delivery("node.n1.heartbeat", user: nil).checkSentBy(node: "n1")
        #expect(throws: MessageRejected.self) { try delivery("node.n2.heartbeat", user: nil).checkSentBy(node: "n1") }
        #expect(throws: MessageRejected.self) { try delivery("node.n1.heartbeat", user: "drover-node-n2").checkSentBy(node: "n1") }
        #expect(throws: MessageRejected.self) { try delivery("node.n10.heartbeat", user: nil).checkSentBy(node: "n1") }
        // With node identity required, only the node's own user speaks for it.
        try delivery("node.n1.heartbeat", user: "drover-node-n1").checkSentBy(node: "n1", requireIdentity: true)
        #expect(throws: MessageRejected.self) { try delivery("node.n1.heartbeat", user: "guest").checkSentBy(node: "n1", requireIdentity: true) }
        #expect(throws: MessageRejected.self) { try delivery("node.n1.heartbeat", user: nil).checkSentBy(node: "n1", requireIdentity: true) }
        #expect(throws: MessageRejected.self) {
            try delivery("node.n1.heartbeat", user: "drover-node-n2").checkSentBy(node: "n1", requireIdentity: true)
        }
    }

    @Test func nodeUsersAreNamedAfterTheirNode() {
        #expect(BrokerUsers.userName(of: "n1") == "drover-node-n1")
        #expect(BrokerUsers.nodeID(ofUser: "drover-node-n1") == "n1")
        #expect(BrokerUsers.nodeID(ofUser: "guest") == nil)
    }
}
