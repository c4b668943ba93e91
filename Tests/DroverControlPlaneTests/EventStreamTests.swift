import DroverModel
import DroverStorage
import DroverTestSupport
import Foundation
import Testing

@testable import DroverControlPlane

/// The event stream's log against a real PostgreSQL: every change the use cases make is an
/// event, written in their transaction, in order, with the object as the HTTP API reads it.
@Suite(.serialized, .enabled(if: TestEnvironment.runsStorageIntegration))
struct EventStreamTests {
    static func all(_ database: Database, after seq: Int64 = 0, topics: [(String, String)] = [("*", "*")], namespace: String = "*")
        async throws -> [StreamEvent]
    {
        try await database.eventStream.sequence()
        let (entries, _) = try await database.eventStream.read(
            after: seq, filter: .init(topics: topics.map { (topic: $0.0, key: $0.1) }, namespace: namespace), limit: 10_000)
        return try entries.map { try JSONDecoder().decode(StreamEvent.self, from: Data($0.json.utf8)) }
    }

    @Test func anAllocationsWholeLifeIsInTheStreamInOrderAsTheAPIReadsIt() async throws {
        try await withMigratedDatabase { database in
            let (jobs, nodes, reports) = (JobService(database: database), NodeLifecycle(database: database), ReportService(database: database))
            try await nodes.register(node: testNode("n1"))
            let registration = try await jobs.register(smallJob("web"))
            _ = try await EvaluationService(database: database).process(evalID: registration.evalID)
            let allocation = try #require(try await database.allocations.list(job: JobKey(id: "web")).first)
            var snapshots: [Allocation] = []
            for (status, sequence) in [(Allocation.ClientStatus.running, Int64(1)), (.complete, 2)] {
                _ = try await reports.record([
                    AllocationStatusReport(
                        nodeID: "n1", allocID: allocation.id, clientStatus: status, clientDescription: "\(status)",
                        taskStates: ["t": TaskState(state: status == .running ? .running : .dead, events: [])], sequence: sequence)
                ])
                snapshots.append(try #require(try await database.allocations.read(id: allocation.id)))
            }

            let events = try await Self.all(database)
            // One group per transaction (its index), the events of a statement in no set order; a
            // service job whose allocation completed is evaluated again.
            let groups = Dictionary(grouping: events, by: \.index).sorted { $0.key < $1.key }.map {
                $0.value.map { "\($0.topic) \($0.type)" }.sorted()
            }
            #expect(
                groups == [
                    ["Node NodeRegistration"], ["Evaluation EvaluationUpdated", "Job JobRegistered"],
                    ["Allocation AllocationCreated", "Evaluation EvaluationUpdated"], ["Allocation AllocationUpdated"],
                    ["Allocation AllocationUpdated", "Evaluation EvaluationUpdated"],
                ])
            // Indexes never go back, and each event names its object.
            #expect(events.map(\.index) == events.map(\.index).sorted())
            let allocationEvents = events.filter { $0.topic == "Allocation" }
            #expect(allocationEvents.allSatisfy { $0.key == allocation.id && $0.filterKeys == ["web", "n1"] })
            // The allocation in each event is the allocation as the API read it then (without its job, as in Nomad).
            let seen = try allocationEvents.map { try #require(try $0.object(Allocation.self, named: "Allocation")) }
            var expected = [allocation] + snapshots
            for index in expected.indices { expected[index].job = nil }
            #expect(seen == expected)
            #expect(seen.map(\.clientStatus) == [.pending, .running, .complete])
            // The job as GET /v1/job/:id shows it (its status derived), and the node as GET /v1/node/:id.
            let job = try #require(try events.first { $0.topic == "Job" }?.object(Job.self, named: "Job"))
            let read = try #require(try await database.jobs.read(JobKey(id: "web")))
            let texts = try [job, read].map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) }
            #expect(job == read, "\(texts[0])\n\(texts[1])")
            #expect(try events[0].object(Node.self, named: "Node")?.id == "n1")
            let evaluations = events.filter { $0.topic == "Evaluation" }.compactMap { try? $0.object(Evaluation.self, named: "Evaluation") }
            #expect(evaluations.map(\.status) == [.pending, .complete, .pending])
        }
    }

    @Test func aStreamTakesTheTopicsAndKeysItAsksForAndResumesFromAPlace() async throws {
        try await withMigratedDatabase { database in
            let (jobs, nodes) = (JobService(database: database), NodeLifecycle(database: database))
            try await nodes.register(node: testNode("n1"))
            _ = try await jobs.register(smallJob("web"))
            _ = try await jobs.register(smallJob("db"))
            #expect(try await Self.all(database, topics: [("Job", "*")]).map(\.key) == ["web", "db"])
            #expect(try await Self.all(database, topics: [("Job", "db"), ("Node", "*")]).map(\.key) == ["n1", "db"])
            // A key matches the events that name it among their filter keys: db's evaluation.
            #expect(try await Self.all(database, topics: [("Evaluation", "db")]).map(\.filterKeys) == [["db"]])
            // Another namespace sees the node (which has none), not the default namespace's jobs.
            #expect(try await Self.all(database, namespace: "other").map(\.topic) == ["Node"])
            // From a place on: only what came after it; and from an index, what was made at it or later.
            let place = try await database.eventStream.latest()
            _ = try await jobs.deregister(JobKey(id: "web"), purge: false)
            let after = try await Self.all(database, after: place, topics: [("Job", "*")])
            #expect(after.map { "\($0.key) \($0.type)" } == ["web JobDeregistered"])
            let fromIndex = try await database.eventStream.position(fromIndex: after[0].index)
            #expect(try await Self.all(database, after: fromIndex, topics: [("Job", "*")]).map(\.key) == ["web"])
            #expect(try await database.eventStream.position(fromIndex: after[0].index + 1_000) == (try await database.eventStream.latest()))
        }
    }

    @Test func aDrainIsANodeDrainEventAndAPurgedJobIsDeregistered() async throws {
        try await withMigratedDatabase { database in
            let (jobs, nodes) = (JobService(database: database), NodeLifecycle(database: database))
            try await nodes.register(node: testNode("n1"))
            _ = try await jobs.register(smallJob("web"))
            let place = try await database.eventStream.latest()
            _ = try await nodes.drain(nodeID: "n1", spec: DrainSpec(deadline: 60_000_000_000), markEligible: false)
            _ = try await jobs.deregister(JobKey(id: "web"), purge: true)
            let events = try await Self.all(database, after: place)
            #expect(events.contains { $0.topic == "NodeDrain" && $0.type == "NodeDrain" && $0.key == "n1" })
            #expect(events.contains { $0.topic == "Node" && $0.type == "NodeEligibility" && $0.key == "n1" })
            #expect(events.filter { $0.topic == "Job" }.map(\.type).last == "JobDeregistered")
        }
    }

    @Test func eventsCanBeTurnedOffAndOnForEverySession() async throws {
        try await withMigratedDatabase { database in
            let jobs = JobService(database: database)
            try await database.client.query("UPDATE drover_settings SET value = 'off' WHERE name = 'events'")
            _ = try await jobs.register(smallJob("quiet"))
            #expect(try await Self.all(database).isEmpty)
            try await database.client.query("UPDATE drover_settings SET value = 'on' WHERE name = 'events'")
            _ = try await jobs.register(smallJob("heard"))
            #expect(try await Self.all(database, topics: [("Job", "*")]).map(\.key) == ["heard"])
        }
    }

    /// Retention removes published events only, and places go on past those it removed.
    @Test func placesGoOnPastWhatRetentionRemoved() async throws {
        try await withMigratedDatabase { database in
            let jobs = JobService(database: database)
            _ = try await jobs.register(smallJob("one"))
            try await database.eventStream.sequence()
            let first = try await database.eventStream.latest()
            #expect(first == 2, "the job and its evaluation")
            #expect(try await database.eventStream.prune(olderThan: .zero) == 0, "nothing published yet")
            try await database.client.query("UPDATE drover_event_cursor SET seq = \(first) WHERE name = 'published'")
            #expect(try await database.eventStream.prune(olderThan: .zero) == 2)
            _ = try await jobs.register(smallJob("two"))
            let after = try await Self.all(database, after: first)
            let latest = try await database.eventStream.latest()
            #expect(after.map(\.key).contains("two") && latest == first + 2)
        }
    }

    @Test func routingKeysKeepAKeyOneWord() {
        #expect(RoutingKey.event(topic: "Allocation", type: "failed", key: "4f1c") == "event.allocation.failed.4f1c")
        #expect(RoutingKey.event(topic: "Job", type: "registered", key: "web.front #1*") == "event.job.registered.web%2Efront%20%231%2A")
        #expect(RoutingKey.event(topic: "NodeDrain", type: "started", key: "") == "event.nodedrain.started._")
        #expect(RoutingKey.event(topic: "Job", type: "registered", key: "été%") == "event.job.registered.été%25")
    }
}
