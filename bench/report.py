"""docs/benchmarks.md (tables, targets) and its plot, from the results of :func:`bench.runner.run`.

Everything here reads the JSON results only, so a report can be rebuilt from
a saved file: ``python -m bench --report-only docs/benchmarks.json``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TIMES = "\N{MULTIPLICATION SIGN}"
EN_DASH = "\N{EN DASH}"

Result = dict[str, Any]
GroupD = dict[str, Any]

KIND_LABELS = {
    "c-c": "C core (C flood → C sink)",
    "dpdk-dpdk": "DPDK testpmd (txonly → rxonly)",
    "c-dpdk": "C flood → testpmd rxonly",
    "dpdk-c": "testpmd txonly → C sink",
    "plainring": "plain ring (memfd SPSC)",
    "c-c/s2m": "C core, s2m (reference for tx)",
    "c-c/m2s": "C core, m2s (reference for rx)",
    "py-packet-tx": "per packet: send_burst(list of bytes)",
    "py-bulk-tx": "bulk: send_batch(PacketBatch)",
    "py-aio-tx": "asyncio: await send_batch(PacketBatch)",
    "py-packet-rx": "per packet: recv_burst() → bytes",
    "py-bulk-rx": "bulk: recv_into(PacketBatch)",
    "py-views-rx": "zero copy: with views()",
    "py-aio-rx": "asyncio: await recv_burst() (interrupts)",
    "eventfd": "raw eventfd bounce (2 processes)",
    "memif-interrupt": "memif ping-pong, interrupt mode",
    "spin": "raw shared-memory spin bounce",
    "memif-polling": "memif ping-pong, polling mode",
}


@dataclass
class Stat:
    median: float
    lo: float
    hi: float
    n: int

    def fmt(self, digits: int = 2, suffix: str = "") -> str:
        if self.n == 1:
            return f"{self.median:.{digits}f}{suffix}"
        return (f"{self.median:.{digits}f}{suffix} "
                f"[{self.lo:.{digits}f}{EN_DASH}{self.hi:.{digits}f}]")


def stat(values: Sequence[float]) -> Stat | None:
    if not values:
        return None
    return Stat(statistics.median(values), min(values), max(values), len(values))


def fmt(s: Stat | None, digits: int = 2, suffix: str = "") -> str:
    return s.fmt(digits, suffix) if s is not None else "n/a"


def values(group: GroupD, kind: str) -> list[float]:
    return [r["value"] for r in group["runs"] if r["kind"] == kind and r["value"] is not None]


def by_round(group: GroupD, kind: str) -> dict[int, dict[str, Any]]:
    return {r["round"]: r for r in group["runs"] if r["kind"] == kind and r["value"] is not None}


def ratios(group: GroupD, num: str, den: str) -> list[float]:
    """num/den for every round in which both were measured."""
    a, b = by_round(group, num), by_round(group, den)
    return [a[r]["value"] / b[r]["value"] for r in sorted(a) if r in b and b[r]["value"]]


def groups(res: Result, name: str, **params: Any) -> list[GroupD]:
    return [g for g in res["groups"] if g["name"] == name
            and all(g["params"].get(k) == v for k, v in params.items())]


def cfg(group: GroupD) -> str:
    p = group["params"]
    parts = [f"b{p['burst']}"] if "burst" in p else []
    if "direction" in p:
        parts.append(p["direction"])
    return " ".join(parts)


def ns_per_packet(mpps: float | None) -> float | None:
    return 1e3 / mpps if mpps else None


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    measured: str
    threshold: str
    passed: bool | None  # None: not measured
    note: str


def _ratio_target(name: str, threshold: float, sel: list[tuple[GroupD, str, str]],
                  limit: Callable[[GroupD, str, str], str]) -> Target:
    """A "num/den >= threshold in every configuration" target."""
    found = []
    for g, num, den in sel:
        s = stat(ratios(g, num, den))
        if s is not None:
            found.append((s, g, num, den))
    if not found:
        return Target(name, "not measured", f"≥ {threshold:g}{TIMES}", None,
                      "TODO: no round measured both kinds")
    parts = [f"{cfg(g)}: {s.fmt(2, TIMES)}" for s, g, _n, _d in found]
    worst = min(found, key=lambda f: f[0].median)
    passed = worst[0].median >= threshold
    note = "" if passed else limit(worst[1], worst[2], worst[3])
    return Target(name, "; ".join(parts), f"≥ {threshold:g}{TIMES}", passed, note)


def _med(group: GroupD, kind: str) -> float | None:
    s = stat(values(group, kind))
    return s.median if s else None


def targets(res: Result) -> list[Target]:
    out: list[Target] = []
    sizes = sorted({g["params"]["size"] for g in groups(res, "core")})

    def slower_end(g: GroupD) -> str:
        """Which of our two ends is slower, from the cross runs of the same rounds."""
        tx_end, rx_end = stat(ratios(g, "c-dpdk", "dpdk-dpdk")), stat(ratios(g, "dpdk-c",
                                                                             "dpdk-dpdk"))
        if tx_end is None or rx_end is None:
            return ""
        slower = "our sink" if rx_end.median < tx_end.median else "our flood"
        return (f"With one end swapped for ours: our flood → testpmd {tx_end.median:.2f}"
                f"{TIMES}, testpmd → our sink {rx_end.median:.2f}{TIMES} of testpmd → testpmd, "
                f"so the slower end here is {slower}")

    def vs_dpdk(g: GroupD, num: str, den: str) -> str:
        r = stat(ratios(g, num, den))
        if r is None:
            return ""
        text = f"worst at {cfg(g)}: median {r.median:.2f}{TIMES}"
        c_plain, d_plain = stat(ratios(g, num, "plainring")), stat(ratios(g, den, "plainring"))
        if c_plain is not None and d_plain is not None:
            text += (f"; in the same rounds the C core reached {c_plain.median:.2f}{TIMES} and "
                     f"testpmd {d_plain.median:.2f}{TIMES} of the bare ring")
            if c_plain.median >= 0.8 * d_plain.median:
                text += (": both make the same two copies of every frame (into the ring, out "
                         "of it) and the copies, not the ring protocol, set the rate")
        end = slower_end(g)
        return f"{text}. {end}" if end else text

    def vs_plain(g: GroupD, num: str, den: str) -> str:
        c, p = ns_per_packet(_med(g, num)), ns_per_packet(_med(g, den))
        if c is None or p is None:
            return ""
        text = (f"worst at {cfg(g)}: C core {c:.1f} ns/packet vs bare ring {p:.1f} ns/packet "
                f"(medians): {c - p:.1f} ns/packet more, for the library's own work per packet "
                "(a memif_buffer_t filled, each descriptor validated against its region, "
                "buffer_alloc then tx_burst as two passes) and the protocol's descriptor round "
                "trip: the slave rewrites every descriptor when it posts a buffer and the "
                "master reads and writes it again, so each descriptor line crosses between the "
                "cores twice per ring cycle, once in the bare ring (perf: 22 % of the master "
                "flood's samples on that first descriptor load; see bench/README.md)")
        end = slower_end(g)
        return f"{text}. {end}" if end else text

    for size in sizes:
        sel = [(g, "c-c", "dpdk-dpdk") for g in groups(res, "core", size=size)]
        out.append(_ratio_target(f"C core vs DPDK testpmd, {size} B", 1.0, sel, vs_dpdk))
    for size in sizes:
        sel = [(g, "c-c", "plainring") for g in groups(res, "core", size=size)]
        out.append(_ratio_target(f"C core vs plain ring, {size} B", 0.6, sel, vs_plain))

    def py_limit(g: GroupD, num: str, den: str) -> str:
        py, c = _med(g, num), _med(g, den)
        if not py or not c:
            return ""
        burst = g["params"]["burst"]
        per_call = burst * (1 / py - 1 / c)  # us: Mpps -> packets per us
        return (f"worst at b{burst} {num.split('-')[-1]}: {1e3 / py:.1f} ns/packet vs "
                f"{1e3 / c:.1f} for C, i.e. {per_call:.2f} µs more per burst of {burst}: a cost "
                "per call, not per packet (CPython's method call, cffi's call and GIL "
                "release: about 2,700 instructions by callgrind, as many as the C core "
                "spends on a whole burst of 32, about 2,600), so it bounds the ratio at "
                "small bursts and fades at 256; see bench/README.md")

    py64 = groups(res, "python", size=64)
    for direction, ref in (("tx", "c-c/s2m"), ("rx", "c-c/m2s")):
        sel = [(g, f"py-bulk-{direction}", ref) for g in py64]
        out.append(_ratio_target(f"Python PacketBatch {direction} vs C core, 64 B", 0.5,
                                 sel, py_limit))

    for direction in ("tx", "rx"):
        g256 = groups(res, "python", size=64, burst=256)
        s = stat(values(g256[0], f"py-packet-{direction}")) if g256 else None
        if s is None:
            out.append(Target(f"per-packet Python {direction}, 64 B, burst 256", "not measured",
                              "≥ 1 Mpps", None, "TODO: not measured"))
            continue
        passed = s.median >= 1.0
        note = "" if passed else (
            f"{1e3 / s.median:.0f} ns per packet: one bytes object per packet "
            + ("joined into one buffer per call" if direction == "tx" else
               "sliced out of the shared memory and put in a list"))
        out.append(Target(f"per-packet Python {direction}, 64 B, burst 256",
                          s.fmt(2, " Mpps"), "≥ 1 Mpps", passed, note))

    lat = groups(res, "latency")
    rtt_name, rtt_wanted = "interrupt-mode round trip vs raw eventfd", f"≤ 1.5{TIMES}"
    s = stat(ratios(lat[0], "memif-interrupt", "eventfd")) if lat else None
    if s is None:
        out.append(Target(rtt_name, "not measured", rtt_wanted, None, "TODO: not measured"))
    else:
        passed = s.median <= 1.5
        note = ""
        if not passed:
            m, e = _med(lat[0], "memif-interrupt"), _med(lat[0], "eventfd")
            note = (f"{(m or 0) - (e or 0):.1f} µs more per round trip than the bare eventfd: "
                    "per side, epoll_wait in memif_poll_event, the eventfd read in rx_burst and "
                    "the callback dispatch")
        out.append(Target(rtt_name, s.fmt(2, TIMES), rtt_wanted, passed, note))
    return out


# ---------------------------------------------------------------------------- tables


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def core_table(res: Result) -> list[str]:
    rows = []
    for g in groups(res, "core"):
        p = g["params"]
        c = stat(values(g, "c-c"))
        gbps = stat([v * p["size"] * 8 / 1e3 for v in values(g, "c-c")])
        rows.append([
            f"{p['size']}", f"{p['burst']}", p["direction"], fmt(c), fmt(gbps),
            fmt(stat(values(g, "dpdk-dpdk"))), fmt(stat(values(g, "c-dpdk"))),
            fmt(stat(values(g, "dpdk-c"))), fmt(stat(values(g, "plainring"))),
            fmt(stat(ratios(g, "c-c", "dpdk-dpdk")), 2, TIMES),
            fmt(stat(ratios(g, "c-c", "plainring")), 2, TIMES),
        ])
    return _table(["size B", "burst", "dir", "C core Mpps", "C core Gbit/s", "testpmd Mpps",
                   "C → testpmd", "testpmd → C", "plain ring", "C / testpmd", "C / plain"],
                  rows)


def python_table(res: Result) -> list[str]:
    rows = []
    for g in groups(res, "python"):
        p = g["params"]
        for kind in g["kinds"]:
            if kind.startswith("c-c/"):
                continue
            direction = kind.rsplit("-", 1)[1]
            ref = "c-c/s2m" if direction == "tx" else "c-c/m2s"
            s = stat(values(g, kind))
            rows.append([
                f"{p['size']}", f"{p['burst']}", KIND_LABELS.get(kind, kind),
                "tx (s2m)" if direction == "tx" else "rx (m2s)", fmt(s),
                f"{ns_per_packet(s.median):.0f}" if s else "n/a",
                fmt(stat(values(g, ref))), fmt(stat(ratios(g, kind, ref)), 2, TIMES),
            ])
    return _table(["size B", "burst", "level", "Python side", "Mpps", "ns/packet",
                   "C core Mpps (same run)", "Python / C"], rows)


def latency_table(res: Result) -> list[str]:
    lat = groups(res, "latency")
    if not lat:
        return ["Not measured."]
    g = lat[0]
    rows = []
    for kind in g["kinds"]:
        runs = [r for r in g["runs"] if r["kind"] == kind and r["value"] is not None]
        p99 = stat([float(r["extra"].get("rtt_p99_us", 0)) for r in runs])
        rows.append([KIND_LABELS.get(kind, kind), fmt(stat(values(g, kind)), 2),
                     fmt(p99, 1)])
    out = _table(["round trip", "median µs", "p99 µs"], rows)
    out += ["", *_table(["ratio (per round)", f"median [min{EN_DASH}max]"], [
        ["memif interrupt / raw eventfd",
         fmt(stat(ratios(g, "memif-interrupt", "eventfd")), 2, TIMES)],
        ["memif polling / raw spin", fmt(stat(ratios(g, "memif-polling", "spin")), 2, TIMES)],
    ])]
    return out


def _per(runs: list[dict[str, Any]], side: str, key: str, per: str) -> Stat | None:
    vals = []
    for r in runs:
        f = r["extra"].get(side) or {}
        if f.get(per):
            vals.append(float(f.get(key, 0)) / float(f[per]))
    return stat(vals)


def py_alloc(res: Result, kind: str) -> Stat | None:
    """Bytes per packet held by one burst of a Python level (the worker's probe)."""
    side = "tx" if kind.endswith("-tx") else "rx"
    vals = [float(r["extra"][side]["alloc_peak_bpp"])
            for g in groups(res, "python", size=64) for r in g["runs"]
            if r["kind"] == kind and r["value"] is not None
            and "alloc_peak_bpp" in (r["extra"].get(side) or {})]
    return stat(vals)


def py_alloc_summary(res: Result) -> str:
    parts = []
    for kind, label in (("py-bulk-tx", "bulk send_batch"), ("py-bulk-rx", "bulk recv_into"),
                        ("py-packet-tx", "per packet send_burst"),
                        ("py-packet-rx", "per packet recv_burst"),
                        ("py-views-rx", "zero copy views")):
        s = py_alloc(res, kind)
        if s is not None:
            parts.append(f"{label} {fmt(s, 1)} B")
    return "; ".join(parts) if parts else "n/a"


def design_table(res: Result) -> list[str]:
    d = groups(res, "design")
    if not d:
        return ["Not measured."]
    g = d[0]
    poll = [r for r in g["runs"] if r["kind"] == "c-c" and r["value"] is not None]
    intr = [r for r in g["runs"] if r["kind"] == "c-c/interrupt-sink" and r["value"] is not None]
    # every C flood/sink window of the whole run, for the allocation count
    c_runs = [r for grp in res["groups"] for r in grp["runs"]
              if r["kind"] in ("c-c", "c-c/m2s", "c-c/s2m") and r["value"] is not None]

    def io(runs: list[dict[str, Any]], side: str, per: str = "bursts") -> str:
        r_ = _per(runs, side, "syscr", per)
        w_ = _per(runs, side, "syscw", per)
        return f"read {fmt(r_, 3)}, write {fmt(w_, 3)}"

    rows = [
        ["no system call per burst in polling mode",
         "read()/write() calls per burst in the window (/proc/self/io), flood → polling sink",
         f"flood: {io(poll, 'tx')}; sink: {io(poll, 'rx')}"],
        ["one eventfd write per burst in interrupt mode",
         "same, flood → sink in interrupt mode (memif_poll_event wakes it)",
         f"flood: {io(intr, 'tx')}; sink: {io(intr, 'rx')}"],
        ["no eventfd write when the peer masks interrupts",
         "flood write() calls per burst against the polling sink (it sets MASK_INT)",
         f"{fmt(_per(poll, 'tx', 'syscw', 'bursts'), 3)}"],
        ["cost of a system call per burst",
         "C core rate, interrupt-mode sink / polling sink (same round)",
         fmt(stat(ratios(g, "c-c/interrupt-sink", "c-c")), 2, TIMES)],
        ["no per-packet allocation",
         "allocator calls (memif_init hooks) per packet in every C flood/sink window",
         f"flood {fmt(_per(c_runs, 'tx', 'allocs', 'packets'), 4)}, "
         f"sink {fmt(_per(c_runs, 'rx', 'allocs', 'packets'), 4)} "
         f"({len(c_runs)} windows)"],
        ["own counters on separate cache lines",
         "plain ring with both indices on one cache line / on two",
         fmt(stat(ratios(g, "plainring/shared-line", "plainring")), 2, TIMES)],
        ["publish the ring counter once per burst",
         "plain ring publishing after every frame / once per burst",
         fmt(stat(ratios(g, "plainring/publish-per-frame", "plainring")), 2, TIMES)],
        ["no per-packet allocation in Python (bulk level)",
         "traced Python allocation peak (tracemalloc) per packet of one burst, 50 bursts "
         "before each 64 B window of the Python group (burst 32 and 256)",
         py_alloc_summary(res)],
    ]
    return _table(["design choice", "measurement (64 B, burst 32, m2s)", "value"], rows)


def failures(res: Result) -> list[str]:
    out = []
    for g in res["groups"]:
        for r in g["runs"]:
            if r["error"]:
                first = r["error"].splitlines()[0]
                out.append(f"* {g['name']} {cfg(g)} round {r['round'] + 1} {r['kind']}: {first}")
    return out


# ------------------------------------------------------------------------------ plot


def _bars(ax: Any, labels: list[str], series: list[tuple[str, list[Stat | None]]],
          title: str, unit: str, threshold: float | None = None) -> None:
    """Grouped bars: one group per label, one bar per series (median, min-max whiskers)."""
    width = 0.8 / max(len(series), 1)
    for k, (name, stats) in enumerate(series):
        med = [s.median if s else 0.0 for s in stats]
        lo = [s.median - s.lo if s else 0.0 for s in stats]
        hi = [s.hi - s.median if s else 0.0 for s in stats]
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(labels))]
        ax.bar(xs, med, width, yerr=[lo, hi], capsize=2, label=name)
    if threshold is not None:
        ax.axhline(threshold, color="black", linestyle="--", linewidth=0.8)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(unit)
    ax.legend(fontsize=6)


def plot(res: Result, path: Path) -> bool:
    """Rates, same-round ratios and round trips (False if matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(2, 3, figsize=(17, 9))
    flat = list(axes.flat)
    for ax in flat:
        ax.set_visible(False)
    spread = f"median, min{EN_DASH}max"

    core = groups(res, "core")
    sizes = sorted({g["params"]["size"] for g in core})
    for ax, size in zip(flat[:2], sizes[:2], strict=False):
        gs = groups(res, "core", size=size)
        kinds = [k for k in ("c-c", "dpdk-dpdk", "c-dpdk", "dpdk-c", "plainring")
                 if any(values(g, k) for g in gs)]
        ax.set_visible(True)
        _bars(ax, [cfg(g) for g in gs],
              [(KIND_LABELS[k], [stat(values(g, k)) for g in gs]) for k in kinds],
              f"Throughput, {size} B frames ({spread})", "Mpps")
    if core:
        flat[2].set_visible(True)
        _bars(flat[2], [f"{g['params']['size']} {cfg(g)}" for g in core],
              [("C core / testpmd", [stat(ratios(g, "c-c", "dpdk-dpdk")) for g in core]),
               ("C core / plain ring", [stat(ratios(g, "c-c", "plainring")) for g in core])],
              f"Same-round ratios ({spread}); dashed: 1.0", "ratio", threshold=1.0)
        flat[2].tick_params(axis="x", labelsize=7, rotation=30)
    py = groups(res, "python", size=64)
    if py:
        labels = [cfg(g) for g in py]
        kinds = [k for k in py[0]["kinds"] if any(values(g, k) for g in py)]
        flat[3].set_visible(True)
        _bars(flat[3], labels,
              [(KIND_LABELS.get(k, k), [stat(values(g, k)) for g in py]) for k in kinds],
              f"Python API vs the C core, 64 B ({spread})", "Mpps")
        flat[4].set_visible(True)
        levels = [k for k in kinds if k.startswith("py-")]
        _bars(flat[4], labels,
              [(KIND_LABELS[k], [stat(ratios(g, k, "c-c/s2m" if k.endswith("-tx") else "c-c/m2s"))
                                 for g in py]) for k in levels],
              f"Python / C core, same round, 64 B ({spread}); dashed: 0.5", "ratio",
              threshold=0.5)
    lat = groups(res, "latency")
    if lat:
        g = lat[0]
        kinds = [k for k in g["kinds"] if values(g, k)]
        meds = [s.median for k in kinds if (s := stat(values(g, k))) is not None]
        ax = flat[5]
        ax.set_visible(True)
        ax.barh([KIND_LABELS.get(k, k) for k in kinds], meds)
        ax.set_xscale("log")
        ax.set_xlabel("median round trip, µs (log scale)")
        ax.set_title("Round trip, 64 B", fontsize=10)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(f"memif_cffi benchmarks, {res['meta']['date']} ({res['meta']['mode']} run, "
                 f"{res['meta']['settings']['reps']} alternating rounds)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------- report


def markdown(res: Result, plot_name: str | None, json_name: str) -> str:
    m = res["meta"]
    s = m["settings"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`python -m bench`); how to run it and what each "
        "measurement means: [bench/README.md](../bench/README.md). Raw results: "
        f"[{json_name}]({json_name}).",
        "",
        f"* **When / where:** {m['date']}; {m['nproc']} CPUs ({m['cpu_model']}), Linux "
        f"{m['kernel']}, Python {m['python']}, DPDK {m['dpdk'] or 'not installed'}. A shared "
        "virtual machine: absolute rates move with the neighbours' load and with where the "
        "host places the two vCPUs, so read the ratios.",
        f"* **Method:** {m['mode']} run of {m['duration_s']:.0f} s. Every figure is the "
        f"**median of {s['reps']} runs taken in alternating order** (A B C … A B C …, one run "
        f"of each kind per round), with the min{EN_DASH}max spread in brackets. Every ratio is "
        f"computed within a round (both runs back to back), then its median and min{EN_DASH}max "
        "are "
        f"shown. Throughput windows: {s['warmup']} s warm-up after the first packet, then "
        f"{s['window']} s measured by the receiver. Round trips: median of "
        f"{s['ping_count']} per run.",
        f"* **Placement:** one process per CPU: sender / ping on CPU {m['cpus'][0]}, "
        f"receiver / pong on CPU {m['cpus'][1]} (taskset; testpmd with both lcores on its "
        "CPU). Rings of 1024 slots, 2048-byte buffers, one queue. Gbit/s count frame bytes "
        "only.",
    ]
    if s["reps"] < 5:
        lines += ["", f"> **{m['mode']} run: {s['reps']} run(s) per figure** — a smoke run, "
                  "not for quoting. `make bench` without BENCH_QUICK takes 5."]
    lines += ["", "## Targets", ""]
    rows = []
    for t in targets(res):
        result = {True: "**pass**", False: "**FAIL**", None: "TODO"}[t.passed]
        rows.append([t.name, t.measured, t.threshold, result, t.note or "—"])
    lines += _table(["target", f"measured (median ratio [min{EN_DASH}max] per configuration)",
                     "wanted", "result", "what limits it"], rows)
    lines += [
        "", "## Throughput: C core, DPDK testpmd, cross-implementation, plain ring", "",
        "Mpps received. *C core*: `memif_bench flood` → `memif_bench sink` (bench/c), both on "
        "build/libmemif.so, polling mode; the flood copies each frame into its buffer, the "
        "sink copies each frame out. *testpmd*: DPDK's net_memif, txonly → rxonly. "
        "*plain ring*: the same copies through a bare single-producer/single-consumer ring "
        "in a memfd — the physical limit. m2s: the master sends; s2m: the slave sends.",
        "",
        *core_table(res),
        "", "## Python API against the C peer", "",
        "The Python end point is the slave (`python -m bench.pyworker`); it transmits to "
        "`memif_bench sink` (s2m) or receives from `memif_bench flood` (m2s). The "
        "synchronous levels poll; asyncio is interrupt driven. The C core columns are C → C "
        "in the same direction, measured in the same rounds.",
        "",
        *python_table(res),
        "", "## Latency", "",
        "Round trip of one 64-byte frame (ping on one CPU, pong on the other), against the "
        "same bounce with nothing but an eventfd (interrupt mode's floor) or a shared "
        "counter (polling mode's floor). Medians of the per-run medians.",
        "",
        *latency_table(res),
        "", "## Data-path design checks", "",
        *design_table(res),
    ]
    if plot_name:
        lines += ["", "## Plot", "", f"![benchmark plot]({plot_name})"]
    fails = failures(res)
    if fails:
        lines += ["", "## Runs that failed", "", *fails]
    return "\n".join(lines) + "\n"


def write(res: Result, out_dir: Path, stem: str = "benchmarks") -> list[Path]:
    """Write ``stem``.md, ``stem``.png (when matplotlib is there) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{stem}.png"
    has_plot = plot(res, png)
    md = out_dir / f"{stem}.md"
    md.write_text(markdown(res, png.name if has_plot else None, f"{stem}.json"))
    return [md, *([png] if has_plot else [])]
