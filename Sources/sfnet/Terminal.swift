// Output helpers: stderr messages and a progress line that only draws on a terminal.

import Foundation

enum Terminal {
    enum Stream { case stdout, stderr }

    static func write(_ s: String, to stream: Stream = .stdout) {
        let h = stream == .stdout ? FileHandle.standardOutput : FileHandle.standardError
        h.write(Data(s.utf8))
    }

    static func error(_ message: String) {
        write("error: \(message)\n", to: .stderr)
    }

    static let stderrIsTerminal: Bool = isatty(2) == 1

    /// A single updating progress line on stderr (only on a terminal, at most ~10 updates/s).
    final class Progress {
        let label: String
        var last = Date.distantPast
        var drawn = false
        init(_ label: String) { self.label = label }

        func update(_ done: Int, _ total: Int) {
            guard Terminal.stderrIsTerminal, total > 0 else { return }
            let now = Date()
            if done < total && now.timeIntervalSince(last) < 0.1 { return }
            last = now
            let frac = Double(done) / Double(total)
            let width = 30
            let filled = Int(frac * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
            Terminal.write("\r\(label) [\(bar)] \(Int(frac * 100))%", to: .stderr)
            drawn = true
        }

        func finish() {
            if drawn { Terminal.write("\r\u{1B}[K", to: .stderr) }
        }
    }
}
