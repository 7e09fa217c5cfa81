// swift-tools-version:6.0
// sfnet: convert, verify and fine-tune SlowFast video action-recognition weights.
import Foundation
import PackageDescription

let package = Package(
    name: "sfnet",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "sfnet", targets: ["sfnet"]),
        .library(name: "Formats", targets: ["Formats"]),
        .library(name: "Convert", targets: ["Convert"]),
        .library(name: "Families", targets: ["Families"]),
        .library(name: "Networks", targets: ["Networks"]),
        .library(name: "Verify", targets: ["Verify"]),
        .library(name: "ONNX", targets: ["ONNX"]),
        .library(name: "Report", targets: ["Report"]),
        .library(name: "FuzzTargets", targets: ["FuzzTargets"]),
        .library(name: "Keras", targets: ["Keras"]),
        .library(name: "Train", targets: ["Train"]),
        .library(name: "Video", targets: ["Video"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // RFC 4180 field splitting of CSV manifest records (Video/TextRecords.swift finds the records).
        .package(url: "https://github.com/yaslab/CSV.swift", from: "2.5.2"),
        // YAML of PySlowFast configs (Finetune/YAMLData.swift reads it as data only: no tags, anchors or merge keys).
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // System libraries: shim headers only; Debian packages named as providers.
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // libdeflate's CRC-32 uses PCLMULQDQ/VPCLMULQDQ: several times zlib's speed on large checkpoints.
        .systemLibrary(name: "CDeflate", pkgConfig: "libdeflate", providers: [.apt(["libdeflate-dev"])]),
        // libhdf5 (Debian's serial flavour; pkg-config name `hdf5`), called only by the Keras worker process.
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5", providers: [.apt(["libhdf5-dev"])]),
        // FFmpeg: demux/decode/encode/scale for Video (one module: the four libraries' headers include each other).
        .systemLibrary(name: "CFFmpeg", pkgConfig: "libavformat",
                       providers: [.apt(["libavformat-dev", "libavcodec-dev", "libavutil-dev", "libswscale-dev"])]),
        // Two Linux system calls glibc hides behind _GNU_SOURCE (copy_file_range, sync_file_range).
        .target(name: "CSys"),
        // The hot element-wise loops (attention softmax rows, GELU, Swish) in C, built twice: AVX-512 through
        // per-function target attributes (no compiler flags) and the baseline; chosen once at run time.
        .target(name: "CKernels"),
        // ONNX's onnx.proto as C (generated once by protoc-c, committed) on libprotobuf-c.
        .target(name: "CONNX", linkerSettings: [.linkedLibrary("protobuf-c")]),

        // bytes <-> named tensors; knows file formats, nothing about models.
        .target(name: "Formats", dependencies: ["CZlib", "CCrypto", "CDeflate", "CSys"]),
        // network families as data: each family's `sfnet.arch` config and presets, its graph (the one
        // description the executors, the canonical names, the trainable parameters and the ONNX export read),
        // fresh initialisation. Knows no file format beyond Formats' tensors, runs nothing.
        .target(name: "Families", dependencies: ["Formats"]),
        // named tensors -> canonical weights of a family.
        .target(name: "Convert", dependencies: ["Formats", "Families"]),
        // the network of an ArchConfig as an ONNX graph (export), through CONNX.
        .target(name: "ONNX", dependencies: ["CONNX", "Formats", "Families", "Convert"]),
        // Keras HDF5 weights: libhdf5 in a worker process, then kernels/biases/epsilons to canonical.
        .target(name: "Keras", dependencies: ["CHDF5", "Formats", "Families", "Convert"]),
        // tensors and ops (forward + backward side by side, Ops/), and the executors that run a family's
        // graph: eval mode with BN folded (Eval/) and training mode with backward (Train/).
        // the thread pool's Swift side (runParts on CKernels' pool.c), shared by Networks and Train.
        .target(name: "Parallel", dependencies: ["CKernels"]),
        .target(name: "Networks", dependencies: ["COpenBLAS", "CKernels", "Parallel", "Formats", "Families"]),
        // reference fixtures, comparisons, the verdict that gates finetune; forward benchmark.
        .target(name: "Verify", dependencies: ["Formats", "Families", "Convert", "Networks", "Train"]),
        // metrics.json / metrics.csv / report.html of runs and experiment grids (inline SVG, no scripts).
        .target(name: "Report"),
        // the bodies of the libFuzzer targets (executables Fuzz<Name> below, with SFNET_FUZZ=1), replayed by tests;
        // Video and Finetune for the text formats (class lists, manifests, frame lists, YAML configs).
        .target(name: "FuzzTargets", dependencies: ["Formats", "Families", "Convert", "ONNX", "Video", "Finetune"]),
        // structure-aware mutators (pickle opcodes, protobuf fields, zip entries) that the fuzz executables'
        // LLVMFuzzerCustomMutator calls; plain C functions so FuzzReplayTests checks their output.
        .target(name: "CFuzzMutators", dependencies: ["CZlib"]),
        // losses, SGD, LR schedule, metrics (mAP), train state: plain Float buffers keyed by
        // canonical parameter name, so it does not depend on SlowFastNet.
        .target(name: "Train", dependencies: ["Formats", "Parallel"]),
        // video decoding, datasets and manifests, clip sampling, augmentation, the prefetching loader, synthetic data.
        .target(name: "Video", dependencies: ["CFFmpeg", "Families", "Convert", "Formats", .product(name: "CSV", package: "CSV.swift")]),
        // data-pipeline benchmark and synthetic-data entry point (Benchmarks/data_bench.py drives it).
        .executableTarget(name: "sfnet-databench", dependencies: ["Video"]),
        // the jobs users came for: finetune (the loop, checkpoints, resume), eval, predict, experiment.
        .target(name: "Finetune", dependencies: ["Train", "Families", "Networks", "Video", "Report", "Verify", "Formats", "Convert",
                                                .product(name: "Yams", package: "Yams")]),
        // the command line: thin, no logic of its own.
        .executableTarget(name: "sfnet", dependencies: [
            "Formats", "Families", "Convert", "Networks", "Verify", "ONNX", "Keras", "Finetune", "Train", "Video", "CSys",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .testTarget(name: "FormatsTests", dependencies: ["Formats"]),
        .testTarget(name: "FamiliesTests", dependencies: ["Families", "Formats", "Train"]),
        .testTarget(name: "ConvertTests", dependencies: ["Convert", "Formats", "Families"]),
        .testTarget(name: "NetworksTests", dependencies: ["Networks", "CKernels", "Families", "Formats", "Convert", "Verify"]),
        .testTarget(name: "VerifyTests", dependencies: ["Verify", "Formats", "Convert", "Networks", "ONNX", "Finetune", "Train", "Families"]),
        .testTarget(name: "ONNXTests", dependencies: ["ONNX", "CONNX", "Convert", "Formats", "Verify", "Families"]),
        .testTarget(name: "ReportTests", dependencies: ["Report"]),
        .testTarget(name: "FuzzReplayTests", dependencies: ["FuzzTargets", "CFuzzMutators", "Formats"]),
        .testTarget(name: "KerasTests", dependencies: ["Keras", "CHDF5", "Convert", "Formats", "Verify", "sfnet", "Families"]),
        .testTarget(name: "TrainTests", dependencies: ["Train", "Formats"]),
        .testTarget(name: "VideoTests", dependencies: ["Video", "sfnet-databench", "Families"]),
        // PySlowFast YAML configs (the data-only reader, the key table) and the view ensembles.
        .testTarget(name: "ConfigTests", dependencies: ["Finetune", "Families"]),
        .testTarget(name: "CLITests", dependencies: ["Formats", "Convert", "ONNX", "sfnet", "Families"]),
    ]
)

// libFuzzer targets (issue 8), present only when SFNET_FUZZ is set, so that ordinary builds never link
// an executable without a main; each is built on its own with the sanitizers (scripts/fuzz.sh):
//   SFNET_FUZZ=1 swift build --scratch-path .build-fuzz -c release --product FuzzPickle --sanitize fuzzer --sanitize address \
//     -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp
// Their bodies live in FuzzTargets, which FuzzReplayTests replays in `make test`.
if ProcessInfo.processInfo.environment["SFNET_FUZZ"] != nil {
    for name in ["Pickle", "Zip", "Torch", "Safetensors", "Npy", "Onnx", "OnnxExternal", "Caffe2",
                 "Json", "HfConfig", "Yaml", "PySlowFastConfig", "Xlsx", "Csv", "FrameList"] {
        package.targets.append(.executableTarget(name: "Fuzz\(name)", dependencies: ["FuzzTargets", "CFuzzMutators"]))
        package.products.append(.executable(name: "Fuzz\(name)", targets: ["Fuzz\(name)"]))
    }
}
