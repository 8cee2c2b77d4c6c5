/// The block sizes of small objects: 16 to 128 bytes in steps of 16, then four classes per
/// doubling up to 1 MiB (160, 192, 224, 256, 320, ...). A request takes the smallest class
/// that fits, so a block wastes less than a fifth of itself for requests of 64 bytes and
/// more (less than a quarter from 48). Anything larger than 1 MiB is a large object: a
/// run of whole 2 MiB chunks.
enum SizeClasses {
    static let sizes: [UInt64] = {
        var sizes: [UInt64] = (1...8).map { UInt64($0) * 16 }
        var base: UInt64 = 128
        while base < largestSmall {
            for step in 1...4 { sizes.append(base + UInt64(step) * base / 4) }
            base *= 2
        }
        return sizes
    }()

    static let count = sizes.count
    static let largestSmall: UInt64 = 1 << 20
    /// The largest alignment a request may ask for.
    static let maximumAlignment: UInt64 = 4096

    /// For sizes up to 1024: the class of `(size + 15) / 16`.
    private static let smallLookup: [UInt8] = (0...64).map { granules in
        UInt8(sizes.firstIndex { $0 >= UInt64(granules) * 16 }!)
    }

    /// The class for `size` bytes (1 ... 1 MiB) aligned to `alignment` (a power of two up
    /// to 4096), or nil when only a large object fits.
    @inline(__always)
    static func index(size: UInt64, alignment: UInt64 = 16) -> Int? {
        if alignment <= 16, size <= 1024 { return Int(smallLookup[Int((size + 15) >> 4)]) }
        guard size <= largestSmall else { return nil }
        return sizes.firstIndex { $0 >= size && $0 % alignment == 0 }
    }

    /// Blocks of class `index` in one chunk.
    static func blocksPerChunk(_ index: Int) -> UInt64 { Layout.chunkSize / sizes[index] }
}
