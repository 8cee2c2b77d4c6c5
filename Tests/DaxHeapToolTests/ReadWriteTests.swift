import Foundation
import Testing

@Suite struct ReadWriteTests {
    @Test func roundTripThroughStandardInputAndOutput() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(arenas: [("a", "2M")])
        let data = Data("hello, persistent world\n".utf8)
        let write = expectSuccess(try Tool.run(["write", heap, "--name", "a", "--offset", "100"], stdin: data))
        #expect(write.out.contains("wrote \(data.count) bytes"))
        let read = expectSuccess(try Tool.run(["read", heap, "--name", "a", "--offset", "100", "--length", "\(data.count)"]))
        #expect(read.stdout == data)
        // Default: from the offset to the end of the arena; new arena bytes read as zero.
        let whole = expectSuccess(try Tool.run(["read", heap, "--name", "a"]))
        #expect(whole.stdout.count == 2 * MiB)
        #expect(whole.stdout[100 ..< 100 + data.count] == data)
        #expect(whole.stdout[0 ..< 100].allSatisfy { $0 == 0 })
        let tail = expectSuccess(try Tool.run(["read", heap, "--name", "a", "--offset", "\(2 * MiB - 3)"]))
        #expect(tail.stdout == Data([0, 0, 0]))
    }

    /// b is arena 0..<4M at device 6M and 4M..<8M at device 2M: data written across the
    /// boundary reads back whole and lands at both device places.
    @Test func acrossAnExtentBoundary() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: "32M", arenas: [("a", "4M"), ("b", "4M"), ("c", "4M")])
        expectSuccess(try Tool.run(["destroy-arena", heap, "--name", "a"]))
        expectSuccess(try Tool.run(["resize-arena", heap, "--name", "b", "--size", "8M"]))
        let data = pattern(3 * MiB)
        let start = 4 * MiB - 3 * MiB / 2
        expectSuccess(try Tool.run(["write", heap, "--name", "b", "--offset", "\(start)"], stdin: data))
        let back = expectSuccess(try Tool.run(["read", heap, "--name", "b", "--offset", "\(start)", "--length", "3M"]))
        #expect(back.stdout == data)
        // On the device: the first half at the end of the extent at 6M, the rest at 2M.
        let half = 3 * MiB / 2
        #expect(try readBytes(heap, at: 6 * MiB + start, count: half) == [UInt8](data.prefix(half)))
        #expect(try readBytes(heap, at: 2 * MiB, count: half) == [UInt8](data.suffix(half)))
        // The whole arena streams out (more than one 1 MiB chunk) with the data in place.
        let whole = expectSuccess(try Tool.run(["read", heap, "--name", "b"]))
        #expect(whole.stdout.count == 8 * MiB)
        #expect(whole.stdout[start ..< start + data.count] == data)
    }

    @Test func largeArenaStreamsOut() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: "32M", arenas: [("big", "12M")])
        let data = pattern(12 * MiB, seed: 9)
        expectSuccess(try Tool.run(["write", heap, "--name", "big"], stdin: data))
        let read = expectSuccess(try Tool.run(["read", heap, "--name", "big"]))
        #expect(read.stdout == data)
        let part = expectSuccess(try Tool.run(["read", heap, "--name", "big", "--offset", "1048575", "--length", "2097154"]))
        #expect(part.stdout == data[1_048_575 ..< 1_048_575 + 2_097_154])
    }

    @Test func zeroLengthEdges() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(arenas: [("a", "2M")])
        let end = "\(2 * MiB)"
        try expectUnchanged(heap) {
            // Empty input writes nothing, anywhere up to and including the end.
            expectSuccess(try Tool.run(["write", heap, "--name", "a"]))
            expectSuccess(try Tool.run(["write", heap, "--name", "a", "--offset", end]))
            // Reading nothing.
            #expect(expectSuccess(try Tool.run(["read", heap, "--name", "a", "--offset", end])).stdout.isEmpty)
            #expect(expectSuccess(try Tool.run(["read", heap, "--name", "a", "--offset", end, "--length", "0"])).stdout.isEmpty)
            #expect(expectSuccess(try Tool.run(["read", heap, "--name", "a", "--length", "0"])).stdout.isEmpty)
            // Any byte past the end is out of range.
            expectFailure(try Tool.run(["read", heap, "--name", "a", "--offset", "\(2 * MiB + 1)"]), "outside arena \"a\"")
            expectFailure(try Tool.run(["read", heap, "--name", "a", "--offset", "\(2 * MiB + 1)", "--length", "0"]), "outside arena \"a\"")
            expectFailure(try Tool.run(["read", heap, "--name", "a", "--offset", end, "--length", "1"]), "outside arena \"a\"")
            expectFailure(try Tool.run(["read", heap, "--name", "a", "--length", "\(2 * MiB + 1)"]), "outside arena \"a\"")
            expectFailure(try Tool.run(["read", heap, "--name", "a", "--offset", "1M", "--length", "16777215T"]), "outside arena \"a\"")
            expectFailure(try Tool.run(["read", heap, "--name", "a", "--offset", "18446744073709551615", "--length", "18446744073709551615"]), "outside arena \"a\"")
            expectFailure(try Tool.run(["write", heap, "--name", "a", "--offset", "\(2 * MiB + 1)"]), "outside arena \"a\"")
        }
    }

    @Test func writeThatDoesNotFitWritesNothing() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(arenas: [("a", "2M")])
        try expectUnchanged(heap) {
            expectFailure(try Tool.run(["write", heap, "--name", "a"], stdin: pattern(2 * MiB + 1)), "more than", "nothing was written")
            expectFailure(try Tool.run(["write", heap, "--name", "a", "--offset", "\(2 * MiB - 10)"], stdin: pattern(11)), "nothing was written")
            expectFailure(try Tool.run(["write", heap, "--name", "a", "--offset", "\(2 * MiB)"], stdin: Data([1])), "nothing was written")
            expectFailure(try Tool.run(["write", heap, "--name", "a", "--offset", "3M"], stdin: Data([1])), "outside arena \"a\"")
            expectFailure(try Tool.run(["write", heap, "--name", "nope"], stdin: Data([1])), "no arena named \"nope\"")
            expectFailure(try Tool.run(["read", heap, "--name", "nope"]), "no arena named \"nope\"")
        }
        // Exactly filling the arena works.
        let full = pattern(2 * MiB, seed: 3)
        expectSuccess(try Tool.run(["write", heap, "--name", "a"], stdin: full))
        #expect(expectSuccess(try Tool.run(["read", heap, "--name", "a"])).stdout == full)
        let last = expectSuccess(try Tool.run(["write", heap, "--name", "a", "--offset", "\(2 * MiB - 1)"], stdin: Data([0xAB])))
        #expect(last.out.contains("wrote 1 byte to"))
        #expect(expectSuccess(try Tool.run(["read", heap, "--name", "a", "--offset", "\(2 * MiB - 1)"])).stdout == Data([0xAB]))
    }

    @Test func dataSurvivesResizeOfOtherArenas() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: "32M", arenas: [("a", "2M"), ("b", "2M")])
        let data = pattern(MiB, seed: 5)
        expectSuccess(try Tool.run(["write", heap, "--name", "a", "--offset", "1M"], stdin: data))
        expectSuccess(try Tool.run(["resize-arena", heap, "--name", "a", "--size", "6M"]))
        expectSuccess(try Tool.run(["destroy-arena", heap, "--name", "b"]))
        let read = expectSuccess(try Tool.run(["read", heap, "--name", "a", "--offset", "1M", "--length", "1M"]))
        #expect(read.stdout == data)
        // Grown bytes read as zero.
        let grown = expectSuccess(try Tool.run(["read", heap, "--name", "a", "--offset", "2M"]))
        #expect(grown.stdout.count == 4 * MiB && grown.stdout.allSatisfy { $0 == 0 })
    }
}
