// Issue 8, part 5: every KerasLimits field just within (accepted) and just past (refused with
// that limit's message), on both sides of the worker boundary: the worker's reader
// (HDF5File, run here in-process on the committed fixtures) and the parent's check of
// what the worker sent back (KerasFraming.decode, on hand-made framings).

import CHDF5
import XCTest
import Formats
@testable import Keras

final class KerasLimitsTests: XCTestCase {
    // MARK: the parent's check of the worker output

    /// The framing of `layers` (name, weights as (name, shape)) as the worker writes it.
    func framed(_ layers: [(String, [(String, [Int])])], weightless: Int = 0) -> Checkpoint {
        let w = KerasWeights(layout: .layerNames, layers: layers.map { name, weights in
            KerasLayer(name: name, weights: weights.map { wname, shape in
                (wname, Tensor(dtype: .f32, shape: shape, data: Bytes.copying([UInt8](repeating: 0, count: 4 * shape.reduce(1, *)))))
            })
        }, weightlessLayers: weightless)
        let (items, metadata) = KerasFraming.encode(w)
        var c = Checkpoint(format: .safetensors, metadata: metadata)
        for it in items { c.tensors.set(it.name, it.tensor) }
        return c
    }

    func assertDecodes(_ c: Checkpoint, _ limits: KerasLimits, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNoThrow(try KerasFraming.decode(c, limits: limits), file: file, line: line)
    }

    func assertRefused(_ c: Checkpoint, _ limits: KerasLimits, _ phrase: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try KerasFraming.decode(c, limits: limits), file: file, line: line) {
            XCTAssertTrue("\($0)".contains(phrase), "expected '\(phrase)': \($0)", file: file, line: line)
        }
    }

    func layers(_ n: Int) -> [(String, [(String, [Int])])] { (0 ..< n).map { ("l\($0)", [("w", [1])]) } }

    func testDecodeLayerLimit() {
        var limits = KerasLimits(); limits.maxLayers = 3
        assertDecodes(framed(layers(3)), limits)
        assertRefused(framed(layers(4)), limits, "4 layers, limit 3 layers")
        assertDecodes(framed(layers(1), weightless: 3), limits)
        assertRefused(framed(layers(1), weightless: 4), limits, "4 weightless layers, limit 3 layers")
    }

    func testDecodeWeightsPerLayerLimit() {
        var limits = KerasLimits(); limits.maxWeightsPerLayer = 2
        assertDecodes(framed([("l", [("a", [1]), ("b", [1])])]), limits)
        assertRefused(framed([("l", [("a", [1]), ("b", [1]), ("c", [1])])]), limits, "layer 'l': 3 weights, limit 2")
    }

    func testDecodeNameLimit() {
        var limits = KerasLimits(); limits.maxNameBytes = 8
        assertDecodes(framed([("12345678", [("abcdefgh", [1])])]), limits)
        assertRefused(framed([("123456789", [("w", [1])])]), limits, "name of 9 bytes, name limit 8")
        assertRefused(framed([("l", [("abcdefghi", [1])])]), limits, "weight 0 of layer 'l': name of 9 bytes, name limit 8")
    }

    func testDecodeRankLimit() {
        var limits = KerasLimits(); limits.maxRank = 3
        assertDecodes(framed([("l", [("w", [1, 2, 1])])]), limits)
        assertRefused(framed([("l", [("w", [1, 2, 1, 1])])]), limits, "tensor 0/0 has rank 4, rank limit 3")
    }

    func testDecodeElementLimit() {
        var limits = KerasLimits(); limits.maxElements = 12
        assertDecodes(framed([("l", [("w", [3, 4])])]), limits)
        assertRefused(framed([("l", [("w", [13])])]), limits, "tensor 0/0 has 13 elements, limit 12")
    }

    func testDecodeTotalBytesLimit() {
        let c = framed([("a", [("w", [2, 3])]), ("b", [("w", [6])])])   // 48 bytes in all
        var limits = KerasLimits(); limits.maxTotalBytes = 48
        assertDecodes(c, limits)
        limits.maxTotalBytes = 47
        assertRefused(c, limits, "tensors exceed 47 bytes")
    }

    func testTensorBudgetScalesWithTheFileSize() {
        XCTAssertEqual(KerasLimits.forFile(size: 1000).maxTotalBytes, 8000 + (64 << 20))
        // 8 x size + 64 MiB reaches the 16 GiB cap exactly at this size; beyond it the cap holds.
        let capAt = ((1 << 34) - (64 << 20)) / 8
        XCTAssertEqual(KerasLimits.forFile(size: capAt - 1).maxTotalBytes, (1 << 34) - 8)
        XCTAssertEqual(KerasLimits.forFile(size: capAt).maxTotalBytes, 1 << 34)
        XCTAssertEqual(KerasLimits.forFile(size: capAt + 1).maxTotalBytes, 1 << 34)
        XCTAssertEqual(KerasLimits.forFile(size: Int.max).maxTotalBytes, 1 << 34)   // no overflow
        // The worker: 20 s of CPU plus 1 s per 10 MB, 10 s more of wall clock, 1 GiB + twice the tensors of address space.
        let below = HDF5WorkerLimits.forFile(size: 9_999_999), at = HDF5WorkerLimits.forFile(size: 10_000_000)
        XCTAssertEqual([below.cpuSeconds, at.cpuSeconds], [20, 21])
        XCTAssertEqual([below.wallSeconds, at.wallSeconds], [30, 31])
        XCTAssertEqual(at.addressSpace, (1 << 30) + 2 * KerasLimits.forFile(size: 10_000_000).maxTotalBytes)
    }

    // MARK: the worker's reader, on the fixtures

    struct Stats { var layers = 0, weightsPerLayer = 0, rank = 0, elements = 0, totalBytes = 0, nameBytes = 0 }

    /// What `w` declares against each limit (layers counted with the weightless ones, as the reader counts them).
    func stats(_ w: KerasWeights) -> Stats {
        var s = Stats()
        s.layers = w.layers.count + w.weightlessLayers
        for l in w.layers {
            s.weightsPerLayer = max(s.weightsPerLayer, l.weights.count)
            s.nameBytes = max(s.nameBytes, l.name.utf8.count)
            for (n, t) in l.weights {
                s.nameBytes = max(s.nameBytes, n.utf8.count)
                s.rank = max(s.rank, t.shape.count)
                s.elements = max(s.elements, t.numel)
                s.totalBytes += t.byteCount
            }
        }
        return s
    }

    func assertReaderLimit(_ path: String, _ field: WritableKeyPath<KerasLimits, Int>, at value: Int, _ phrase: (Int) -> String,
                           file: StaticString = #filePath, line: UInt = #line) {
        var limits = KerasLimits()
        limits[keyPath: field] = value
        XCTAssertNoThrow(try HDF5File.read(path: path, limits: limits), "limit \(value)", file: file, line: line)
        limits[keyPath: field] = value - 1
        XCTAssertThrowsError(try HDF5File.read(path: path, limits: limits), "limit \(value - 1)", file: file, line: line) {
            XCTAssertTrue("\($0)".contains(phrase(value - 1)), "expected '\(phrase(value - 1))': \($0)", file: file, line: line)
        }
    }

    func testReaderLimitsOnTheKeras2Fixture() throws {
        let path = KerasFixtures.keras2
        let s = stats(try HDF5File.read(path: path, limits: KerasLimits()))
        XCTAssertGreaterThan(s.layers, 10)
        assertReaderLimit(path, \.maxLayers, at: s.layers) { "attribute layer_names: \(s.layers) elements, limit \($0)" }
        assertReaderLimit(path, \.maxWeightsPerLayer, at: s.weightsPerLayer) { "\(s.weightsPerLayer) weights, limit \($0)" }
        assertReaderLimit(path, \.maxNameBytes, at: s.nameBytes) { "name limit \($0)" }
        assertReaderLimit(path, \.maxRank, at: s.rank) { "has rank \(s.rank), rank limit \($0)" }
        assertReaderLimit(path, \.maxElements, at: s.elements) { "exceed \($0) elements" }
        assertReaderLimit(path, \.maxTotalBytes, at: s.totalBytes) { "tensors exceed \($0) bytes in all" }
    }

    func testReaderLimitsOnTheKeras3Fixture() throws {
        let path = KerasFixtures.keras3
        let s = stats(try HDF5File.read(path: path, limits: KerasLimits()))
        assertReaderLimit(path, \.maxLayers, at: s.layers) { "/layers/: \(s.layers) links, limit \($0)" }
        assertReaderLimit(path, \.maxWeightsPerLayer, at: s.weightsPerLayer) { "\(s.weightsPerLayer) vars, limit \($0)" }
        // Its groups are named after the layer classes (`batch_normalization_12`), which the weights do not carry.
        let file = H5Fopen(path, sfnet_h5f_acc_rdonly(), sfnet_h5p_default())
        defer { H5Fclose(file) }
        let reader = HDF5File.Reader(limits: KerasLimits())
        let group = try reader.openGroup(file, "layers", where: "/")
        defer { H5Gclose(group) }
        let longest = try reader.linkNames(group, where: "/layers/").map(\.utf8.count).max()!
        XCTAssertGreaterThan(longest, s.nameBytes)
        assertReaderLimit(path, \.maxNameBytes, at: longest) { "name of \(longest) bytes, name limit \($0)" }
        assertReaderLimit(path, \.maxRank, at: s.rank) { "has rank \(s.rank), rank limit \($0)" }
        assertReaderLimit(path, \.maxElements, at: s.elements) { "exceed \($0) elements" }
        assertReaderLimit(path, \.maxTotalBytes, at: s.totalBytes) { "tensors exceed \($0) bytes in all" }
    }

    /// The two limits the parent hands the worker on its command line reach it, at the byte.
    func testWorkerReceivesTheTensorLimits() throws {
        let path = KerasFixtures.keras2
        let s = stats(try HDF5File.read(path: path, limits: KerasLimits()))
        var limits = KerasFixtures.sweepLimits
        limits.keras.maxTotalBytes = s.totalBytes
        limits.keras.maxElements = s.elements
        XCTAssertNoThrow(try HDF5Worker.read(path: path, executable: KerasFixtures.binary, limits: limits))
        for (total, elements, phrase) in [(s.totalBytes - 1, s.elements, "tensors exceed \(s.totalBytes - 1) bytes"),
                                          (s.totalBytes, s.elements - 1, "exceed \(s.elements - 1) elements")] {
            limits.keras.maxTotalBytes = total
            limits.keras.maxElements = elements
            XCTAssertThrowsError(try HDF5Worker.read(path: path, executable: KerasFixtures.binary, limits: limits)) {
                XCTAssertTrue("\($0)".hasPrefix("malformed HDF5 file: \(path) ("), "\($0)")
                XCTAssertTrue("\($0)".contains(phrase), "expected '\(phrase)': \($0)")
            }
        }
    }
}
