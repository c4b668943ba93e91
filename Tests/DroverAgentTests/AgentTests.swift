import ArgumentParser
import DroverMessaging
import DroverModel
import DroverProcess
import DroverTestSupport
import Foundation
import Logging
import Synchronization
import Testing

@testable import DroverAgent

/// The restart policy as a pure machine: time is passed in, nothing sleeps.
struct RestartTrackerTests {
    let start = ContinuousClock.now
    func at(_ seconds: Double) -> ContinuousClock.Instant { start + .milliseconds(Int(seconds * 1000)) }

    @Test func aBatchTaskThatExitsZeroIsDoneAndAServiceTaskIsRestarted() {
        let policy = RestartPolicy(attempts: 2, interval: 60_000_000_000, delay: 1_000_000_000, mode: "fail")
        var batch = RestartTracker(policy: policy, type: .batch, now: start)
        #expect(batch.exited(code: 0, at: at(1)) == .done)
        var service = RestartTracker(policy: policy, type: .service, now: start)
        #expect(service.exited(code: 0, at: at(1)) == .restart(after: .seconds(1)), "a service's task should not end")
    }

    @Test(arguments: [
        // (mode, exits at seconds, expected decisions)
        ("fail", [1.0, 3.0, 5.0], ["restart 1s", "restart 1s", "fail"]),
        // Past the interval the count starts again.
        ("fail", [1.0, 3.0, 70.0], ["restart 1s", "restart 1s", "restart 1s"]),
        // Mode delay: past the attempts, wait for the interval to end (60 s from the start, at 5 s: 55 s).
        ("delay", [1.0, 3.0, 5.0], ["restart 1s", "restart 1s", "restart 55s"]),
    ])
    func attemptsPerIntervalThenFailOrWait(mode: String, exits: [Double], expected: [String]) {
        let policy = RestartPolicy(attempts: 2, interval: 60_000_000_000, delay: 1_000_000_000, mode: mode)
        var tracker = RestartTracker(policy: policy, type: .batch, now: start)
        let decisions = exits.map { seconds -> String in
            switch tracker.exited(code: 1, at: at(seconds)) {
            case .done: "done"
            case .restart(let wait): "restart \(wait.components.seconds)s"
            case .fail: "fail"
            }
        }
        #expect(decisions == expected)
    }

    @Test func noPolicyFailsAtOnceAndNegativeValuesFromAJobCannotTrap() {
        var none = RestartTracker(policy: RestartPolicy(attempts: 0, interval: 0, delay: 0, mode: "fail"), type: .service, now: start)
        guard case .fail(let reason) = none.exited(code: 2, at: at(1)) else {
            Issue.record("a task with no attempts left was restarted")
            return
        }
        #expect(reason.contains("Exceeded allowed attempts 0"))
        var odd = RestartTracker(policy: RestartPolicy(attempts: 1, interval: -5, delay: -1, mode: "delay"), type: .service, now: start)
        #expect(odd.exited(code: 1, at: at(1)) == .restart(after: .zero))
    }
}

/// The registration back-off: 1 s doubling up to the interval until the control plane answers.
struct RegistrationTests {
    @Test func registrationsRetryQuicklyUntilAnsweredThenKeepTheirInterval() {
        let registrations = Registrations(
            bus: InMemoryBus(), node: Node(id: "n1", name: "n1", drivers: [:], attributes: [:], resources: Resources(cpu: 1, memoryMB: 1)),
            interval: .seconds(30), logger: Logger(label: "test"))
        #expect((0..<7).map { _ in registrations.nextDelay().components.seconds } == [1, 2, 4, 8, 16, 30, 30])
        registrations.acknowledge()
        #expect(registrations.nextDelay() == .seconds(30))
    }
}

/// An allocation run for real: processes started, their exits reported in order.
struct AllocationRunnerTests {
    final class Reports: Sendable {
        let all = Mutex<[AllocationStatusReport]>([])
        let (stream, continuation) = AsyncStream.makeStream(of: AllocationStatusReport.self)
        func add(_ report: AllocationStatusReport) {
            all.withLock { $0.append(report) }
            continuation.yield(report)
        }
        /// Waits until a report with a finished client status arrives.
        func finished() async -> AllocationStatusReport? {
            for await report in stream where report.clientStatus.isTerminal { return report }
            return nil
        }
    }

    func allocation(_ command: String, type: JobType = .batch, restart: RestartPolicy? = nil) -> Allocation {
        var group = TaskGroup(name: "g", tasks: [JobTask(name: "t", command: "/bin/sh", args: ["-c", command])])
        group.restartPolicy = restart ?? RestartPolicy(attempts: 0, interval: 0, delay: 0, mode: "fail")
        var allocation = Allocation(
            id: UUID().uuidString.lowercased(), evalID: "e", name: "job.g[0]", nodeID: "n1", nodeName: "n1", jobID: "job", jobVersion: 0,
            taskGroup: "g", resources: Resources(cpu: 100, memoryMB: 64), createIndex: 1, modifyIndex: 1, createTime: 0, modifyTime: 0)
        allocation.job = Job(id: "job", type: type, taskGroups: [group])
        return allocation
    }

    /// Runs `allocation` in a fresh directory (or `inside` a given path) until it finishes.
    func run(_ allocation: Allocation, inside parent: URL? = nil) async throws -> (final: AllocationStatusReport?, all: [AllocationStatusReport]) {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("drover-agent-test-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let reports = Reports()
        let runner = AllocationRunner(
            record: AllocationRecord(allocation: allocation, clientStatus: .pending, clientDescription: "", tasks: [:]),
            directory: (parent ?? scratch).appendingPathComponent(allocation.id), nodeID: "n1", datacenter: "dc1", logger: Logger(label: "test")
        ) { reports.add($0) }
        await runner.start()
        let final = try await withTimeout(.seconds(30), "the allocation finishing") { await reports.finished() }
        return (final, reports.all.withLock { $0 })
    }

    @Test func aBatchTaskRunsToCompletionWithItsReportsInSequence() async throws {
        let (final, all) = try await run(allocation("exit 0"))
        #expect(final?.clientStatus == .complete)
        #expect(final?.taskStates["t"]?.exitCode == 0)
        let sequences = all.map(\.sequence)
        #expect(sequences == Array(1...Int64(sequences.count)), "numbered one by one")
        #expect(all.contains { $0.clientStatus == .running } || all.contains { $0.taskStates["t"]?.state == .running })
    }

    @Test func aFailingTaskIsRestartedPerItsPolicyAndThenFailsTheAllocation() async throws {
        let restart = RestartPolicy(attempts: 2, interval: 600_000_000_000, delay: 10_000_000, mode: "fail")
        let (final, _) = try await run(allocation("exit 3", restart: restart))
        #expect(final?.clientStatus == .failed)
        #expect(final?.taskStates["t"]?.restarts == 2)
        #expect(final?.taskStates["t"]?.exitCode == 3)
        #expect(final?.taskStates["t"]?.events.contains { $0.type == "Not Restarting" } == true)
    }

    @Test func aMissingCommandFailsTheAllocationWithTheShellsExitCode() async throws {
        var allocation = allocation("exit 0")
        allocation.job?.taskGroups[0].tasks[0] = JobTask(name: "t", command: "/nonexistent/program")
        let (final, _) = try await run(allocation)
        #expect(final?.clientStatus == .failed)
        #expect(final?.taskStates["t"]?.exitCode == 127)
    }

    /// A task whose children ignore SIGTERM, one of them in a session of its own (out of the
    /// task's process group): stopping the allocation leaves none of them running.
    @Test func stoppingATaskKillsItsWholeTreeEvenWhatLeftItsGroupOrIgnoresSIGTERM() async throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("drover-agent-tree-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let mark = scratch.appendingPathComponent("mark").path
        var allocation = allocation(
            """
            echo "$DROVER_TASK" > \(mark)
            setsid sh -c 'trap "" TERM; while :; do sleep 0.2; done' &
            sh -c 'trap "" TERM; while :; do sleep 0.2; done' &
            trap "" TERM
            while :; do sleep 0.2; done
            """)
        allocation.job?.taskGroups[0].tasks[0].killTimeout = 500_000_000
        let reports = Reports()
        let runner = AllocationRunner(
            record: AllocationRecord(allocation: allocation, clientStatus: .pending, clientDescription: "", tasks: [:]),
            directory: scratch.appendingPathComponent(allocation.id), nodeID: "n1", datacenter: "dc1", logger: Logger(label: "test")
        ) { reports.add($0) }
        await runner.start()
        let task = try await withTimeout(.seconds(30), "the task and its children starting") {
            while true {
                if let text = try? String(contentsOfFile: mark, encoding: .utf8), !text.isEmpty {
                    let task = text.trimmingCharacters(in: .whitespacesAndNewlines)
                    if TaskProcess.marked(task).count >= 3 { return task }
                }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        await runner.stop(description: "stopped by the test")
        #expect(TaskProcess.marked(task).isEmpty, "left running: \(TaskProcess.marked(task))")
        #expect(reports.all.withLock { $0.last?.clientStatus } == .complete)
    }

    /// The agent's threads block most signals; a task starts with none blocked, so a stop reaches
    /// it as SIGTERM, and it ends on its own before the SIGKILL.
    @Test func aStoppedTaskGetsItsSIGTERMAndEndsOnItsOwn() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("drover-agent-term-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let reports = Reports()
        let manager = AllocationManager(nodeID: "n1", datacenter: "dc1", dataDirectory: root, logger: Logger(label: "test")) { reports.add($0) }
        let runs = root.appendingPathComponent("runs")
        var running = allocation("trap 'echo stopped >> \(runs.path); exit 143' TERM; echo run >> \(runs.path); sleep 300 & wait $!")
        running.job?.taskGroups[0].tasks[0].killTimeout = 300_000_000_000
        try await manager.apply(running)
        try await withTimeout(.seconds(30), "the task running") {
            while (try? String(contentsOf: runs, encoding: .utf8)) != "run\n" { try await Task.sleep(for: .milliseconds(20)) }
        }
        running.desiredStatus = .stop
        let stop = running
        try await withTimeout(.seconds(60), "the task ending on its SIGTERM, long before its 300 s kill timeout") {
            try await manager.apply(stop)
        }
        #expect(try String(contentsOf: runs, encoding: .utf8) == "run\nstopped\n")
    }

    @Test func aTaskWhoseDirectoryCannotBeMadeFailsWithTheDriversReason() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("drover-agent-test-file-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: file.path, contents: Data())
        defer { try? FileManager.default.removeItem(at: file) }
        let (final, _) = try await run(allocation("exit 0"), inside: file)
        #expect(final?.clientStatus == .failed)
        #expect(final?.taskStates["t"]?.events.contains { $0.type == "Driver Failure" } == true)
    }
}

/// The agent's state on disk: a restarted agent adopts the tasks still running, and reports lost
/// an allocation whose task vanished while it was away.
struct RecoveryTests {
    func directory() -> URL { FileManager.default.temporaryDirectory.appendingPathComponent("drover-agent-recovery-\(UUID().uuidString)") }

    func allocation(_ command: String) -> Allocation {
        var allocation = Allocation(
            id: UUID().uuidString.lowercased(), evalID: "e", name: "job.g[0]", nodeID: "n1", nodeName: "n1", jobID: "job", jobVersion: 0,
            taskGroup: "g", resources: Resources(cpu: 100, memoryMB: 64), createIndex: 1, modifyIndex: 1, createTime: 0, modifyTime: 0)
        allocation.job = Job(
            id: "job", type: .batch, taskGroups: [TaskGroup(name: "g", tasks: [JobTask(name: "t", command: "/bin/sh", args: ["-c", command])])])
        return allocation
    }

    @Test func aRestartedAgentAdoptsARunningTaskAndCanStillStopIt() async throws {
        let root = directory()
        defer { try? FileManager.default.removeItem(at: root) }
        let first = AllocationRunnerTests.Reports()
        let before = AllocationManager(nodeID: "n1", datacenter: "dc1", dataDirectory: root, logger: Logger(label: "test")) { first.add($0) }
        var running = allocation("sleep 60")
        try await before.apply(running)
        let started: AllocationStatusReport? = try await withTimeout(.seconds(30), "the task running") {
            for await report in first.stream where report.taskStates["t"]?.state == .running { return report }
            return nil
        }
        #expect(started?.clientStatus == .running)

        // A new agent on the same data directory: the task is still there, and adopted.
        let second = AllocationRunnerTests.Reports()
        let after = AllocationManager(nodeID: "n1", datacenter: "dc1", dataDirectory: root, logger: Logger(label: "test")) { second.add($0) }
        await after.recover()
        let recovered = second.all.withLock { $0 }
        #expect(recovered.count == 1 && recovered.first?.clientStatus == .running, "it says where it stands at once")
        #expect((recovered.first?.sequence ?? 0) > (started?.sequence ?? 0), "numbered on from the last report on disk")

        running.desiredStatus = .stop
        running.desiredDescription = "stopped by the test"
        try await after.apply(running)
        let stopped = try await withTimeout(.seconds(30), "the adopted task stopping") { await second.finished() }
        #expect(stopped?.clientStatus == .complete && stopped?.clientDescription == "stopped by the test")
    }

    /// The agent stopped after it started a task and before it wrote the pid down: the task is
    /// found by its mark and adopted, not left running unwatched while its allocation is lost.
    @Test func aTaskStartedJustBeforeTheAgentStoppedIsFoundByItsMarkAndAdopted() async throws {
        let root = directory()
        defer { try? FileManager.default.removeItem(at: root) }
        let allocation = allocation("sleep 60")
        let folder = root.appendingPathComponent("alloc").appendingPathComponent(allocation.id)
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("t"), withIntermediateDirectories: true)
        let record = AllocationRecord(
            allocation: allocation, clientStatus: .pending, clientDescription: "Tasks are pending",
            tasks: ["t": .init(pid: nil, startTicks: nil, state: TaskState(state: .pending, events: []))], reports: 1)
        try JSONEncoder().encode(record).write(to: folder.appendingPathComponent("state.json"))
        // What the launch had started: a group leader carrying the task's mark.
        let orphan = Process()
        orphan.executableURL = URL(fileURLWithPath: "/bin/sh")
        orphan.arguments = ["-c", "sleep 60"]
        orphan.environment = [TaskProcess.marker: folder.appendingPathComponent(".drover").appendingPathComponent("t.exit").path]
        try ProcessLaunch.run(orphan)
        defer { orphan.terminate() }
        #expect(getpgid(orphan.processIdentifier) == orphan.processIdentifier)
        // Until the child has exec'd, /proc shows the test's own environment, not the mark.
        let mark = folder.appendingPathComponent(".drover").appendingPathComponent("t.exit").path
        let pid = orphan.processIdentifier
        try await withTimeout(.seconds(30), "the orphan carrying its mark") {
            while !TaskProcess.marked(mark).contains(pid) { await Task.yield() }
        }

        let reports = AllocationRunnerTests.Reports()
        let manager = AllocationManager(nodeID: "n1", datacenter: "dc1", dataDirectory: root, logger: Logger(label: "test")) { reports.add($0) }
        await manager.recover()
        let recovered = reports.all.withLock { $0 }
        #expect(recovered.last?.clientStatus == .running, "adopted, not lost: \(recovered.map(\.clientStatus))")
        #expect(await manager.running().map(\.id) == [allocation.id])
        var stopping = allocation
        stopping.desiredStatus = .stop
        try await manager.apply(stopping)
        #expect(!orphan.isRunning || TaskProcess.marked(folder.appendingPathComponent(".drover").appendingPathComponent("t.exit").path).isEmpty)
    }

    @Test func anAllocationWhoseTaskVanishedWhileTheAgentWasAwayIsLost() async throws {
        let root = directory()
        defer { try? FileManager.default.removeItem(at: root) }
        let allocation = allocation("sleep 60")
        let folder = root.appendingPathComponent("alloc").appendingPathComponent(allocation.id)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        // What an agent wrote while the task ran, under a pid no process has.
        let record = AllocationRecord(
            allocation: allocation, clientStatus: .running, clientDescription: "Tasks are running",
            tasks: ["t": .init(pid: Int32.max, startTicks: 1, state: TaskState(state: .running, events: []))], reports: 3)
        try JSONEncoder().encode(record).write(to: folder.appendingPathComponent("state.json"))
        let reports = AllocationRunnerTests.Reports()
        let manager = AllocationManager(nodeID: "n1", datacenter: "dc1", dataDirectory: root, logger: Logger(label: "test")) { reports.add($0) }
        await manager.recover()
        let last = reports.all.withLock { $0 }.last
        #expect(last?.clientStatus == .lost)
        #expect(last?.clientDescription == "task t was not running when the agent restarted")
        #expect(last?.sequence == 4)
    }

    @Test func anAllocationForAnotherNodeIsRefusedWithTheReason() async throws {
        let manager = AllocationManager(nodeID: "n1", datacenter: "dc1", dataDirectory: directory(), logger: Logger(label: "test")) { _ in }
        var foreign = allocation("true")
        foreign.nodeID = "n2"
        let refused = await #expect(throws: MessageRejected.self) { try await manager.apply(foreign) }
        #expect(refused?.reason.contains("is for node n2") == true)
    }
}

/// The agent's flags of seconds: out of range is refused by name, never converted into a trap.
struct AgentOptionsTests {
    @Test(arguments: ["--heartbeat-interval", "--registration-interval", "--healthcheck-interval"])
    func anIntervalOutOfRangeIsRefusedByName(flag: String) {
        for value in ["0", "-1", "inf", "1e300", "nan"] {
            do {
                _ = try AgentOptions.parse(["\(flag)=\(value)"])
                Issue.record("\(flag) \(value) was accepted")
            } catch {
                #expect(AgentOptions.message(for: error).hasPrefix(flag), "\(flag) \(value)")
            }
        }
    }
}

/// Nomad's `stop_after_client_disconnect`, made the default for batch work.
struct ClientDisconnectTests {
    @Test func aGroupsOwnLimitDecidesElseBatchStopsWhenTheNodeWouldBeDownAndServiceRunsOn() {
        let running = [
            ClientDisconnect.Running(id: "batch", type: .batch, stopAfter: nil),
            ClientDisconnect.Running(id: "service", type: .service, stopAfter: nil),
            ClientDisconnect.Running(id: "service-5s", type: .service, stopAfter: 5_000_000_000),
            ClientDisconnect.Running(id: "batch-1h", type: .batch, stopAfter: 3_600_000_000_000),
            ClientDisconnect.Running(id: "hostile", type: .batch, stopAfter: Int64.min),
        ]
        #expect(ClientDisconnect.toStop(running, silence: .seconds(4), downAfter: .seconds(20)) == ["hostile"])
        #expect(ClientDisconnect.toStop(running, silence: .seconds(6), downAfter: .seconds(20)) == ["service-5s", "hostile"])
        #expect(ClientDisconnect.toStop(running, silence: .seconds(21), downAfter: .seconds(20)) == ["batch", "service-5s", "hostile"])
        #expect(ClientDisconnect.toStop(running, silence: .seconds(3601), downAfter: .seconds(20)).count == 4, "a service with no limit runs on")
    }

    @Test func anAgentWithoutAnswersStopsItsBatchAllocationAndReportsWhy() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("drover-agent-disconnect-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let reports = AllocationRunnerTests.Reports()
        let manager = AllocationManager(nodeID: "n1", datacenter: "dc1", dataDirectory: root, logger: Logger(label: "test")) { reports.add($0) }
        let batch = RecoveryTests().allocation("sleep 300")
        var service = RecoveryTests().allocation("sleep 300")
        service.job?.type = .service
        try await manager.apply(batch)
        try await manager.apply(service)
        try await withTimeout(.seconds(30), "both running") {
            while await manager.running().count < 2 { try await Task.sleep(for: .milliseconds(20)) }
        }
        // The control plane said the node is declared down after no silence at all: it is past.
        let contact = ControlPlaneContact(downAfter: .zero)
        try await DisconnectWatch(contact: contact, manager: manager, logger: Logger(label: "test")).check()
        let stopped = try #require(reports.all.withLock { $0 }.last { $0.allocID == batch.id })
        #expect(stopped.clientStatus == .failed)
        #expect(stopped.clientDescription.hasPrefix("stopped by its node: no answer from the control plane"))
        #expect(await manager.running().map(\.id) == [service.id], "the service allocation runs on")
        await manager.stopLocally(service.id, description: "test over")
    }
}

/// Nomad's client garbage collection: a finished allocation's directory goes once its output
/// is shipped and its retention has passed.
struct AllocationRetentionTests {
    @Test func aFinishedAllocationsDirectoryGoesOnceShippedAndOldEnoughARunningOneStays() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("drover-agent-retention-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let reports = AllocationRunnerTests.Reports()
        let manager = AllocationManager(nodeID: "n1", datacenter: "dc1", dataDirectory: root, logger: Logger(label: "test")) { reports.add($0) }
        let finished = RecoveryTests().allocation("echo some output")
        let running = RecoveryTests().allocation("sleep 300")
        try await manager.apply(finished)
        try await manager.apply(running)
        let ended: AllocationStatusReport? = try await withTimeout(.seconds(30), "the first allocation finishing") {
            for await report in reports.stream where report.allocID == finished.id && report.clientStatus.isTerminal { return report }
            return nil
        }
        #expect(ended?.clientStatus == .complete)
        let directory = root.appendingPathComponent("alloc").appendingPathComponent(finished.id)
        #expect(await manager.collect(retention: .seconds(3600)).isEmpty, "not old enough")
        #expect(await manager.collect(retention: .zero, now: Date().addingTimeInterval(1)).isEmpty, "its output is not shipped yet")
        // What a shipper records once the broker has confirmed the output.
        let logs = directory.appendingPathComponent("alloc/logs")
        var offsets: [String: Int64] = [:]
        for file in try FileManager.default.contentsOfDirectory(atPath: logs.path) {
            offsets[file] = (try FileManager.default.attributesOfItem(atPath: logs.appendingPathComponent(file).path)[.size] as? NSNumber)?.int64Value
        }
        try JSONEncoder().encode(offsets).write(to: directory.appendingPathComponent("output-offsets.json"))
        #expect(await manager.collect(retention: .zero, now: Date().addingTimeInterval(1)) == [finished.id])
        #expect(!FileManager.default.fileExists(atPath: directory.path))
        #expect(await manager.running().map(\.id) == [running.id])
        await manager.stopLocally(running.id, description: "test over")
    }
}

/// The allocation is encoded once per runner and spliced into each save of its record.
struct AllocationRecordEncodingTests {
    @Test func theRecordWithItsAllocationEncodedOnceIsTheRecordEncodedWhole() throws {
        let allocation = RecoveryTests().allocation("echo \"hello\"")
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let records = [
            AllocationRecord(allocation: allocation, clientStatus: .pending, clientDescription: "Tasks are pending", tasks: [:]),
            AllocationRecord(
                allocation: allocation, clientStatus: .running, clientDescription: "Tasks are \"running\"",
                tasks: ["t": .init(pid: 42, startTicks: 7, state: TaskState(state: .running, events: []))], reports: 3),
        ]
        for record in records {
            let spliced = try record.encoded(allocation: try encoder.encode(allocation))
            #expect(spliced == (try encoder.encode(record)))
            let read = try JSONDecoder().decode(AllocationRecord.self, from: spliced)
            #expect(read.allocation.id == allocation.id && read.clientStatus == record.clientStatus && read.reports == record.reports)
            #expect(read.tasks["t"]?.pid == record.tasks["t"]?.pid)
        }
    }
}

/// A batch of reports carries each allocation's latest state once.
struct StatusReporterTests {
    @Test func aBatchKeepsTheLastReportOfEachAllocationInTheOrderOfThoseLastReports() {
        func report(_ alloc: String, _ status: Allocation.ClientStatus, _ sequence: Int64) -> AllocationStatusReport {
            AllocationStatusReport(nodeID: "n1", allocID: alloc, clientStatus: status, clientDescription: "", taskStates: [:], sequence: sequence)
        }
        let batch = [
            report("a", .pending, 1), report("b", .pending, 1), report("a", .running, 2), report("c", .running, 5), report("a", .complete, 3),
            report("b", .running, 2),
        ]
        let sent = StatusReporter.coalesced(batch)
        #expect(sent.map(\.allocID) == ["c", "a", "b"])
        #expect(sent.map(\.sequence) == [5, 3, 2])
        #expect(sent.map(\.clientStatus) == [.running, .complete, .running])
        #expect(StatusReporter.coalesced([]).isEmpty)
    }
}

/// Nomad's `LogConfig`: a node keeps at most MaxFiles × MaxFileSizeMB of each stream on disk.
struct OutputReleaseTests {
    @Test func shippedOutputFurtherBackThanTheLogConfigKeepsLeavesTheDiskAndEveryOffsetStays() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("drover-agent-release-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        var allocation = RecoveryTests().allocation("true")
        allocation.job?.taskGroups[0].tasks[0].logConfig = LogConfig(maxFiles: 1, maxFileSizeMB: 1)
        let directory = root.appendingPathComponent(allocation.id)
        let logs = directory.appendingPathComponent("alloc/logs")
        try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
        try JSONEncoder().encode(AllocationRecord(allocation: allocation, clientStatus: .running, clientDescription: "", tasks: [:]))
            .write(to: directory.appendingPathComponent("state.json"))
        let output = Data((0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 % 251) })
        let file = logs.appendingPathComponent("t.stdout.0")
        try output.write(to: file)

        let bus = InMemoryBus()
        var shipped = try await bus.subscribe(ConsumerSpec(queue: "collector", bindings: ["node.*.output.#"])).makeAsyncIterator()
        let shipper = OutputShipper(bus: bus, nodeID: "n1", root: root, logger: Logger(label: "test"))
        try await shipper.shipAll()
        var received = 0
        while received < output.count, let delivery = await shipped.next() {
            received += try MessageCoding.decoder().decode(MessageEnvelope<TaskOutputChunk>.self, from: Data(delivery.body)).data.data.count
            delivery.ack()
        }
        #expect(received == output.count, "everything shipped first")
        var info = stat()
        #expect(stat(file.path, &info) == 0)
        #expect(info.st_size == Int64(output.count), "the file keeps its size, so offsets stay")
        #expect(Int64(info.st_blocks) * 512 <= (1 << 20) + (64 << 10), "at most the 1 MB kept is on disk: \(info.st_blocks * 512) bytes")
        let tail = try FileHandle(forReadingFrom: file)
        try tail.seek(toOffset: UInt64(output.count - 4096))
        #expect(try tail.read(upToCount: 4096) == output.suffix(4096), "what is kept reads back as written")
        try tail.close()
    }
}
