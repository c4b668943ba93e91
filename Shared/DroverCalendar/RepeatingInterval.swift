public import Foundation

/// An ISO 8601 repeating interval, as Chronos's `schedule`: `R[n]/<start>/<period>`. `R` alone
/// repeats for ever; an empty start means "when the job is created" (``resolved(now:)``). The
/// start is a date and time (`2026-03-29T01:30:00Z`, `…+02:00`, or without a zone: a wall-clock
/// time in the schedule's time zone).
public struct RepeatingInterval: Sendable, Hashable, CustomStringConvertible {
    /// What the start says.
    public enum Start: Sendable, Hashable {
        /// Empty: the moment the schedule is first resolved.
        case now
        /// With `Z` or an offset: one instant.
        case instant(Date)
        /// Without a zone: a wall-clock time in the schedule's time zone.
        case wallClock(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Double)
    }

    /// Occurrences left; nil repeats for ever. `R0` has none.
    public var repetitions: Int?
    public var start: Start
    public var period: ISO8601Duration

    public init(repetitions: Int?, start: Start, period: ISO8601Duration) {
        self.repetitions = repetitions
        self.start = start
        self.period = period
    }

    /// The longest a count may be: more would outlive any calendar the schedule can reach.
    public static let repetitionLimit = 1_000_000_000

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case shape
        case repetitions
        case start(String)
        case period(String)

        public var description: String {
            switch self {
            case .shape: "must be R[n]/<start>/<period>, such as R/2026-01-01T00:00:00Z/PT1H or R5//P1D"
            case .repetitions: "the repetitions after R must be a whole number from 0 to \(RepeatingInterval.repetitionLimit)"
            case .start(let text): "'\(text)' is not a start such as 2026-01-01T02:30:00Z, 2026-01-01T02:30:00+01:00 or 2026-01-01T02:30:00"
            case .period(let text): "'\(text)' is not a period of at least one second, such as PT30S, PT5M, P1D or P1M"
            }
        }
    }

    /// Parses `text`. - Throws: ``ParseError`` saying which part is wrong.
    public init(parsing text: String) throws(ParseError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].hasPrefix("R") else { throw .shape }
        let count = parts[0].dropFirst()
        if count.isEmpty {
            repetitions = nil
        } else {
            guard count.allSatisfy({ $0.isASCII && $0.isNumber }), count.count <= 10, let value = Int(count), value <= Self.repetitionLimit
            else { throw .repetitions }
            repetitions = value
        }
        if parts[1].isEmpty {
            start = .now
        } else {
            guard let parsed = Self.parseStart(String(parts[1])) else { throw .start(String(parts[1])) }
            start = parsed
        }
        guard let period = ISO8601Duration(String(parts[2])), period.isPositive else { throw .period(String(parts[2])) }
        self.period = period
    }

    /// With an empty start made `now`, to the whole second (as it is written back).
    public func resolved(now: Date) -> RepeatingInterval {
        guard case .now = start else { return self }
        return RepeatingInterval(
            repetitions: repetitions, start: .instant(Date(timeIntervalSince1970: now.timeIntervalSince1970.rounded(.down))), period: period)
    }

    /// The first occurrence, as an instant in `timeZone` (nil for an empty start, or a wall-clock
    /// start no calendar holds).
    public func startDate(in timeZone: TimeZone) -> Date? {
        switch start {
        case .now: return nil
        case .instant(let date): return date
        case .wallClock(let year, let month, let day, let hour, let minute, let second):
            let whole = Int(second)
            let components = DateComponents(
                year: year, month: month, day: day, hour: hour, minute: minute, second: whole,
                nanosecond: Int((second - Double(whole)) * 1e9))
            return Calendar.gregorian(in: timeZone).date(from: components)
        }
    }

    public var description: String {
        let count = repetitions.map(String.init) ?? ""
        let from: String
        switch start {
        case .now: from = ""
        case .instant(let date): from = date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: false))
        case .wallClock(let year, let month, let day, let hour, let minute, let second):
            from = String(format: "%04d-%02d-%02dT%02d:%02d:%02d", year, month, day, hour, minute, Int(second))
        }
        return "R\(count)/\(from)/\(period)"
    }

    /// `YYYY-MM-DDTHH:MM[:SS[.fff]]` and then `Z`, `±HH:MM`, `±HHMM`, `±HH` or nothing.
    static func parseStart(_ text: String) -> Start? {
        let scalars = Array(text.utf8)
        func number(_ range: Range<Int>) -> Int? {
            guard range.upperBound <= scalars.count, range.allSatisfy({ (48...57).contains(scalars[$0]) }) else { return nil }
            return range.reduce(0) { $0 * 10 + Int(scalars[$1] - 48) }
        }
        func isByte(_ index: Int, _ character: Character) -> Bool { index < scalars.count && scalars[index] == character.asciiValue }
        guard let year = number(0..<4), isByte(4, "-"), let month = number(5..<7), isByte(7, "-"), let day = number(8..<10),
            isByte(10, "T"), let hour = number(11..<13), isByte(13, ":"), let minute = number(14..<16)
        else { return nil }
        var index = 16
        var second = 0.0
        if isByte(index, ":") {
            guard let whole = number(17..<19) else { return nil }
            second = Double(whole)
            index = 19
            if isByte(index, ".") {
                var end = index + 1
                while end < scalars.count, (48...57).contains(scalars[end]) { end += 1 }
                guard end > index + 1, end - index <= 10, let fraction = Double("0" + String(decoding: scalars[index..<end], as: UTF8.self)) else {
                    return nil
                }
                second += fraction
                index = end
            }
        }
        guard (1...12).contains(month), (1...31).contains(day), hour <= 23, minute <= 59, second < 60 else { return nil }
        let rest = scalars[index...]
        var offset: Int?
        if rest.isEmpty {
            offset = nil
        } else if rest.count == 1 && isByte(index, "Z") {
            offset = 0
        } else if isByte(index, "+") || isByte(index, "-") {
            let sign = isByte(index, "-") ? -1 : 1
            let digits = rest.dropFirst().filter { $0 != UInt8(ascii: ":") }
            let colonCount = rest.dropFirst().count - digits.count
            guard (digits.count == 2 && colonCount == 0) || (digits.count == 4 && colonCount <= 1),
                digits.allSatisfy({ (48...57).contains($0) })
            else { return nil }
            if colonCount == 1 && !isByte(index + 3, ":") { return nil }
            let values = digits.map { Int($0 - 48) }
            let hours = values[0] * 10 + values[1]
            let minutes = digits.count == 4 ? values[2] * 10 + values[3] : 0
            guard hours <= 18, minutes <= 59 else { return nil }
            offset = sign * (hours * 3600 + minutes * 60)
        } else {
            return nil
        }
        guard let offset else { return .wallClock(year: year, month: month, day: day, hour: hour, minute: minute, second: second) }
        guard let zone = TimeZone(secondsFromGMT: offset) else { return nil }
        let whole = Int(second)
        let components = DateComponents(
            year: year, month: month, day: day, hour: hour, minute: minute, second: whole, nanosecond: Int((second - Double(whole)) * 1e9))
        let calendar = Calendar.gregorian(in: zone)
        // A day the month does not have (2026-02-30) is refused, not rolled over.
        guard let date = calendar.date(from: components), calendar.component(.day, from: date) == day else { return nil }
        return .instant(date)
    }

    // MARK: Occurrences

    /// Occurrence `index` (0 is the start): the start plus `index` periods, the calendar parts
    /// added in `timeZone` on the wall clock (a day later is the same time of day, across a
    /// change of daylight-saving time; a time that does not exist that day is moved past the
    /// gap) and the clock part as elapsed time. Each occurrence is counted from the start, so
    /// `P1M` from January 31 gives February 28 (or 29), March 31, April 30.
    /// - Returns: nil past the repetitions, or beyond what a calendar holds.
    public func occurrence(_ index: Int, in timeZone: TimeZone) -> Date? {
        guard index >= 0, repetitions.map({ index < $0 }) ?? true, let start = startDate(in: timeZone) else { return nil }
        guard index > 0 else { return start }
        let (years, yearsOverflow) = period.years.multipliedReportingOverflow(by: index)
        let (months, monthsOverflow) = period.months.multipliedReportingOverflow(by: index)
        let (days, daysOverflow) = period.days.multipliedReportingOverflow(by: index)
        let seconds = period.seconds * Double(index)
        guard !yearsOverflow, !monthsOverflow, !daysOverflow, years <= 10_000, months <= 120_000, days <= 3_660_000, seconds <= 3.2e11
        else { return nil }
        var date = start
        if !period.isExact {
            guard let moved = Calendar.gregorian(in: timeZone).date(byAdding: DateComponents(year: years, month: months, day: days), to: start)
            else { return nil }
            date = moved
        }
        return date.addingTimeInterval(seconds)
    }

    /// The first occurrence after `date`, or nil when none is left.
    public func next(after date: Date, in timeZone: TimeZone) -> Date? {
        guard let start = startDate(in: timeZone) else { return nil }
        if start > date { return occurrence(0, in: timeZone) }
        // Estimate the index from the period's average length, then step to the exact one.
        let average = period.averageSeconds
        let elapsed = date.timeIntervalSince(start)
        guard average > 0, elapsed / average < 1e12 else { return nil }
        var index = max(0, Int(elapsed / average) - 2)
        // Step back while the estimate overshoots (calendar months are not all alike).
        while index > 0, let earlier = occurrence(index, in: timeZone), earlier > date { index = max(0, index - 4) }
        for _ in 0..<64 {
            guard let candidate = occurrence(index, in: timeZone) else { return nil }
            if candidate > date { return candidate }
            index += 1
        }
        return nil
    }
}

extension ISO8601Duration {
    /// Whether it lasts at least a second (or has a calendar part).
    public var isPositive: Bool { years > 0 || months > 0 || days > 0 || seconds >= 1 }
}

extension Calendar {
    /// The Gregorian calendar in `timeZone`.
    static func gregorian(in timeZone: TimeZone) -> Calendar {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        return calendar
    }
}
