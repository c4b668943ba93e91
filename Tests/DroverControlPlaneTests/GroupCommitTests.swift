import Synchronization
import Testing

@testable import DroverControlPlane

/// Group commit without a database: what batches form, and how a failing batch is split.
struct GroupCommitTests {
    struct Refused: Error, Equatable { let input: Int }

    /// Records every batch; the first one waits until `release` is signalled, so that calls
    /// made meanwhile pile up behind it.
    final class Writer: Sendable {
        let batches = Mutex<[[Int]]>([])
        let (started, startedContinuation) = AsyncStream.makeStream(of: Void.self)
        let (release, releaseContinuation) = AsyncStream.makeStream(of: Void.self)
        let failBatchesLargerThanOne: Bool

        init(failBatchesLargerThanOne: Bool = false) { self.failBatchesLargerThanOne = failBatchesLargerThanOne }

        func write(_ inputs: [Int]) async throws -> [Result<Int, any Error>] {
            let first = batches.withLock { batches in
                batches.append(inputs)
                return batches.count == 1
            }
            if first {
                startedContinuation.yield()
                for await _ in release { break }
            }
            if failBatchesLargerThanOne && inputs.count > 1 { throw Refused(input: -1) }
            return inputs.map { $0 < 0 ? .failure(Refused(input: $0)) : .success($0 * 10) }
        }
    }

    func outcome(_ commit: GroupCommit<Int, Int>, _ input: Int) async -> Result<Int, Refused> {
        do {
            return .success(try await commit.call(input))
        } catch let refused as Refused {
            return .failure(refused)
        } catch {
            return .failure(Refused(input: .min))
        }
    }

    @Test func callsMadeWhileABatchIsWrittenFormTheNextBatch() async throws {
        let writer = Writer()
        let commit = GroupCommit<Int, Int>(limit: 3) { try await writer.write($0) }
        try await withThrowingTaskGroup(of: (Int, Result<Int, Refused>).self) { group in
            group.addTask { (0, await outcome(commit, 0)) }
            for await _ in writer.started { break }
            // The first batch is being written: these five wait, and form batches of at most 3.
            for input in [1, 2, -3, 4, 5] {
                group.addTask { (input, await outcome(commit, input)) }
            }
            while commit.waitingCount < 5 { await Task.yield() }
            writer.releaseContinuation.yield()
            var outcomes: [Int: Result<Int, Refused>] = [:]
            for try await (input, outcome) in group { outcomes[input] = outcome }
            #expect(outcomes[0] == .success(0) && outcomes[1] == .success(10) && outcomes[5] == .success(50))
            #expect(outcomes[-3] == .failure(Refused(input: -3)), "a refusal reaches its own caller only")
        }
        let batches = writer.batches.withLock { $0 }
        #expect(batches.first == [0])
        #expect(batches.dropFirst().map(\.count) == [3, 2])
        #expect(batches.dropFirst().flatMap { $0 }.sorted() == [-3, 1, 2, 4, 5])
    }

    @Test func aBatchThatThrowsIsWrittenAgainOneCallAtATime() async throws {
        let writer = Writer(failBatchesLargerThanOne: true)
        let commit = GroupCommit<Int, Int>(limit: 10) { try await writer.write($0) }
        try await withThrowingTaskGroup(of: (Int, Int?).self) { group in
            group.addTask { (0, try? await commit.call(0)) }
            for await _ in writer.started { break }
            for input in [1, 2, 3] { group.addTask { (input, try? await commit.call(input)) } }
            while commit.waitingCount < 3 { await Task.yield() }
            writer.releaseContinuation.yield()
            var outputs: [Int: Int] = [:]
            for try await (input, output) in group { outputs[input] = output }
            #expect(outputs == [0: 0, 1: 10, 2: 20, 3: 30])
        }
        let batches = writer.batches.withLock { $0 }
        #expect(batches.count == 5, "the first, the batch of three that threw, and each of its calls again: \(batches)")
        #expect(batches.suffix(3).map(\.count) == [1, 1, 1])
    }
}

/// When a scheduler round leaves the connection's event loop to plan.
struct PlanningPlaceTests {
    @Test(arguments: [(10, 1, false), (200, 1, false), (240, 1, false), (241, 1, true), (5000, 1, true), (10, 30, true), (100, 15, false)])
    func aRoundPlansOffTheLoopOnlyWhenItWouldHoldItLongerThanTheHopCosts(nodes: Int, evaluations: Int, offTheLoop: Bool) {
        #expect(EvaluationService.plansOffTheLoop(nodes: nodes, evaluations: evaluations) == offTheLoop)
    }
}
