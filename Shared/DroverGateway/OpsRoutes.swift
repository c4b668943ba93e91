import Foundation
import Hummingbird

/// The API's own description, and enough of Nomad's agent and status routes for clients.
extension Gateway {
    func addOpsRoutes(to router: Router<BasicRequestContext>) {
        router.get("/v1/openapi.yaml") { _, _ in
            guard let url = Bundle.module.url(forResource: "openapi", withExtension: "yaml"), let data = try? Data(contentsOf: url) else {
                return Self.error(.internalServerError, "the OpenAPI document is missing from this build")
            }
            return Response(
                status: .ok, headers: [.contentType: "application/yaml"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
        }
        router.get("/v1/status/leader") { _, _ in Self.json(address, index: nil) }
        router.get("/v1/status/peers") { _, _ in Self.json([address], index: nil) }
        router.get("/v1/agent/self") { _, _ in Self.json(AgentSelf(address: address), index: nil) }
        // Nomad's forced garbage collection: whatever is over goes now, whatever its age.
        for method in [HTTPRequest.Method.put, .post] {
            router.on("/v1/system/gc", method: method) { _, _ in
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
