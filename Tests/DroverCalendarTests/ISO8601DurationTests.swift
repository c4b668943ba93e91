import Testing

@testable import DroverCalendar

struct ISO8601DurationTests {
    @Test(arguments: [
        ("PT30S", ISO8601Duration(seconds: 30)),
        ("PT5M", ISO8601Duration(seconds: 300)),
        ("P1D", ISO8601Duration(days: 1)),
        ("P1M", ISO8601Duration(months: 1)),
        ("P2W", ISO8601Duration(days: 14)),
        ("P1Y2M10DT2H30M", ISO8601Duration(years: 1, months: 2, days: 10, seconds: 9000)),
        ("PT0.5S", ISO8601Duration(seconds: 0.5)),
    ])
    func parses(text: String, expected: ISO8601Duration) {
        #expect(ISO8601Duration(text) == expected)
    }

    @Test(arguments: ["", "P", "PT", "P1DT", "1D", "P1H", "PT1D", "P1M1Y", "PT1S2M", "P1.5D", "P-1D", "P1D1D", "P99999999Y", "PTS", "P1DX"])
    func refuses(text: String) {
        #expect(ISO8601Duration(text) == nil, "'\(text)' is not a duration")
    }

    @Test func calendarPartsAreKeptApartFromTheClockPart() {
        #expect(ISO8601Duration("PT36H")?.isExact == true)
        #expect(ISO8601Duration("P1D")?.isExact == false, "a day is not always 24 hours")
        #expect(ISO8601Duration("P1Y2M10DT2H30M")?.description == "P1Y2M10DT2H30M")
        #expect(ISO8601Duration("PT0S")?.description == "PT0S")
    }
}
