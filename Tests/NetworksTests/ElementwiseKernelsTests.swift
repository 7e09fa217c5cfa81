// The C element-wise kernels (CKernels) on their own, under each build this CPU runs: the builds can be
// chosen (the widest the CPU runs, as /proc/cpuinfo tells), the attention softmax rows match double
// precision at every tail length of both vector widths, and Swish's exp and the softmax's exp are one
// core, bit for bit. The ops' oracle checks run under every build in TransformerOpsTests, X3DOpsTests
// and the PyTorch reference tests.

import CKernels
import XCTest
@testable import Networks

final class ElementwiseKernelsTests: XCTestCase {
    func testGenericBuildIsAlwaysAvailableAndChosenBuildsStick() {
        XCTAssertTrue(ElementwiseKernels.available.contains(.generic))
        let saved = ElementwiseKernels.active
        defer { ElementwiseKernels.use(saved) }
        for kernels in ElementwiseKernels.allCases {
            let runs = ElementwiseKernels.available.contains(kernels)
            XCTAssertEqual(ElementwiseKernels.use(kernels), runs, "\(kernels)")
            if runs { XCTAssertEqual(ElementwiseKernels.active, kernels) }
        }
        let forced = ProcessInfo.processInfo.environment["SFNET_KERNELS"]
        #if arch(x86_64)
        // The widest build the CPU runs is the one that runs, unless SFNET_KERNELS said otherwise.
        if forced == nil {
            let widest: ElementwiseKernels = ElementwiseKernels.available.contains(.avx512) ? .avx512
                : ElementwiseKernels.available.contains(.avx2) ? .avx2 : .generic
            XCTAssertEqual(saved, widest)
        }
        if forced == "avx2" && ElementwiseKernels.available.contains(.avx2) { XCTAssertEqual(saved, .avx2) }
        // What the Linux kernel reports of the CPU agrees with the dispatch: a build is available iff its features are listed.
        if let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
           let line = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) {
            let flags = Set(line.split(separator: " ").map(String.init))
            XCTAssertEqual(ElementwiseKernels.available.contains(.avx2), flags.contains("avx2") && flags.contains("fma"), line.description)
            XCTAssertEqual(ElementwiseKernels.available.contains(.avx512),
                           ["avx512f", "avx512dq", "avx512bw", "avx512vl"].allSatisfy(flags.contains), line.description)
        }
        #else
        XCTAssertEqual(ElementwiseKernels.available, [.generic])
        #endif
        if forced == "generic" { XCTAssertEqual(saved, .generic) }
    }

    func testSoftmaxRowKernelsMatchDoubleAtEveryTailLength() {
        forEachKernelBuild { kernels in
            var rng = SeededGenerator(seed: 300)
            // n from 1 to 100: every remainder of 8 and 16 lanes, with and without the two-vector loop.
            for n in 1...100 {
                let scores = (0..<n).map { _ in Float.random(in: -6...6, using: &rng) }
                let dP = (0..<n).map { _ in Float.random(in: -1...1, using: &rng) }
                let what = "n \(n) [\(kernels)]"
                var row = scores
                let m = row.withUnsafeBufferPointer { rowMaximum($0.baseAddress!, n) }
                XCTAssertEqual(m, scores.max()!, what + " max")
                // The truth from the kernel's float argument score - max (rounded as the kernel rounds it).
                let e = scores.map { exp(Double($0 - m)) }, sum = e.reduce(0, +)
                let gotSum = row.withUnsafeMutableBufferPointer { expShifted($0.baseAddress!, n, max: m) }
                XCTAssertEqual(Double(gotSum), sum, accuracy: 1e-6 * sum, what + " sum")
                for j in 0..<n { XCTAssertEqual(Double(row[j]), e[j], accuracy: 2.5e-7 * e[j], what + " exp \(j)") }
                // P and dS = P (dP - d), d = sum of P dP, each way the backward takes them.
                let inv = 1 / gotSum
                let p = e.map { $0 / sum }, d = zip(p, dP).reduce(0.0) { $0 + $1.0 * Double($1.1) }
                let dS = (0..<n).map { p[$0] * (Double(dP[$0]) - d) }
                func check(_ got: [Float], _ truth: [Double], tolerance: Double, _ label: String) {
                    let worst = zip(got, truth).map { abs(Double($0) - $1) }.max()!
                    XCTAssertLessThanOrEqual(worst, tolerance, what + " " + label)
                }
                var (probs, grad) = (scores, dP)
                probs.withUnsafeMutableBufferPointer { pp in
                    grad.withUnsafeMutableBufferPointer { gp in
                        probabilitiesAndGradient(pp.baseAddress!, gp.baseAddress!, n, max: m, inverseSum: inv, rowDot: Float(d))
                    }
                }
                check(probs, p, tolerance: 1e-6, "probabilities with the gradient")
                check(grad, dS, tolerance: 3e-6, "gradient from P")
                (probs, grad) = (scores, dP)
                probs.withUnsafeMutableBufferPointer { recomputeProbabilities($0.baseAddress!, n, max: m, inverseSum: inv) }
                check(probs, p, tolerance: 1e-6, "recomputed probabilities")
                let dot = probs.withUnsafeBufferPointer { a in grad.withUnsafeBufferPointer { dotInDouble(a.baseAddress!, $0.baseAddress!, n) } }
                XCTAssertEqual(dot, zip(probs, grad).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }, accuracy: 1e-12, what + " dot")
                probs.withUnsafeBufferPointer { pp in grad.withUnsafeMutableBufferPointer { softmaxRowBackward(pp.baseAddress!, $0.baseAddress!, n) } }
                check(grad, dS, tolerance: 3e-6, "row backward")
                grad = dP
                row.withUnsafeBufferPointer { ep in
                    grad.withUnsafeMutableBufferPointer {
                        scaledSoftmaxGradient(ep.baseAddress!, $0.baseAddress!, n, inverseSum: inv, rowDot: Float(d))
                    }
                }
                check(grad, dS, tolerance: 3e-6, "gradient from the kept row")
            }
        }
    }

    func testSwishAndSoftmaxShareOneExpCoreBitForBit() {
        forEachKernelBuild { kernels in
            // exp of x <= 0: the softmax's (a row shifted by its maximum 0) and the core Swish's sigmoid calls.
            var rng = SeededGenerator(seed: 301)
            var x = (0..<1003).map { _ in Float.random(in: -90...0, using: &rng) }
            x += [0, -0.0, -1e-30, -87.3, -87.2999, -88, -200]
            var viaSoftmax = x, viaCore = [Float](repeating: .nan, count: x.count)
            _ = viaSoftmax.withUnsafeMutableBufferPointer { expShifted($0.baseAddress!, x.count, max: 0) }
            sfk_exp(x, &viaCore, x.count)
            for i in 0..<x.count {
                XCTAssertEqual(viaSoftmax[i].bitPattern, viaCore[i].bitPattern, "exp(\(x[i])) [\(kernels)]: \(viaSoftmax[i]) vs \(viaCore[i])")
            }
            // And Swish is x / (1 + that exp of -x) for x >= 0, bit for bit.
            let pos = x.map { -$0 }
            var swish = [Float](repeating: 0, count: x.count)
            pos.withUnsafeBufferPointer { p in swish.withUnsafeMutableBufferPointer { swishSpan(p.baseAddress!, $0.baseAddress!, count: x.count) } }
            for i in 0..<x.count {
                XCTAssertEqual(swish[i].bitPattern, (pos[i] * (1 / (1 + viaCore[i]))).bitPattern, "swish(\(pos[i])) [\(kernels)]")
            }
        }
    }
}
