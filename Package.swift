// swift-tools-version:6.1
import PackageDescription

/// Every target builds with the same settings; the explicit import check (see docs/architecture.md) makes the
/// module table below a rule the compiler enforces.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "drover",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "api-gateway", targets: ["APIGateway"]),
        .executable(name: "scheduler", targets: ["Scheduler"]),
        .executable(name: "health-monitor", targets: ["HealthMonitor"]),
        .executable(name: "autoscaler", targets: ["Autoscaler"]),
        .executable(name: "log-collector", targets: ["LogCollector"]),
        .executable(name: "node-agent", targets: ["NodeAgent"]),
        .executable(name: "local-provider", targets: ["LocalProvider"]),
        .executable(name: "drover", targets: ["DroverCLI"]),
        // For plugins written in Swift: the message contract and the bus (see examples/plugins).
        .library(name: "DroverModel", targets: ["DroverModel"]),
        .library(name: "DroverMessaging", targets: ["DroverMessaging"]),
        .executable(name: "audit-plugin", targets: ["ExampleAuditPlugin"]),
        .executable(name: "messaging-bench", targets: ["MessagingBenchmark"]),
        .executable(name: "consumer-bench", targets: ["ConsumerBenchmark"]),
        .executable(name: "placement-bench", targets: ["PlacementBenchmark"]),
        .executable(name: "job-bench", targets: ["JobBenchmark"]),
        .executable(name: "transaction-bench", targets: ["TransactionBenchmark"]),
        .executable(name: "acl-bench", targets: ["ACLBenchmark"]),
        .executable(name: "autoscale-bench", targets: ["AutoscaleBenchmark"]),
        .executable(name: "schedule-bench", targets: ["ScheduleBenchmark"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        // MARK: Shared modules
        .systemLibrary(
            name: "CRabbitMQ",
            path: "Shared/CRabbitMQ",
            pkgConfig: "librabbitmq",
            providers: [.apt(["librabbitmq-dev"])]
        ),
        .target(name: "DroverModel", path: "Shared/DroverModel", swiftSettings: swiftSettings),
        .target(
            name: "DroverScheduling",
            dependencies: ["DroverModel"],
            path: "Shared/DroverScheduling",
            swiftSettings: swiftSettings
        ),
        .target(name: "DroverHealth", dependencies: ["DroverModel"], path: "Shared/DroverHealth", swiftSettings: swiftSettings),
        .target(
            name: "DroverAutoscaling", dependencies: ["DroverModel", "DroverScheduling"], path: "Shared/DroverAutoscaling",
            swiftSettings: swiftSettings),
        .target(name: "DroverCalendar", path: "Shared/DroverCalendar", swiftSettings: swiftSettings),
        .target(name: "DroverAccess", dependencies: ["DroverModel"], path: "Shared/DroverAccess", swiftSettings: swiftSettings),
        .target(
            name: "DroverMessaging",
            dependencies: [
                "CRabbitMQ",
                "DroverModel",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Shared/DroverMessaging",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "DroverStorage",
            dependencies: [
                "DroverModel",
                "DroverMessaging",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Shared/DroverStorage",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "DroverHTTPClient",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            path: "Shared/DroverHTTPClient",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "DroverRuntime",
            dependencies: [
                "DroverMessaging",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Shared/DroverRuntime",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "DroverControlPlane",
            dependencies: [
                "DroverAccess",
                "DroverAutoscaling",
                "DroverCalendar",
                "DroverModel",
                "DroverHealth",
                "DroverMessaging",
                "DroverRuntime",
                "DroverScheduling",
                "DroverStorage",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Shared/DroverControlPlane",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "DroverGateway",
            dependencies: [
                "DroverAccess",
                "DroverControlPlane",
                "DroverMessaging",
                "DroverModel",
                "DroverScheduling",
                "DroverStorage",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Shared/DroverGateway",
            resources: [.copy("openapi.yaml")],
            swiftSettings: swiftSettings
        ),
        .target(name: "CDroverSystem", path: "Shared/CDroverSystem"),
        .target(
            name: "DroverAgent",
            dependencies: [
                "CDroverSystem",
                "DroverProcess",
                "DroverMessaging",
                "DroverHTTPClient",
                "DroverModel",
                "DroverRuntime",
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Shared/DroverAgent",
            swiftSettings: swiftSettings
        ),

        .target(name: "DroverProcess", path: "Shared/DroverProcess", swiftSettings: swiftSettings),
        .target(
            name: "DroverProviders",
            dependencies: ["DroverModel", "DroverProcess", .product(name: "Logging", package: "swift-log")],
            path: "Shared/DroverProviders",
            swiftSettings: swiftSettings
        ),

        // MARK: Executables
        .executableTarget(
            name: "APIGateway",
            dependencies: serviceDependencies + ["DroverGateway", "DroverMessaging", "DroverModel", "DroverStorage"],
            path: "Services/api-gateway",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "Scheduler",
            dependencies: serviceDependencies,
            path: "Services/scheduler",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "HealthMonitor",
            dependencies: serviceDependencies,
            path: "Services/health-monitor",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "Autoscaler",
            dependencies: serviceDependencies,
            path: "Services/autoscaler",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "LogCollector",
            dependencies: serviceDependencies,
            path: "Services/log-collector",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "NodeAgent",
            dependencies: ["DroverAgent", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Services/node-agent",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "LocalProvider",
            dependencies: [
                "DroverMessaging", "DroverModel", "DroverProviders", "DroverRuntime",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Services/local-provider",
            swiftSettings: swiftSettings
        ),
        // The Swift plugin example, built here as well so that the tests run it (its own
        // Package.swift is how a plugin outside this repository depends on the libraries).
        .executableTarget(
            name: "ExampleAuditPlugin",
            dependencies: ["DroverMessaging", "DroverModel", .product(name: "Logging", package: "swift-log")],
            path: "examples/plugins/swift-audit/Sources/AuditPlugin",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "DroverCLI",
            dependencies: [
                "DroverHTTPClient",
                "DroverModel",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Services/drover",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "MessagingBenchmark",
            dependencies: [
                "CRabbitMQ",
                "DroverMessaging",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/messaging-bench",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ConsumerBenchmark",
            dependencies: [
                "DroverMessaging",
                "DroverModel",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/consumer-bench",
            swiftSettings: swiftSettings
        ),

        .executableTarget(
            name: "PlacementBenchmark",
            dependencies: ["DroverModel", "DroverScheduling", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Benchmarks/placement-bench",
            swiftSettings: swiftSettings
        ),

        .executableTarget(
            name: "JobBenchmark",
            dependencies: [.product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Benchmarks/job-bench",
            swiftSettings: swiftSettings
        ),

        .executableTarget(
            name: "TransactionBenchmark",
            dependencies: [
                "DroverStorage",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/transaction-bench",
            swiftSettings: swiftSettings
        ),

        .executableTarget(
            name: "AutoscaleBenchmark",
            dependencies: [
                "DroverAutoscaling", "DroverControlPlane", "DroverModel", "DroverStorage",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/autoscale-bench",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ScheduleBenchmark",
            dependencies: [
                "DroverControlPlane", "DroverModel", "DroverCalendar", "DroverStorage",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/schedule-bench",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ACLBenchmark",
            dependencies: [
                "DroverControlPlane", "DroverGateway", "DroverMessaging", "DroverStorage",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Benchmarks/acl-bench",
            swiftSettings: swiftSettings
        ),

        // MARK: Tests
        .target(
            name: "DroverTestSupport",
            dependencies: [
                "DroverStorage", "DroverProcess", .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/DroverTestSupport", swiftSettings: swiftSettings
        ),
        .testTarget(name: "DroverModelTests", dependencies: ["DroverModel"], path: "Tests/DroverModelTests", swiftSettings: swiftSettings),
        .testTarget(
            name: "DroverAccessTests", dependencies: ["DroverAccess", "DroverModel"], path: "Tests/DroverAccessTests", swiftSettings: swiftSettings),
        .testTarget(
            name: "DroverHealthTests", dependencies: ["DroverModel", "DroverHealth"], path: "Tests/DroverHealthTests", swiftSettings: swiftSettings),
        .testTarget(
            name: "DroverSchedulingTests", dependencies: ["DroverModel", "DroverScheduling"], path: "Tests/DroverSchedulingTests",
            swiftSettings: swiftSettings),
        .testTarget(
            name: "DroverMessagingTests",
            dependencies: [
                "DroverMessaging", "DroverModel", "DroverTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            path: "Tests/DroverMessagingTests", swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DroverStorageTests",
            dependencies: [
                "DroverStorage", "DroverMessaging", "DroverModel", "DroverTestSupport",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/DroverStorageTests", swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DroverControlPlaneTests",
            dependencies: [
                "DroverAutoscaling", "DroverControlPlane", "DroverStorage", "DroverModel", "DroverScheduling", "DroverHealth", "DroverTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            path: "Tests/DroverControlPlaneTests", swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DroverGatewayTests",
            dependencies: [
                "DroverAccess", "DroverGateway", "DroverControlPlane", "DroverMessaging", "DroverStorage", "DroverModel", "DroverScheduling",
                "DroverTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/DroverGatewayTests", swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DroverAgentTests",
            dependencies: [
                "DroverAgent", "DroverModel", "DroverMessaging", "DroverProcess", "DroverTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"), .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/DroverAgentTests", swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DroverAutoscalingTests", dependencies: ["DroverAutoscaling", "DroverModel"], path: "Tests/DroverAutoscalingTests",
            swiftSettings: swiftSettings),
        .testTarget(name: "DroverCalendarTests", dependencies: ["DroverCalendar"], path: "Tests/DroverCalendarTests", swiftSettings: swiftSettings),
        .testTarget(
            name: "DroverRuntimeTests",
            dependencies: [
                "DroverRuntime", "DroverTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
            ],
            path: "Tests/DroverRuntimeTests", swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EndToEndTests", dependencies: ["DroverMessaging", "DroverModel", "DroverProcess", "DroverTestSupport"],
            path: "Tests/EndToEndTests", swiftSettings: swiftSettings
        ),
    ]
)

/// What every control-plane service executable links: the application layer, which brings the
/// runtime (configuration, ops HTTP, metrics, lifecycle), the bus and the database; and its flags.
var serviceDependencies: [Target.Dependency] {
    ["DroverControlPlane", .product(name: "ArgumentParser", package: "swift-argument-parser")]
}
