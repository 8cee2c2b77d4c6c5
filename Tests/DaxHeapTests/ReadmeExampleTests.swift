import DaxHeap
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The README's library example, kept compiling and true.
@Suite struct ReadmeExampleTests {
    @Test func readmeExample() throws {
        let path = "/dev/shm/daxheap-readme-\(getpid()).heap"
        defer { unlink(path) }
        var reference: PersistentReference
        do {
        let heap = try Heap.create(path: path, size: 64 << 20)
            let log = try heap.createArena(named: "log", size: 8 << 20)
            try log.memcpyPersist(at: 0, Array("hello, persistent world".utf8))
            try log.withUnsafeMutableBytes(at: 4096, count: 8) { bytes in
                bytes.storeBytes(of: UInt64(42), as: UInt64.self)
            }
            try log.persist(at: 4096, count: 8)
            let window = try log.mapWindow()
            try window.memcpyPersist(at: (2 << 20) - 4, Array("straddles".utf8))
            try heap.resizeArena(named: "log", to: 16 << 20)
            window.base.storeBytes(of: UInt64(7), toByteOffset: 12 << 20, as: UInt64.self)
            try window.persist(at: 12 << 20, count: 8)
            window.close()
            let index = try heap.findArena(named: "index") ?? heap.createArena(named: "index", size: 2 << 20)
            try Arena.withViews([index, log]) { views throws(HeapError) in
                let slot = try views[0].wrappingAdd(1, at: 0)
                try views[1].store(slot, at: 8192)
                try views[1].persist(at: 8192, count: 8)
            }
            reference = try log.reference(at: 4096)
            try heap.close()
            #expect(throws: HeapError.heapClosed(path: path)) { try log.read(at: 0, count: 1) }
        }
        let reopened = try Heap.open(path: path)
        let arena = try reopened.resolve(reference)
        let value = try arena.withUnsafeBytes(at: reference.offset, count: 8) { $0.load(as: UInt64.self) }
        #expect(value == 42)
        #expect(arena.name == "log")
        #expect(try arena.read(at: 0, count: 23) == Array("hello, persistent world".utf8))
        #expect(arena.size == 16 << 20)
        #expect(try arena.read(at: (2 << 20) - 4, count: 9) == Array("straddles".utf8))
        #expect(try arena.read(at: 12 << 20, count: 8) == [7, 0, 0, 0, 0, 0, 0, 0])
        #expect(try reopened.arena(named: "index").read(at: 0, count: 8) == [1, 0, 0, 0, 0, 0, 0, 0])
        #expect(try arena.read(at: 8192, count: 8) == [UInt8](repeating: 0, count: 8))  // the slot before the add
    }
}

/// The README's "Testing crash consistency" example, with the sound and the broken publish.
@Suite struct ReadmePowerLossExampleTests {
    private struct Torn: Error {}

    private func run(sound: Bool) throws -> PowerLossSimulator {
        let directory = try tempDirectory(), path = tempPath()
        defer { removeTree(directory); removeFile(path) }
        func publish(_ record: [UInt8], in window: ArenaWindow) throws {
            if sound { try window.memcpyPersist(at: 4096, record) } else {
                try record.withUnsafeBytes { bytes in try window.memcpyNoDrain(at: 4096, from: bytes) }
            }
            try window.store(1, at: 0)
            try window.persist(at: 0, count: 8)
        }

        let record = Array(repeating: UInt8(0xAB), count: 256)
        let simulator = PowerLossSimulator(directory: directory) { image in
            let heap = try Heap.open(path: image.path, mode: .readOnly)
            let log = try heap.arena(named: "log")
            if try log.withView({ try $0.load(at: 0) }) == 1, try log.read(at: 4096, count: 256) != record {
                throw Torn()
            }
        }
        simulator.isArmed = false  // sweep the publish, not the setup
        let heap = try Heap.create(path: path, size: 16 << 20, simulator: simulator)
        let window = try heap.createArena(named: "log", size: 2 << 20).mapWindow()
        simulator.isArmed = true
        try publish(record, in: window)
        window.close()
        return simulator
    }

    @Test func theSoundPublishPasses() throws {
        try run(sound: true).verify()
    }

    @Test func theBrokenPublishFails() throws {
        #expect(throws: PowerLossFailure.self) { try run(sound: false).verify() }
    }
}
