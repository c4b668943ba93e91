public import Foundation

/// Durations written as Go and Nomad write them: `300ms`, `10s`, `1h30m`, `1.5h`; a bare number
/// is seconds.
public enum GoDuration {
    /// The longest duration accepted: about 292 years, what Go's `time.Duration` (nanoseconds in
    /// an Int64) holds; past it a conversion would trap.
    public static let maximumSeconds = Double(Int64.max) / 1e9

    /// The duration `text` says, or nil when it is not one (or is negative, or longer than
    /// ``maximumSeconds``).
    public static func parse(_ text: String) -> Duration? {
        if let seconds = Double(text) {
            return seconds >= 0 && seconds < maximumSeconds ? .milliseconds(Int64((seconds * 1000).rounded())) : nil
        }
        let units: [(String, Double)] = [("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1), ("m", 60), ("h", 3600)]
        var total = 0.0
        var rest = Substring(text)
        guard !rest.isEmpty else { return nil }
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            guard let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            // The longest unit that matches: "ms" before "m".
            guard let (unit, scale) = units.filter({ rest.hasPrefix($0.0) }).max(by: { $0.0.count < $1.0.count }) else { return nil }
            rest = rest.dropFirst(unit.count)
            total += value * scale
        }
        guard total < maximumSeconds else { return nil }
        return .nanoseconds(Int64((total * 1e9).rounded()))
    }

    /// Nanoseconds, as Nomad's JSON carries durations.
    public static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

extension Duration {
    /// The duration in seconds, as `TimeInterval`.
    public var timeInterval: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// Booleans written as Go's `strconv.ParseBool` reads them, as Nomad's query parameters are.
public enum GoBool {
    /// `1`, `t`, `T`, `TRUE`, `true`, `True` are true; `0`, `f`, `F`, `FALSE`, `false`, `False`
    /// are false; anything else is nil.
    public static func parse(_ text: String) -> Bool? {
        switch text {
        case "1", "t", "T", "TRUE", "true", "True": true
        case "0", "f", "F", "FALSE", "false", "False": false
        default: nil
        }
    }
}

extension Date {
    /// The date as the model's times are kept: Unix nanoseconds. Saturating, since a date may
    /// come from outside (a node's keepalive a thousand years away): after 2262 it is `Int64.max`,
    /// which reads as "for ever", before 1677 `Int64.min`; it never traps.
    public var unixNanoseconds: Int64 {
        let value = timeIntervalSince1970 * 1e9
        if value.isNaN || value <= -9.223_372_036_854_775e18 { return .min }
        if value >= 9.223_372_036_854_775e18 { return .max }
        return Int64(value)
    }

    /// The date `nanoseconds` after 1970; `Int64.max` ("for ever") is `distantFuture`.
    public init(unixNanoseconds nanoseconds: Int64) {
        self = nanoseconds == .max ? .distantFuture : Date(timeIntervalSince1970: Double(nanoseconds) / 1e9)
    }
}
