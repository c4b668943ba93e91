public import DroverModel
public import Foundation
import PostgresNIO

/// Task output in PostgreSQL: each stream (allocation, task, stdout or stderr) as chunks keyed
/// by their byte offset, so it stays readable after the allocation and its node are gone.
public struct OutputRepository: Sendable {
    let sql: SQLRunner

    init(_ sql: SQLRunner) { self.sql = sql }

    /// What is known of one stream.
    public struct StreamInfo: Sendable, Equatable {
        /// Where the stored bytes start (above 0 once the size cap has dropped the oldest).
        public var startOffset: Int64
        /// Where they end: the stream's size as far as it has arrived.
        public var endOffset: Int64
    }

    /// Stores `chunk`; a chunk stored before is ignored. Beyond `cap` bytes per stream the oldest
    /// chunks are dropped, as a rotating log file would. Run it in a transaction (`work.output`).
    /// - Returns: whether the chunk was new.
    @discardableResult
    public func append(_ chunk: TaskOutputChunk, cap: Int64, receivedAt: Date = Date()) async throws -> Bool {
        var stored: Int64?
        for try await bytes in try await sql.query(
            """
            WITH added AS (
                INSERT INTO drover_task_output (alloc_id, task, stream, "offset", data, received_at)
                VALUES (\(chunk.allocID), \(chunk.task), \(chunk.stream.rawValue), \(chunk.offset), \(chunk.data), \(receivedAt))
                ON CONFLICT DO NOTHING RETURNING length(data)::bigint AS size
            )
            INSERT INTO drover_task_output_streams AS s (alloc_id, task, stream, node_id, stored_bytes, end_offset, updated_at)
            SELECT \(chunk.allocID), \(chunk.task), \(chunk.stream.rawValue), \(chunk.nodeID), size, \(chunk.offset) + size, \(receivedAt)
            FROM added
            ON CONFLICT (alloc_id, task, stream) DO UPDATE SET stored_bytes = s.stored_bytes + EXCLUDED.stored_bytes,
                end_offset = greatest(s.end_offset, EXCLUDED.end_offset), updated_at = EXCLUDED.updated_at
            RETURNING stored_bytes
            """
        ).decode(Int64.self) {
            stored = bytes
        }
        guard let stored else { return false }
        if stored > cap { try await trim(chunk, cap: cap) }
        return true
    }

    /// Drops the oldest chunks of `chunk`'s stream until at most `cap` bytes are left.
    private func trim(_ chunk: TaskOutputChunk, cap: Int64) async throws {
        var dropped: Int64 = 0
        for try await size in try await sql.query(
            """
            DELETE FROM drover_task_output WHERE alloc_id = \(chunk.allocID) AND task = \(chunk.task) AND stream = \(chunk.stream.rawValue)
                AND "offset" <= (
                    SELECT max("offset") FROM (
                        SELECT "offset", sum(length(data)) OVER (ORDER BY "offset" DESC) AS tail FROM drover_task_output
                        WHERE alloc_id = \(chunk.allocID) AND task = \(chunk.task) AND stream = \(chunk.stream.rawValue)
                    ) newest WHERE tail > \(cap))
            RETURNING length(data)::bigint
            """
        ).decode(Int64.self) {
            dropped += size
        }
        try await sql.query(
            """
            UPDATE drover_task_output_streams SET stored_bytes = stored_bytes - \(dropped)
            WHERE alloc_id = \(chunk.allocID) AND task = \(chunk.task) AND stream = \(chunk.stream.rawValue)
            """)
    }

    /// The stream's extent; nil when nothing of it has arrived.
    public func info(allocID: String, task: String, stream: TaskOutputChunk.Stream) async throws -> StreamInfo? {
        for try await (start, end) in try await sql.query(
            """
            SELECT coalesce((SELECT min("offset") FROM drover_task_output WHERE alloc_id = s.alloc_id AND task = s.task AND stream = s.stream),
                s.end_offset), s.end_offset
            FROM drover_task_output_streams s WHERE alloc_id = \(allocID) AND task = \(task) AND stream = \(stream.rawValue)
            """
        ).decode((Int64, Int64).self) {
            return StreamInfo(startOffset: start, endOffset: end)
        }
        return nil
    }

    /// The tasks with stored output for `allocID`.
    public func tasks(allocID: String) async throws -> [String] {
        var tasks: Set<String> = []
        for try await task in try await sql.query(
            "SELECT task FROM drover_task_output_streams WHERE alloc_id = \(allocID)"
        ).decode(String.self) {
            tasks.insert(task)
        }
        return tasks.sorted()
    }

    /// Up to about `limit` bytes of the stream from `offset` on, in order, stopping at a gap (a
    /// chunk that has not arrived yet).
    /// - Returns: the offset of the first byte returned (above `offset` when older bytes were
    ///   dropped) and the bytes.
    public func read(
        allocID: String, task: String, stream: TaskOutputChunk.Stream, from offset: Int64, limit: Int = 1 << 20
    ) async throws -> (offset: Int64, data: Data) {
        var result = Data()
        var start: Int64?
        var next: Int64 = offset
        for try await (chunkOffset, data) in try await sql.query(
            """
            SELECT "offset", data FROM drover_task_output
            WHERE alloc_id = \(allocID) AND task = \(task) AND stream = \(stream.rawValue) AND "offset" + length(data) > \(offset)
            ORDER BY "offset" LIMIT \(max(1, limit / 4096 + 2))
            """
        ).decode((Int64, Data).self) {
            if start == nil {
                start = max(offset, chunkOffset)
                next = start!
            }
            // Read every row to the end; bytes are taken only while they continue without a gap.
            guard chunkOffset <= next, result.count < limit else { continue }
            let skip = Int(next - chunkOffset)
            guard skip < data.count else { continue }
            result.append(data.dropFirst(skip))
            next = chunkOffset + Int64(data.count)
        }
        return (start ?? offset, result)
    }

    /// Deletes output that arrived before `age` ago. - Returns: how many chunks.
    @discardableResult
    public func prune(olderThan age: Duration, now: Date = Date()) async throws -> Int {
        let cutoff = now.addingTimeInterval(-Double(age.components.seconds))
        var count = 0
        for try await _ in try await sql.query(
            "DELETE FROM drover_task_output WHERE received_at < \(cutoff) RETURNING 1"
        ).decode(Int.self) {
            count += 1
        }
        try await sql.query("DELETE FROM drover_task_output_streams WHERE updated_at < \(cutoff)")
        return count
    }
}

extension Database {
    public var output: OutputRepository { OutputRepository(SQLRunner(self)) }
}

extension UnitOfWork {
    public var output: OutputRepository { OutputRepository(SQLRunner(self)) }
}
