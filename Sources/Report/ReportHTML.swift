// report.html: one self-contained page (inline CSS and SVG, no scripts, no external
// resources) per run — settings, loss and LR curves, validation mAP per epoch, the
// test evaluation with per-class AP and a confusion heat map, and a table of example
// clips with ground truth and top prediction — and the combined page of an experiment
// grid (the study's Table 1).

import Foundation

public enum ReportHTML {
    static let style = """
    body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1180px;color:#222;padding:0 16px}
    h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
    .sub{color:#666;margin-bottom:16px}.grid{display:flex;flex-wrap:wrap;gap:16px}
    table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
    th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
    .ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}.note{color:#555}
    .kpi{display:inline-block;border:1px solid #ddd;border-radius:6px;padding:8px 14px;margin:0 10px 10px 0}
    .kpi b{display:block;font-size:20px}
    svg .title{font-weight:600;font-size:13px}svg .tick{font-size:11px;fill:#444}svg .axis{font-size:12px;fill:#222}
    svg .legend{font-size:11px}svg .plot{fill:#fcfcfc;stroke:#bbb}svg .grid{stroke:#e5e5e5}
    svg .track{fill:#f0f0f0}svg .bar{fill:#2b8a3e}svg .cell{font-size:10px;fill:#222}svg .cellhi{font-size:10px;fill:#fff}
    """

    static func page(title: String, body: String) -> String {
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>\(SVG.escape(title))</title>"
            + "<style>\(style)</style></head><body>\(body)</body></html>\n"
    }

    static func pct(_ x: Double?) -> String { x.map { String(format: "%.1f%%", $0 * 100) } ?? "—" }
    static func num(_ x: Double?, _ f: String = "%.4f") -> String { x.map { String(format: f, $0) } ?? "—" }

    public static func render(_ r: RunRecord) -> String {
        var b = "<h1>\(SVG.escape(r.name))</h1><div class=\"sub\">sfnet fine-tuning run · \(r.classes.count) classes · "
            + "\(r.epochs.count) epochs · \(r.iterations.count) iterations</div>"
        b += "<div>"
        if let best = r.best { b += "<span class=\"kpi\">best val mAP<b>\(pct(best.mAP))</b>epoch \(best.epoch)</span>" }
        if let e = r.evaluation {
            b += "<span class=\"kpi\">\(SVG.escape(e.split)) mAP<b>\(pct(e.mAP))</b>\(e.clips) clips</span>"
            b += "<span class=\"kpi\">top-1<b>\(pct(e.top1))</b>top-5 \(pct(e.top5))</span>"
        }
        if let last = r.epochs.last { b += "<span class=\"kpi\">final train loss<b>\(num(last.trainLoss))</b>\(num(last.clipsPerSecond, "%.1f")) clips/s</span>" }
        b += "</div>"
        if !r.notes.isEmpty { b += "<ul>" + r.notes.map { "<li class=\"note\">\(SVG.escape($0))</li>" }.joined() + "</ul>" }

        b += "<h2>Training</h2><div class=\"grid\">"
        b += SVG.lineChart(title: "Loss and learning rate per iteration", xLabel: "epoch", yLabel: "train loss", y2Label: "learning rate",
                           series: [SVG.Series(name: "loss", color: "#1f77b4", points: r.iterations.map { ($0.epoch, $0.loss) }),
                                    SVG.Series(name: "learning rate", color: "#ff7f0e", points: r.iterations.map { ($0.epoch, $0.lr) }, secondary: true)])
        b += SVG.lineChart(title: "Validation per epoch", xLabel: "epoch", yLabel: "mAP / top-1",
                           series: [SVG.Series(name: "val mAP", color: "#2b8a3e", points: r.epochs.compactMap { e in e.valMAP.map { (Double(e.epoch), $0) } }),
                                    SVG.Series(name: "val top-1", color: "#9467bd", points: r.epochs.compactMap { e in e.valTop1.map { (Double(e.epoch), $0) } })],
                           yMin: 0, yMax: 1)
        b += "</div>"
        b += "<table><tr><th>epoch</th><th>train loss</th><th>val mAP</th><th>val top-1</th><th>lr (end)</th><th>time</th><th>clips/s</th></tr>"
        for e in r.epochs {
            b += "<tr><td class=\"num\">\(e.epoch)</td><td class=\"num\">\(num(e.trainLoss))</td><td class=\"num\">\(pct(e.valMAP))</td>"
                + "<td class=\"num\">\(pct(e.valTop1))</td><td class=\"num\">\(num(e.lr, "%.5f"))</td><td class=\"num\">\(num(e.seconds, "%.1f")) s</td>"
                + "<td class=\"num\">\(num(e.clipsPerSecond, "%.1f"))</td></tr>"
        }
        b += "</table>"

        if let e = r.evaluation {
            b += "<h2>Evaluation on \(SVG.escape(e.split)) (\(e.clips) clips)</h2><div class=\"grid\">"
            b += SVG.bars(title: "Average precision per class (mAP \(pct(e.mAP)))", labels: r.classes, values: e.perClassAP)
            b += SVG.heatmap(title: "Confusion matrix (single-label clips, argmax)", labels: r.classes, matrix: e.confusion)
            b += "</div>"
        }
        if !r.examples.isEmpty {
            b += "<h2>Example clips</h2><table><tr><th>clip</th><th>ground truth</th><th>top prediction</th><th>others</th></tr>"
            for x in r.examples {
                let top = x.predictions.first
                b += "<tr><td>\(SVG.escape(x.path))</td><td>\(SVG.escape(x.truth.joined(separator: ", ")))</td>"
                    + "<td class=\"\(x.topIsCorrect ? "ok" : "bad")\">\(top.map { SVG.escape($0.label) + String(format: " (%.2f)", $0.score) } ?? "—")</td>"
                    + "<td>\(x.predictions.dropFirst().map { SVG.escape($0.label) + String(format: " %.2f", $0.score) }.joined(separator: ", "))</td></tr>"
            }
            b += "</table>"
        }
        if !r.settings.isEmpty {
            b += "<h2>Settings</h2><table>" + r.settings.map { "<tr><th>\(SVG.escape($0.key))</th><td>\(SVG.escape($0.value))</td></tr>" }.joined() + "</table>"
        }
        return page(title: "sfnet run \(r.name)", body: b)
    }

    /// One cell of an experiment grid: a start (scratch, k400, imagenet, ...) at a data size.
    public struct GridCell: Codable, Equatable, Sendable {
        public var start: String
        public var perClass: Int
        public var mAP: Double?
        public var run: String
        public init(start: String, perClass: Int, mAP: Double?, run: String) {
            (self.start, self.perClass, self.mAP, self.run) = (start, perClass, mAP, run)
        }
    }

    /// The study's Table 1 as text: mAP per start (rows) and clips per class (columns).
    public static func table(_ cells: [GridCell]) -> String {
        let starts = cells.map(\.start).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        let sizes = Array(Set(cells.map(\.perClass))).sorted()
        let w = max(12, (starts.map(\.count).max() ?? 0) + 2)
        func right(_ s: String) -> String { String(repeating: " ", count: max(1, 12 - s.count)) + s }
        var out = "start".padding(toLength: w, withPad: " ", startingAt: 0) + sizes.map { right("\($0)/class") }.joined() + "\n"
        for s in starts {
            out += s.padding(toLength: w, withPad: " ", startingAt: 0)
            for n in sizes {
                let m = cells.first { $0.start == s && $0.perClass == n }?.mAP
                out += right(m.map { String(format: "%.1f%%", $0 * 100) } ?? "—")
            }
            out += "\n"
        }
        return out
    }

    /// The combined page of an experiment: Table 1 and a link to each run's report.
    public static func renderGrid(name: String, cells: [GridCell]) -> String {
        let starts = cells.map(\.start).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        let sizes = Array(Set(cells.map(\.perClass))).sorted()
        var b = "<h1>\(SVG.escape(name))</h1><div class=\"sub\">sfnet experiment: test mAP per start and training clips per class</div>"
        b += "<table><tr><th>start</th>" + sizes.map { "<th>\($0) / class</th>" }.joined() + "</tr>"
        for s in starts {
            b += "<tr><th>\(SVG.escape(s))</th>"
            for n in sizes {
                if let c = cells.first(where: { $0.start == s && $0.perClass == n }) {
                    b += "<td class=\"num\"><a href=\"\(SVG.escape(c.run))/report.html\">\(pct(c.mAP))</a></td>"
                } else { b += "<td>—</td>" }
            }
            b += "</tr>"
        }
        b += "</table>"
        b += SVG.lineChart(title: "Test mAP vs clips per class", xLabel: "clips per class", yLabel: "mAP",
                           series: starts.enumerated().map { k, s in
                               SVG.Series(name: s, color: ["#1f77b4", "#2b8a3e", "#ff7f0e", "#9467bd", "#8c564b"][k % 5],
                                          points: cells.filter { $0.start == s }.compactMap { c in c.mAP.map { (Double(c.perClass), $0) } }
                                              .sorted { $0.0 < $1.0 })
                           }, yMin: 0, yMax: 1)
        return page(title: "sfnet experiment \(name)", body: b)
    }
}
