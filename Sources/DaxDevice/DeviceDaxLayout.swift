import CDaxShims
#if canImport(Glibc)
import Glibc
#endif

/// A character device's number, major:minor (what /sys/dev/char/MAJ:MIN is named after).
public struct DeviceNumber: Hashable, Sendable, CustomStringConvertible {
    public var major: UInt32
    public var minor: UInt32

    public init(major: UInt32, minor: UInt32) {
        self.major = major
        self.minor = minor
    }

    public var description: String { "\(major):\(minor)" }
}

/// One mapping range of a device-dax, in bytes: the device's bytes from `deviceOffset`
/// live at physical address `physicalStart` (sysfs `mappingN/{start,end,page_offset}`).
public struct DeviceDaxRange: Hashable, Sendable {
    public var deviceOffset: UInt64
    public var physicalStart: UInt64
    public var length: UInt64

    public init(deviceOffset: UInt64, physicalStart: UInt64, length: UInt64) {
        self.deviceOffset = deviceOffset
        self.physicalStart = physicalStart
        self.length = length
    }
}

/// What sysfs shows of a device-dax's physical layout, as far as it can be read: the
/// region (`dax_region/{id,size}` beside the device), the device's alignment and size,
/// and its mapping ranges (`mappingN/{start,end,page_offset}`, readable by root only;
/// kernels before 5.10 have none, and the device's `resource` gives its one range). A
/// field that cannot be read is nil, and `unreadable` says why, one entry per field.
public struct DeviceDaxLayout: Hashable, Sendable {
    public var regionID: UInt64?
    public var regionSize: UInt64?
    public var alignment: UInt64
    public var size: UInt64
    /// Ordered by device offset; nil when unreadable.
    public var ranges: [DeviceDaxRange]?
    /// What could not be read, and why ("mapping ranges: .../mapping0/start: Permission denied").
    public var unreadable: [String]

    public init(regionID: UInt64?, regionSize: UInt64?, alignment: UInt64, size: UInt64, ranges: [DeviceDaxRange]?,
                unreadable: [String] = []) {
        self.regionID = regionID
        self.regionSize = regionSize
        self.alignment = alignment
        self.size = size
        self.ranges = ranges
        self.unreadable = unreadable
    }

    /// The most mapping ranges read; a device with more has its ranges unknown.
    public static let maxRanges = 62

    /// Reads the layout of the device-dax `device` under `sysfsRoot`. Only the size and
    /// alignment are required (as for opening it: ``DeviceDaxAttributes``); everything
    /// else is read where it can be.
    public static func read(device: DeviceNumber, sysfsRoot: String = "/sys", path: String) throws(DeviceError) -> DeviceDaxLayout {
        let attributes = try DeviceDaxAttributes.read(major: device.major, minor: device.minor, sysfsRoot: sysfsRoot, path: path)
        let dir = "\(sysfsRoot)/dev/char/\(device)"
        var unreadable: [String] = []
        // The region's attributes live in its own directory, the parent of the device's on
        // the dax bus (`..` from the /sys/dev/char link resolves there), or under `device/`
        // on the old dax class.
        let regionDirs = ["\(dir)/../dax_region", "\(dir)/device/dax_region"]
        func regionNumber(_ name: String) -> UInt64? {
            var why = ""
            for regionDir in regionDirs {
                switch Syscall.readSmallFile("\(regionDir)/\(name)") {
                case .success(let text):
                    if let value = DeviceDaxAttributes.parse(text) { return value }
                    why = "\(regionDir)/\(name) is not a number"
                case .failure(let e):
                    if why.isEmpty || e.errno != ENOENT { why = "\(regionDir)/\(name): \(e.message)" }
                }
            }
            unreadable.append("region \(name): \(why)")
            return nil
        }
        let regionID = regionNumber("id")
        let regionSize = regionNumber("size")
        let ranges: [DeviceDaxRange]?
        switch readRanges(dir: dir, size: attributes.size) {
        case .success(let r): ranges = r
        case .failure(let why):
            ranges = nil
            unreadable.append("mapping ranges: \(why.reason)")
        }
        return DeviceDaxLayout(regionID: regionID, regionSize: regionSize, alignment: attributes.alignment,
                               size: attributes.size, ranges: ranges, unreadable: unreadable)
    }

    struct Unreadable: Error { var reason: String }

    /// The `mappingN` ranges, ordered by device offset; without any, the device's one
    /// range from `resource` (kernels before 5.10).
    static func readRanges(dir: String, size: UInt64) -> Result<[DeviceDaxRange], Unreadable> {
        let names: [Int]
        switch listMappings(dir) {
        case .success(let n): names = n
        case .failure(let e): return .failure(Unreadable(reason: "\(dir): \(e.message)"))
        }
        guard names.count <= maxRanges else {
            return .failure(Unreadable(reason: "\(names.count) mapping ranges, more than the \(maxRanges) recorded"))
        }
        if names.isEmpty {
            return number("\(dir)/resource").map { [DeviceDaxRange(deviceOffset: 0, physicalStart: $0, length: size)] }
        }
        let pageSize = UInt64(sysconf(Int32(_SC_PAGESIZE)))
        var ranges: [DeviceDaxRange] = []
        for n in names {
            let m = "\(dir)/mapping\(n)"
            let start: UInt64, end: UInt64, pageOffset: UInt64
            switch (number("\(m)/start"), number("\(m)/end"), number("\(m)/page_offset")) {
            case (.success(let s), .success(let e), .success(let p)): (start, end, pageOffset) = (s, e, p)
            case (.failure(let why), _, _), (_, .failure(let why), _), (_, _, .failure(let why)): return .failure(why)
            }
            let (offset, overflow) = pageOffset.multipliedReportingOverflow(by: pageSize)
            guard end >= start, !overflow, end - start < UInt64.max, offset <= UInt64.max - (end - start + 1) else {
                return .failure(Unreadable(reason: "\(m) holds an impossible range \(start)...\(end) at page \(pageOffset)"))
            }
            ranges.append(DeviceDaxRange(deviceOffset: offset, physicalStart: start, length: end - start + 1))
        }
        ranges.sort { $0.deviceOffset < $1.deviceOffset }
        for i in ranges.indices.dropFirst() where ranges[i - 1].deviceOffset + ranges[i - 1].length > ranges[i].deviceOffset {
            return .failure(Unreadable(reason: "\(dir): mapping ranges overlap at device offset \(ranges[i].deviceOffset)"))
        }
        return .success(ranges)
    }

    static func number(_ file: String) -> Result<UInt64, Unreadable> {
        switch Syscall.readSmallFile(file) {
        case .success(let text):
            guard let value = DeviceDaxAttributes.parse(text) else { return .failure(Unreadable(reason: "\(file) is not a number")) }
            return .success(value)
        case .failure(let e):
            return .failure(Unreadable(reason: "\(file): \(e.message)"))
        }
    }

    /// The N of every `mappingN` entry of `dir`, ascending.
    static func listMappings(_ dir: String) -> Result<[Int], SystemCallError> {
        guard let stream = opendir(dir) else { return .failure(SystemCallError("opendir", errno: errno)) }
        defer { closedir(stream) }
        var numbers: [Int] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name.hasPrefix("mapping"), let n = Int(name.dropFirst("mapping".count)), n >= 0 { numbers.append(n) }
        }
        return .success(numbers.sorted())
    }
}

extension MappedDevice {
    /// The device-dax's number (major:minor), or nil for a file.
    public var deviceNumber: DeviceNumber? {
        guard kind == .deviceDax, case .success(let st) = Syscall.fstat(fd) else { return nil }
        return DeviceNumber(major: CDaxShims_major(UInt64(st.st_rdev)), minor: CDaxShims_minor(UInt64(st.st_rdev)))
    }
}
