import ArgumentParser
import DaxHeap
import DaxKV
#if canImport(Glibc)
import Glibc
#endif

/// `daxkv`: the sample key-value store's command line, over the DaxKV library.
@main
struct DaxKVCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daxkv",
        abstract: "A crash-safe key-value store in the arenas of a DaxHeap heap.",
        discussion: """
        PATH is a heap made with `daxheap create`. A store lives in the arenas NAME.index and \
        NAME.data (NAME from --store, default "kv"); it is created by the first command that \
        writes to it. Exit status: 0 success; 1 failure or absent key (one "error: " line on \
        standard error); 64 a usage error.
        """,
        subcommands: [PutCommand.self, GetCommand.self, DeleteCommand.self, CountCommand.self,
                      ImportCommand.self, BenchCommand.self]
    )
}

struct StoreOptions: ParsableArguments {
    @Argument(help: ArgumentHelp("A heap made with `daxheap create`.", valueName: "path")) var path: String
    @Option(name: .long, help: ArgumentHelp("The store's name (its arenas are NAME.index and NAME.data).", valueName: "name"))
    var store = "kv"

    /// Opens the store; `readOnly` for the commands that only look. They never write,
    /// except once after a crash that left writes to replay at the tail of the log
    /// (`KVError.needsRecovery`): then the store is opened read-write, which recovers it.
    func open(create: Bool, readOnly: Bool = false, expectedKeys: Int = 0) throws -> KVStore {
        if readOnly {
            do { return try openOnce(create: create, readOnly: true, expectedKeys: expectedKeys) } catch KVError.needsRecovery {}
        }
        return try openOnce(create: create, readOnly: false, expectedKeys: expectedKeys)
    }

    private func openOnce(create: Bool, readOnly: Bool, expectedKeys: Int) throws -> KVStore {
        let heap: Heap
        do throws(HeapError) { heap = try Heap.open(path: path, mode: readOnly ? .readOnly : .readWrite) } catch { throw KVError.heap(error) }
        return try KVStore.open(heap: heap, name: store, options: KVStoreOptions(create: create, expectedKeys: expectedKeys))
    }
}

/// Runs `body`; any error becomes one "error: " line and exit status 1.
func reportingFailures(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as ExitCode {
        throw error
    } catch {
        Console.error("\(error)")
        throw ExitCode(1)
    }
}

struct Failure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

struct PutCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "put", abstract: "Insert or replace a pair; returns once it is durable.")
    @OptionGroup var options: StoreOptions
    @Argument(help: "The key (1 to 1024 bytes).") var key: String
    @Argument(help: "The value (up to 1 MiB).") var value: String

    func run() throws {
        try reportingFailures {
            let store = try options.open(create: true)
            try store.put(Array(key.utf8), Array(value.utf8))
        }
    }
}

struct GetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "Print a key's value and a newline (exit 1 when absent).")
    @OptionGroup var options: StoreOptions
    @Argument(help: "The key.") var key: String

    func run() throws {
        try reportingFailures {
            let store = try options.open(create: false, readOnly: true)
            guard let value = try store.get(Array(key.utf8)) else {
                throw Failure("key \(Console.quoted(key)) is not in store \(Console.quoted(options.store))")
            }
            try Console.write(value + [10], to: 1)
        }
    }
}

struct DeleteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Remove a key; returns once that is durable (exit 1 when absent).")
    @OptionGroup var options: StoreOptions
    @Argument(help: "The key.") var key: String

    func run() throws {
        try reportingFailures {
            let store = try options.open(create: false)
            guard try store.delete(Array(key.utf8)) else {
                throw Failure("key \(Console.quoted(key)) is not in store \(Console.quoted(options.store)); nothing was deleted")
            }
        }
    }
}

struct CountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "count", abstract: "Print the number of pairs.")
    @OptionGroup var options: StoreOptions

    func run() throws {
        try reportingFailures {
            let store: KVStore
            do {
                store = try options.open(create: false, readOnly: true)
            } catch KVError.noSuchStore {
                try Console.write(Array("0\n".utf8), to: 1)
                return
            }
            try Console.write(Array("\(store.count)\n".utf8), to: 1)
        }
    }
}

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Put the KEY<TAB>VALUE lines of standard input; print each key once it is durable.",
        discussion: """
        Each line is a key, a tab, and the value (the rest of the line; it may hold tabs). \
        Keys are printed to standard output in input order, each only once its pair is \
        durable, and standard output is flushed then. Pairs read together are committed \
        together (group commit). A malformed line stops the import with an error; the pairs \
        before it stay.
        """
    )
    @OptionGroup var options: StoreOptions

    func run() throws {
        try reportingFailures {
            let store = try options.open(create: true)
            let progress = Progress(label: "import")
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            var carry: [UInt8] = []
            var batch: [(key: [UInt8], value: [UInt8])] = []
            var acks: [UInt8] = []
            var lineNumber = 0
            var done = 0
            func commit() throws {
                guard !batch.isEmpty else { return }
                try store.put(batch: batch)
                for item in batch { acks += item.key; acks.append(10) }
                try Console.write(acks, to: 1)
                done += batch.count
                progress.update(done)
                acks.removeAll(keepingCapacity: true)
                batch.removeAll(keepingCapacity: true)
            }
            func parse(_ line: ArraySlice<UInt8>) throws {
                lineNumber += 1
                guard let tab = line.firstIndex(of: 9) else {
                    throw Failure("line \(lineNumber) of standard input has no tab between key and value; expected KEY<TAB>VALUE")
                }
                let key = Array(line[line.startIndex ..< tab]), value = Array(line[(tab + 1)...])
                guard (1 ... 1024).contains(key.count) else { throw Failure("line \(lineNumber): \(KVError.invalidKeySize(key.count))") }
                guard value.count <= 1 << 20 else { throw Failure("line \(lineNumber): \(KVError.invalidValueSize(value.count))") }
                batch.append((key, value))
                if batch.count >= 4096 { try commit() }
            }
            while true {
                let n = buffer.withUnsafeMutableBytes { Glibc.read(0, $0.baseAddress, $0.count) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw Failure("cannot read standard input: \(String(cString: strerror(errno)))")
                }
                if n == 0 { break }
                carry += buffer[0 ..< n]
                var start = 0
                while let nl = carry[start...].firstIndex(of: 10) {
                    do { try parse(carry[start ..< nl]) } catch { try commit(); throw error }
                    start = nl + 1
                }
                carry.removeFirst(start)
                try commit()  // what one read brought is one group
            }
            if !carry.isEmpty {
                do { try parse(carry[...]) } catch { try commit(); throw error }
            }
            try commit()
            progress.finish()
        }
    }
}

/// Rate and count on standard error, only when it is a terminal.
final class Progress {
    let label: String
    let enabled = isatty(2) == 1
    let clock = ContinuousClock()
    let start: ContinuousClock.Instant
    var last: ContinuousClock.Instant
    var shown = false

    init(label: String) {
        self.label = label
        start = clock.now
        last = start
    }

    func update(_ count: Int) {
        guard enabled else { return }
        let now = clock.now
        guard now - last > .milliseconds(250) else { return }
        last = now
        let seconds = (now - start).seconds
        try? Console.write(Array("\r\(label): \(count) (\(Int(Double(count) / max(seconds, 1e-9))) ops/s)   ".utf8), to: 2)
        shown = true
    }

    func finish() {
        if shown { try? Console.write(Array("\r\u{1B}[K".utf8), to: 2) }
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}

enum Console {
    static func error(_ message: String) {
        try? write(Array("error: \(oneLine(message))\n".utf8), to: 2)
    }

    static func write(_ bytes: [UInt8], to fd: Int32) throws {
        try bytes.withUnsafeBytes { raw in
            var next = 0
            while next < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + next, raw.count - next)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw Failure("cannot write to \(fd == 1 ? "standard output" : "standard error"): \(String(cString: strerror(errno)))")
                }
                next += n
            }
        }
    }

    static func oneLine(_ message: String) -> String {
        var out = ""
        for scalar in message.unicodeScalars {
            if scalar.value < 0x20 || (0x7F ... 0x9F).contains(scalar.value) { out += scalar.escaped(asASCII: true) } else { out.unicodeScalars.append(scalar) }
        }
        return out
    }

    static func quoted(_ s: String) -> String { "\"" + oneLine(s).replacingQuotes() + "\"" }
}

extension String {
    func replacingQuotes() -> String {
        var out = ""
        for c in self { if c == "\"" || c == "\\" { out.append("\\") }; out.append(c) }
        return out
    }
}
