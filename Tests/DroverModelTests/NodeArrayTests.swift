import Foundation
import Testing

@testable import DroverModel

@Suite struct NodeArrayTests {
    @Test func leftOutFieldsTakeCycleCloudsDefaults() throws {
        let array = try JSONDecoder().decode(
            NodeArray.self, from: Data(#"{"Name": "execute", "MachineType": {"Cores": 2, "MemoryMB": 2048}, "MaxCount": 4}"#.utf8))
        #expect(array.minCount == 0 && array.idleTimeAfterJobs == 1800 && array.idleTimeBeforeJobs == 1800 && array.bootTimeout == 1800)
        #expect(array.provider == "local" && array.machine.cpuPerCore == 1000 && array.machine.cpu == 2000)
        #expect(array.validate().isEmpty)
        let encoded = try JSONDecoder().decode(NodeArray.self, from: JSONEncoder().encode(array))
        #expect(encoded == array)
    }

    @Test(arguments: [
        (#"{"Name": "bad name", "MachineType": {"Cores": 2, "MemoryMB": 1}, "MaxCount": 1}"#, "Name"),
        (#"{"Name": "a.b", "MachineType": {"Cores": 2, "MemoryMB": 1}, "MaxCount": 1}"#, "Name"),
        (#"{"Name": "a", "Provider": "x y", "MachineType": {"Cores": 2, "MemoryMB": 1}, "MaxCount": 1}"#, "Provider"),
        (#"{"Name": "a", "MachineType": {"Cores": 0, "MemoryMB": 1}, "MaxCount": 1}"#, "MachineType.Cores"),
        (#"{"Name": "a", "MachineType": {"Cores": 1, "MemoryMB": -1}, "MaxCount": 1}"#, "MachineType.MemoryMB"),
        (#"{"Name": "a", "MachineType": {"Cores": 1, "MemoryMB": 1}, "MinCount": 3, "MaxCount": 1}"#, "MinCount"),
        (#"{"Name": "a", "MachineType": {"Cores": 1, "MemoryMB": 1}, "MaxCount": 9223372036854775807}"#, "MaxCount"),
        (#"{"Name": "a", "MachineType": {"Cores": 1, "MemoryMB": 1}, "MaxCount": 1, "IdleTimeAfterJobs": 0}"#, "IdleTimeAfterJobs"),
        (#"{"Name": "a", "MachineType": {"Cores": 1, "MemoryMB": 1}, "MaxCount": 1, "BootTimeout": 9223372036854775807}"#, "BootTimeout"),
    ])
    func outOfRangeFieldsAreNamed(json: String, field: String) throws {
        let array = try JSONDecoder().decode(NodeArray.self, from: Data(json.utf8))
        #expect(array.validate().map(\.field).contains(field), "\(array.validate())")
    }

    @Test func aTargetReadsJetpackAutoscaleNames() throws {
        let targets = try JSONDecoder().decode(
            [ScaleTarget].self,
            from: Data(#"[{"Name": "execute", "TargetCoreCount": 100, "ExpiresAt": 5}, {"Name": "gpu", "TargetCount": 2, "ExpiresAt": 5}]"#.utf8))
        #expect(targets == [ScaleTarget(array: "execute", coreCount: 100, expiresAt: 5), ScaleTarget(array: "gpu", count: 2, expiresAt: 5)])
        #expect(Machine(name: "execute-12", array: "execute", state: .ready, since: 0).index == 12)
    }
}
