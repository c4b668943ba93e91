import DroverModel
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The exec driver's wrapper runs as root until it drops to the task's user, so its tasks run
/// without the loader's variables (``LoaderVariables``), whatever the agent's own environment holds.
enum LoaderEnvironment {
    static func scrubbed(_ environment: [String: String]) -> [String: String] { environment.filter { !LoaderVariables.isUnsafe($0.key) } }
}

/// Which users `exec` tasks may run as on this node (`--exec-users`): those listed, or, when
/// none are, any user but root (uid 0, whatever its name).
struct ExecUsers: Sendable {
    var allowed: Set<String>

    init(_ allowed: Set<String> = []) { self.allowed = allowed }

    /// The user's ids. - Throws: ``DriverError`` when the user does not exist here or may not
    /// run tasks.
    func check(_ name: String) throws -> (uid: uid_t, gid: gid_t) {
        guard let entry = getpwnam(name) else { throw DriverError("user '\(name)' does not exist on this node") }
        let ids = (entry.pointee.pw_uid, entry.pointee.pw_gid)
        if allowed.isEmpty {
            guard ids.0 != 0 else {
                throw DriverError("exec tasks may not run as '\(name)' (uid 0) on this node; list it in the agent's --exec-users to allow it")
            }
        } else {
            guard allowed.contains(name) else {
                throw DriverError("exec tasks may run only as \(allowed.sorted().joined(separator: ", ")) on this node (--exec-users), not '\(name)'")
            }
        }
        return ids
    }
}

/// Names that come from the control plane and become paths on this node: checked again here,
/// so that no message can make the agent write outside an allocation's directory.
enum PathNames {
    /// One path component: not empty, not `.` or `..`, without `/`, NUL or whitespace, at most 255 bytes.
    static func isSafe(_ name: String) -> Bool {
        !name.isEmpty && name != "." && name != ".." && name.utf8.count <= 255
            && !name.contains { $0 == "/" || $0 == "\0" || $0.isWhitespace || $0.isNewline }
    }

    /// A task name as job validation allows it (no `.` at all), and safe as a path.
    static func isSafeTaskName(_ name: String) -> Bool { isSafe(name) && !name.contains(".") }
}
