public import DroverModel
public import Foundation
import PostgresNIO

/// ACL policies and tokens. A token's secret is never stored: only its SHA-256 (`secret_hash`),
/// which is what a request's secret is looked up by.
public struct ACLRepository: Sendable {
    let sql: SQLRunner

    init(_ sql: SQLRunner) { self.sql = sql }

    // MARK: Bootstrap

    /// Records that the cluster's ACLs were bootstrapped by the token `accessorID`, if they were
    /// not before. - Returns: whether this call did it; a second call, from any process, gets false.
    public func markBootstrapped(accessorID: String, index: Int64) async throws -> Bool {
        let rows = try await sql.query(
            """
            INSERT INTO drover_acl_bootstrap (accessor_id, index) VALUES (\(accessorID), \(index))
            ON CONFLICT DO NOTHING RETURNING index
            """)
        for try await _ in rows.decode(Int64.self) { return true }
        return false
    }

    // MARK: Policies

    public func upsert(_ policy: ACLPolicy, index: Int64) async throws {
        try await sql.query(
            """
            INSERT INTO drover_acl_policies (name, description, rules, create_index, modify_index)
            VALUES (\(policy.name), \(policy.description), \(policy.rules), \(index), \(index))
            ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, rules = EXCLUDED.rules,
                modify_index = EXCLUDED.modify_index
            """)
    }

    public func policy(named name: String) async throws -> ACLPolicy? {
        try await policies(where: "WHERE name = $1", [name]).first
    }

    /// The policies named in `names` that exist.
    public func policies(named names: [String]) async throws -> [ACLPolicy] {
        guard !names.isEmpty else { return [] }
        return try await policies(where: "WHERE name = ANY($1)", [names])
    }

    public func policies() async throws -> [ACLPolicy] { try await policies(where: "", []) }

    private func policies(where clause: String, _ names: [any PostgresDynamicTypeEncodable & Sendable]) async throws -> [ACLPolicy] {
        var bindings = PostgresBindings()
        for name in names { try bindings.append(name) }
        let query = PostgresQuery(
            unsafeSQL: "SELECT name, description, rules, create_index, modify_index FROM drover_acl_policies \(clause) ORDER BY name",
            binds: bindings)
        var found: [ACLPolicy] = []
        for try await (name, description, rules, created, modified) in try await sql.query(query).decode(
            (String, String, String, Int64, Int64).self)
        {
            found.append(ACLPolicy(name: name, description: description, rules: rules, createIndex: created, modifyIndex: modified))
        }
        return found
    }

    /// - Returns: whether there was such a policy.
    public func deletePolicy(named name: String) async throws -> Bool {
        for try await _ in try await sql.query("DELETE FROM drover_acl_policies WHERE name = \(name) RETURNING name").decode(String.self) {
            return true
        }
        return false
    }

    // MARK: Tokens

    /// Stores `token` (its `secretID` is ignored) under the hash of its secret.
    public func insert(_ token: ACLToken, secretHash: Data) async throws {
        try await sql.query(
            """
            INSERT INTO drover_acl_tokens (accessor_id, secret_hash, name, type, policies, global, create_time, expiration_time,
                create_index, modify_index)
            VALUES (\(token.accessorID), \(secretHash), \(token.name), \(token.type.rawValue), \(token.policies), \(token.global),
                \(token.createTime), \(token.expirationTime), \(token.createIndex), \(token.modifyIndex))
            """)
    }

    /// Changes a token's name and policies. - Returns: whether there was such a token.
    public func update(accessorID: String, name: String, policies: [String], index: Int64) async throws -> Bool {
        for try await _ in try await sql.query(
            """
            UPDATE drover_acl_tokens SET name = \(name), policies = \(policies), modify_index = \(index)
            WHERE accessor_id = \(accessorID) RETURNING accessor_id
            """
        ).decode(String.self) {
            return true
        }
        return false
    }

    public func token(accessorID: String) async throws -> ACLToken? {
        try await tokens(where: "WHERE accessor_id = $1", accessorID).first
    }

    /// The token whose secret hashes to `secretHash`, expired or not.
    public func token(secretHash: Data) async throws -> ACLToken? {
        try await tokens(where: "WHERE secret_hash = $1", secretHash).first
    }

    public func tokens() async throws -> [ACLToken] { try await tokens(where: "", String?.none) }

    private func tokens<Value: PostgresEncodable & Sendable>(where clause: String, _ value: Value?) async throws -> [ACLToken] {
        var bindings = PostgresBindings()
        if let value { try bindings.append(value) }
        let query = PostgresQuery(
            unsafeSQL: """
                SELECT accessor_id, name, type, policies, global, create_time, expiration_time, create_index, modify_index
                FROM drover_acl_tokens \(clause) ORDER BY create_index
                """, binds: bindings)
        var found: [ACLToken] = []
        for try await (accessor, name, type, policies, global, created, expires, createIndex, modifyIndex) in try await sql.query(query).decode(
            (String, String, String, [String], Bool, Date, Date?, Int64, Int64).self)
        {
            found.append(
                ACLToken(
                    accessorID: accessor, name: name, type: ACLToken.Kind(rawValue: type) ?? .client, policies: policies, global: global,
                    createTime: created, expirationTime: expires, createIndex: createIndex, modifyIndex: modifyIndex))
        }
        return found
    }

    /// - Returns: whether there was such a token.
    public func deleteToken(accessorID: String) async throws -> Bool {
        for try await _ in try await sql.query("DELETE FROM drover_acl_tokens WHERE accessor_id = \(accessorID) RETURNING accessor_id")
            .decode(String.self)
        {
            return true
        }
        return false
    }

    /// Removes tokens that expired before `now`. - Returns: how many.
    public func deleteExpired(before now: Date) async throws -> Int {
        var removed = 0
        for try await _ in try await sql.query(
            "DELETE FROM drover_acl_tokens WHERE expiration_time < \(now) RETURNING accessor_id"
        ).decode(String.self) {
            removed += 1
        }
        return removed
    }
}

extension Database {
    public var acl: ACLRepository { ACLRepository(SQLRunner(self)) }
}

extension UnitOfWork {
    public var acl: ACLRepository { ACLRepository(SQLRunner(self)) }
}
