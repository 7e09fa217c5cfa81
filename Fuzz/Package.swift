// swift-tools-version:6.0
// libFuzzer executables for sfnet's parsers (issue 8). A separate package so that the
// project's own `swift build` never links an executable without a main: build one with
//   swift build --package-path Fuzz -c debug --product FuzzPickle --sanitize fuzzer --sanitize address
// (scripts/fuzz.sh builds and runs them all). The bodies live in the main package's
// FuzzTargets library, which the tests use to replay Fuzz/regressions/.
import PackageDescription

let names = ["Pickle": "pickle", "Zip": "zip", "Torch": "torch", "Safetensors": "safetensors",
             "Npy": "npy", "Onnx": "onnx", "OnnxExternal": "onnx-external", "Caffe2": "caffe2"]

let package = Package(
    name: "sfnet-fuzz",
    products: names.keys.sorted().map { .executable(name: "Fuzz\($0)", targets: ["Fuzz\($0)"]) },
    dependencies: [.package(name: "sfnet", path: "..")],
    targets: names.keys.sorted().map {
        .executableTarget(name: "Fuzz\($0)", dependencies: [.product(name: "FuzzTargets", package: "sfnet")],
                          path: "Sources/Fuzz\($0)")
    }
)
