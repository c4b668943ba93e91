import DroverModel
import Foundation
import Testing

@Suite struct JobTests {
    /// The shape `nomad job run -output` and python-nomad send, trimmed, with fields Drover does not read.
    static let nomadJSON = #"""
        {"Job": {"ID": "example", "Name": "example", "Type": "batch", "Datacenters": ["dc1"], "Priority": 60,
          "Update": {"MaxParallel": 1}, "Constraints": [{"LTarget": "${attr.kernel.name}", "RTarget": "linux", "Operand": "="}],
          "TaskGroups": [{"Name": "cache", "Count": 3, "EphemeralDisk": {"SizeMB": 300},
            "RestartPolicy": {"Attempts": 1, "Interval": 60000000000, "Delay": 1000000000, "Mode": "fail"},
            "Tasks": [{"Name": "redis", "Driver": "raw_exec", "Config": {"command": "/bin/echo", "args": ["hi"], "image": "ignored"},
              "Env": {"A": "1"}, "Resources": {"CPU": 250, "MemoryMB": 128, "Networks": []}, "KillTimeout": 2000000000}]}]}}
        """#

    struct Wrapper: Decodable {
        var job: Job
        enum CodingKeys: String, CodingKey { case job = "Job" }
    }

    @Test func aNomadJobDecodesToleratingUnknownFields() throws {
        let job = try JSONDecoder().decode(Wrapper.self, from: Data(Self.nomadJSON.utf8)).job
        #expect(job.validate().isEmpty)
        #expect(job.jobType == .batch && job.jobPriority == 60 && job.taskGroups[0].groupCount == 3)
        let task = job.taskGroups[0].tasks[0]
        #expect(task.config == TaskConfig(command: "/bin/echo", args: ["hi"]))
        #expect(task.taskResources == Resources(cpu: 250, memoryMB: 128, diskMB: 0))
        #expect(job.taskGroups[0].restartPolicy?.attempts == 1)
    }

    @Test func canonicalizingFillsNomadsDefaults() {
        let job = Job(
            id: "web", type: .service, taskGroups: [TaskGroup(name: "g", tasks: [JobTask(name: "t", command: "/bin/true")])]
        ).canonicalized()
        #expect(job.name == "web" && job.priority == 50 && job.datacenters == ["*"])
        let group = job.taskGroups[0]
        #expect(group.restartPolicy == RestartPolicy(attempts: 2, interval: 1_800_000_000_000, delay: 15_000_000_000, mode: "fail"))
        #expect(group.reschedulePolicy?.unlimited == true)
        #expect(group.tasks[0].resources == Resources(cpu: 100, memoryMB: 300, diskMB: 0))
        #expect(group.tasks[0].killTimeout == 5_000_000_000)
    }

    @Test func everyBadFieldIsNamedWithItsReason() throws {
        let json = #"""
            {"ID": "bad id", "Type": "service", "Priority": 500,
             "Constraints": [{"LTarget": "${attr.x}", "Operand": "~", "RTarget": "1"}, {"LTarget": "${attr.v}", "Operand": "version", "RTarget": "abc"}],
             "TaskGroups": [{"Name": "g", "Count": -1, "RestartPolicy": {"Mode": "sometimes"},
                "Tasks": [{"Name": "t", "Driver": "raw_exec", "Config": {}, "Resources": {"CPU": 0, "MemoryMB": 5}},
                          {"Name": "t", "Driver": ""}]},
               {"Name": "g", "Tasks": []}],
             "Affinities": [{"LTarget": "${attr.x}", "Operand": "=", "RTarget": "1", "Weight": 0}],
             "Spreads": [{"Attribute": "${node.datacenter}", "SpreadTarget": [{"Value": "a", "Percent": 70}, {"Value": "b", "Percent": 40}]}]}
            """#
        let errors = try JSONDecoder().decode(Job.self, from: Data(json.utf8)).validate()
        let fields = Set(errors.map(\.field))
        #expect(
            fields == [
                "Job.ID", "Job.Priority", "Job.Constraints[0].Operand", "Job.Constraints[1].RTarget", "Job.Affinities[0].Weight",
                "Job.Spreads[0].SpreadTarget", "Job.TaskGroups[0].Count", "Job.TaskGroups[0].RestartPolicy.Mode",
                "Job.TaskGroups[0].Tasks[0].Config.command", "Job.TaskGroups[0].Tasks[0].Resources.CPU",
                "Job.TaskGroups[0].Tasks[0].Resources.MemoryMB", "Job.TaskGroups[0].Tasks[1].Name", "Job.TaskGroups[0].Tasks[1].Driver",
                "Job.TaskGroups[1].Name", "Job.TaskGroups[1].Tasks",
            ], "\(errors)")
        #expect(errors.first { $0.field == "Job.Priority" }?.reason == "must be between 1 and 100, got 500")
    }

    /// Two tasks of 2^62 MHz once overflowed the group's sum and ended the gateway.
    @Test func aGroupsResourcesTogetherMustFitWhatAnAllocationHolds() {
        func group(_ cpus: [Int], memory: Int = 64) -> Job {
            Job(
                id: "big",
                taskGroups: [
                    TaskGroup(
                        name: "g",
                        tasks: cpus.enumerated().map {
                            JobTask(name: "t\($0.offset)", command: "/bin/true", resources: Resources(cpu: $0.element, memoryMB: memory))
                        })
                ])
        }
        let huge = group([1 << 62, 1 << 62]).validate()
        #expect(huge.map(\.field) == ["Job.TaskGroups[0].Tasks[0].Resources.CPU", "Job.TaskGroups[0].Tasks[1].Resources.CPU"])
        #expect(huge.first?.reason == "the group's tasks together may ask for at most 2147483647, got 4611686018427387904 here")
        let crossing = group([Int(Int32.max) - 10, 10, 1]).validate()
        #expect(crossing.map(\.field) == ["Job.TaskGroups[0].Tasks[2].Resources.CPU"], "refused where the total is crossed")
        #expect(group([Int(Int32.max) - 10, 10]).validate().isEmpty)
        #expect(group([100], memory: Int.max).validate().map(\.field) == ["Job.TaskGroups[0].Tasks[0].Resources.MemoryMB"])
    }

    /// The exec driver starts as root: a job may not hand its wrapper the loader's variables.
    @Test func anExecTaskMayNotSetTheLoadersVariables() {
        var task = JobTask(name: "t", driver: "exec", command: "/bin/true")
        task.env = ["LD_PRELOAD": "/tmp/x.so", "GCONV_PATH": "/tmp", "PATH": "/bin"]
        let job = Job(id: "j", taskGroups: [TaskGroup(name: "g", tasks: [task])])
        #expect(job.validate().map(\.field) == ["Job.TaskGroups[0].Tasks[0].Env.GCONV_PATH", "Job.TaskGroups[0].Tasks[0].Env.LD_PRELOAD"])
        task.driver = "raw_exec"
        #expect(Job(id: "j", taskGroups: [TaskGroup(name: "g", tasks: [task])]).validate().isEmpty, "raw_exec runs as the agent: its choice")
    }

    /// Each limit, crossed by one: refused by name; at the limit: accepted.
    @Test func everyLimitIsEnforcedByNameAndItsBoundIsAccepted() {
        func job(_ change: (inout Job) -> Void) -> [String] {
            var job = Job(
                id: "limits",
                taskGroups: [TaskGroup(name: "g", tasks: [JobTask(name: "t", command: "/bin/true", resources: Resources(cpu: 1, memoryMB: 10))])])
            change(&job)
            return job.validate().map(\.field)
        }
        let task = JobTask(name: "t", command: "/bin/true", resources: Resources(cpu: 1, memoryMB: 10))
        #expect(job { $0.taskGroups[0].count = JobLimits.count }.isEmpty)
        #expect(job { $0.taskGroups[0].count = JobLimits.count + 1 } == ["Job.TaskGroups[0].Count"])
        #expect(job { $0.taskGroups[0].count = Int.max } == ["Job.TaskGroups[0].Count"])
        #expect(
            job { job in job.taskGroups = (0...JobLimits.taskGroups).map { TaskGroup(name: "g\($0)", tasks: [task]) } } == ["Job.TaskGroups"])
        #expect(
            job { $0.taskGroups[0].tasks = (0...JobLimits.tasksPerGroup).map { JobTask(name: "t\($0)", command: "/bin/true") } } == [
                "Job.TaskGroups[0].Tasks"
            ])
        #expect(job { $0.taskGroups[0].tasks[0].killTimeout = JobLimits.killTimeout }.isEmpty)
        #expect(job { $0.taskGroups[0].tasks[0].killTimeout = JobLimits.killTimeout + 1 } == ["Job.TaskGroups[0].Tasks[0].KillTimeout"])
        #expect(
            job { $0.taskGroups[0].tasks[0].env = Dictionary(uniqueKeysWithValues: (0...JobLimits.entries).map { ("V\($0)", "x") }) } == [
                "Job.TaskGroups[0].Tasks[0].Env"
            ])
        #expect(job { $0.meta = ["k": String(repeating: "x", count: JobLimits.longString + 1)] } == ["Job.Meta.k"])
        #expect(job { $0.name = String(repeating: "n", count: JobLimits.shortString + 1) } == ["Job.Name"])
        #expect(
            job { $0.constraints = (0...JobLimits.rules).map { _ in Constraint("${attr.kernel.name}", "=", "linux") } } == [
                "Job.Constraints"
            ])
        #expect(
            job { $0.taskGroups[0].restartPolicy = RestartPolicy(attempts: 2, interval: Int64.max, delay: -1, mode: "fail") } == [
                "Job.TaskGroups[0].RestartPolicy.Interval", "Job.TaskGroups[0].RestartPolicy.Delay",
            ])
        #expect(
            job { $0.taskGroups[0].tasks[0].config?.args = Array(repeating: "a", count: JobLimits.listEntries + 1) } == [
                "Job.TaskGroups[0].Tasks[0].Config.args"
            ])
    }

    @Test func aNodeMustReportResourcesThatFitTheirColumns() {
        var node = Node(id: "n1", name: "n1", resources: Resources(cpu: 4000, memoryMB: 8192, diskMB: 1000))
        #expect(node.validate().isEmpty)
        node.resources.cpu = Int.max
        node.resources.memoryMB = -1
        node.meta = ["k": String(repeating: "v", count: JobLimits.shortString + 1)]
        #expect(node.validate().map(\.field) == ["Node.NodeResources.CPU", "Node.NodeResources.MemoryMB", "Node.Meta"])
    }

    @Test func aWrongTypeNamesItsFieldPath() {
        let json = #"{"ID": "x", "TaskGroups": [{"Name": "g", "Count": "three", "Tasks": []}]}"#
        do {
            _ = try JSONDecoder().decode(Job.self, from: Data(json.utf8))
            Issue.record("decoded")
        } catch let error as DecodingError {
            #expect(FieldError(error, root: "Job") == FieldError("Job.TaskGroups[0].Count", "expected an integer"))
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test func versionRequirements() {
        let requirement = VersionRequirement(">= 1.2, < 2.0")
        #expect(requirement?.isSatisfied(by: [1, 10]) == true)
        #expect(requirement?.isSatisfied(by: [2, 0, 0]) == false)
        #expect(VersionRequirement("~> 1.2")?.isSatisfied(by: [1, 9]) == true)
        #expect(VersionRequirement("~> 1.2")?.isSatisfied(by: [2, 0]) == false)
        #expect(VersionRequirement("banana") == nil)
        #expect(VersionRequirement.parse("v5.10.0-1-amd64") == [5, 10, 0])
    }
}

@Suite struct GoDurationTests {
    @Test(arguments: [
        ("10", 10.0), ("1.5", 1.5), ("300ms", 0.3), ("10s", 10), ("5m", 300), ("1h30m", 5400), ("1.5h", 5400), ("2h0m10s", 7210),
        ("250us", 0.00025),
    ])
    func parses(text: String, seconds: Double) throws {
        let duration = try #require(GoDuration.parse(text))
        #expect(abs(Double(GoDuration.nanoseconds(duration)) / 1e9 - seconds) < 1e-9)
    }

    @Test(arguments: ["", "-1", "1x", "h", "1h-5m", "ten seconds", "1e300", "inf", "nan", "300000000000s", "9999999999999999999h"])
    func refuses(text: String) {
        #expect(GoDuration.parse(text) == nil)
    }
}

@Suite struct GoBoolTests {
    @Test func readsWhatGosParseBoolReads() {
        #expect(["1", "t", "T", "TRUE", "true", "True"].map(GoBool.parse) == Array(repeating: true, count: 6))
        #expect(["0", "f", "F", "FALSE", "false", "False"].map(GoBool.parse) == Array(repeating: false, count: 6))
        #expect(["", "yes", "tRUE", "2", " true"].map(GoBool.parse) == Array(repeating: nil, count: 5))
    }
}

@Suite struct UnixNanosecondsTests {
    @Test func datesOutsideWhatNanosecondsHoldSaturateAndForEverComesBack() {
        #expect(Date(timeIntervalSince1970: 1.5).unixNanoseconds == 1_500_000_000)
        #expect(Date(timeIntervalSince1970: 32_503_680_000).unixNanoseconds == .max, "the year 3000")
        #expect(Date.distantFuture.unixNanoseconds == .max && Date.distantPast.unixNanoseconds == .min)
        #expect(Date(unixNanoseconds: .max) == .distantFuture)
        #expect(Date(unixNanoseconds: 1_500_000_000) == Date(timeIntervalSince1970: 1.5))
    }
}
