// Where a seeded sweep that runs in a child process (a Swift Testing exit test) was when
// the child died. A trap or a sanitizer's report ends the process it happens in: in the
// test process that ends the whole run and names no iteration; in a child, the parent
// records a failure and can say which step the child had reached.
import Foundation

/// The step a sweep has reached, in a file both processes know: the child records each
/// step before it takes it, and the parent reads the last one when the child dies.
public struct SweepProgress: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    /// Records `step`, replacing the step before it.
    public func record(_ step: String) {
        FileManager.default.createFile(atPath: path, contents: Data(step.utf8))
    }

    /// The step last recorded, for the parent's failure message.
    public var lastStep: String {
        (try? String(contentsOfFile: path, encoding: .utf8)).map { "at \($0)" } ?? "before its first step"
    }
}
