#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A failure of the tool itself (not of the library), with a one-line message.
struct ToolFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Unbuffered output on the standard descriptors.
enum Console {
    /// Writes a line to standard output.
    static func out(_ line: String) throws {
        try write(line + "\n", to: 1)
    }

    /// Writes lines to standard output.
    static func out(lines: [String]) throws {
        if lines.isEmpty { return }
        try write(lines.joined(separator: "\n") + "\n", to: 1)
    }

    /// `error: MESSAGE` on standard error, on one line.
    static func error(_ message: String) {
        try? write("error: \(oneLine(message))\n", to: 2)
    }

    /// `note: MESSAGE` on standard error, on one line.
    static func note(_ message: String) {
        try? write("note: \(oneLine(message))\n", to: 2)
    }

    static func write(_ text: String, to fd: Int32) throws {
        var text = text
        try text.withUTF8 { try write(UnsafeRawBufferPointer($0), to: fd) }
    }

    /// Writes all of `bytes`, retrying short writes and EINTR.
    static func write(_ bytes: UnsafeRawBufferPointer, to fd: Int32) throws {
        guard var next = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            let n = Glibc.write(fd, next, left)
            if n < 0 {
                if errno == EINTR { continue }
                throw ToolFailure("cannot write to \(fd == 1 ? "standard output" : "standard error"): \(String(cString: strerror(errno)))")
            }
            next += n
            left -= n
        }
    }

    /// Reads standard input to its end, but no more than `limit` bytes: nil when there is
    /// more than that.
    static func readStandardInput(limit: UInt64) throws -> [UInt8]? {
        var data: [UInt8] = []
        let chunk = 1 << 20
        var buffer = [UInt8](repeating: 0, count: chunk)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(0, $0.baseAddress, chunk) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ToolFailure("cannot read standard input: \(String(cString: strerror(errno)))")
            }
            if n == 0 { return data }
            if UInt64(data.count) + UInt64(n) > limit { return nil }
            data.append(contentsOf: buffer[0 ..< n])
        }
    }

    /// The message with every control character escaped, so that it stays on one line
    /// whatever the names and paths in it hold.
    static func oneLine(_ message: String) -> String {
        var out = ""
        for scalar in message.unicodeScalars {
            if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) {
                out += scalar.escaped(asASCII: true)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
