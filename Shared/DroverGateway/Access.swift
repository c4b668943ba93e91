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

/// Where a route's namespace capability is checked.
enum NamespaceScope: Sendable {
    /// By the route, against the namespace of what it touches (a job, an allocation, an
    /// evaluation) or of what it lists; the guard refuses a success that made no check.
    case object
    /// By the guard, in a fixed namespace: Chronos's jobs live in `default`.
    case fixed(String)
}

/// The gateway's routes, each added with what it requires of the caller's token: a route cannot be
/// added without a rule. The rule is checked before the handler runs:
/// - no token, an unknown one or an expired one: 401, with `WWW-Authenticate`;
/// - a token without the capability: 403 `Permission denied`, as Nomad answers.
///
/// A token comes in `X-Nomad-Token`, as `Authorization: Bearer <secret>`, or as the password of
/// HTTP basic authentication (what chronos-python and other httplib2 clients send, once challenged).
/// The caller it resolves to is on the handler's context (``GatewayRequestContext/caller``).
/// Namespace capabilities are checked against what a route touches (``NamespaceScope``), never
/// against what the request says about itself.
struct GuardedRouter {
    let router: RouterGroup<GatewayRequestContext>
    let gateway: Gateway

    init(router: Router<BasicRequestContext>, gateway: Gateway) {
        self.router = router.group(context: GatewayRequestContext.self)
        self.gateway = gateway
    }

    typealias Handler = @Sendable (Request, GatewayRequestContext) async throws -> Response

    func on(
        _ path: String, method: HTTPRequest.Method, _ requirement: Requirement, scope: NamespaceScope = .object, _ handler: @escaping Handler
    ) {
        let gateway = self.gateway
        router.on(RouterPath(path), method: method) { request, context in
            var context = context
            switch await gateway.admit(request, requirement, scope: scope, nodeID: context.parameters.get("id")) {
            case .refused(let response): return response
            case .admitted(let caller): context.caller = caller
            }
            let response = try await handler(request, context)
            // Fails closed: a route that should have checked a namespace and answered without
            // doing so is a fault of the gateway's, and answers nothing of what it found.
            if case .namespace = requirement, case .object = scope, !context.caller.madeNamespaceCheck, (200..<300).contains(response.status.code) {
                gateway.logger.error("Route made no namespace check", metadata: ["path": "\(path)", "method": "\(method)"])
                return Gateway.error(.forbidden, "Permission denied")
            }
            return response
        }
    }

    func get(_ path: String, _ requirement: Requirement, scope: NamespaceScope = .object, _ handler: @escaping Handler) {
        on(path, method: .get, requirement, scope: scope, handler)
    }
    func post(_ path: String, _ requirement: Requirement, scope: NamespaceScope = .object, _ handler: @escaping Handler) {
        on(path, method: .post, requirement, scope: scope, handler)
    }
    func put(_ path: String, _ requirement: Requirement, scope: NamespaceScope = .object, _ handler: @escaping Handler) {
        on(path, method: .put, requirement, scope: scope, handler)
    }
    func delete(_ path: String, _ requirement: Requirement, scope: NamespaceScope = .object, _ handler: @escaping Handler) {
        on(path, method: .delete, requirement, scope: scope, handler)
    }
}

/// What the guard decided about a request.
enum Admission {
    /// It may go on, as this caller.
    case admitted(Caller)
    /// This answers it.
    case refused(Response)
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

    /// Whether `request` may go on, and as whom.
    /// - Parameter nodeID: the node the route is about, for ``Requirement/ownNode``.
    func admit(_ request: Request, _ requirement: Requirement, scope: NamespaceScope = .object, nodeID: String? = nil) async -> Admission {
        guard access.enabled else { return .admitted(Caller(.everything)) }
        if requirement == .open { return .admitted(Caller(.nothing)) }
        let resolution: TokenResolver.Resolution
        do {
            // A joined node proves itself with its own secret, on the routes about itself.
            if requirement == .ownNode, let nodeID, let secret = request.headers[.init(Self.nodeSecretHeader)!] {
                guard try await enrollment.verify(nodeID: nodeID, secret: secret) else {
                    return .refused(Self.unauthorized(request, "node secret does not match node '\(nodeID)'"))
                }
                return .admitted(Caller(.nothing))
            }
            resolution = try await resolve(request)
        } catch {
            // Fails closed: an outage answers 503, anything else 500; never the handler.
            return .refused((try? await handle { throw error }) ?? Self.error(.internalServerError, "the token could not be checked"))
        }
        switch resolution {
        case .missing: return .refused(Self.unauthorized(request, "ACL token missing: send it in X-Nomad-Token or as Authorization: Bearer <secret>"))
        case .unknown: return .refused(Self.unauthorized(request, "ACL token not found"))
        case .expired: return .refused(Self.unauthorized(request, "ACL token expired"))
        case .granted(let acl, _):
            let caller = Caller(.acl(acl))
            switch requirement {
            case .namespace(let capability):
                if case .fixed(let namespace) = scope, !caller.allows(capability, in: namespace) {
                    return .refused(Self.error(.forbidden, "Permission denied"))
                }
            default:
                if !acl.allows(requirement) { return .refused(Self.error(.forbidden, "Permission denied")) }
            }
            return .admitted(caller)
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
