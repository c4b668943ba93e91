import ArgumentParser
import DroverHTTPClient
import DroverModel
import Foundation
import NIOHTTP1

/// Talks to the gateway's Nomad-shaped API (or the node's agent); turns every failure into a
/// message that says what went wrong and what to do.
struct APIClient {
    let address: String
    /// The ACL token's secret, sent as `X-Nomad-Token`.
    var token: String? = nil
    /// Headers every request carries (the agent's token, for the node's commands).
    var headers: [String: String] = [:]
    /// The authorities an https server's certificate must chain to; the system's when nil.
    var caCertificate: String? = nil
    /// The namespace every `/v1/` request names (`?namespace=`), unless its path names one.
    var namespace: String? = nil

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// The headers of an answer.
    struct AnswerHeaders {
        let headers: HTTPHeaders
        func value(forHTTPHeaderField name: String) -> String? { headers.first(name: name) }
    }

    /// - Returns: the decoded body and the `X-Nomad-Index` of the answer.
    func get<T: Decodable>(_ path: String, as type: T.Type = T.self) async throws -> (T, Int64) {
        try await send("GET", path, body: nil)
    }

    func send<T: Decodable>(_ method: String, _ path: String, body: Data?, as type: T.Type = T.self) async throws -> (T, Int64) {
        let (data, http) = try await raw(method, path, body: body)
        let index = Int64(http?.value(forHTTPHeaderField: "X-Nomad-Index") ?? "") ?? 0
        do {
            return (try JSONDecoder().decode(T.self, from: data), index)
        } catch {
            throw Failure(description: "unexpected answer from \(path): \(error)")
        }
    }

    /// Follows a streaming answer (`GET /v1/event/stream`), handing each line to `line`, until the
    /// server ends it. - Throws: the refusal, as ``raw(_:_:body:)`` words it.
    func streamLines(_ path: String, _ line: (String) async throws -> Void) async throws {
        var headers = headers
        if let token { headers["X-Nomad-Token"] = token }
        let (status, refusal): (Int, Data)
        do {
            (status, refusal) = try await HTTPClients.streamLines(
                "GET", address + namespaced(path), headers: headers, caCertificate: caCertificate, line)
        } catch {
            throw Failure(description: "cannot follow \(address)\(path) (\(error)). Is Drover running? DROVER_ADDR names the gateway.")
        }
        guard (200..<300).contains(status) else {
            let problem = try? JSONDecoder().decode(APIError.self, from: refusal)
            throw Failure(description: "\(problem?.error ?? String(decoding: refusal, as: UTF8.self)) (HTTP \(status))")
        }
    }

    /// The body of a successful answer as it came, with the answer's headers.
    func raw(_ method: String = "GET", _ path: String, body: Data? = nil) async throws -> (Data, AnswerHeaders?) {
        let (status, headers, data) = try await exchange(method, path, body: body)
        guard (200..<300).contains(status) else {
            if status == 401 || status == 403, let problem = try? JSONDecoder().decode(APIError.self, from: data) {
                throw Failure(
                    description: "\(problem.error) (HTTP \(status)).\n"
                        + (status == 401
                            ? "Pass a token with --token or DROVER_TOKEN (or NOMAD_TOKEN); deploy/local/up writes the local cluster's management token to .drover/management.token."
                            : "The token's policies do not allow this; ask an operator for a token that does (drover acl token create)."))
            }
            if let problem = try? JSONDecoder().decode(APIError.self, from: data) {
                var text = problem.error
                for field in problem.fields ?? [] where problem.fields?.count ?? 0 > 1 { text += "\n  \(field.field): \(field.reason)" }
                throw Failure(description: text)
            }
            throw Failure(description: "the API answered HTTP \(status): \(String(decoding: data, as: UTF8.self))")
        }
        return (data, AnswerHeaders(headers: headers))
    }

    /// `path` with `?namespace=` of ``namespace`` added, for the Nomad-shaped routes.
    func namespaced(_ path: String) -> String {
        guard let namespace, !namespace.isEmpty, path.hasPrefix("/v1/"), !path.hasPrefix("/v1/scheduler"), !path.contains("namespace=") else {
            return path
        }
        let value = namespace.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(["-", "*"])) ?? namespace
        return path + (path.contains("?") ? "&" : "?") + "namespace=" + value
    }

    /// One request and its answer, whatever its status.
    func exchange(_ method: String, _ path: String, body: Data? = nil) async throws -> (Int, HTTPHeaders, Data) {
        var headers = headers
        if body != nil { headers["Content-Type"] = "application/json" }
        if let token { headers["X-Nomad-Token"] = token }
        do {
            let answer = try await HTTPClients.send(
                method, address + namespaced(path), headers: headers, body: body, caCertificate: caCertificate, timeout: .seconds(400),
                limit: 1 << 30)
            return (answer.status, answer.headers, answer.body)
        } catch  where HTTPClients.isHandshakeFailure(error) {
            throw Failure(
                description: "the TLS handshake with \(address) failed (\(error)).\n"
                    + "Its certificate must chain to an authority you trust and name the host: pass that authority's PEM file "
                    + "with --ca-cert (DROVER_CACERT), and use the host name the certificate was made for.")
        } catch {
            throw Failure(
                description: "cannot reach \(address) (\(error)).\n"
                    + "Is Drover running? Start it locally with deploy/local/up, or point DROVER_ADDR (DROVER_AGENT_ADDR for node commands) at it"
                    + (address.hasPrefix("https") ? "; for https, --ca-cert (DROVER_CACERT) names the authority its certificate must chain to." : ".")
            )
        }
    }
}

/// JSON as it came, for `-json` output of answers the CLI has no type for.
struct RawJSON: Decodable {
    let value: Any

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            value = NSNull()
        } else if let bool = try? container.decode(Bool.self) {
            value = bool
        } else if let number = try? container.decode(Int64.self) {
            value = number
        } else if let number = try? container.decode(Double.self) {
            value = number
        } else if let string = try? container.decode(String.self) {
            value = string
        } else if let array = try? container.decode([RawJSON].self) {
            value = array.map(\.value)
        } else {
            value = try container.decode([String: RawJSON].self).mapValues(\.value)
        }
    }

    var pretty: String {
        guard JSONSerialization.isValidJSONObject(value),
            let data = try? JSONSerialization.data(withJSONObject: value, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        else { return "\(value)" }
        return String(decoding: data, as: UTF8.self)
    }
}

/// Prints rows as aligned columns, as Nomad's CLI does.
func table(_ header: [String], _ rows: [[String]]) -> String {
    let all = [header] + rows
    let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
    return all.map { row in
        row.enumerated().map { index, cell in
            index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
    }.joined(separator: "\n")
}

func short(_ id: String) -> String { String(id.prefix(8)) }
