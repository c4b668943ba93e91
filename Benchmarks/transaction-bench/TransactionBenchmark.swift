import ArgumentParser
import DroverStorage
import Foundation
import Logging
import PostgresNIO

/// Times transactions of a few round trips each, one after another, two ways against the same
/// server in one run: PostgresNIO's own `PostgresClient.withTransaction`, whose task resumes on
/// the concurrency pool after every query, and ``Database/transaction(_:)``, which keeps the
/// task on the connection's event loop; with `--hop`, also Database.transaction with a hop to the
/// concurrency pool and back in the middle (`UnitOfWork.compute`, as a scheduler round of a large
/// cluster plans). Prints the median time per transaction of each, the first two's ratio and what
/// the hop adds.
@main
struct TransactionBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transaction-bench", abstract: "Latency of short transactions: PostgresNIO's withTransaction against Database.transaction.")

    @Option(help: "The PostgreSQL URL.") var postgresURL =
        ProcessInfo.processInfo.environment["DROVER_POSTGRES_URL"]
        ?? "postgres://drover:drover@127.0.0.1:5440/drover"
    @Option(help: "Transactions per measurement.") var transactions = 1000
    @Flag(help: "Also time Database.transaction with a hop off the event loop and back in the middle (UnitOfWork.compute).")
    var hop = false
    @Option(help: "Statements per transaction, besides BEGIN and COMMIT.") var statements = 5
    @Option(help: "Measurements of each kind; they alternate, and the median is reported.") var rounds = 5
    @Option(help: "Milliseconds to wait between transactions, not counted (0: none); an idle machine wakes its threads more slowly.")
    var pause = 0.0

    func validate() throws {
        guard transactions > 0, rounds > 0 else { throw ValidationError("--transactions and --rounds must be at least 1") }
        guard statements >= 0, pause >= 0 else { throw ValidationError("--statements and --pause must not be negative") }
    }

    func run() async throws {
        var logger = Logger(label: "transaction-bench")
        logger.logLevel = .error
        let database = try Database(url: postgresURL, applicationName: "transaction-bench", logger: logger)
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { await database.client.run() }
            defer { group.cancelAll() }
            // Warm the connection up.
            _ = try await measure(10) { try await database.transaction { try await work($0.connection, logger: logger) } }
            var library: [Double] = []
            var drover: [Double] = []
            var hopping: [Double] = []
            for round in 1...rounds {
                let plain = {
                    try await measure(transactions) {
                        try await database.client.withTransaction(logger: logger) { try await work($0, logger: logger) }
                    }
                }
                let onLoop = { try await measure(transactions) { try await database.transaction { try await work($0.connection, logger: logger) } } }
                // As the scheduler plans: a hop to the concurrency pool and back between two queries.
                let withHop = {
                    try await measure(transactions) {
                        try await database.transaction { unit in
                            try await work(unit.connection, logger: logger, statements: statements / 2)
                            _ = await unit.compute { round }
                            try await work(unit.connection, logger: logger, statements: statements - statements / 2)
                        }
                    }
                }
                // Which goes first turns by round.
                let variants = hop ? 3 : 2
                for variant in 0..<variants {
                    switch (variant + round) % variants {
                    case 0: library.append(try await plain())
                    case 1: drover.append(try await onLoop())
                    default: hopping.append(try await withHop())
                    }
                }
                print(
                    String(format: "round %d: withTransaction %.0f µs, Database.transaction %.0f µs", round, library.last!, drover.last!)
                        + (hop ? String(format: ", with a compute hop %.0f µs", hopping.last!) : ""))
            }
            let (a, b) = (median(library), median(drover))
            print("transaction-bench: \(transactions) transactions of \(statements + 2) round trips, \(pause) ms apart, median of \(rounds) rounds")
            print(String(format: "per transaction: PostgresNIO withTransaction %.0f µs, Database.transaction %.0f µs, ratio %.2f", a, b, a / b))
            if hop {
                print(String(format: "one hop off the event loop and back (UnitOfWork.compute): %+.0f µs a transaction", median(hopping) - b))
            }
        }
    }

    /// One trivial statement per round trip, its row read.
    func work(_ connection: PostgresConnection, logger: Logger, statements count: Int? = nil) async throws {
        for value in 0..<(count ?? statements) {
            for try await _ in try await connection.query("SELECT \(value)::int", logger: logger).decode(Int.self) {}
        }
    }

    /// - Returns: the mean time of one call of `body`, in microseconds; pauses are not counted.
    func measure(_ count: Int, _ body: () async throws -> Void) async throws -> Double {
        let clock = ContinuousClock()
        var total = Duration.zero
        for _ in 0..<count {
            total += try await clock.measure { try await body() }
            if pause > 0 { try await Task.sleep(for: .microseconds(Int(pause * 1000))) }
        }
        return (Double(total.components.seconds) * 1e6 + Double(total.components.attoseconds) / 1e12) / Double(count)
    }

    func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
}
