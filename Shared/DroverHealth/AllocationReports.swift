public import DroverModel

/// What nodes report of their allocations, folded into the allocations' records. Pure: the
/// caller reads the records (locked), applies the fold's outcome, and does what it says.
///
/// Reports of one allocation are applied in the order of their sequence (they may arrive out of
/// order; an older one than recorded says nothing new). A report never brings a finished
/// allocation back: once complete, failed or lost, later (or redelivered) reports change only
/// its task states. One exception: a batch allocation marked lost (its node went down) that its
/// node reports complete, while its replacement has not started, counts as complete; the caller
/// names those that may (`completable`) and stops their replacements (``completedLate``).
public struct AllocationReports: Sendable {
    /// An allocation's record and the sequence of the last report it took.
    public struct Record: Sendable, Equatable {
        public var allocation: Allocation
        public var sequence: Int64

        public init(allocation: Allocation, sequence: Int64) {
            self.allocation = allocation
            self.sequence = sequence
        }
    }

    /// Why a report was refused.
    public enum Refusal: Sendable, Equatable {
        /// No such allocation.
        case unknownAllocation(String)
        /// The allocation is on another node than the one that reported it.
        case otherNode(allocID: String, nodeID: String)
    }

    /// The records, with every report applied.
    public var records: [String: Record]
    /// Allocations whose record changed, in the order first changed.
    public var changed: [String] = []
    /// Allocations that started running.
    public var started: [String] = []
    /// Allocations that finished (complete, failed or lost).
    public var finished: [String] = []
    /// Reports refused, by position.
    public var refused: [Int: Refusal] = [:]
    /// Lost allocations that their node reported complete, now complete: their replacements
    /// must stop.
    public var completedLate: [String] = []

    /// Applies `reports` to `records`.
    /// - Parameter completable: lost allocations that may still count as complete (batch, with a
    ///   replacement that has not started).
    public static func fold(
        _ reports: [AllocationStatusReport], into records: [String: Record], completable: Set<String> = []
    ) -> AllocationReports {
        var outcome = AllocationReports(records: records)
        var changedIDs: Set<String> = []
        for position in reports.indices.sorted(by: { (reports[$0].sequence, $0) < (reports[$1].sequence, $1) }) {
            let report = reports[position]
            guard var record = outcome.records[report.allocID] else {
                outcome.refused[position] = .unknownAllocation(report.allocID)
                continue
            }
            guard record.allocation.nodeID == report.nodeID else {
                outcome.refused[position] = .otherNode(allocID: report.allocID, nodeID: report.nodeID)
                continue
            }
            let before = record.allocation.clientStatus
            if before == .lost, report.clientStatus == .complete, completable.contains(report.allocID),
                report.sequence == 0 || report.sequence > record.sequence
            {
                // Done as a batch allocation is done: wanted, and complete.
                record.allocation.desiredStatus = .run
                record.allocation.desiredDescription = ""
                record.allocation.clientStatus = .complete
                record.allocation.clientDescription = "completed after its node was declared lost; its replacement is not needed"
                record.allocation.taskStates = report.taskStates
                record.sequence = max(record.sequence, report.sequence)
                outcome.records[report.allocID] = record
                if changedIDs.insert(report.allocID).inserted { outcome.changed.append(report.allocID) }
                outcome.completedLate.append(report.allocID)
                continue
            }
            guard apply(report, to: &record) else { continue }
            outcome.records[report.allocID] = record
            if changedIDs.insert(report.allocID).inserted { outcome.changed.append(report.allocID) }
            let after = record.allocation.clientStatus
            if before != .running && !before.isTerminal && after == .running { outcome.started.append(report.allocID) }
            if !before.isTerminal && after.isTerminal { outcome.finished.append(report.allocID) }
        }
        return outcome
    }

    /// Applies one report to an allocation's record. - Returns: whether it changed anything.
    static func apply(_ report: AllocationStatusReport, to record: inout Record) -> Bool {
        if report.sequence > 0 && report.sequence <= record.sequence { return false }
        let wasTerminal = record.allocation.clientStatus.isTerminal
        if wasTerminal && (!report.clientStatus.isTerminal || record.allocation.taskStates == report.taskStates) { return false }
        if !wasTerminal {
            if record.allocation.clientStatus == report.clientStatus && record.allocation.taskStates == report.taskStates { return false }
            record.allocation.clientStatus = report.clientStatus
            record.allocation.clientDescription = report.clientDescription
        }
        record.allocation.taskStates = report.taskStates
        record.sequence = max(record.sequence, report.sequence)
        return true
    }

    /// The allocations that finished, as recorded now.
    public var ended: [Allocation] { finished.compactMap { records[$0]?.allocation } }

    /// The jobs of ended allocations that may need one again: those still wanted that failed,
    /// or that completed (a service's allocation should not end).
    public var endedWhileWanted: [Allocation] {
        ended.filter { $0.desiredStatus == .run && ($0.clientStatus == .failed || $0.clientStatus == .complete) }
    }

    /// A job as ``jobsToEvaluate(_:)`` weighs it.
    public struct JobKind: Sendable, Equatable {
        public var id: JobKey
        public var type: JobType
        public var stopped: Bool

        public init(id: JobKey, type: JobType, stopped: Bool) {
            self.id = id
            self.type = type
            self.stopped = stopped
        }
    }

    /// The jobs to evaluate again, once each however many of their allocations ended: those not
    /// stopped with an allocation of ``endedWhileWanted`` that failed, or that is a service's.
    public func jobsToEvaluate(_ jobs: [JobKind]) -> [JobKey] {
        let byID = Dictionary(jobs.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        return Set(
            endedWhileWanted.filter { allocation in
                guard let job = byID[allocation.jobKey], !job.stopped else { return false }
                return allocation.clientStatus == .failed || job.type == .service
            }.map(\.jobKey)
        ).sorted()
    }
}
