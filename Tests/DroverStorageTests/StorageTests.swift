import DroverMessaging
import DroverModel
import DroverTestSupport
import Foundation
import Logging
import PostgresNIO
import Synchronization
import Testing

@testable import DroverStorage

@Suite struct DatabaseURLTests {
    @Test(arguments: [
        ("mysql://u:p@h/db", "scheme"),
        ("postgres://u:p@:5432/db", "no host"),
        ("postgres://h:5432/db", "no user"),
        ("postgres://u:p@h:5432", "no database"),
        ("postgres://u:p@h:5432/db?sslmode=always", "sslmode 'always'"),
        ("postgres://u:p@h:5432/db?sslmode=verify-full&sslrootcert=ca.pem", "sslrootcert 'ca.pem'"),
        ("postgres://u:p@h:5432/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem", "not a readable file"),
    ])
    func refusesBadURLs(_ example: (url: String, reason: String)) {
        let error = #expect(throws: StorageError.self) { try Database.configuration(url: example.url) }
        #expect(error?.description.contains(example.reason) == true, "\(String(describing: error))")
    }

    @Test func readsEveryPart() throws {
        let configuration = try Database.configuration(url: "postgres://drover:p%40ss@db.local:6543/state")
        #expect(configuration.host == "db.local" && configuration.port == 6543)
        #expect(configuration.username == "drover" && configuration.password == "p@ss" && configuration.database == "state")
    }
}

@Suite(.serialized, .enabled(if: TestEnvironment.runsStorageIntegration))
struct StorageTests {
    let logger = Logger(label: "test.storage")

    @Test func migrationsRunFromTwoClientsAtOnce() async throws {
        try await withFreshDatabase { url in
            let first = try Database(url: url, logger: logger)
            let second = try Database(url: url, logger: logger)
            try await withClient(first.client) {
                try await withClient(second.client) {
                    async let a = first.migrate()
                    async let b = second.migrate()
                    let results = try await [a, b]
                    let all = DroverSchema.migrations.map(\.version)
                    #expect(results.sorted { $0.count < $1.count } == [[], all], "one applies everything, the other nothing")
                    #expect(try await count("drover_schema_migrations", in: first) == all.count)
                    #expect(try await first.migrate() == [])
                }
            }
        }
    }

    @Test func aMigrationChangedAfterItWasAppliedIsRefusedAndOlderRowsGetTheirChecksum() async throws {
        try await withFreshDatabase { url in
            let database = try Database(url: url, logger: logger)
            try await withClient(database.client) {
                let one = Migration(version: 1, name: "one", statements: ["CREATE TABLE t1 (x int)"])
                let two = Migration(version: 2, name: "two", statements: ["CREATE TABLE t2 (x int)", "CREATE INDEX t2_x ON t2 (x)"])
                let three = Migration(version: 3, name: "three", statements: ["CREATE TABLE t3 (x int)"])
                #expect(try await Migrator(migrations: [one, two]).migrate(database.client, logger: logger) == [1, 2])
                // The same migrations and a new one: only the new one runs.
                #expect(try await Migrator(migrations: [one, two, three]).migrate(database.client, logger: logger) == [3])
                // Version 2 edited after it ran: refused by name, and nothing of that run happens.
                var edited = two
                edited.statements[1] = "CREATE INDEX t2_x ON t2 (x DESC)"
                let four = Migration(version: 4, name: "four", statements: ["CREATE TABLE t4 (x int)"])
                await #expect(throws: MigrationError.changedAfterApplied([2])) {
                    try await Migrator(migrations: [one, edited, three, four]).migrate(database.client, logger: logger)
                }
                #expect(try await count("drover_schema_migrations", in: database) == 3)
                // A row recorded before checksums existed is taken as it is and given its checksum.
                try await database.client.query("UPDATE drover_schema_migrations SET checksum = NULL WHERE version = 1", logger: logger)
                #expect(try await Migrator(migrations: [one, two, three]).migrate(database.client, logger: logger) == [])
                for try await missing in try await database.client.query(
                    "SELECT count(*)::int8 FROM drover_schema_migrations WHERE checksum IS NULL", logger: logger
                ).decode(Int.self) {
                    #expect(missing == 0)
                }
                // An older build, which lacks version 3, still starts.
                #expect(try await Migrator(migrations: [one, two]).migrate(database.client, logger: logger) == [])
            }
        }
    }

    @Test func aFailingMigrationLeavesNoTrace() async throws {
        try await withFreshDatabase { url in
            let database = try Database(url: url, logger: logger)
            try await withClient(database.client) {
                let broken = Migrator(migrations: [
                    Migration(version: 1, name: "fine", statements: ["CREATE TABLE t1 (x int)"]),
                    Migration(version: 2, name: "broken", statements: ["CREATE TABLE t2 (x int)", "SELECT no_such_function()"]),
                ])
                await #expect(throws: (any Error).self) { try await broken.migrate(database.client, logger: logger) }
                let tables = try await database.client.query(
                    "SELECT count(*)::int8 FROM information_schema.tables WHERE table_name IN ('t1', 't2', 'drover_schema_migrations')"
                ).decode(Int.self)
                for try await value in tables { #expect(value == 0) }
            }
        }
    }

    /// A unit of work writes the messages it sends with its next statement, the rest just before
    /// the commit, and none when it rolls back.
    @Test func aUnitOfWorksMessagesAreWrittenWithItsStatementsAndOnlyIfItCommits() async throws {
        try await withFreshDatabase { url in
            let database = try Database(url: url, logger: logger)
            try await withClient(database.client) {
                try await database.migrate()
                func message(_ id: String) -> OutgoingMessage {
                    OutgoingMessage(
                        routingKey: "test.row", messageID: id, type: "test.row", schemaVersion: 1, timestamp: Date(), body: Array("{}".utf8))
                }
                struct Abort: Error {}
                await #expect(throws: Abort.self) {
                    try await database.transaction { work in
                        work.send(message("rolled-back"))
                        try await work.execute(SQLWrites())
                        throw Abort()
                    }
                }
                #expect(try await count("drover_outbox", in: database) == 0, "a rollback sends nothing")
                let seenInside = try await database.transaction { work in
                    work.send(message("with-statement"))
                    var writes = SQLWrites()
                    try writes.add("INSERT INTO drover_users (name, spec, modify_index) VALUES (\("ann"), '{}'::jsonb, \(Int64(1)))")
                    try await work.execute(writes)
                    var rows = 0
                    for try await value in try await work.query("SELECT count(*)::int8 FROM drover_outbox").decode(Int.self) { rows = value }
                    work.send([message("at-commit"), message("with-statement")])
                    return rows
                }
                #expect(seenInside == 1, "written with the statement that followed it")
                #expect(try await count("drover_outbox", in: database) == 2, "the rest at commit; a message id is written once")
            }
        }
    }

    /// While a process's relay runs, the rows its transactions write are claimed for it, wake no
    /// relay, and are handed to it on commit; a row handed over and given back goes to any relay.
    @Test(.enabled(if: TestEnvironment.runsMessagingIntegration))
    func committedMessagesGoStraightToTheProcesssRelay() async throws {
        let amqpURL = try #require(TestEnvironment.amqpURL)
        try await withFreshDatabase { url in
            let database = try Database(url: url, logger: logger)
            try await withClient(database.client) {
                try await database.migrate()
                let word = TestEnvironment.uniqueName("handoff")
                func message(_ id: String) -> OutgoingMessage {
                    OutgoingMessage(
                        routingKey: "\(word).row", messageID: id, type: "test.row", schemaVersion: 1, timestamp: Date(), body: Array("{}".utf8))
                }
                func claimed() async throws -> [Bool] {
                    var claims: [Bool] = []
                    for try await claim in try await database.client.query(
                        "SELECT claimed_until IS NOT NULL FROM drover_outbox ORDER BY id", logger: logger
                    ).decode(Bool.self) {
                        claims.append(claim)
                    }
                    return claims
                }
                let bus = AMQPBus(configuration: try AMQPBus.Configuration(url: amqpURL), logger: logger)
                let deliveries = try await bus.subscribe(ConsumerSpec(queue: "test.\(word)", bindings: ["\(word).#"], prefetch: 10))
                let relay = OutboxRelay(database: database, bus: bus, logger: logger)

                // Without a relay in this process a row is written unclaimed.
                try await database.transaction { $0.send([message("plain")]) }
                #expect(try await claimed() == [false])
                #expect(try await relay.relayOnce() == 1)

                // With one, it is claimed, handed over on commit, and no relay pass takes it.
                _ = database.outboxHandOff.attach()
                try await database.transaction { $0.send([message("direct")]) }
                let handedOver = database.outboxHandOff.take()
                #expect(handedOver.map(\.messageID) == ["direct"])
                #expect(try await claimed() == [true])
                #expect(try await relay.relayOnce() == 0)
                // A rolled-back transaction hands nothing over.
                await #expect(throws: CancellationError.self) {
                    try await database.transaction { work in
                        work.send(message("rolled-back"))
                        throw CancellationError()
                    }
                }
                #expect(database.outboxHandOff.take().isEmpty)
                // A relay whose publish fails gives the claim back at once.
                try await database.transaction { $0.send([message("refused")]) }
                #expect(try await claimed() == [true, true])
                await OutboxRelay(database: database, bus: RefusingBus(), logger: logger).publishHandedOff(database.outboxHandOff.take())
                #expect(try await claimed() == [true, false])
                _ = database.outboxHandOff.detach()

                // Given back, any relay publishes it.
                try await Outbox.release(["direct"], database: database)
                #expect(try await claimed() == [false, false])
                #expect(try await relay.relayOnce() == 2)

                // The running relay publishes what its process commits, and deletes it.
                let running = Task { try await relay.run() }
                try await withTimeout(.seconds(20), "the relay attaching") {
                    while !database.outboxHandOff.isAttached { try await Task.sleep(for: .milliseconds(10)) }
                }
                try await database.transaction { $0.send([message("running")]) }
                let received = try await withTimeout(.seconds(20), "four deliveries") {
                    var ids: [String] = []
                    for await delivery in deliveries {
                        ids.append(delivery.messageID ?? "")
                        delivery.ack()
                        if ids.count == 4 { break }
                    }
                    return ids
                }
                #expect(received == ["plain", "direct", "refused", "running"])
                try await withTimeout(.seconds(20), "the published row being deleted") {
                    while try await count("drover_outbox", in: database) > 0 { try await Task.sleep(for: .milliseconds(10)) }
                }
                running.cancel()
                _ = await running.result
                #expect(!database.outboxHandOff.isAttached)
                await bus.shutdown()
            }
        }
    }

    /// What the broker does not take holds up nothing: a message no queue is bound to take keeps
    /// its row and goes once a queue is bound; one larger than the broker takes is set aside as
    /// dead, with the reason (learnt from the broker itself when it is lower than configured).
    @Test(.enabled(if: TestEnvironment.runsMessagingIntegration))
    func aMessageNoQueueTakesIsKeptAndOneTooLargeIsSetAsideWhileTheRestMoveOn() async throws {
        let amqpURL = try #require(TestEnvironment.amqpURL)
        try await withFreshDatabase { url in
            let database = try Database(url: url, logger: logger)
            try await withClient(database.client) {
                try await database.migrate()
                let word = TestEnvironment.uniqueName("refused")
                func message(_ id: String, _ key: String, bytes: Int = 2) -> OutgoingMessage {
                    OutgoingMessage(
                        routingKey: "\(word).\(key)", messageID: id, type: "test.row", schemaVersion: 1, timestamp: Date(),
                        body: Array("{}".utf8) + Array(repeating: 32, count: max(bytes - 2, 0)))
                }
                // Configured above the test broker's max_message_size (16 MiB): the broker's refusal teaches the bus.
                var configuration = try AMQPBus.Configuration(url: amqpURL)
                configuration.maximumMessageBytes = 64 << 20
                configuration.initialBackoff = .milliseconds(20)
                let bus = AMQPBus(configuration: configuration, logger: logger)
                var routed = try await bus.subscribe(ConsumerSpec(queue: "test.\(word)", bindings: ["\(word).routed"])).makeAsyncIterator()
                try await database.transaction { work in
                    work.send([
                        message("a", "routed"), message("nowhere", "unbound"), message("huge", "routed", bytes: 17 << 20), message("d", "routed"),
                    ])
                }
                let relay = OutboxRelay(database: database, bus: bus, logger: logger)
                #expect(try await relay.relayOnce() == 4)
                // The channel the broker closed over the large one held "a" unconfirmed: it may come twice.
                var ids: [String] = []
                while ids.last != "d" {
                    let delivery = try #require(await routed.next())
                    if !ids.contains(delivery.messageID ?? "") { ids.append(delivery.messageID ?? "") }
                    delivery.ack()
                }
                #expect(ids == ["a", "d"])
                var rows: [String: (attempts: Int, error: String?, dead: Bool, later: Bool)] = [:]
                for try await (id, attempts, error, dead, later) in try await database.client.query(
                    "SELECT message_id, attempts, last_error, dead_at IS NOT NULL, coalesce(claimed_until > now(), false) FROM drover_outbox",
                    logger: logger
                ).decode((String, Int, String?, Bool, Bool).self) {
                    rows[id] = (attempts, error, dead, later)
                }
                #expect(Set(rows.keys) == ["nowhere", "huge"])
                #expect(rows["nowhere"]?.attempts == 1 && rows["nowhere"]?.dead == false && rows["nowhere"]?.later == true)
                #expect(rows["nowhere"]?.error == "no queue is bound to take it")
                #expect(rows["huge"]?.dead == true && rows["huge"]?.error == "larger than the broker takes")
                #expect(try await relay.relayOnce() == 0, "the kept row waits its backoff; the dead one is never claimed")

                // Once a queue is bound and the backoff has passed, the kept message goes.
                var late = try await bus.subscribe(ConsumerSpec(queue: "test.\(word).late", bindings: ["\(word).unbound"])).makeAsyncIterator()
                try await database.client.query("UPDATE drover_outbox SET claimed_until = now() WHERE message_id = 'nowhere'", logger: logger)
                #expect(try await relay.relayOnce() == 1)
                let delivery = try #require(await late.next())
                #expect(delivery.messageID == "nowhere")
                delivery.ack()
                #expect(try await count("drover_outbox", in: database) == 1)
                await bus.shutdown()
            }
        }
    }

    /// Two transactions that lock two rows in opposite orders: PostgreSQL ends one of them with
    /// a deadlock, and it runs again and commits instead of failing.
    @Test func aTransactionEndedByADeadlockRunsAgainAndBothCommit() async throws {
        try await withMigratedDatabase { database in
            _ = try await database.client.query("CREATE TABLE deadlock_probe (id int PRIMARY KEY, hits int NOT NULL)", logger: logger)
            _ = try await database.client.query("INSERT INTO deadlock_probe VALUES (1, 0), (2, 0)", logger: logger)
            let (first, second, runs) = (Signal(), Signal(), Runs())
            let logger = self.logger
            /// Locks `mine`, says so, waits until the other holds its row, then takes the other's.
            @Sendable func both(_ mine: Int, _ said: Signal, _ other: Int, _ heard: Signal) async throws {
                try await database.transaction { work in
                    runs.count.withLock { $0 += 1 }
                    _ = try await work.connection.query("UPDATE deadlock_probe SET hits = hits + 1 WHERE id = \(mine)", logger: logger)
                    said.send()
                    await heard.wait()
                    _ = try await work.connection.query("UPDATE deadlock_probe SET hits = hits + 1 WHERE id = \(other)", logger: logger)
                }
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await both(1, first, 2, second) }
                group.addTask { try await both(2, second, 1, first) }
                try await group.waitForAll()
            }
            #expect(runs.count.withLock { $0 } >= 3, "one of the two ran again")
            let hits = try await database.client.query("SELECT sum(hits) FROM deadlock_probe", logger: logger).collect()
            #expect(try hits.first?.decode(Int.self) == 4, "both committed once, the rolled back run left nothing")
        }
    }

    @Test func theDatabaseBeingAwayIsAnOutageAndABadStatementIsNot() async throws {
        // A connection that cannot be made or was lost is an outage.
        #expect(Database.isOutage(ChannelError.ioOnClosedChannel) && Database.isOutage(ChannelError.connectTimeout(.seconds(1))))
        try await withMigratedDatabase { database in
            // What the server says when it is shutting down, starting up or out of connections is an outage.
            for state in ["admin_shutdown", "cannot_connect_now", "too_many_connections", "connection_failure"] {
                let error = await #expect(throws: (any Error).self) {
                    try await database.client.query(
                        PostgresQuery(unsafeSQL: "DO $$ BEGIN RAISE EXCEPTION 'away' USING ERRCODE = '\(state)'; END $$"), logger: logger)
                }
                let thrown = try #require(error)
                #expect(Database.isOutage(thrown), "\(state): \(String(reflecting: thrown))")
            }
            let error = await #expect(throws: (any Error).self) { try await database.client.query("SELECT 1/0", logger: logger) }
            let thrown = try #require(error)
            #expect(!Database.isOutage(thrown))
            #expect(!Database.isOutage(CancellationError()))
        }
    }

    /// 10,000 outbox rows; the first relay is stopped abruptly half-way (its task cancelled and
    /// its bus shut down under it), a second one finishes: every row is published, the rows the
    /// first one had claimed once their claim ran out.
    @Test(.enabled(if: TestEnvironment.runsMessagingIntegration))
    func theOutboxRelayResumesAfterBeingStoppedHalfWay() async throws {
        let amqpURL = try #require(TestEnvironment.amqpURL)
        try await withFreshDatabase { url in
            let database = try Database(url: url, logger: logger)
            try await withClient(database.client) {
                try await database.migrate()
                let word = TestEnvironment.uniqueName("outbox")
                let total = 10_000
                let messages = (0..<total).map {
                    OutgoingMessage(
                        routingKey: "\(word).row", messageID: "row-\($0)", type: "test.row", schemaVersion: 1, timestamp: Date(),
                        body: Array(#"{"n":\#($0)}"#.utf8), headers: ["x-test": "yes"])
                }
                try await database.transaction { $0.send(messages) }
                #expect(try await count("drover_outbox", in: database) == total)

                func makeBus() throws -> AMQPBus {
                    AMQPBus(configuration: try AMQPBus.Configuration(url: amqpURL), logger: logger)
                }
                let consumerBus = try makeBus()
                let deliveries = try await consumerBus.subscribe(ConsumerSpec(queue: "test.\(word)", bindings: ["\(word).#"], prefetch: 500))
                let (halfway, reachedHalfway) = AsyncStream.makeStream(of: Void.self)
                let consumer = Task {
                    var seen = Set<String>()
                    var duplicates = 0
                    for await delivery in deliveries {
                        #expect(delivery.headers["x-test"] == "yes")
                        if !seen.insert(delivery.messageID ?? "").inserted { duplicates += 1 }
                        delivery.ack()
                        if seen.count == total / 2 { reachedHalfway.finish() }
                        if seen.count == total { break }
                    }
                    return (seen, duplicates)
                }

                var configuration = OutboxRelay.Configuration()
                configuration.batchSize = 100
                configuration.claimDuration = .milliseconds(300)
                let firstBus = try makeBus()
                let first = Task { try await OutboxRelay(database: database, bus: firstBus, configuration: configuration, logger: logger).run() }
                for await _ in halfway {}
                first.cancel()
                await firstBus.shutdown()
                _ = await first.result
                let left = try await count("drover_outbox", in: database)
                print("outbox relay stopped with \(left) of \(total) rows unpublished")
                #expect(left > 0 && left < total)

                // The second relay is driven pass by pass until the outbox is empty. Rows the
                // first one claimed and never deleted are skipped until their claim runs out.
                let secondBus = try makeBus()
                let second = OutboxRelay(database: database, bus: secondBus, configuration: configuration, logger: logger)
                let (published, emptyPasses) = try await withTimeout(.seconds(60), "relaying the rest of the outbox") {
                    var published = 0
                    var emptyPasses = 0
                    while try await count("drover_outbox", in: database) > 0 {
                        let relayed = try await second.relayOnce()
                        published += relayed
                        if relayed == 0 {
                            // Only claimed rows are left: poll, as the relay's own timer would.
                            emptyPasses += 1
                            try await Task.sleep(for: .milliseconds(50))
                        }
                    }
                    return (published, emptyPasses)
                }
                print("outbox relay: second relay published \(published) rows; \(emptyPasses) passes found only claimed rows")
                #expect(published == left)
                let (seen, duplicates) = try await withTimeout(.seconds(120), "consuming every outbox row") { await consumer.value }
                print("outbox relay: \(seen.count) distinct of \(total) rows published, \(duplicates) duplicates")
                #expect(seen == Set(messages.map(\.messageID)))
                await secondBus.shutdown()
                await consumerBus.shutdown()
            }
        }
    }
}

/// A bus whose broker refuses every publish.
struct RefusingBus: MessageBus {
    struct Refused: Error {}
    func publish(_ messages: [OutgoingMessage]) async throws { throw Refused() }
    func subscribe(_ spec: ConsumerSpec) async throws -> AsyncStream<Delivery> { AsyncStream { $0.finish() } }
    func deadLetter(_ delivery: Delivery, reason: String) async throws {}
    func retry(_ delivery: Delivery, failures: Int, error: String) async throws {}
}

@Suite(.enabled(if: TestEnvironment.runsStorageIntegration))
struct NodeArrayRepositoryTests {
    @Test func arraysMachinesTargetsBackoffsAndDecisionsAreKept() async throws {
        try await withMigratedDatabase { database in
            let repository = database.nodeArrays
            var array = NodeArray(name: "execute", machine: MachineType(cores: 2, memoryMB: 2048), maxCount: 4, provider: "local")
            try await repository.upsert(array, index: 5)
            array.maxCount = 8
            try await repository.upsert(array, index: 6)
            let stored = try #require(try await repository.array(named: "execute"))
            #expect(stored.maxCount == 8 && stored.createIndex == 5 && stored.modifyIndex == 6)

            // A machine whose node is flagged, with what that node's record says joined in.
            let node = Node(id: "n1", name: "execute-1", resources: Resources(cpu: 2000, memoryMB: 2048))
            try await database.nodes.upsertReady(node, index: 7)
            let flag = TerminationRequest(reason: "unhealthy", requestedAt: 9)
            try await database.nodes.requestTermination("n1", flag, index: 8)
            try await repository.save(Machine(name: "execute-1", array: "execute", state: .ready, since: 3, requestedAt: 1, nodeID: "n1"))
            try await repository.save(Machine(name: "execute-2", array: "execute", state: .acquiring, since: 4), reason: "asked")
            let machines = try await repository.machines(array: "execute")
            #expect(machines.map(\.name) == ["execute-1", "execute-2"])
            #expect(machines[0].termination == flag && machines[0].runningAllocations == 0 && machines[0].requestedAt == 1)
            #expect(try await repository.reasons(array: "execute") == ["execute-2": "asked"])

            try await repository.setTarget(ScaleTarget(array: "execute", coreCount: 10, expiresAt: 100))
            try await repository.setTarget(ScaleTarget(array: "execute", count: 3, expiresAt: 200))
            #expect(try await repository.targets() == [ScaleTarget(array: "execute", count: 3, expiresAt: 200)], "a request replaces the earlier one")

            try await repository.setBackoff(ProviderBackoff(array: "execute", failures: 2, until: 50, reason: "no capacity"))
            #expect(try await repository.backoffs().first?.failures == 2)
            try await repository.clearBackoff(array: "execute")
            #expect(try await repository.backoffs().isEmpty)

            let decision = ArrayDecision(array: "execute", target: 2, demandMachines: 2, demandPlacements: 3, requested: 0, active: 0, reason: "r")
            try await repository.recordDecision(decision, at: 10, scaledUp: true)
            try await repository.recordDecision(decision, at: 20, scaledUp: false)
            let recorded = try #require(try await repository.decisions()["execute"])
            #expect(recorded.decision == decision && recorded.at == 20 && recorded.lastScaleUp == 10)

            #expect(try await repository.delete(name: "execute"))
            #expect(try await repository.arrays().isEmpty)
            #expect(try await repository.targets().isEmpty)
        }
    }
}

/// How many times a transaction's body ran.
final class Runs: Sendable {
    let count = Mutex(0)
}

/// Opens once; every wait after that returns at once.
final class Signal: Sendable {
    private let state = Mutex<(open: Bool, waiting: [CheckedContinuation<Void, Never>])>((false, []))

    func send() {
        let waiting = state.withLock { state in
            state.open = true
            defer { state.waiting = [] }
            return state.waiting
        }
        for waiter in waiting { waiter.resume() }
    }

    func wait() async {
        await withCheckedContinuation { continuation in
            let open = state.withLock { state in
                if !state.open { state.waiting.append(continuation) }
                return state.open
            }
            if open { continuation.resume() }
        }
    }
}
