import DroverModel
import DroverRuntime
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Which allocations an agent that has lost contact with the control plane stops itself
/// (Nomad's `stop_after_client_disconnect`), so that work the control plane has given up on
/// and placed elsewhere does not run twice. A pure decision: the caller says how long it has
/// been silent.
///
/// A group's `StopAfterClientDisconnect` decides when it is set. When it is not, a batch
/// allocation stops once the node would be declared down (its TTL and the grace, as the control
/// plane last said), which is when the control plane replaces it; a service allocation runs on.
enum ClientDisconnect {
    struct Running: Sendable, Equatable {
        var id: String
        var type: JobType
        /// Nanoseconds; nil when the group does not say.
        var stopAfter: Int64?
    }

    /// The ids of `running` to stop after `silence` without an answer from the control plane,
    /// when the node is declared down after `downAfter` of it.
    static func toStop(_ running: [Running], silence: Duration, downAfter: Duration) -> [String] {
        running.filter { allocation in
            let limit: Duration? = allocation.stopAfter.map { .nanoseconds(max($0, 0)) } ?? (allocation.type == .batch ? downAfter : nil)
            guard let limit else { return false }
            return silence > limit
        }.map(\.id)
    }
}

/// When the control plane last answered this agent, and how long it may be silent before the
/// node is declared down.
final class ControlPlaneContact: Sendable {
    private let state: Mutex<(last: ContinuousClock.Instant, downAfter: Duration)>

    /// - Parameter downAfter: until the control plane says otherwise.
    init(downAfter: Duration) {
        state = Mutex((ContinuousClock.now, downAfter))
    }

    /// An answer arrived: contact now, and the node is declared down after `downAfter` of silence.
    func answered(downAfter: Duration) {
        state.withLock { $0 = (ContinuousClock.now, downAfter) }
    }

    var silence: Duration { state.withLock { ContinuousClock.now - $0.last } }
    var downAfter: Duration { state.withLock { $0.downAfter } }
}

/// Once a second, stops the allocations that ``ClientDisconnect`` says must not run on without
/// the control plane, reporting each failed with the reason (the report reaches the control
/// plane once contact is back).
struct DisconnectWatch: Service {
    let contact: ControlPlaneContact
    let manager: AllocationManager
    let logger: Logger

    func run() async throws {
        await repeatUntilShutdown(every: .seconds(1), logger: logger, failure: "Disconnect watch failed") {
            try await check()
        }
    }

    func check() async throws {
        let silence = contact.silence
        for id in ClientDisconnect.toStop(await manager.running(), silence: silence, downAfter: contact.downAfter) {
            let seconds = Int(silence.components.seconds)
            logger.warning("No answer from the control plane; stopping an allocation", metadata: ["alloc_id": "\(id)", "silence_s": "\(seconds)"])
            await manager.stopLocally(id, description: "stopped by its node: no answer from the control plane for \(seconds)s")
        }
    }
}
