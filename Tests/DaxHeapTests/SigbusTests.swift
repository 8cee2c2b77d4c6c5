// A SIGBUS that is not a media error in a guarded copy must not be taken for one, and
// must reach the disposition the program had before the guard: its handler, SIG_IGN, or
// death by SIGBUS. The scenarios run in a child process (Tests/DaxSignalProbe), since the
// right outcome of some is death and all of them set the process's SIGBUS disposition.
// Real media errors are MediaErrorTests'.

import DaxTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Whether this process runs under ThreadSanitizer (the probe is built the same way).

@Suite struct SigbusTests {
    static let probe: URL? = builtExecutable(named: "DaxSignalProbe", override: "DAXHEAP_SIGNAL_PROBE_BIN")

    /// Runs the probe; its `key=value` words, or nil when a signal ended it (`status`).
    struct Outcome {
        var status: Int32
        var words: [String: String]?
        var stderr: String
    }

    func run(_ arguments: String...) throws -> Outcome {
        let probe = try #require(Self.probe, "DaxSignalProbe was not found beside the test bundle; build it first (swift build --build-tests) or set DAXHEAP_SIGNAL_PROBE_BIN")
        let done = try runToCompletion(probe, arguments)
        let out = String(decoding: done.stdout, as: UTF8.self)
        let words = out.split(whereSeparator: \.isWhitespace).map { $0.split(separator: "=", maxSplits: 1) }
        return Outcome(status: done.status,
                       words: out.isEmpty ? nil : Dictionary(words.map { (String($0[0]), String($0.last!)) }) { $1 },
                       stderr: String(decoding: done.stderr, as: UTF8.self))
    }

    /// A SIGBUS sent to a thread inside a guarded copy (by tkill, kill, sigqueue), a
    /// machine-check notice, a fault outside the guarded range, or one sent to another
    /// thread meanwhile: the program's handler gets it once, and the copy completes.
    @Test(arguments: ["tkill", "user", "queue", "ao", "fault-destination", "fault-elsewhere", "mce-elsewhere", "tkill-other"])
    func aForeignSIGBUSGoesToTheProgramsHandler(signal: String) throws {
        let outcome = try run("copy", "count", signal)
        #expect(outcome.status == 0, "\(outcome)")
        #expect(outcome.words == ["result": "0", "fault": "none", "count": "1"], "\(outcome)")
    }

    /// The control: a fault inside the guarded range is a media error, with its address
    /// (a machine check reports its page, which starts 100 bytes before the copy: then
    /// the copy's start).
    @Test(arguments: [("fault-source", "500"), ("mce-source", "0")])
    func aFaultInTheGuardedRangeIsAMediaError(signal: String, fault: String) throws {
        let outcome = try run("copy", "count", signal)
        #expect(outcome.status == 0, "\(outcome)")
        #expect(outcome.words == ["result": "-1", "fault": fault, "count": "0"], "\(outcome)")
    }

    /// With the default disposition a foreign SIGBUS kills, as it would without the guard,
    /// whether it reached the copying thread or another one.
    @Test(arguments: ["tkill", "user", "ao", "tkill-other"])
    func aForeignSIGBUSWithTheDefaultActionKills(signal: String) throws {
        let outcome = try run("copy", "default", signal)
        #expect(outcome.status == SIGBUS && outcome.words == nil, "\(outcome)")
    }

    /// A real fault outside any guarded copy, with the default disposition: the process
    /// dies of it, as it would without the guard (the handler puts back the default and
    /// the access faults again).
    @Test func anUnguardedFaultWithTheDefaultActionKills() throws {
        let path = tempPath("sigbus")
        defer { removeFile(path) }
        let outcome = try run("unguarded-fault", path)
        #expect(outcome.status == SIGBUS && outcome.words == nil, "\(outcome)")
    }

    @Test func anIgnoredForeignSIGBUSIsIgnored() throws {
        let outcome = try run("copy", "ignore", "tkill")
        #expect(outcome.status == 0, "\(outcome)")
        #expect(outcome.words == ["result": "0", "fault": "none", "count": "0"], "\(outcome)")
    }

    /// A handler the program installs while a guarded copy runs is still there after it.
    @Test func aHandlerInstalledDuringACopyStays() throws {
        let outcome = try run("handler-installed-during-copy")
        #expect(outcome.status == 0, "\(outcome)")
        #expect(outcome.words == ["count": "1"], "\(outcome)")
    }

    /// Heap.check() (both metadata copies) and a long Arena.guardedRead go through the
    /// guard in a loop while another thread sends SIGBUS: every signal reaches the
    /// program's handler, no metadata copy is ever unreadable and no read fails.
    @Test(.disabled(if: threadSanitizerIsLoaded, "ThreadSanitizer takes every SIGBUS for a synchronous fault; one sent by another thread can land inside its runtime and fail its checks or deadlock it"))
    func checkingAndReadingWhileSIGBUSArrivesFromElsewhere() throws {
        let path = tempPath("sigbus")
        defer { removeFile(path) }
        let outcome = try run("read-under-kill", path, "300")
        #expect(outcome.status == 0, "\(outcome)")
        let words = try #require(outcome.words, "\(outcome)")
        #expect(words["sent"] == "300" && words["received"] == "300", "\(outcome)")
        #expect(words["unhealthy"] == "0" && words["failed"] == "0", "\(outcome)")
        #expect(Int(words["checks"] ?? "") ?? 0 > 0, "\(outcome)")
    }
}
