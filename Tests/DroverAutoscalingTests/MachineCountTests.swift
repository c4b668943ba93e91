import Testing

@testable import DroverAutoscaling

struct MachineCountTests {
    @Test(arguments: [
        // (cores wanted, machines)
        (0, 0), (-5, 0), (1, 1), (4, 1), (5, 2), (16, 4), (17, 5), (1000, 8), (Int.max, 8),
    ])
    func theFewestMachinesThatGiveTheCoresWithinTheLimits(cores: Int, machines: Int) {
        let array = MachineCount(coresPerMachine: 4, minimum: 0, maximum: 8)
        #expect(array.machines(forCores: cores) == machines)
    }

    @Test func theCoreCapAndTheMinimumBound() {
        #expect(MachineCount(coresPerMachine: 4, maximum: 10, maximumCores: 10).machines(forCores: 100) == 2)
        #expect(MachineCount(coresPerMachine: 4, minimum: 3, maximum: 10).machines(forCores: 0) == 3)
        #expect(MachineCount(coresPerMachine: 0, maximum: 3).machines(forCores: 2) == 2, "a machine has one core at least")
    }
}
