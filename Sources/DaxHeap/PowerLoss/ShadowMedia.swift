// The simulated media under a PowerLossSimulator: the bytes fences made durable, the lines
// flushed but not yet fenced, and the words a crash could leave either way.
//
// The x86 rules it models (pmemcheck's, ../docs/POWERLOSS.md): a flush (CLWB) writes back
// a whole 64-byte line as it is at that moment; it is durable only after the flushing
// thread's next fence (SFENCE); an aligned 8-byte store is never torn, so a line that is not
// durable may reach the media word by word, each word old, flushed or new.

import DaxDevice
#if canImport(Glibc)
import Glibc
#endif

/// One aligned 8-byte word that a crash could leave with more than one value.
struct UndeterminedWord {
    let deviceOffset: Int
    let durable: UInt64
    /// Values flushed (by any thread) and not yet fenced.
    let flushed: [UInt64]
    let live: UInt64

    /// The distinct choices, durable first.
    var choices: [WordChoice] {
        var seen: [UInt64] = [durable]
        var result: [WordChoice] = [.durable]
        if let value = flushed.first(where: { !seen.contains($0) }) { seen.append(value); result.append(.flushed) }
        if !seen.contains(live) { result.append(.live) }
        return result
    }

    func value(_ choice: WordChoice) -> UInt64 {
        switch choice {
        case .durable: durable
        case .flushed: flushed.first(where: { $0 != durable }) ?? durable
        case .live: live
        }
    }
}

struct ShadowMedia {
    static let lineSize = 64
    static let wordSize = 8
    /// Windows map the device in multiples of this (the heap's 2 MiB unit).
    static let chunk = Int(MappedDevice.granularity)

    let size: Int
    /// What the media holds for sure: the device at attach time plus every fenced flush.
    let durable: UnsafeMutableRawBufferPointer
    /// The whole-device mapping, or, once it is gone, ``unmappedLive``.
    private(set) var live: UnsafeRawPointer
    /// What memory held when the device was unmapped (the heap closed): the live side of
    /// crash points taken before it is mapped again.
    private var unmappedLive: UnsafeMutableRawBufferPointer?
    /// Window mappings, by 2 MiB chunk: chunk address -> device offset.
    var windowChunks: [UInt: Int] = [:]
    /// Per thread (pthread_self): device line index -> the line as it was flushed.
    var flushed: [UInt: [Int: SIMD8<UInt64>]] = [:]

    /// Takes everything the device holds now as durable.
    init(base: UnsafeRawPointer, size: Int) {
        self.size = size
        live = base
        durable = .allocate(byteCount: size, alignment: Self.lineSize)
        durable.copyMemory(from: UnsafeRawBufferPointer(start: base, count: size))
    }

    func release() {
        durable.deallocate()
        unmappedLive?.deallocate()
    }

    /// The device mapping is about to go: keep what it holds as the live side.
    mutating func unmap() {
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: Self.lineSize)
        copy.copyMemory(from: UnsafeRawBufferPointer(start: live, count: size))
        unmappedLive?.deallocate()
        unmappedLive = copy
        live = UnsafeRawPointer(copy.baseAddress!)
        windowChunks = [:]
    }

    /// The device was mapped again (the heap reopened): what was durable stays so, and
    /// lines flushed but not fenced stay pending.
    mutating func remap(base: UnsafeRawPointer) {
        unmappedLive?.deallocate()
        unmappedLive = nil
        live = base
        windowChunks = [:]
    }

    // MARK: - Mappings

    mutating func mapWindow(at address: UnsafeRawPointer, deviceOffset: UInt64, length: UInt64) {
        let start = UInt(bitPattern: address)
        for delta in stride(from: 0, to: Int(length), by: Self.chunk) {
            windowChunks[start + UInt(delta)] = Int(deviceOffset) + delta
        }
    }

    mutating func unmapWindow(at address: UnsafeRawPointer, length: UInt64) {
        let start = UInt(bitPattern: address)
        for delta in stride(from: 0, to: Int(length), by: Self.chunk) { windowChunks[start + UInt(delta)] = nil }
    }

    /// The device offset behind an address of the device mapping or of a window.
    func deviceOffset(of address: UInt) -> Int? {
        let base = UInt(bitPattern: live)
        if address >= base, address < base + UInt(size) { return Int(address - base) }
        let chunkStart = address & ~UInt(Self.chunk - 1)
        return windowChunks[chunkStart].map { $0 + Int(address - chunkStart) }
    }

    // MARK: - Flush and fence

    /// Snapshots every line of `[address, address + length)` for `thread`'s next fence.
    mutating func flush(_ address: UnsafeRawPointer, length: UInt64, thread: UInt) {
        guard length > 0 else { return }
        let first = UInt(bitPattern: address) & ~UInt(Self.lineSize - 1)
        let end = UInt(bitPattern: address) + UInt(length)
        var lines = flushed[thread] ?? [:]
        for lineAddress in stride(from: first, to: end, by: Self.lineSize) {
            // A flush of memory that is not the device's (a bug in the caller) proves nothing.
            guard let offset = deviceOffset(of: lineAddress) else { continue }
            lines[offset / Self.lineSize] = line(at: offset)
        }
        flushed[thread] = lines
    }

    /// Makes `thread`'s flushed lines durable.
    mutating func fence(thread: UInt) {
        guard let lines = flushed.removeValue(forKey: thread) else { return }
        for (index, value) in lines {
            durable.baseAddress!.storeBytes(of: value, toByteOffset: index * Self.lineSize, as: SIMD8<UInt64>.self)
        }
    }

    private func line(at offset: Int) -> SIMD8<UInt64> {
        live.loadUnaligned(fromByteOffset: offset, as: SIMD8<UInt64>.self)
    }

    // MARK: - What a crash could leave

    /// Every word whose value after a crash now is not certain: lines that differ from the
    /// durable image (flushed or not), and lines flushed but not fenced.
    func undeterminedWords() -> [UndeterminedWord] {
        var lines = Set<Int>()
        let page = 4096
        for start in stride(from: 0, to: size, by: page) where memcmp(live + start, durable.baseAddress! + start, page) != 0 {
            for offset in stride(from: start, to: start + page, by: Self.lineSize) where line(at: offset) != durableLine(at: offset) {
                lines.insert(offset / Self.lineSize)
            }
        }
        for perThread in flushed.values { lines.formUnion(perThread.keys) }
        var words: [UndeterminedWord] = []
        for index in lines.sorted() {
            let snapshots = flushed.values.compactMap { $0[index] }
            let old = durableLine(at: index * Self.lineSize), new = line(at: index * Self.lineSize)
            for w in 0..<(Self.lineSize / Self.wordSize) {
                let word = UndeterminedWord(deviceOffset: index * Self.lineSize + w * Self.wordSize,
                                            durable: old[w], flushed: snapshots.map { $0[w] }, live: new[w])
                if word.choices.count > 1 { words.append(word) }
            }
        }
        return words
    }

    private func durableLine(at offset: Int) -> SIMD8<UInt64> {
        UnsafeRawPointer(durable.baseAddress!).load(fromByteOffset: offset, as: SIMD8<UInt64>.self)
    }

    /// Writes the durable image with `overrides` (device offset, value) to `path`, sparse:
    /// zero stretches are left as holes.
    func writeImage(to path: String, overrides: [(Int, UInt64)]) -> String? {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { return "cannot create \(path): \(String(cString: strerror(errno)))" }
        defer { close(fd) }
        guard ftruncate(fd, off_t(size)) == 0 else { return "cannot size \(path): \(String(cString: strerror(errno)))" }
        let piece = 1 << 16
        for start in stride(from: 0, to: size, by: piece) {
            let bytes = durable.baseAddress! + start
            // All zero when the first byte is and every byte equals the next one.
            if bytes.load(as: UInt8.self) == 0, memcmp(bytes, bytes + 1, piece - 1) == 0 { continue }
            guard pwrite(fd, bytes, piece, off_t(start)) == piece else {
                return "cannot write \(path): \(String(cString: strerror(errno)))"
            }
        }
        for (offset, value) in overrides {
            var word = value
            guard pwrite(fd, &word, Self.wordSize, off_t(offset)) == Self.wordSize else {
                return "cannot write \(path): \(String(cString: strerror(errno)))"
            }
        }
        return nil
    }
}
