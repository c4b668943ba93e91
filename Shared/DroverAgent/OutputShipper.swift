import CDroverSystem
import DroverMessaging
import DroverModel
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Ships every task's stdout and stderr to the control plane: tails
/// `<data-dir>/alloc/<alloc>/alloc/logs/<task>.{stdout,stderr}.0` and publishes what is new as
/// ``TaskOutputChunk``s on `node.<id>.output.<alloc>.<task>.<stream>`.
///
/// A chunk carries its byte offset and the broker confirms it before the shipped offset moves
/// on; that offset is kept in `<alloc>/output-offsets.json`, so a restarted agent goes on where
/// the last one was confirmed (resending at most a batch, which the collector stores once).
///
/// What has been shipped and lies further back than the task's `LogConfig` keeps (MaxFiles ×
/// MaxFileSizeMB, 100 MB by default) is released from the disk: a hole is punched where it was,
/// so the file keeps its size and every offset stays where it was, while it holds at most that
/// much. The task appends to its files itself, so no rotation can lose a byte it writes.
final class OutputShipper: Service, Sendable {
    let bus: any MessageBus
    let nodeID: String
    let root: URL
    let logger: Logger
    let chunkSize: Int
    let batchSize = 16
    let interval: Duration
    /// Allocation → log file → the offset shipped and confirmed; one pass runs at a time.
    private let shipped = Mutex<[String: [String: Int64]]>([:])
    /// Which allocations a pass reads: every one on disk at the first pass (what a previous
    /// agent left), then those whose tasks may still write, and a finished one once more.
    private let watched = Mutex(Watched())
    /// Allocation → task → bytes of each stream kept on disk, read from its `state.json` once.
    private let kept = Mutex<[String: [String: Int64]]>([:])

    private struct Watched {
        var everything = true
        var live: Set<String> = []
        var finished: Set<String> = []
    }

    init(bus: any MessageBus, nodeID: String, root: URL, logger: Logger, chunkSize: Int = 128 << 10, interval: Duration = .milliseconds(200)) {
        self.bus = bus
        self.nodeID = nodeID
        self.root = root
        self.logger = logger
        self.chunkSize = chunkSize
        self.interval = interval
    }

    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                while true {
                    do {
                        try await self.shipAll()
                    } catch let error as CancellationError {
                        throw error
                    } catch {
                        self.logger.warning("Shipping task output failed; retrying", metadata: ["error": "\(error)"])
                    }
                    try await Task.sleep(for: self.interval)
                }
            }
        } catch is CancellationError {
            // What tasks wrote before the agent stopped goes out too, while the bus is still up,
            // for as long as the bus gives publishes to be confirmed when it stops.
            await withTaskGroup(of: Void.self) { group in
                group.addTask { try? await self.shipAll() }
                group.addTask { try? await Task.sleep(for: .seconds(5)) }
                await group.next()
                group.cancelAll()
            }
        }
    }

    /// Follows what an allocation's report says: its output is read while it is live, and once
    /// more after it has finished.
    func track(_ report: AllocationStatusReport) {
        watched.withLock { watched in
            if report.clientStatus.isTerminal {
                if watched.live.remove(report.allocID) != nil { watched.finished.insert(report.allocID) }
            } else {
                watched.live.insert(report.allocID)
            }
        }
    }

    /// One pass over the log files of the allocations watched (internal for tests).
    func shipAll() async throws {
        let (everything, live, finished) = watched.withLock { ($0.everything, $0.live, $0.finished) }
        let allocations = everything ? (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? [] : Array(live.union(finished))
        let lettingGo = everything ? Set(allocations).subtracting(live) : finished
        var offsets = shipped.withLock { $0 }.filter { live.contains($0.key) || lettingGo.contains($0.key) }
        defer {
            shipped.withLock { [offsets] in $0 = offsets.filter { !lettingGo.contains($0.key) } }
            kept.withLock { kept in for id in lettingGo { kept[id] = nil } }
        }
        for allocID in allocations.sorted() {
            let directory = root.appendingPathComponent(allocID)
            let logs = directory.appendingPathComponent("alloc/logs")
            guard let files = try? FileManager.default.contentsOfDirectory(atPath: logs.path) else { continue }
            var done = offsets[allocID] ?? Self.loadOffsets(directory)
            var changed = false
            for file in files.sorted() {
                guard let (task, stream) = Self.parse(file) else { continue }
                let url = logs.appendingPathComponent(file)
                let size = ((try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? NSNumber)?.int64Value ?? 0
                var offset = done[file] ?? 0
                guard size > offset, let handle = try? FileHandle(forReadingFrom: url) else { continue }
                defer { try? handle.close() }
                while offset < size {
                    try handle.seek(toOffset: UInt64(offset))
                    var chunks: [OutgoingMessage] = []
                    var next = offset
                    while chunks.count < batchSize, next < size, let data = try handle.read(upToCount: chunkSize), !data.isEmpty {
                        let chunk = TaskOutputChunk(nodeID: nodeID, allocID: allocID, task: task, stream: stream, offset: next, data: data)
                        chunks.append(try OutgoingMessage(chunk, routingKey: RoutingKey.nodeOutput(chunk)))
                        next += Int64(data.count)
                    }
                    guard !chunks.isEmpty else { break }
                    try await bus.publish(chunks)
                    offset = next
                    done[file] = offset
                    offsets[allocID] = done
                    changed = true
                    Self.saveOffsets(done, in: directory)
                }
                if release(url, shipped: offset, keep: keep(allocID, task: task, in: directory), offsets: &done) {
                    offsets[allocID] = done
                    Self.saveOffsets(done, in: directory)
                }
            }
            offsets[allocID] = done
            if changed { logger.trace("Task output shipped", metadata: ["alloc_id": "\(allocID)"]) }
        }
        // Only a pass that shipped everything lets go of what has finished.
        watched.withLock { watched in
            watched.everything = false
            watched.finished.subtract(finished)
        }
    }

    /// Bytes of each stream of `task` its node keeps, from the allocation's recorded job.
    private func keep(_ allocID: String, task: String, in directory: URL) -> Int64 {
        if let known = kept.withLock({ $0[allocID] }) { return known[task] ?? LogConfig.keptBytes(nil) }
        var byTask: [String: Int64] = [:]
        if let data = try? Data(contentsOf: directory.appendingPathComponent("state.json")),
            let record = try? JSONDecoder().decode(AllocationRecord.self, from: data),
            let group = record.allocation.job?.group(named: record.allocation.taskGroup)
        {
            for task in group.tasks { byTask[task.name] = task.keptOutputBytes }
        }
        kept.withLock { $0[allocID] = byTask }
        return byTask[task] ?? LogConfig.keptBytes(nil)
    }

    /// Releases the disk blocks of what was shipped further back than `keep` bytes from the
    /// shipped end of `url`, whole 4 KiB blocks at a time. - Returns: whether it released any.
    private func release(_ url: URL, shipped: Int64, keep: Int64, offsets: inout [String: Int64]) -> Bool {
        let key = url.lastPathComponent + "#released"
        let released = offsets[key] ?? 0
        let upTo = max(shipped - keep, 0) / 4096 * 4096
        guard upTo > released else { return false }
        let fd = open(url.path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        guard drover_punch_hole(fd, off_t(released), off_t(upTo - released)) == 0 else {
            logger.warning(
                "Task output could not be released from the disk", metadata: ["file": "\(url.path)", "errno": "\(errno)"])
            offsets[key] = upTo  // Not tried again for what is behind.
            return true
        }
        offsets[key] = upTo
        return true
    }

    /// Whether every log file of the allocation in `directory` has been shipped to its end.
    static func isFullyShipped(_ directory: URL) -> Bool {
        let logs = directory.appendingPathComponent("alloc/logs")
        let shipped = loadOffsets(directory)
        for file in (try? FileManager.default.contentsOfDirectory(atPath: logs.path)) ?? [] where parse(file) != nil {
            let size =
                ((try? FileManager.default.attributesOfItem(atPath: logs.appendingPathComponent(file).path))?[.size] as? NSNumber)?.int64Value ?? 0
            if size > (shipped[file] ?? 0) { return false }
        }
        return true
    }

    /// `web.stdout.0` → (`web`, stdout).
    static func parse(_ file: String) -> (String, TaskOutputChunk.Stream)? {
        for stream in TaskOutputChunk.Stream.allCases where file.hasSuffix(".\(stream.rawValue).0") {
            let task = String(file.dropLast(stream.rawValue.count + 3))
            return task.isEmpty ? nil : (task, stream)
        }
        return nil
    }

    private static func loadOffsets(_ directory: URL) -> [String: Int64] {
        guard let data = try? Data(contentsOf: directory.appendingPathComponent("output-offsets.json")) else { return [:] }
        return (try? JSONDecoder().decode([String: Int64].self, from: data)) ?? [:]
    }

    private static func saveOffsets(_ offsets: [String: Int64], in directory: URL) {
        guard let data = try? JSONEncoder().encode(offsets) else { return }
        try? data.write(to: directory.appendingPathComponent("output-offsets.json"), options: .atomic)
    }
}
