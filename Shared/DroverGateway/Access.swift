import DroverAccess
import DroverControlPlane
import DroverModel
import Foundation
public import Hummingbird

/// Whether the gateway checks tokens, and how.
public struct AccessConfiguration: Sendable {
    /// Off only for development: every route is then open.
    public var enabled: Bool
    /// How long a token's lookup is reused (Nomad's `token_ttl`).
    public var tokenLifetime: Duration

    public init(enabled: Bool = true, tokenLifetime: Duration = .seconds(30)) {
        self.enabled = enabled
        self.tokenLifetime = tokenLifetime
    }

    public static let disabled = AccessConfiguration(enabled: false)
}

/// The gateway's routes, each added with what it requires of the caller's token: a route cannot be
/// added without a rule. The rule is checked before the handler runs:
/// - no token, an unknown one or an expired one: 401, with `WWW-Authenticate`;
/// - a token without the capability: 403 `Permission denied`, as Nomad answers.
///
/// A token comes in `X-Nomad-Token`, as `Authorization: Bearer <secret>`, or as the password of
/// HTTP basic authentication (what chronos-python and other httplib2 clients send, once challenged).
/// Namespace capabilities are checked in the namespace of `?namespace=` (default `default`).
struct GuardedRouter {
    let router: Router<BasicRequestContext>
    let gateway: Gateway

    typealias Handler = @Sendable (Request, BasicRequestContext) async throws -> Response

    func on(_ path: String, method: HTTPRequest.Method, _ requirement: Requirement, _ handler: @escaping Handler) {
        let gateway = self.gateway
        router.on(RouterPath(path), method: method) { request, context in
            if let refusal = await gateway.refusal(of: request, requirement, nodeID: context.parameters.get("id")) { return refusal }
            return try await handler(request, context)
        }
    }

    func get(_ path: String, _ requirement: Requirement, _ handler: @escaping Handler) { on(path, method: .get, requirement, handler) }
    func post(_ path: String, _ requirement: Requirement, _ handler: @escaping Handler) { on(path, method: .post, requirement, handler) }
    func put(_ path: String, _ requirement: Requirement, _ handler: @escaping Handler) { on(path, method: .put, requirement, handler) }
    func delete(_ path: String, _ requirement: Requirement, _ handler: @escaping Handler) { on(path, method: .delete, requirement, handler) }
}

extension Gateway {
    /// The header a joined node sends its secret in.
    static let nodeSecretHeader = "X-Drover-Node-Secret"

    /// The secret a request carries, from whichever header it came in.
    static func secret(of request: Request) -> String? {
        if let token = request.headers[.init("X-Nomad-Token")!], !token.isEmpty { return token }
        guard let authorization = request.headers[.authorization] else { return nil }
        let parts = authorization.split(separator: " ", maxSplits: 1)
        guard parts.count == 2 else { return nil }
        switch parts[0].lowercased() {
        case "bearer": return String(parts[1]).trimmingCharacters(in: .whitespaces)
        case "basic":
            guard let decoded = Data(base64Encoded: String(parts[1])), let text = String(data: decoded, encoding: .utf8),
                let colon = text.firstIndex(of: ":")
            else { return nil }
            return String(text[text.index(after: colon)...])
        default: return nil
        }
    }

    /// What `request`'s token resolves to, through the cache.
    func resolve(_ request: Request) async throws -> TokenResolver.Resolution {
        try await resolver.resolve(secret: Self.secret(of: request))
    }

    /// The answer that refuses `request`, or nil when it may go on.
    /// - Parameter nodeID: the node the route is about, for ``Requirement/ownNode``.
    func refusal(of request: Request, _ requirement: Requirement, nodeID: String? = nil) async -> Response? {
        guard access.enabled, requirement != .open else { return nil }
        let resolution: TokenResolver.Resolution
        do {
            // A joined node proves itself with its own secret, on the routes about itself.
            if requirement == .ownNode, let nodeID, let secret = request.headers[.init(Self.nodeSecretHeader)!] {
                guard try await enrollment.verify(nodeID: nodeID, secret: secret) else {
                    return Self.unauthorized(request, "node secret does not match node '\(nodeID)'")
                }
                return nil
            }
            resolution = try await resolve(request)
        } catch {
            // Fails closed: an outage answers 503, anything else 500; never the handler.
            return (try? await handle { throw error }) ?? Self.error(.internalServerError, "the token could not be checked")
        }
        switch resolution {
        case .missing: return Self.unauthorized(request, "ACL token missing: send it in X-Nomad-Token or as Authorization: Bearer <secret>")
        case .unknown: return Self.unauthorized(request, "ACL token not found")
        case .expired: return Self.unauthorized(request, "ACL token expired")
        case .granted(let acl, _):
            let namespace = request.uri.queryParameters.get("namespace").map { String($0) } ?? "default"
            return acl.allows(requirement, namespace: namespace) ? nil : Self.error(.forbidden, "Permission denied")
        }
    }

    /// 401 with the challenges a client answers: a bearer token; and, on the Chronos-shaped
    /// routes, basic authentication, which httplib2-based clients wait for before they send
    /// their credentials.
    static func unauthorized(_ request: Request, _ message: String) -> Response {
        var response = error(.unauthorized, message)
        let chronos = request.uri.path.hasPrefix("/scheduler") || request.uri.path.hasPrefix("/v1/scheduler")
        response.headers[.wwwAuthenticate] = chronos ? #"Basic realm="drover""# : #"Bearer realm="drover""#
        return response
    }
}
