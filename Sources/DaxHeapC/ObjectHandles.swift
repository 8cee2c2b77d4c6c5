import CDaxHeap
import DaxHeap
import DaxObjects
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What a `daxheap_objects *` points to: a retained Swift object owning an ``ObjectHeap``
/// and a reference to the ``HeapHandle`` it came from.
///
/// An object heap maps its arena as a window, so it counts as one of the heap handle's
/// windows: a heap released with `daxheap_close` while an object heap is open stays mapped
/// until the object heap closes.
final class ObjectsHandle: CHandle, Sendable {
    let objects: ObjectHeap
    let owner: HeapHandle

    init(objects: ObjectHeap, owner: HeapHandle) {
        self.objects = objects
        self.owner = owner
    }

    /// Opens or creates an object heap through `make`, counted as a window of `owner`
    /// before it maps, so that a concurrent close of the owner's last window does not
    /// close the heap under it.
    static func open(_ owner: HeapHandle, _ make: () throws(ObjectError) -> ObjectHeap) throws(Failure) -> OpaquePointer {
        owner.windowOpening()
        let objects: ObjectHeap
        do {
            objects = try objectCall(make)
        } catch {
            try? owner.windowClosed()
            throw error
        }
        return ObjectsHandle(objects: objects, owner: owner).retainedPointer()
    }

    /// `daxheap_objects_close`: refused (nothing changed, the handle valid) while contexts
    /// are open; else unmaps, frees the handle, and closes the heap if the C side released
    /// it and this was its last window.
    static func release(_ pointer: OpaquePointer) throws(Failure) {
        let unmanaged = ObjectsHandle.unmanaged(pointer)
        let handle = unmanaged.takeUnretainedValue()
        try objectCall { () throws(ObjectError) in try handle.objects.close() }
        unmanaged.release()
        try handle.owner.windowClosed()
    }
}

/// What a `daxheap_objctx *` (and, while its transaction runs, a `daxheap_tx *`) points
/// to: a retained Swift object owning an ``ObjectContext``, the reservations it made that
/// are still open, and the transaction in progress.
///
/// An ``ObjectContext`` serves one thread at a time. C cannot be made to keep that rule,
/// so every call takes the handle's `busy` flag first (one compare-and-swap) and refuses
/// with DAXHEAP_EBUSY when another thread, or the context's own transaction body, holds
/// it. Everything mutable below is touched only by the flag's holder.
final class ContextHandle: CHandle {
    let context: ObjectContext
    let owner: ObjectsHandle
    private let busy = Atomic<Bool>(false)
    /// Reservations neither published nor cancelled, by reference: a Swift ``Reservation``
    /// cannot be rebuilt from what C holds, so C names one by its reference.
    var reservations: [UInt64: Reservation] = [:]
    /// The transaction `daxheap_tx_run` is running (written and read only by the thread
    /// running its body).
    var transaction: UnsafeMutablePointer<Transaction>?
    /// That thread (`pthread_self()`), or 0 when no transaction runs: what a `daxheap_tx_*`
    /// call checks first, so that a call from any other thread is refused, not a race.
    let transactionThread = Atomic<UInt>(0)

    init(context: ObjectContext, owner: ObjectsHandle) {
        self.context = context
        self.owner = owner
    }

    /// Runs `body` with the context behind `pointer`, holding its `busy` flag.
    static func using<R>(_ pointer: OpaquePointer?, _ body: (ContextHandle) throws(Failure) -> R) throws(Failure) -> R {
        guard let pointer else { throw Failure(DAXHEAP_EINVAL, "the context handle is NULL; pass one from daxheap_objctx_open") }
        let handle = from(pointer)
        guard handle.busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            throw Failure(DAXHEAP_EBUSY, "the context is in use: by another thread (open one context per thread), "
                + "or by its own transaction (inside daxheap_tx_run's body use the daxheap_tx_* calls)")
        }
        defer { handle.busy.store(false, ordering: .releasing) }
        return try body(handle)
    }

    /// The open reservation `reference` of this context.
    func reservation(_ reference: UInt64) throws(Failure) -> Reservation {
        guard let reservation = reservations[reference] else {
            throw Failure(DAXHEAP_EINVAL, "\(ObjectReference(rawValue: reference)) is not an open reservation of this context; "
                + "pass a reference from daxheap_reserve on the same context, not yet published or cancelled")
        }
        return reservation
    }

    /// `daxheap_objctx_close`: cancels the open reservations, closes the context (its
    /// cached blocks back to the heap, its lane free) and frees the handle.
    static func release(_ pointer: OpaquePointer) throws(Failure) {
        try using(pointer) { handle throws(Failure) in
            for reservation in handle.reservations.values { handle.context.cancel(reservation) }
            handle.reservations = [:]
            handle.context.close()
        }
        ContextHandle.unmanaged(pointer).release()
    }
}
