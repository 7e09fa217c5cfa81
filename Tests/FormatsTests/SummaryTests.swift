// `inspect`'s one-line summaries of non-tensor checkpoint entries (a PySlowFast cfg string, say).

import XCTest
@testable import Formats

final class SummaryTests: XCTestCase {
    func testMultiLineStringSummaryStopsAtTheFirstLineEndOfAnyKind() {
        // "\r\n" is one Character in Swift: splitting on "\n" would show a Windows-saved config whole.
        for end in ["\n", "\r\n", "\r"] {
            XCTAssertEqual(TorchCheckpoint.summarize(.string("TRAIN:\(end)  ENABLE: True")), "str (21 chars): \"TRAIN:...\"", end.debugDescription)
        }
        XCTAssertEqual(TorchCheckpoint.summarize(.string("one line")), "str (8 chars): \"one line\"")
    }
}
