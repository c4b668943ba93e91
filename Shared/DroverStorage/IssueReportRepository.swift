public import Foundation
import PostgresNIO

/// Archives nodes uploaded with `drover report-issue`, kept for whoever looks into the issue.
public struct IssueReportRepository: Sendable {
    let sql: SQLRunner

    init(_ sql: SQLRunner) { self.sql = sql }

    public struct Summary: Codable, Sendable, Equatable {
        public var id: String
        public var nodeID: String
        public var createdAt: Date
        public var size: Int64

        enum CodingKeys: String, CodingKey {
            case id = "ID"
            case nodeID = "NodeID"
            case createdAt = "CreatedAt"
            case size = "Size"
        }
    }

    /// Stores `data` from node `nodeID`. - Returns: its id.
    public func store(_ data: Data, nodeID: String) async throws -> Summary {
        let summary = Summary(id: UUID().uuidString.lowercased(), nodeID: nodeID, createdAt: Date(), size: Int64(data.count))
        try await sql.query(
            """
            INSERT INTO drover_issue_reports (id, node_id, created_at, size, data)
            VALUES (\(summary.id), \(nodeID), \(summary.createdAt), \(summary.size), \(data))
            """)
        return summary
    }

    public func list() async throws -> [Summary] {
        var reports: [Summary] = []
        for try await (id, node, created, size) in try await sql.query(
            "SELECT id, node_id, created_at, size FROM drover_issue_reports ORDER BY created_at"
        ).decode((String, String, Date, Int64).self) {
            reports.append(Summary(id: id, nodeID: node, createdAt: created, size: size))
        }
        return reports
    }

    /// The archive with `id`, or nil.
    public func archive(id: String) async throws -> Data? {
        for try await data in try await sql.query("SELECT data FROM drover_issue_reports WHERE id = \(id)")
            .decode(Data.self)
        {
            return data
        }
        return nil
    }
}

extension Database {
    public var issueReports: IssueReportRepository { IssueReportRepository(SQLRunner(self)) }
}
