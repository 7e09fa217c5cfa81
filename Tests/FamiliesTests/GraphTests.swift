// The family graph's invariants: channels chain through every node, parameter roles agree
// with what PySlowFast's names say, and the native metadata's owner reads what it writes.

import Families
import Formats
import Foundation
import Train
import XCTest

final class GraphTests: XCTestCase {
    /// Every config the tests can name: the presets, plus small variants (ResNeXt groups, MSRA stride, no fusion BN).
    var configs: [ArchConfig] {
        // The CNN families (the transformers have no NetworkGraph: TransformerLayoutTests covers their tensors).
        var out = ArchConfig.presetNames.map { ArchConfig.preset(named: $0)! }.filter { !$0.model.isTransformer }
        var grouped = ArchConfig.preset(named: "slowfast-r50-8x8")!
        grouped.numGroups = 4
        grouped.widthPerGroup = 16
        grouped.stride1x1 = true
        grouped.fusionNorm = false
        grouped.preset = nil
        out.append(grouped)
        return out
    }

    func testChannelsChainThroughEveryNodeOfEveryPreset() throws {
        for config in configs {
            let graph = config.graph()
            var channels = [Int](repeating: 3, count: graph.lanes)
            func check(_ u: ConvUnit, input: Int, _ what: String) {
                XCTAssertEqual(u.weightShape[1] * u.groups, input, "\(config.summary): \(u.name) (\(what)) reads \(input) channels")
                XCTAssertEqual(u.weightShape.count, 5, u.name)
            }
            for node in graph.nodes {
                switch node {
                case let .unit(u, lane):
                    check(u, input: channels[lane], "unit")
                    channels[lane] = u.outChannels
                case let .bottleneck(block, lane):
                    check(block.a, input: channels[lane], "a")
                    check(block.b, input: block.a.outChannels, "b")
                    check(block.c, input: block.b.outChannels, "c")
                    if let s = block.shortcut {
                        check(s, input: channels[lane], "shortcut")
                        XCTAssertEqual(s.outChannels, block.c.outChannels, block.name)
                    } else {
                        XCTAssertEqual(channels[lane], block.c.outChannels, "\(block.name): identity shortcut needs equal channels")
                    }
                    channels[lane] = block.c.outChannels
                case let .fuse(u, from, into, _):
                    check(u, input: channels[from], "fusion")
                    channels[into] += u.outChannels
                case .maxPool, .stageEnd: break
                }
            }
            XCTAssertEqual(channels.reduce(0, +), graph.head.inputChannels, config.summary)
            XCTAssertEqual(graph.head.poolKernels.count, graph.lanes, config.summary)
        }
    }

    func testRolesAgreeWithPySlowFastNamesAndZeroInitWithTheFinalBN() {
        for config in configs {
            let params = config.graph().parameters
            XCTAssertEqual(Set(params.map(\.name)).count, params.count, "\(config.summary): duplicate names")
            for p in params {
                XCTAssertEqual(p.role.isNorm, WeightDecayPolicy.isBatchNorm(p.name) && !p.name.hasSuffix("running_mean")
                               && !p.name.hasSuffix("running_var") && !p.name.hasSuffix("num_batches_tracked"), p.name)
                XCTAssertEqual(p.role.isLearnable, ArchConfig.isLearnable(p.name), p.name)
                XCTAssertEqual(p.zeroInit, FreshInit.isZeroInitFinalBN(p.name), p.name)
                XCTAssertEqual(p.dtype, p.role == .batchCounter ? .i64 : .f32, p.name)
            }
        }
        // The published count (PyTorch's sum of numel over model.parameters()) through the roles.
        XCTAssertEqual(ArchConfig.preset(named: "slowfast-r50-8x8")!.parameterCount, 34_566_488)
    }

    func testTheSlowFastGraphHasTwoLanesInTheFrameRatioOfAlpha() {
        let graph = ArchConfig.preset(named: "slowfast-r50-4x16")!.graph()
        XCTAssertEqual(graph.inputs.map(\.name), ["slow", "fast"])
        XCTAssertEqual(graph.inputs.map(\.frames), [4, 32])
        XCTAssertEqual(graph.head.poolKernels, [Triple(4, 7, 7), Triple(32, 7, 7)])
        let resnet = ArchConfig.preset(named: "resnet50")!.graph()
        XCTAssertEqual(resnet.inputs.map(\.accepts2D), [true])
        XCTAssertEqual(resnet.nodes.compactMap { if case .fuse = $0 { return 1 } else { return nil } }.count, 0)
    }

    func testNativeMetadataReadsWhatItWritesAndSaysWhyAFileIsNotNative() throws {
        let arch = ArchConfig.preset(named: "slow-r50-8x8")!
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("families-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let t = FreshInit.zeros([2])
        func write(_ name: String, _ meta: [(String, String)]) throws -> Checkpoint {
            let path = dir.appendingPathComponent(name).path
            try SafetensorsWriter.write([SafetensorsWriter.Item(name: "x", tensor: t)], metadata: meta, to: path, overwrite: true)
            return try CheckpointReader.read(path: path)
        }
        let header = try NativeMetadata.header(arch)
        XCTAssertEqual(header.map(\.0), ["sfnet.format", "sfnet.arch", "sfnet.naming"])
        XCTAssertEqual(try NativeMetadata.requireNative(try write("ok.safetensors", header)), arch)
        let cases: [([(String, String)], String)] = [
            (header.filter { $0.0 != "sfnet.format" }, "no sfnet.format \"1\" metadata"),
            (header.filter { $0.0 != "sfnet.arch" }, "no sfnet.arch metadata"),
            (header.map { $0.0 == "sfnet.naming" ? ($0.0, "mmaction2") : $0 }, "sfnet.naming is 'mmaction2', expected 'pyslowfast'"),
        ]
        for (i, (meta, reason)) in cases.enumerated() {
            let ck = try write("bad\(i).safetensors", meta)
            XCTAssertEqual(NativeMetadata.notNativeReason(ck), reason)
            XCTAssertThrowsError(try NativeMetadata.requireNative(ck)) { XCTAssertEqual("\($0)", "not native sfnet weights: \(reason)") }
        }
        let broken = try write("broken.safetensors", header.map { $0.0 == "sfnet.arch" ? ($0.0, "{\"model\": \"slow\"}") : $0 })
        XCTAssertThrowsError(try NativeMetadata.architecture(in: broken)) { XCTAssertTrue("\($0)".contains("invalid architecture config"), "\($0)") }
        XCTAssertNil(try NativeMetadata.architecture(in: try write("none.safetensors", [])))
    }
}
