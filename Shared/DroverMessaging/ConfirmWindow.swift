/// The publishes sent on one connection and not yet confirmed, by delivery tag.
///
/// Tags are consecutive from 1 on each connection, so the entry for tag `t` sits at
/// `t - firstTag` from the head; settled entries are cleared and trimmed off the front.
struct ConfirmWindow<Element> {
    private var entries: [Element?] = []
    private var head = 0
    private var firstTag: UInt64 = 1
    private(set) var count = 0

    var isEmpty: Bool { count == 0 }

    /// Records a publish and returns its delivery tag.
    mutating func append(_ element: Element) -> UInt64 {
        entries.append(element)
        count += 1
        return firstTag + UInt64(entries.count - head - 1)
    }

    /// Removes and returns what a confirm for `tag` covers: that tag alone, or with `multiple`
    /// every unsettled tag up to it, in publish order. Unknown tags settle nothing.
    mutating func settle(tag: UInt64, multiple: Bool) -> [Element] {
        guard tag >= firstTag, let offset = Int(exactly: tag - firstTag), offset < entries.count - head else { return [] }
        let last = offset + head
        guard last < entries.count else { return [] }
        var settled: [Element] = []
        for index in (multiple ? head : last)...last {
            if let element = entries[index] {
                settled.append(element)
                entries[index] = nil
                count -= 1
            }
        }
        trim()
        return settled
    }

    /// Empties the window for a new connection, returning what was unconfirmed in publish order.
    mutating func reset() -> [Element] {
        let remaining = entries[head...].compactMap { $0 }
        self = ConfirmWindow()
        return remaining
    }

    private mutating func trim() {
        while head < entries.count, entries[head] == nil {
            head += 1
            firstTag += 1
        }
        if head > 1024, head * 2 > entries.count {
            entries.removeFirst(head)
            head = 0
        }
    }
}

/// A first-in first-out queue with amortised O(1) removal from the front.
struct FIFO<Element> {
    private var storage: [Element] = []
    private var head = 0

    var isEmpty: Bool { head == storage.count }
    var count: Int { storage.count - head }
    var first: Element? { isEmpty ? nil : storage[head] }

    mutating func append(_ element: Element) { storage.append(element) }
    mutating func append(contentsOf elements: some Sequence<Element>) { storage.append(contentsOf: elements) }

    /// Puts `elements` before everything queued, keeping their order.
    mutating func prepend(_ elements: [Element]) {
        storage = elements + storage[head...]
        head = 0
    }

    mutating func popFirst() -> Element? {
        guard !isEmpty else { return nil }
        let element = storage[head]
        head += 1
        if head > 1024, head * 2 > storage.count {
            storage.removeFirst(head)
            head = 0
        }
        return element
    }

    mutating func removeAll() -> [Element] {
        let all = Array(storage[head...])
        storage = []
        head = 0
        return all
    }
}

/// Turns a consumer's settlements into as few AMQP calls as is safe.
///
/// Delivery tags on a channel count up from 1. Acks for every delivery from the lowest unsettled
/// tag up to some tag `T` become one `basic.ack(T, multiple)`; an ack out of that order is sent
/// on its own at once, so a delivery whose handler is slow never holds back the others' acks
/// (and so the prefetch window). Requeues and rejects are always sent on their own.
struct AckCoalescer {
    enum Call: Equatable {
        case ack(UInt64, multiple: Bool)
        case requeue(UInt64)
        case reject(UInt64)
    }

    private var lowestUnsettled: UInt64 = 1
    private var settledAhead = Set<UInt64>()

    /// The calls that settle `settlements`, in the order to send them.
    mutating func calls(for settlements: [(tag: UInt64, outcome: Delivery.Outcome)]) -> [Call] {
        var calls: [Call] = []
        var acks = Set<UInt64>()
        for (tag, outcome) in settlements where tag >= lowestUnsettled && !settledAhead.contains(tag) {
            settledAhead.insert(tag)
            switch outcome {
            case .ack: acks.insert(tag)
            case .requeue: calls.append(.requeue(tag))
            case .reject: calls.append(.reject(tag))
            }
        }
        var lastAckedInOrder: UInt64?
        while settledAhead.remove(lowestUnsettled) != nil {
            if acks.remove(lowestUnsettled) != nil { lastAckedInOrder = lowestUnsettled }
            lowestUnsettled += 1
        }
        if let lastAckedInOrder { calls.append(.ack(lastAckedInOrder, multiple: true)) }
        calls += acks.sorted().map { .ack($0, multiple: false) }
        return calls
    }
}
