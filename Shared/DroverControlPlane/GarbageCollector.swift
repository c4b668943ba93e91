import DroverModel
import DroverRuntime
public import DroverStorage
public import Foundation
import Logging
public import ServiceLifecycle

/// Nomad's garbage collection: jobs that are over go after `jobAge` (Nomad's
/// `job_gc_threshold`, 4 h), ended evaluations and allocations no longer wanted after
/// `historyAge` (`eval_gc_threshold`, 1 h), and job versions past the newest six (Nomad tracks
/// six). `POST /v1/system/gc` forces one at once, with no age.
public struct GarbageCollector: Sendable {
    let database: Database
    public var jobAge: Duration
    public var historyAge: Duration
    /// Job versions kept per job (and any an allocation runs).
    public var keepVersions: Int
    let now: @Sendable () -> Date

    public init(
        database: Database, jobAge: Duration = .seconds(4 * 3600), historyAge: Duration = .seconds(3600), keepVersions: Int = 6,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.database = database
        self.jobAge = jobAge
        self.historyAge = historyAge
        self.keepVersions = max(keepVersions, 1)
        self.now = now
    }

    /// One collection at `time`; `forced` ignores the ages (what `POST /v1/system/gc` asks).
    public func collect(at time: Date? = nil, forced: Bool = false) async throws -> Collected {
        let now = (time ?? self.now()).unixNanoseconds
        func cutoff(_ age: Duration) -> Int64 {
            forced ? Int64.max : now.subtractingReportingOverflow(GoDuration.nanoseconds(age)).partialValue
        }
        return try await database.transaction { work in
            var collected = Collected()
            try await work.garbage.deadJobs(changedBefore: cutoff(jobAge), into: &collected)
            try await work.garbage.history(endedBefore: cutoff(historyAge), keepVersions: keepVersions, into: &collected)
            return collected
        }
    }
}

/// Runs ``GarbageCollector`` every five minutes.
struct GarbageCollection: Service {
    let collector: GarbageCollector
    let logger: Logger

    func run() async throws {
        await repeatUntilShutdown(every: .seconds(300), after: .seconds(60), logger: logger, failure: "Garbage collection failed") {
            let collected = try await collector.collect()
            if collected.total > 0 {
                logger.info(
                    "Garbage collected",
                    metadata: [
                        "jobs": "\(collected.jobs)", "evaluations": "\(collected.evaluations)", "allocations": "\(collected.allocations)",
                        "job_versions": "\(collected.jobVersions)",
                    ])
            }
        }
    }
}
