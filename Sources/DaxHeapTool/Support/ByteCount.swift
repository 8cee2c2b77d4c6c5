import ArgumentParser

/// A number of bytes as the operator types it: a whole number, optionally followed by
/// K, M, G or T (powers of 1024), optionally followed by B or iB, in any case and with
/// no space: `512`, `512B`, `4K`, `2M`, `2MiB`, `2mb`, `1G`, `2097152`.
///
/// Everything else is refused (`init(argument:)` returns nil, which ArgumentParser
/// reports as a usage error): an empty string, a sign, a fraction, a space, `iB` without
/// a unit letter, any other suffix, and values beyond `UInt64.max`.
struct ByteCount: ExpressibleByArgument, Equatable, Sendable, CustomStringConvertible {
    var value: UInt64

    init(_ value: UInt64) { self.value = value }

    init?(argument: String) {
        guard let value = Self.parse(argument) else { return nil }
        self.value = value
    }

    var description: String { "\(value)" }
    var defaultValueDescription: String { "\(value)" }

    /// What the help text says about the accepted spellings.
    static let spellings = "a whole number of bytes, or one followed by K, M, G or T (powers of 1024) and optionally B or iB, e.g. 512, 4K, 2M, 2MiB, 1G"

    static func parse(_ text: String) -> UInt64? {
        let utf8 = Array(text.utf8)
        var index = 0
        var value: UInt64 = 0
        while index < utf8.count, utf8[index] >= UInt8(ascii: "0"), utf8[index] <= UInt8(ascii: "9") {
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(utf8[index] - UInt8(ascii: "0")))
            if o1 || o2 { return nil }
            value = sum
            index += 1
        }
        guard index > 0 else { return nil }
        // The suffix, ASCII-lowercased (non-ASCII bytes stay as they are and fail below).
        let suffix = String(decoding: utf8[index...].map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 }, as: UTF8.self)
        let shift: UInt64
        switch suffix {
        case "", "b": shift = 0
        case "k", "kb", "kib": shift = 10
        case "m", "mb", "mib": shift = 20
        case "g", "gb", "gib": shift = 30
        case "t", "tb", "tib": shift = 40
        default: return nil
        }
        guard value <= UInt64.max >> shift else { return nil }
        return value << shift
    }
}
