#!/usr/bin/env python3
"""Draws the headline comparisons of a run.sh figures file as a PNG.

    python3 chart.py figures.txt results.png        (needs matplotlib: pip install matplotlib)
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from report import SIZES, load  # noqa: E402


def get(f, name):
    return f[name][0] if name in f else float("nan")


def main():
    f = load(sys.argv[1])
    out = sys.argv[2] if len(sys.argv) > 2 else "results.png"
    fig, axes = plt.subplots(2, 4, figsize=(21, 9))
    fig.suptitle("DaxHeap vs anchors, one run.sh invocation (medians; PMEM_IS_PMEM_FORCE=1 on /dev/shm)", fontsize=12)

    # 1. persist bandwidth
    ax = axes[0][0]
    x = range(len(SIZES))
    w = 0.21
    a = "anchor.persist_bw.force"
    ax.bar([i - 1.5 * w for i in x], [get(f, f"daxheap.persist.{s}.bw") for s in SIZES], w, label="Arena.memcpyPersist")
    ax.bar([i - 0.5 * w for i in x], [get(f, f"daxheap.persist.{s}.libpmem_direct.bw") for s in SIZES], w,
           label="pmem_memcpy_persist, same process")
    ax.bar([i + 0.5 * w for i in x], [get(f, f"{a}.pmem_memcpy_persist.{s}.bw") for s in SIZES], w, label="anchor persist_bw.c")
    ax.bar([i + 1.5 * w for i in x], [get(f, f"daxheap.memcpy.{s}.bw") for s in SIZES], w, label="plain memcpy")
    ax.set_xticks(list(x), SIZES)
    ax.set_ylabel("GB/s")
    ax.set_title("1. persist bandwidth (target >= 0.95x libpmem from 4 KiB)")
    ax.legend(fontsize=8)

    # 1b. persist latency, small sizes
    ax = axes[0][1]
    small = SIZES[:3]
    x = range(len(small))
    w = 0.27
    ax.bar([i - w for i in x], [get(f, f"daxheap.persist.{s}.lat") for s in small], w, label="Arena.memcpyPersist")
    ax.bar(list(x), [get(f, f"daxheap.persist.{s}.libpmem_direct.lat") for s in small], w,
           label="pmem_memcpy_persist, same process")
    ax.bar([i + w for i in x], [get(f, f"{a}.pmem_memcpy_persist.{s}.lat") for s in small], w, label="anchor persist_bw.c")
    ax.set_xticks(list(x), small)
    ax.set_ylabel("ns per copy")
    ax.set_title("1. persist latency (target <= 1.1x at 64 B)")
    ax.legend(fontsize=8)

    # 2. translation
    ax = axes[0][2]
    counts = [1, 16, 256, 4096]
    w = 0.27
    x = range(len(counts))
    ax.bar([i - w for i in x], [get(f, f"daxheap.translate.{n}.radix") for n in counts], w, label="radix (ArenaTranslator)")
    ax.bar(list(x), [get(f, f"daxheap.translate.{n}.bsearch") for n in counts], w, label="binary search")
    ax.bar([i + w for i in x], [get(f, f"daxheap.translate.{n}.arena_call") for n in counts], w, label="contiguousBytes(at:) per call")
    ax.axhline(5, color="red", linestyle="--", linewidth=1, label="target 5 ns")
    ax.set_xticks(list(x), [str(n) for n in counts])
    ax.set_xlabel("extents in the arena")
    ax.set_ylabel("ns per lookup")
    ax.set_title("2. offset translation")
    ax.legend(fontsize=8)

    # 3. provisioning
    ax = axes[1][0]
    arenas = [1, 100, 1000]
    x = range(len(arenas))
    for k, op in enumerate(["create", "resize", "destroy"]):
        ax.bar([i + (k - 1) * w for i in x], [get(f, f"daxheap.provision.{op}.{n}") for n in arenas], w, label=op)
    ax.axhline(50, color="red", linestyle="--", linewidth=1, label="resize target 50 us")
    ax.set_xticks(list(x), [str(n) for n in arenas])
    ax.set_xlabel("arenas on the heap")
    ax.set_ylabel("us per operation (both copies persisted)")
    ax.set_title("3. provisioning")
    ax.legend(fontsize=8)

    # 4. open
    ax = axes[1][1]
    labels = ["1GiB", "64GiB", "1TiB", "arenas.1", "arenas.100", "arenas.1000"]
    names = ["daxheap.open.1GiB", "daxheap.open.64GiB", "daxheap.open.1TiB",
             "daxheap.open.arenas.1", "daxheap.open.arenas.100", "daxheap.open.arenas.1000"]
    ax.bar(range(len(labels)), [get(f, n) for n in names], 0.6,
           color=["tab:blue"] * 3 + ["tab:orange"] * 3)
    ax.set_xticks(range(len(labels)), ["1 GiB", "64 GiB", "1 TiB", "1 arena", "100", "1000"])
    ax.set_ylabel("ms")
    ax.set_title("4. open: device size (blue) vs arena count (orange)")

    # 5. key-value
    ax = axes[1][2]
    phases = [("fill", "anchor.lmdb_kv.nosync_wm.fill", "anchor.pmemobj_kv.insert"),
              ("read", "anchor.lmdb_kv.nosync_wm.read", "anchor.pmemobj_kv.get"),
              ("update", "anchor.lmdb_kv.nosync_wm.update", "anchor.pmemobj_kv.update")]
    x = range(len(phases))
    w4 = 0.2  # four bars a phase
    ax.bar([i - 1.5 * w4 for i in x], [get(f, f"daxkv.{p}") / 1e6 for p, _, _ in phases], w4, label="daxkv (1 thread)")
    ax.bar([i - 0.5 * w4 for i in x], [get(f, l) / 1e6 for _, l, _ in phases], w4, label="LMDB NOSYNC|WRITEMAP")
    ax.bar([i + 0.5 * w4 for i in x], [get(f, p) / 1e6 for _, _, p in phases], w4, label="libpmemobj hash map")
    # The lean C program of daxkv's design (Benchmarks/ceiling): a put with one fence on a
    # pre-faulted log and the writer's copy of the keys (variant key_copy; earlier runs
    # have one_fence, without the copy, or before 2026-12-02 only the two-fence plain
    # one), a get with two dependent misses.
    def bound(p):
        for name in (f"ceiling.kv.key_copy.{p}", f"ceiling.kv.one_fence.{p}"):
            if name in f:
                return get(f, name)
        return get(f, f"ceiling.kv.plain.{p}")
    ax.bar([i + 1.5 * w4 for i in x], [bound(p) / 1e6 for p, _, _ in phases], w4,
           color="0.6", label="C bound of the design")
    ax.set_xticks(list(x), [p for p, _, _ in phases])
    ax.set_ylabel("M ops/s")
    title = "5. key-value, 1M keys, 128 B values"
    if "daxkv.fill" not in f:
        title += "\n(daxkv not measured in this run)"
    ax.set_title(title)
    ax.legend(fontsize=8)

    # 6. persistent objects (issue 13): allocate into a slot, the anchor's protocol
    ax = axes[0][3]
    sizes = ["64B", "256B", "1024B", "4096B"]
    x = range(len(sizes))
    w5 = 0.16
    bars = [("daxheap.alloc.{}.t1.alloc", "DaxObjects, 1 thread"), ("daxheap.alloc.{}.t2.alloc", "DaxObjects, 2 threads"),
            ("daxheap.tx.{}.t1.alloc", "DaxObjects transaction, 1 thread"),
            ("anchor.pmemobj_alloc.atomic.{}.t1.alloc", "pmemobj_alloc, 1 thread"),
            ("anchor.pmemobj_alloc.tx.{}.t1.alloc", "pmemobj transaction, 1 thread")]
    for k, (name, label) in enumerate(bars):
        ax.bar([i + (k - 2) * w5 for i in x], [get(f, name.format(s)) / 1e6 for s in sizes], w5, label=label)
    ax.set_xticks(list(x), sizes)
    ax.set_ylabel("M allocations/s")
    ax.set_title("6. objects: allocate into a slot (target 4x pmemobj)")
    ax.legend(fontsize=8)

    # 7. SQLite (issue 14): the daxheap VFS against the unix VFS on tmpfs, synchronous=FULL
    ax = axes[1][3]
    cases = [(m, p) for m in ("delete", "wal") for p in ("insert1", "insert1000", "select")]
    x = range(len(cases))
    ratios = [get(f, f"sqlite.daxheap.{m}.{p}") / get(f, f"sqlite.unix.{m}.{p}") for m, p in cases]
    ax.bar(list(x), ratios, 0.6, color=["tab:blue"] * 3 + ["tab:orange"] * 3)
    ax.axhline(1, color="0.3", linestyle="--", linewidth=1, label="unix VFS")
    ax.set_xticks(list(x), [f"{m}\n{p}" for m, p in cases])
    ax.set_ylabel("daxheap VFS / unix VFS")
    ax.set_title("7. SQLite: daxheap VFS vs unix VFS on tmpfs")
    ax.legend(fontsize=8)

    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
