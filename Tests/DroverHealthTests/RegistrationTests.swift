import DroverModel
import Testing

@testable import DroverHealth

struct RegistrationTests {
    func node(cpu: Int = 1000, eligibility: Node.Eligibility = .eligible, drain: Bool = false, modifyIndex: Int64? = nil) -> Node {
        var node = Node(
            id: "n1", name: "n1", drivers: ["raw_exec": DriverInfo(detected: true, healthy: true)], attributes: [:],
            resources: Resources(cpu: cpu, memoryMB: 1024))
        node.schedulingEligibility = eligibility
        node.drain = drain
        node.modifyIndex = modifyIndex
        return node
    }

    @Test func aRepeatOfAReadyNodeChangesNothingWhatTheControlPlaneKeepsAside() {
        let recorded = node(eligibility: .ineligible, drain: true, modifyIndex: 7)
        #expect(Registration.isRepeat(node(), previous: recorded, status: .ready))
    }

    @Test(arguments: [
        // (previous is there, its status, the reported CPU) -> recorded again
        (false, Node.Status.ready, 1000),
        (true, Node.Status.down, 1000),
        (true, Node.Status.initializing, 1000),
        (true, Node.Status.ready, 2000),
    ])
    func aNewNodeOneThatWasNotReadyOrOneThatChangedIsRecordedAgain(known: Bool, status: Node.Status, cpu: Int) {
        #expect(!Registration.isRepeat(node(cpu: cpu), previous: known ? node() : nil, status: known ? status : nil))
    }

    @Test func theRecordedNodeIsReadyWithTheControlPlanesFieldsCleared() {
        var reported = node(modifyIndex: 3)
        reported.status = .down
        reported.statusDescription = "stale"
        let recorded = Registration.recorded(reported)
        #expect(recorded.status == .ready && recorded.statusDescription == nil && recorded.modifyIndex == nil && recorded.createIndex == nil)
    }
}
