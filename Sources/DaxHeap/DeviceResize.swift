import DaxMetadata

// A heap on a device larger than itself: docs/FORMAT.md, "Device growth and shrink".

extension Heap {
    /// The heap's size as its metadata records it: its secondary copy lives in the last
    /// 2 MiB block of it and its usable region ends there. At most ``deviceSize``.
    public var heapSize: UInt64 { state.withLock { $0.table.deviceSize } }

    /// Bytes of the device past the heap's end: the device grew (``grow(path:logger:simulator:)``
    /// extends the heap over them), or was not cut yet after ``shrink(path:to:logger:simulator:)``.
    /// While this is not zero the heap opens read-only only.
    public var unusedDeviceSize: UInt64 { deviceSize - heapSize }
}
