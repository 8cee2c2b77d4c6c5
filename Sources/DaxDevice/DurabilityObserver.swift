// Simulated persistence: instead of flushing CPU caches, a device opened with an observer
// tells it about every flush and fence, so that a power-loss simulator can keep the image
// the media would hold. Chosen only by passing an observer to open/create: nothing else
// (no environment variable) switches a device to it.

/// Watches every flush and fence made through a ``MappedDevice`` (and the windows mapped
/// from it) whose persistence is ``PersistenceMode/simulated``.
///
/// The device makes its stores with plain copies and reports, in order:
/// - ``deviceMapped(base:size:)`` once, when the whole device is mapped, before any store,
///   and ``deviceUnmapped()`` just before that mapping goes (the device closed);
/// - ``windowMapped(at:deviceOffset:length:)`` / ``windowUnmapped(at:length:)`` when a
///   further mapping of device bytes appears or goes (so that a flush at a window address
///   can be traced to the device);
/// - ``flushed(_:length:)`` after a range was written back from the caches (CLWB);
/// - ``fenced()`` at the fence that makes the calling thread's earlier flushes durable (SFENCE).
public protocol DurabilityObserver: AnyObject, Sendable {
    func deviceMapped(base: UnsafeRawPointer, size: UInt64)
    func deviceUnmapped()
    func windowMapped(at address: UnsafeRawPointer, deviceOffset: UInt64, length: UInt64)
    func windowUnmapped(at address: UnsafeRawPointer, length: UInt64)
    func flushed(_ address: UnsafeRawPointer, length: UInt64)
    func fenced()
}
