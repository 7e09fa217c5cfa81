// Inline SVG charts for report.html: line charts (with an optional second y axis),
// horizontal bars and a heat map. No scripts, no external resources; every text
// that came from a user's files (class names, paths) is escaped.

import Foundation

public enum SVG {
    /// XML/HTML text escaping (also safe inside attribute values).
    public static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.count)
        for ch in s {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(ch)
            }
        }
        return out
    }

    static func n(_ x: Double) -> String { String(format: "%.1f", x) }

    /// "Nice" tick values covering [lo, hi].
    static func ticks(_ lo: Double, _ hi: Double, count: Int = 5) -> [Double] {
        guard hi > lo, lo.isFinite, hi.isFinite else { return [lo] }
        let raw = (hi - lo) / Double(count)
        let mag = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? raw
        var t = ceil(lo / step) * step, out: [Double] = []
        while t <= hi + step * 1e-9 { out.append(t); t += step }
        return out
    }

    static func label(_ v: Double) -> String {
        if v == 0 { return "0" }
        let a = abs(v)
        return a >= 1000 || a < 0.01 ? String(format: "%.1e", v) : String(format: "%.3g", v)
    }

    public struct Series {
        public var name: String
        public var color: String
        public var points: [(x: Double, y: Double)]
        /// Drawn against the right-hand axis.
        public var secondary: Bool
        public init(name: String, color: String, points: [(x: Double, y: Double)], secondary: Bool = false) {
            (self.name, self.color, self.points, self.secondary) = (name, color, points, secondary)
        }
    }

    /// A line chart; non-finite points are skipped. `yMin`/`yMax` fix the left axis (e.g. mAP in [0, 1]).
    public static func lineChart(title: String, xLabel: String, yLabel: String, y2Label: String? = nil, series: [Series],
                                 yMin: Double? = nil, yMax: Double? = nil, width: Double = 560, height: Double = 260) -> String {
        let (left, right, top, bottom) = (56.0, y2Label == nil ? 16.0 : 64.0, 28.0, 40.0)
        let (pw, ph) = (width - left - right, height - top - bottom)
        let all = series.flatMap { $0.points }.filter { $0.x.isFinite && $0.y.isFinite }
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(n(width))\" height=\"\(n(height))\" viewBox=\"0 0 \(n(width)) \(n(height))\" role=\"img\" aria-label=\"\(escape(title))\">"
        svg += "<text x=\"\(n(left))\" y=\"16\" class=\"title\">\(escape(title))</text>"
        guard !all.isEmpty else { return svg + "<text x=\"\(n(width / 2))\" y=\"\(n(height / 2))\" text-anchor=\"middle\">no data</text></svg>" }
        let (x0, x1) = (all.map(\.x).min()!, max(all.map(\.x).max()!, all.map(\.x).min()! + 1e-9))
        func range(_ pts: [(x: Double, y: Double)], _ lo: Double?, _ hi: Double?) -> (Double, Double) {
            let ys = pts.map(\.y).filter(\.isFinite)
            var a = lo ?? (ys.min() ?? 0), b = hi ?? (ys.max() ?? 1)
            if lo == nil { a = min(a, 0) }
            if b <= a { b = a + 1 }
            return (a, b)
        }
        let (ly0, ly1) = range(series.filter { !$0.secondary }.flatMap(\.points), yMin, yMax)
        let (ry0, ry1) = range(series.filter(\.secondary).flatMap(\.points), nil, nil)
        func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * pw }
        func py(_ y: Double, _ secondary: Bool) -> Double {
            let (a, b) = secondary ? (ry0, ry1) : (ly0, ly1)
            return top + ph - (y - a) / (b - a) * ph
        }
        svg += "<rect x=\"\(n(left))\" y=\"\(n(top))\" width=\"\(n(pw))\" height=\"\(n(ph))\" class=\"plot\"/>"
        for t in ticks(ly0, ly1) {
            let y = py(t, false)
            svg += "<line x1=\"\(n(left))\" x2=\"\(n(left + pw))\" y1=\"\(n(y))\" y2=\"\(n(y))\" class=\"grid\"/>"
            svg += "<text x=\"\(n(left - 6))\" y=\"\(n(y + 4))\" text-anchor=\"end\" class=\"tick\">\(label(t))</text>"
        }
        if y2Label != nil {
            for t in ticks(ry0, ry1) {
                svg += "<text x=\"\(n(left + pw + 6))\" y=\"\(n(py(t, true) + 4))\" class=\"tick\">\(label(t))</text>"
            }
            svg += "<text transform=\"translate(\(n(width - 12)),\(n(top + ph / 2))) rotate(90)\" text-anchor=\"middle\" class=\"axis\">\(escape(y2Label!))</text>"
        }
        for t in ticks(x0, x1) {
            svg += "<text x=\"\(n(px(t)))\" y=\"\(n(top + ph + 16))\" text-anchor=\"middle\" class=\"tick\">\(label(t))</text>"
        }
        svg += "<text x=\"\(n(left + pw / 2))\" y=\"\(n(height - 6))\" text-anchor=\"middle\" class=\"axis\">\(escape(xLabel))</text>"
        svg += "<text transform=\"translate(14,\(n(top + ph / 2))) rotate(-90)\" text-anchor=\"middle\" class=\"axis\">\(escape(yLabel))</text>"
        for (k, s) in series.enumerated() {
            let pts = s.points.filter { $0.x.isFinite && $0.y.isFinite }
            if pts.count == 1 {
                svg += "<circle cx=\"\(n(px(pts[0].x)))\" cy=\"\(n(py(pts[0].y, s.secondary)))\" r=\"3\" fill=\"\(s.color)\"/>"
            } else if !pts.isEmpty {
                let d = pts.enumerated().map { "\($0.offset == 0 ? "M" : "L")\(n(px($0.element.x))),\(n(py($0.element.y, s.secondary)))" }.joined()
                svg += "<path d=\"\(d)\" fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"1.6\"/>"
            }
            let lx = left + 8 + Double(k) * 150
            svg += "<rect x=\"\(n(lx))\" y=\"\(n(top + 6))\" width=\"10\" height=\"10\" fill=\"\(s.color)\"/>"
            svg += "<text x=\"\(n(lx + 14))\" y=\"\(n(top + 15))\" class=\"legend\">\(escape(s.name))</text>"
        }
        return svg + "</svg>"
    }

    /// Horizontal bars in [0, 1] (per-class AP); a nil value is drawn as "n/a".
    public static func bars(title: String, labels: [String], values: [Double?], width: Double = 560) -> String {
        let row = 18.0, left = 150.0, right = 50.0, top = 28.0
        let height = top + Double(labels.count) * row + 10
        let pw = width - left - right
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(n(width))\" height=\"\(n(height))\" viewBox=\"0 0 \(n(width)) \(n(height))\" role=\"img\" aria-label=\"\(escape(title))\">"
        svg += "<text x=\"4\" y=\"16\" class=\"title\">\(escape(title))</text>"
        for (i, name) in labels.enumerated() {
            let y = top + Double(i) * row
            svg += "<text x=\"\(n(left - 6))\" y=\"\(n(y + 12))\" text-anchor=\"end\" class=\"tick\">\(escape(name))</text>"
            svg += "<rect x=\"\(n(left))\" y=\"\(n(y + 2))\" width=\"\(n(pw))\" height=\"\(n(row - 4))\" class=\"track\"/>"
            if let v = values[i], v.isFinite {
                let w = max(0, min(1, v)) * pw
                svg += "<rect x=\"\(n(left))\" y=\"\(n(y + 2))\" width=\"\(n(w))\" height=\"\(n(row - 4))\" class=\"bar\"/>"
                svg += "<text x=\"\(n(left + pw + 6))\" y=\"\(n(y + 12))\" class=\"tick\">\(String(format: "%.3f", v))</text>"
            } else {
                svg += "<text x=\"\(n(left + pw + 6))\" y=\"\(n(y + 12))\" class=\"tick\">n/a</text>"
            }
        }
        return svg + "</svg>"
    }

    /// A heat map of counts with row-normalised shading (rows: truth, columns: prediction).
    public static func heatmap(title: String, labels: [String], matrix: [[Int]], cell: Double = 28) -> String {
        let k = labels.count
        func short(_ s: String) -> String { s.count > 18 ? String(s.prefix(17)) + "…" : s }
        let left = 150.0, top = 34 + Double(min(labels.map(\.count).max() ?? 0, 18)) * 5.6
        // Room on the right for the last rotated column labels and for the title.
        let longest = Double(labels.map(\.count).max() ?? 0)
        let width = max(left + Double(k) * cell + min(longest, 18) * 3.5 + 20, 400), height = top + Double(k) * cell + 30
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(n(width))\" height=\"\(n(height))\" viewBox=\"0 0 \(n(width)) \(n(height))\" role=\"img\" aria-label=\"\(escape(title))\">"
        svg += "<text x=\"4\" y=\"16\" class=\"title\">\(escape(title))</text>"
        for (j, name) in labels.enumerated() {
            let x = left + Double(j) * cell + cell / 2
            svg += "<text transform=\"translate(\(n(x + 4)),\(n(top - 6))) rotate(-60)\" class=\"tick\"><title>\(escape(name))</title>\(escape(short(name)))</text>"
        }
        for i in 0 ..< k {
            let rowTotal = max(1, (i < matrix.count ? matrix[i] : []).reduce(0, +))
            let y = top + Double(i) * cell
            svg += "<text x=\"\(n(left - 6))\" y=\"\(n(y + cell / 2 + 4))\" text-anchor=\"end\" class=\"tick\">\(escape(labels[i]))</text>"
            for j in 0 ..< k {
                let c = i < matrix.count && j < matrix[i].count ? matrix[i][j] : 0
                let shade = Double(c) / Double(rowTotal)
                let x = left + Double(j) * cell
                svg += "<rect x=\"\(n(x))\" y=\"\(n(y))\" width=\"\(n(cell))\" height=\"\(n(cell))\" fill=\"rgba(31,119,180,\(String(format: "%.3f", 0.06 + 0.94 * shade)))\" stroke=\"#fff\"/>"
                if c > 0 {
                    svg += "<text x=\"\(n(x + cell / 2))\" y=\"\(n(y + cell / 2 + 4))\" text-anchor=\"middle\" class=\"\(shade > 0.5 ? "cellhi" : "cell")\">\(c)</text>"
                }
            }
        }
        svg += "<text x=\"\(n(left))\" y=\"\(n(height - 8))\" class=\"axis\">columns: predicted · rows: ground truth</text>"
        return svg + "</svg>"
    }
}
