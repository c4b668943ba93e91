import DroverModel
import Foundation
import Testing

@Suite struct MessageTests {
    @Test func anEnvelopeRoundTripsWithFractionalSecondsAndPascalCaseFields() throws {
        let heartbeat = NodeHeartbeat(nodeID: "n1", sequence: 42, agentStartedAt: Date(timeIntervalSince1970: 1_800_000_000.125))
        let envelope = MessageEnvelope(heartbeat, id: "m-1", time: Date(timeIntervalSince1970: 1_800_000_001.5), traceparent: "00-abc-def-01")
        let json = String(decoding: try MessageCoding.encoder().encode(envelope), as: UTF8.self)
        #expect(
            json
                == #"{"data":{"AgentStartedAt":"2027-01-15T08:00:00.125Z","NodeID":"n1","Sequence":42},"id":"m-1","time":"2027-01-15T08:00:01.500Z","traceparent":"00-abc-def-01","type":"node.heartbeat","version":1}"#
        )
        let decoded = try MessageCoding.decoder().decode(MessageEnvelope<NodeHeartbeat>.self, from: Data(json.utf8))
        #expect(decoded.data == heartbeat && decoded.id == "m-1" && decoded.version == 1)
    }

    @Test func datesWithoutFractionalSecondsAreReadToo() throws {
        let json =
            #"{"id":"x","type":"node.heartbeat","version":1,"time":"2026-01-01T00:00:00Z","data":{"NodeID":"n","Sequence":1,"AgentStartedAt":"2026-01-01T00:00:00Z"}}"#
        let decoded = try MessageCoding.decoder().decode(MessageEnvelope<NodeHeartbeat>.self, from: Data(json.utf8))
        #expect(decoded.time == Date(timeIntervalSince1970: 1_767_225_600))
    }

    @Test func aLogMessageRefusesAnUnknownLevel() {
        let json =
            #"{"id":"x","type":"node.log","version":1,"time":"2026-01-01T00:00:00Z","data":{"NodeID":"n","Message":"m","Level":"loud","Priority":"low"}}"#
        #expect(throws: DecodingError.self) { try MessageCoding.decoder().decode(MessageEnvelope<NodeLogMessage>.self, from: Data(json.utf8)) }
    }

    @Test func routingKeysPutTheMostGeneralWordFirst() {
        #expect(RoutingKey.nodeHeartbeat("n1") == "node.n1.heartbeat")
        #expect(RoutingKey.nodeLog("n1", level: .error, priority: .high) == "node.n1.log.error.high")
        #expect(RoutingKey.nodeSend("n1", "app.done") == "node.n1.send.app.done")
        #expect(RoutingKey.evaluation("e1", "pending") == "cluster.eval.e1.pending")
        #expect(RoutingKey.allocation(node: "n1", alloc: "a1", "updated") == "cluster.alloc.n1.a1.updated")
        #expect(RoutingKey.nodePrefix("n1") == "node.n1.")
    }

    @Test(arguments: [("node-1", true), ("6f1c0d2e-aaaa", true), ("", false), ("a.b", false), ("a*", false), ("#", false), ("a b", false)])
    func aNodeIDMustBeOneRoutingKeyWord(_ example: (word: String, valid: Bool)) {
        #expect(RoutingKey.isValidWord(example.word) == example.valid)
    }
}
