public import Logging
public import PostgresNIO

/// Several writes sent to PostgreSQL as one statement, so they cost one round trip.
///
/// Each write is a clause written as a query is (`"INSERT … VALUES (\(value))"`); ``run(on:logger:)``
/// sends them as the data-modifying `WITH` clauses of one statement. PostgreSQL runs every one of
/// them exactly once, and they all see the database as it was before the statement: a clause
/// does not see the rows another one writes, and two clauses must not change the same row.
/// Statement triggers fire as for separate statements.
public struct SQLWrites {
    private var clauses: [String] = []
    private var bindings = PostgresBindings()

    public init() {}

    public var isEmpty: Bool { clauses.isEmpty }

    /// Adds `clause`, an `INSERT`, `UPDATE` or `DELETE` without `RETURNING`.
    public mutating func add(_ clause: SQLClause) throws {
        var sql = clause.segments[0]
        for (bind, segment) in zip(clause.binds, clause.segments.dropFirst()) {
            try bind(&bindings)
            sql += "$\(bindings.count)" + segment
        }
        clauses.append(sql)
    }

    /// The statement: the last clause, with the others before it as `WITH` clauses.
    public var query: PostgresQuery {
        guard let last = clauses.last else { return PostgresQuery(unsafeSQL: "SELECT 1") }
        let with = clauses.dropLast().enumerated().map { "w\($0.offset) AS (\($0.element))" }
        return PostgresQuery(unsafeSQL: (with.isEmpty ? "" : "WITH " + with.joined(separator: ",\n") + "\n") + last, binds: bindings)
    }

    /// Runs every write, in the caller's transaction if `connection` is in one. Does nothing when empty.
    public func run(on connection: PostgresConnection, logger: Logger) async throws {
        guard !clauses.isEmpty else { return }
        try await connection.query(query, logger: logger)
    }

    /// Runs every write with `select`, a `SELECT`, as the statement's last clause, and returns
    /// its rows. Like the writes, the select sees the database as it was before the statement
    /// (after whatever the statements before it in the transaction did): none of these writes.
    public func run(on connection: PostgresConnection, logger: Logger, selecting select: SQLClause) async throws -> PostgresRowSequence {
        var statement = self
        try statement.add(select)
        return try await connection.query(statement.query, logger: logger)
    }
}

/// One write of ``SQLWrites``: SQL text with values interpolated as bound parameters.
public struct SQLClause: ExpressibleByStringInterpolation {
    /// The text around the values: one more than there are values.
    fileprivate var segments: [String]
    fileprivate var binds: [(inout PostgresBindings) throws -> Void]

    public init(stringLiteral value: String) {
        segments = [value]
        binds = []
    }

    public init(stringInterpolation: StringInterpolation) {
        segments = stringInterpolation.segments
        binds = stringInterpolation.binds
    }

    public struct StringInterpolation: StringInterpolationProtocol {
        fileprivate var segments = [""]
        fileprivate var binds: [(inout PostgresBindings) throws -> Void] = []

        public init(literalCapacity: Int, interpolationCount: Int) {}

        public mutating func appendLiteral(_ literal: String) { segments[segments.count - 1] += literal }

        public mutating func appendInterpolation<Value: PostgresThrowingDynamicTypeEncodable>(_ value: Value) {
            binds.append { try $0.append(value) }
            segments.append("")
        }

        public mutating func appendInterpolation<Value: PostgresThrowingDynamicTypeEncodable>(_ value: Value?) {
            binds.append { try $0.append(value) }
            segments.append("")
        }

        /// Text put into the SQL as it is: never a value from outside.
        public mutating func appendInterpolation(unescaped text: String) { segments[segments.count - 1] += text }
    }
}
