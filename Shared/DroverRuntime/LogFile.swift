public import Foundation
public import Logging
import Synchronization

/// A log file a process keeps next to its standard error (the node agent keeps one, for `drover
/// report-issue`): lines as `StreamLogHandler` writes them, the file moved to `<name>.1` once it
/// passes `maximumBytes`, so at most twice that is kept.
public final class LogFile: Sendable {
    public let url: URL
    let maximumBytes: Int
    private let handle: Mutex<(file: FileHandle?, size: Int)>

    public init(url: URL, maximumBytes: Int = 10 << 20) {
        self.url = url
        self.maximumBytes = maximumBytes
        try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: url.path) { FileManager.default.createFile(atPath: url.path, contents: nil) }
        let file = try? FileHandle(forWritingTo: url)
        let size = (try? file?.seekToEnd()) ?? 0
        handle = Mutex((file, Int(size)))
    }

    func write(_ line: String) {
        let data = Data(line.utf8)
        handle.withLock { state in
            if state.size + data.count > maximumBytes {
                try? state.file?.close()
                let old = url.appendingPathExtension("1")
                try? FileManager.default.removeItem(at: old)
                try? FileManager.default.moveItem(at: url, to: old)
                FileManager.default.createFile(atPath: url.path, contents: nil)
                state = (try? FileHandle(forWritingTo: url), 0)
            }
            state.file?.write(data)
            state.size += data.count
        }
    }
}

/// Writes to a ``LogFile``.
struct FileLogHandler: LogHandler {
    let label: String
    let file: LogFile
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(
        level: Logger.Level, message: Logger.Message, metadata extra: Logger.Metadata?, source: String, file: String, function: String, line: UInt
    ) {
        let merged = metadata.merging(extra ?? [:]) { $1 }
        let fields = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let time = Date().formatted(Date.ISO8601FormatStyle())
        self.file.write("\(time) \(level) \(label):\(fields.isEmpty ? "" : " " + fields) [\(source)] \(message)\n")
    }
}
