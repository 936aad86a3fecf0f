"""The measurements: what runs against what, in alternating rounds.

A *group* is one configuration (frame size, burst, direction...) and the
*kinds* measured in it, e.g. our C core, DPDK testpmd and the plain ring at
64 B, burst 32, master to slave. A group runs ``reps`` rounds; each round runs
every kind once, in the same order (A B C A B C ...), so slow drifts of a
shared machine hit every kind alike and a ratio can be taken round by round.
The report uses the median of the runs and of the per-round ratios, with
their min-max spread.

Every process is pinned: the sender (or ping side) to the first CPU, the
receiver (or pong side) to the second.

``python -m bench`` runs the whole plan; :func:`run` is what the smoke test
calls with ``mode="smoke"``.
"""

from __future__ import annotations

import itertools
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.procs import (
    MeasureError,
    Proc,
    dpdk_version,
    pinned,
    start_testpmd,
    testpmd_rate,
    wait_listening,
)

ROOT = Path(__file__).resolve().parent.parent
C_DIR = Path(__file__).resolve().parent / "c"
INCLUDE = ROOT / "libmemif-src" / "include"
LIB_DIR = ROOT / "build"
DEFAULT_BUILD = ROOT / "build" / "bench"
#: What testpmd prints once its forwarding has started (its configuration).
FORWARDING = "forwards packets on"

#: Python API levels measured (tx against the C sink, rx against the C flood).
PY_TX_LEVELS = ("packet", "bulk", "aio")
PY_RX_LEVELS = ("packet", "bulk", "views", "aio")


@dataclass(frozen=True)
class Settings:
    """How long and how often to measure."""

    mode: str
    reps: int
    warmup: float  # seconds after the first packet, not measured
    window: float  # seconds measured
    ping_count: int  # round trips measured per latency run
    sizes: tuple[int, ...] = (64, 1500)
    bursts: tuple[int, ...] = (32, 256)
    directions: tuple[str, ...] = ("m2s", "s2m")
    connect_timeout: float = 10.0


SETTINGS = {
    # make bench: about 11 minutes on a 2-vCPU machine
    "full": Settings("full", reps=7, warmup=0.2, window=0.5, ping_count=10000),
    # make bench BENCH_QUICK=1: every measurement once, shorter
    "quick": Settings("quick", reps=1, warmup=0.1, window=0.25, ping_count=3000),
    # tests/test_bench_smoke.py: one configuration, each kind once, as short as possible
    "smoke": Settings("smoke", reps=1, warmup=0.05, window=0.1, ping_count=200,
                      sizes=(64,), bursts=(32,), directions=("m2s",), connect_timeout=15.0),
}


@dataclass
class Run:
    """One measurement of one kind in one round."""

    round: int
    kind: str
    value: float | None  # Mpps for throughput, microseconds for latency
    seconds: float  # wall time the run took, start-up included
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Group:
    """One configuration and the kinds measured in it, round by round."""

    name: str  # "core", "python", "latency" or "design"
    params: dict[str, Any]
    kinds: list[str]
    unit: str
    runs: list[Run] = field(default_factory=list)

    @property
    def label(self) -> str:
        p = self.params
        parts = [self.name]
        if "size" in p:
            parts.append(f"{p['size']} B")
        if "burst" in p:
            parts.append(f"burst {p['burst']}")
        if "direction" in p:
            parts.append(p["direction"])
        return ", ".join(parts)

    def values(self, kind: str) -> list[float]:
        return [r.value for r in self.runs if r.kind == kind and r.value is not None]


# --------------------------------------------------------------------------- build


def _compile(src: Path, exe: Path, extra: list[str], cflags: list[str]) -> None:
    cmd = ["gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", *cflags, str(src), "-o",
           str(exe), *extra]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}\n{res.stdout}{res.stderr}")


def ensure_library() -> Path:
    """build/libmemif.so, running ``make lib`` when it is missing or older than its sources."""
    lib = LIB_DIR / "libmemif.so"
    sources = [*ROOT.glob("libmemif-src/src/*.[ch]"), *ROOT.glob("libmemif-src/include/*.h")]
    newest = max((p.stat().st_mtime for p in sources), default=0.0)
    if not lib.exists() or lib.stat().st_mtime < newest:
        res = subprocess.run(["make", "-s", "lib"], cwd=ROOT, capture_output=True, text=True,
                             check=False)
        if res.returncode != 0:
            raise RuntimeError(f"make lib failed\n{res.stdout}{res.stderr}")
    return lib


def build(out_dir: Path = DEFAULT_BUILD, cflags: list[str] | None = None) -> dict[str, Path]:
    """Compile bench/c/*.c into ``out_dir``; returns program name -> executable."""
    flags = list(cflags or [])
    lib = ensure_library()
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = out_dir / "cflags"
    stamp_text = " ".join(flags)
    stale = not stamp.exists() or stamp.read_text() != stamp_text
    programs = {
        "memif_bench": [f"-I{INCLUDE}", f"-L{LIB_DIR}", f"-Wl,-rpath,{LIB_DIR}", "-lmemif",
                        "-pthread"],
        "plainring": [],
        "rawrtt": [],
    }
    out: dict[str, Path] = {}
    for name, extra in programs.items():
        src, exe = C_DIR / f"{name}.c", out_dir / name
        inputs = [src] + ([lib, INCLUDE / "libmemif.h"] if name == "memif_bench" else [])
        if stale or not exe.exists() or exe.stat().st_mtime < max(
                p.stat().st_mtime for p in inputs):
            _compile(src, exe, extra, flags)
        out[name] = exe
    stamp.write_text(stamp_text)
    return out


# -------------------------------------------------------------------------- runner


class Runner:
    """Starts the end points of one measurement and turns their output into a number."""

    def __init__(self, settings: Settings, programs: dict[str, Path], work_dir: Path,
                 cpus: tuple[int, int], log: Callable[[str], None] | None = None,
                 python: str | None = None) -> None:
        self.s = settings
        self.programs = programs
        self.work_dir = work_dir
        self.tx_cpu, self.rx_cpu = cpus
        self.log = log or (lambda _msg: None)
        self.python = python or sys.executable
        self._ids = itertools.count()
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)  # C programs and DPDK link what they need themselves
        self.c_env = env
        py_env = dict(os.environ)
        py_env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        self.py_env = py_env

    # ------------------------------------------------------------- end points

    def _socket(self) -> str:
        return str(self.work_dir / f"b{next(self._ids)}.sock")

    def _result_timeout(self) -> float:
        return self.s.connect_timeout + self.s.warmup + self.s.window + 10

    def _c(self, action: str, role: str, sock: str, size: int, burst: int, cpu: int,
           interrupt: bool = False, count: int | None = None) -> Proc:
        cmd = [str(self.programs["memif_bench"]), action, role, sock, "-s", str(size), "-b",
               str(burst), "-w", str(self.s.warmup), "-t", str(self.s.window), "-d", "60",
               "-c", str(cpu), "-T", str(self.s.connect_timeout)]
        if interrupt:
            cmd.append("-i")
        if count is not None:
            cmd += ["-n", str(count)]
        return Proc(f"memif_bench {action} ({role})", pinned(cmd, cpu), env=self.c_env)

    def _py(self, level: str, direction: str, role: str, sock: str, size: int, burst: int,
            cpu: int) -> Proc:
        cmd = [self.python, "-m", "bench.pyworker", level, direction, sock, "--role", role,
               "--size", str(size), "--burst", str(burst), "--warmup", str(self.s.warmup),
               "--window", str(self.s.window), "--duration", "60", "--timeout",
               str(self.s.connect_timeout), "--cpu", str(cpu)]
        return Proc(f"pyworker {level} {direction} ({role})", pinned(cmd, cpu),
                    env=self.py_env, cwd=ROOT)

    def _dpdk(self, forward: str, role: str, sock: str, size: int, burst: int,
              cpu: int) -> Proc:
        prefix = f"memif_bench_{os.getpid()}_{next(self._ids)}"
        return start_testpmd(f"testpmd {forward} ({role})",
                             role="server" if role == "master" else "client", socket=sock,
                             forward=forward, size=size, burst=burst, cpu=cpu, prefix=prefix,
                             env=self.c_env)

    def _endpoint(self, impl: str, sending: bool, role: str, sock: str, size: int,
                  burst: int, interrupt: bool = False) -> Proc:
        cpu = self.tx_cpu if sending else self.rx_cpu
        if impl == "c":
            return self._c("flood" if sending else "sink", role, sock, size, burst, cpu,
                           interrupt)
        if impl == "dpdk":
            return self._dpdk("txonly" if sending else "rxonly", role, sock, size, burst, cpu)
        if impl.startswith("py-"):
            return self._py(impl[3:], "tx" if sending else "rx", role, sock, size, burst, cpu)
        raise ValueError(f"unknown end point {impl!r}")

    # ------------------------------------------------------------ measurements

    def throughput(self, sender: str, receiver: str, direction: str, size: int, burst: int,
                   interrupt_sink: bool = False) -> tuple[float, dict[str, Any]]:
        """Mpps received when ``sender`` floods ``receiver`` (``c``, ``dpdk``, ``py-LEVEL``).

        The master is the sender for ``m2s`` and the receiver for ``s2m``; it
        starts first and the slave once the master listens (a DPDK client never
        retries).
        """
        sock = self._socket()
        master_sends = direction == "m2s"
        procs: list[Proc] = []
        try:
            first = self._endpoint(sender if master_sends else receiver, master_sends, "master",
                                   sock, size, burst, interrupt_sink and not master_sends)
            procs.append(first)
            wait_listening(sock, first, self.s.connect_timeout)
            if first.name.startswith("testpmd"):
                # It listens before its port is set up; a DPDK client that connects
                # then is left hanging (and never retries): wait until it forwards.
                first.wait_for(lambda lines: any(FORWARDING in x for x in lines),
                               self.s.connect_timeout, "forwarding start")
            second = self._endpoint(receiver if master_sends else sender, not master_sends,
                                    "slave", sock, size, burst,
                                    interrupt_sink and master_sends)
            procs.append(second)
            rx = procs[1] if master_sends else procs[0]
            tx = procs[0] if master_sends else procs[1]
            if receiver == "dpdk":
                pps = testpmd_rate(rx, self.s.warmup, self.s.window, self.s.connect_timeout)
                rx_fields: dict[str, Any] = {"kind": "testpmd-rxonly", "pps": pps}
            else:
                rx_fields = dict(rx.result(self._result_timeout()))
                rx.wait_exit(5)  # it exits by itself after its window
                pps = float(rx_fields["pps"])
                if "-partial" in str(rx_fields.get("kind", "")):
                    raise MeasureError(f"{rx.name}: window not completed\n{rx.tail()}")
        except MeasureError as exc:
            others = "".join(f"\n--- {p.name}:\n{p.tail(8)}" for p in procs
                             if p.name not in str(exc))
            raise MeasureError(f"{exc}{others}") from None
        finally:
            codes = {p: p.stop() for p in reversed(procs)}
        _check_exits(codes)
        tx_fields = tx.last_result() if sender != "dpdk" else None
        return pps / 1e6, {"rx": rx_fields, "tx": tx_fields or {}}

    def plainring(self, size: int, burst: int, *flags: str) -> tuple[float, dict[str, Any]]:
        """Mpps through the bare shared-memory ring (``flags``: -f shared line, -p per frame)."""
        cmd = [str(self.programs["plainring"]), "-s", str(size), "-b", str(burst), "-w",
               str(self.s.warmup), "-t", str(self.s.window), "-c",
               f"{self.tx_cpu},{self.rx_cpu}", *flags]
        proc = Proc("plainring", cmd, env=self.c_env)
        try:
            fields = dict(proc.result(self._result_timeout()))
            code = proc.wait_exit(10)
            if code not in (0, None):
                raise MeasureError(f"plainring exited with {code}\n{proc.tail()}")
        finally:
            proc.stop()
        return float(fields["pps"]) / 1e6, {"rx": fields}

    def raw_rtt(self, how: str) -> tuple[float, dict[str, Any]]:
        """Median round trip (us) of the bare eventfd or shared-memory bounce."""
        cmd = [str(self.programs["rawrtt"]), how, "-n", str(self.s.ping_count), "-c",
               f"{self.tx_cpu},{self.rx_cpu}"]
        proc = Proc(f"rawrtt {how}", cmd, env=self.c_env)
        try:
            fields = dict(proc.result(self._result_timeout() + self.s.ping_count * 2e-3))
            proc.wait_exit(5)
        finally:
            codes = {proc: proc.stop()}
        _check_exits(codes)
        return float(fields["rtt_median_us"]), fields

    def memif_rtt(self, interrupt: bool) -> tuple[float, dict[str, Any]]:
        """Median round trip (us) of a 64-byte frame between two C end points."""
        sock = self._socket()
        procs: list[Proc] = []
        try:
            pong = self._c("pong", "master", sock, 64, 32, self.rx_cpu, interrupt)
            procs.append(pong)
            wait_listening(sock, pong, self.s.connect_timeout)
            ping = self._c("ping", "slave", sock, 64, 32, self.tx_cpu, interrupt,
                           count=self.s.ping_count)
            procs.append(ping)
            fields = dict(ping.result(self._result_timeout() + self.s.ping_count * 2e-3))
            ping.wait_exit(5)
        finally:
            codes = {p: p.stop() for p in reversed(procs)}
        _check_exits(codes)
        return float(fields["rtt_median_us"]), fields


def _check_exits(codes: dict[Proc, int | None]) -> None:
    """Our end points end with status 0, also on SIGTERM; testpmd is always killed.

    A non-zero status means the program failed, e.g. a sanitizer report under
    ``make sanitize``, even if its number looked fine.
    """
    for proc, code in codes.items():
        # -SIGTERM: a Python worker that got our SIGTERM while already shutting down
        if not proc.name.startswith("testpmd") and code not in (0, -signal.SIGTERM):
            raise MeasureError(f"{proc.name} exited with status {code}\n{proc.tail()}")


# ---------------------------------------------------------------------------- plan

#: Core kinds: name -> (sender, receiver), in the order of a round: the C core
#: next to both references it is divided by. "plainring" is the bare ring.
CORE_KINDS = {
    "dpdk-dpdk": ("dpdk", "dpdk"),
    "c-c": ("c", "c"),
    "plainring": ("", ""),
    "c-dpdk": ("c", "dpdk"),
    "dpdk-c": ("dpdk", "c"),
}
LATENCY_KINDS = ("eventfd", "memif-interrupt", "spin", "memif-polling")
DESIGN_KINDS = ("c-c", "c-c/interrupt-sink", "plainring", "plainring/shared-line",
                "plainring/publish-per-frame")


def python_kinds() -> list[str]:
    """Python group: every level, with the C reference of its direction next to bulk.

    The Python end point is the slave: it transmits on the s2m ring and
    receives on the m2s ring, so its references are c-c/s2m and c-c/m2s.
    """
    out = []
    for direction, ref, levels in (("tx", "c-c/s2m", PY_TX_LEVELS),
                                   ("rx", "c-c/m2s", PY_RX_LEVELS)):
        for level in levels:
            if level == "bulk":
                out.append(ref)
            out.append(f"py-{level}-{direction}")
    return out


def plan(settings: Settings, with_dpdk: bool) -> list[Group]:
    """Every group of a run, in the order they are measured."""
    core = [k for k in CORE_KINDS if with_dpdk or "dpdk" not in k]
    groups: list[Group] = []
    for size, burst, direction in itertools.product(settings.sizes, settings.bursts,
                                                    settings.directions):
        groups.append(Group("core", {"size": size, "burst": burst, "direction": direction},
                            list(core), "Mpps"))
    for size, burst in itertools.product(settings.sizes, settings.bursts):
        groups.append(Group("python", {"size": size, "burst": burst}, python_kinds(), "Mpps"))
    groups.append(Group("latency", {"size": 64}, list(LATENCY_KINDS), "us"))
    groups.append(Group("design", {"size": 64, "burst": 32, "direction": "m2s"},
                        list(DESIGN_KINDS), "Mpps"))
    return groups


def measure(runner: Runner, group: Group, kind: str) -> tuple[float, dict[str, Any]]:
    """One run of ``kind`` in ``group``."""
    p = group.params
    if group.name == "latency":
        if kind.startswith("memif-"):
            return runner.memif_rtt(kind == "memif-interrupt")
        return runner.raw_rtt(kind)
    size, burst = p["size"], p["burst"]
    if kind.startswith("plainring"):
        flags = {"plainring": (), "plainring/shared-line": ("-f",),
                 "plainring/publish-per-frame": ("-p",)}[kind]
        return runner.plainring(size, burst, *flags)
    if group.name == "python":
        if kind.startswith("c-c/"):
            return runner.throughput("c", "c", kind[4:], size, burst)
        level, direction = kind[3:].rsplit("-", 1)
        if direction == "tx":
            return runner.throughput(f"py-{level}", "c", "s2m", size, burst)
        return runner.throughput("c", f"py-{level}", "m2s", size, burst)
    if kind == "c-c/interrupt-sink":
        return runner.throughput("c", "c", p["direction"], size, burst, interrupt_sink=True)
    sender, receiver = CORE_KINDS[kind]
    return runner.throughput(sender, receiver, p["direction"], size, burst)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "dpdk": dpdk_version() if shutil.which("dpdk-testpmd") else None,
    }


def pick_cpus() -> tuple[int, int]:
    """The first two CPUs this process may use (one twice on a single-CPU machine)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = [0]
    return cpus[0], cpus[1] if len(cpus) > 1 else cpus[0]


def _iter_runs(groups: list[Group], reps: int) -> Iterator[tuple[Group, int, str]]:
    for group in groups:
        for rnd in range(reps):
            for kind in group.kinds:
                yield group, rnd, kind


def run(mode: str = "full", *, with_dpdk: bool | None = None, build_dir: Path = DEFAULT_BUILD,
        cflags: list[str] | None = None, only: set[str] | None = None,
        log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build the programs, measure every group of ``mode`` and return the results.

    ``with_dpdk`` defaults to whether ``dpdk-testpmd`` is installed; ``only``
    restricts the groups by name ("core", "python", "latency", "design").
    """
    settings = SETTINGS[mode]
    say = log or (lambda _msg: None)
    if with_dpdk is None:
        with_dpdk = shutil.which("dpdk-testpmd") is not None
    programs = build(build_dir, cflags)
    groups = [g for g in plan(settings, with_dpdk) if only is None or g.name in only]
    cpus = pick_cpus()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="memif-bench-") as tmp:
        runner = Runner(settings, programs, Path(tmp), cpus, log=say)
        total = sum(len(g.kinds) for g in groups) * settings.reps
        for i, (group, rnd, kind) in enumerate(_iter_runs(groups, settings.reps), 1):
            t0 = time.monotonic()
            try:
                value, extra = measure(runner, group, kind)
                error = None
            except (MeasureError, KeyError, ValueError, OSError) as exc:
                value, extra, error = None, {}, f"{type(exc).__name__}: {exc}"
            dt = time.monotonic() - t0
            group.runs.append(Run(rnd, kind, value, round(dt, 3), extra, error))
            shown = f"{value:.3f} {group.unit}" if value is not None else f"FAILED {error}"
            say(f"[{i}/{total}] {group.label} round {rnd + 1}/{settings.reps} {kind}: {shown}"
                f" ({dt:.1f} s)")
    return {
        "meta": {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "mode": mode,
            "settings": asdict(settings),
            "cpus": list(cpus),
            "with_dpdk": with_dpdk,
            "duration_s": round(time.monotonic() - started, 1),
            **machine(),
        },
        "groups": [asdict(g) for g in groups],
    }
