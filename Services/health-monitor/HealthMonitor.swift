import ArgumentParser
import DroverControlPlane

@main
struct HealthMonitor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health-monitor",
        abstract:
            "Records what nodes report (heartbeats, registrations, allocation states) and marks down the nodes that fall silent. Replicas share the work."
    )

    @OptionGroup var options: ControlPlaneOptions
    @OptionGroup var heartbeats: HeartbeatOptions

    func run() async throws {
        let plane = try ControlPlane(name: "health-monitor", options: options)
        try await plane.run(defaultPort: 4648, workers: plane.healthMonitorWorkers(policy: heartbeats.policy))
    }
}
