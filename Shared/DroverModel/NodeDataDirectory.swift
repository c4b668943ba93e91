public import Foundation

/// Where a node agent keeps its state when told nothing (`--data-dir`, `DROVER_NODE_DATA_DIR`):
/// the same place the `drover` commands run on the node look for the agent's token, so that they
/// work on the agent's machine with no flags.
public enum NodeDataDirectory {
    /// For root, `/var/lib/drover/agent`; for anyone else, `$XDG_STATE_HOME/drover/agent`
    /// (`~/.local/state/drover/agent`).
    public static func standard(environment: [String: String] = ProcessInfo.processInfo.environment, isRoot: Bool = geteuid() == 0) -> String {
        if isRoot { return "/var/lib/drover/agent" }
        if let state = environment["XDG_STATE_HOME"], state.hasPrefix("/") { return state + "/drover/agent" }
        return (environment["HOME"] ?? NSHomeDirectory()) + "/.local/state/drover/agent"
    }

    /// The directory `DROVER_NODE_DATA_DIR` names, else ``standard(environment:isRoot:)``.
    public static func configured(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let named = environment["DROVER_NODE_DATA_DIR"], !named.isEmpty { return named }
        return standard(environment: environment)
    }
}
