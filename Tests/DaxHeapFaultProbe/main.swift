// A test-only executable: runs one heap operation with the package-only test hooks that
// the `daxheap` tool must not have (injected metadata write faults, a fake sysfs tree),
// so that crash tests can kill it at every byte with DAXHEAP_CRASH_AFTER_BYTES.
//
//   DaxHeapFaultProbe update HEAP COPY:BYTES:KIND   create arena "new" (2 MiB) while every
//                                                   write of COPY (primary|secondary) stores
//                                                   BYTES bytes, then fails (media|io)
//   DaxHeapFaultProbe create-devdax DEVICE SYSFS    create a heap on a character device
//                                                   that SYSFS describes as a device-dax
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
    default:
        fail("usage: DaxHeapFaultProbe update HEAP COPY:BYTES:KIND | create-devdax DEVICE SYSFS")
    }
    print("ok")
} catch {
    fail("\(error)")
}
