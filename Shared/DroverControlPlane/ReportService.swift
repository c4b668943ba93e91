import DroverHealth
public import DroverModel
public import DroverStorage
public import Foundation

/// Records what nodes report of their allocations (``AllocationReports`` decides), and what
/// follows: finished allocations free room, so blocked evaluations are retried; a job with one
/// that failed, or with a service allocation that ended, while still wanted, is evaluated again
/// so that it can be replaced; a replacement for an allocation on a draining node that runs lets
/// the old one stop.
public struct ReportService: Sendable {
    public let database: Database
    let now: @Sendable () -> Date

    public init(database: Database, now: @escaping @Sendable () -> Date = { Date() }) {
        self.database = database
        self.now = now
    }

    /// Records what a node reports of one of its allocations.
    /// - Returns: whether the report changed anything.
    /// - Throws: ``ControlPlaneError/notFound(kind:id:)`` for an unknown allocation, and
    ///   ``ControlPlaneError/invalid(_:)`` when the allocation belongs to another node.
    @discardableResult
    public func record(_ report: AllocationStatusReport) async throws -> Bool {
        let outcome = try await record([report])
        if let refused = outcome.refused[0] { throw refused }
        return outcome.changed > 0
    }

    /// What recording a batch of reports did.
    public struct Recorded: Sendable, Equatable {
        /// Allocations whose record changed.
        public var changed = 0
        /// Reports refused, by position: an unknown allocation, or one on another node.
        public var refused: [Int: ControlPlaneError] = [:]
    }

    /// Records what nodes report of their allocations, in one transaction; each allocation is
    /// written once.
    public func record(_ reports: [AllocationStatusReport]) async throws -> Recorded {
        guard !reports.isEmpty else { return Recorded() }
        let time = now()
        return try await database.transaction { work in
            let current = try await work.allocations.lockWithReportSequences(reports.map(\.allocID)).mapValues {
                AllocationReports.Record(allocation: $0.allocation, sequence: $0.sequence)
            }
            // A lost allocation reported complete: it counts, if batch and not yet replaced for real.
            let lateIDs = reports.filter { $0.clientStatus == .complete && current[$0.allocID]?.allocation.clientStatus == .lost }.map(\.allocID)
            var replacements: [String: Allocation] = [:]
            var completable: Set<String> = []
            if !lateIDs.isEmpty {
                replacements = try await work.allocations.lockReplacements(of: lateIDs)
                let batch = Set(
                    try await work.jobs.specs(lateIDs.compactMap { current[$0]?.allocation.jobKey }).filter { $0.jobType == .batch }.map(\.key))
                completable = Set(
                    lateIDs.filter { id in
                        guard let lost = current[id]?.allocation, batch.contains(lost.jobKey) else { return false }
                        // No replacement yet, or one that has not started.
                        return replacements[id].map { $0.clientStatus == .pending && $0.desiredStatus == .run } ?? true
                    })
            }
            let outcome = AllocationReports.fold(reports, into: current, completable: completable)
            let recorded = Recorded(changed: outcome.changed.count, refused: outcome.refused.mapValues(Self.error))
            guard !outcome.changed.isEmpty else { return recorded }

            let index = try await work.nextIndex()
            let nanos = time.unixNanoseconds
            var changed: [(allocation: Allocation, sequence: Int64)] = []
            for id in outcome.changed {
                guard var record = outcome.records[id] else { continue }
                record.allocation.modifyIndex = index
                record.allocation.modifyTime = nanos
                changed.append((record.allocation, record.sequence))
            }
            // The records, and an event for each allocation that failed, in one statement.
            var writes = SQLWrites()
            try work.allocations.updateReported(changed, index: index, into: &writes)
            try work.events.record(
                outcome.ended.filter { $0.clientStatus == .failed }.map { allocation in
                    ClusterEvent(
                        time: time, nodeID: allocation.nodeID, jobID: allocation.jobID, namespace: allocation.jobNamespace, allocID: allocation.id,
                        type: ClusterEvent.Kind.allocationFailed, level: .warn, priority: .medium,
                        message: "Allocation \(allocation.name) failed: \(allocation.clientDescription)")
                }, into: &writes)
            try await work.execute(writes)

            // A lost allocation that completed after all: its replacement stops before it starts.
            for id in outcome.completedLate {
                if let allocation = changed.first(where: { $0.allocation.id == id })?.allocation {
                    try await work.allocations.updateStatus(allocation, index: index)
                }
                guard let replacement = replacements[id] else { continue }
                try await work.stop(
                    replacement, description: "not needed: allocation \(id) completed after its node was declared lost", markLost: false,
                    index: index, now: time)
            }

            // A replacement for an allocation on a draining node runs: the old one may stop now.
            let started = outcome.started.compactMap { outcome.records[$0]?.allocation }
            let migrating = try await work.allocations.migrating(started.compactMap(\.previousAllocation))
            let migrated = started.filter { $0.previousAllocation.map(migrating.contains) ?? false }.map(\.jobKey)
            if !migrated.isEmpty {
                try await work.evaluate(try await work.jobs.specs(migrated), triggeredBy: Evaluation.Trigger.nodeDrain, index: index, now: time)
            }
            guard !outcome.finished.isEmpty else { return recorded }
            try await work.unblockEvaluations(index: index, capacityOnly: true)
            let wanted = outcome.endedWhileWanted
            guard !wanted.isEmpty else { return recorded }
            let jobs = try await work.jobs.specs(Array(Set(wanted.map(\.jobKey))))
            let again = Set(outcome.jobsToEvaluate(jobs.map { AllocationReports.JobKind(id: $0.key, type: $0.jobType, stopped: $0.isStopped) }))
            try await work.evaluate(jobs.filter { again.contains($0.key) }, triggeredBy: Evaluation.Trigger.allocFailure, index: index, now: time)
            return recorded
        }
    }

    static func error(_ refusal: AllocationReports.Refusal) -> ControlPlaneError {
        switch refusal {
        case .unknownAllocation(let id): .notFound(kind: "allocation", id: id)
        case .otherNode(let allocID, let nodeID): .invalid([FieldError("NodeID", "allocation \(allocID) is not on node \(nodeID)")])
        }
    }
}
