import Foundation
import Testing

@testable import DroverModel

@Suite struct ProjectTests {
    static func upload(_ paths: [String], name: String = "app", version: String = "1.0.0") -> ProjectUpload {
        ProjectUpload(name: name, version: version, files: paths.map { ProjectFile(path: $0, mode: 0o755, content: Data("x".utf8)) })
    }

    @Test func aCycleCloudLayoutIsAcceptedAndItsSpecsFound() {
        let upload = Self.upload([
            "project.ini", "blobs/tool.tgz", "specs/default/cluster-init/scripts/10-setup.sh", "specs/default/cluster-init/files/app.conf",
            "specs/gpu_2/cluster-init/tests/check.sh",
        ])
        #expect(upload.validate().isEmpty, "\(upload.validate())")
        #expect(Project.specs(of: upload.files.map(\.path)) == ["default", "gpu_2"])
    }

    @Test(arguments: [
        ("../etc/passwd", "must not have an empty, '.' or '..' component"),
        ("specs/default/cluster-init/scripts/../../../../x", "must not have an empty, '.' or '..' component"),
        ("/etc/passwd", "must be relative, '/'-separated, without NUL or backslash"),
        ("specs/default/cluster-init/scripts//a", "must not have an empty, '.' or '..' component"),
        ("specs/default/cluster-init/scripts/a\0b", "must be relative, '/'-separated, without NUL or backslash"),
        ("specs/default/chef/recipe.rb", "must be project.ini, under blobs/, or under specs/<spec>/cluster-init/scripts|files|tests/"),
        ("specs/bad spec/cluster-init/scripts/a", "must be project.ini, under blobs/, or under specs/<spec>/cluster-init/scripts|files|tests/"),
        ("specs/default/cluster-init/scripts", "must be project.ini, under blobs/, or under specs/<spec>/cluster-init/scripts|files|tests/"),
        ("", "must be 1-1024 bytes"),
    ])
    func aPathOutsideTheLayoutIsRefusedWithItsReason(path: String, reason: String) {
        #expect(Project.pathProblem(path) == reason)
        let errors = Self.upload(["specs/default/cluster-init/scripts/ok.sh", path]).validate()
        #expect(errors == [FieldError("Files[1].Path", reason)])
    }

    @Test func namesDuplicatesModesAndSizeAreChecked() {
        var upload = Self.upload(["specs/default/cluster-init/scripts/a.sh", "specs/default/cluster-init/scripts/a.sh"], name: "-x", version: "")
        upload.files[0].mode = 0o10000
        #expect(
            upload.validate().map(\.field) == ["Name", "Version", "Files[0].Mode", "Files[1].Path"],
            "\(upload.validate())")
        let big = ProjectUpload(
            name: "big", version: "1",
            files: [ProjectFile(path: "blobs/large", content: Data(count: Project.maximumBytes + 1))])
        #expect(big.validate().map(\.field) == ["Files"])
        #expect(
            Self.upload(["project.ini"]).validate() == [
                FieldError("Files", "no spec (specs/<spec>/cluster-init/...) and no blob: nothing to run or fetch")
            ])
    }

    @Test func projectINIGivesNameAndVersion() {
        let ini = """
            # a comment
            [other]
            name = not-this
            [project]
            name = slurm-setup
            type = application
            version = 2.1.0
            """
        let identity = Project.identity(fromINI: ini)
        #expect(identity.name == "slurm-setup" && identity.version == "2.1.0")
        #expect(Project.identity(fromINI: "[project]\n").name == nil)
    }

    @Test func scriptsRunInByteOrderAndTestsApart() {
        let spec = ClusterInitSpec(
            project: "app", version: "1", spec: "default",
            files: ["scripts/20-b.sh", "scripts/10-a.sh", "scripts/100-c.sh", "files/x", "tests/t.sh", "scripts/B.sh"].map {
                ProjectFile(path: $0, content: Data())
            })
        #expect(spec.scripts.map(\.path) == ["scripts/10-a.sh", "scripts/100-c.sh", "scripts/20-b.sh", "scripts/B.sh"])
        #expect(spec.tests.map(\.path) == ["tests/t.sh"])
        #expect(spec.validate().isEmpty && spec.label == "app:default:1")
        let hostile = ClusterInitSpec(project: "app", version: "1", spec: "default", files: [ProjectFile(path: "../../x", content: Data())])
        #expect(hostile.validate().map(\.field) == ["Files[0].Path"])
    }

    @Test func anAssignmentNamesExactlyOneTarget() throws {
        let decoded = try JSONDecoder().decode(ProjectAssignment.self, from: Data(#"{"Project": "app", "NodeArray": "execute"}"#.utf8))
        #expect(decoded.spec == "default" && decoded.version == "" && decoded.validate().isEmpty)
        #expect(ProjectAssignment(project: "app").validate().map(\.field) == ["NodeArray"])
        #expect(ProjectAssignment(project: "app", nodeArray: "a", nodeID: "n").validate().map(\.field) == ["NodeArray"])
        #expect(ProjectAssignment(project: "a b", spec: "", version: "../1", nodeID: "n").validate().map(\.field) == ["Project", "Spec", "Version"])
    }

    @Test func aNodeReportingAHugeClusterInitIsRefused() {
        var node = Node(id: "n", name: "n", resources: Resources(cpu: 1, memoryMB: 1))
        node.clusterInit = ClusterInitState(
            status: .failed, detail: String(repeating: "x", count: 5000), at: 0, specs: [],
            results: [ScriptResult(spec: "a:b:c", script: "s", exitCode: 1, milliseconds: 1, output: String(repeating: "y", count: 9000))])
        #expect(node.validate().map(\.field) == ["Node.ClusterInit.Detail", "Node.ClusterInit.Results"])
    }
}
