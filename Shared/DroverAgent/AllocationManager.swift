import DroverMessaging
import DroverModel
import DroverRuntime
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// The node's allocations: starts the ones the control plane sends, stops the ones it stops,
/// and on start-up picks up what a previous agent left running. Every allocation lives in
/// `<data-dir>/alloc/<id>` with its state in `state.json`, until ``collect(retention:now:)``
/// removes it once it has finished and its output has been shipped.
actor AllocationManager {
    private let nodeID: String
    private let datacenter: String
    private let root: URL
    private let logger: Logger
    private let reports: @Sendable (AllocationStatusReport) -> Void
    private let execUsers: ExecUsers
    private var runners: [String: AllocationRunner] = [:]
    private let leaseFile: URL

    /// - Parameter reports: called with every report an allocation makes, in order.
    /// - Parameter execUsers: the users `exec` tasks may run as.
    /// Its tasks are fenced by the agent's lease (``TaskLease``), `<data-dir>/lease`.
    init(
        nodeID: String, datacenter: String, dataDirectory: URL, execUsers: ExecUsers = ExecUsers(), logger: Logger,
        reports: @escaping @Sendable (AllocationStatusReport) -> Void
    ) {
        self.execUsers = execUsers
        self.leaseFile = TaskLease.file(in: dataDirectory)
        self.nodeID = nodeID
        self.datacenter = datacenter
        self.root = dataDirectory.appendingPathComponent("alloc")
        self.logger = logger
        self.reports = reports
    }

    private func runner(for record: AllocationRecord) -> AllocationRunner {
        AllocationRunner(
            record: record, directory: root.appendingPathComponent(record.allocation.id), nodeID: nodeID, datacenter: datacenter,
            execUsers: execUsers, leaseFile: leaseFile, logger: logger, report: reports)
    }

    /// Reads every allocation a previous agent recorded; adopts running tasks, reports the rest.
    func recover() async {
        let decoder = JSONDecoder()
        guard let entries = try? FileManager.default.contentsOfDirectory(at: root, includingPropertiesForKeys: nil) else { return }
        for entry in entries {
            guard let data = try? Data(contentsOf: entry.appendingPathComponent("state.json")),
                let record = try? decoder.decode(AllocationRecord.self, from: data)
            else { continue }
            let runner = runner(for: record)
            runners[record.allocation.id] = runner
            await runner.recover()
        }
        if !runners.isEmpty { logger.info("Allocations recovered from disk", metadata: ["count": "\(runners.count)"]) }
    }

    /// Applies what the control plane wants of one allocation. Idempotent: a redelivered
    /// message, or one about an allocation already finished, changes nothing.
    func apply(_ allocation: Allocation) async throws {
        guard allocation.nodeID == nodeID else {
            throw MessageRejected("allocation \(allocation.id) is for node \(allocation.nodeID), not this node (\(nodeID))")
        }
        if let runner = runners[allocation.id] {
            if allocation.desiredStatus != .run { await runner.stop(description: allocation.desiredDescription) }
            return
        }
        guard allocation.desiredStatus == .run else { return }  // Stopped before it ever ran here.
        guard let group = allocation.job?.group(named: allocation.taskGroup) else {
            throw MessageRejected("allocation \(allocation.id) carries no job with task group '\(allocation.taskGroup)'")
        }
        // Ids and names become directories: checked here again, whatever the control plane checked.
        guard PathNames.isSafe(allocation.id) else { throw MessageRejected("allocation id '\(allocation.id.prefix(100))' cannot name a directory") }
        for task in group.tasks where !PathNames.isSafeTaskName(task.name) {
            throw MessageRejected("allocation \(allocation.id): task name '\(task.name.prefix(100))' cannot name a directory")
        }
        let runner = runner(
            for: AllocationRecord(allocation: allocation, clientStatus: .pending, clientDescription: "Tasks are pending", tasks: [:]))
        runners[allocation.id] = runner
        await runner.start()
    }

    /// The allocations still running here, with what decides whether a lost contact stops them.
    func running() async -> [ClientDisconnect.Running] {
        var running: [ClientDisconnect.Running] = []
        for (id, runner) in runners.sorted(by: { $0.key < $1.key }) {
            guard let allocation = await runner.runningAllocation() else { continue }
            running.append(
                ClientDisconnect.Running(
                    id: id, type: allocation.job?.jobType ?? .service,
                    stopAfter: allocation.job?.group(named: allocation.taskGroup)?.stopAfterClientDisconnect))
        }
        return running
    }

    /// Removes the directories of allocations that finished more than `retention` before `now`
    /// and whose output has all been shipped (Nomad's client garbage collection).
    /// - Returns: the ids removed.
    func collect(retention: Duration, now: Date = Date()) async -> [String] {
        var removed: [String] = []
        for (id, runner) in runners.sorted(by: { $0.key < $1.key }) where await runner.isFinished {
            let directory = root.appendingPathComponent(id)
            let state = directory.appendingPathComponent("state.json")
            guard let modified = (try? FileManager.default.attributesOfItem(atPath: state.path))?[.modificationDate] as? Date,
                now.timeIntervalSince(modified) >= retention.timeInterval, OutputShipper.isFullyShipped(directory)
            else { continue }
            do {
                try FileManager.default.removeItem(at: directory)
                runners[id] = nil
                removed.append(id)
            } catch {
                logger.warning("Removing a finished allocation's directory failed", metadata: ["alloc_id": "\(id)", "error": "\(error)"])
            }
        }
        return removed
    }

    /// Stops allocation `id` on the agent's own account, reporting it failed with `description`.
    func stopLocally(_ id: String, description: String) async {
        await runners[id]?.stop(description: description, status: .failed)
    }
}

/// Publishes allocation reports in the order they were made: all those made while the
/// previous publish waited for its confirms, or in the `gathering` time after the first of
/// them, go out together, as one confirmed batch, with only the latest of each allocation (a
/// report carries the allocation's whole state, as Nomad's client syncs only an allocation's
/// latest state: a task that starts and ends at once costs the control plane one report, not three).
struct StatusReporter: Service {
    let bus: any MessageBus
    let nodeID: String
    let reports: AsyncStream<AllocationStatusReport>
    let logger: Logger
    var gathering: Duration = .milliseconds(50)

    /// `batch` with only the last report of each allocation, in the order of those last reports.
    static func coalesced(_ batch: [AllocationStatusReport]) -> [AllocationStatusReport] {
        var last: [String: Int] = [:]
        for (position, report) in batch.enumerated() { last[report.allocID] = position }
        return batch.enumerated().filter { last[$0.element.allocID] == $0.offset }.map(\.element)
    }

    func run() async throws {
        let made = Made()
        let (signals, signal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        // Cancelled on shutdown even while a publish waits for a broker that is not there.
        try? await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await report in reports {
                        made.reports.withLock { $0.append(report) }
                        signal.yield()
                    }
                    signal.finish()
                }
                group.addTask {
                    for await _ in signals {
                        try? await Task.sleep(for: gathering)
                        let batch = Self.coalesced(
                            made.reports.withLock { reports in
                                defer { reports = [] }
                                return reports
                            })
                        if batch.isEmpty { continue }
                        do {
                            let messages = try batch.map { try OutgoingMessage($0, routingKey: RoutingKey.nodeAllocStatus(nodeID)) }
                            try await bus.publish(messages)
                        } catch is CancellationError {
                            return
                        } catch {
                            logger.error(
                                "Allocation reports not sent", metadata: ["alloc_ids": "\(batch.map(\.allocID))", "error": "\(error)"])
                        }
                    }
                }
                await group.waitForAll()
            }
        }
    }

    /// Reports made and not yet handed to the bus.
    private final class Made: Sendable {
        let reports = Mutex<[AllocationStatusReport]>([])
    }
}

/// Once a minute, removes the directories of allocations that finished more than `retention`
/// ago and whose output has been shipped.
struct AllocationRetention: Service {
    let manager: AllocationManager
    let retention: Duration
    let logger: Logger

    func run() async throws {
        await repeatUntilShutdown(every: .seconds(60), logger: logger, failure: "Removing finished allocations failed") {
            let removed = await manager.collect(retention: retention)
            if !removed.isEmpty { logger.info("Finished allocations removed", metadata: ["alloc_ids": "\(removed)"]) }
        }
    }
}
