import DroverAutoscaling
import DroverModel
import DroverStorage
import DroverTestSupport
import Foundation
import Logging
import PostgresNIO
import Synchronization
import Testing

@testable import DroverControlPlane

/// The autoscaler's use cases against a real PostgreSQL, with the clock in the test's hands: a
/// blocked job asks a provider for machines, their nodes make them ready, idle ones are
/// drained and taken away, a silent provider is given up on and backed off from.
@Suite(.serialized, .enabled(if: TestEnvironment.runsStorageIntegration))
struct AutoscaleUseCaseTests {
    final class Clock: Sendable {
        let time = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
        var now: Date { time.withLock { $0 } }
        func advance(_ seconds: Double) { time.withLock { $0 = $0.addingTimeInterval(seconds) } }
    }

    static let array = NodeArray(
        name: "execute", machine: MachineType(cores: 2, memoryMB: 2048), maxCount: 4, idleTimeAfterJobs: 30, idleTimeBeforeJobs: 30,
        bootTimeout: 300, provider: "local")

    static func outbox(_ database: Database) async throws -> [String] {
        var keys: [String] = []
        for try await key in try await database.client.query("SELECT routing_key FROM drover_outbox ORDER BY id").decode(String.self) {
            keys.append(key)
        }
        return keys
    }

    static func createRequests(_ database: Database) async throws -> [ProviderCreateRequest] {
        var requests: [ProviderCreateRequest] = []
        for try await body in try await database.client.query(
            "SELECT body FROM drover_outbox WHERE routing_key = 'cluster.provider.execute.create' ORDER BY id"
        ).decode(ByteBuffer.self) {
            requests.append(try MessageCoding.decoder().decode(MessageEnvelope<ProviderCreateRequest>.self, from: Data(buffer: body)).data)
        }
        return requests
    }

    @Test func aBlockedJobGetsMachinesWhoseNodesBecomeReadyAndIdleOnesAreTakenAway() async throws {
        try await withMigratedDatabase { database in
            let clock = Clock()
            let service = AutoscaleService(database: database, gateway: "http://gateway:4646", logger: Logger(label: "test")) { clock.now }
            _ = try await NodeArrayService(database: database).put(Self.array)
            let jobs = JobService(database: database)
            // Three allocations of 1.5 cores: one per 2-core machine, and no node yet.
            let eval = try await jobs.register(smallJob("big", count: 3, cpu: 1500)).evalID
            _ = try await EvaluationService(database: database).process(evalID: eval)

            let plan = try await service.round()
            #expect(plan.actions == [.acquire(array: "execute", names: ["execute-1", "execute-2", "execute-3"])])
            #expect(plan.decisions.first?.reason.contains("3 pending placement(s) need 3 machine(s)") == true, "\(plan.decisions)")
            let request = try #require(try await Self.createRequests(database).first)
            #expect(request.machines.map(\.name) == ["execute-1", "execute-2", "execute-3"] && request.gateway == "http://gateway:4646")
            #expect(request.machines.allSatisfy { !$0.enrollToken.isEmpty } && request.machineType == Self.array.machine)
            #expect(try await count("drover_enrollment_tokens", in: database) == 3)
            // The same demand next round asks for nothing more: those machines are on their way.
            clock.advance(1)
            #expect(try await service.round().actions.isEmpty)

            // The provider starts them; their nodes register and the machines are ready.
            try await service.record(
                ProviderReply(requestID: request.requestID, array: "execute", status: .created, machines: ["execute-1", "execute-2", "execute-3"]))
            #expect(try await database.nodeArrays.machines().allSatisfy { $0.state == .preparing })
            let nodes = NodeLifecycle(database: database)
            for machine in request.machines {
                var node = testNode(machine.nodeID, cpu: 2000)
                node.name = machine.name
                try await nodes.register(node: node)
            }
            clock.advance(1)
            try await service.round()
            #expect(try await database.nodeArrays.machines().map(\.state) == [.ready, .ready, .ready])

            // The job goes; past the idle time and the cooldown, all three are drained, then taken away.
            _ = try await jobs.deregister(JobKey(id: "big"), purge: false)
            clock.advance(120)
            let down = try await service.round()
            #expect(down.actions.filter { if case .drain(_, _, true, _) = $0 { true } else { false } }.count == 3, "\(down.actions)")
            clock.advance(1)
            try await service.round()
            #expect(try await Self.outbox(database).filter { $0 == "cluster.provider.execute.terminate" }.count == 3)
            try await service.record(
                ProviderReply(requestID: "r", array: "execute", status: .terminated, machines: ["execute-1", "execute-2", "execute-3"]))
            #expect(try await database.nodeArrays.machines().allSatisfy { $0.state == .terminated })
            #expect(try await database.nodes.list().isEmpty, "their nodes are forgotten")
            let status = try await NodeArrayService(database: database) { clock.now }.status(name: "execute")
            #expect(status.counts == ["Terminated": 3] && status.lastDecision != nil)
        }
    }

    @Test func aSilentProviderIsGivenUpOnAndBackedOffFromAndAFailureIsSaid() async throws {
        try await withMigratedDatabase { database in
            let clock = Clock()
            let service = AutoscaleService(
                database: database, policy: AutoscalePolicy(requestTimeout: 10), gateway: "http://g", logger: Logger(label: "test")
            ) { clock.now }
            var array = Self.array
            array.minCount = 1
            _ = try await NodeArrayService(database: database).put(array)
            #expect(try await service.round().actions == [.acquire(array: "execute", names: ["execute-1"])])
            clock.advance(11)
            let silent = try await service.round()
            #expect(silent.actions.contains(.giveUp(machine: "execute-1", reason: "the provider 'local' did not answer within 10 s")))
            #expect(try await database.nodeArrays.backoffs().first?.failures == 1)
            #expect(silent.decisions.first?.reason.contains("asking again in 10 s") == true, "\(silent.decisions)")
            clock.advance(10)
            #expect(try await service.round().actions == [.acquire(array: "execute", names: ["execute-2"])])
            // The provider refuses: the machine fails and the provider backs off longer.
            try await service.record(
                ProviderReply(requestID: "r", array: "execute", status: .failed, machines: ["execute-2"], reason: "out of capacity"))
            let backoff = try #require(try await database.nodeArrays.backoffs().first)
            #expect(backoff.failures == 2 && backoff.reason.contains("out of capacity"))
            #expect(try await database.nodeArrays.machines().map(\.state) == [.failed, .failed])
            // A late "created" for the machine given up on is taken away.
            try await service.record(ProviderReply(requestID: "r", array: "execute", status: .created, machines: ["execute-1"]))
            #expect(try await Self.outbox(database).filter { $0 == "cluster.provider.execute.terminate" }.count == 2)
            await #expect(throws: ControlPlaneError.self) {
                try await service.record(ProviderReply(requestID: "", array: "no such.array", status: .created, machines: []))
            }
        }
    }
}
