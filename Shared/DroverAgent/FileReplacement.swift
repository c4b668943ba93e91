import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Files the agent rewrites whole for a later reader (a restarted agent, a task's watchdog).
enum FileReplacement {
    /// Replaces `path` with `data`, whole or not at all: a new file `<path>.new`, renamed over
    /// the old one. Plain system calls, not flushed to disk (Foundation's `Data.write` always
    /// fsyncs): what these files say has to outlive the agent, not the machine.
    static func replace(_ path: String, with data: Data) throws {
        let temporary = path + ".new"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw POSIXError.fromErrno() }
        defer { close(descriptor) }
        try data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) in
            var written = 0
            while written < bytes.count {
                let count = Foundation.write(descriptor, bytes.baseAddress! + written, bytes.count - written)
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { throw POSIXError.fromErrno() }
                written += count
            }
        }
        guard rename(temporary, path) == 0 else { throw POSIXError.fromErrno() }
    }
}
