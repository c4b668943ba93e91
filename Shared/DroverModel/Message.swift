public import Foundation

/// A message of Drover's public contract: a JSON body with a stable type name and schema version.
///
/// Every type named here is listed, with its JSON schema and routing key, in `docs/asyncapi.yaml`.
/// Changing a message's fields in a way old readers cannot follow is a new `schemaVersion`.
public protocol DroverMessage: Codable, Sendable {
    /// The type name carried in the envelope and the AMQP `type` property, e.g. `node.heartbeat`.
    static var messageType: String { get }
    /// The version of this message's schema; readers refuse versions newer than they know.
    static var schemaVersion: Int { get }
}

/// What travels with every message, in its JSON body and mirrored in AMQP properties and headers.
public struct MessageEnvelope<Payload: Codable & Sendable>: Codable, Sendable {
    /// Unique per message; consumers deduplicate on it.
    public var id: String
    /// The payload's type name (`DroverMessage.messageType`).
    public var type: String
    /// The payload's schema version.
    public var version: Int
    /// When the message was created.
    public var time: Date
    /// W3C trace context of the operation that produced the message, when there is one.
    public var traceparent: String?
    /// The message itself.
    public var data: Payload

    /// An envelope with every field given.
    public init(id: String, type: String, version: Int, time: Date, traceparent: String?, data: Payload) {
        self.id = id
        self.type = type
        self.version = version
        self.time = time
        self.traceparent = traceparent
        self.data = data
    }
}

extension MessageEnvelope where Payload: DroverMessage {
    /// Wraps `data` in a new envelope with a fresh message id.
    public init(_ data: Payload, id: String = UUID().uuidString.lowercased(), time: Date = Date(), traceparent: String? = nil) {
        self.init(id: id, type: Payload.messageType, version: Payload.schemaVersion, time: time, traceparent: traceparent, data: data)
    }
}

/// The JSON coding every Drover message uses: ISO 8601 UTC dates with milliseconds, sorted keys.
public enum MessageCoding {
    /// The encoder of every message body.
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
        }
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// The decoder of every message body; it also reads dates without fractional seconds.
    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            if let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) {
                return date
            }
            if let date = try? Date(text, strategy: .iso8601) {
                return date
            }
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "expected an ISO 8601 date, got \(text)")
        }
        return decoder
    }
}
