// Multi-view ensembles against PySlowFast's rules, restated from slowfast/utils/meters.py TestMeter:
// video_preds starts at zeros; "sum" adds each view's prediction (after the head activation),
// "max" keeps the elementwise maximum; the result is used as-is (no division).

import Finetune
import XCTest

final class EnsembleTests: XCTestCase {
    /// PySlowFast's TestMeter.update_stats for one video, written out.
    func pyslowfast(_ views: [[Float]], method: String) -> [Float] {
        var preds = [Float](repeating: 0, count: views[0].count)
        for v in views {
            for c in preds.indices { preds[c] = method == "sum" ? preds[c] + v[c] : max(preds[c], v[c]) }
        }
        return preds
    }

    func testSumAndMaxMatchPySlowFastsTestMeterOnTheSameViewOutputs() {
        var g = SystemRandomNumberGenerator()
        for views in [1, 3, 30] {
            // 30 = 10 temporal x 3 spatial views of a sigmoid head (probabilities), 5 classes.
            let rows = (0 ..< views).map { _ in (0 ..< 5).map { _ in 1 / (1 + exp(-Float.random(in: -4 ... 4, using: &g))) } }
            for (m, name) in [(EnsembleMethod.sum, "sum"), (.max, "max")] {
                let ours = m.combine(rows), theirs = pyslowfast(rows, method: name)
                let diff = zip(ours, theirs).map { abs($0 - $1) }.max()!
                XCTAssertLessThanOrEqual(diff, 1e-6 * Float(views), "\(name) over \(views) views: max diff \(diff)")
            }
            // mean (sfnet's softmax default) is the sum over the view count: it ranks every class as sum does.
            let mean = EnsembleMethod.mean.combine(rows), sum = EnsembleMethod.sum.combine(rows)
            XCTAssertEqual(mean.indices.sorted { mean[$0] > mean[$1] }, sum.indices.sorted { sum[$0] > sum[$1] })
        }
        XCTAssertEqual(EnsembleMethod.byHead(multiLabel: true), .max)
        XCTAssertEqual(EnsembleMethod.byHead(multiLabel: false), .mean)
    }
}
