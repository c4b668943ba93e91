import Testing

@testable import DroverMessaging

@Suite struct ConfirmWindowTests {
    @Test func tagsCountFromOneAndSettleOneByOne() {
        var window = ConfirmWindow<String>()
        #expect(window.append("a") == 1)
        #expect(window.append("b") == 2)
        #expect(window.append("c") == 3)
        #expect(window.settle(tag: 2, multiple: false) == ["b"])
        #expect(window.count == 2)
        #expect(window.settle(tag: 2, multiple: false) == [])
        #expect(window.settle(tag: 1, multiple: false) == ["a"])
        #expect(window.settle(tag: 3, multiple: false) == ["c"])
        #expect(window.isEmpty)
        #expect(window.append("d") == 4)
    }

    @Test func multipleSettlesEverythingUpToTheTag() {
        var window = ConfirmWindow<Int>()
        for value in 1...10 { _ = window.append(value) }
        #expect(window.settle(tag: 4, multiple: false) == [4])
        #expect(window.settle(tag: 6, multiple: true) == [1, 2, 3, 5, 6])
        #expect(window.settle(tag: 99, multiple: true) == [])
        #expect(window.settle(tag: 10, multiple: true) == [7, 8, 9, 10])
        #expect(window.isEmpty)
    }

    @Test func resetReturnsTheUnconfirmedInOrderAndStartsAgainAtOne() {
        var window = ConfirmWindow<Int>()
        for value in 1...5 { _ = window.append(value) }
        _ = window.settle(tag: 2, multiple: false)
        #expect(window.reset() == [1, 3, 4, 5])
        #expect(window.append(6) == 1)
    }

    @Test func staysCorrectAcrossManyTrims() {
        var window = ConfirmWindow<Int>()
        var settled: [Int] = []
        for value in 0..<5000 {
            let tag = window.append(value)
            if value % 3 == 2 { settled += window.settle(tag: tag, multiple: true) }
        }
        settled += window.settle(tag: 5000, multiple: true)
        #expect(settled == Array(0..<5000))
    }

    @Test func fifoPrependsBeforeWhatIsQueued() {
        var fifo = FIFO<Int>()
        fifo.append(contentsOf: [3, 4])
        #expect(fifo.popFirst() == 3)
        fifo.prepend([1, 2])
        #expect(fifo.removeAll() == [1, 2, 4])
        #expect(fifo.isEmpty)
    }
}

@Suite struct AckCoalescerTests {
    @Test func inOrderAcksBecomeOneMultipleAck() {
        var coalescer = AckCoalescer()
        #expect(coalescer.calls(for: [(1, .ack), (2, .ack), (3, .ack)]) == [.ack(3, multiple: true)])
        #expect(coalescer.calls(for: [(4, .ack)]) == [.ack(4, multiple: true)])
    }

    @Test func anAckAheadOfAnUnsettledDeliveryIsSentAloneAtOnce() {
        var coalescer = AckCoalescer()
        #expect(coalescer.calls(for: [(2, .ack), (3, .ack)]) == [.ack(2, multiple: false), .ack(3, multiple: false)])
        // Delivery 1 settles later: 2 and 3 are already acked, so only 1 is left to cover.
        #expect(coalescer.calls(for: [(1, .ack)]) == [.ack(1, multiple: true)])
        #expect(coalescer.calls(for: [(4, .ack)]) == [.ack(4, multiple: true)])
    }

    @Test func requeuesAndRejectsAreSentAloneAndDoNotBlockTheAcksAfterThem() {
        var coalescer = AckCoalescer()
        #expect(coalescer.calls(for: [(1, .ack), (2, .requeue), (3, .ack), (4, .reject)]) == [.requeue(2), .reject(4), .ack(3, multiple: true)])
        #expect(coalescer.calls(for: [(5, .ack)]) == [.ack(5, multiple: true)])
    }

    @Test func aRepeatedOrStaleSettlementSendsNothing() {
        var coalescer = AckCoalescer()
        _ = coalescer.calls(for: [(1, .ack)])
        #expect(coalescer.calls(for: [(1, .ack), (1, .requeue)]) == [])
        _ = coalescer.calls(for: [(3, .ack)])
        #expect(coalescer.calls(for: [(3, .reject)]) == [])
    }
}
