/* CDaxHeap is header-only: include/daxheap.h declares the C API, which the DaxHeapC
 * target implements in Swift (@c @implementation) and libdaxheap.so exports. SwiftPM
 * needs one source file in a C target; this is it. */
