import DroverModel
import DroverTestSupport
import Foundation
import Logging
import PostgresNIO
import Testing

@testable import DroverStorage

/// The storage layer's own mechanisms against a real PostgreSQL: composed writes, transactions
/// on their event loop, the watched index, task output.
@Suite(.serialized, .enabled(if: TestEnvironment.runsStorageIntegration))
struct RepositoryTests {
    /// Writes composed into one statement: each clause's values bound in its own place, and
    /// every clause run once.
    @Test func writesComposedIntoOneStatementEachRunWithTheirOwnValues() async throws {
        try await withFreshDatabase { url in
            let database = try Database(url: url, logger: Logger(label: "test"))
            try await withClient(database.client) {
                try await database.migrate()
                var writes = SQLWrites()
                #expect(writes.isEmpty)
                try writes.add("INSERT INTO drover_users (name, spec, modify_index) VALUES (\("ann"), \(#"{"n":1}"#)::jsonb, \(Int64(7)))")
                try writes.add("INSERT INTO drover_users (name, spec, modify_index) VALUES (\("bob"), '{}'::jsonb, \(Int64(8)))")
                try writes.add("DELETE FROM drover_users WHERE name = \("nobody")")
                #expect(writes.query.sql.hasPrefix("WITH w0 AS (") && writes.query.sql.contains("$6") && !writes.query.sql.contains("$7"))
                try await database.transaction { try await writes.run(on: $0.connection, logger: Logger(label: "test")) }
                var rows: [String] = []
                for try await (name, index) in try await database.client.query(
                    "SELECT name, modify_index FROM drover_users ORDER BY name", logger: Logger(label: "test")
                ).decode((String, Int64).self) {
                    rows.append("\(name)=\(index)")
                }
                #expect(rows == ["ann=7", "bob=8"])
            }
        }
    }

    /// A select run with the writes sees what the transaction did before them, and none of them.
    @Test func aSelectRunWithWritesSeesTheDatabaseAsItWasBeforeTheStatement() async throws {
        try await withFreshDatabase { url in
            let database = try Database(url: url, logger: Logger(label: "test"))
            try await withClient(database.client) {
                try await database.migrate()
                let logger = Logger(label: "test")
                let seen = try await database.transaction { work in
                    let connection = work.connection
                    try await connection.query("INSERT INTO drover_users (name, spec, modify_index) VALUES ('ann', '{}', 1)", logger: logger)
                    var writes = SQLWrites()
                    try writes.add("INSERT INTO drover_users (name, spec, modify_index) VALUES (\("bob"), '{}'::jsonb, \(Int64(2)))")
                    var names: [String] = []
                    for try await name in try await writes.run(
                        on: connection, logger: logger, selecting: "SELECT name FROM drover_users WHERE modify_index < \(Int64(10)) ORDER BY name"
                    ).decode(String.self) {
                        names.append(name)
                    }
                    return names
                }
                #expect(seen == ["ann"])
                #expect(try await count("drover_users", in: database) == 2)
            }
        }
    }

    /// A transaction's body runs on its connection's event loop, before and after its queries,
    /// and the connections carry the name they were given.
    @Test func aTransactionRunsOnItsConnectionsEventLoopComputesOffItAndConnectionsCarryTheirName() async throws {
        try await withFreshDatabase { url in
            let database = try Database(url: url, applicationName: "storage-tests", logger: Logger(label: "test"))
            try await withClient(database.client) {
                let (before, after, name) = try await database.transaction { work in
                    let connection = work.connection
                    let before = connection.eventLoop.inEventLoop
                    var name = ""
                    for try await value in try await connection.query(
                        "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()", logger: Logger(label: "test")
                    ).decode(String.self) {
                        name = value
                    }
                    return (before, connection.eventLoop.inEventLoop, name)
                }
                #expect(before && after)
                #expect(name == "storage-tests")
                // What takes long between two queries runs off the loop, and the body comes back to it.
                let (during, back) = try await database.transaction { work in
                    let loop = work.connection.eventLoop
                    let during = await work.compute { loop.inEventLoop }
                    try await work.query("SELECT 1")
                    return (during, loop.inEventLoop)
                }
                #expect(!during && back)
                // A body that throws still comes out as its own error.
                await #expect(throws: BodyFailed.self) {
                    try await database.transaction { _ in throw BodyFailed() }
                }
            }
        }
    }

    /// Indexes come from a sequence, so a transaction may commit with an index below one a
    /// client already holds; a blocking query waiting past that index must still see it.
    @Test func aChangeCommittedWithAnOlderIndexStillMovesTheWatchedIndexPastWhatClientsHold() async throws {
        try await withFreshDatabase { url in
            let database = try Database(url: url, logger: Logger(label: "test"))
            try await withClient(database.client) {
                try await database.migrate()
                // Polling once, at start: from then on only notifications move the watcher.
                let watcher = IndexWatcher(database: database, pollInterval: .seconds(3600))
                let running = Task { try await watcher.run() }
                defer { running.cancel() }
                @Sendable func change() async throws -> Int64 {
                    try await database.transaction { try await $0.nextIndex() }
                }
                // Changes until one is seen: the watcher listens.
                try await withTimeout(.seconds(20), "the watcher hearing a change") {
                    while true {
                        let index = try await change()
                        for _ in 0..<20 where watcher.latest < index { try await Task.sleep(for: .milliseconds(10)) }
                        if watcher.latest >= index { return }
                    }
                }
                // `early` takes its index first and commits last.
                let (released, release) = AsyncStream.makeStream(of: Void.self)
                let (taken, took) = AsyncStream.makeStream(of: Int64.self)
                let early = Task {
                    try await database.transaction { work in
                        took.yield(try await work.nextIndex())
                        for await _ in released { break }
                    }
                }
                var iterator = taken.makeAsyncIterator()
                let earlyIndex = try #require(await iterator.next())
                let lateIndex = try await change()
                #expect(lateIndex > earlyIndex)
                try await withTimeout(.seconds(20), "the later change seen") { while watcher.latest < lateIndex { await Task.yield() } }
                let held = watcher.latest
                release.yield()
                try await early.value
                try await withTimeout(.seconds(20), "the index moving past \(held) once the earlier change commits") {
                    while watcher.latest <= held { try await Task.sleep(for: .milliseconds(10)) }
                }
            }
        }
    }

    @Test func taskOutputIsStoredOnceInOrderWhateverOrderItArrivesInAndCappedOldestFirst() async throws {
        try await withFreshDatabase { url in
            let database = try Database(url: url, logger: Logger(label: "test"))
            try await withClient(database.client) {
                try await database.migrate()
                func chunk(_ offset: Int64, _ text: String) -> TaskOutputChunk {
                    TaskOutputChunk(nodeID: "n1", allocID: "a1", task: "t", stream: .stdout, offset: offset, data: Data(text.utf8))
                }
                // "hello world!" in three pieces: the last first, one twice.
                #expect(try await database.transaction { try await $0.output.append(chunk(6, "world"), cap: 100) })
                let gap = try await database.output.read(allocID: "a1", task: "t", stream: .stdout, from: 0)
                #expect(gap.offset == 6, "nothing before the first chunk that arrived")
                #expect(try await database.transaction { try await $0.output.append(chunk(0, "hello "), cap: 100) })
                #expect(!(try await database.transaction { try await $0.output.append(chunk(0, "hello "), cap: 100) }), "a redelivery is stored once")
                #expect(try await database.transaction { try await $0.output.append(chunk(11, "!"), cap: 100) })
                let all = try await database.output.read(allocID: "a1", task: "t", stream: .stdout, from: 0)
                #expect(all.offset == 0 && String(decoding: all.data, as: UTF8.self) == "hello world!")
                let middle = try await database.output.read(allocID: "a1", task: "t", stream: .stdout, from: 8)
                #expect(middle.offset == 8 && String(decoding: middle.data, as: UTF8.self) == "rld!")
                #expect(
                    try await database.output.info(allocID: "a1", task: "t", stream: .stdout) == .init(startOffset: 0, endOffset: 12))

                // Over the cap the oldest chunks go.
                #expect(try await database.transaction { try await $0.output.append(chunk(12, " and more"), cap: 15) })
                let capped = try await database.output.read(allocID: "a1", task: "t", stream: .stdout, from: 0)
                #expect(capped.offset == 6 && String(decoding: capped.data, as: UTF8.self) == "world! and more")
                #expect(
                    try await database.output.info(allocID: "a1", task: "t", stream: .stdout) == .init(startOffset: 6, endOffset: 21))
            }
        }
    }
}

struct BodyFailed: Error {}
