// swift-tools-version:6.1
import PackageDescription

// A plugin depends on Drover's libraries with one package line (here by path; elsewhere
// `.package(url: "<drover's repository>", from: "<version>")`).
let package = Package(
    name: "drover-audit-plugin",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "drover", path: "../../..")],
    targets: [
        .executableTarget(
            name: "AuditPlugin",
            dependencies: [.product(name: "DroverMessaging", package: "drover"), .product(name: "DroverModel", package: "drover")],
            path: "Sources/AuditPlugin"
        )
    ]
)
