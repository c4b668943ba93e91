import Foundation

extension ServiceRuntime {
    /// Runs `body` (a process's services, until they have stopped), then ends the process at
    /// once with status 0. An error `body` throws is thrown on, for the command to report.
    ///
    /// A service process has nothing left to do once its services have stopped: its logs are
    /// written unbuffered, standard output is flushed here, and its state is in PostgreSQL. So it
    /// ends with `_exit`, without the C library's exit handlers. Those are where libraries clean
    /// up after themselves (OpenSSL, libcurl), and running them while threads of the process still
    /// run is a known cause of processes that crash or never end at exit; a service that has
    /// stopped must end, or whatever supervises it waits for it and then kills it.
    public static func endProcess(after body: () async throws -> Void) async throws -> Never {
        try await body()
        fflush(nil)
        _exit(0)
    }
}
