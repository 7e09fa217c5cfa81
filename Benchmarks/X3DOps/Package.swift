// swift-tools-version:6.0
// The X3D ops microbenchmark's Swift side (Benchmarks/x3d_ops_bench.py runs it beside PyTorch):
// a package of its own so that the root package gains no executable; it uses the root's Networks.
import PackageDescription

let package = Package(
    name: "x3d-ops-bench",
    dependencies: [.package(name: "sfnet", path: "../..")],
    targets: [
        .executableTarget(name: "x3d-ops-bench", dependencies: [.product(name: "Networks", package: "sfnet")]),
    ]
)
