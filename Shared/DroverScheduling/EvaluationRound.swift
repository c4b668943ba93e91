public import DroverModel

/// A round of evaluations planned together: evaluations of distinct jobs, each planned against
/// the room the ones before it took and freed, and what each leaves behind. Pure: the caller
/// reads the snapshot and applies the result.
public struct EvaluationRound: Sendable {
    /// One evaluation's plan.
    public struct Entry: Sendable {
        public var evaluation: Evaluation
        public var job: Job?
        public var plan: Plan
    }

    /// A stop a plan makes, with the allocation as the snapshot showed it.
    public struct Stop: Sendable {
        public var stop: PlannedStop
        public var allocation: Allocation
    }

    public var entries: [Entry] = []
    public var stops: [Stop] = []
    /// The snapshot with the room every plan took and freed.
    public var snapshot: ClusterSnapshot

    /// Splits `evaluations` into rounds of one evaluation per job, oldest first (by create index,
    /// then id): a job's later evaluation is planned against what its earlier one wrote.
    public static func rounds(_ evaluations: [Evaluation]) -> [[Evaluation]] {
        var pending = evaluations.sorted { ($0.createIndex, $0.id) < ($1.createIndex, $1.id) }
        var rounds: [[Evaluation]] = []
        while !pending.isEmpty {
            var round: [Evaluation] = []
            var later: [Evaluation] = []
            var seen: Set<JobKey> = []
            for eval in pending { if seen.insert(eval.jobKey).inserted { round.append(eval) } else { later.append(eval) } }
            rounds.append(round)
            pending = later
        }
        return rounds
    }

    /// Plans `round` (evaluations of distinct jobs) in order against `snapshot`, whose
    /// `jobAllocations` each plan replaces with its job's `allocations`.
    public static func plan(
        _ round: [Evaluation], jobs: [JobKey: Job], allocations: [JobKey: [Allocation]], snapshot: ClusterSnapshot,
        configuration: SchedulerConfiguration, now: Int64, random: inout some RandomNumberGenerator
    ) -> EvaluationRound {
        var result = EvaluationRound(snapshot: snapshot)
        let nodeIndex = Dictionary(snapshot.nodes.enumerated().map { ($1.id, $0) }, uniquingKeysWith: { first, _ in first })
        for eval in round {
            result.snapshot.jobAllocations = allocations[eval.jobKey] ?? []
            let plan = JobScheduler.plan(
                evalID: eval.id, jobID: eval.jobID, job: jobs[eval.jobKey], snapshot: result.snapshot, configuration: configuration, now: now,
                random: &random)
            // The next plan sees the room this one takes and frees.
            for placement in plan.placements {
                result.snapshot.used[placement.nodeIndex] = result.snapshot.used[placement.nodeIndex] + placement.resources
            }
            let byID = Dictionary(result.snapshot.jobAllocations.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
            for stop in plan.stops {
                guard let allocation = byID[stop.allocationID] else { continue }
                result.stops.append(Stop(stop: stop, allocation: allocation))
                if allocation.isLive, let node = nodeIndex[allocation.nodeID] {
                    result.snapshot.used[node] = result.snapshot.used[node] - allocation.resources
                }
            }
            result.entries.append(Entry(evaluation: eval, job: jobs[eval.jobKey], plan: plan))
        }
        return result
    }
}

/// What processing an evaluation leaves behind: the evaluation as it ends, and, when some of
/// its allocations could not be placed, the one evaluation that waits for room.
public struct EvaluationResult: Sendable, Equatable {
    public var evaluation: Evaluation
    /// A new blocked evaluation, to be written (and any older blocked one of the job cancelled).
    public var blocked: Evaluation?

    /// Nomad's rule: an evaluation whose plan leaves allocations unplaced of a job still wanted
    /// completes and creates a blocked evaluation (`queued-allocs`) that waits for room; a
    /// blocked evaluation that was retried and still cannot place everything waits again, as
    /// itself (Nomad's reblock), rather than as a new one.
    /// - Parameter blockedID: the id a new blocked evaluation gets.
    public static func resolve(_ eval: Evaluation, job: Job?, plan: Plan, index: Int64, now: Int64, blockedID: String) -> EvaluationResult {
        var eval = eval
        eval.modifyIndex = index
        eval.modifyTime = now
        guard !plan.failedGroups.isEmpty, let job, !job.isStopped else {
            eval.status = .complete
            return EvaluationResult(evaluation: eval, blocked: nil)
        }
        eval.failedTGAllocs = plan.failedGroups
        eval.queuedAllocations = plan.queued
        if eval.triggeredBy == Evaluation.Trigger.queuedAllocs {
            eval.status = .blocked
            eval.statusDescription = blockedDescription
            return EvaluationResult(evaluation: eval, blocked: nil)
        }
        var blocked = Evaluation(
            id: blockedID, for: job, triggeredBy: Evaluation.Trigger.queuedAllocs, index: index, now: now, status: .blocked,
            previousEval: eval.id)
        blocked.failedTGAllocs = plan.failedGroups
        blocked.queuedAllocations = plan.queued
        blocked.statusDescription = blockedDescription
        eval.status = .complete
        eval.blockedEval = blocked.id
        eval.statusDescription = "\(plan.queued.values.reduce(0, +)) allocation(s) could not be placed"
        return EvaluationResult(evaluation: eval, blocked: blocked)
    }

    static let blockedDescription = "created to place remaining allocations"
}
