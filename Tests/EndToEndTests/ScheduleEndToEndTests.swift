import DroverTestSupport
import Foundation
import Testing

/// Time-based jobs under failover: three scheduler replicas fire a job due every second while two
/// of them are killed with SIGKILL and started again, one after the other, every few seconds.
/// Every due time in the window has exactly one run, and each run's batch job is registered.
@Suite(.enabled(if: TestEnvironment.runsEndToEnd), .timeLimit(.minutes(5)))
struct ScheduleEndToEndTests {
    @Test func aJobDueEverySecondRunsOncePerDueTimeWhileReplicasAreKilled() async throws {
        let seconds = Int(ProcessInfo.processInfo.environment["DROVER_SCHEDULE_CHAOS_SECONDS"] ?? "") ?? 30
        try await Cluster.with { cluster in
            @Sendable func replica(_ name: String) async throws -> RunningService {
                try await RunningService.start("scheduler", name: name, arguments: [], environment: cluster.environment, logDirectory: cluster.logs)
            }
            var replicas = [try await replica("scheduler-b-0"), try await replica("scheduler-c-0")]
            // Catch-up: a due time that a busy machine reaches late still runs, rather than being skipped.
            let body =
                #"{"name": "tick", "command": "true", "owner": "ops", "schedule": "R//PT1S", "missedRuns": "catch-up:100", "cpus": 0.01, "mem": 16}"#
            let created = try await cluster.api.request("POST", "/v1/scheduler/iso8601", body: body)
            #expect(created.status == 204, "\(created.body)")
            let started = ContinuousClock.now
            var round = 0
            while ContinuousClock.now - started < .seconds(seconds) {
                try await Task.sleep(for: .milliseconds(Int.random(in: 1500...3500)))
                let victim = round % replicas.count
                try await replicas[victim].kill()
                round += 1
                replicas[victim] = try await replica("scheduler-\(victim == 0 ? "b" : "c")-\(round)")
            }
            // Stop firing, then look at every due time the window had.
            let disabled =
                #"{"name": "tick", "command": "true", "owner": "ops", "schedule": "R//PT1S", "missedRuns": "catch-up:100", "disabled": true}"#
            #expect(try await cluster.api.request("POST", "/v1/scheduler/iso8601", body: disabled).status == 204)
            let stats = try await runShell(
                """
                psql '\(cluster.url)' -Atc "SELECT count(*), count(DISTINCT due), (max(due) - min(due)) / 1000000000 + 1, \
                count(*) FILTER (WHERE state = 'skipped') FROM drover_schedule_runs WHERE job_name = 'tick'"
                """
            ).trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "|").map { Int($0) ?? -1 }
            #expect(stats.count == 4 && stats[0] >= seconds - 2, "runs: \(stats)")
            #expect(stats[0] == stats[1] && stats[1] == stats[2], "one run per due second, none missing: \(stats)")
            #expect(stats[3] == 0, "none skipped: \(stats)")
            // Each run's batch job is registered, by the replica that fired it or, if that one
            // died first, by whoever settles after the grace period.
            try await eventually("every run's batch job registered", within: .seconds(60)) {
                guard
                    let count = try? await runShell(
                        """
                        psql '\(cluster.url)' -Atc "SELECT count(*) FROM drover_schedule_runs r WHERE r.job_name = 'tick' \
                        AND NOT EXISTS (SELECT 1 FROM drover_jobs j WHERE j.id = r.job_id)"
                        """)
                else { return false }
                return count.trimmingCharacters(in: .whitespacesAndNewlines) == "0"
            }
            for replica in replicas { _ = try await replica.terminate() }
        }
    }

    @Test func theCLIAddsListsRunsChainsAndDeletesJobs() async throws {
        try await Cluster.with { cluster in
            try await cluster.addAgent("cli")
            let mark = cluster.logs.appendingPathComponent("schedule.mark").path
            let add = try await cluster.cli(
                "schedule add --name nightly --command 'echo parent >> \(mark)' --schedule '0 3 * * *' --time-zone Europe/Berlin")
            #expect(add.status == 0 && add.output.contains("Job nightly stored: 0 3 * * *"), "\(add.output)")
            #expect(try await cluster.cli("schedule add --name report --command 'echo child >> \(mark)' --parent nightly").status == 0)
            let bad = try await cluster.cli("schedule add --name broken --command true --schedule '61 * * * *'")
            #expect(bad.status != 0 && bad.output.contains("minute: '61' is not 0-59"), "\(bad.output)")
            let list = try await cluster.cli("schedule list")
            #expect(list.output.contains("nightly") && list.output.contains("0 3 * * *") && list.output.contains("report"), "\(list.output)")
            #expect(try await cluster.cli("schedule graph").output.contains(#""nightly" -> "report";"#))
            // A run by hand, with arguments for it alone (Chronos's ?arguments=); the child follows once it succeeds.
            let run = try await cluster.api.request("PUT", "/v1/scheduler/job/nightly?arguments=again")
            #expect(run.status == 204, "\(run.body)")
            try await eventually("parent then child ran") {
                (try? String(contentsOfFile: mark, encoding: .utf8)) == "parent again\nchild\n"
            }
            #expect(try await cluster.cli("schedule run report").status == 0)
            try await eventually("the child ran by hand") {
                (try? String(contentsOfFile: mark, encoding: .utf8)) == "parent again\nchild\nchild\n"
            }
            try await eventually("the run counted") { (try? await cluster.cli("schedule show nightly"))?.output.contains("Runs: count 1,") == true }
            #expect(try await cluster.cli("schedule delete nightly").status != 0, "report depends on it")
            #expect(try await cluster.cli("schedule delete report").status == 0)
            #expect(try await cluster.cli("schedule delete nightly").status == 0)
            #expect(try await cluster.cli("schedule list").output.contains("No scheduled jobs"))
        }
    }
}
