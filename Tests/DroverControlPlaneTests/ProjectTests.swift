import DroverModel
import DroverStorage
import DroverTestSupport
import Foundation
import Logging
import Testing

@testable import DroverControlPlane

/// Cluster-init projects against a real PostgreSQL: uploads and assignments are checked, a node
/// gets what is assigned to it or to its machine's array (at the version assigned, the newest
/// otherwise), only its own blobs, and a failed converge makes the node ineligible and its
/// machine Failed until a converge succeeds.
@Suite(.serialized, .enabled(if: TestEnvironment.runsStorageIntegration))
struct ProjectUseCaseTests {
    static func upload(_ version: String, script: String = "echo hi", blob: String = "blob v1") -> ProjectUpload {
        ProjectUpload(
            name: "app", version: version,
            files: [
                ProjectFile(path: "project.ini", content: Data("[project]\nname = app\nversion = \(version)\n".utf8)),
                ProjectFile(path: "specs/default/cluster-init/scripts/10-setup.sh", mode: 0o755, content: Data(script.utf8)),
                ProjectFile(path: "specs/default/cluster-init/files/app.conf", content: Data("x=1".utf8)),
                ProjectFile(path: "specs/gpu/cluster-init/scripts/10-cuda.sh", mode: 0o755, content: Data("true".utf8)),
                ProjectFile(path: "blobs/tools/tool.bin", content: Data(blob.utf8)),
            ])
    }

    @Test func aNodeGetsWhatIsAssignedToItOrItsArrayAndOnlyItsOwnBlobs() async throws {
        try await withMigratedDatabase { database in
            let projects = ProjectService(database: database)
            _ = try await NodeArrayService(database: database).put(AutoscaleUseCaseTests.array)
            #expect(await refusedFields { _ = try await projects.upload(ProjectUpload(name: "app", version: "1", files: [])) } == ["Files"])
            #expect(
                await refusedFields {
                    _ = try await projects.upload(
                        ProjectUpload(
                            name: "app", version: "1", files: [ProjectFile(path: "specs/default/cluster-init/scripts/../../../x", content: Data())]))
                } == ["Files[0].Path"])
            _ = try await projects.upload(Self.upload("1.0"))
            #expect(try await database.projects.list().map(\.specs) == [["default", "gpu"]])

            // Assignments name what exists.
            #expect(await refusedFields { _ = try await projects.assign(ProjectAssignment(project: "nope", nodeArray: "execute")) } == ["Project"])
            #expect(
                await refusedFields { _ = try await projects.assign(ProjectAssignment(project: "app", spec: "x", nodeArray: "execute")) } == ["Spec"])
            #expect(
                await refusedFields { _ = try await projects.assign(ProjectAssignment(project: "app", version: "9", nodeArray: "execute")) } == [
                    "Version"
                ])
            #expect(await refusedFields { _ = try await projects.assign(ProjectAssignment(project: "app", nodeArray: "nothere")) } == ["NodeArray"])
            let newest = try await projects.assign(ProjectAssignment(project: "app", nodeArray: "execute"))
            _ = try await projects.assign(ProjectAssignment(project: "app", spec: "gpu", version: "1.0", nodeID: "direct"))

            // The array's machine's node gets the default spec, relative to its cluster-init/.
            try await database.nodeArrays.save(Machine(name: "execute-1", array: "execute", state: .preparing, since: 0, nodeID: "n1"))
            let first = try await database.projects.clusterInit(forNode: "n1")
            #expect(first.missing.isEmpty && first.specs.map(\.label) == ["app:default:1.0"])
            #expect(first.specs.first?.files.map(\.path) == ["files/app.conf", "scripts/10-setup.sh"])
            #expect(first.specs.first?.scripts.first?.isExecutable == true)
            #expect(try await database.projects.clusterInit(forNode: "stranger") == NodeClusterInit(specs: [], missing: []))
            #expect(try await database.projects.clusterInit(forNode: "direct").specs.map(\.label) == ["app:gpu:1.0"])

            // A newer upload is what version-less assignments get; a pinned one stays.
            _ = try await projects.upload(Self.upload("2.0", blob: "blob v2"))
            #expect(try await database.projects.clusterInit(forNode: "n1").specs.map(\.label) == ["app:default:2.0"])
            #expect(try await database.projects.clusterInit(forNode: "direct").specs.map(\.label) == ["app:gpu:1.0"])
            #expect(try await database.projects.blob(project: "app", path: "tools/tool.bin", forNode: "n1") == Data("blob v2".utf8))
            #expect(try await database.projects.blob(project: "app", path: "tools/tool.bin", forNode: "direct") == Data("blob v1".utf8))
            #expect(try await database.projects.blob(project: "app", path: "tools/tool.bin", forNode: "stranger") == nil)
            #expect(try await database.projects.blob(project: "app", path: "missing", forNode: "n1") == nil)

            // A pinned version deleted is missing, and said so.
            _ = try await projects.delete(name: "app", version: "1.0")
            #expect(try await database.projects.clusterInit(forNode: "direct").missing == ["app:gpu:1.0"])
            #expect(try await projects.unassign(id: newest.id) > 0)
            #expect(try await database.projects.clusterInit(forNode: "n1").specs.isEmpty)
        }
    }

    @Test func aFailedConvergeMakesTheNodeIneligibleAndItsMachineFailedUntilOneSucceeds() async throws {
        try await withMigratedDatabase { database in
            let clock = AutoscaleUseCaseTests.Clock()
            let autoscaler = AutoscaleService(database: database, gateway: "http://gateway:4646", logger: Logger(label: "test")) { clock.now }
            _ = try await NodeArrayService(database: database).put(AutoscaleUseCaseTests.array)
            try await database.nodeArrays.save(
                Machine(name: "execute-1", array: "execute", state: .preparing, since: clock.now.unixNanoseconds, nodeID: "n1"))
            let nodes = NodeLifecycle(database: database)
            var node = testNode("n1", cpu: 2000)
            node.clusterInit = ClusterInitState(
                status: .failed, detail: "app:default:1 scripts/10-setup.sh exited 3", at: 1, specs: ["app:default:1"],
                results: [ScriptResult(spec: "app:default:1", script: "scripts/10-setup.sh", exitCode: 3, milliseconds: 5, output: "boom")])
            try await nodes.register(node: node)
            #expect(try await database.nodes.read(id: "n1")?.schedulingEligibility == .ineligible)
            #expect(try await database.nodes.read(id: "n1")?.clusterInit?.results.first?.output == "boom")
            clock.advance(1)
            try await autoscaler.round()
            var machine = try #require(try await database.nodeArrays.machines().first)
            #expect(machine.state == .failed && machine.isKeptAfterFailure)
            #expect(
                try await database.nodeArrays.reasons(array: "execute")["execute-1"]
                    == "cluster-init failed: app:default:1 scripts/10-setup.sh exited 3")
            let events = try await database.events.list(EventRepository.Filter(nodeID: "n1"))
            #expect(events.contains { $0.type == ClusterEvent.Kind.clusterInit && $0.level == .error }, "\(events)")

            // A later converge succeeds: eligible again, and the machine is ready.
            node.clusterInit = ClusterInitState(
                status: .ready, detail: "1 script(s) of 1 spec(s) succeeded", at: 2, specs: ["app:default:1"], results: [])
            try await nodes.register(node: node)
            #expect(try await database.nodes.read(id: "n1")?.schedulingEligibility == .eligible)
            clock.advance(1)
            try await autoscaler.round()
            machine = try #require(try await database.nodeArrays.machines().first)
            #expect(machine.state == .ready && machine.clusterInitFailure == nil)
        }
    }
}
