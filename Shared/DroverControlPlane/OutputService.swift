public import DroverModel
public import DroverStorage

/// Task output as nodes ship it: each chunk checked (its fields, and that its allocation is on the
/// node that sent it) and stored once, by offset.
public struct OutputService: Sendable {
    public let database: Database
    /// Bytes kept per task and stream; beyond them the oldest go.
    public let cap: Int64

    public init(database: Database, cap: Int64) {
        self.database = database
        self.cap = cap
    }

    /// Stores `chunk`. - Returns: whether it was new.
    /// - Throws: ``ControlPlaneError/invalid(_:)`` for a chunk that is malformed or whose
    ///   allocation is on another node, ``ControlPlaneError/notFound(kind:id:)`` for an unknown
    ///   allocation.
    @discardableResult
    public func append(_ chunk: TaskOutputChunk) async throws -> Bool {
        let errors = chunk.validate()
        guard errors.isEmpty else { throw ControlPlaneError.invalid(errors) }
        return try await database.transaction { work in
            guard let nodeID = try await work.allocations.nodeID(of: chunk.allocID) else {
                throw ControlPlaneError.notFound(kind: "allocation", id: chunk.allocID)
            }
            guard nodeID == chunk.nodeID else {
                throw ControlPlaneError.invalid([FieldError("NodeID", "allocation \(chunk.allocID) is not on node \(chunk.nodeID)")])
            }
            return try await work.output.append(chunk, cap: cap)
        }
    }
}
