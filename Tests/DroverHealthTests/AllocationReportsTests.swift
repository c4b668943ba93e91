import DroverModel
import Testing

@testable import DroverHealth

/// Which reports change an allocation's record, and what follows from them, without a database.
struct AllocationReportsTests {
    func allocation(_ id: String, job: String = "web", node: String = "n1", status: Allocation.ClientStatus = .pending) -> Allocation {
        Allocation(
            id: id, evalID: "e", name: "\(job).g[0]", nodeID: node, nodeName: node, jobID: job, jobVersion: 0, taskGroup: "g",
            resources: Resources(cpu: 1, memoryMB: 1), clientStatus: status, createIndex: 1, modifyIndex: 1, createTime: 0, modifyTime: 0)
    }

    func report(_ id: String, _ status: Allocation.ClientStatus, _ sequence: Int64, node: String = "n1") -> AllocationStatusReport {
        AllocationStatusReport(nodeID: node, allocID: id, clientStatus: status, clientDescription: "\(status)", taskStates: [:], sequence: sequence)
    }

    func records(_ allocations: Allocation...) -> [String: AllocationReports.Record] {
        Dictionary(uniqueKeysWithValues: allocations.map { ($0.id, AllocationReports.Record(allocation: $0, sequence: 0)) })
    }

    @Test func reportsApplyInSequenceOrderAndRefusalsKeepTheirPosition() {
        let outcome = AllocationReports.fold(
            [report("a", .complete, 3), report("ghost", .running, 1), report("a", .running, 2), report("b", .running, 1, node: "n2")],
            into: records(allocation("a"), allocation("b")))
        #expect(outcome.records["a"]?.allocation.clientStatus == .complete && outcome.records["a"]?.sequence == 3)
        #expect(outcome.changed == ["a"])
        #expect(outcome.started == ["a"] && outcome.finished == ["a"])
        #expect(outcome.refused == [1: .unknownAllocation("ghost"), 3: .otherNode(allocID: "b", nodeID: "n2")])
    }

    @Test func anOlderReportOrARepeatChangesNothingAndAFinishedAllocationNeverComesBack() {
        var done = AllocationReports.fold([report("a", .failed, 5)], into: records(allocation("a")))
        #expect(done.changed == ["a"])
        done = AllocationReports.fold([report("a", .running, 4), report("a", .running, 6), report("a", .failed, 7)], into: done.records)
        #expect(done.changed.isEmpty, "older, a revival, and the same state again")
        #expect(done.records["a"]?.allocation.clientStatus == .failed)
    }

    @Test func aLostAllocationReportedCompleteCountsOnlyWhenTheCallerSaysItMay() {
        var lost = allocation("a", job: "batch", status: .lost)
        lost.desiredStatus = .stop
        // Its replacement has started (or the job is a service): lost stays lost.
        let kept = AllocationReports.fold([report("a", .complete, 9)], into: records(lost))
        #expect(kept.records["a"]?.allocation.clientStatus == .lost && kept.completedLate.isEmpty)
        // It may: complete and wanted, as a finished batch run is; the caller stops the replacement.
        let counted = AllocationReports.fold([report("a", .complete, 9)], into: records(lost), completable: ["a"])
        #expect(counted.records["a"]?.allocation.clientStatus == .complete && counted.records["a"]?.allocation.desiredStatus == .run)
        #expect(counted.completedLate == ["a"] && counted.finished.isEmpty, "not a newly ended allocation: nothing is evaluated")
        // A failure report is no completion.
        #expect(AllocationReports.fold([report("a", .failed, 9)], into: records(lost), completable: ["a"]).completedLate.isEmpty)
    }

    @Test(arguments: [
        // (job type, stopped, the allocation's end, evaluated again)
        (JobType.service, false, Allocation.ClientStatus.complete, true),
        (JobType.batch, false, Allocation.ClientStatus.complete, false),
        (JobType.batch, false, Allocation.ClientStatus.failed, true),
        (JobType.service, true, Allocation.ClientStatus.failed, false),
        (JobType.service, false, Allocation.ClientStatus.lost, false),
    ])
    func theJobsEvaluatedAgainAreThoseStillWantedWhoseAllocationFailedOrWhoseServiceEnded(
        type: JobType, stopped: Bool, end: Allocation.ClientStatus, again: Bool
    ) {
        let outcome = AllocationReports.fold([report("a", end, 1), report("b", end, 1)], into: records(allocation("a"), allocation("b")))
        #expect(outcome.finished == ["a", "b"])
        let jobs = outcome.jobsToEvaluate([AllocationReports.JobKind(id: JobKey(id: "web"), type: type, stopped: stopped)])
        #expect(jobs == (again ? [JobKey(id: "web")] : []), "once per job, however many of its allocations ended")
    }
}
