// A test-only executable: runs one heap operation with the package-only test hooks that
// the `daxheap` tool must not have (injected metadata write faults, a fake sysfs tree),
// so that crash tests can kill it at every byte with DAXHEAP_CRASH_AFTER_BYTES.
//
//   DaxHeapFaultProbe update HEAP COPY:BYTES:KIND   create arena "new" (2 MiB) while every
//                                                   write of COPY (primary|secondary) stores
//                                                   BYTES bytes, then fails (media|io)
//   DaxHeapFaultProbe create-devdax DEVICE SYSFS    create a heap on a character device
//                                                   that SYSFS describes as a device-dax
//   DaxHeapFaultProbe window-store HEAP ARENA       open HEAP read-only, map ARENA as a
//                                                   window, print "mapped", then store a
//                                                   byte at its base: must die of SIGSEGV
//   DaxHeapFaultProbe window-devdax DEVICE SYSFS    create a heap on a fake device-dax, an
//                                                   arena "a" of 2 MiB, try to map it as a
//                                                   window: prints the error, then checks
//                                                   the heap is unchanged and the offset
//                                                   API works
//
// Prints "ok" or the error, one line; exits 0, or 1 on an error.

import DaxDevice
import DaxHeap
import Logging
#if canImport(Glibc)
import Glibc
#endif

func fail(_ message: String) -> Never {
    print(message)
    exit(1)
}

func fault(_ spec: String) -> MetadataFaults.Fault {
    let parts = spec.split(separator: ":").map(String.init)
    guard parts.count == 3, let bytes = Int(parts[1]) else { fail("bad fault \(spec)") }
    let copy: MetadataIO.Copy = parts[0] == "primary" ? .primary : .secondary
    let kind: MetadataFaults.Kind = parts[2] == "media" ? .media : .io
    return MetadataFaults.Fault(copy: copy, storedBytes: bytes, kind: kind)
}

let arguments = CommandLine.arguments
let logger = Logger(label: "probe")
do throws(HeapError) {
    switch (arguments.count, arguments.dropFirst().first) {
    case (4, "update"):
        let heap = try Heap.open(path: arguments[2], mode: .readWrite, logger: logger, sysfsRoot: "/sys",
                                 faults: MetadataFaults([fault(arguments[3])]))
        try heap.createArena(named: "new", size: 2 << 20)
    case (4, "create-devdax"):
        // libpmem maps only real device-dax; the aligned mapping by hand takes any device.
        MappedDevice.forceManualMapping.store(true, ordering: .relaxed)
        _ = try Heap.create(path: arguments[2], size: nil, overwrite: true, logger: logger,
                            sysfsRoot: arguments[3], faults: nil)
    case (4, "window-store"):
        let heap = try Heap.open(path: arguments[2], mode: .readOnly)
        let window = try heap.arena(named: arguments[3]).mapWindow()
        print("mapped")
        fflush(nil)  // all streams: "mapped" must reach the parent before the fault
        window.base.storeBytes(of: 0xA5, as: UInt8.self)  // PROT_READ: the kernel refuses
        print("stored")
    case (4, "window-devdax"):
        MappedDevice.forceManualMapping.store(true, ordering: .relaxed)
        let heap = try Heap.create(path: arguments[2], size: nil, overwrite: true, logger: logger,
                                   sysfsRoot: arguments[3], faults: nil)
        let arena = try heap.createArena(named: "a", size: 2 << 20)
        let before = (heap.arenas, heap.generation, heap.availableSize)
        do throws(HeapError) {
            _ = try arena.mapWindow()
            fail("mapped")
        } catch {
            print(error)
        }
        guard (heap.arenas, heap.generation, heap.availableSize) == before, arena.openWindowCount == 0 else { fail("the heap changed") }
        try arena.memcpyPersist(at: 100, [1, 2, 3])
        guard try arena.read(at: 100, count: 3) == [1, 2, 3] else { fail("the offset API read back other bytes") }
    default:
        fail("usage: DaxHeapFaultProbe update HEAP COPY:BYTES:KIND | create-devdax DEVICE SYSFS | window-store HEAP ARENA | window-devdax DEVICE SYSFS")
    }
    print("ok")
} catch {
    fail("\(error)")
}
