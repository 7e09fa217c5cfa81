// Hand-built checkpoints for the Convert tests: tensors made from
// ArchConfig.expectedParameters() with distinct deterministic values, and the
// same tensors under pytorchvideo and mmaction2 names (written independently of
// the key-map tables, so the tables are checked against a second statement).

import Families
import Foundation
import XCTest
import Formats
@testable import Convert

enum Fixtures {
    /// R50 depths, width 4, beta_inv 4, 5 classes, fusion kernel 7.
    static var tiny: ArchConfig { tinySlowFast(width: 4, betaInv: 4) }

    /// The tiny config as a single slow pathway.
    static var tinySlow: ArchConfig { tinySlowOnly(width: 4) }

    /// SlowFast R50 8x8 topology at a small width.
    static func tinySlowFast(width: Int, betaInv: Int) -> ArchConfig {
        var c = ArchConfig.preset(named: "slowfast-r50-8x8")!
        c.widthPerGroup = width
        c.betaInv = betaInv
        c.numClasses = 5
        c.preset = nil
        return c
    }

    /// Slow-only R50 topology at a small width.
    static func tinySlowOnly(width: Int) -> ArchConfig {
        var c = ArchConfig.preset(named: "slow-r50-8x8")!
        c.widthPerGroup = width
        c.numClasses = 5
        c.preset = nil
        return c
    }

    /// Element `i` of tensor number `k`: distinct per tensor, exact in f16 (multiples of 1/16 below 64).
    static func value(_ k: Int, _ i: Int) -> Float {
        Float((k * 131 + i * 7) % 2048) / 16 - 64
    }

    static func tensor(_ shape: [Int], _ dtype: DType, _ value: (Int) -> Float) -> Tensor {
        let count = shape.reduce(1, *)
        let buffer = OwnedBuffer(count: count * dtype.size)
        for i in 0 ..< count {
            let v = value(i)
            switch dtype {
            case .f32: buffer.pointer.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: i * 4, as: UInt32.self)
            case .f16: buffer.pointer.storeBytes(of: Float16(v).bitPattern.littleEndian, toByteOffset: i * 2, as: UInt16.self)
            case .bf16: buffer.pointer.storeBytes(of: DTypeCast.floatToBF16(v).littleEndian, toByteOffset: i * 2, as: UInt16.self)
            case .f64: buffer.pointer.storeBytes(of: Double(v).bitPattern.littleEndian, toByteOffset: i * 8, as: UInt64.self)
            case .i64: buffer.pointer.storeBytes(of: Int64(v).littleEndian, toByteOffset: i * 8, as: Int64.self)
            default: fatalError("fixture dtype \(dtype) not needed")
            }
        }
        return Tensor(dtype: dtype, shape: shape, data: buffer.bytes)
    }

    /// Every expected tensor of `config` with canonical names; floats in `dtype`,
    /// num_batches_tracked I64 holding 1000 + its index.
    static func canonical(_ config: ArchConfig, dtype: DType = .f32) -> TensorMap {
        var map = TensorMap()
        for (k, e) in config.expectedParameters().enumerated() {
            if e.dtype == .i64 {
                map.set(e.name, tensor(e.shape, .i64) { _ in Float(1000 + k) })
            } else {
                map.set(e.name, tensor(e.shape, dtype) { value(k, $0) })
            }
        }
        return map
    }

    /// Tensors of the right shapes whose bytes all view one shared zero buffer.
    static func shapeOnly(_ config: ArchConfig) -> TensorMap {
        let expected = config.expectedParameters()
        let largest = expected.map { $0.shape.reduce(1, *) * $0.dtype.size }.max() ?? 0
        let zeros = OwnedBuffer(count: largest)
        zeros.pointer.initializeMemory(as: UInt8.self, repeating: 0, count: largest)
        var map = TensorMap()
        for e in expected {
            map.set(e.name, Tensor(dtype: e.dtype, shape: e.shape, data: zeros.bytes.slice(0, e.shape.reduce(1, *) * e.dtype.size)))
        }
        return map
    }

    static func shapes(_ config: ArchConfig) -> [String: [Int]] {
        Dictionary(uniqueKeysWithValues: config.expectedParameters().map { ($0.name, $0.shape) })
    }

    static func checkpoint(_ tensors: TensorMap) -> Checkpoint {
        Checkpoint(format: .safetensors, tensors: tensors)
    }

    // MARK: Other namings, written out by hand

    /// Capture groups of `pattern` matched against the whole of `s`, or nil.
    static func groups(_ s: String, _ pattern: String) -> [String]? {
        let re = try! NSRegularExpression(pattern: "^" + pattern + "$")
        guard let m = re.firstMatch(in: s, range: NSRange(s.startIndex..., in: s)) else { return nil }
        return (1 ..< m.numberOfRanges).map { Range(m.range(at: $0), in: s).map { String(s[$0]) } ?? "" }
    }

    /// pytorchvideo's name for canonical `name` (slowfast_r50 layout, or slow_r50 when single-pathway).
    static func pytorchvideoName(_ name: String, twoPathways: Bool) -> String {
        if let g = groups(name, #"s1\.pathway(\d)_stem\.(conv|bn)\.(\w+)"#) {
            let module = g[1] == "conv" ? "conv" : "norm"
            return twoPathways ? "blocks.0.multipathway_blocks.\(g[0]).\(module).\(g[2])" : "blocks.0.\(module).\(g[2])"
        }
        if let g = groups(name, #"s(\d)_fuse\.(conv_f2s|bn)\.(\w+)"#) {
            let module = g[1] == "conv_f2s" ? "conv_fast_to_slow" : "norm"
            return "blocks.\(Int(g[0])! - 1).multipathway_fusion.\(module).\(g[2])"
        }
        if let g = groups(name, #"s(\d)\.pathway(\d)_res(\d+)\.([\w.]+)\.(\w+)"#) {
            let stage = Int(g[0])! - 1
            let module: String
            switch g[3] {
            case "branch1": module = "branch1_conv"
            case "branch1_bn": module = "branch1_norm"
            case "branch2.a", "branch2.b", "branch2.c": module = "branch2.conv_" + g[3].suffix(1)
            default: module = "branch2.norm_" + g[3].dropLast(3).suffix(1)   // branch2.a_bn -> norm_a
            }
            let block = twoPathways ? "blocks.\(stage).multipathway_blocks.\(g[1]).res_blocks.\(g[2])"
                                    : "blocks.\(stage).res_blocks.\(g[2])"
            return "\(block).\(module).\(g[4])"
        }
        if let g = groups(name, #"head\.projection\.(\w+)"#) {
            return "blocks.\(twoPathways ? 6 : 5).proj.\(g[0])"
        }
        fatalError("no pytorchvideo name for \(name)")
    }

    /// mmaction2's name for canonical `name` (ResNet3dSlowFast or ResNet3dSlowOnly).
    static func mmaction2Name(_ name: String, twoPathways: Bool) -> String {
        func path(_ p: String) -> String { twoPathways ? (p == "0" ? "backbone.slow_path" : "backbone.fast_path") : "backbone" }
        if let g = groups(name, #"s1\.pathway(\d)_stem\.(conv|bn)\.(\w+)"#) {
            return "\(path(g[0])).conv1.\(g[1]).\(g[2])"
        }
        if let g = groups(name, #"s(\d)_fuse\.(conv_f2s|bn)\.(\w+)"#) {
            let lateral = g[0] == "1" ? "conv1_lateral" : "layer\(Int(g[0])! - 1)_lateral"
            return "backbone.slow_path.\(lateral).\(g[1] == "conv_f2s" ? "conv" : "bn").\(g[2])"
        }
        if let g = groups(name, #"s(\d)\.pathway(\d)_res(\d+)\.([\w.]+)\.(\w+)"#) {
            let modules = ["branch1": "downsample.conv", "branch1_bn": "downsample.bn",
                           "branch2.a": "conv1.conv", "branch2.a_bn": "conv1.bn",
                           "branch2.b": "conv2.conv", "branch2.b_bn": "conv2.bn",
                           "branch2.c": "conv3.conv", "branch2.c_bn": "conv3.bn"]
            return "\(path(g[1])).layer\(Int(g[0])! - 1).\(g[2]).\(modules[g[3]]!).\(g[4])"
        }
        if let g = groups(name, #"head\.projection\.(\w+)"#) {
            return "cls_head.fc_cls.\(g[0])"
        }
        fatalError("no mmaction2 name for \(name)")
    }

    /// `tensors` renamed by `rename`, in the same order, sharing the bytes.
    static func renamed(_ tensors: TensorMap, _ rename: (String) -> String) -> TensorMap {
        var map = TensorMap()
        for (name, t) in tensors.ordered { map.set(rename(name), t) }
        return map
    }

    /// A [rows, cols] f32 matrix with its last `trailing` columns moved to the front.
    static func moveTrailingColumnsFirst(_ t: Tensor, trailing: Int) -> Tensor {
        let cols = t.shape[1]
        let v = t.floats()
        return tensor(t.shape, t.dtype) { i in
            let (r, c) = (i / cols, i % cols)
            let from = c < trailing ? cols - trailing + c : c - trailing
            return v[r * cols + from]
        }
    }

    /// Asserts two tensors have the same dtype, shape and bytes.
    static func assertSameBytes(_ a: Tensor?, _ b: Tensor?, _ name: String, file: StaticString = #filePath, line: UInt = #line) {
        guard let a, let b else { return XCTFail("\(name): missing", file: file, line: line) }
        XCTAssertEqual(a.dtype, b.dtype, name, file: file, line: line)
        XCTAssertEqual(a.shape, b.shape, name, file: file, line: line)
        XCTAssertTrue(a.data.array == b.data.array, "\(name): bytes differ", file: file, line: line)
    }
}
