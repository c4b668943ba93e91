import ArgumentParser
import DroverModel
import Foundation

struct ScheduleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schedule", abstract: "Time-based and dependent jobs, as Chronos runs them: ISO 8601 or cron schedules, parents, retries.",
        subcommands: [ScheduleAdd.self, ScheduleList.self, ScheduleShow.self, ScheduleRun.self, ScheduleDelete.self, ScheduleGraph.self])
}

struct ScheduleAdd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add", abstract: "Adds a job, or updates the job of that name (its counts are kept).")

    @OptionGroup var api: AddressOptions
    @Option(help: "A Chronos job as JSON, instead of the options below.") var file: String?
    @Option(help: "The job's name.") var name: String?
    @Option(help: "The command, run with /bin/sh -c.") var command: String?
    @Option(help: "R[n]/<start>/<period> (ISO 8601; an empty start is now) or a cron expression.") var schedule: String?
    @Option(name: .customLong("time-zone"), help: "The IANA time zone the schedule is read in (UTC by default).") var timeZone = ""
    @Option(name: .customLong("parent"), help: "A job that must have succeeded first (repeatable), instead of a schedule.") var parents: [String] = []
    @Option(help: "Times a failed run is tried again.") var retries = 2
    @Option(help: "How late a run may still start, as an ISO 8601 duration such as PT60S.") var epsilon = ""
    @Option(name: .customLong("missed"), help: "run-once, skip or catch-up:N: what becomes of runs missed while no scheduler ran.") var missed =
        "run-once"
    @Option(help: "Who is told when a run fails.") var owner = ""

    func run() async throws {
        let data: Data
        if let file {
            guard let read = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
            data = read
        } else {
            guard let name, let command else { throw ValidationError("give --file, or --name and --command with --schedule or --parent") }
            var job = ScheduledJob(name: name, command: command, schedule: schedule ?? "", parents: parents, scheduleTimeZone: timeZone)
            job.retries = retries
            job.epsilon = epsilon
            job.missedRuns = missed
            job.owner = owner
            data = try JSONEncoder().encode(job)
        }
        let job = try JSONDecoder().decode(ScheduledJob.self, from: data)
        _ = try await api.client.raw("POST", "/v1/scheduler/\(job.parents.isEmpty ? "iso8601" : "dependency")", body: data)
        print("Job \(job.name) stored: \(job.parents.isEmpty ? job.schedule : "after \(job.parents.joined(separator: ", "))")")
    }
}

struct ScheduleList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Lists the jobs with their schedules and counts.")

    @OptionGroup var api: AddressOptions
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the API's answer as JSON.") var json = false

    func run() async throws {
        if json { return print(try await api.client.get("/v1/scheduler/jobs", as: RawJSON.self).0.pretty) }
        let (jobs, _) = try await api.client.get("/v1/scheduler/jobs", as: [ScheduledJob].self)
        if jobs.isEmpty { return print("No scheduled jobs") }
        print(
            table(
                ["Name", "Schedule", "Parents", "Disabled", "Successes", "Errors", "Last success", "Last error"],
                jobs.map {
                    [
                        $0.name, $0.schedule.isEmpty ? "-" : $0.schedule, $0.parents.isEmpty ? "-" : $0.parents.joined(separator: ","),
                        String($0.disabled),
                        String($0.successCount), String($0.errorCount), $0.lastSuccess.isEmpty ? "-" : $0.lastSuccess,
                        $0.lastError.isEmpty ? "-" : $0.lastError,
                    ]
                }))
    }
}

struct ScheduleShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Shows a job and its run durations.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "The job's name.") var name: String

    func run() async throws {
        print(try await api.client.get("/v1/scheduler/job/\(pathComponent(name))", as: RawJSON.self).0.pretty)
        let (stats, _) = try await api.client.get("/v1/scheduler/job/stat/\(pathComponent(name))", as: [String: [String: Double]].self)
        let histogram = stats["histogram"] ?? [:]
        let shown = ["count", "median", "75thPercentile", "95thPercentile", "99thPercentile"].map { key in
            "\(key) \(key == "count" ? String(Int(histogram[key] ?? 0)) : String(format: "%.0f ms", histogram[key] ?? 0))"
        }
        print("Runs: " + shown.joined(separator: ", "))
    }
}

struct ScheduleRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Starts a run of a job now, whatever its schedule.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "The job's name.") var name: String

    func run() async throws {
        _ = try await api.client.raw("PUT", "/v1/scheduler/job/\(pathComponent(name))")
        print("Run of \(name) started")
    }
}

struct ScheduleDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Deletes a job (not while others name it as a parent).")

    @OptionGroup var api: AddressOptions
    @Argument(help: "The job's name.") var name: String

    func run() async throws {
        _ = try await api.client.raw("DELETE", "/v1/scheduler/job/\(pathComponent(name))")
        print("Job \(name) deleted")
    }
}

struct ScheduleGraph: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "graph", abstract: "Prints the dependency graph in Graphviz's dot (or CSV).")

    @OptionGroup var api: AddressOptions
    @Flag(help: "Chronos's CSV instead of dot.") var csv = false

    func run() async throws {
        let (data, _) = try await api.client.raw("GET", "/v1/scheduler/graph/\(csv ? "csv" : "dot")")
        print(String(decoding: data, as: UTF8.self), terminator: "")
    }
}
