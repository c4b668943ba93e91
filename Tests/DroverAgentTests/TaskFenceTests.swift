import DroverModel
import DroverTestSupport
import Foundation
import Logging
import Testing

@testable import DroverAgent

/// The lease's arithmetic, pure: what the agent writes after an answer, and which tasks it fences.
struct TaskLeaseTests {
    @Test func theLeaseBoundsAFenceBetweenTheNextHeartbeatAndTheDownDeclaration() {
        // Answered at 100.255 s, TTL 10 s, grace 10 s: gone by 118.255, never before 115.255, in
        // hundredths rounded to the safe side.
        #expect(
            TaskLease.line(bootID: "b", answeredAt: .milliseconds(100_255), ttl: .seconds(10), grace: .seconds(10)) == "b 10026 11825 11526\n")
        #expect(TaskLease.line(bootID: "b", answeredAt: .seconds(50), ttl: .seconds(2), grace: .seconds(2)) == "b 5000 5200 5300\n")
        // Hostile durations from the control plane count as none.
        #expect(TaskLease.line(bootID: "b", answeredAt: .seconds(50), ttl: .seconds(-5), grace: .seconds(-5)) == "b 5000 4800 5000\n")
    }

    @Test func batchTasksAreFencedAtTheDeclarationAGroupsOwnLimitWinsAndServicesRunOn() {
        #expect(TaskLease.fenceAfter(type: .batch, stopAfter: nil) == "down")
        #expect(TaskLease.fenceAfter(type: .service, stopAfter: nil) == nil)
        #expect(TaskLease.fenceAfter(type: .service, stopAfter: 5_000_000_000) == "5")
        #expect(TaskLease.fenceAfter(type: .batch, stopAfter: 1) == "1", "rounded up to a whole second")
        #expect(TaskLease.fenceAfter(type: .batch, stopAfter: Int64.min) == "0")
        #expect(TaskLease.fenceAfter(type: .batch, stopAfter: Int64.max) == "9223372037")
    }
}

/// Tasks run for real beside their watchdog, with a lease file the test writes as the agent would.
struct TaskFenceTests {
    /// Runs `body` with a fresh directory, removed afterwards, and where the lease goes in it.
    func withScratch(_ body: (_ root: URL, _ lease: URL) async throws -> Void) async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("drover-agent-fence-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        try await body(root, root.appendingPathComponent("lease"))
    }

    /// A lease answered `ago` before now, with `ttl` and `grace`.
    func writeLease(_ file: URL, answeredAgo ago: Duration, ttl: Duration = .seconds(2), grace: Duration = .seconds(2), bootID: String? = nil)
        throws
    {
        let boot = try #require(bootID ?? TaskLease.bootID)
        try TaskLease.line(bootID: boot, answeredAt: TaskLease.bootTime() - ago, ttl: ttl, grace: grace)
            .write(to: file, atomically: true, encoding: .utf8)
    }

    func run(_ allocation: Allocation, lease: URL, in root: URL) async throws -> (AllocationStatusReport?, AllocationRunnerTests.Reports) {
        let reports = AllocationRunnerTests.Reports()
        let runner = AllocationRunner(
            record: AllocationRecord(allocation: allocation, clientStatus: .pending, clientDescription: "", tasks: [:]),
            directory: root.appendingPathComponent(allocation.id), nodeID: "n1", datacenter: "dc1", leaseFile: lease,
            logger: Logger(label: "test")
        ) { reports.add($0) }
        await runner.start()
        let final = try await withTimeout(.seconds(60), "the allocation finishing") { await reports.finished() }
        return (final, reports)
    }

    @Test func aBatchTaskWhoseLeaseRanOutIsFencedOnceNeverRestartedAndNothingOfItIsLeft() async throws {
        try await withScratch { root, lease in
            try writeLease(lease, answeredAgo: .seconds(600))
            let runs = root.appendingPathComponent("runs")
            // A task that ignores SIGTERM, and a child of it that left its group: both go.
            let restart = RestartPolicy(attempts: 3, interval: 600_000_000_000, delay: 10_000_000, mode: "fail")
            var allocation = AllocationRunnerTests().allocation(
                "echo run >> \(runs.path); trap '' TERM; setsid sleep 300 & sleep 300", restart: restart)
            allocation.job?.taskGroups[0].tasks[0].killTimeout = 1_000_000_000
            let (final, _) = try await run(allocation, lease: lease, in: root)
            #expect(final?.clientStatus == .lost)
            #expect(
                final?.clientDescription.hasPrefix("task t was fenced: no answer from the control plane for ") == true, "\(String(describing: final))"
            )
            #expect(final?.taskStates["t"]?.events.contains { $0.type == "Fenced" } == true)
            #expect(final?.taskStates["t"]?.restarts == 0, "a fenced task is not restarted in place")
            #expect(try String(contentsOf: runs, encoding: .utf8) == "run\n")
            let mark = root.appendingPathComponent(allocation.id).appendingPathComponent(".drover/t.exit").path
            try await withTimeout(.seconds(30), "every process of the task gone") {
                while !TaskProcess.marked(mark).isEmpty { try await Task.sleep(for: .milliseconds(50)) }
            }
        }
    }

    @Test func aFencedTaskIsAskedToStopWithSIGTERMFirst() async throws {
        try await withScratch { root, lease in
            try writeLease(lease, answeredAgo: .seconds(600))
            let runs = root.appendingPathComponent("runs")
            let allocation = AllocationRunnerTests().allocation(
                "trap 'echo stopped >> \(runs.path); exit 143' TERM; echo run >> \(runs.path); sleep 300 & wait $!")
            let (final, _) = try await run(allocation, lease: lease, in: root)
            #expect(final?.clientStatus == .lost)
            #expect(try String(contentsOf: runs, encoding: .utf8) == "run\nstopped\n")
            #expect(final?.taskStates["t"]?.events.last { $0.type == "Fenced" }?.exitCode == 143)
        }
    }

    @Test(arguments: ["current", "another boot's"])
    func aTaskUnderALeaseThatHoldsOrIsAnotherBootsRunsToItsEnd(lease kind: String) async throws {
        try await withScratch { root, lease in
            if kind == "current" {
                try writeLease(lease, answeredAgo: .zero, ttl: .seconds(600))
            } else {
                try writeLease(lease, answeredAgo: .seconds(600), bootID: "another-boot")
            }
            // Long enough for the watchdog to read the lease twice.
            let (final, _) = try await run(AllocationRunnerTests().allocation("sleep 2.5; exit 0"), lease: lease, in: root)
            #expect(final?.clientStatus == .complete)
            #expect(final?.taskStates["t"]?.exitCode == 0)
        }
    }

    @Test func aServiceTaskIsNotFencedUnlessItsGroupSaysWhen() async throws {
        try await withScratch { root, lease in
            try writeLease(lease, answeredAgo: .seconds(600))
            // A service task that ends is restarted; with no attempts left it fails, by its own exit.
            let (service, _) = try await run(AllocationRunnerTests().allocation("sleep 2.5; exit 0", type: .service), lease: lease, in: root)
            #expect(service?.clientStatus == .failed, "a service without a limit runs on, as with a living agent")
            #expect(service?.taskStates["t"]?.exitCode == 0)
            #expect(service?.taskStates["t"]?.events.contains { $0.type == "Fenced" } == false)

            var limited = AllocationRunnerTests().allocation("sleep 300", type: .service)
            limited.job?.taskGroups[0].stopAfterClientDisconnect = 60_000_000_000
            let (fenced, _) = try await run(limited, lease: lease, in: root)
            #expect(fenced?.clientStatus == .lost)
        }
    }

    @Test func anAgentThatComesBackToAFencedTaskReportsItLostWithTheReasonAndRunsNothing() async throws {
        try await withScratch { root, _ in
            let allocation = RecoveryTests().allocation("sleep 60")
            let folder = root.appendingPathComponent("alloc").appendingPathComponent(allocation.id)
            try FileManager.default.createDirectory(at: folder.appendingPathComponent(".drover"), withIntermediateDirectories: true)
            let record = AllocationRecord(
                allocation: allocation, clientStatus: .running, clientDescription: "Tasks are running",
                tasks: ["t": .init(pid: Int32.max, startTicks: 1, state: TaskState(state: .running, events: []))], reports: 3)
            try JSONEncoder().encode(record).write(to: folder.appendingPathComponent("state.json"))
            // What the watchdog left, and the code its wrapper recorded as the task died.
            try "no answer from the control plane for 17s: stopped before its node could be declared down\n"
                .write(to: folder.appendingPathComponent(".drover/t.fence"), atomically: true, encoding: .utf8)
            try "143\n".write(to: folder.appendingPathComponent(".drover/t.exit"), atomically: true, encoding: .utf8)
            let reports = AllocationRunnerTests.Reports()
            let manager = AllocationManager(nodeID: "n1", datacenter: "dc1", dataDirectory: root, logger: Logger(label: "test")) { reports.add($0) }
            await manager.recover()
            let last = reports.all.withLock { $0 }.last
            #expect(last?.clientStatus == .lost)
            #expect(
                last?.clientDescription
                    == "task t was fenced: no answer from the control plane for 17s: stopped before its node could be declared down")
            #expect(await manager.running().isEmpty)
        }
    }
}
