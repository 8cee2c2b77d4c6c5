// The device identity record of format version 2 (docs/FORMAT.md, "Device identity"):
// what sysfs showed of a device-dax's physical layout when the heap recorded it.

/// One mapping range of a device-dax: `length` bytes of the device from `deviceOffset`
/// live at physical address `physicalStart` (sysfs `mappingN/{start,end,page_offset}`,
/// with the page offset turned into bytes).
public struct MappingRangeRecord: Hashable, Sendable {
    public var deviceOffset: UInt64
    public var physicalStart: UInt64
    public var length: UInt64

    public init(deviceOffset: UInt64, physicalStart: UInt64, length: UInt64) {
        self.deviceOffset = deviceOffset
        self.physicalStart = physicalStart
        self.length = length
    }
}

/// What identifies a device-dax's physical layout, as far as sysfs let it be read: a field
/// is nil when it could not be read (the mapping ranges are readable by root only).
public struct DeviceIdentityRecord: Hashable, Sendable {
    /// The dax region's id (the X of daxX.Y).
    public var regionID: UInt64?
    /// The dax region's size in bytes.
    public var regionSize: UInt64?
    /// The device's mapping alignment (sysfs `align`).
    public var alignment: UInt64
    /// The device's size when this was recorded (for people: the heap's size rules compare sizes).
    public var deviceSize: UInt64
    /// The device's mapping ranges, ordered by device offset; nil when unreadable.
    public var ranges: [MappingRangeRecord]?

    public init(regionID: UInt64?, regionSize: UInt64?, alignment: UInt64, deviceSize: UInt64, ranges: [MappingRangeRecord]?) {
        self.regionID = regionID
        self.regionSize = regionSize
        self.alignment = alignment
        self.deviceSize = deviceSize
        self.ranges = ranges
    }

    // Byte layout, at the end of a version-2 table (little-endian):
    //    0 recordLength u32 (48 + 24 * rangeCount) | 4 known u32 (the Known bits) |
    //    8 regionID u64 | 16 regionSize u64 | 24 alignment u64 | 32 rangeCount u32 |
    //   36 reserved u32 (zero) | 40 deviceSize u64 |
    //   48 rangeCount x 24-byte ranges: deviceOffset u64 | physicalStart u64 | length u64
    public static let headerSize = 48
    public static let rangeSize = 24
    /// The most mapping ranges a record holds; a device with more records them as unknown.
    public static let maxRanges = 62
    /// Bytes the arena table leaves free in a metadata block for the largest record.
    public static let reservedLength = headerSize + maxRanges * rangeSize

    enum Known {
        static let regionID: UInt32 = 1 << 0
        static let regionSize: UInt32 = 1 << 1
        static let ranges: UInt32 = 1 << 2
        static let all = regionID | regionSize | ranges
    }

    /// Bytes this record takes.
    public var encodedLength: Int { Self.headerSize + (ranges?.count ?? 0) * Self.rangeSize }

    func write(at offset: Int, _ w: Writer) {
        var known: UInt32 = 0
        if regionID != nil { known |= Known.regionID }
        if regionSize != nil { known |= Known.regionSize }
        if ranges != nil { known |= Known.ranges }
        w.u32(UInt32(encodedLength), at: offset)
        w.u32(known, at: offset + 4)
        w.u64(regionID ?? 0, at: offset + 8)
        w.u64(regionSize ?? 0, at: offset + 16)
        w.u64(alignment, at: offset + 24)
        w.u32(UInt32(ranges?.count ?? 0), at: offset + 32)
        w.u32(0, at: offset + 36)
        w.u64(deviceSize, at: offset + 40)
        var at = offset + Self.headerSize
        for range in ranges ?? [] {
            w.u64(range.deviceOffset, at: at)
            w.u64(range.physicalStart, at: at + 8)
            w.u64(range.length, at: at + 16)
            at += Self.rangeSize
        }
    }

    /// Decodes and validates the record in `length` bytes at `offset`.
    static func read(at offset: Int, length: Int, _ r: Reader) -> Result<DeviceIdentityRecord, MetadataDecodeError> {
        func corrupt(_ why: String) -> Result<DeviceIdentityRecord, MetadataDecodeError> { .failure(.corrupt("device identity: \(why)")) }
        guard length >= headerSize else { return corrupt("\(length) bytes, shorter than its \(headerSize)-byte header") }
        let recordLength = Int(r.u32(at: offset))
        let known = r.u32(at: offset + 4)
        let count = Int(r.u32(at: offset + 32))
        guard count <= maxRanges, recordLength == headerSize + count * rangeSize, recordLength == length else {
            return corrupt("record length \(recordLength) with \(count) ranges does not fill the \(length) bytes left in the table")
        }
        guard known & ~Known.all == 0, r.u32(at: offset + 36) == 0 else {
            return corrupt("unknown flags \(hex32(known)) or non-zero reserved field")
        }
        let regionID = r.u64(at: offset + 8)
        let regionSize = r.u64(at: offset + 16)
        guard known & Known.regionID != 0 || regionID == 0, known & Known.regionSize != 0 || regionSize == 0,
              known & Known.ranges != 0 || count == 0
        else {
            return corrupt("a field marked unknown is not zero")
        }
        let alignment = r.u64(at: offset + 24)
        guard alignment >= 4096, alignment & (alignment - 1) == 0, alignment <= 1 << 30 else {
            return corrupt("alignment \(alignment) is not a power of two between 4 KiB and 1 GiB")
        }
        var ranges: [MappingRangeRecord] = []
        var end: UInt64 = 0
        for i in 0 ..< count {
            let at = offset + headerSize + i * rangeSize
            let range = MappingRangeRecord(deviceOffset: r.u64(at: at), physicalStart: r.u64(at: at + 8), length: r.u64(at: at + 16))
            guard range.length > 0, range.deviceOffset >= end,
                  range.deviceOffset <= UInt64.max - range.length, range.physicalStart <= UInt64.max - range.length
            else {
                return corrupt("mapping range \(i) is empty, out of order, overlapping or past 2^64")
            }
            end = range.deviceOffset + range.length
            ranges.append(range)
        }
        return .success(DeviceIdentityRecord(
            regionID: known & Known.regionID != 0 ? regionID : nil,
            regionSize: known & Known.regionSize != 0 ? regionSize : nil,
            alignment: alignment, deviceSize: r.u64(at: offset + 40),
            ranges: known & Known.ranges != 0 ? ranges : nil))
    }
}
