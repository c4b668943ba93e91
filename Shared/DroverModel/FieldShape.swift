import Foundation

/// The fields Drover reads from a JSON body, as a tree: what lets the gateway refuse a field it
/// does not implement, by name, instead of accepting it and then ignoring it.
///
/// A field outside the shape is refused unless its value is empty (`null`, `false`, `0`, `""`, an
/// empty list or object, or an object of nothing but empty values): clients such as
/// python-nomad send Nomad's every field, most of them empty, and an empty field asks for nothing.
public indirect enum FieldShape: Sendable {
    /// An object of these keys, each with its own shape.
    case object([String: FieldShape])
    /// A list, each element of this shape.
    case list(FieldShape)
    /// A map of free keys (`Meta`, `Env`), each value of this shape.
    case map(FieldShape)
    /// A value read as a whole.
    case value

    /// An object whose keys are `keys`, leaves unless `nested` gives their shape.
    static func object<Key: CaseIterable & RawRepresentable>(_ keys: Key.Type, _ nested: [String: FieldShape] = [:]) -> FieldShape
    where Key.RawValue == String {
        var fields: [String: FieldShape] = [:]
        for key in keys.allCases { fields[key.rawValue] = nested[key.rawValue] ?? .value }
        for (name, shape) in nested where fields[name] == nil { fields[name] = shape }
        return .object(fields)
    }

    /// A Nomad job as Drover reads it (``Job``).
    public static let job: FieldShape = {
        let constraints = FieldShape.list(.object(Constraint.CodingKeys.self))
        let affinities = FieldShape.list(.object(Affinity.CodingKeys.self))
        let spreads = FieldShape.list(.object(Spread.CodingKeys.self, ["SpreadTarget": .list(.object(SpreadTarget.CodingKeys.self))]))
        let task = FieldShape.object(
            JobTask.CodingKeys.self,
            [
                "Config": .object(TaskConfig.CodingKeys.self), "Env": .map(.value), "Meta": .map(.value), "Constraints": constraints,
                "Resources": .object(Resources.CodingKeys.self), "LogConfig": .object(LogConfig.CodingKeys.self),
            ])
        let group = FieldShape.object(
            TaskGroup.CodingKeys.self,
            [
                "Tasks": .list(task), "Constraints": constraints, "Affinities": affinities, "Spreads": spreads, "Meta": .map(.value),
                "RestartPolicy": .object(RestartPolicy.CodingKeys.self), "ReschedulePolicy": .object(ReschedulePolicy.CodingKeys.self),
            ])
        return .object(
            Job.CodingKeys.self,
            [
                "TaskGroups": .list(group), "Constraints": constraints, "Affinities": affinities, "Spreads": spreads, "Meta": .map(.value),
                "Periodic": .object(Periodic.CodingKeys.self),
            ])
    }()

    /// A Chronos job as Drover reads it (``ScheduledJob``).
    public static let scheduledJob: FieldShape = .object(
        ScheduledJob.CodingKeys.self,
        ["template": job, "environmentVariables": .list(.object(ScheduledJob.EnvironmentVariable.CodingKeys.self)), "constraints": .value])

    /// A node array as Drover reads it (``NodeArray``).
    public static let nodeArray: FieldShape = .object(
        NodeArray.CodingKeys.self, ["MachineType": .object(MachineType.CodingKeys.self, ["Attributes": .map(.value)])])

    /// The targets `POST /v1/autoscale` takes (``TargetRequest``).
    public static let targets: FieldShape = .list(.object(TargetRequest.CodingKeys.self))

    /// A project version as uploaded (``ProjectUpload``).
    public static let projectUpload: FieldShape = .object(ProjectUpload.CodingKeys.self, ["Files": .list(.object(ProjectFile.CodingKeys.self))])

    /// A namespace as Drover reads it (``Namespace``).
    public static let namespace: FieldShape = .object(
        Namespace.CodingKeys.self, ["Meta": .map(.value), "Capabilities": .object(Namespace.Capabilities.CodingKeys.self)])

    /// The fields of a job request outside ``job``: `{"Job": …}` beside the request's own fields
    /// (refused unless empty too), or a bare job, whose paths are rooted at `Job` all the same.
    public static func unsupportedInJobRequest(_ json: Any) -> [FieldError] {
        if let wrapper = json as? [String: Any], wrapper["Job"] != nil { return FieldShape.object(["Job": job]).unsupported(in: json, root: "") }
        return job.unsupported(in: json, root: "Job")
    }

    /// The fields of `json` (a value of `JSONSerialization`) outside this shape whose values are
    /// not empty, each as a ``FieldError`` at its path under `root`.
    public func unsupported(in json: Any, root: String) -> [FieldError] {
        var errors: [FieldError] = []
        collect(json, path: root, into: &errors)
        return errors.sorted { $0.field < $1.field }
    }

    private func collect(_ json: Any, path: String, into errors: inout [FieldError]) {
        guard errors.count < 100 else { return }
        switch self {
        case .value: return
        case .list(let element):
            guard let items = json as? [Any] else { return }
            for (index, item) in items.enumerated() { element.collect(item, path: "\(path)[\(index)]", into: &errors) }
        case .map(let value):
            guard let entries = json as? [String: Any] else { return }
            for (key, item) in entries { value.collect(item, path: Self.join(path, key), into: &errors) }
        case .object(let fields):
            guard let entries = json as? [String: Any] else { return }
            for (key, item) in entries {
                if let field = fields[key] {
                    field.collect(item, path: Self.join(path, key), into: &errors)
                } else if !Self.isEmpty(item) {
                    errors.append(FieldError(Self.join(path, String(key.prefix(128))), "not supported yet"))
                }
            }
        }
    }

    private static func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// Whether `json` asks for nothing: null, false, zero, empty, or made only of such values.
    static func isEmpty(_ json: Any) -> Bool {
        switch json {
        case is NSNull: return true
        case let text as String: return text.isEmpty
        case let number as NSNumber: return number.doubleValue == 0
        case let items as [Any]: return items.isEmpty
        case let entries as [String: Any]: return entries.values.allSatisfy(isEmpty)
        default: return false
        }
    }
}
