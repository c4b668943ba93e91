import DroverModel
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// What the agent finds on its machine: CPU, memory, disk, OS and kernel, drivers; plus the
/// datacenter, class, metadata and resource overrides from its configuration.
struct Fingerprint {
    struct Configuration {
        var datacenter = "dc1"
        var nodeClass = ""
        var meta: [String: String] = [:]
        /// Attributes given in the configuration, over the fingerprinted ones.
        var attributes: [String: String] = [:]
        /// Overrides of what is detected, as Nomad's `cpu_total_compute` and `memory_total_mb`.
        var cpuTotalCompute: Int?
        var memoryMB: Int?
        var diskMB: Int?
        var name: String?
    }

    static func node(id: String, dataDirectory: URL, configuration: Configuration) -> Node {
        var system = utsname()
        uname(&system)
        func text<T>(_ value: T) -> String {
            withUnsafeBytes(of: value) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        let kernel = text(system.sysname).lowercased()
        let kernelVersion = text(system.release)
        let arch = text(system.machine)
        let hostname = ProcessInfo.processInfo.hostName
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let mhz = cpuMHz()
        let memory = Int(ProcessInfo.processInfo.physicalMemory / 1_048_576)
        var disk = 0
        var stats = statvfs()
        if statvfs(dataDirectory.path, &stats) == 0 { disk = Int(UInt64(stats.f_bavail) * UInt64(stats.f_frsize) / 1_048_576) }
        let os = osRelease()

        var attributes: [String: String] = [
            "kernel.name": kernel, "kernel.version": kernelVersion, "kernel.arch": arch, "cpu.arch": arch,
            "cpu.numcores": String(cores), "cpu.frequency": String(mhz), "cpu.totalcompute": String(cores * mhz),
            "memory.totalbytes": String(ProcessInfo.processInfo.physicalMemory), "unique.hostname": hostname,
            "unique.storage.volume": dataDirectory.path, "os.name": os["ID"] ?? kernel, "os.version": os["VERSION_ID"] ?? "",
        ]
        let drivers = Drivers.detect()
        for (name, info) in drivers where info.detected { attributes["driver.\(name)"] = "1" }
        attributes.merge(configuration.attributes) { $1 }
        return Node(
            id: id, name: configuration.name ?? hostname, datacenter: configuration.datacenter, nodeClass: configuration.nodeClass,
            drivers: drivers, attributes: attributes, meta: configuration.meta,
            resources: Resources(
                cpu: configuration.cpuTotalCompute ?? cores * mhz, memoryMB: configuration.memoryMB ?? memory,
                diskMB: configuration.diskMB ?? disk))
    }

    /// The clock of the first CPU in /proc/cpuinfo, rounded; 1000 when it does not say.
    static func cpuMHz() -> Int {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return 1000 }
        for line in info.split(separator: "\n") where line.hasPrefix("cpu MHz") {
            if let value = line.split(separator: ":").last.flatMap({ Double($0.trimmingCharacters(in: .whitespaces)) }) {
                return max(Int(value.rounded()), 1)
            }
        }
        return 1000
    }

    static func osRelease() -> [String: String] {
        guard let text = try? String(contentsOfFile: "/etc/os-release", encoding: .utf8) else { return [:] }
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { continue }
            values[String(parts[0])] = parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        }
        return values
    }
}

/// The task drivers and whether this machine can run them.
enum Drivers {
    static let cgroupRoot = "/sys/fs/cgroup"

    static func detect() -> [String: DriverInfo] {
        var drivers = ["raw_exec": DriverInfo(detected: true, healthy: true, healthDescription: "Healthy")]
        if let problem = execUnavailable() {
            drivers["exec"] = DriverInfo(detected: false, healthy: false, healthDescription: problem)
        } else {
            drivers["exec"] = DriverInfo(detected: true, healthy: true, healthDescription: "Healthy")
        }
        return drivers
    }

    /// Why the isolating `exec` driver cannot run here, or `nil` when it can: it needs root,
    /// `setpriv`, and a cgroup v2 hierarchy whose root delegates the cpu and memory controllers.
    static func execUnavailable() -> String? {
        guard getuid() == 0 else { return "the exec driver needs the agent to run as root" }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else { return "setpriv (util-linux) is not installed" }
        guard let controllers = try? String(contentsOfFile: "\(cgroupRoot)/cgroup.controllers", encoding: .utf8) else {
            return "no cgroup v2 hierarchy at \(cgroupRoot)"
        }
        let available = Set(controllers.split(whereSeparator: \.isWhitespace).map(String.init))
        guard available.isSuperset(of: ["cpu", "memory"]) else { return "cgroup v2 at \(cgroupRoot) lacks the cpu and memory controllers" }
        guard FileManager.default.isWritableFile(atPath: "\(cgroupRoot)/cgroup.subtree_control") else {
            return "cannot delegate controllers in \(cgroupRoot)"
        }
        return nil
    }
}
