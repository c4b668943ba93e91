import ArgumentParser
import DroverControlPlane
import Foundation

@main
struct Scheduler: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scheduler", abstract: "Turns pending evaluations into placement plans. Replicas share the work.")

    @OptionGroup var options: ControlPlaneOptions
    @OptionGroup var scheduling: SchedulingOptions

    func run() async throws {
        let plane = try ControlPlane(name: "scheduler", options: options)
        let replica = "\(ProcessInfo.processInfo.hostName):\(ProcessInfo.processInfo.processIdentifier)"
        try await plane.run(defaultPort: 4647, workers: plane.schedulerWorkers(configuration: scheduling.configuration, replica: replica))
    }
}
