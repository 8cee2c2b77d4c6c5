import CDaxHeap
import DaxHeap
import DaxObjects
#if canImport(Glibc)
import Glibc
#endif

// Transactions: a C body run as the closure of ObjectContext.transaction, and the calls it
// makes through its `daxheap_tx *`. Declared (and documented) in daxheap.h; `@c
// @implementation` checks each signature against it.
//
// The Swift transaction is scoped to a closure (it commits when the closure returns and
// aborts when it throws), so C gets the same shape: a body function that returns 0 to
// commit. A begin/commit handle would let C leave a transaction open across calls, which
// the Swift API cannot express. The `daxheap_tx *` is the context's handle; the
// transaction it reaches is set only while the body runs.

/// Thrown out of the transaction's closure when the C body returns nonzero: it aborts.
private struct BodyAborted: Error {
    let code: Int32
}

@c @implementation
public func daxheap_tx_run(_ ctx: OpaquePointer?, _ body: daxheap_tx_body?, _ arg: UnsafeMutableRawPointer?) -> Int32 {
    var passedOn: Int32 = 0
    let result = status { () throws(Failure) in
        guard let body else { throw Failure(DAXHEAP_EINVAL, "the transaction body is NULL; pass a function that returns 0 to commit") }
        try ContextHandle.using(ctx) { handle throws(Failure) in
            let tx = OpaquePointer(Unmanaged.passUnretained(handle).toOpaque())
            do {
                try handle.context.transaction { (transaction: inout Transaction) throws -> Void in
                    try withUnsafeMutablePointer(to: &transaction) { pointer throws -> Void in
                        handle.transaction = pointer
                        handle.transactionThread.store(UInt(pthread_self()), ordering: .releasing)
                        defer {
                            handle.transactionThread.store(0, ordering: .releasing)
                            handle.transaction = nil
                        }
                        let code = body(tx, arg)
                        if code != 0 { throw BodyAborted(code: code) }
                    }
                }
            } catch let aborted as BodyAborted {
                // A negative code is (by the header's rule) a status the body passes on, with
                // the message of the call that failed: returned as it is, message untouched.
                guard aborted.code > 0 else { passedOn = aborted.code; return }
                throw Failure(daxheap_status(rawValue: aborted.code),
                              "the transaction's body returned \(aborted.code): aborted, nothing was applied")
            } catch let error as ObjectError {
                throw Failure(error)
            } catch {
                throw Failure(DAXHEAP_EIO, "the transaction failed: \(error)")
            }
        }
    }
    return passedOn != 0 ? passedOn : result
}

/// Runs `body` with the transaction `tx` reaches, checking that one is running on this
/// thread (a `daxheap_tx *` is valid only inside its body).
private func inTransaction(
    _ tx: OpaquePointer?, _ body: (ContextHandle, inout Transaction) throws(Failure) -> Void
) throws(Failure) {
    guard let tx else { throw Failure(DAXHEAP_EINVAL, "the transaction handle is NULL; pass the one daxheap_tx_run gives its body") }
    let handle = ContextHandle.from(tx)
    guard handle.transactionThread.load(ordering: .acquiring) == UInt(pthread_self()), let transaction = handle.transaction else {
        throw Failure(DAXHEAP_EINVAL, "no transaction of this context runs on this thread: a daxheap_tx is valid only inside "
            + "the body daxheap_tx_run gives it to, on the thread running it")
    }
    try body(handle, &transaction.pointee)
}

@c @implementation
public func daxheap_tx_write(_ tx: OpaquePointer?, _ offset: UInt64, _ src: UnsafeRawPointer?, _ length: UInt64) -> Int32 {
    status { () throws(Failure) in
        try inTransaction(tx) { _, transaction throws(Failure) in
            let source = try Arguments.source(src, length, "src")
            try Arguments.range(offset: offset, length: length)
            try objectCall { () throws(ObjectError) in try transaction.write(source, at: offset) }
        }
    }
}

@c @implementation
public func daxheap_tx_store64(_ tx: OpaquePointer?, _ offset: UInt64, _ value: UInt64) -> Int32 {
    status { () throws(Failure) in
        try inTransaction(tx) { _, transaction throws(Failure) in
            try Arguments.range(offset: offset, length: 8)
            try objectCall { () throws(ObjectError) in try transaction.store(value, at: offset) }
        }
    }
}

@c @implementation
public func daxheap_tx_write_arena(
    _ tx: OpaquePointer?, _ arena: UnsafePointer<CChar>?, _ offset: UInt64, _ src: UnsafeRawPointer?, _ length: UInt64
) -> Int32 {
    status { () throws(Failure) in
        try inTransaction(tx) { handle, transaction throws(Failure) in
            let name = try Arguments.string(arena, "the arena name")
            let source = try Arguments.source(src, length, "src")
            try Arguments.range(offset: offset, length: length)
            let heap = handle.owner.objects.arena.heap
            let target = try heapCall { () throws(HeapError) in try heap.arena(named: name) }
            try objectCall { () throws(ObjectError) in try transaction.write(source, to: target, at: offset) }
        }
    }
}

@c @implementation
public func daxheap_tx_alloc(
    _ tx: OpaquePointer?, _ size: UInt64, _ kind: Int32, _ alignment: UInt64, _ slot: UInt64, _ out: UnsafeMutablePointer<UInt64>?
) -> Int32 {
    status { () throws(Failure) in
        try inTransaction(tx) { _, transaction throws(Failure) in
            let kind = try Arguments.kind(kind)
            let reference = try objectCall { () throws(ObjectError) in
                try transaction.allocate(size, kind: kind, alignment: Arguments.alignment(alignment), into: ObjectSlot(offset: slot))
            }
            out?.pointee = reference.rawValue
        }
    }
}

@c @implementation
public func daxheap_tx_publish(_ tx: OpaquePointer?, _ reservation: UInt64) -> Int32 {
    status { () throws(Failure) in
        try inTransaction(tx) { handle, transaction throws(Failure) in
            let open = try handle.reservation(reservation)
            _ = try objectCall { () throws(ObjectError) in try transaction.publish(open) }
            // The transaction owns it now: committed it is the application's, aborted it is freed.
            handle.reservations[reservation] = nil
        }
    }
}

@c @implementation
public func daxheap_tx_free(_ tx: OpaquePointer?, _ slot: UInt64) -> Int32 {
    status { () throws(Failure) in
        try inTransaction(tx) { _, transaction throws(Failure) in
            try objectCall { () throws(ObjectError) in try transaction.free(from: ObjectSlot(offset: slot)) }
        }
    }
}
