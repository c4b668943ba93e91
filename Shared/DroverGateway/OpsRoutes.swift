import Foundation
import Hummingbird

/// The API's own description, and enough of Nomad's agent and status routes for clients.
extension Gateway {
    func addOpsRoutes(to routes: GuardedRouter) {
        routes.get("/v1/openapi.yaml", .open) { _, _ in
            guard let url = Bundle.module.url(forResource: "openapi", withExtension: "yaml"), let data = try? Data(contentsOf: url) else {
                return Self.error(.internalServerError, "the OpenAPI document is missing from this build")
            }
            return Response(
                status: .ok, headers: [.contentType: "application/yaml"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
        }
        routes.get("/v1/status/leader", .open) { _, _ in Self.json(address, index: nil) }
        routes.get("/v1/status/peers", .open) { _, _ in Self.json([address], index: nil) }
        routes.get("/v1/agent/self", .agent(.read)) { _, _ in Self.json(AgentSelf(address: address), index: nil) }
        // Nomad's forced garbage collection: whatever is over goes now, whatever its age.
        for method in [HTTPRequest.Method.put, .post] {
            routes.on("/v1/system/gc", method: method, .management) { _, _ in
                try await handle {
                    let collected = try await collector.collect(forced: true)
                    logger.info("Garbage collection forced", metadata: ["removed": "\(collected.total)"])
                    return Response(status: .ok)
                }
            }
        }
    }
}

/// Enough of Nomad's `/v1/agent/self` for clients that read the agent's name and region.
struct AgentSelf: Encodable {
    var address: String
    enum CodingKeys: String, CodingKey { case config, member, stats }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(["Region": "global", "Datacenter": "dc1", "Version": "drover 0.1.0"], forKey: .config)
        try container.encode(["Name": "api-gateway", "Addr": address, "Status": "alive"], forKey: .member)
        try container.encode([String: String](), forKey: .stats)
    }
}
