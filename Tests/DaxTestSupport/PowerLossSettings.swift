// What scripts/powerloss.sh asks of a power-loss sweep, through the environment (tests
// only: the library never reads these):
//   DAXHEAP_POWERLOSS_SEED   the workload's and the simulator's seed
//   DAXHEAP_POWERLOSS_OPS    operations in the swept window
//   DAXHEAP_POWERLOSS_MIXED  mixed images per crash point
// Unset, each sweep keeps its own defaults, with one mixed image under a sanitizer (which
// looks for memory errors along the paths; the all-old, all-new and one mixed image run
// them all).
import Foundation

public enum PowerLossSettings {
    public static func seed(default value: UInt64) -> UInt64 { number("DAXHEAP_POWERLOSS_SEED") ?? value }

    public static func operations(default value: Int) -> Int { number("DAXHEAP_POWERLOSS_OPS") ?? value }

    public static func mixedImages(default value: Int) -> Int {
        number("DAXHEAP_POWERLOSS_MIXED") ?? (sanitizerIsLoaded ? 1 : value)
    }

    private static func number<T: FixedWidthInteger>(_ name: String) -> T? {
        ProcessInfo.processInfo.environment[name].flatMap { T($0) }
    }
}
