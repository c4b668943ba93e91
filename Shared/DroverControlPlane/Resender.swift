import DroverRuntime
public import DroverStorage
public import Foundation
import Logging
public import ServiceLifecycle

/// Finds work that a lost message left undone and sends the message again, so that a lost
/// message costs time, not a job: evaluations still pending long after a scheduler was told of
/// them, and allocations whose node has not acknowledged what is wanted of them (never reported
/// although they should run, still running although they should stop). Every receiver is
/// idempotent, so a message sent again that was only slow changes nothing.
public struct Resender: Sendable {
    let database: Database
    /// How long a notice may go unanswered before it is taken as lost.
    public let age: Duration

    public init(database: Database, age: Duration = .seconds(60)) {
        self.database = database
        self.age = age
    }

    /// One pass: what it sent again, through the outbox.
    public func resend(limit: Int = 500) async throws -> (evaluations: [String], allocations: [String]) {
        try await database.transaction { work in
            let evals = try await work.evaluations.claimStalePending(olderThan: age, limit: limit)
            let allocations = try await work.allocations.claimUnacknowledged(olderThan: age, limit: limit)
            work.send(try evals.map(Messages.pending) + allocations.map(Messages.update))
            return (evals.map(\.id), allocations.map(\.id))
        }
    }
}

/// Runs ``Resender`` every half of its age.
struct ResenderLoop: Service {
    let resender: Resender
    let logger: Logger

    func run() async throws {
        await repeatUntilShutdown(
            every: resender.age / 2, after: resender.age / 2, logger: logger, failure: "Sending again what went unanswered failed"
        ) {
            let sent = try await resender.resend()
            if !sent.evaluations.isEmpty || !sent.allocations.isEmpty {
                logger.warning(
                    "Sent again what went unanswered",
                    metadata: ["evaluations": "\(sent.evaluations)", "allocations": "\(sent.allocations)"])
            }
        }
    }
}
