import ArgumentParser
import AsyncHTTPClient
import DroverControlPlane
import DroverGateway
import DroverMessaging
import DroverStorage
import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// Requests per second on `GET /v1/jobs` through two gateways in one process over one database:
/// one checking an ACL token on every request (a client token holding a read policy, as a
/// read-only user sends), one with ACLs off. Rounds alternate between them so that drift
/// (the database warming, the machine's other load) falls on both; prints each round, the totals
/// and the ratio on/off.
@main
struct ACLBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "acl-bench", abstract: "GET /v1/jobs requests per second with ACLs on and off, side by side.")

    @Option(help: "An empty PostgreSQL database the benchmark may use (env DROVER_BENCH_POSTGRES_URL).")
    var postgresURL = ProcessInfo.processInfo.environment["DROVER_BENCH_POSTGRES_URL"] ?? "postgres://drover:drover@127.0.0.1:5450/drover"
    @Option(help: "Jobs registered before measuring, so that the list has something to list.") var jobs = 20
    @Option(help: "Connections kept busy at once.") var connections = 16
    @Option(help: "Seconds per round.") var seconds = 4.0
    @Option(help: "Rounds per gateway, alternating.") var rounds = 3

    func run() async throws {
        var logger = Logger(label: "acl-bench")
        logger.logLevel = .warning
        let database = try Database(url: postgresURL, applicationName: "acl-bench", logger: logger)
        let watcher = IndexWatcher(database: database)
        let (ports, announce) = AsyncStream.makeStream(of: (Bool, Int).self)
        func application(acl: Bool) throws -> some Service {
            let gateway = Gateway(
                database: database, watcher: watcher, scheduling: .init(), address: "127.0.0.1:0",
                brokerUsers: try BrokerUsers(
                    managementURL: "http://guest:guest@127.0.0.1:1", vhost: "/", exchange: "drover", deadLetterExchange: "drover.dead-letter"),
                brokerEndpoint: try AMQPEndpoint(url: "amqp://guest:guest@127.0.0.1:1"), access: acl ? .init() : .disabled, logger: logger)
            let router = Router()
            gateway.addRoutes(to: router)
            return Application(
                router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "acl-bench"),
                onServerRunning: { channel in announce.yield((acl, channel.localAddress?.port ?? 0)) }, logger: logger)
        }
        let group = ServiceGroup(
            services: [database.client, watcher, try application(acl: true), try application(acl: false)], gracefulShutdownSignals: [],
            logger: logger)
        let running = Task { try await group.run() }
        defer { running.cancel() }
        try await database.migrate()

        var on = 0
        var off = 0
        for await (acl, port) in ports {
            if acl { on = port } else { off = port }
            if on != 0 && off != 0 { break }
        }
        let client = HTTPClient(
            eventLoopGroupProvider: .singleton,
            configuration: .init(connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: connections)))

        let management = try await Self.call(client, "POST", "http://127.0.0.1:\(on)/v1/acl/bootstrap", token: nil)["SecretID"] as? String ?? ""
        _ = try await Self.call(
            client, "POST", "http://127.0.0.1:\(on)/v1/acl/policy/reader", token: management,
            body: #"{"Rules": "namespace \"default\" { policy = \"read\" }"}"#)
        let reader = try await Self.call(client, "POST", "http://127.0.0.1:\(on)/v1/acl/token", token: management, body: #"{"Policies": ["reader"]}"#)
        let token = reader["SecretID"] as? String ?? ""
        for index in 0..<jobs {
            _ = try await Self.call(
                client, "POST", "http://127.0.0.1:\(on)/v1/jobs", token: management,
                body:
                    #"{"Job":{"ID":"bench-\#(index)","Type":"batch","TaskGroups":[{"Name":"g","Tasks":[{"Name":"t","Driver":"raw_exec","Config":{"command":"/bin/true"}}]}]}}"#
            )
        }

        print("acl-bench: GET /v1/jobs (\(jobs) jobs), \(connections) connections, \(rounds) rounds of \(seconds) s each, alternating")
        var totals: [Bool: (requests: Int, seconds: Double)] = [true: (0, 0), false: (0, 0)]
        // A warm-up round for each, not counted.
        _ = try await load(client, port: off, token: nil, seconds: 1)
        _ = try await load(client, port: on, token: token, seconds: 1)
        for round in 1...rounds {
            for acl in [false, true] {
                let (requests, elapsed) = try await load(client, port: acl ? on : off, token: acl ? token : nil, seconds: seconds)
                totals[acl]!.requests += requests
                totals[acl]!.seconds += elapsed
                print(String(format: "round %d  ACL %@  %8.0f req/s", round, acl ? "on " : "off", Double(requests) / elapsed))
            }
        }
        let rateOn = Double(totals[true]!.requests) / totals[true]!.seconds
        let rateOff = Double(totals[false]!.requests) / totals[false]!.seconds
        print(String(format: "RESULT acl_on_req_per_s=%.0f acl_off_req_per_s=%.0f ratio=%.3f", rateOn, rateOff, rateOn / rateOff))
        try await client.shutdown()
        await group.triggerGracefulShutdown()
    }

    /// Keeps `connections` requests in flight for `seconds`. - Returns: how many were answered
    /// (each must be 200) and the time taken.
    func load(_ client: HTTPClient, port: Int, token: String?, seconds: Double) async throws -> (Int, Double) {
        let start = ContinuousClock.now
        let deadline = start + .milliseconds(Int(seconds * 1000))
        let count = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<connections {
                group.addTask {
                    var done = 0
                    var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/jobs")
                    if let token { request.headers.add(name: "X-Nomad-Token", value: token) }
                    while ContinuousClock.now < deadline {
                        let response = try await client.execute(request, timeout: .seconds(10))
                        _ = try await response.body.collect(upTo: 16 << 20)
                        guard response.status == .ok else { throw ValidationError("GET /v1/jobs answered \(response.status)") }
                        done += 1
                    }
                    return done
                }
            }
            return try await group.reduce(0, +)
        }
        let elapsed = start.duration(to: .now)
        return (count, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    static func call(_ client: HTTPClient, _ method: String, _ url: String, token: String?, body: String? = nil) async throws -> [String: Any] {
        var request = HTTPClientRequest(url: url)
        request.method = .init(rawValue: method)
        if let token { request.headers.add(name: "X-Nomad-Token", value: token) }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await client.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 1 << 20)
        guard response.status == .ok else { throw ValidationError("\(method) \(url): \(response.status) \(String(buffer: bytes))") }
        return (try? JSONSerialization.jsonObject(with: Data(buffer: bytes)) as? [String: Any]) ?? [:]
    }
}
