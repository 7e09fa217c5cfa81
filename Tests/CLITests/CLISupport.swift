// Runs the built `sfnet` binary as a user would and captures what it prints.

import Foundation
import XCTest
@testable import Formats

struct RunResult {
    let status: Int32
    let stdout: String
    let stderr: String
    let signaled: Bool
}

enum CLI {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func fixture(_ relative: String) -> String { root.appendingPathComponent("fixtures/" + relative).path }

    /// The sfnet binary beside the test bundle (SwiftPM puts products and the .xctest together).
    static var binary: String {
        if let env = ProcessInfo.processInfo.environment["SFNET_BIN"] { return env }
        for b in Bundle.allBundles where b.bundlePath.hasSuffix(".xctest") {
            let candidate = b.bundleURL.deletingLastPathComponent().appendingPathComponent("sfnet").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("sfnet").path
        if FileManager.default.isExecutableFile(atPath: exe) { return exe }
        return root.appendingPathComponent(".build/debug/sfnet").path
    }

    @discardableResult
    static func run(_ args: [String], environment: [String: String] = [:], in directory: URL? = nil) throws -> RunResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        if let directory { p.currentDirectoryURL = directory }
        if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return RunResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                         stderr: String(decoding: e, as: UTF8.self), signaled: p.terminationReason == .uncaughtSignal)
    }

    static func tempDir() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("sfnet-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static func manifest() throws -> [JSONValue] {
        let data = try Data(contentsOf: root.appendingPathComponent("fixtures/manifest.json"))
        guard case .array(let xs) = try data.withUnsafeBytes({ try JSONParser.parse($0) }) else { return [] }
        return xs
    }
}

/// Runs `sfnet finetune` (`args`, with 2 epochs and no --out) straight to the end in dir/straight, and stopped
/// after epoch 1 (--stop-after stands for a kill) then resumed in dir/resumed; asserts that both end on the same
/// checkpoint-epoch002, byte for byte (weights, optimizer state), and returns it.
@discardableResult
func assertResumedRunMatchesTheStraightOne(_ args: [String], in dir: URL, file: StaticString = #filePath, line: UInt = #line) throws -> Checkpoint {
    let straight = dir.appendingPathComponent("straight"), resumed = dir.appendingPathComponent("resumed")
    let s = try CLI.run(args + ["--out", straight.path])
    XCTAssertEqual(s.status, 0, s.stdout + s.stderr, file: file, line: line)
    let k = try CLI.run(args + ["--out", resumed.path, "--stop-after", "1"])
    XCTAssertEqual(k.status, 0, k.stdout + k.stderr, file: file, line: line)
    XCTAssertFalse(FileManager.default.fileExists(atPath: resumed.appendingPathComponent("checkpoint-epoch002.safetensors").path), file: file, line: line)
    let r = try CLI.run(args + ["--out", resumed.path, "--resume"])
    XCTAssertEqual(r.status, 0, r.stdout + r.stderr, file: file, line: line)
    let a = try CheckpointReader.read(path: straight.appendingPathComponent("checkpoint-epoch002.safetensors").path)
    let b = try CheckpointReader.read(path: resumed.appendingPathComponent("checkpoint-epoch002.safetensors").path)
    XCTAssertEqual(a.tensors.names, b.tensors.names, file: file, line: line)
    for name in a.tensors.names { if let u = b.tensors[name] { assertSameTensor(a.tensors[name]!, u, name, file: file, line: line) } }
    return a
}

func assertSameTensor(_ a: Tensor, _ b: Tensor, _ name: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.dtype, b.dtype, "\(name): dtype", file: file, line: line)
    XCTAssertEqual(a.shape, b.shape, "\(name): shape", file: file, line: line)
    guard a.byteCount == b.byteCount else { return XCTFail("\(name): \(a.byteCount) bytes vs \(b.byteCount)", file: file, line: line) }
    if let i = zip(a.data.raw, b.data.raw).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
        XCTFail("\(name): bytes differ first at byte \(i)", file: file, line: line)
    }
}
