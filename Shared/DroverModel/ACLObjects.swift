public import Foundation

/// An ACL token as Nomad's API shows it. `SecretID` is present only in the answer that created
/// the token (bootstrap or create): secrets are stored hashed and shown once.
public struct ACLToken: Codable, Sendable, Equatable {
    /// What a token may do.
    public enum Kind: String, Codable, Sendable {
        /// What its policies allow.
        case client
        /// Everything.
        case management
    }

    /// The token's public id.
    public var accessorID: String
    /// The secret that authenticates; shown only when the token is made.
    public var secretID: String?
    /// A name for people.
    public var name: String
    /// `client` or `management`.
    public var type: Kind
    /// The policies of a client token.
    public var policies: [String]
    /// The roles of a client token, each granting its policies.
    public var roles: [ACLRoleLink] = []
    /// As Nomad has it; informational (one region).
    public var global: Bool
    /// When it was made.
    public var createTime: Date
    /// When it stops working; never when absent.
    public var expirationTime: Date?
    /// The cluster's index when it was made.
    public var createIndex: Int64
    /// The cluster's index of its last change.
    public var modifyIndex: Int64

    /// A token with every field given.
    public init(
        accessorID: String, secretID: String? = nil, name: String, type: Kind, policies: [String], global: Bool = false, createTime: Date,
        expirationTime: Date? = nil, createIndex: Int64, modifyIndex: Int64
    ) {
        self.accessorID = accessorID
        self.secretID = secretID
        self.name = name
        self.type = type
        self.policies = policies
        self.global = global
        self.createTime = createTime
        self.expirationTime = expirationTime
        self.createIndex = createIndex
        self.modifyIndex = modifyIndex
    }

    enum CodingKeys: String, CodingKey {
        case accessorID = "AccessorID"
        case secretID = "SecretID"
        case name = "Name"
        case type = "Type"
        case policies = "Policies"
        case roles = "Roles"
        case global = "Global"
        case createTime = "CreateTime"
        case expirationTime = "ExpirationTime"
        case createIndex = "CreateIndex"
        case modifyIndex = "ModifyIndex"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        accessorID = try container.decode(String.self, forKey: .accessorID)
        secretID = try container.decodeIfPresent(String.self, forKey: .secretID)
        name = try container.decodeIfPresent(String.self, forKey: .name) ?? ""
        type = try container.decode(Kind.self, forKey: .type)
        policies = try container.decodeIfPresent([String].self, forKey: .policies) ?? []
        roles = try container.decodeIfPresent([ACLRoleLink].self, forKey: .roles) ?? []
        global = try container.decodeIfPresent(Bool.self, forKey: .global) ?? false
        createTime = try ACLTime.decode(container, .createTime) ?? Date(timeIntervalSince1970: 0)
        expirationTime = try ACLTime.decode(container, .expirationTime)
        createIndex = try container.decodeIfPresent(Int64.self, forKey: .createIndex) ?? 0
        modifyIndex = try container.decodeIfPresent(Int64.self, forKey: .modifyIndex) ?? 0
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(accessorID, forKey: .accessorID)
        try container.encodeIfPresent(secretID, forKey: .secretID)
        try container.encode(name, forKey: .name)
        try container.encode(type, forKey: .type)
        try container.encode(policies, forKey: .policies)
        try container.encode(roles, forKey: .roles)
        try container.encode(global, forKey: .global)
        try container.encode(ACLTime.text(createTime), forKey: .createTime)
        try container.encode(expirationTime.map(ACLTime.text), forKey: .expirationTime)
        try container.encode(createIndex, forKey: .createIndex)
        try container.encode(modifyIndex, forKey: .modifyIndex)
    }
}

/// What `POST /v1/acl/token` (create) and `POST /v1/acl/token/:accessor` (update) take: Nomad's
/// fields; `ExpirationTTL` as a duration (`"1h"`) or nanoseconds.
public struct ACLTokenRequest: Decodable, Sendable, Equatable {
    /// The token to update; absent to create one.
    public var accessorID: String?
    /// A name for people.
    public var name: String
    /// `client` or `management`.
    public var type: String
    /// The policies of a client token; they must exist.
    public var policies: [String]
    /// The roles of a client token, by `ID` or `Name`; they must exist.
    public var roles: [ACLRoleLink] = []
    /// As Nomad has it; informational.
    public var global: Bool
    /// How long the token works; for ever when absent.
    public var expirationTTL: Duration?

    /// A request for a token.
    public init(name: String = "", type: String = "client", policies: [String] = [], expirationTTL: Duration? = nil) {
        self.name = name
        self.type = type
        self.policies = policies
        self.global = false
        self.expirationTTL = expirationTTL
    }

    enum CodingKeys: String, CodingKey {
        case accessorID = "AccessorID"
        case name = "Name"
        case type = "Type"
        case policies = "Policies"
        case roles = "Roles"
        case global = "Global"
        case expirationTTL = "ExpirationTTL"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        accessorID = try container.decodeIfPresent(String.self, forKey: .accessorID)
        name = try container.decodeIfPresent(String.self, forKey: .name) ?? ""
        type = try container.decodeIfPresent(String.self, forKey: .type) ?? "client"
        policies = try container.decodeIfPresent([String].self, forKey: .policies) ?? []
        roles = try container.decodeIfPresent([ACLRoleLink].self, forKey: .roles) ?? []
        global = try container.decodeIfPresent(Bool.self, forKey: .global) ?? false
        if let text = try? container.decodeIfPresent(String.self, forKey: .expirationTTL) {
            guard let duration = GoDuration.parse(text) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .expirationTTL, in: container, debugDescription: "'\(text)' is not a duration such as 1h")
            }
            expirationTTL = duration
        } else if let nanoseconds = try container.decodeIfPresent(Int64.self, forKey: .expirationTTL) {
            guard nanoseconds >= 0 else {
                throw DecodingError.dataCorruptedError(forKey: .expirationTTL, in: container, debugDescription: "must not be negative")
            }
            expirationTTL = .nanoseconds(nanoseconds)
        } else {
            expirationTTL = nil
        }
        if expirationTTL == .zero { expirationTTL = nil }
    }
}

/// An ACL policy as Nomad's API shows it: `Rules` is the text of the rules, HCL or JSON.
public struct ACLPolicy: Codable, Sendable, Equatable {
    /// The policy's name: letters, digits and `-`.
    public var name: String
    /// What it is for, in words.
    public var description: String
    /// The rules, HCL or JSON, as Nomad writes them.
    public var rules: String
    /// The cluster's index when it was made.
    public var createIndex: Int64
    /// The cluster's index of its last change.
    public var modifyIndex: Int64

    /// A policy `name` of `rules`.
    public init(name: String, description: String = "", rules: String, createIndex: Int64 = 0, modifyIndex: Int64 = 0) {
        self.name = name
        self.description = description
        self.rules = rules
        self.createIndex = createIndex
        self.modifyIndex = modifyIndex
    }

    enum CodingKeys: String, CodingKey {
        case name = "Name"
        case description = "Description"
        case rules = "Rules"
        case createIndex = "CreateIndex"
        case modifyIndex = "ModifyIndex"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decodeIfPresent(String.self, forKey: .name) ?? ""
        description = try container.decodeIfPresent(String.self, forKey: .description) ?? ""
        rules = try container.decode(String.self, forKey: .rules)
        createIndex = try container.decodeIfPresent(Int64.self, forKey: .createIndex) ?? 0
        modifyIndex = try container.decodeIfPresent(Int64.self, forKey: .modifyIndex) ?? 0
    }
}

/// A policy in a list: Nomad's `ACLPolicyListStub`, without the rules.
public struct ACLPolicyStub: Codable, Sendable, Equatable {
    /// The policy's name.
    public var name: String
    /// What it is for.
    public var description: String
    /// The cluster's index when it was made.
    public var createIndex: Int64
    /// The cluster's index of its last change.
    public var modifyIndex: Int64

    /// The stub of `policy`.
    public init(_ policy: ACLPolicy) {
        name = policy.name
        description = policy.description
        createIndex = policy.createIndex
        modifyIndex = policy.modifyIndex
    }

    enum CodingKeys: String, CodingKey {
        case name = "Name"
        case description = "Description"
        case createIndex = "CreateIndex"
        case modifyIndex = "ModifyIndex"
    }
}

/// A token's link to a role, as Nomad writes it: by `ID` or by `Name` (one is enough on input;
/// both are shown).
public struct ACLRoleLink: Codable, Sendable, Equatable, Hashable {
    /// The role's id.
    public var id: String?
    /// The role's name.
    public var name: String?

    /// A link to the role `id` or the role `name`.
    public init(id: String? = nil, name: String? = nil) {
        self.id = id
        self.name = name
    }

    enum CodingKeys: String, CodingKey {
        case id = "ID"
        case name = "Name"
    }
}

/// An ACL role: a named set of policies that tokens link to, so that a team's grants change in
/// one place (Nomad's `ACLRole`).
public struct ACLRole: Codable, Sendable, Equatable {
    /// A policy the role grants, by name.
    public struct PolicyLink: Codable, Sendable, Equatable, Hashable {
        /// The policy's name.
        public var name: String
        /// A link to the policy `name`.
        public init(name: String) { self.name = name }
        enum CodingKeys: String, CodingKey { case name = "Name" }
    }

    /// The role's id, given when it is made.
    public var id: String
    /// Its name, unique: letters, digits and `-`.
    public var name: String
    /// What it is for.
    public var description: String
    /// The policies it grants; they must exist.
    public var policies: [PolicyLink]
    /// The cluster's index when it was made.
    public var createIndex: Int64
    /// The cluster's index of its last change.
    public var modifyIndex: Int64

    /// A role with every field given.
    public init(id: String = "", name: String, description: String = "", policies: [PolicyLink], createIndex: Int64 = 0, modifyIndex: Int64 = 0) {
        self.id = id
        self.name = name
        self.description = description
        self.policies = policies
        self.createIndex = createIndex
        self.modifyIndex = modifyIndex
    }

    enum CodingKeys: String, CodingKey {
        case id = "ID"
        case name = "Name"
        case description = "Description"
        case policies = "Policies"
        case createIndex = "CreateIndex"
        case modifyIndex = "ModifyIndex"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decodeIfPresent(String.self, forKey: .id) ?? ""
        name = try container.decodeIfPresent(String.self, forKey: .name) ?? ""
        description = try container.decodeIfPresent(String.self, forKey: .description) ?? ""
        policies = try container.decodeIfPresent([PolicyLink].self, forKey: .policies) ?? []
        createIndex = try container.decodeIfPresent(Int64.self, forKey: .createIndex) ?? 0
        modifyIndex = try container.decodeIfPresent(Int64.self, forKey: .modifyIndex) ?? 0
    }
}

/// Times in ACL objects, as Nomad writes them (RFC 3339 with fractional seconds).
enum ACLTime {
    static func text(_ date: Date) -> String { date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)) }

    static func decode<Key: CodingKey>(_ container: KeyedDecodingContainer<Key>, _ key: Key) throws -> Date? {
        guard let text = try container.decodeIfPresent(String.self, forKey: key) else { return nil }
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return date }
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle()) { return date }
        throw DecodingError.dataCorruptedError(forKey: key, in: container, debugDescription: "'\(text)' is not an RFC 3339 time")
    }
}
