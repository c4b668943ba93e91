public import Foundation
import Synchronization

/// Starts processes one at a time, process-wide.
///
/// Foundation's `Process.run()` gives each new process one end of a socket pair and learns that
/// the process has ended when that end closes. The end is not closed on `exec`, so a process that
/// another thread starts at the same moment inherits it too. The first process's end is then not
/// seen until the second process ends as well, however long it runs. Every `Process` a Drover
/// executable (or its tests) starts goes through ``run(_:)``, so no two starts overlap.
public enum ProcessLaunch {
    private static let lock = Mutex(())

    /// Starts `process`, after any start under way in this process has finished.
    /// - Throws: what `Process.run()` throws.
    public static func run(_ process: Process) throws {
        try lock.withLock { _ in try process.run() }
    }
}
