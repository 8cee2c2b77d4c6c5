/// The rules for an arena name: 1 to 63 bytes of UTF-8 with no control character
/// (Unicode general category Cc: U+0000–U+001F, U+007F and U+0080–U+009F).
public enum ArenaName {
    /// Longest name in UTF-8 bytes; the on-media name field is 63 bytes plus a length byte.
    public static let maxBytes = 63

    /// Why `name` is not a valid arena name, or nil when it is.
    public static func problem(with name: String) -> String? {
        let bytes = name.utf8.count
        if bytes == 0 { return "the name is empty" }
        if bytes > maxBytes { return "the name is \(bytes) bytes of UTF-8, the limit is \(maxBytes)" }
        if let c = name.unicodeScalars.first(where: isControl) {
            return "the name contains the control character U+\(String(c.value, radix: 16, uppercase: true).leftPadded(to: 4))"
        }
        return nil
    }

    static func isControl(_ c: Unicode.Scalar) -> Bool {
        c.value < 0x20 || (0x7F...0x9F).contains(c.value)
    }
}
