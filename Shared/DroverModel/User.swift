/// A user the cluster manages on its nodes (CycleCloud's cluster users), set over the API.
public struct ClusterUser: Codable, Sendable, Equatable {
    /// The user's name on the nodes.
    public var name: String
    /// Its uid; the node picks one when absent.
    public var uid: Int?
    /// Its supplementary groups.
    public var groups: [String]
    /// Its login shell; the node's default when absent.
    public var shell: String?
    /// SSH public keys it may log in with.
    public var sshKeys: [String]
    /// Whether it may use sudo.
    public var sudo: Bool
    /// The node classes it is for; every node when empty.
    public var nodeClasses: [String]

    /// A user with every field given.
    public init(
        name: String, uid: Int? = nil, groups: [String] = [], shell: String? = nil, sshKeys: [String] = [], sudo: Bool = false,
        nodeClasses: [String] = []
    ) {
        self.name = name
        self.uid = uid
        self.groups = groups
        self.shell = shell
        self.sshKeys = sshKeys
        self.sudo = sudo
        self.nodeClasses = nodeClasses
    }

    enum CodingKeys: String, CodingKey {
        case name = "Name"
        case uid = "UID"
        case groups = "Groups"
        case shell = "Shell"
        case sshKeys = "SSHKeys"
        case sudo = "Sudo"
        case nodeClasses = "NodeClasses"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decodeIfPresent(String.self, forKey: .name) ?? ""
        uid = try container.decodeIfPresent(Int.self, forKey: .uid)
        groups = try container.decodeIfPresent([String].self, forKey: .groups) ?? []
        shell = try container.decodeIfPresent(String.self, forKey: .shell)
        sshKeys = try container.decodeIfPresent([String].self, forKey: .sshKeys) ?? []
        sudo = try container.decodeIfPresent(Bool.self, forKey: .sudo) ?? false
        nodeClasses = try container.decodeIfPresent([String].self, forKey: .nodeClasses) ?? []
    }

    /// Whether a node of class `nodeClass` has this user.
    public func applies(toClass nodeClass: String) -> Bool { nodeClasses.isEmpty || nodeClasses.contains(nodeClass) }

    /// Every bad field, as `Name: must …`.
    public func validate() -> [FieldError] {
        var errors: [FieldError] = []
        func isName(_ text: String) -> Bool {
            guard let first = text.first, first.isLowercase || first == "_", text.count <= 32 else { return false }
            return text.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "_" || $0 == "-" }
        }
        if !isName(name) {
            errors.append(FieldError("Name", "must be a POSIX user name: a-z, 0-9, _ and -, starting with a letter or _, at most 32"))
        }
        if let uid, !(1000...60000).contains(uid) { errors.append(FieldError("UID", "must be from 1000 to 60000, got \(uid)")) }
        for (index, group) in groups.enumerated() where !isName(group) {
            errors.append(FieldError("Groups[\(index)]", "'\(group)' is not a POSIX group name"))
        }
        if let shell, !shell.hasPrefix("/") { errors.append(FieldError("Shell", "must be an absolute path, got '\(shell)'")) }
        for (index, key) in sshKeys.enumerated() where !key.hasPrefix("ssh-") && !key.hasPrefix("ecdsa-") {
            errors.append(FieldError("SSHKeys[\(index)]", "is not an OpenSSH public key (ssh-ed25519 …, ssh-rsa …, ecdsa-…)"))
        }
        return errors
    }
}

/// Every user the cluster manages, sent to nodes through the outbox whenever the list changes
/// (`cluster.users.all.updated`) and to a node when it becomes ready (`cluster.users.<nodeId>.updated`).
/// A newer `Index` wins.
public struct ClusterUsers: DroverMessage, Equatable {
    public static let messageType = "cluster.users"
    public static let schemaVersion = 1

    /// Every user the cluster manages.
    public var users: [ClusterUser]
    /// The cluster's index of the last change of them.
    public var index: Int64

    /// The users as of `index`.
    public init(users: [ClusterUser], index: Int64) {
        self.users = users
        self.index = index
    }

    enum CodingKeys: String, CodingKey {
        case users = "Users"
        case index = "Index"
    }
}

extension RoutingKey {
    /// `cluster.users.<nodeId | all>.updated`
    public static func clusterUsers(_ nodeID: String?) -> String { "cluster.users.\(nodeID ?? "all").updated" }
}
