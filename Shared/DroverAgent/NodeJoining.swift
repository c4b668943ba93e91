import DroverHTTPClient
import DroverModel
import DroverRuntime
import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

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
    /// what it got. A gateway that cannot be reached is tried again, every 2 s, for `patience`;
    /// a token the gateway refuses ends it at once.
    static func join(
        nodeID: String, token: String, address: String, caCertificate: String?, in directory: URL, patience: Duration = .seconds(300),
        logger: Logger
    ) async throws -> NodeJoin {
        let body = try JSONEncoder().encode(["EnrollToken": token])
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

    static func keep(_ joined: NodeJoin, in directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = file(in: directory)
        let data = try JSONEncoder().encode(joined)
        let temporary = file.path + ".new"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw POSIXError.fromErrno() }
        let written = data.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        guard fchmod(descriptor, 0o600) == 0, written == data.count, fsync(descriptor) == 0 else {
            close(descriptor)
            throw POSIXError.fromErrno()
        }
        close(descriptor)
        guard rename(temporary, file.path) == 0 else { throw POSIXError.fromErrno() }
    }
}
