import DroverHTTPClient
import DroverModel
import DroverRuntime
import Foundation
import Logging

/// The node's own identity: what it got when it joined with an enrollment token (its broker
/// user, the control plane's broker user, its secret for the gateway), kept in
/// `<data-dir>/credentials.json`, mode 0600, and used on every later start.
enum NodeJoining {
    struct Refused: Error, CustomStringConvertible {
        var description: String
    }

    static func file(in directory: URL) -> URL { directory.appendingPathComponent("credentials.json") }

    /// The credentials kept from an earlier join, if any.
    static func stored(in directory: URL) throws -> NodeJoin? {
        let file = file(in: directory)
        guard FileManager.default.fileExists(atPath: file.path) else { return nil }
        do {
            return try JSONDecoder().decode(NodeJoin.self, from: Data(contentsOf: file))
        } catch {
            throw Refused(description: "\(file.path) does not hold node credentials (\(error)); remove it and join again with an enrollment token")
        }
    }

    /// Joins node `nodeID` through the gateway at `address` with the one-time `token`, and keeps
    /// what it got. A gateway that cannot be reached, or does not answer in time, is tried again,
    /// every 2 s, for `patience`; a token the gateway refuses ends it at once. Every attempt
    /// carries the same join key, drawn once and kept in `<data-dir>/join-key` until the join is
    /// kept: a gateway that used the token for an answer that never arrived (or for an agent
    /// restarted meanwhile) lets the same node join again with it.
    static func join(
        nodeID: String, token: String, address: String, caCertificate: String?, in directory: URL, patience: Duration = .seconds(300),
        logger: Logger
    ) async throws -> NodeJoin {
        let joinKey = try self.joinKey(in: directory)
        let body = try JSONEncoder().encode(["EnrollToken": token, "JoinKey": joinKey])
        let deadline = ContinuousClock.now + patience
        while true {
            do {
                let answer = try await HTTPClients.send(
                    "POST", "\(address)/v1/node/\(nodeID)/join", headers: ["Content-Type": "application/json"], body: body,
                    caCertificate: caCertificate, timeout: .seconds(30))
                guard answer.status == 200 else {
                    let reason =
                        (try? JSONDecoder().decode(APIError.self, from: answer.body).error)
                        ?? String(decoding: answer.body.prefix(500), as: UTF8.self)
                    guard answer.status >= 500 else {
                        throw Refused(description: "the gateway refused to let node \(nodeID) join (HTTP \(answer.status)): \(reason)")
                    }
                    throw Refused(description: "retry: HTTP \(answer.status) \(reason)")
                }
                var joined = try JSONDecoder().decode(NodeJoin.self, from: answer.body)
                joined.address = address
                try keep(joined, in: directory)
                try? FileManager.default.removeItem(at: joinKeyFile(in: directory))
                return joined
            } catch let refused as Refused where !refused.description.hasPrefix("retry: ") {
                throw refused
            } catch {
                guard ContinuousClock.now < deadline else {
                    throw Refused(description: "cannot join through \(address) (\(error)) after \(patience)")
                }
                logger.warning("Cannot join yet; trying again", metadata: ["address": "\(address)", "error": "\(error)"])
                try await Task.sleep(for: .seconds(2))
            }
        }
    }

    static func joinKeyFile(in directory: URL) -> URL { directory.appendingPathComponent("join-key") }

    /// The key of this node's join: the one kept from an attempt before, or a new one, kept
    /// (mode 0600, flushed) before it is first sent.
    static func joinKey(in directory: URL) throws -> String {
        let file = joinKeyFile(in: directory)
        if let kept = try? String(contentsOf: file, encoding: .utf8), (32...256).contains(kept.utf8.count) {
            return kept
        }
        // Two random (version 4) UUIDs: 244 bits from the system's secure source.
        let key = UUID().uuidString + UUID().uuidString
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try FileReplacement.replace(file.path, with: Data(key.utf8), mode: 0o600, flush: true)
        return key
    }

    static func keep(_ joined: NodeJoin, in directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try FileReplacement.replace(file(in: directory).path, with: JSONEncoder().encode(joined), mode: 0o600, flush: true)
    }
}
