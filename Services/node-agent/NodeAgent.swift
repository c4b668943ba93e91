import ArgumentParser
import DroverAgent

@main
struct NodeAgent: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node-agent",
        abstract: "Runs on every node: registers it, heartbeats, and runs the allocations placed on it. Holds no database access.")

    @OptionGroup var options: AgentOptions

    func run() async throws { try await Agent(options: options).run() }
}
