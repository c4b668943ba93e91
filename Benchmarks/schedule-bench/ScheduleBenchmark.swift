import ArgumentParser
import DroverCalendar
import DroverControlPlane
import DroverModel
import DroverStorage
import Foundation
import Logging
import PostgresNIO

/// Two figures of time-based jobs:
///
/// - `next`: the next-run calculation of the pure core (``Schedule/next(after:)``), calls per
///   second, for an ISO 8601 interval in UTC, a daily wall-clock interval and a cron expression
///   in Europe/Berlin;
/// - `firing` (with `--postgres-url`): `--jobs` jobs due in the same second, fired by
///   `--replicas` scheduler loops as they run in production (a 200 ms tick, claims with
///   `SKIP LOCKED`): the delay from the due time to the run claimed, and to its batch job
///   registered, median and p99.
@main
struct ScheduleBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schedule-bench", abstract: "Next-run calculations per second, and how late 1,000 jobs due at once fire.")

    @Option(help: "next() calls per schedule.") var calls = 200_000
    @Option(help: "A PostgreSQL URL whose user may create databases: also measure the firing.") var postgresURL: String?
    @Option(help: "Jobs due in the same second.") var jobs = 1_000
    @Option(help: "Scheduler loops firing them.") var replicas = 2

    func validate() throws {
        guard calls > 0, jobs > 0, replicas > 0 else { throw ValidationError("counts must be positive") }
    }

    func run() async throws {
        try measureNext()
        if let postgresURL { try await measureFiring(postgresURL) }
    }

    func percentile(_ values: [Double], _ p: Double) -> Double {
        let sorted = values.sorted()
        return sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded(.up)))]
    }

    func measureNext() throws {
        let schedules = [
            ("interval_utc", try Schedule(parsing: "R/2026-01-01T00:00:00Z/PT1M")),
            ("daily_berlin", try Schedule(parsing: "R/2026-01-01T02:30:00/P1D", timeZone: "Europe/Berlin")),
            ("cron_berlin", try Schedule(parsing: "*/5 9-17 * * mon-fri", timeZone: "Europe/Berlin")),
        ]
        for (name, schedule) in schedules {
            var cursor = Date(timeIntervalSince1970: 1_780_000_000)
            let started = ContinuousClock.now
            for _ in 0..<calls {
                guard let next = schedule.next(after: cursor) else { break }
                cursor = next
            }
            let elapsed = ContinuousClock.now - started
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            print(
                "RESULT next schedule=\(name) calls=\(calls) per_s=\(Int(Double(calls) / seconds)) us_per_call=\(String(format: "%.2f", seconds / Double(calls) * 1e6))"
            )
        }
    }

    func measureFiring(_ url: String) async throws {
        var logger = Logger(label: "schedule-bench")
        logger.logLevel = .error
        let admin = try Database(url: url, maximumConnections: 2, logger: logger)
        let name = "schedule_bench_\(ProcessInfo.processInfo.processIdentifier)"
        guard var components = URLComponents(string: url) else { throw ValidationError("--postgres-url: not a URL") }
        components.path = "/\(name)"
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { await admin.client.run() }
            defer { group.cancelAll() }
            try await admin.client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"))
            do {
                try await firing(try Database(url: components.string ?? url, logger: logger), logger: logger)
            } catch {
                try? await admin.client.query(PostgresQuery(unsafeSQL: "DROP DATABASE \(name) WITH (FORCE)"))
                throw error
            }
            try await admin.client.query(PostgresQuery(unsafeSQL: "DROP DATABASE \(name) WITH (FORCE)"))
        }
    }

    func firing(_ database: Database, logger: Logger) async throws {
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { await database.client.run() }
            defer { group.cancelAll() }
            try await database.migrate()
            // Every job due at one whole second, once all are defined.
            let due = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + 15).rounded(.down))
            let start = due.formatted(Date.ISO8601FormatStyle())
            let definitions = ScheduleService(database: database, replica: "bench", logger: logger)
            for index in 0..<jobs {
                try await definitions.put(ScheduledJob(name: "job\(index)", command: "true", schedule: "R1/\(start)/PT1H"))
            }
            guard Date() < due else { throw ValidationError("defining \(jobs) jobs took past their due time; give fewer --jobs") }
            for replica in 0..<replicas {
                let service = ScheduleService(database: database, replica: "replica-\(replica)", logger: logger)
                group.addTask { try await ScheduleLoop(service: service, tick: .milliseconds(200), logger: logger).run() }
            }
            var claimed: [Double] = []
            var registered: [Double] = []
            while true {
                try await Task.sleep(for: .milliseconds(250))
                claimed = []
                registered = []
                for try await (created, submitted) in try await database.client.query(
                    """
                    SELECT r.created_at - r.due, j.submit_time - r.due FROM drover_schedule_runs r
                    JOIN drover_jobs j ON j.id = r.job_id WHERE r.state = 'pending'
                    """
                ).decode((Int64, Int64).self) {
                    claimed.append(Double(created) / 1e6)
                    registered.append(Double(submitted) / 1e6)
                }
                if registered.count >= jobs || Date() > due.addingTimeInterval(120) { break }
            }
            print(
                "RESULT firing jobs=\(jobs) replicas=\(replicas) fired=\(registered.count) claimed_p50_ms=\(String(format: "%.1f", percentile(claimed, 0.5))) claimed_p99_ms=\(String(format: "%.1f", percentile(claimed, 0.99))) registered_p50_ms=\(String(format: "%.1f", percentile(registered, 0.5))) registered_p99_ms=\(String(format: "%.1f", percentile(registered, 0.99)))"
            )
        }
    }
}
