import ArgumentParser
import Testing

@testable import DroverControlPlane

/// Flags of seconds that no conversion can overflow: out of range is refused by name.
struct HeartbeatOptionsTests {
    @Test(arguments: [
        (["--heartbeat-min-ttl", "inf"], "--heartbeat-min-ttl"), (["--heartbeat-min-ttl", "1e300"], "--heartbeat-min-ttl"),
        (["--heartbeat-min-ttl", "0"], "--heartbeat-min-ttl"), (["--heartbeat-grace=-1"], "--heartbeat-grace"),
        (["--heartbeat-grace", "nan"], "--heartbeat-grace"), (["--max-heartbeats-per-second", "inf"], "--max-heartbeats-per-second"),
    ])
    func outOfRangeIsRefusedByName(arguments: [String], flag: String) {
        do {
            _ = try HeartbeatOptions.parse(arguments)
            Issue.record("\(arguments) was accepted")
        } catch {
            #expect(HeartbeatOptions.message(for: error).hasPrefix(flag))
        }
    }

    @Test func aYearIsTheLongestTTL() throws {
        let options = try HeartbeatOptions.parse(["--heartbeat-min-ttl", "31536000", "--heartbeat-grace", "2.5"])
        #expect(options.policy.minimumTTL == .seconds(31_536_000) && options.policy.grace == .milliseconds(2500))
    }
}
