/// An ISO 8601 duration (`P1Y2M10DT2H30M`, `PT30S`, `P2W`): the period of a repeating schedule
/// and Chronos's `epsilon`. Calendar parts (years, months, days) stay apart from the clock part,
/// since how long a month or a day lasts depends on the date and the time zone it is added to.
///
/// This module is the pure schedule core: what a schedule says (``Schedule``: ISO 8601 repeating
/// intervals and cron, in a time zone), when it runs next, and what is due at a tick
/// (``Firing``), with the time passed in. It imports only Foundation (for the calendar and the
/// time-zone database), so its rules are tested without a clock or a database.
public struct ISO8601Duration: Sendable, Hashable, CustomStringConvertible {
    public var years = 0
    public var months = 0
    /// Days, weeks included (a week is 7 days).
    public var days = 0
    /// The clock part (hours, minutes, seconds), in seconds.
    public var seconds: Double = 0

    public init(years: Int = 0, months: Int = 0, days: Int = 0, seconds: Double = 0) {
        self.years = years
        self.months = months
        self.days = days
        self.seconds = seconds
    }

    /// Every part no larger than this, so that no sum of parts can overflow.
    public static let partLimit = 1_000_000

    /// Parses `text`: `P`, then date parts (`Y`, `M`, `W`, `D`), then `T` and time parts (`H`,
    /// `M`, `S`), each at most once and in that order; only seconds may have a fraction.
    /// - Returns: nil when it is not such a duration, has no part, or a part above ``partLimit``.
    public init?(_ text: String) {
        guard text.hasPrefix("P") else { return nil }
        let halves = text.dropFirst().split(separator: "T", maxSplits: 1, omittingEmptySubsequences: false)
        if halves.count > 1 && halves[1].isEmpty { return nil }
        guard let date = Self.parts(halves[0], units: ["Y", "M", "W", "D"]),
            let time = halves.count > 1 ? Self.parts(halves[1], units: ["H", "M", "S"]) : [:],
            !date.isEmpty || !time.isEmpty
        else { return nil }
        guard (Array(date.values) + time.filter { $0.key != "S" }.map(\.value)).allSatisfy({ $0 == $0.rounded() }) else { return nil }
        years = Int(date["Y"] ?? 0)
        months = Int(date["M"] ?? 0)
        days = Int(date["W"] ?? 0) * 7 + Int(date["D"] ?? 0)
        seconds = (time["H"] ?? 0) * 3600 + (time["M"] ?? 0) * 60 + (time["S"] ?? 0)
    }

    /// `<number><unit>` pairs of `text`, units in the order of `units`, each at most once.
    private static func parts(_ text: Substring, units: [Character]) -> [Character: Double]? {
        var found: [Character: Double] = [:]
        var number = ""
        var next = 0
        for character in text {
            if character.isASCII && (character.isNumber || character == ".") {
                number.append(character)
                continue
            }
            guard let position = units.firstIndex(of: character), position >= next, let value = Double(number), value >= 0,
                value <= Double(partLimit)
            else { return nil }
            found[character] = value
            next = position + 1
            number = ""
        }
        return number.isEmpty ? found : nil
    }

    /// Its length at the calendar's average (a month 30.436875 days, a year 365.2425): for
    /// bounds and estimates, never for a time on the wall.
    public var averageSeconds: Double {
        seconds + Double(days) * 86_400 + Double(months) * 2_629_746 + Double(years) * 31_556_952
    }

    /// Whether it has no calendar part: it lasts the same whenever it starts.
    public var isExact: Bool { years == 0 && months == 0 && days == 0 }

    public var description: String {
        var text = "P"
        if years > 0 { text += "\(years)Y" }
        if months > 0 { text += "\(months)M" }
        if days > 0 { text += "\(days)D" }
        if seconds > 0 {
            text += "T"
            var left = seconds
            let hours = Int(left / 3600)
            left -= Double(hours) * 3600
            let minutes = Int(left / 60)
            left -= Double(minutes) * 60
            if hours > 0 { text += "\(hours)H" }
            if minutes > 0 { text += "\(minutes)M" }
            if left > 0 { text += left == left.rounded() ? "\(Int(left))S" : "\(left)S" }
        }
        return text == "P" ? "PT0S" : text
    }
}
