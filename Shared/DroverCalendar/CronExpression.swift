public import Foundation

/// A cron expression, as Nomad's periodic jobs take one: five fields (minute, hour, day of
/// month, month, day of week) of `*`, numbers, names (`jan`, `mon`), ranges, steps and lists,
/// or one of `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`), `@hourly`.
/// When both day fields are restricted, a day matching either runs (as Vixie cron).
public struct CronExpression: Sendable, Hashable, CustomStringConvertible {
    public let minutes: Set<Int>
    public let hours: Set<Int>
    public let daysOfMonth: Set<Int>
    public let months: Set<Int>
    /// 0 is Sunday (7 is read as 0).
    public let daysOfWeek: Set<Int>
    let daysOfMonthRestricted: Bool
    let daysOfWeekRestricted: Bool
    public let description: String

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public var description: String
    }

    static let macros = [
        "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0", "@daily": "0 0 * * *",
        "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
    ]
    static let monthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    static let dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

    /// Parses `text`. - Throws: ``ParseError`` naming the field and why.
    public init(parsing text: String) throws(ParseError) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard trimmed.utf8.count <= 256 else { throw ParseError(description: "a cron expression is at most 256 characters") }
        let expanded: String
        if trimmed.hasPrefix("@") {
            guard let macro = Self.macros[trimmed.lowercased()] else {
                throw ParseError(description: "'\(trimmed)' is not one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly")
            }
            expanded = macro
        } else {
            expanded = trimmed
        }
        let fields = expanded.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard fields.count == 5 else {
            throw ParseError(description: "'\(trimmed)' has \(fields.count) field(s); give five: minute hour day-of-month month day-of-week")
        }
        minutes = try Self.field(fields[0], "minute", 0...59, names: [])
        hours = try Self.field(fields[1], "hour", 0...23, names: [])
        daysOfMonth = try Self.field(fields[2], "day of month", 1...31, names: [])
        months = try Self.field(fields[3], "month", 1...12, names: Self.monthNames, firstName: 1)
        daysOfWeek = Set(try Self.field(fields[4], "day of week", 0...7, names: Self.dayNames, firstName: 0).map { $0 == 7 ? 0 : $0 })
        daysOfMonthRestricted = !fields[2].hasPrefix("*")
        daysOfWeekRestricted = !fields[4].hasPrefix("*")
        description = trimmed
    }

    /// One field: a comma-separated list of `*`, `N`, `N-M`, each optionally `/step`.
    static func field(_ text: String, _ name: String, _ range: ClosedRange<Int>, names: [String], firstName: Int = 0) throws(ParseError)
        -> Set<Int>
    {
        func value(_ word: Substring) throws(ParseError) -> Int {
            if let number = Int(word), word.allSatisfy({ $0.isASCII && $0.isNumber }), range.contains(number) { return number }
            if let index = names.firstIndex(of: word.lowercased()) { return index + firstName }
            throw ParseError(description: "\(name): '\(word)' is not \(range.lowerBound)-\(range.upperBound)\(names.isEmpty ? "" : " or a name")")
        }
        var values: Set<Int> = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let pieces = item.split(separator: "/", omittingEmptySubsequences: false)
            guard !item.isEmpty, pieces.count <= 2 else { throw ParseError(description: "\(name): '\(item)' is not a value, range or step") }
            var step = 1
            if pieces.count == 2 {
                guard let parsed = Int(pieces[1]), pieces[1].allSatisfy({ $0.isASCII && $0.isNumber }), parsed >= 1, parsed <= range.upperBound + 1
                else { throw ParseError(description: "\(name): the step in '\(item)' must be 1-\(range.upperBound + 1)") }
                step = parsed
            }
            let bounds: ClosedRange<Int>
            if pieces[0] == "*" {
                bounds = range
            } else if let dash = pieces[0].firstIndex(of: "-") {
                let low = try value(pieces[0][..<dash])
                let high = try value(pieces[0][pieces[0].index(after: dash)...])
                guard low <= high else { throw ParseError(description: "\(name): the range '\(pieces[0])' runs backwards") }
                bounds = low...high
            } else {
                let single = try value(pieces[0])
                // `N/step` runs from N to the end, as Vixie cron.
                bounds = pieces.count == 2 ? single...range.upperBound : single...single
            }
            values.formUnion(stride(from: bounds.lowerBound, through: bounds.upperBound, by: step))
        }
        return values
    }

    /// Whether `day` (of month), `month` and `weekday` (0 Sunday) may run.
    func matches(day: Int, month: Int, weekday: Int) -> Bool {
        guard months.contains(month) else { return false }
        if daysOfMonthRestricted && daysOfWeekRestricted { return daysOfMonth.contains(day) || daysOfWeek.contains(weekday) }
        return daysOfMonth.contains(day) && daysOfWeek.contains(weekday)
    }

    /// The first time after `date` that matches, on the wall clock of `timeZone`. A matching
    /// time that does not exist that day (skipped by a change to daylight-saving time) runs
    /// once, moved past the gap; one that happens twice (the change back) runs once, the first
    /// time. - Returns: nil if nothing matches within 10 years (`0 0 30 2 *`).
    public func next(after date: Date, in timeZone: TimeZone) -> Date? {
        let calendar = Calendar.gregorian(in: timeZone)
        let firstDay = calendar.startOfDay(for: date)
        let sortedHours = hours.sorted()
        let sortedMinutes = minutes.sorted()
        guard let lastMinute = sortedMinutes.last else { return nil }
        for offset in 0..<(366 * 10) {
            guard let noon = calendar.date(byAdding: DateComponents(day: offset, hour: 12), to: firstDay) else { return nil }
            let today = calendar.dateComponents([.year, .month, .day, .weekday], from: noon)
            guard let year = today.year, let month = today.month, let day = today.day, let weekday = today.weekday,
                matches(day: day, month: month, weekday: weekday - 1)
            else { continue }
            var best: Date?
            for hour in sortedHours {
                func instant(_ minute: Int) -> Date? {
                    calendar.date(from: DateComponents(year: year, month: month, day: day, hour: hour, minute: minute))
                }
                // Skip an hour that is wholly past.
                guard let end = instant(lastMinute), end > date else { continue }
                for minute in sortedMinutes {
                    guard let candidate = instant(minute), candidate > date else { continue }
                    if best.map({ candidate < $0 }) ?? true { best = candidate }
                    break
                }
            }
            if let best { return best }
        }
        return nil
    }
}
