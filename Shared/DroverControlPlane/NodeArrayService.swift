public import DroverModel
public import DroverStorage
public import Foundation

/// Node arrays as operators define them, and the targets `drover autoscale` sets: the writes
/// behind `/v1/nodearray*` and `/v1/autoscale`. The autoscaler reads what they leave.
public struct NodeArrayService: Sendable {
    public let database: Database
    let now: @Sendable () -> Date

    public init(database: Database, now: @escaping @Sendable () -> Date = { Date() }) {
        self.database = database
        self.now = now
    }

    /// Creates or replaces `array`. - Returns: the index of the change.
    /// - Throws: ``ControlPlaneError/invalid(_:)`` with every bad field.
    public func put(_ array: NodeArray) async throws -> Int64 {
        let errors = array.validate()
        guard errors.isEmpty else { throw ControlPlaneError.invalid(errors) }
        let time = now()
        return try await database.transaction { work in
            let index = try await work.nextIndex()
            let existed = try await work.nodeArrays.array(named: array.name) != nil
            try await work.nodeArrays.upsert(array, index: index)
            try await work.note(
                ClusterEvent.Kind.nodeArrayChanged,
                "Node array \(array.name) \(existed ? "updated" : "created"): \(array.minCount)-\(array.maxCount) machines of \(array.machine.cores) cores, provider \(array.provider)",
                level: .info, priority: .low, at: time)
            return index
        }
    }

    /// Removes the array; the autoscaler then takes its machines away.
    public func delete(name: String) async throws -> Int64 {
        let time = now()
        return try await database.transaction { work in
            guard try await work.nodeArrays.delete(name: name) else { throw ControlPlaneError.notFound(kind: "node array", id: name) }
            let index = try await work.nextIndex()
            try await work.note(
                ClusterEvent.Kind.nodeArrayChanged, "Node array \(name) deleted; its machines are taken away", level: .warn, priority: .medium,
                at: time)
            return index
        }
    }

    /// Sets each request's target; each replaces its array's earlier one.
    /// - Throws: ``ControlPlaneError/invalid(_:)`` naming each bad entry, or an unknown array.
    public func setTargets(_ requests: [TargetRequest]) async throws -> [ScaleTarget] {
        let nanoseconds = Int64(now().timeIntervalSince1970 * 1_000_000_000)
        var targets: [ScaleTarget] = []
        var errors: [FieldError] = []
        if requests.isEmpty { errors.append(FieldError("[]", "give at least one target")) }
        if requests.count > 1000 { errors.append(FieldError("[]", "at most 1000 targets")) }
        for (position, request) in requests.enumerated().prefix(1000) {
            do {
                targets.append(try request.target(at: nanoseconds, position: position))
            } catch let failure as ValidationFailure {
                errors += failure.errors
            }
        }
        guard errors.isEmpty else { throw ControlPlaneError.invalid(errors) }
        let time = now()
        return try await database.transaction { work in
            let known = Set(try await work.nodeArrays.arrays().map(\.name))
            let unknown = targets.enumerated().filter { !known.contains($0.element.array) }
            guard unknown.isEmpty else {
                throw ControlPlaneError.invalid(unknown.map { FieldError("[\($0.offset)].Name", "no node array is named '\($0.element.array)'") })
            }
            for target in targets {
                try await work.nodeArrays.setTarget(target)
                let what = target.count.map { "\($0) machine(s)" } ?? "\(target.coreCount ?? 0) core(s)"
                try await work.note(
                    ClusterEvent.Kind.autoscaleTarget, "Autoscale target of \(target.array): \(what)", level: .info, priority: .low, at: time)
            }
            return targets
        }
    }

    /// Every array with its machines, target, backoff and last decision.
    public func status() async throws -> [NodeArrayStatus] {
        let repository = database.nodeArrays
        let arrays = try await repository.arrays()
        let machines = Dictionary(grouping: try await repository.machines(), by: \.array)
        let nanoseconds = Int64(now().timeIntervalSince1970 * 1_000_000_000)
        let targets = try await repository.targets().filter { $0.expiresAt > nanoseconds }
        let backoffs = try await repository.backoffs()
        let decisions = try await repository.decisions()
        return arrays.map { array in
            NodeArrayStatus(
                array: array, machines: machines[array.name] ?? [], target: targets.first { $0.array == array.name },
                backoff: backoffs.first { $0.array == array.name }, lastDecision: decisions[array.name]?.decision,
                decidedAt: decisions[array.name]?.at)
        }
    }

    public func status(name: String) async throws -> NodeArrayStatus {
        guard let found = try await status().first(where: { $0.array.name == name }) else {
            throw ControlPlaneError.notFound(kind: "node array", id: name)
        }
        return found
    }
}
