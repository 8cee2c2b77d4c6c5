// The child process of the SIGBUS tests (Tests/DaxHeapTests/SigbusTests.swift). A SIGBUS
// that is not a media error in a guarded copy must reach the disposition the program had
// before, and with the default one that kills the process, so these scenarios run here
// and not in the test runner. Each sets up a disposition, makes guarded copies while
// SIGBUS arrives from elsewhere, and prints what happened as `key=value` words on one
// line; a process killed by the signal prints nothing.
//
//   DaxSignalProbe copy PREVIOUS SIGNAL
//       PREVIOUS: the SIGBUS disposition set before the first guarded copy: count (a
//                 handler that counts), default (SIG_DFL) or ignore (SIG_IGN).
//       SIGNAL:   what a guarded copy of 1000 bytes (from byte 100 of a page into a
//                 buffer; the source is the guarded side) sends its own thread in the
//                 middle of the copy: tkill (pthread_kill), user (as kill(2) sends),
//                 queue (as sigqueue), ao (an action-optional machine check inside the
//                 source), fault-source (a fault inside the source: a media error),
//                 mce-source (a machine check of the source's page, whose address
//                 precedes the copy: a media error too), fault-destination,
//                 fault-elsewhere, mce-elsewhere (faults outside the source); or
//                 tkill-other: another thread, not copying, gets pthread_kill while a
//                 guarded copy is under way.
//       Prints `result=R fault=F count=N`: the guarded copy's result (0 done, -1 media
//       error), the fault address less the copy's start (or none), the handler's count.
//   DaxSignalProbe handler-installed-during-copy
//       The program installs the counting handler while a guarded copy is under way,
//       then sends itself SIGBUS after the copy: prints `count=N`.
//   DaxSignalProbe unguarded-fault PATH
//       With the default disposition, after a guarded copy installed the handler, reads
//       a page of a file at PATH mapped and then cut short, unguarded: prints `read=B`
//       if it survives the SIGBUS.
//   DaxSignalProbe read-under-kill PATH SIGNALS
//       One thread loops Heap.check() (both metadata copies, through the guard) and an
//       8 MiB Arena.guardedRead (a long guarded copy for the signals to land in) on a new
//       heap at PATH, while SIGNALS SIGBUS are sent to it with pthread_kill, each once
//       the one before was counted by the handler or taken for a media error: prints
//       `sent=S received=R unhealthy=U failed=F checks=C`, U the checks that found a
//       metadata copy not ok, F the reads that failed.

import CDaxShims
import CDaxSignalTesting
import DaxHeap
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A thread running `body`, joined by `join`.
final class Thread: @unchecked Sendable {
    private var thread = pthread_t()
    private let body: @Sendable () -> Void

    init(_ body: @escaping @Sendable () -> Void) {
        self.body = body
        let me = Unmanaged.passRetained(self).toOpaque()
        precondition(pthread_create(&thread, nil, { raw in
            let me = Unmanaged<Thread>.fromOpaque(raw!).takeRetainedValue()
            me.body()
            return nil
        }, me) == 0)
    }

    var id: pthread_t { thread }
    func join() { pthread_join(thread, nil) }
}

/// Polls `condition` until it holds or `seconds` have passed; whether it held.
func wait(seconds: Double, until condition: () -> Bool) -> Bool {
    let deadline = now() + seconds
    while !condition() {
        if now() > deadline { return false }
        usleep(100)
    }
    return true
}

func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

func fail(_ message: String) -> Never {
    let line = Array("DaxSignalProbe: \(message)\n".utf8)
    _ = write(2, line, line.count)
    exit(2)
}

/// Sets SIGBUS's disposition before any guarded copy (replacing the Swift runtime's
/// backtracer, which a Swift program has by default).
func setPrevious(_ previous: String) {
    switch previous {
    case "count": if CDaxSignalTesting_count_sigbus() != 0 { fail("sigaction: errno \(errno)") }
    case "default": signal(SIGBUS, SIG_DFL)
    case "ignore": signal(SIGBUS, SIG_IGN)
    default: fail("unknown disposition \(previous)")
    }
}

func copyScenario(previous: String, signal: String) {
    setPrevious(previous)
    let page = 4096
    let source = UnsafeMutableRawPointer.allocate(byteCount: 2 * page, alignment: page)
    let destination = UnsafeMutableRawPointer.allocate(byteCount: 1000, alignment: 16)
    let elsewhere = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 16)
    defer { source.deallocate(); destination.deallocate(); elsewhere.deallocate() }
    let start = source + 100
    var copy: CDaxShims_copy_function = CDaxSignalTesting_signalling_copy
    switch signal {
    case "tkill": CDaxSignalTesting_copy_will_send(CDaxSignalTesting_SI_TKILL, nil, 0)
    case "user": CDaxSignalTesting_copy_will_send(CDaxSignalTesting_SI_USER, nil, 0)
    case "queue": CDaxSignalTesting_copy_will_send(CDaxSignalTesting_SI_QUEUE, nil, 0)
    case "ao": CDaxSignalTesting_copy_will_send(CDaxSignalTesting_BUS_MCEERR_AO, start + 500, 12)
    case "fault-source": CDaxSignalTesting_copy_will_send(CDaxSignalTesting_BUS_ADRERR, start + 500, 0)
    case "mce-source": CDaxSignalTesting_copy_will_send(CDaxSignalTesting_BUS_MCEERR_AR, source, 12)
    case "fault-destination": CDaxSignalTesting_copy_will_send(CDaxSignalTesting_BUS_ADRERR, destination + 500, 0)
    case "fault-elsewhere": CDaxSignalTesting_copy_will_send(CDaxSignalTesting_BUS_ADRERR, elsewhere, 0)
    case "mce-elsewhere": CDaxSignalTesting_copy_will_send(CDaxSignalTesting_BUS_MCEERR_AR, source + page, 12)
    case "tkill-other": copy = CDaxSignalTesting_waiting_copy
    default: fail("unknown signal \(signal)")
    }
    var other: Thread?
    if signal == "tkill-other" {
        // This thread waits inside a guarded copy while another one gets the signal.
        other = Thread {
            CDaxSignalTesting_wait_for_copy()
            pthread_kill(pthread_self(), SIGBUS)
            _ = wait(seconds: 0.2) { CDaxSignalTesting_sigbus_count() > 0 }
            CDaxSignalTesting_release()
        }
    }
    var fault: UnsafeMutableRawPointer? = nil
    let result = CDaxShims_guarded_copy(destination, start, 1000, copy, CDaxShims_guard_source, &fault)
    other?.join()
    if CDaxSignalTesting_send_error() != 0 { fail("sending SIGBUS: errno \(CDaxSignalTesting_send_error())") }
    print("result=\(result) fault=\(fault.map { "\($0 - start)" } ?? "none") count=\(CDaxSignalTesting_sigbus_count())")
}

func handlerInstalledDuringCopy() {
    setPrevious("default")
    let source = [UInt8](repeating: 1, count: 64)
    var destination = [UInt8](repeating: 0, count: 64)
    source.withUnsafeBytes { from in
        destination.withUnsafeMutableBytes { to in
            let (toBits, fromBits) = (Int(bitPattern: to.baseAddress), Int(bitPattern: from.baseAddress))
            let thread = Thread {
                var fault: UnsafeMutableRawPointer? = nil
                _ = CDaxShims_guarded_copy(UnsafeMutableRawPointer(bitPattern: toBits), UnsafeRawPointer(bitPattern: fromBits),
                                           64, CDaxSignalTesting_waiting_copy, CDaxShims_guard_source, &fault)
            }
            CDaxSignalTesting_wait_for_copy()
            if CDaxSignalTesting_count_sigbus() != 0 { fail("sigaction: errno \(errno)") }
            CDaxSignalTesting_release()
            thread.join()
        }
    }
    pthread_kill(pthread_self(), SIGBUS)
    print("count=\(CDaxSignalTesting_sigbus_count())")
}

/// What the reading thread counts.
final class Reader: Sendable {
    let checks = Atomic<Int>(0)
    let unhealthy = Atomic<Int>(0)
    let failedReads = Atomic<Int>(0)
    let stop = Atomic<Bool>(false)
}

func readUnderKill(path: String, signals: Int) {
    setPrevious("count")
    let heap: Heap
    let arena: Arena
    let size = 8 << 20
    do {
        heap = try Heap.create(path: path, size: 32 << 20)
        arena = try heap.createArena(named: "a", size: UInt64(size))
        try arena.memsetPersist(at: 0, value: 0x5A, count: UInt64(size))
    } catch {
        fail("\(error)")
    }
    let reader = Reader()
    let thread = Thread {
        var buffer = [UInt8](repeating: 0, count: size)
        while !reader.stop.load(ordering: .relaxed) {
            let report = heap.check()
            if report.primary.state != .ok || report.secondary.state != .ok {
                reader.unhealthy.add(1, ordering: .relaxed)
            }
            reader.checks.add(1, ordering: .relaxed)
            if case .failure = buffer.withUnsafeMutableBytes({ arena.guardedRead(into: $0, at: 0) }) {
                reader.failedReads.add(1, ordering: .relaxed)
            }
        }
    }
    /// Every way a signal can end up: counted by the handler, or taken for a media error.
    func outcomes() -> Int {
        CDaxSignalTesting_sigbus_count() + reader.unhealthy.load(ordering: .relaxed) + reader.failedReads.load(ordering: .relaxed)
    }
    _ = wait(seconds: 60) { reader.checks.load(ordering: .relaxed) > 0 }
    var sent = 0
    for _ in 0 ..< signals {
        let before = outcomes()
        pthread_kill(thread.id, SIGBUS)
        sent += 1
        // One at a time: a second SIGBUS sent while one is pending would merge with it.
        if !wait(seconds: 60, until: { outcomes() > before }) { break }
    }
    reader.stop.store(true, ordering: .relaxed)
    thread.join()
    print("sent=\(sent) received=\(CDaxSignalTesting_sigbus_count()) unhealthy=\(reader.unhealthy.load(ordering: .relaxed)) "
        + "failed=\(reader.failedReads.load(ordering: .relaxed)) checks=\(reader.checks.load(ordering: .relaxed))")
}

func unguardedFault(path: String) {
    setPrevious("default")
    var from = [UInt8](repeating: 1, count: 8), to = [UInt8](repeating: 0, count: 8)
    if CDaxShims_guarded_copy(&to, &from, 8, nil, CDaxShims_guard_source, nil) != 0 { fail("guarded copy failed") }
    // A file mapped, then cut short: its second page is past the end.
    let fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0o600)
    guard fd >= 0, ftruncate(fd, 8192) == 0, let page = mmap(nil, 8192, PROT_READ, MAP_SHARED, fd, 0), page != MAP_FAILED,
          ftruncate(fd, 4096) == 0 else { fail("mapping \(path): errno \(errno)") }
    print("read=\(page.load(fromByteOffset: 4096, as: UInt8.self))")
}

// A scenario that hangs is killed (SIGALRM) rather than holding up the tests.
alarm(120)
// A scenario that should die of SIGBUS must not leave a core file behind.
var noCore = rlimit(rlim_cur: 0, rlim_max: 0)
setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &noCore)

let arguments = CommandLine.arguments
switch (arguments.count, arguments.dropFirst().first) {
case (4, "copy"): copyScenario(previous: arguments[2], signal: arguments[3])
case (2, "handler-installed-during-copy"): handlerInstalledDuringCopy()
case (3, "unguarded-fault"): unguardedFault(path: arguments[2])
case (4, "read-under-kill"): readUnderKill(path: arguments[2], signals: Int(arguments[3]) ?? 0)
default: fail("usage: DaxSignalProbe copy PREVIOUS SIGNAL | handler-installed-during-copy | unguarded-fault PATH | read-under-kill PATH SIGNALS")
}
