import DroverHTTPClient
import DroverModel
import DroverRuntime
import Foundation
import NIOHTTP1

/// What `drover report-issue` archives: the agent's logs, its state (node id, allocation
/// records, users, scripts to run on shutdown) and the node as fingerprinted, in a zip.
enum IssueReport {
    /// Uploads the archive at `file` as node `nodeID`, proving it with the node's secret.
    /// - Returns: the report's id. - Throws: ``AgentAPI/Refused`` saying why it failed.
    static func upload(_ file: URL, nodeID: String, secret: String, address: String, caCertificate: String?) async throws -> String {
        let answer: (status: Int, headers: HTTPHeaders, body: Data)
        do {
            answer = try await HTTPClients.send(
                "POST", "\(address)/v1/node/\(nodeID)/issue-report",
                headers: ["X-Drover-Node-Secret": secret, "Content-Type": "application/zip"], body: try Data(contentsOf: file),
                caCertificate: caCertificate, timeout: .seconds(120))
        } catch {
            throw AgentAPI.Refused("Upload", "cannot reach the gateway at \(address): \(error)")
        }
        guard answer.status == 200, let object = try? JSONSerialization.jsonObject(with: answer.body) as? [String: Any],
            let id = object["ID"] as? String
        else {
            throw AgentAPI.Refused(
                "Upload", "the gateway at \(address) answered HTTP \(answer.status): \(String(decoding: answer.body.prefix(500), as: UTF8.self))")
        }
        return id
    }

    /// Writes the archive to `destination`. - Returns: the paths it holds.
    static func write(to destination: URL, dataDirectory: URL, node: Node) throws -> [String] {
        var archive = ZipWriter()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        archive.add("node.json", try encoder.encode(node))
        let root = dataDirectory.standardizedFileURL.path
        let enumerator = FileManager.default.enumerator(atPath: root)
        while let relative = enumerator?.nextObject() as? String {
            // Task output is the log collector's; the archive keeps the agent's own files.
            guard Self.wanted(relative) else { continue }
            let path = root + "/" + relative
            var directory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &directory), !directory.boolValue,
                let data = FileManager.default.contents(atPath: path)
            else { continue }
            archive.add(relative, data)
        }
        try FileManager.default.createDirectory(at: destination.deletingLastPathComponent(), withIntermediateDirectories: true)
        try archive.finish().write(to: destination, options: .atomic)
        return archive.names
    }

    static func wanted(_ relative: String) -> Bool {
        if relative.hasPrefix("logs/agent.log") { return true }
        if ["node-id", "users.json", "run-on-shutdown.json"].contains(relative) { return true }
        return relative.hasPrefix("alloc/") && (relative.hasSuffix("/state.json") || relative.hasSuffix("/output-offsets.json"))
    }
}

/// A zip archive built in memory, its entries stored (not compressed): what any unzip reads.
struct ZipWriter {
    private var body = Data()
    private var directory = Data()
    private(set) var names: [String] = []

    mutating func add(_ name: String, _ data: Data) {
        let nameBytes = Data(name.utf8)
        // What the local header and the central directory entry both say of the entry.
        var entry = Data()
        entry.append(le16: 0x0800)  // flags: UTF-8 names
        entry.append(le16: 0)  // stored
        entry.append(le16: 0)  // time
        entry.append(le16: 0x21)  // date: 1980-01-01
        entry.append(le32: CRC32.checksum(data))
        entry.append(le32: UInt32(data.count))  // compressed size
        entry.append(le32: UInt32(data.count))
        entry.append(le16: UInt16(nameBytes.count))
        entry.append(le16: 0)  // extra field
        let offset = UInt32(body.count)
        body.append(le32: 0x0403_4b50)
        body.append(le16: 20)  // version needed
        body.append(entry)
        body.append(nameBytes)
        body.append(data)
        directory.append(le32: 0x0201_4b50)
        directory.append(le16: 20)  // made by
        directory.append(le16: 20)  // version needed
        directory.append(entry)
        directory.append(le16: 0)  // comment
        directory.append(le16: 0)  // disk
        directory.append(le16: 0)  // internal attributes
        directory.append(le32: 0o100644 << 16)  // external: a regular file, rw-r--r--
        directory.append(le32: offset)
        directory.append(nameBytes)
        names.append(name)
    }

    func finish() -> Data {
        var archive = body
        archive.append(directory)
        archive.append(le32: 0x0605_4b50)
        archive.append(le16: 0)
        archive.append(le16: 0)
        archive.append(le16: UInt16(names.count))
        archive.append(le16: UInt16(names.count))
        archive.append(le32: UInt32(directory.count))
        archive.append(le32: UInt32(body.count))
        archive.append(le16: 0)
        return archive
    }
}

/// CRC-32 (IEEE 802.3), as zip uses.
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 { value = value & 1 != 0 ? 0xEDB8_8320 ^ (value >> 1) : value >> 1 }
        return value
    }

    static func checksum(_ data: Data) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in data { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}

extension Data {
    fileprivate mutating func append(le16 value: UInt16) { Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) } }
    fileprivate mutating func append(le32 value: UInt32) { Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) } }
}
