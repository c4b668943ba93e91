import DroverMessaging
import DroverModel
import Foundation
import Logging
import Testing

@testable import DroverAgent

/// What keeps a task, and anything else on the node, from reaching past what it was given: the
/// exec driver's environment and users, exit codes a task cannot forge, the agent's token, the
/// scripts it will run, and names from messages that become paths.
struct TaskSecurityTests {
    func directory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("drover-security-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test func theLoadersVariablesNeverReachAnExecTask() {
        let scrubbed = LoaderEnvironment.scrubbed([
            "LD_PRELOAD": "/tmp/evil.so", "LD_LIBRARY_PATH": "/tmp", "LD_AUDIT": "x", "GCONV_PATH": "/tmp", "PATH": "/usr/bin", "HOME": "/",
            "OLD_PRELOAD": "kept",
        ])
        #expect(scrubbed == ["PATH": "/usr/bin", "HOME": "/", "OLD_PRELOAD": "kept"])
    }

    @Test func execTasksRunAsAnyoneButRootUnlessTheNodeListsWho() throws {
        #expect(throws: DriverError.self) { try ExecUsers().check("root") }
        #expect(throws: DriverError.self) { try ExecUsers().check("no-such-user-here") }
        #expect(try ExecUsers().check("nobody").uid != 0)
        #expect(throws: DriverError.self) { try ExecUsers(["daemon"]).check("nobody") }
        #expect(try ExecUsers(["root"]).check("root").uid == 0, "root only when listed")
    }

    /// The exec wrapper runs the task as its user and records the exit code as root, in a
    /// directory the task cannot write: a task that writes a 0 there still exits 3.
    @Test(.enabled(if: getuid() == 0, "setpriv needs root"))
    func anExecTaskCannotForgeItsExitCode() async throws {
        let root = try directory()
        defer { try? FileManager.default.removeItem(at: root) }
        let control = root.appendingPathComponent(".drover")
        #expect(mkdir(control.path, 0o700) == 0)
        // A stand-in for the task's cgroup: the wrapper writes its pid to cgroup.procs.
        let cgroup = root.appendingPathComponent("cgroup")
        try FileManager.default.createDirectory(at: cgroup, withIntermediateDirectories: true)
        let work = root.appendingPathComponent("t")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        #expect(chmod(root.path, 0o755) == 0 && chmod(work.path, 0o777) == 0)
        let exitFile = control.appendingPathComponent("t.exit")
        let process = try TaskProcess(
            TaskProcess.Launch(
                command: "/bin/sh", args: ["-c", #"id -u > uid; echo 0 > "$DROVER_EXIT_FILE"; exit 3"#], environment: ["PATH": "/usr/bin:/bin"],
                workingDirectory: work, stdout: root.appendingPathComponent("out"), stderr: root.appendingPathComponent("err"),
                exitFile: exitFile, user: "nobody", cgroup: cgroup.path))
        #expect(await process.exitCode() == 3)
        #expect(TaskProcess.recordedExitCode(exitFile) == 3, "the wrapper's record, not the task's")
        let uid = try String(contentsOf: work.appendingPathComponent("uid"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(uid == String(getpwnam("nobody").pointee.pw_uid), "the task ran as nobody")
        #expect((try? String(contentsOf: root.appendingPathComponent("err"), encoding: .utf8))?.contains("ermission denied") == true)
    }

    @Test func theAgentsTokenIsItsUsersAlone() throws {
        let root = try directory()
        defer { try? FileManager.default.removeItem(at: root) }
        let token = try AgentToken.loadOrCreate(in: root)
        #expect(token.count == 32 && token.allSatisfy(\.isHexDigit))
        let file = root.appendingPathComponent("agent.token").path
        #expect(try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int == 0o600)
        #expect(try AgentToken.loadOrCreate(in: root) == token, "kept across restarts")
        #expect(AgentToken.matches(token, token) && !AgentToken.matches(String(token.dropLast()) + "x", token) && !AgentToken.matches("", token))
    }

    @Test func onlyScriptsNobodyElseMayChangeRunOnShutdown() throws {
        let root = try directory()
        defer { try? FileManager.default.removeItem(at: root) }
        let script = root.appendingPathComponent("s.sh")
        try "#!/bin/sh\n".write(to: script, atomically: true, encoding: .utf8)
        #expect(chmod(script.path, 0o755) == 0)
        #expect(ShutdownScripts.untrusted(script.path) == nil)
        #expect(chmod(script.path, 0o775) == 0)
        #expect(ShutdownScripts.untrusted(script.path)?.contains("chmod go-w") == true)
        #expect(chmod(script.path, 0o757) == 0)
        #expect(ShutdownScripts.untrusted(script.path) != nil)
        if getuid() == 0 {
            #expect(chmod(script.path, 0o755) == 0 && chown(script.path, 65534, 65534) == 0)
            #expect(ShutdownScripts.untrusted(script.path)?.contains("owned by uid 65534") == true)
        }
        #expect(ShutdownScripts.untrusted(root.appendingPathComponent("none").path) != nil)
        // Terminating: the marker a provider leaves, or the machine stopping.
        let termination = NodeTermination(dataDirectory: root)
        let before = termination.isTerminating()
        try "".write(to: termination.marker, atomically: true, encoding: .utf8)
        #expect(termination.isTerminating())
        #expect(!before || NodeTermination.systemStopping())
    }

    @Test func reportsAreWrittenOnlyUnderTheDataDirectory() throws {
        let root = try directory()
        defer { try? FileManager.default.removeItem(at: root) }
        let data = root.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data.appendingPathComponent("issues"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: data.appendingPathComponent("out"), withDestinationURL: root)
        #expect(AgentAPI.lies(data.appendingPathComponent("issues/r.zip"), under: data))
        #expect(AgentAPI.lies(data.appendingPathComponent("r.zip"), under: data))
        #expect(!AgentAPI.lies(root.appendingPathComponent("r.zip"), under: data))
        #expect(!AgentAPI.lies(data.appendingPathComponent("out/r.zip"), under: data), "a link out of the directory is followed")
        #expect(!AgentAPI.lies(URL(fileURLWithPath: data.path + "/../r.zip"), under: data))
        #expect(!AgentAPI.lies(URL(fileURLWithPath: data.path + "-other/r.zip"), under: data))
    }

    @Test func namesFromMessagesAreCheckedBeforeTheyBecomePaths() async throws {
        for bad in ["", ".", "..", "a/b", "../x", "a b", "a\u{0}b", String(repeating: "x", count: 256)] { #expect(!PathNames.isSafe(bad), "\(bad)") }
        #expect(PathNames.isSafe("0b7c-alloc") && !PathNames.isSafeTaskName("a.b"))
        let root = try directory()
        defer { try? FileManager.default.removeItem(at: root) }
        let manager = AllocationManager(nodeID: "n1", datacenter: "dc1", dataDirectory: root, logger: Logger(label: "test")) { _ in }
        var allocation = AllocationRunnerTests().allocation("true")
        allocation.nodeID = "n1"
        allocation.id = "../../escape"
        await #expect(throws: MessageRejected.self) { try await manager.apply(allocation) }
        #expect(!FileManager.default.fileExists(atPath: root.deletingLastPathComponent().appendingPathComponent("escape").path))
    }
}
