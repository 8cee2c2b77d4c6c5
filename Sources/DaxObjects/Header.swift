import DaxHeap

/// The object heap's header (Layout, "Header"): written once at creation, checked at open.
struct HeaderFields: Equatable {
    var laneCount: Int
    var laneLogBytes: Int
    var chunkCapacity: UInt64
    var metadataChunks: UInt64
    var arenaID: UInt64

    func write(to window: ArenaWindow) throws(ObjectError) {
        var bytes = [UInt8](repeating: 0, count: Layout.headerBytes)
        bytes.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: Layout.magic, toByteOffset: Layout.magicOffset, as: UInt64.self)
            raw.storeBytes(of: Layout.version, toByteOffset: Layout.versionOffset, as: UInt32.self)
            raw.storeBytes(of: UInt32(laneCount), toByteOffset: Layout.laneCountOffset, as: UInt32.self)
            raw.storeBytes(of: UInt32(laneLogBytes), toByteOffset: Layout.laneLogBytesOffset, as: UInt32.self)
            raw.storeBytes(of: UInt32(Layout.rootCount), toByteOffset: Layout.rootCountOffset, as: UInt32.self)
            raw.storeBytes(of: chunkCapacity, toByteOffset: Layout.chunkCapacityOffset, as: UInt64.self)
            raw.storeBytes(of: metadataChunks, toByteOffset: Layout.metadataChunksOffset, as: UInt64.self)
            raw.storeBytes(of: arenaID, toByteOffset: Layout.arenaIDOffset, as: UInt64.self)
            let sum = Layout.checksum(raw.baseAddress!, Layout.headerChecksummed)
            raw.storeBytes(of: sum, toByteOffset: Layout.headerChecksumOffset, as: UInt32.self)
        }
        try ObjectHeap.wrap { () throws(HeapError) in try window.memcpyPersist(at: 0, bytes) }
    }

    static func read(from window: ArenaWindow, arena: Arena) throws(ObjectError) -> HeaderFields {
        guard window.size >= UInt64(Layout.headerBytes) else {
            throw .notAnObjectHeap(arena: arena.name, reason: "too small for a header")
        }
        let raw = UnsafeRawBufferPointer(start: window.base, count: Layout.headerBytes)
        let magic = raw.load(fromByteOffset: Layout.magicOffset, as: UInt64.self)
        guard magic == Layout.magic else {
            let reason = magic == 0 ? "no header: it was never made one, or its creation was interrupted; destroy the arena and create the object heap again" : "bad magic number"
            throw .notAnObjectHeap(arena: arena.name, reason: reason)
        }
        let version = raw.load(fromByteOffset: Layout.versionOffset, as: UInt32.self)
        guard version == Layout.version else {
            throw .notAnObjectHeap(arena: arena.name, reason: "version \(version), this library reads \(Layout.version)")
        }
        let sum = raw.load(fromByteOffset: Layout.headerChecksumOffset, as: UInt32.self)
        guard sum == Layout.checksum(raw.baseAddress!, Layout.headerChecksummed) else {
            throw .corrupt(arena: arena.name, detail: "the header's checksum does not match")
        }
        let fields = HeaderFields(
            laneCount: Int(raw.load(fromByteOffset: Layout.laneCountOffset, as: UInt32.self)),
            laneLogBytes: Int(raw.load(fromByteOffset: Layout.laneLogBytesOffset, as: UInt32.self)),
            chunkCapacity: raw.load(fromByteOffset: Layout.chunkCapacityOffset, as: UInt64.self),
            metadataChunks: raw.load(fromByteOffset: Layout.metadataChunksOffset, as: UInt64.self),
            arenaID: raw.load(fromByteOffset: Layout.arenaIDOffset, as: UInt64.self))
        let roots = raw.load(fromByteOffset: Layout.rootCountOffset, as: UInt32.self)
        guard (1...1024).contains(fields.laneCount), fields.laneLogBytes >= 1024, fields.laneLogBytes <= 1 << 20,
              fields.laneLogBytes % 64 == 0, Int(roots) == Layout.rootCount,
              fields.chunkCapacity < 1 << 32,
              fields.metadataChunks == Layout.metadataChunks(capacity: fields.chunkCapacity, laneCount: fields.laneCount,
                                                            laneLogBytes: fields.laneLogBytes)
        else { throw .corrupt(arena: arena.name, detail: "the header's geometry is inconsistent") }
        guard fields.arenaID == arena.id else {
            throw .corrupt(arena: arena.name, detail: "the header names arena id \(fields.arenaID), this arena is \(arena.id)")
        }
        guard window.size / Layout.chunkSize <= fields.chunkCapacity, window.size > fields.metadataChunks * Layout.chunkSize else {
            throw .corrupt(arena: arena.name, detail: "the arena (\(window.size) bytes) does not fit the chunk table (\(fields.chunkCapacity) chunks)")
        }
        return fields
    }
}

// MARK: - Roots

extension ObjectHeap {
    /// The slot of the root `name`, made (empty) if there is none yet: a fixed entry point
    /// that a program finds its structures from after a reopen. Making a root costs two
    /// fences; at most 64 roots.
    public func root(named name: String) throws(ObjectError) -> ObjectSlot {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= Layout.rootNameCapacity, !bytes.contains(0) else { throw .invalidRootName(name) }
        return try rootsLock.withLock { _ throws(ObjectError) -> ObjectSlot in
            if let slot = findRoot(bytes) { return slot }
            guard let entry = (0..<Layout.rootCount).first(where: { rootNameLength($0) == 0 }) else {
                throw .rootsFull(capacity: Layout.rootCount)
            }
            guard window.isWritable else { throw .heap(.readOnly(path: arena.heap.path)) }
            let at = rootOffset(entry)
            // The name is durable before the length that makes the entry count (a torn
            // name is never read); the reference was zeroed when the entry was last used.
            try ObjectHeap.wrap { () throws(HeapError) in
                try window.memcpyPersist(at: at + Layout.rootNameOffset, bytes + [UInt8](repeating: 0, count: Layout.rootNameCapacity - bytes.count))
            }
            word(at + Layout.rootNameLengthOffset).pointee.store(UInt64(bytes.count), ordering: .releasing)
            try persist(at + Layout.rootNameLengthOffset, 8)
            return ObjectSlot(offset: at + Layout.rootReferenceOffset)
        }
    }

    /// The slot of root `name`, or nil when there is none.
    public func findRoot(named name: String) -> ObjectSlot? {
        rootsLock.withLock { _ in findRoot(Array(name.utf8)) }
    }

    /// The names of the roots, in entry order.
    public var rootNames: [String] {
        rootsLock.withLock { _ in
            (0..<Layout.rootCount).compactMap { entry in rootName(entry) }
        }
    }

    func rootOffset(_ entry: Int) -> UInt64 { Layout.rootsOffset + UInt64(entry) * Layout.rootEntryBytes }

    func rootNameLength(_ entry: Int) -> Int {
        let length = word(rootOffset(entry) + Layout.rootNameLengthOffset).pointee.load(ordering: .acquiring)
        return length <= UInt64(Layout.rootNameCapacity) ? Int(length) : 0
    }

    func rootName(_ entry: Int) -> String? {
        let length = rootNameLength(entry)
        guard length > 0 else { return nil }
        let start = base + Int(rootOffset(entry) + Layout.rootNameOffset)
        return String(decoding: UnsafeRawBufferPointer(start: start, count: length), as: UTF8.self)
    }

    private func findRoot(_ bytes: [UInt8]) -> ObjectSlot? {
        for entry in 0..<Layout.rootCount where rootNameLength(entry) == bytes.count {
            let start = base + Int(rootOffset(entry) + Layout.rootNameOffset)
            if UnsafeRawBufferPointer(start: start, count: bytes.count).elementsEqual(bytes) {
                return ObjectSlot(offset: rootOffset(entry) + Layout.rootReferenceOffset)
            }
        }
        return nil
    }

    /// Whether `offset` is the reference word of a root in use.
    func isRootSlot(_ offset: UInt64) -> Bool {
        guard offset >= Layout.rootsOffset, offset < Layout.lanesOffset else { return false }
        let relative = offset - Layout.rootsOffset
        return relative % Layout.rootEntryBytes == Layout.rootReferenceOffset
            && rootNameLength(Int(relative / Layout.rootEntryBytes)) > 0
    }
}
