import CDaxHeap
import DaxHeap
import DaxObjects

// Contexts: allocation into slots, freeing from slots, reserve/publish/cancel. Declared
// (and documented) in daxheap.h; `@c @implementation` checks each signature against it.

@c @implementation
public func daxheap_objctx_open(_ objects: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    status { () throws(Failure) in
        let handle = try Arguments.objects(objects)
        let out = try Arguments.out(out, "out")
        let context = try objectCall { () throws(ObjectError) in try handle.objects.makeContext() }
        out.pointee = ContextHandle(context: context, owner: handle).retainedPointer()
    }
}

@c @implementation
public func daxheap_objctx_close(_ ctx: OpaquePointer?) -> Int32 {
    status { () throws(Failure) in
        guard let ctx else { throw Failure(DAXHEAP_EINVAL, "the context handle is NULL; pass one from daxheap_objctx_open") }
        try ContextHandle.release(ctx)
    }
}

@c @implementation
public func daxheap_alloc(
    _ ctx: OpaquePointer?, _ size: UInt64, _ kind: Int32, _ alignment: UInt64, _ slot: UInt64, _ out: UnsafeMutablePointer<UInt64>?
) -> Int32 {
    status { () throws(Failure) in
        let kind = try Arguments.kind(kind)
        try ContextHandle.using(ctx) { handle throws(Failure) in
            let reference = try objectCall { () throws(ObjectError) in
                try handle.context.allocate(size, kind: kind, alignment: Arguments.alignment(alignment), into: ObjectSlot(offset: slot))
            }
            out?.pointee = reference.rawValue
        }
    }
}

@c @implementation
public func daxheap_free(_ ctx: OpaquePointer?, _ slot: UInt64) -> Int32 {
    status { () throws(Failure) in
        try ContextHandle.using(ctx) { handle throws(Failure) in
            try objectCall { () throws(ObjectError) in try handle.context.free(from: ObjectSlot(offset: slot)) }
        }
    }
}

@c @implementation
public func daxheap_reserve(
    _ ctx: OpaquePointer?, _ size: UInt64, _ kind: Int32, _ alignment: UInt64, _ out: UnsafeMutablePointer<UInt64>?,
    _ address: UnsafeMutablePointer<UnsafeMutableRawPointer?>?
) -> Int32 {
    status { () throws(Failure) in
        let kind = try Arguments.kind(kind)
        let out = try Arguments.out(out, "out")
        try ContextHandle.using(ctx) { handle throws(Failure) in
            let reservation = try objectCall { () throws(ObjectError) in
                try handle.context.reserve(size, kind: kind, alignment: Arguments.alignment(alignment))
            }
            handle.reservations[reservation.reference.rawValue] = reservation
            out.pointee = reservation.reference.rawValue
            address?.pointee = reservation.address
        }
    }
}

@c @implementation
public func daxheap_publish(_ ctx: OpaquePointer?, _ reservation: UInt64, _ slot: UInt64) -> Int32 {
    status { () throws(Failure) in
        try ContextHandle.using(ctx) { handle throws(Failure) in
            let open = try handle.reservation(reservation)
            try objectCall { () throws(ObjectError) in try handle.context.publish(open, into: ObjectSlot(offset: slot)) }
            handle.reservations[reservation] = nil
        }
    }
}

@c @implementation
public func daxheap_cancel(_ ctx: OpaquePointer?, _ reservation: UInt64) -> Int32 {
    status { () throws(Failure) in
        try ContextHandle.using(ctx) { handle throws(Failure) in
            handle.context.cancel(try handle.reservation(reservation))
            handle.reservations[reservation] = nil
        }
    }
}
