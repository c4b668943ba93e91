import Foundation
import Testing

@testable import DroverCalendar

/// The next-run calculation, table by table: ISO 8601 intervals and cron, across changes of
/// daylight-saving time in two time zones, month ends and leap years, in UTC instants.
struct ScheduleTests {
    static func instant(_ text: String) -> Date {
        guard case .instant(let date) = RepeatingInterval.parseStart(text) else { fatalError("bad test instant \(text)") }
        return date
    }

    static func zone(_ name: String) -> TimeZone { TimeZone(identifier: name)! }

    static func runs(_ schedule: Schedule, after start: String, count: Int) -> [Date] {
        var runs: [Date] = []
        var cursor = instant(start)
        while runs.count < count, let next = schedule.next(after: cursor) {
            runs.append(next)
            cursor = next
        }
        return runs
    }

    // MARK: Parsing

    @Test(arguments: [
        ("R/2026-01-01T00:00:00Z/PT1H", nil as Int?, "PT1H"),
        ("R5//P1D", 5, "P1D"),
        ("R0/2026-01-01T00:00:00+02:00/PT30S", 0, "PT30S"),
        ("R10/2012-10-01T05:52:00.500Z/P1Y2M10DT2H30M", 10, "P1Y2M10DT2H30M"),
        ("R/2026-01-01T09:00/P1W", nil, "P7D"),
    ])
    func intervalsParse(text: String, repetitions: Int?, period: String) throws {
        let interval = try RepeatingInterval(parsing: text)
        #expect(interval.repetitions == repetitions && interval.period.description == period)
    }

    @Test(arguments: [
        ("", RepeatingInterval.ParseError.shape),
        ("R/PT1H", .shape),
        ("X/2026-01-01T00:00:00Z/PT1H", .shape),
        ("R-1//PT1H", .repetitions),
        ("R99999999999//PT1H", .repetitions),
        ("R/2026-13-01T00:00:00Z/PT1H", .start("2026-13-01T00:00:00Z")),
        ("R/2026-02-30T00:00:00Z/PT1H", .start("2026-02-30T00:00:00Z")),
        ("R/2026-01-01 00:00:00Z/PT1H", .start("2026-01-01 00:00:00Z")),
        ("R/2026-01-01T00:00:00+25:00/PT1H", .start("2026-01-01T00:00:00+25:00")),
        ("R//PT0S", .period("PT0S")),
        ("R//PT0.5S", .period("PT0.5S")),
        ("R//1H", .period("1H")),
    ])
    func badIntervalsSayWhichPart(text: String, error: RepeatingInterval.ParseError) {
        #expect(throws: error) { try RepeatingInterval(parsing: text) }
    }

    @Test func aScheduleNamesTheFieldThatIsWrong() {
        #expect(
            throws: Schedule.ParseError(
                field: "scheduleTimeZone", description: "'Mars/Olympus' is not an IANA time zone such as Europe/Berlin or UTC")
        ) {
            try Schedule(parsing: "R//PT1H", timeZone: "Mars/Olympus")
        }
        #expect((try? Schedule(parsing: "*/5 * * * *", timeZone: "America/New_York")) != nil)
        #expect(throws: Schedule.ParseError.self) { try Schedule(parsing: "every day") }
    }

    @Test(arguments: [
        ("* * * *", "has 4 field(s)"), ("60 * * * *", "minute: '60' is not 0-59"), ("*/0 * * * *", "the step in '*/0' must be 1-60"),
        ("5-1 * * * *", "runs backwards"), ("@reboot", "is not one of @yearly"), ("0 0 * foo *", "month: 'foo' is not 1-12 or a name"),
        ("0 0 1,,2 * *", "day of month: '' is not a value"),
    ])
    func badCronSaysWhy(text: String, reason: String) {
        do {
            _ = try CronExpression(parsing: text)
            Issue.record("'\(text)' parsed")
        } catch {
            #expect(error.description.contains(reason), "\(error.description)")
        }
    }

    @Test func cronFieldsReadNamesRangesStepsAndMacros() throws {
        let cron = try CronExpression(parsing: "0,30 9-17/4 * jan-mar MON-fri")
        #expect(cron.minutes == [0, 30] && cron.hours == [9, 13, 17] && cron.months == [1, 2, 3] && cron.daysOfWeek == [1, 2, 3, 4, 5])
        #expect(try CronExpression(parsing: "5/20 * * * 7").minutes == [5, 25, 45])
        #expect(try CronExpression(parsing: "5/20 * * * 7").daysOfWeek == [0])
        #expect(try CronExpression(parsing: "@weekly").daysOfWeek == [0])
        #expect(try CronExpression(parsing: "@hourly").minutes == [0] && CronExpression(parsing: "@hourly").hours.count == 24)
    }

    // MARK: Next run

    @Test func monthsCountFromTheStartAtMonthEnds() throws {
        let schedule = try Schedule(parsing: "R/2026-01-31T10:00:00Z/P1M")
        #expect(
            Self.runs(schedule, after: "2026-01-31T10:00:00Z", count: 3) == [
                Self.instant("2026-02-28T10:00:00Z"), Self.instant("2026-03-31T10:00:00Z"), Self.instant("2026-04-30T10:00:00Z"),
            ])
    }

    @Test func aLeapDayRecursOnTheLastDayOfFebruaryAndAgainOnTheNextLeapDay() throws {
        let schedule = try Schedule(parsing: "R/2024-02-29T00:00:00Z/P1Y")
        #expect(
            Self.runs(schedule, after: "2024-02-29T00:00:00Z", count: 4) == [
                Self.instant("2025-02-28T00:00:00Z"), Self.instant("2026-02-28T00:00:00Z"), Self.instant("2027-02-28T00:00:00Z"),
                Self.instant("2028-02-29T00:00:00Z"),
            ])
        let cron = try Schedule(parsing: "0 12 29 2 *")
        #expect(cron.next(after: Self.instant("2026-03-01T00:00:00Z")) == Self.instant("2028-02-29T12:00:00Z"))
        #expect(try Schedule(parsing: "0 0 30 2 *").next(after: Self.instant("2026-01-01T00:00:00Z")) == nil, "February has no 30th")
    }

    @Test func aDailyWallClockTimeAcrossBerlinsChangesRunsOnceADay() throws {
        // 2026-03-29 02:00 CET becomes 03:00 CEST; 2026-10-25 03:00 CEST becomes 02:00 CET.
        let daily = try Schedule(parsing: "R/2026-03-28T02:30:00/P1D", timeZone: "Europe/Berlin")
        #expect(
            Self.runs(daily, after: "2026-03-27T00:00:00Z", count: 3) == [
                Self.instant("2026-03-28T01:30:00Z"),
                // 02:30 does not exist that day: once, past the gap.
                Self.instant("2026-03-29T01:30:00Z"),
                Self.instant("2026-03-30T00:30:00Z"),
            ])
        let autumn = try Schedule(parsing: "R/2026-10-24T02:30:00/P1D", timeZone: "Europe/Berlin")
        #expect(
            Self.runs(autumn, after: "2026-10-23T00:00:00Z", count: 3) == [
                Self.instant("2026-10-24T00:30:00Z"),
                // 02:30 happens twice that day: once, the first time.
                Self.instant("2026-10-25T00:30:00Z"),
                Self.instant("2026-10-26T01:30:00Z"),
            ])
        // A clock period is elapsed time: PT24H is not P1D across the change.
        let hours = try Schedule(parsing: "R/2026-03-28T02:30:00/PT24H", timeZone: "Europe/Berlin")
        #expect(hours.next(after: Self.instant("2026-03-28T01:30:00Z")) == Self.instant("2026-03-29T01:30:00Z"))
        #expect(hours.next(after: Self.instant("2026-03-29T01:30:00Z")) == Self.instant("2026-03-30T01:30:00Z"))
    }

    @Test func cronAcrossNewYorksChangesRunsOncePerMatchingTime() throws {
        // 2026-03-08 02:00 EST becomes 03:00 EDT; 2026-11-01 02:00 EDT becomes 01:00 EST.
        let spring = try Schedule(parsing: "30 2 * * *", timeZone: "America/New_York")
        #expect(
            Self.runs(spring, after: "2026-03-07T00:00:00Z", count: 3) == [
                Self.instant("2026-03-07T07:30:00Z"), Self.instant("2026-03-08T07:30:00Z"), Self.instant("2026-03-09T06:30:00Z"),
            ])
        let autumn = try Schedule(parsing: "30 1 * * *", timeZone: "America/New_York")
        #expect(
            Self.runs(autumn, after: "2026-10-31T00:00:00Z", count: 3) == [
                Self.instant("2026-10-31T05:30:00Z"), Self.instant("2026-11-01T05:30:00Z"), Self.instant("2026-11-02T06:30:00Z"),
            ])
        // Every half hour through Berlin's gap: each instant once, none twice.
        let halfHourly = try Schedule(parsing: "*/30 * * * *", timeZone: "Europe/Berlin")
        #expect(
            Self.runs(halfHourly, after: "2026-03-29T00:45:00Z", count: 3) == [
                Self.instant("2026-03-29T01:00:00Z"), Self.instant("2026-03-29T01:30:00Z"), Self.instant("2026-03-29T02:00:00Z"),
            ])
    }

    @Test func bothDayFieldsRestrictedMeanEitherDay() throws {
        // The 13th, or any Friday: 2026-02-06 is a Friday, 2026-02-13 both.
        let cron = try Schedule(parsing: "0 0 13 * fri")
        #expect(
            Self.runs(cron, after: "2026-02-01T00:00:00Z", count: 3) == [
                Self.instant("2026-02-06T00:00:00Z"), Self.instant("2026-02-13T00:00:00Z"), Self.instant("2026-02-20T00:00:00Z"),
            ])
        let weekdays = try Schedule(parsing: "0 9 * * 1-5")
        #expect(weekdays.next(after: Self.instant("2026-02-06T09:00:00Z")) == Self.instant("2026-02-09T09:00:00Z"), "Friday to Monday")
    }

    @Test func repetitionsEndTheSchedule() throws {
        let three = try Schedule(parsing: "R3/2026-01-01T00:00:00Z/PT2S")
        #expect(Self.runs(three, after: "2025-12-31T23:59:59Z", count: 10).count == 3)
        #expect(try Schedule(parsing: "R0/2026-01-01T00:00:00Z/PT2S").next(after: Self.instant("2025-01-01T00:00:00Z")) == nil)
        let now = Self.instant("2026-05-05T05:05:05Z")
        let fromNow = try Schedule(parsing: "R2//PT1M").resolved(now: now)
        #expect(fromNow.next(after: now.addingTimeInterval(-1)) == now && fromNow.next(after: now) == now.addingTimeInterval(60))
    }

    @Test func aFarStartOrHugePeriodNeitherTrapsNorLoops() throws {
        let far = try Schedule(parsing: "R/0001-01-01T00:00:00Z/PT1S")
        let now = Self.instant("2026-01-01T00:00:00.5Z")
        #expect(far.next(after: now) == Self.instant("2026-01-01T00:00:01Z"))
        let huge = try Schedule(parsing: "R/2026-01-01T00:00:00Z/P1000000Y")
        #expect(huge.next(after: Self.instant("2026-01-02T00:00:00Z")) == nil)
    }
}
