import DaxHeap
import Testing

@Suite struct ArenaTranslatorTests {
    /// The translator agrees with the arena's extents at every page start, every page's
    /// last byte and each extent's last byte, and refuses the end of the arena.
    @Test func agreesWithTheExtentsOfADiscontiguousArena() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 64 << 20)
        let a = try makeDiscontiguousArena(on: heap, named: "a", extents: 4, tail: 2 << 20)
        let info = try a.info
        #expect(info.extents.count >= 4)
        try a.withTranslator { translator in
            #expect(translator.size == info.size)
            for extent in info.extents {
                var probes: [UInt64] = [extent.arenaOffset + extent.length - 1]
                for page in stride(from: extent.arenaOffset, to: extent.arenaOffset + extent.length, by: 2 << 20) {
                    probes += [page, page + (2 << 20) - 1]
                }
                for offset in probes {
                    let within = offset - extent.arenaOffset
                    let found = translator.translate(offset)
                    #expect(found?.deviceOffset == extent.deviceOffset + within, "offset \(offset)")
                    #expect(found?.contiguous == extent.length - within, "offset \(offset)")
                }
            }
            #expect(translator.translate(info.size) == nil)
        }
        try heap.destroyArena(named: "a")
        #expect(throws: HeapError.unknownArena("a")) { try a.withTranslator { _ in } }
    }
}
