public import DroverModel
public import Foundation
import PostgresNIO

/// Enrollment tokens (one-time, expiring, stored as their SHA-256) and the secrets joined nodes
/// prove themselves with (their SHA-256 only).
public struct EnrollmentRepository: Sendable {
    let sql: SQLRunner

    init(_ sql: SQLRunner) { self.sql = sql }

    public func insert(_ token: EnrollmentToken, secretHash: Data) async throws {
        try await sql.query(
            """
            INSERT INTO drover_enrollment_tokens (accessor_id, secret_hash, node_id, created_at, expires_at)
            VALUES (\(token.accessorID), \(secretHash), \(token.nodeID), \(token.createdAt), \(token.expiresAt))
            """)
    }

    /// Marks the token whose secret hashes to `secretHash` used by `nodeID`, if it is unexpired
    /// at `now`, for that node (or any), and unused, or used by `nodeID` with the join key that
    /// hashes to `joinKeyHash` (a join asked again whose first answer was lost). The first use
    /// records the key; a use without a key can never be repeated.
    /// - Returns: its accessor id, or nil.
    public func use(secretHash: Data, by nodeID: String, joinKeyHash: Data?, at now: Date) async throws -> String? {
        for try await accessor in try await sql.query(
            """
            UPDATE drover_enrollment_tokens SET used_at = coalesce(used_at, \(now)), used_by = \(nodeID),
                join_key_hash = coalesce(join_key_hash, \(joinKeyHash))
            WHERE secret_hash = \(secretHash) AND expires_at > \(now) AND (node_id IS NULL OR node_id = \(nodeID))
                AND (used_at IS NULL OR (used_by = \(nodeID) AND join_key_hash = \(joinKeyHash)))
            RETURNING accessor_id
            """
        ).decode(String.self) {
            return accessor
        }
        return nil
    }

    public func tokens() async throws -> [EnrollmentToken] {
        var found: [EnrollmentToken] = []
        for try await (accessor, node, created, expires, used, usedBy) in try await sql.query(
            "SELECT accessor_id, node_id, created_at, expires_at, used_at, used_by FROM drover_enrollment_tokens ORDER BY created_at"
        ).decode((String, String?, Date, Date, Date?, String?).self) {
            found.append(
                EnrollmentToken(accessorID: accessor, nodeID: node, createdAt: created, expiresAt: expires, usedAt: used, usedBy: usedBy))
        }
        return found
    }

    /// - Returns: whether there was such a token.
    public func delete(accessorID: String) async throws -> Bool {
        for try await _ in try await sql.query(
            "DELETE FROM drover_enrollment_tokens WHERE accessor_id = \(accessorID) RETURNING accessor_id"
        ).decode(String.self) {
            return true
        }
        return false
    }

    /// Records (or replaces) node `nodeID`'s secret.
    public func setNodeSecret(nodeID: String, secretHash: Data, at now: Date) async throws {
        try await sql.query(
            """
            INSERT INTO drover_node_secrets (node_id, secret_hash, created_at) VALUES (\(nodeID), \(secretHash), \(now))
            ON CONFLICT (node_id) DO UPDATE SET secret_hash = EXCLUDED.secret_hash, created_at = EXCLUDED.created_at
            """)
    }

    /// Whether `secretHash` is node `nodeID`'s secret's.
    public func nodeSecretMatches(nodeID: String, secretHash: Data) async throws -> Bool {
        for try await _ in try await sql.query(
            "SELECT 1 FROM drover_node_secrets WHERE node_id = \(nodeID) AND secret_hash = \(secretHash)"
        ).decode(Int32.self) {
            return true
        }
        return false
    }

    public func deleteNodeSecret(nodeID: String) async throws {
        try await sql.query("DELETE FROM drover_node_secrets WHERE node_id = \(nodeID)")
    }
}

extension Database {
    public var enrollment: EnrollmentRepository { EnrollmentRepository(SQLRunner(self)) }
}

extension UnitOfWork {
    public var enrollment: EnrollmentRepository { EnrollmentRepository(SQLRunner(self)) }
}
