import ArgumentParser
import DroverModel
import Foundation

struct JobCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "job", abstract: "Run, inspect, plan and stop jobs.",
        subcommands: [JobRun.self, JobStatus.self, JobStop.self, JobPlan.self, JobInit.self])
}

/// A job file: `{"Job": {...}}` as `nomad job run -output` writes it, or the job object itself.
func readJobFile(_ path: String) throws -> (job: Job, body: Data) {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw ValidationError("cannot read '\(path)'; give the path of a JSON job file (drover job init writes an example)")
    }
    guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
        throw ValidationError("'\(path)' is not a JSON object; a job file is {\"Job\": {...}} (see drover job init)")
    }
    let jobObject = (object["Job"] as? [String: Any]) ?? object
    let jobData = try JSONSerialization.data(withJSONObject: jobObject)
    do {
        let job = try JSONDecoder().decode(Job.self, from: jobData)
        return (job, try JSONSerialization.data(withJSONObject: ["Job": jobObject]))
    } catch let error as DecodingError {
        throw ValidationError("\(path): \(FieldError(error, root: "Job"))")
    }
}

struct JobRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Submits a job and follows its evaluation until the allocations are placed and, for a batch job, finished.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "The JSON job file.") var file: String
    @Flag(name: .customLong("detach", withSingleDash: true), help: "Print the evaluation id and return at once.") var detach = false
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the API's answer as JSON.") var json = false

    func run() async throws {
        let (job, body) = try readJobFile(file)
        let client = api.client
        do {
            let (result, _) = try await client.send("POST", "/v1/jobs", body: body, as: RawJSON.self)
            let evalID = (result.value as? [String: Any])?["EvalID"] as? String ?? ""
            if json || detach {
                print(json ? result.pretty : "Job registration successful\nEvaluation ID: \(evalID)")
                return
            }
            let code = try await Monitor(client: client).follow(evalID: evalID, job: job)
            if code != 0 { throw ExitCode(code) }
        }
    }
}

/// Follows an evaluation, then the job's allocations, printing what changes, as `nomad job run` does.
struct Monitor {
    let client: APIClient

    /// - Returns: 0 when everything was placed (and, for batch jobs, completed), 2 when
    ///   allocations could not be placed, 1 when a batch allocation failed.
    func follow(evalID: String, job: Job) async throws -> Int32 {
        print("==> Monitoring evaluation \"\(short(evalID))\"")
        print("    Evaluation triggered by job \"\(job.id)\"")
        let eval = try await finished(evalID: evalID)
        let (allocations, _) = try await client.get("/v1/evaluation/\(evalID)/allocations", as: [Allocation].self)
        for allocation in allocations {
            print("    Allocation \"\(short(allocation.id))\" created: node \"\(short(allocation.nodeID))\", group \"\(allocation.taskGroup)\"")
        }
        print("    Evaluation status changed: \"pending\" -> \"\(eval.status.rawValue)\"")
        print("==> Evaluation \"\(short(evalID))\" finished with status \"\(eval.status.rawValue)\"")
        if let failed = eval.failedTGAllocs, !failed.isEmpty {
            print("==> Evaluation \"\(short(evalID))\" had placement failures:")
            printFailures(failed)
            if let blocked = eval.blockedEval {
                print("    Evaluation \"\(short(blocked))\" waiting for additional capacity to place remainder")
            }
            return 2
        }
        return try await followAllocations(job: job, placed: Set(allocations.map(\.id)))
    }

    /// Waits, with blocking queries, until the evaluation is no longer pending.
    func finished(evalID: String) async throws -> Evaluation {
        var index: Int64 = 0
        var eval: Evaluation
        repeat {
            (eval, index) = try await client.get("/v1/evaluation/\(evalID)?index=\(index)&wait=30s", as: Evaluation.self)
        } while eval.status == .pending
        return eval
    }

    private func followAllocations(job: Job, placed: Set<String>) async throws -> Int32 {
        guard !placed.isEmpty else { return 0 }
        let batch = (job.type ?? .service) == .batch
        var index: Int64 = 0
        var reported: [String: Allocation.ClientStatus] = [:]
        while true {
            let (allocations, next) = try await client.get("/v1/job/\(job.id)/allocations?index=\(index)&wait=30s", as: [Allocation].self)
            index = next
            let mine = allocations.filter { placed.contains($0.id) }
            for allocation in mine where reported[allocation.id] != allocation.clientStatus {
                reported[allocation.id] = allocation.clientStatus
                print("    Allocation \"\(short(allocation.id))\" status \"\(allocation.clientStatus.rawValue)\" (\(allocation.name))")
            }
            let done = batch ? mine.allSatisfy(\.clientStatus.isTerminal) : mine.allSatisfy { $0.clientStatus != .pending }
            if done {
                let failed = mine.filter { $0.clientStatus == .failed || $0.clientStatus == .lost }.count
                print("==> Job \"\(job.id)\": \(mine.count - failed) of \(mine.count) allocation(s) \(batch ? "completed" : "running")")
                return failed == 0 ? 0 : 1
            }
        }
    }
}

func printFailures(_ failed: [String: AllocMetric]) {
    for (group, metric) in failed.sorted(by: { $0.key < $1.key }) {
        print("    Task Group \"\(group)\" (failed to place \(metric.coalescedFailures + 1) allocation\(metric.coalescedFailures == 0 ? "" : "s")):")
        if metric.nodesEvaluated == 0 { print("      * No nodes were eligible for evaluation") }
        for (reason, count) in metric.constraintFiltered.sorted(by: { $0.key < $1.key }) {
            print("      * Constraint \"\(reason)\": \(count) nodes excluded by filter")
        }
        for (nodeClass, count) in metric.classFiltered.sorted(by: { $0.key < $1.key }) {
            print("      * Class \"\(nodeClass)\": \(count) nodes excluded by filter")
        }
        for (dimension, count) in metric.dimensionExhausted.sorted(by: { $0.key < $1.key }) {
            print("      * Resources exhausted on \(count) nodes: dimension \"\(dimension)\"")
        }
        for (nodeClass, count) in metric.classExhausted.sorted(by: { $0.key < $1.key }) {
            print("      * Class \"\(nodeClass)\" exhausted on \(count) nodes")
        }
    }
}

struct JobStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Lists jobs, or shows one with its allocations.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "A job id; all jobs when left out.") var id: String?
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the API's answer as JSON.") var json = false

    func run() async throws {
        let client = api.client
        do {
            guard let id else {
                if json { return print(try await client.get("/v1/jobs", as: RawJSON.self).0.pretty) }
                let (jobs, _) = try await client.get("/v1/jobs", as: [Job].self)
                if jobs.isEmpty { return print("No running jobs") }
                print(
                    table(
                        ["ID", "Type", "Priority", "Status", "Submit Date"],
                        jobs.map {
                            [$0.id, $0.jobType.rawValue, String($0.jobPriority), $0.status ?? "", date($0.submitTime)]
                        }))
                return
            }
            if json { return print(try await client.get("/v1/job/\(id)", as: RawJSON.self).0.pretty) }
            let (job, _) = try await client.get("/v1/job/\(id)", as: Job.self)
            let (summary, _) = try await client.get("/v1/job/\(id)/summary", as: JobSummaryBody.self)
            let (allocations, _) = try await client.get("/v1/job/\(id)/allocations", as: [Allocation].self)
            print(
                table(
                    ["ID", "Name", "Type", "Priority", "Datacenters", "Status"],
                    [
                        [
                            job.id, job.jobName, job.jobType.rawValue, String(job.jobPriority), job.jobDatacenters.joined(separator: ","),
                            job.status ?? "",
                        ]
                    ]
                ).split(separator: "\n").map { "\($0)" }.joined(separator: "\n"))
            print("\nSummary")
            print(
                table(
                    ["Task Group", "Queued", "Starting", "Running", "Failed", "Complete", "Lost"],
                    summary.summary.sorted { $0.key < $1.key }.map { group, counts in
                        [group] + [counts.queued, counts.starting, counts.running, counts.failed, counts.complete, counts.lost].map(String.init)
                    }))
            print("\nAllocations")
            print(allocationTable(allocations))
        }
    }
}

struct JobSummaryBody: Decodable {
    struct Counts: Decodable {
        var queued, complete, failed, running, starting, lost: Int
        enum CodingKeys: String, CodingKey {
            case queued = "Queued", complete = "Complete", failed = "Failed", running = "Running", starting = "Starting", lost = "Lost"
        }
    }

    var summary: [String: Counts]
    enum CodingKeys: String, CodingKey { case summary = "Summary" }
}

func allocationTable(_ allocations: [Allocation]) -> String {
    guard !allocations.isEmpty else { return "No allocations placed" }
    return table(
        ["ID", "Node ID", "Task Group", "Version", "Desired", "Status", "Created"],
        allocations.map {
            [
                short($0.id), short($0.nodeID), $0.taskGroup, String($0.jobVersion), $0.desiredStatus.rawValue, $0.clientStatus.rawValue,
                date($0.createTime),
            ]
        })
}

func date(_ nanoseconds: Int64?) -> String {
    guard let nanoseconds, nanoseconds > 0 else { return "-" }
    return Date(timeIntervalSince1970: Double(nanoseconds) / 1e9).formatted(Date.ISO8601FormatStyle())
}

struct JobStop: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stop", abstract: "Stops a job's allocations; -purge also forgets the job.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "The job id.") var id: String
    @Flag(name: .customLong("purge", withSingleDash: true), help: "Remove the job, not only stop it.") var purge = false
    @Flag(name: .customLong("detach", withSingleDash: true), help: "Return without following the evaluation.") var detach = false

    func run() async throws {
        let client = api.client
        do {
            let (result, _) = try await client.send("DELETE", "/v1/job/\(id)?purge=\(purge)", body: nil, as: RawJSON.self)
            let evalID = (result.value as? [String: Any])?["EvalID"] as? String ?? ""
            if detach { return print("Evaluation ID: \(evalID)") }
            print("==> Monitoring evaluation \"\(short(evalID))\"")
            let eval = try await Monitor(client: client).finished(evalID: evalID)
            print("==> Evaluation \"\(short(evalID))\" finished with status \"\(eval.status.rawValue)\"")
        }
    }
}

struct JobPlan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan", abstract: "Shows what running a job would do, and why anything cannot be placed. Changes nothing.")

    @OptionGroup var api: AddressOptions
    @Argument(help: "The JSON job file.") var file: String
    @Flag(name: .customLong("json", withSingleDash: true), help: "Print the API's answer as JSON.") var json = false

    struct Answer: Decodable {
        struct Annotations: Decodable {
            var desiredTGUpdates: [String: DesiredUpdates]
            enum CodingKeys: String, CodingKey { case desiredTGUpdates = "DesiredTGUpdates" }
        }
        struct Placement: Decodable {
            var taskGroup, name, nodeID, nodeName: String
            enum CodingKeys: String, CodingKey { case taskGroup = "TaskGroup", name = "Name", nodeID = "NodeID", nodeName = "NodeName" }
        }
        var annotations: Annotations
        var failedTGAllocs: [String: AllocMetric]?
        var placements: [Placement]
        enum CodingKeys: String, CodingKey { case annotations = "Annotations", failedTGAllocs = "FailedTGAllocs", placements = "Placements" }
    }

    func run() async throws {
        let (job, body) = try readJobFile(file)
        let client = api.client
        do {
            if json { return print(try await client.send("POST", "/v1/job/\(job.id)/plan", body: body, as: RawJSON.self).0.pretty) }
            let (plan, _) = try await client.send("POST", "/v1/job/\(job.id)/plan", body: body, as: Answer.self)
            print("+/- Job: \"\(job.id)\"")
            for (group, updates) in plan.annotations.desiredTGUpdates.sorted(by: { $0.key < $1.key }) {
                let parts = [
                    ("create", updates.place), ("destroy", updates.stop), ("create/destroy update", updates.destructiveUpdate),
                    ("ignore", updates.ignore), ("reschedule", updates.reschedule),
                ].filter { $0.1 > 0 }.map { "\($0.1) \($0.0)" }
                print("    Task Group: \"\(group)\" (\(parts.isEmpty ? "no changes" : parts.joined(separator: ", ")))")
            }
            for placement in plan.placements {
                print("      \(placement.name) -> node \"\(short(placement.nodeID))\" (\(placement.nodeName))")
            }
            print("\nScheduler dry-run:")
            if let failed = plan.failedTGAllocs, !failed.isEmpty {
                print("- WARNING: Failed to place all allocations.")
                printFailures(failed)
                throw ExitCode(1)
            }
            print("- All tasks successfully allocated.")
        }
    }
}

struct JobInit: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "init", abstract: "Writes an example job file to start from.")

    @Argument(help: "Where to write it.") var file = "example.json"

    static let example = """
        {
          "Job": {
            "ID": "example",
            "Type": "batch",
            "Datacenters": ["*"],
            "Constraints": [{"LTarget": "${attr.kernel.name}", "Operand": "=", "RTarget": "linux"}],
            "TaskGroups": [
              {
                "Name": "hello",
                "Count": 3,
                "RestartPolicy": {"Attempts": 1, "Interval": 60000000000, "Delay": 1000000000, "Mode": "fail"},
                "Tasks": [
                  {
                    "Name": "greet",
                    "Driver": "raw_exec",
                    "Config": {"command": "/bin/sh", "args": ["-c", "echo hello from $NOMAD_ALLOC_NAME on $(hostname)"]},
                    "Env": {"GREETING": "hello"},
                    "Resources": {"CPU": 100, "MemoryMB": 64},
                    "KillTimeout": 5000000000
                  }
                ]
              }
            ]
          }
        }

        """

    func run() throws {
        guard !FileManager.default.fileExists(atPath: file) else {
            throw ValidationError("'\(file)' already exists; give another file name or remove it first")
        }
        try Self.example.write(toFile: file, atomically: true, encoding: .utf8)
        print("Example job file written to \(file)")
    }
}
