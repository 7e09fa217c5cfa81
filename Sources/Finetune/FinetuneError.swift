// Errors of the fine-tuning job: what was expected, what was found, and what to do.

import Foundation

public struct FinetuneError: Error, LocalizedError, CustomStringConvertible {
    public let message: String
    public let hint: String?
    public init(_ message: String, hint: String? = nil) { (self.message, self.hint) = (message, hint) }
    public var description: String { hint.map { "\(message) (\($0))" } ?? message }
    public var errorDescription: String? { description }
}
