// Paths of the built sfnet binary (the HDF5 worker runs as `sfnet _hdf5-worker`) and of the Keras fixtures.

import Foundation
import Keras

enum KerasFixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func path(_ relative: String) -> String { root.appendingPathComponent("fixtures/" + relative).path }

    static let keras3 = path("keras/tiny_resnet50_keras3.weights.h5")
    static let keras3Ref = path("keras/tiny_resnet50_keras3_ref.safetensors")
    static let keras2 = path("keras/tiny_resnet50_keras2.h5")
    static let keras2Ref = path("keras/tiny_resnet50_keras2_ref.safetensors")

    /// The sfnet binary beside the test bundle (SwiftPM puts products and the .xctest together).
    static var binary: String {
        if let env = ProcessInfo.processInfo.environment["SFNET_BIN"] { return env }
        for b in Bundle.allBundles where b.bundlePath.hasSuffix(".xctest") {
            let candidate = b.bundleURL.deletingLastPathComponent().appendingPathComponent("sfnet").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return root.appendingPathComponent(".build/debug/sfnet").path
    }

    /// Tight limits for the malformed-file sweeps: a hang costs seconds, not minutes.
    static let sweepLimits: HDF5WorkerLimits = {
        var l = HDF5WorkerLimits.forFile(size: 300_000)
        l.cpuSeconds = 5
        l.wallSeconds = 10
        return l
    }()

    static func tempDir() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("sfnet-keras-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}
