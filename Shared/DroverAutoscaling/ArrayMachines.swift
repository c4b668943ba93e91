public import DroverModel

extension NodeArray {
    /// The count arithmetic of its limits.
    public var limits: MachineCount {
        MachineCount(coresPerMachine: machine.cores, minimum: minCount, maximum: maxCount, maximumCores: maxCoreCount)
    }

    /// The node a machine of this array will be, for constraint checks before it exists:
    /// its class, `Meta.nodearray`, the machine type's attributes and `cpu.numcores`.
    public func hypotheticalNode(datacenter: String = "dc1") -> Node {
        var attributes = machine.attributes
        attributes["cpu.numcores"] = String(machine.cores)
        attributes["kernel.name"] = attributes["kernel.name"] ?? "linux"
        return Node(
            id: "\(name)-hypothetical", name: "\(name)-hypothetical", datacenter: datacenter,
            nodeClass: machine.nodeClass.isEmpty ? name : machine.nodeClass, attributes: attributes, meta: ["nodearray": name],
            resources: Resources(cpu: machine.cpu, memoryMB: machine.memoryMB, diskMB: machine.diskMB))
    }
}
