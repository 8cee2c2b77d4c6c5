// The arena functions: provisioning by name and the copying reads and writes. Every refusal
// is checked for its status, and for leaving the arena table, the bytes and the out
// parameters as they were.

import CDaxHeap
import DaxHeap
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct ArenaExportsTests {
    @Test func createResizeDestroyAndSize() throws {
        let (path, heap) = try createHeap()
        defer { removeFile(path); daxheap_close(heap) }
        #expect(daxheap_arena_create(heap, "a", twoMiB) == 0)
        #expect(try arenaSize(heap, "a").get() == twoMiB)
        #expect(daxheap_arena_resize(heap, "a", 4 * twoMiB) == 0)
        #expect(try arenaSize(heap, "a").get() == 4 * twoMiB)
        #expect(daxheap_arena_resize(heap, "a", twoMiB) == 0)
        #expect(try arenaSize(heap, "a").get() == twoMiB)
        // UTF-8 names up to 63 bytes.
        let long = String(repeating: "é", count: 31) + "x"  // 63 bytes
        #expect(daxheap_arena_create(heap, long, twoMiB) == 0)
        #expect(swiftHeap(heap).arenas.map(\.name).sorted() == ["a", long].sorted())
        #expect(daxheap_arena_destroy(heap, "a") == 0)
        #expect(arenaSize(heap, "a") == .failure(CStatus(code(DAXHEAP_ENOENT))))
        #expect(daxheap_arena_destroy(heap, long) == 0)
        #expect(daxheap_available_size(heap) == daxheap_usable_size(heap))
    }

    /// Each refused provisioning call: its status and message, the table and the file as
    /// they were.
    @Test func refusedProvisioningChangesNothing() throws {
        let (path, heap) = try createHeap()
        defer { removeFile(path); daxheap_close(heap) }
        #expect(daxheap_arena_create(heap, "a", 2 * twoMiB) == 0)
        #expect(writeBytes(heap, "a", at: 0, pattern(4096, seed: 3)) == 0)
        let swift = swiftHeap(heap)
        let arenas = swift.arenas
        let image = try fileImage(path)
        let available = daxheap_available_size(heap)
        let notUTF8: [CChar] = [0x61, CChar(bitPattern: 0xC3), 0]  // a truncated two-byte sequence
        let refusals: [(String, Int32, daxheap_status)] = [
            ("taken", daxheap_arena_create(heap, "a", twoMiB), DAXHEAP_EEXIST),
            ("no space", daxheap_arena_create(heap, "b", 64 * twoMiB), DAXHEAP_ENOSPC),
            ("grow past space", daxheap_arena_resize(heap, "a", 64 * twoMiB), DAXHEAP_ENOSPC),
            ("odd size", daxheap_arena_create(heap, "b", twoMiB + 4096), DAXHEAP_EINVAL),
            ("zero size", daxheap_arena_create(heap, "b", 0), DAXHEAP_EINVAL),
            ("huge size", daxheap_arena_create(heap, "b", UInt64.max), DAXHEAP_EINVAL),
            ("resize to zero", daxheap_arena_resize(heap, "a", 0), DAXHEAP_EINVAL),
            ("empty name", daxheap_arena_create(heap, "", twoMiB), DAXHEAP_EINVAL),
            ("long name", daxheap_arena_create(heap, String(repeating: "n", count: 64), twoMiB), DAXHEAP_EINVAL),
            ("control character", daxheap_arena_create(heap, "a\nb", twoMiB), DAXHEAP_EINVAL),
            ("not UTF-8", daxheap_arena_create(heap, notUTF8, twoMiB), DAXHEAP_EINVAL),
            ("NULL name", daxheap_arena_create(heap, nil, twoMiB), DAXHEAP_EINVAL),
            ("resize NULL", daxheap_arena_resize(heap, nil, twoMiB), DAXHEAP_EINVAL),
            ("destroy NULL", daxheap_arena_destroy(heap, nil), DAXHEAP_EINVAL),
            ("resize missing", daxheap_arena_resize(heap, "zz", twoMiB), DAXHEAP_ENOENT),
            ("destroy missing", daxheap_arena_destroy(heap, "zz"), DAXHEAP_ENOENT),
        ]
        for (what, status, expected) in refusals {
            #expect(status == code(expected), "\(what)")
        }
        // The messages, each right after its own call.
        for (what, call, message) in [
            ("taken", { daxheap_arena_create(heap, "a", twoMiB) }, "already exists"),
            ("no space", { daxheap_arena_create(heap, "b", 64 * twoMiB) }, "not enough space"),
            ("odd size", { daxheap_arena_create(heap, "b", twoMiB + 4096) }, "not a positive multiple of 2 MiB"),
            ("missing", { daxheap_arena_destroy(heap, "zz") }, "no arena named \"zz\""),
            ("NULL name", { daxheap_arena_create(heap, nil, twoMiB) }, "the arena name is NULL"),
            ("not UTF-8", { notUTF8.withUnsafeBufferPointer { daxheap_arena_destroy(heap, $0.baseAddress) } }, "not valid UTF-8"),
            ("control character", { daxheap_arena_create(heap, "a\nb", twoMiB) }, "invalid arena name \"a\\nb\""),
        ] as [(String, () -> Int32, String)] {
            #expect(call() < 0)
            #expect(lastMessage().contains(message), "\(what): \(lastMessage())")
            #expect(!lastMessage().contains("\n"), "one line")
        }
        var size: UInt64 = 77
        #expect(daxheap_arena_size(heap, "zz", &size) == code(DAXHEAP_ENOENT))
        #expect(daxheap_arena_size(heap, nil, &size) == code(DAXHEAP_EINVAL))
        #expect(daxheap_arena_size(heap, "a", nil) == code(DAXHEAP_EINVAL))
        #expect(size == 77)
        #expect(swift.arenas == arenas)
        #expect(daxheap_available_size(heap) == available)
        #expect(try fileImage(path) == image)
    }

    /// Writes and reads across extent boundaries: arena "a" grown into two discontiguous
    /// extents (b sits between them).
    @Test func writeAndReadAcrossExtents() throws {
        let (path, heap) = try createHeap()
        defer { removeFile(path); daxheap_close(heap) }
        #expect(daxheap_arena_create(heap, "a", twoMiB) == 0)
        #expect(daxheap_arena_create(heap, "b", twoMiB) == 0)
        #expect(daxheap_arena_resize(heap, "a", 3 * twoMiB) == 0)
        #expect(try swiftHeap(heap).arena(named: "a").info.extents.count >= 2)
        let bytes = pattern(Int(twoMiB) + 8192, seed: 11)
        let offset = twoMiB - 4096  // straddles the first boundary
        #expect(writeBytes(heap, "a", at: offset, bytes) == 0)
        #expect(try readBytes(heap, "a", at: offset, count: bytes.count) == bytes)
        #expect(try swiftHeap(heap).arena(named: "a").read(at: offset, count: bytes.count) == bytes)
        // "b" was not touched, and new space reads as zero.
        #expect(try readBytes(heap, "b", at: 0, count: 4096) == [UInt8](repeating: 0, count: 4096))
        // The last byte exactly; length 0 anywhere up to the end, NULL buffers allowed then.
        #expect(writeBytes(heap, "a", at: 3 * twoMiB - 1, [0xAB]) == 0)
        #expect(try readBytes(heap, "a", at: 3 * twoMiB - 1, count: 1) == [0xAB])
        #expect(daxheap_write(heap, "a", 3 * twoMiB, nil, 0) == 0)
        #expect(daxheap_read(heap, "a", 3 * twoMiB, nil, 0) == 0)
    }

    /// Ranges outside the arena, overflowing offsets, lengths no buffer has, NULL buffers:
    /// each refused before a byte is copied.
    @Test func badRangesAndBuffersAreRefusedBeforeAnyCopy() throws {
        let (path, heap) = try createHeap()
        defer { removeFile(path); daxheap_close(heap) }
        #expect(daxheap_arena_create(heap, "a", twoMiB) == 0)
        #expect(writeBytes(heap, "a", at: 0, pattern(4096, seed: 5)) == 0)
        let image = try fileImage(path)
        var buffer = [UInt8](repeating: 0xEE, count: 16)
        let cases: [(String, UInt64, UInt64, daxheap_status)] = [
            ("past the end", twoMiB - 8, 16, DAXHEAP_ERANGE),
            ("starting past the end", twoMiB + 1, 1, DAXHEAP_ERANGE),
            ("offset + length overflows", UInt64.max - 4, 16, DAXHEAP_ERANGE),
            ("a length no buffer has", 0, UInt64.max, DAXHEAP_ERANGE),
            ("a length past Int.max", 0, UInt64(Int.max) + 1, DAXHEAP_ERANGE),
        ]
        for (what, offset, length, status) in cases {
            // The length is a lie for the large cases: the call must refuse before using it.
            let wrote = buffer.withUnsafeBytes { daxheap_write(heap, "a", offset, $0.baseAddress, length) }
            #expect(wrote == code(status), "write \(what)")
            let read = buffer.withUnsafeMutableBytes { daxheap_read(heap, "a", offset, $0.baseAddress, length) }
            #expect(read == code(status), "read \(what)")
            #expect(!lastMessage().isEmpty)
        }
        #expect(daxheap_write(heap, "a", 0, nil, 1) == code(DAXHEAP_EINVAL))
        #expect(lastMessage() == "src is NULL for a length of 1 bytes; pass a buffer, or length 0")
        #expect(daxheap_read(heap, "a", 0, nil, 1) == code(DAXHEAP_EINVAL))
        #expect(lastMessage().hasPrefix("dst is NULL"))
        #expect(daxheap_write(heap, "missing", 0, &buffer, 1) == code(DAXHEAP_ENOENT))
        #expect(daxheap_read(heap, "missing", 0, &buffer, 1) == code(DAXHEAP_ENOENT))
        #expect(daxheap_write(heap, nil, 0, &buffer, 1) == code(DAXHEAP_EINVAL))
        #expect(daxheap_read(heap, nil, 0, &buffer, 1) == code(DAXHEAP_EINVAL))
        #expect(buffer == [UInt8](repeating: 0xEE, count: 16), "no failed read filled the buffer")
        #expect(try fileImage(path) == image, "no failed write reached the heap")
    }

    /// daxheap_write is durable on return: the bytes are in the file, seen through a
    /// separate descriptor, without a close.
    @Test func aWriteIsInTheFileWhenItReturns() throws {
        let (path, heap) = try createHeap()
        defer { removeFile(path); daxheap_close(heap) }
        #expect(daxheap_arena_create(heap, "a", twoMiB) == 0)
        let bytes = pattern(100, seed: 9)
        #expect(writeBytes(heap, "a", at: 500, bytes) == 0)
        let extent = try #require(swiftHeap(heap).arena(named: "a").info.extents.first)
        let image = try fileImage(path)
        let at = Int(extent.deviceOffset) + 500
        #expect(Array(image[at..<at + 100]) == bytes)
    }
}
