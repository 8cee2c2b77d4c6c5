/// What sysfs says about a device-dax: /sys/dev/char/MAJ:MIN/{size,align}.
public struct DeviceDaxAttributes: Equatable, Sendable {
    public var size: UInt64
    public var alignment: UInt64

    /// Reads the attributes of the character device `major:minor`, refusing a character
    /// device that is not device-dax.
    ///
    /// `align` is per device since Linux 5.10; older kernels only have the region's,
    /// `device/dax_region/align`, which is tried next.
    public static func read(major: UInt32, minor: UInt32, sysfsRoot: String = "/sys", path: String) throws(DeviceError) -> DeviceDaxAttributes {
        let dir = "\(sysfsRoot)/dev/char/\(major):\(minor)"
        // The dax bus (or the old dax class) is what makes a character device device-dax.
        guard case .success(let subsystem) = Syscall.readlink("\(dir)/subsystem") else {
            throw .notDeviceDax(path: path, reason: "character device \(major):\(minor) has no sysfs subsystem link at \(dir)")
        }
        let subsystemName = subsystem.split(separator: "/").last.map(String.init) ?? ""
        guard subsystemName == "dax" else {
            throw .notDeviceDax(path: path, reason: "character device \(major):\(minor) belongs to \"\(subsystemName)\", not dax")
        }
        let size = try number(at: "\(dir)/size", path: path)
        let alignment: UInt64
        if case .success(let text) = Syscall.readSmallFile("\(dir)/align"), let value = parse(text) {
            alignment = value
        } else {
            alignment = try number(at: "\(dir)/device/dax_region/align", path: path)
        }
        guard alignment >= 4096, alignment & (alignment - 1) == 0 else {
            throw .sysfs(path: path, reason: "alignment \(alignment) read from sysfs is not a power of two of at least 4096")
        }
        return DeviceDaxAttributes(size: size, alignment: alignment)
    }

    static func number(at file: String, path: String) throws(DeviceError) -> UInt64 {
        switch Syscall.readSmallFile(file) {
        case .success(let text):
            guard let value = parse(text) else {
                let shown = text.trimmingCharacters(in: " \n\t").unicodeScalars.map { $0.isASCII && $0.value >= 0x20 && $0.value < 0x7F ? String($0) : "?" }.joined()
                throw .sysfs(path: path, reason: "\(file) holds \"\(shown.prefix(64))\", not a number")
            }
            return value
        case .failure(let e):
            throw .sysfs(path: path, reason: "cannot read \(file): \(e.message)")
        }
    }

    /// A sysfs number: decimal, or hexadecimal with 0x, with a trailing newline.
    static func parse(_ text: String) -> UInt64? {
        let t = text.trimmingCharacters(in: " \n\t")
        if t.hasPrefix("0x") { return UInt64(t.dropFirst(2), radix: 16) }
        return UInt64(t)
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        let chars = Set(set)
        var s = Substring(self)
        while let c = s.first, chars.contains(c) { s = s.dropFirst() }
        while let c = s.last, chars.contains(c) { s = s.dropLast() }
        return String(s)
    }
}
