public import AsyncHTTPClient
public import Foundation
import NIOCore
import NIOFoundationCompat
public import NIOHTTP1
import NIOSSL
import Synchronization

/// HTTP(S) clients for calls to a gateway or an agent: one per set of trusted authorities, kept
/// for the life of the process (each shares NIO's event loops).
public enum HTTPClients {
    private static let clients = Mutex<[String: HTTPClient]>([:])

    /// A client that verifies servers against the authorities in `caCertificate` (a PEM file),
    /// or the system's when nil. A connection that fails (refused, or a certificate not
    /// trusted) fails the request at once instead of being retried until the connect timeout:
    /// callers that should keep trying (an agent joining) loop themselves.
    public static func client(caCertificate: String?) -> HTTPClient {
        let path = caCertificate ?? ""
        return clients.withLock { clients in
            if let client = clients[path] { return client }
            var tls = TLSConfiguration.makeClientConfiguration()
            if !path.isEmpty { tls.trustRoots = .file(path) }
            var configuration = HTTPClient.Configuration(tlsConfiguration: tls, timeout: .init(connect: .seconds(10)))
            configuration.connectionPool.retryConnectionEstablishment = false
            let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            clients[path] = client
            return client
        }
    }

    /// Sends one request. - Returns: the answer's status, headers and body (at most `limit` bytes).
    /// - Throws: when the server cannot be reached or its certificate is not trusted.
    public static func send(
        _ method: String, _ url: String, headers: [String: String] = [:], body: Data? = nil, caCertificate: String? = nil,
        timeout: Duration = .seconds(60), limit: Int = 256 << 20
    ) async throws -> (status: Int, headers: HTTPHeaders, body: Data) {
        var request = HTTPClientRequest(url: url)
        request.method = HTTPMethod(rawValue: method)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(data: body)) }
        let response = try await client(caCertificate: caCertificate).execute(request, timeout: .seconds(timeout.components.seconds))
        let bytes = try await response.body.collect(upTo: limit)
        return (Int(response.status.code), response.headers, Data(buffer: bytes))
    }

    /// Sends one request and hands its answer's body to `line` a line at a time (without the
    /// newline) as it arrives, until the server ends it. A request that is refused (not 2xx)
    /// gives no lines. - Returns: the status, and the body of a refusal (at most 1 MiB).
    public static func streamLines(
        _ method: String, _ url: String, headers: [String: String] = [:], caCertificate: String? = nil, _ line: (String) async throws -> Void
    ) async throws -> (status: Int, refusal: Data) {
        var request = HTTPClientRequest(url: url)
        request.method = HTTPMethod(rawValue: method)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        let response = try await client(caCertificate: caCertificate).execute(request, deadline: .distantFuture)
        let status = Int(response.status.code)
        guard (200..<300).contains(status) else { return (status, Data(buffer: try await response.body.collect(upTo: 1 << 20))) }
        var pending: [UInt8] = []
        for try await chunk in response.body {
            pending += chunk.readableBytesView
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                try await line(String(decoding: pending[..<newline], as: UTF8.self))
                pending.removeSubrange(...newline)
            }
            // A line is at most 64 MiB (an event carries one object).
            if pending.count > 64 << 20 { pending.removeAll() }
        }
        if !pending.isEmpty { try await line(String(decoding: pending, as: UTF8.self)) }
        return (status, Data())
    }

    /// Whether `error` is a TLS handshake that failed: most often a server certificate that does
    /// not chain to the trusted authorities, or does not name the host.
    public static func isHandshakeFailure(_ error: any Error) -> Bool {
        if case NIOSSLError.handshakeFailed = error { return true }
        return false
    }
}
