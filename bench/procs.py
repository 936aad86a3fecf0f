"""Child processes of the benchmarks: C programs, Python workers and DPDK testpmd.

Every process runs pinned to one CPU, in its own session, with its output
collected line by line by a reader thread; :meth:`Proc.stop` always ends it
(SIGTERM, then SIGKILL of its whole group), so a failed measurement never
leaves a busy-polling process behind.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_RX_PPS = re.compile(r"Rx-pps:\s*(\d+)")


class MeasureError(RuntimeError):
    """A measurement did not produce its number (timeout, a process failed)."""


def parse_fields(line: str) -> dict[str, float | str]:
    """``"kind=sink pps=12 ..."`` -> ``{"kind": "sink", "pps": 12.0, ...}``."""
    out: dict[str, float | str] = {}
    for item in line.split():
        key, sep, value = item.partition("=")
        if not sep:
            continue
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out


def pinned(cmd: Sequence[str], cpu: int | None) -> list[str]:
    """``cmd`` run under ``taskset -c cpu`` when taskset exists."""
    if cpu is None or shutil.which("taskset") is None:
        return list(cmd)
    return ["taskset", "-c", str(cpu), *cmd]


class Proc:
    """A started process and the lines it printed so far (stdout and stderr merged)."""

    def __init__(self, name: str, cmd: Sequence[str], env: dict[str, str] | None = None,
                 cwd: Path | None = None, on_stop: Callable[[], None] | None = None) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._on_stop = on_stop
        self._proc = subprocess.Popen(
            self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace", bufsize=1, start_new_session=True, env=env, cwd=cwd,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        out = self._proc.stdout
        assert out is not None
        for line in out:
            with self._cond:
                self.lines.append(_ANSI.sub("", line.rstrip("\n")))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc.poll() is None

    def tail(self, n: int = 15) -> str:
        with self._cond:
            return "\n".join(self.lines[-n:])

    def wait_for(self, pred: Callable[[list[str]], bool], timeout: float, what: str) -> None:
        """Wait until ``pred(lines)`` holds; MeasureError on timeout or exit."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self.lines):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise MeasureError(f"{self.name}: no {what} within {timeout:.0f} s\n"
                                       f"{self.tail()}")
                if not self._reader.is_alive():
                    raise MeasureError(f"{self.name} exited ({self._proc.poll()}) before "
                                       f"{what}\n{self.tail()}")
                self._cond.wait(min(left, 0.05))

    def result(self, timeout: float) -> dict[str, float | str]:
        """Wait for the process's ``kind=...`` line and parse it."""
        self.wait_for(lambda lines: any(x.startswith("kind=") for x in lines), timeout,
                      "result line")
        return self.last_result() or {}

    def last_result(self) -> dict[str, float | str] | None:
        with self._cond:
            for line in reversed(self.lines):
                if line.startswith("kind="):
                    return parse_fields(line)
        return None

    def rx_pps(self) -> list[int]:
        """testpmd: every ``Rx-pps`` reading printed so far."""
        with self._cond:
            return [int(m.group(1)) for line in self.lines if (m := _RX_PPS.search(line))]

    def send(self, line: str) -> None:
        """Write one line to the process's stdin (testpmd's command line)."""
        stdin = self._proc.stdin
        if stdin is None:
            raise MeasureError(f"{self.name}: no stdin")
        try:
            stdin.write(line + "\n")
            stdin.flush()
        except OSError as exc:
            raise MeasureError(f"{self.name}: {exc}\n{self.tail()}") from exc

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig: int = signal.SIGTERM, grace: float = 3.0) -> int | None:
        """End the process: ``sig`` first, SIGKILL of the group after ``grace`` seconds."""
        if self._proc.poll() is None and sig != signal.SIGKILL:
            with suppress(ProcessLookupError):
                self._proc.send_signal(sig)
            with suppress(subprocess.TimeoutExpired):
                self._proc.wait(grace)
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait()
        self._reader.join(5)
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                with suppress(OSError):
                    stream.close()
        if self._on_stop is not None:
            self._on_stop()
        return self._proc.returncode


def unix_listening(path: str) -> bool:
    """True when /proc/net/unix lists a listening socket bound to ``path``."""
    try:
        with open("/proc/net/unix") as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        return os.path.exists(path)
    for row in rows:
        parts = row.split()
        # Num RefCount Protocol Flags Type St Inode Path; flag 0x10000 = accepting.
        if len(parts) >= 8 and parts[7] == path and int(parts[3], 16) & 0x10000:
            return True
    return False


def wait_listening(path: str, proc: Proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not unix_listening(path):
        if not proc.running:
            raise MeasureError(f"{proc.name} exited before listening on {path}\n{proc.tail()}")
        if time.monotonic() > deadline:
            raise MeasureError(f"{proc.name}: not listening on {path} after {timeout:.0f} s\n"
                               f"{proc.tail()}")
        time.sleep(0.01)


# ------------------------------------------------------------------------ testpmd


def dpdk_runtime_dir(prefix: str) -> Path:
    """Where DPDK keeps the files of ``--file-prefix=prefix``."""
    if os.geteuid() == 0:
        return Path("/var/run/dpdk") / prefix
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    return Path(base) / "dpdk" / prefix


def testpmd_command(*, role: str, socket: str, forward: str, size: int, burst: int, cpu: int,
                    prefix: str, ring_log2: int = 10, buffer_size: int = 2048) -> list[str]:
    """Interactive testpmd with net_memif, forwarding from the start (``-i -a``).

    No hugepages, no PCI, no shared files; both lcores (the main one, which
    only reads commands, and the forwarding one) on ``cpu``. Interactive mode
    lets :func:`testpmd_rate` take the port statistics exactly at the start
    and at the end of a window; ``stdbuf -oL`` makes them arrive at once.
    """
    exe = shutil.which("dpdk-testpmd")
    if exe is None:
        raise MeasureError("dpdk-testpmd is not installed")
    vdev = [f"net_memif0,role={role}", "id=0", f"socket={socket}", "socket-abstract=no"]
    if role == "client":
        vdev += [f"rsize={ring_log2}", f"bsize={buffer_size}"]
    cmd = [
        exe, f"--lcores=0@{cpu},1@{cpu}", "--no-huge", "-m", "512", "--no-pci",
        "--no-shconf", "--no-telemetry", f"--file-prefix={prefix}",
        "--log-level=pmd.net.memif:info", "--vdev=" + ",".join(vdev), "--",
        "-i", "-a", f"--forward-mode={forward}", "--total-num-mbufs=32768",
        f"--burst={burst}", f"--txpkts={size}", "--rxq=1", "--txq=1",
    ]
    if burst > 200:
        cmd.append("--mbcache=512")  # the mempool cache must hold more than one burst
    if shutil.which("stdbuf") is not None:
        cmd = ["stdbuf", "-oL", *cmd]
    return pinned(cmd, cpu)


def start_testpmd(name: str, *, role: str, socket: str, forward: str, size: int, burst: int,
                  cpu: int, prefix: str, env: dict[str, str]) -> Proc:
    """Start testpmd; it is stopped with SIGKILL (no files to clean but its runtime dir)."""

    def cleanup() -> None:
        shutil.rmtree(dpdk_runtime_dir(prefix), ignore_errors=True)
        if role == "server":
            with suppress(OSError):
                if Path(socket).is_socket():
                    os.unlink(socket)

    cmd = testpmd_command(role=role, socket=socket, forward=forward, size=size, burst=burst,
                          cpu=cpu, prefix=prefix)
    return Proc(name, cmd, env=env, on_stop=cleanup)


def testpmd_rate(proc: Proc, warmup: float, window: float, timeout: float) -> float:
    """Packets per second received by an rxonly testpmd over a ``window``-second window.

    The window starts ``warmup`` seconds (plus a quarter of a second for the
    sender to start) after the memif connection. ``show port stats`` at both
    ends: the second ``Rx-pps`` is testpmd's own rate since the first.
    """
    proc.wait_for(lambda lines: any("Connected" in x for x in lines), timeout,
                  "memif connection")
    time.sleep(warmup + 0.25)
    seen = len(proc.rx_pps())
    proc.send("show port stats 0")
    proc.wait_for(lambda _l: len(proc.rx_pps()) > seen, 10, "port statistics")
    time.sleep(window)
    proc.send("show port stats 0")
    proc.wait_for(lambda _l: len(proc.rx_pps()) > seen + 1, 10, "port statistics")
    pps = proc.rx_pps()[seen + 1]
    if pps <= 0:
        raise MeasureError(f"{proc.name}: nothing received during the window\n{proc.tail()}")
    return float(pps)


def dpdk_version() -> str | None:
    """Version of the installed DPDK package, when the package manager knows it."""
    for cmd in (["pkg-config", "--modversion", "libdpdk"],
                ["dpkg-query", "-W", "-f", "${Version}", "dpdk"]):
        if shutil.which(cmd[0]) is None:
            continue
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode == 0 and res.stdout.strip():
            return res.stdout.strip()
    return None
