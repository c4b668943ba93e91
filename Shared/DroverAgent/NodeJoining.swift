import DroverModel
import Foundation
import Logging

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
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
    static func join(nodeID: String, token: String, address: String, in directory: URL, patience: Duration = .seconds(300), logger: Logger)
        async throws -> NodeJoin
    {
        guard let url = URL(string: "\(address)/v1/node/\(nodeID)/join") else { throw Refused(description: "'\(address)' is not a URL") }
        var request = URLRequest(url: url)
        request.httpMethod = "POST"
        request.httpBody = try JSONEncoder().encode(["EnrollToken": token])
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.timeoutInterval = 30
        let deadline = ContinuousClock.now + patience
        while true {
            do {
                let (data, response) = try await URLSession.shared.data(for: request)
                let status = (response as? HTTPURLResponse)?.statusCode ?? 0
                guard status == 200 else {
                    let reason = (try? JSONDecoder().decode(APIError.self, from: data).error) ?? String(decoding: data.prefix(500), as: UTF8.self)
                    guard status >= 500 else {
                        throw Refused(description: "the gateway refused to let node \(nodeID) join (HTTP \(status)): \(reason)")
                    }
                    throw URLError(.badServerResponse)
                }
                var joined = try JSONDecoder().decode(NodeJoin.self, from: data)
                joined.address = address
                try keep(joined, in: directory)
                return joined
            } catch let refused as Refused {
                throw refused
            } catch {
                guard ContinuousClock.now < deadline else {
                    throw Refused(description: "cannot join through \(address) (\(error.localizedDescription)) after \(patience)")
                }
                logger.warning("Cannot join yet; trying again", metadata: ["address": "\(address)", "error": "\(error.localizedDescription)"])
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
