import ArgumentParser
import DaxHeap

struct ProvisionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "provision",
        abstract: "Apply several arena changes as one metadata update: after a crash, all of them or none.",
        discussion: """
        Each CHANGE is create:NAME:SIZE, resize:NAME:SIZE or destroy:NAME (NAME may itself \
        contain colons: SIZE is what follows the last one). Changes apply in order, each to \
        the table the ones before it left; if any is refused, none is applied and the heap \
        is unchanged.
        """
    )

    @Argument(help: Help.path) var path: String
    @Argument(help: ArgumentHelp("create:NAME:SIZE, resize:NAME:SIZE or destroy:NAME.", valueName: "change"))
    var changes: [ChangeArgument]

    func validate() throws {
        guard !changes.isEmpty else { throw ValidationError("give at least one change") }
    }

    func run() throws {
        try reportingFailures {
            let heap = try HeapAccess.openReadWrite(path)
            try heap.provision(changes.map(\.change))
            let done = changes.map { argument in
                switch argument.change {
                case .create(let name, let size): "created \(Formatting.quoted(name)) of \(Formatting.bytes(size))"
                case .resize(let name, let size): "resized \(Formatting.quoted(name)) to \(Formatting.bytes(size))"
                case .destroy(let name): "destroyed \(Formatting.quoted(name))"
                }
            }
            try Console.out("\(done.joined(separator: ", ")) in one update; \(Formatting.bytes(heap.availableSize)) available")
        }
    }
}

/// One CHANGE as the operator types it.
struct ChangeArgument: ExpressibleByArgument, Sendable {
    let change: ArenaChange

    init?(argument: String) {
        guard let colon = argument.firstIndex(of: ":") else { return nil }
        let verb = argument[..<colon]
        let rest = String(argument[argument.index(after: colon)...])
        switch verb {
        case "destroy":
            guard !rest.isEmpty else { return nil }
            change = .destroy(name: rest)
        case "create", "resize":
            guard let last = rest.lastIndex(of: ":"), let size = ByteCount.parse(String(rest[rest.index(after: last)...])) else {
                return nil
            }
            let name = String(rest[..<last])
            guard !name.isEmpty else { return nil }
            change = verb == "create" ? .create(name: name, size: size) : .resize(name: name, size: size)
        default:
            return nil
        }
    }
}
