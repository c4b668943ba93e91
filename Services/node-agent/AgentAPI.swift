import DroverMessaging
import DroverModel
import Foundation
import Hummingbird

/// The agent's own HTTP routes, for the `drover` commands run on this node: they reach the bus
/// through the agent, with the node's identity, instead of holding credentials of their own.
struct AgentAPI: Sendable {
    let bus: any MessageBus
    let node: Node

    func addRoutes(to router: Router<BasicRequestContext>) {
        // `drover log`: a message from this node, for the cluster's event log.
        router.post("/v1/agent/log") { request, _ in
            let body = try await request.body.collect(upTo: 1 << 20)
            let entry: LogRequest
            do {
                entry = try JSONDecoder().decode(LogRequest.self, from: Data(buffer: body))
            } catch let error as DecodingError {
                return Self.error(.badRequest, FieldError(error, root: ""))
            }
            guard !entry.message.isEmpty else { return Self.error(.badRequest, FieldError("Message", "must not be empty")) }
            let priority = entry.priority ?? (entry.level == .error ? .high : .medium)
            let message = NodeLogMessage(nodeID: node.id, message: entry.message, level: entry.level ?? .info, priority: priority)
            try await bus.publish(message, routingKey: RoutingKey.nodeLog(node.id, level: message.level, priority: priority))
            return Response(status: .accepted)
        }
        // The node as fingerprinted, for `drover config`.
        router.get("/v1/agent/self") { _, _ in
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            return Response(
                status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: try encoder.encode(node))))
        }
    }

    struct LogRequest: Decodable {
        var message: String
        var level: NodeLogMessage.Level?
        var priority: NodeLogMessage.Priority?
        enum CodingKeys: String, CodingKey {
            case message = "Message"
            case level = "Level"
            case priority = "Priority"
        }
    }

    static func error(_ status: HTTPResponse.Status, _ field: FieldError) -> Response {
        let body = (try? JSONEncoder().encode(["Error": field.description])) ?? Data()
        return Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }
}
