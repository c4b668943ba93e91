import ArgumentParser
import DroverControlPlane

@main
struct Autoscaler: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "autoscaler", abstract: "Keeps node arrays at their targets by asking a provider for machines.")

    @OptionGroup var options: ControlPlaneOptions

    func run() async throws {
        try await ControlPlane(name: "autoscaler", options: options).run(defaultPort: 4649, workers: [])
    }
}
