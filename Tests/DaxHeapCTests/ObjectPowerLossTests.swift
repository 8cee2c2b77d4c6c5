// The C object API under the power-loss simulator: a linked list pushed and trimmed
// through C (reserve, fill, daxheap_tx_run; daxheap_free), crashed at every fence, and
// every image read back through C.

import CDaxHeap
@testable import DaxHeapC
import DaxHeap
import DaxTestSupport
import Foundation
import Testing

@Suite(.disabled(if: threadSanitizerIsLoaded, "single-threaded: ThreadSanitizer has no race to look for here, and the plain and AddressSanitizer runs sweep it")) struct ObjectPowerLossTests {
    struct Expectation: Sendable {
        var done: [UInt64] = []
        var inFlight: [UInt64]?
    }

    struct Mismatch: Error, CustomStringConvertible { var description: String }

    /// Node layout, as samples/c has it: { next ref, number, text[48] }.
    static let nodeSize: UInt64 = 64

    /// Each image holds the list as the last completed call left it, or as the call in
    /// flight would: whole nodes only, nothing leaked, whether the crash hit a push, an
    /// aborted push, or the free of the oldest node.
    @Test func everyFenceOfPushesAndFreesThroughC() throws {
        let directory = try makeScratchFolder(prefix: "daxheapc-powerloss")
        let expectation = Locked(Expectation())
        let simulator = PowerLossSimulator(mixedImages: PowerLossSettings.mixedImages(default: 3), seed: PowerLossSettings.seed(default: 1), directory: directory) { image in
            try Self.check(image.path, expectation.withLock { $0 }, kind: "\(image.kind) at \(image.point)")
        }
        defer { if simulator.failures.isEmpty { try? FileManager.default.removeItem(atPath: directory) } }
        simulator.isArmed = false
        let heap = daxheapHandle(adopting: try Heap.create(path: directory + "/heap", size: 16 << 20, simulator: simulator))
        var out: OpaquePointer?
        #expect(daxheap_objects_create_lanes(heap, "objs", 6 << 20, 4, 4096, &out) == 0, "\(lastMessage())")
        let objects = try #require(out)
        let ctx = try openContext(objects)
        let head = try root(objects, "list")
        simulator.isArmed = true

        var list: [UInt64] = []
        for number in UInt64(1)...12 {
            // A push, in flight until tx_run returns.
            let pushed = [number] + list
            expectation.withLock { $0.inFlight = pushed }
            var node: UInt64 = 0
            var pointer: UnsafeMutableRawPointer?
            #expect(daxheap_reserve(ctx, Self.nodeSize, kindReferences, 0, &node, &pointer) == 0)
            pointer!.storeBytes(of: list.isEmpty ? 0 : try load(objects, head), as: UInt64.self)
            pointer!.storeBytes(of: number, toByteOffset: 8, as: UInt64.self)
            let abort = number % 5 == 0  // every fifth push is aborted by its body
            let rc = runTransaction(ctx) { tx in
                let published = daxheap_tx_publish(tx, node)
                let stored = published != 0 ? published : daxheap_tx_store64(tx, head, node)
                return stored != 0 ? stored : (abort ? 1 : 0)
            }
            #expect(rc == (abort ? 1 : 0), "\(lastMessage())")
            if !abort { list = pushed }
            expectation.withLock { $0 = Expectation(done: list) }

            // Keep three: free the fourth from the third's next slot (one call, durable).
            if list.count == 4 {
                expectation.withLock { $0.inFlight = Array(list.prefix(3)) }
                var slot = head
                for _ in 0..<3 { slot = daxheap_field(try load(objects, slot), 0) }
                #expect(daxheap_free(ctx, slot) == 0, "\(lastMessage())")
                list.removeLast()
                expectation.withLock { $0 = Expectation(done: list) }
            }
        }
        simulator.isArmed = false
        #expect(daxheap_objctx_close(ctx) == 0)
        #expect(daxheap_objects_close(objects) == 0)
        daxheap_close(heap)

        let failures = simulator.failures
        #expect(failures.isEmpty, "\(failures.count) of \(simulator.imagesChecked) images failed (images in \(directory)): \(failures.prefix(4))")
        #expect(simulator.crashPointsTaken >= 20, "a crash point at every fence (\(simulator.crashPointsTaken))")
        #expect(list == [12, 11, 9])
    }

    /// Opens an image through C, as a new process would, and compares its list.
    static func check(_ path: String, _ expectation: Expectation, kind: String) throws {
        var heap: OpaquePointer?
        guard daxheap_open(path, 0, &heap) == 0, let heap else { throw Mismatch(description: "\(kind): open: \(lastMessage())") }
        defer { daxheap_close(heap) }
        var out: OpaquePointer?
        guard daxheap_objects_open(heap, "objs", &out) == 0, let objects = out else {
            throw Mismatch(description: "\(kind): objects_open: \(lastMessage())")
        }
        defer { _ = daxheap_objects_close(objects) }
        var head: UInt64 = 0
        guard daxheap_objects_find_root(objects, "list", &head) == 0 else { throw Mismatch(description: "\(kind): no root") }
        var numbers: [UInt64] = []
        var slot = head
        while true {
            var ref: UInt64 = 0
            guard daxheap_objects_load(objects, slot, &ref) == 0 else { throw Mismatch(description: "\(kind): load: \(lastMessage())") }
            if ref == 0 { break }
            var pointer: UnsafeMutableRawPointer?
            guard daxheap_objects_address(objects, ref, &pointer) == 0, let pointer, numbers.count < 100 else {
                throw Mismatch(description: "\(kind): address: \(lastMessage())")
            }
            numbers.append(pointer.load(fromByteOffset: 8, as: UInt64.self))
            slot = daxheap_field(ref, 0)
        }
        guard numbers == expectation.done || numbers == expectation.inFlight else {
            throw Mismatch(description: "\(kind): list \(numbers), expected \(expectation.done) or \(String(describing: expectation.inFlight))")
        }
        var stats = daxheap_objects_stats()
        guard daxheap_objects_stats(objects, &stats) == 0, stats.objects == UInt64(numbers.count) else {
            throw Mismatch(description: "\(kind): \(stats.objects) live objects for a list of \(numbers.count): a leak")
        }
    }
}
