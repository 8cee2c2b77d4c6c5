/// SplitMix64 (Steele, Lea and Flood, 2014): a tiny deterministic generator shared by the
/// seeded randomized tests, so that a failing seed replays identically on any toolchain.
/// Failure messages print the seed; pass it back to reproduce the run.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in `0 ..< bound` (bound > 0), by rejection.
    public mutating func below(_ bound: UInt64) -> UInt64 {
        precondition(bound > 0)
        let limit = UInt64.max - UInt64.max % bound
        while true {
            let x = next()
            if x < limit { return x % bound }
        }
    }

    /// Uniform in `0 ..< bound` (bound > 0).
    public mutating func below(_ bound: Int) -> Int { Int(below(UInt64(bound))) }

    /// True with probability `percent` / 100.
    public mutating func chance<T: BinaryInteger>(_ percent: T) -> Bool { below(100) < Int(percent) }
}
