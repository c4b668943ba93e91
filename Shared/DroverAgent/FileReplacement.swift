import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Files the agent rewrites whole for a later reader (a restarted agent, a task's watchdog).
enum FileReplacement {
    /// Replaces `path` with `data`, whole or not at all: a new file `<path>.new` of mode `mode`,
    /// renamed over the old one. Plain system calls, flushed to disk only when `flush` is set
    /// (Foundation's `Data.write` always fsyncs): most of what these files say has to outlive the
    /// agent, not the machine.
    static func replace(_ path: String, with data: Data, mode: mode_t = 0o644, flush: Bool = false) throws {
        let temporary = path + ".new"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard descriptor >= 0 else { throw POSIXError.fromErrno() }
        defer { close(descriptor) }
        // A `.new` left by an earlier run keeps its mode through `O_CREAT`.
        guard fchmod(descriptor, mode) == 0 else { throw POSIXError.fromErrno() }
        try data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) in
            var written = 0
            while written < bytes.count {
                let count = Foundation.write(descriptor, bytes.baseAddress! + written, bytes.count - written)
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { throw POSIXError.fromErrno() }
                written += count
            }
        }
        guard !flush || fsync(descriptor) == 0 else { throw POSIXError.fromErrno() }
        guard rename(temporary, path) == 0 else { throw POSIXError.fromErrno() }
    }
}
