// Transactions through C (daxheap_tx_run and the daxheap_tx_* calls), and contexts on
// several threads (run under TSan by scripts/sanitizers.sh).

import CDaxHeap
@testable import DaxHeapC
import DaxHeap
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Runs `body` as a C transaction body on `ctx`: a C function pointer cannot capture, so
/// the Swift closure travels through `arg`.
func runTransaction(_ ctx: OpaquePointer?, _ body: (OpaquePointer?) -> Int32) -> Int32 {
    final class Box {
        let body: (OpaquePointer?) -> Int32
        init(_ body: @escaping (OpaquePointer?) -> Int32) { self.body = body }
    }
    return withoutActuallyEscaping(body) { body in
        let box = Box(body)
        return withExtendedLifetime(box) {
            daxheap_tx_run(ctx, { tx, arg in Unmanaged<Box>.fromOpaque(arg!).takeUnretainedValue().body(tx) },
                           Unmanaged.passUnretained(box).toOpaque())
        }
    }
}

/// A step counter two threads hand a scenario over with.
final class Phase: Sendable {
    let value = Atomic<Int>(0)
}

@Suite struct ObjectTransactionTests {
    /// A committed transaction: an allocation into a root, writes into the new object and
    /// into an existing one, a write to another arena; all there after a reopen.
    @Test func commitAppliesEverything() throws {
        let (path, heap, objects) = try createObjects()
        defer { removeFile(path) }
        #expect(daxheap_arena_create(heap, "pages", twoMiB) == 0)
        let ctx = try openContext(objects)
        let head = try root(objects, "head"), counter = try root(objects, "counter")
        var counterObject: UInt64 = 0
        #expect(daxheap_alloc(ctx, 16, kindData, 0, counter, &counterObject) == 0)
        var made: UInt64 = 0
        let rc = runTransaction(ctx) { tx in
            guard daxheap_tx_alloc(tx, 32, kindReferences, 0, head, &made) == 0 else { return -100 }
            var value: UInt64 = 5
            guard daxheap_tx_write(tx, daxheap_field(made, 8), &value, 8) == 0,
                  daxheap_tx_store64(tx, daxheap_field(counterObject, 0), 41) == 0,
                  daxheap_tx_write_arena(tx, "pages", 100, "page!", 5) == 0 else { return -101 }
            return 0
        }
        #expect(rc == 0, "\(lastMessage())")
        #expect(try load(objects, head) == made)
        #expect(try address(objects, made).load(fromByteOffset: 8, as: UInt64.self) == 5)
        #expect(try address(objects, counterObject).load(as: UInt64.self) == 41)
        #expect(try readBytes(heap, "pages", at: 100, count: 5) == Array("page!".utf8))
        #expect(daxheap_objctx_close(ctx) == 0)
        #expect(daxheap_objects_close(objects) == 0)
        daxheap_close(heap)

        let again = try openHeap(path)
        defer { daxheap_close(again) }
        let objs = try openObjects(again, "objs")
        defer { #expect(daxheap_objects_close(objs) == 0) }
        #expect(try load(objs, head) == made)
        #expect(try address(objs, made).load(fromByteOffset: 8, as: UInt64.self) == 5)
        #expect(try address(objs, try load(objs, counter)).load(as: UInt64.self) == 41)
    }

    /// A body that returns nonzero aborts: nothing applied, its objects freed, its code
    /// returned; a negative code keeps the message of the call that failed, a positive one
    /// gets a message of its own.
    @Test func nonzeroBodyAborts() throws {
        let (path, heap, objects) = try createObjects()
        defer { removeFile(path); daxheap_close(heap) }
        defer { #expect(daxheap_objects_close(objects) == 0) }
        let ctx = try openContext(objects)
        defer { #expect(daxheap_objctx_close(ctx) == 0) }
        let head = try root(objects, "head"), other = try root(objects, "other")
        var keep: UInt64 = 0
        #expect(daxheap_alloc(ctx, 16, kindData, 0, other, &keep) == 0)
        let counts = stats(objects)
        let keepWord = try address(objects, keep).load(as: UInt64.self)
        var failedMessage = ""
        let rc = runTransaction(ctx) { tx in
            var made: UInt64 = 0
            guard daxheap_tx_alloc(tx, 32, kindData, 0, head, &made) == 0,
                  daxheap_tx_store64(tx, daxheap_field(keep, 0), 9) == 0,
                  daxheap_tx_free(tx, other) == 0 else { return -100 }
            let status = daxheap_tx_alloc(tx, 0, kindData, 0, head, nil)  // fails: size 0
            failedMessage = lastMessage()
            return status
        }
        #expect(rc == code(DAXHEAP_EINVAL))
        #expect(lastMessage() == failedMessage && failedMessage.contains("invalid object size"))
        #expect(try load(objects, head) == 0)
        #expect(try load(objects, other) == keep, "the free did not happen")
        #expect(try address(objects, keep).load(as: UInt64.self) == keepWord, "the store did not happen")
        // (The allocation carved a chunk for its size class, which stays carved: allocator
        // state, not the heap's contents, so only the counts are compared.)
        #expect(stats(objects).objects == counts.objects, "the transaction's object was freed")
        #expect(stats(objects).allocated_bytes == counts.allocated_bytes)

        #expect(runTransaction(ctx) { tx in daxheap_tx_alloc(tx, 32, kindData, 0, head, nil) == 0 ? 7 : -1 } == 7)
        #expect(lastMessage().contains("body returned 7"))
        #expect(try load(objects, head) == 0)
        #expect(stats(objects).objects == counts.objects)
    }

    /// A failed call inside a body changes nothing, and the body may still commit the rest.
    @Test func failedCallsInsideABodyAndCommittingTheRest() throws {
        let (path, heap, objects) = try createObjects(lanes: 4, logBytes: 1024)
        defer { removeFile(path); daxheap_close(heap) }
        defer { #expect(daxheap_objects_close(objects) == 0) }
        #expect(daxheap_arena_create(heap, "pages", twoMiB) == 0)
        let ctx = try openContext(objects)
        defer { #expect(daxheap_objctx_close(ctx) == 0) }
        let slot = try root(objects, "r")
        var object: UInt64 = 0
        #expect(daxheap_alloc(ctx, 64, kindReferences, 0, slot, &object) == 0)
        var statuses: [Int32] = []
        let rc = runTransaction(ctx) { tx in
            var big = [UInt8](repeating: 1, count: 2000)
            var word: UInt64 = 3
            statuses = [
                daxheap_tx_write(tx, daxheap_field(object, 0), &big, 2000),   // past the object
                daxheap_tx_write_arena(tx, "pages", 0, &big, 2000),           // past the 1 KiB log
                daxheap_tx_write_arena(tx, "missing", 0, &word, 8),
                daxheap_tx_write_arena(tx, "pages", twoMiB - 4, &word, 8),
                daxheap_tx_write(tx, 8192, &word, 8),                         // metadata
                daxheap_tx_write(tx, daxheap_field(object, 0), nil, 8),
                daxheap_tx_write(tx, UInt64.max - 2, &word, 8),
                daxheap_tx_store64(tx, daxheap_field(object, 4), 1),
                daxheap_tx_alloc(tx, 16, kindData, 0, slot, nil),               // occupied
                daxheap_tx_alloc(tx, 16, 9, 0, daxheap_field(object, 8), nil),
                daxheap_tx_free(tx, daxheap_field(object, 8)),                  // null
                daxheap_tx_publish(tx, object),                                 // not a reservation
                daxheap_tx_store64(tx, daxheap_field(object, 16), 42),          // this one succeeds
            ]
            return 0
        }
        #expect(rc == 0)
        let expected: [daxheap_status] = [DAXHEAP_EINVAL, DAXHEAP_ENOSPC, DAXHEAP_ENOENT, DAXHEAP_ERANGE, DAXHEAP_EINVAL,
                                          DAXHEAP_EINVAL, DAXHEAP_ERANGE, DAXHEAP_EINVAL, DAXHEAP_EEXIST, DAXHEAP_EINVAL,
                                          DAXHEAP_EINVAL, DAXHEAP_EINVAL, DAXHEAP_OK]
        #expect(statuses == expected.map(code))
        let base = try address(objects, object)
        #expect(base.load(fromByteOffset: 16, as: UInt64.self) == 42)
        #expect(base.load(as: UInt64.self) == 0 && base.load(fromByteOffset: 8, as: UInt64.self) == 0)
        #expect(try readBytes(heap, "pages", at: 0, count: 8) == [UInt8](repeating: 0, count: 8))
        #expect(stats(objects).objects == 1)
    }

    /// A reservation published by a transaction with the store that links it; aborted, it
    /// is freed. Either way it is no longer an open reservation.
    @Test func publishingAReservationInATransaction() throws {
        let (path, heap, objects) = try createObjects()
        defer { removeFile(path); daxheap_close(heap) }
        defer { #expect(daxheap_objects_close(objects) == 0) }
        let ctx = try openContext(objects)
        defer { #expect(daxheap_objctx_close(ctx) == 0) }
        let head = try root(objects, "head")
        // Push two nodes { next, value } at the head, each: reserve, fill, transaction.
        for value in [UInt64(1), 2] {
            var node: UInt64 = 0
            var pointer: UnsafeMutableRawPointer?
            #expect(daxheap_reserve(ctx, 16, kindReferences, 0, &node, &pointer) == 0)
            pointer!.storeBytes(of: try load(objects, head), as: UInt64.self)
            pointer!.storeBytes(of: value, toByteOffset: 8, as: UInt64.self)
            #expect(runTransaction(ctx) { tx in
                let published = daxheap_tx_publish(tx, node)
                return published != 0 ? published : daxheap_tx_store64(tx, head, node)
            } == 0, "\(lastMessage())")
            #expect(daxheap_cancel(ctx, node) == code(DAXHEAP_EINVAL), "published: not open any more")
        }
        let top = try load(objects, head)
        #expect(try address(objects, top).load(fromByteOffset: 8, as: UInt64.self) == 2)
        #expect(try address(objects, try load(objects, daxheap_field(top, 0))).load(fromByteOffset: 8, as: UInt64.self) == 1)

        // Pop the top: free it from the head and link the next one, in one transaction.
        let next = try load(objects, daxheap_field(top, 0))
        #expect(runTransaction(ctx) { tx in
            let freed = daxheap_tx_free(tx, head)
            return freed != 0 ? freed : daxheap_tx_store64(tx, head, next)
        } == 0, "\(lastMessage())")
        #expect(try load(objects, head) == next)
        #expect(stats(objects).objects == 1)

        // Aborted: the published reservation is freed.
        var node: UInt64 = 0
        #expect(daxheap_reserve(ctx, 16, kindReferences, 0, &node, nil) == 0)
        #expect(stats(objects).objects == 2)
        #expect(runTransaction(ctx) { tx in daxheap_tx_publish(tx, node) == 0 ? 1 : -1 } == 1)
        #expect(stats(objects).objects == 1)
        #expect(daxheap_cancel(ctx, node) == code(DAXHEAP_EINVAL))
    }

    /// Inside a body the context refuses calls of its own (a nested transaction, a plain
    /// allocation, its close); a tx handle used after its body, or from another thread,
    /// is refused too.
    @Test func misuseInsideAndAfterTheBody() throws {
        let (path, heap, objects) = try createObjects()
        defer { removeFile(path); daxheap_close(heap) }
        defer { #expect(daxheap_objects_close(objects) == 0) }
        let ctx = try openContext(objects)
        defer { #expect(daxheap_objctx_close(ctx) == 0) }
        let slot = try root(objects, "r")
        var inside: [Int32] = []
        var saved: UInt = 0
        let fromOtherThread = Locked<Int32>(0)
        #expect(runTransaction(ctx) { tx in
            saved = UInt(bitPattern: tx)
            inside.append(runTransaction(ctx) { _ in 0 })
            inside.append(daxheap_alloc(ctx, 16, kindData, 0, slot, nil))
            inside.append(daxheap_objctx_close(ctx))
            let txAddress = UInt(bitPattern: tx)
            onThreads(1) { _ in
                let rc = daxheap_tx_store64(OpaquePointer(bitPattern: txAddress), slot, 0)
                fromOtherThread.withLock { $0 = rc }
            }
            return 0
        } == 0)
        #expect(inside == [code(DAXHEAP_EBUSY), code(DAXHEAP_EBUSY), code(DAXHEAP_EBUSY)])
        #expect(fromOtherThread.withLock { $0 } == code(DAXHEAP_EINVAL))
        #expect(daxheap_tx_store64(OpaquePointer(bitPattern: saved), slot, 0) == code(DAXHEAP_EINVAL))
        #expect(lastMessage().contains("valid only inside"))
        #expect(daxheap_alloc(ctx, 16, kindData, 0, slot, nil) == 0, "usable again after the body")
    }

    /// Two threads, a context each, building their own lists at once (plain allocation and
    /// transactions); a third thread's use of a busy context is refused, not a race.
    @Test func twoThreadsWithAContextEach() throws {
        let (path, heap, objects) = try createObjects(size: 64 << 20, objectsSize: 16 << 20)
        defer { removeFile(path) }
        let objectsAddress = UInt(bitPattern: objects)
        let failures = Locked<[String]>([])
        let nodes = 300
        onThreads(2) { i in
            let objects = OpaquePointer(bitPattern: objectsAddress)!
            func check(_ rc: Int32, _ what: String) {
                if rc != 0 { failures.withLock { $0.append("thread \(i): \(what): \(rc) \(String(cString: daxheap_errmsg()))") } }
            }
            var ctx: OpaquePointer?
            check(daxheap_objctx_open(objects, &ctx), "open")
            var head: UInt64 = 0
            check(daxheap_objects_root(objects, "list\(i)", &head), "root")
            var tail = head
            for n in 0..<nodes {
                var node: UInt64 = 0
                if n % 2 == 0 {
                    check(daxheap_alloc(ctx, 24, kindReferences, 0, tail, &node), "alloc \(n)")
                    var pointer: UnsafeMutableRawPointer?
                    check(daxheap_objects_address(objects, node, &pointer), "address")
                    pointer?.storeBytes(of: UInt64(n), toByteOffset: 8, as: UInt64.self)
                    check(daxheap_objects_persist(objects, pointer.map { $0 + 8 }, 8), "persist")
                } else {
                    check(runTransaction(ctx) { tx in
                        let rc = daxheap_tx_alloc(tx, 24, kindReferences, 0, tail, &node)
                        var value = UInt64(n)
                        return rc != 0 ? rc : daxheap_tx_write(tx, daxheap_field(node, 8), &value, 8)
                    }, "transaction \(n)")
                }
                tail = daxheap_field(node, 0)
            }
            check(daxheap_objctx_close(ctx), "close")
        }
        #expect(failures.withLock { $0 } == [])
        #expect(stats(objects).objects == UInt64(2 * nodes))
        #expect(daxheap_objects_close(objects) == 0)
        daxheap_close(heap)

        let again = try openHeap(path)
        defer { daxheap_close(again) }
        let objs = try openObjects(again, "objs")
        defer { #expect(daxheap_objects_close(objs) == 0) }
        for i in 0..<2 {
            var values: [UInt64] = []
            var ref = try load(objs, try root(objs, "list\(i)"))
            while ref != 0 {
                values.append(try address(objs, ref).load(fromByteOffset: 8, as: UInt64.self))
                ref = try load(objs, daxheap_field(ref, 0))
            }
            #expect(values == (0..<UInt64(nodes)).map { $0 })
        }
    }

    /// One context, two threads: while one runs a transaction, the other's calls on the
    /// context are refused with DAXHEAP_EBUSY and change nothing.
    @Test func aContextInUseByAnotherThreadIsBusy() throws {
        let (path, heap, objects) = try createObjects()
        defer { removeFile(path); daxheap_close(heap) }
        defer { #expect(daxheap_objects_close(objects) == 0) }
        let ctx = try openContext(objects)
        let slot = try root(objects, "r")
        let ctxAddress = UInt(bitPattern: ctx)
        let phase = Phase()
        let seen = Locked<[Int32]>([])
        onThreads(2) { i in
            let ctx = OpaquePointer(bitPattern: ctxAddress)
            if i == 0 {
                let rc = runTransaction(ctx) { tx in
                    phase.value.store(1, ordering: .releasing)
                    while phase.value.load(ordering: .acquiring) != 2 { sched_yield() }
                    return daxheap_tx_alloc(tx, 16, kindData, 0, slot, nil)
                }
                seen.withLock { $0.append(rc) }
            } else {
                while phase.value.load(ordering: .acquiring) != 1 { sched_yield() }
                var scratch: UInt64 = 0
                let busy = [daxheap_alloc(ctx, 16, kindData, 0, slot, nil), daxheap_free(ctx, slot),
                            daxheap_reserve(ctx, 16, kindData, 0, &scratch, nil), runTransaction(ctx) { _ in 0 },
                            daxheap_objctx_close(ctx)]
                seen.withLock { $0 += busy }
                phase.value.store(2, ordering: .releasing)
            }
        }
        #expect(seen.withLock { $0 } == [Int32](repeating: code(DAXHEAP_EBUSY), count: 5) + [0])
        #expect(stats(objects).objects == 1)
        #expect(daxheap_objctx_close(ctx) == 0)
    }
}
