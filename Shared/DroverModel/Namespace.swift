/// A namespace, as Nomad has it: the unit of isolation jobs (and their evaluations and
/// allocations) live in, and that ACL policies grant capabilities in. `default` always exists.
public struct Namespace: Codable, Sendable, Equatable {
    /// Which task drivers jobs of the namespace may use: Nomad's namespace `Capabilities`.
    public struct Capabilities: Codable, Sendable, Equatable {
        /// When not empty, the only drivers a task may name.
        public var enabledTaskDrivers: [String]?
        /// Drivers no task may name.
        public var disabledTaskDrivers: [String]?

        /// Capabilities that allow `enabled` drivers only (every one when empty) and never `disabled`.
        public init(enabledTaskDrivers: [String]? = nil, disabledTaskDrivers: [String]? = nil) {
            self.enabledTaskDrivers = enabledTaskDrivers
            self.disabledTaskDrivers = disabledTaskDrivers
        }

        enum CodingKeys: String, CodingKey, CaseIterable {
            case enabledTaskDrivers = "EnabledTaskDrivers"
            case disabledTaskDrivers = "DisabledTaskDrivers"
        }

        /// Whether a task may use `driver` here.
        public func allows(driver: String) -> Bool {
            if let enabled = enabledTaskDrivers, !enabled.isEmpty, !enabled.contains(driver) { return false }
            return !(disabledTaskDrivers ?? []).contains(driver)
        }
    }

    /// The name: 1-128 letters, digits and hyphens.
    public var name: String
    /// For people.
    public var description: String
    /// Free-form key-value data.
    public var meta: [String: String]?
    /// The drivers its jobs may use.
    public var capabilities: Capabilities?
    /// The cluster's index when it was made (server-owned).
    public var createIndex: Int64
    /// The cluster's index of its last change (server-owned).
    public var modifyIndex: Int64

    /// The namespace every cluster has.
    public static let defaultName = "default"
    /// What `?namespace=` says to list across every namespace the caller may read.
    public static let wildcard = "*"

    /// A namespace `name`.
    public init(
        name: String, description: String = "", meta: [String: String]? = nil, capabilities: Capabilities? = nil, createIndex: Int64 = 0,
        modifyIndex: Int64 = 0
    ) {
        self.name = name
        self.description = description
        self.meta = meta
        self.capabilities = capabilities
        self.createIndex = createIndex
        self.modifyIndex = modifyIndex
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name = "Name"
        case description = "Description"
        case meta = "Meta"
        case capabilities = "Capabilities"
        case createIndex = "CreateIndex"
        case modifyIndex = "ModifyIndex"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decodeIfPresent(String.self, forKey: .name) ?? ""
        description = try container.decodeIfPresent(String.self, forKey: .description) ?? ""
        meta = try container.decodeIfPresent([String: String].self, forKey: .meta)
        capabilities = try container.decodeIfPresent(Capabilities.self, forKey: .capabilities)
        createIndex = try container.decodeIfPresent(Int64.self, forKey: .createIndex) ?? 0
        modifyIndex = try container.decodeIfPresent(Int64.self, forKey: .modifyIndex) ?? 0
    }

    /// Whether `name` is a namespace's name, as Nomad allows them: 1-128 of `[a-zA-Z0-9-]`.
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 128
            && name.utf8.allSatisfy { byte in
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                    || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "-")
            }
    }

    /// Every reason to refuse it, by field.
    public func validate() -> [FieldError] {
        var errors: [FieldError] = []
        if !Self.isValidName(name) { errors.append(FieldError("Name", "must be 1-128 letters, digits and hyphens, got '\(name.prefix(140))'")) }
        if description.utf8.count > 256 { errors.append(FieldError("Description", "is longer than 256 bytes")) }
        if let meta {
            if meta.count > JobLimits.entries { errors.append(FieldError("Meta", "has more than \(JobLimits.entries) entries")) }
            for (key, value) in meta where key.utf8.count > JobLimits.shortString || value.utf8.count > JobLimits.longString {
                errors.append(FieldError("Meta.\(key.prefix(64))", "is too long"))
            }
        }
        for (field, drivers) in [
            ("EnabledTaskDrivers", capabilities?.enabledTaskDrivers), ("DisabledTaskDrivers", capabilities?.disabledTaskDrivers),
        ] {
            guard let drivers else { continue }
            if drivers.count > 64 { errors.append(FieldError("Capabilities.\(field)", "has more than 64 drivers")) }
            for (position, driver) in drivers.enumerated() where driver.isEmpty || driver.utf8.count > JobLimits.shortString {
                errors.append(FieldError("Capabilities.\(field)[\(position)]", "is not a driver name"))
            }
        }
        return errors
    }
}

/// A job's identity: its namespace and its id, unique together (the same id lives in two
/// namespaces side by side). Evaluations and allocations name their job by it.
public struct JobKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The job's namespace.
    public var namespace: String
    /// The job's id, unique in its namespace.
    public var id: String

    /// The job `id` of `namespace`.
    public init(namespace: String = Namespace.defaultName, id: String) {
        self.namespace = namespace
        self.id = id
    }

    /// By namespace, then id.
    public static func < (lhs: JobKey, rhs: JobKey) -> Bool { (lhs.namespace, lhs.id) < (rhs.namespace, rhs.id) }

    /// `namespace/id`, as logs show it.
    public var description: String { "\(namespace)/\(id)" }
}

extension Job {
    /// Its namespace and id.
    public var key: JobKey { JobKey(namespace: namespace ?? Namespace.defaultName, id: id) }

    /// A job of no groups standing for `key`, whose spec is gone: evaluating it stops what it left.
    public init(key: JobKey) {
        self.init(id: key.id, taskGroups: [])
        namespace = key.namespace
    }
}

extension Evaluation {
    /// Its job's namespace and id.
    public var jobKey: JobKey { JobKey(namespace: jobNamespace, id: jobID) }
}

extension Allocation {
    /// Its job's namespace and id.
    public var jobKey: JobKey { JobKey(namespace: jobNamespace, id: jobID) }
}
