public import Foundation

/// When a job runs: an ISO 8601 repeating interval (Chronos) or a cron expression (Nomad's
/// periodic jobs), read in a time zone (IANA name; UTC by default).
public struct Schedule: Sendable, Hashable {
    public enum Rule: Sendable, Hashable {
        case interval(RepeatingInterval)
        case cron(CronExpression)
    }

    public var rule: Rule
    public var timeZone: TimeZone

    public init(rule: Rule, timeZone: TimeZone = TimeZone(identifier: "UTC")!) {
        self.rule = rule
        self.timeZone = timeZone
    }

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public var field: String
        public var description: String
    }

    /// Parses an ISO 8601 repeating interval (`R…`) or a cron expression, in the time zone named
    /// `timeZone` (empty: UTC). - Throws: ``ParseError`` naming `schedule` or `scheduleTimeZone`.
    public init(parsing text: String, timeZone name: String = "") throws(ParseError) {
        guard let zone = name.isEmpty ? TimeZone(identifier: "UTC") : TimeZone(identifier: name) else {
            throw ParseError(field: "scheduleTimeZone", description: "'\(name)' is not an IANA time zone such as Europe/Berlin or UTC")
        }
        if text.hasPrefix("R") {
            do {
                rule = .interval(try RepeatingInterval(parsing: text))
            } catch {
                throw ParseError(field: "schedule", description: error.description)
            }
        } else {
            do {
                rule = .cron(try CronExpression(parsing: text))
            } catch {
                throw ParseError(field: "schedule", description: error.description)
            }
        }
        timeZone = zone
    }

    /// The first run after `date`; nil when there is none (the repetitions are used up, or no
    /// day matches).
    public func next(after date: Date) -> Date? {
        switch rule {
        case .interval(let interval): interval.next(after: date, in: timeZone)
        case .cron(let cron): cron.next(after: date, in: timeZone)
        }
    }

    /// With an empty interval start made `now`.
    public func resolved(now: Date) -> Schedule {
        guard case .interval(let interval) = rule else { return self }
        return Schedule(rule: .interval(interval.resolved(now: now)), timeZone: timeZone)
    }

    /// Runs left, for an `Rn` interval; nil for ever.
    public var repetitions: Int? {
        guard case .interval(let interval) = rule else { return nil }
        return interval.repetitions
    }
}
