import ArgumentParser
import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Submits `--jobs` small batch jobs (`/bin/true`, count 1) over HTTP to a running Drover and
/// waits until every one has completed. Prints completed jobs per second (first submission to
/// the last allocation's completion, as the control plane recorded it) and the latency from submitting a job to its task starting (the agent's
/// `StartedAt`), p50 and p99.
@main
struct JobBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "job-bench", abstract: "End-to-end job throughput and start latency.")

    @Option(help: "The API's address.") var address = ProcessInfo.processInfo.environment["DROVER_ADDR"] ?? "http://127.0.0.1:4646"
    @Option(help: "An ACL token allowed to submit and read jobs (env DROVER_TOKEN or NOMAD_TOKEN).")
    var token = ProcessInfo.processInfo.environment["DROVER_TOKEN"] ?? ProcessInfo.processInfo.environment["NOMAD_TOKEN"] ?? ""
    @Option(help: "Jobs to submit.") var jobs = 500
    @Option(help: "Submissions in flight at once.") var concurrency = 8
    @Option(help: "Seconds between submissions per client (0: as fast as possible); latency is best read with a pause.") var pause = 0.0

    func run() async throws {
        let prefix = "bench-\(UUID().uuidString.prefix(6).lowercased())"
        let submitted = SubmitTimes()
        let clock = Date()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<concurrency {
                group.addTask {
                    for index in stride(from: worker, to: jobs, by: concurrency) {
                        let id = "\(prefix)-\(index)"
                        let body =
                            #"{"Job":{"ID":"\#(id)","Type":"batch","TaskGroups":[{"Name":"g","Count":1,"Tasks":[{"Name":"t","Driver":"raw_exec","Config":{"command":"/bin/true"},"Resources":{"CPU":100,"MemoryMB":16}}]}]}}"#
                        var request = URLRequest(url: URL(string: "\(address)/v1/jobs")!)
                        request.httpMethod = "POST"
                        request.httpBody = Data(body.utf8)
                        request.setValue(token, forHTTPHeaderField: "X-Nomad-Token")
                        let start = Date()
                        let (_, response) = try await URLSession.shared.data(for: request)
                        guard (response as? HTTPURLResponse)?.statusCode == 200 else { throw ValidationError("submitting \(id) failed: \(response)") }
                        await submitted.set(id, start)
                        if pause > 0 { try await Task.sleep(for: .milliseconds(Int(pause * 1000))) }
                    }
                }
            }
            try await group.waitForAll()
        }
        let submitSeconds = Date().timeIntervalSince(clock)

        // Read the allocations every quarter second until every job's one allocation has
        // finished. A blocking query would return on every change, and at hundreds of changes a
        // second the follower would be a load of its own. Completion is the control plane's own
        // time (the allocation's ModifyTime when it finished), so the polling interval does not
        // show in the figures.
        var started: [String: Date] = [:]
        var finished: [String: Date] = [:]
        while finished.count < jobs {
            try await Task.sleep(for: .milliseconds(250))
            var listing = URLRequest(url: URL(string: "\(address)/v1/allocations")!)
            listing.setValue(token, forHTTPHeaderField: "X-Nomad-Token")
            let (data, _) = try await URLSession.shared.data(for: listing)
            let allocations = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] ?? []
            for allocation in allocations {
                guard let job = allocation["JobID"] as? String, job.hasPrefix(prefix + "-") else { continue }
                if let state = (allocation["TaskStates"] as? [String: Any])?["t"] as? [String: Any], let at = state["StartedAt"] as? String,
                    started[job] == nil, let date = try? Date(at, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true))
                {
                    started[job] = date
                }
                if ["complete", "failed", "lost"].contains(allocation["ClientStatus"] as? String ?? ""), finished[job] == nil,
                    let modified = allocation["ModifyTime"] as? Int64
                {
                    finished[job] = Date(timeIntervalSince1970: Double(modified) / 1e9)
                }
            }
        }
        let lastFinish = finished.values.max() ?? Date()
        let total = lastFinish.timeIntervalSince(clock)
        var latencies: [Double] = []
        for (job, start) in started { if let submit = await submitted.get(job) { latencies.append(start.timeIntervalSince(submit)) } }
        latencies.sort()
        func percentile(_ p: Double) -> Double { latencies.isEmpty ? .nan : latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
        print("job-bench: \(jobs) batch jobs, \(concurrency) clients")
        print(String(format: "  submitted in %.2f s (%.1f jobs/s)", submitSeconds, Double(jobs) / submitSeconds))
        print(String(format: "  completed in %.2f s: %.1f jobs/s", total, Double(jobs) / total))
        print(
            String(format: "  submit -> started: p50 %.1f ms, p99 %.1f ms (n=%d)", percentile(0.5) * 1000, percentile(0.99) * 1000, latencies.count))
        print(
            String(
                format: "RESULT drover_jobs_per_s=%.2f p50_ms=%.1f p99_ms=%.1f", Double(jobs) / total, percentile(0.5) * 1000, percentile(0.99) * 1000
            ))
    }
}

actor SubmitTimes {
    private var times: [String: Date] = [:]
    func set(_ job: String, _ date: Date) { times[job] = date }
    func get(_ job: String) -> Date? { times[job] }
}
