"""Independent memif peers for interop tests.

``dpdk_peer(...)`` runs DPDK's testpmd with the ``net_memif`` driver through the
shared wrapper script ``dpdk-memif-peer`` (found at ``../shared/tools/`` next to
the repository, or wherever the environment variable ``MEMIF_DPDK_PEER``
points), waits until it is ready, and stops it cleanly afterwards::

    require_dpdk()
    with dpdk_peer("server", "/tmp/x.sock", forward="io") as peer:
        ...                       # connect a slave, exchange frames
        peer.wait_for("Connected", 5)

``require_dpdk()`` skips the calling test when testpmd or the wrapper is
missing, and fails it instead when ``MEMIF_REQUIRE_PEERS=1`` (as in CI).

What testpmd prints (DPDK 22.11, memif log level info):

* ``memif_connect(): Connected.`` once the handshake completed (both roles);
  the server also prints ``memif_msg_receive_connect(): Remote interface
  <name> connected.``, the client ``memif_msg_receive_connected(): ...``;
* ``memif_msg_receive_disconnect(): Disconnect received: <reason>`` when the
  peer sends DISCONNECT. At log level info nothing at all is printed when the
  peer just closes the socket, and ``memif_disconnect(): Disconnected, id: 0,
  role: server.`` only appears with ``log_level="debug"``;
* ``Rx-pps:`` / ``Tx-pps:`` lines every ``--stats-period`` second;
* ``No commandline core given, start packet forwarding``, then the
  forwarding configuration, then the first ``Port statistics`` block once the
  forwarding core runs. The server's socket listens ~0.3 s before that, while
  the port is not yet configured. A client connects during ``Checking link
  statuses...`` (~0.1 s before forwarding starts); testpmd then **flushes its
  rx queues** when it starts forwarding, so every frame a master sends in that
  window is silently dropped (seen: a burst of 256 frames, all lost). So
  ``dpdk_peer`` returns only after the first ``Port statistics`` line.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DPDK_PEER = ROOT.parent / "shared" / "tools" / "dpdk-memif-peer"

#: First stats block: printed by testpmd's main loop once forwarding runs, i.e. after
#: start_packet_forwarding() has flushed the rx queues and launched the forwarding core.
READY_TEXT = "Port statistics"
CONNECTED_TEXT = "Connected"

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_counter = itertools.count()


def dpdk_peer_tool() -> Path:
    """Path of the dpdk-memif-peer wrapper ($MEMIF_DPDK_PEER overrides the default)."""
    override = os.environ.get("MEMIF_DPDK_PEER")
    return Path(override) if override else DEFAULT_DPDK_PEER


def dpdk_missing() -> str | None:
    """Why the DPDK peer cannot run here, or None when it can."""
    if shutil.which("dpdk-testpmd") is None:
        return ("dpdk-testpmd not installed (apt-get install -y dpdk-dev librte-net-memif23)")
    return None


def _testpmd_command(args: list[str]) -> list[str]:
    """The testpmd command line the wrapper would run, for when it is absent.

    Same flags as ``dpdk-memif-peer``: no hugepages, no PCI, a private
    --file-prefix, the net_memif vdev for the role and socket, and the
    forwarding options.
    """
    a = dict(zip(args[::2], args[1::2], strict=True))
    vdev = [f"net_memif{a['--id']}", f"role={a['--role']}", f"id={a['--id']}"]
    sock = a["--socket"]
    if sock.startswith("@"):
        vdev += [f"socket={sock[1:]}", "socket-abstract=yes"]
    else:
        vdev += [f"socket={sock}", "socket-abstract=no"]
    if a["--role"] == "client":
        vdev += [f"rsize={a['--ring-log2']}", f"bsize={a['--buffer-size']}"]
    if "--secret" in a:
        vdev.append(f"secret={a['--secret']}")
    cpu, burst = a["--cpu"], max(1, int(a["--burst"]))
    cmd = [
        str(shutil.which("dpdk-testpmd")), f"--lcores=0@{cpu},1@{cpu}", "--no-huge", "-m", "512",
        "--no-pci", f"--file-prefix={a['--prefix']}",
        f"--log-level=pmd.net.memif:{a['--log-level']}", "--vdev=" + ",".join(vdev), "--",
        f"--forward-mode={a['--forward']}", "--stats-period=1", "--total-num-mbufs=32768",
        f"--burst={burst}", f"--txpkts={a['--pkt-len']}",
        f"--rxq={a['--queues']}", f"--txq={a['--queues']}",
    ]
    if burst > 200:
        cmd.append("--mbcache=512")
    return cmd


def require_dpdk() -> None:
    """Skip the test when the DPDK peer is unavailable; fail if MEMIF_REQUIRE_PEERS=1."""
    why = dpdk_missing()
    if why is None:
        return
    if os.environ.get("MEMIF_REQUIRE_PEERS") == "1":
        pytest.fail(f"{why}; MEMIF_REQUIRE_PEERS=1 requires it")
    pytest.skip(why)


def _unix_socket_listed(socket_path: str) -> bool:
    """True when /proc/net/unix shows a listening socket bound to ``socket_path``.

    Abstract names appear there as "@name", filesystem ones as the path.
    """
    try:
        with open("/proc/net/unix") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return os.path.exists(socket_path)
    for line in lines:
        parts = line.split()
        # Num RefCount Protocol Flags Type St Inode Path; Flags 00010000 = __SO_ACCEPTCON.
        if len(parts) >= 8 and parts[7] == socket_path and int(parts[3], 16) & 0x10000:
            return True
    return False


def _dpdk_runtime_dir() -> Path:
    """Where DPDK keeps its per-prefix files: /var/run/dpdk as root, else under
    $XDG_RUNTIME_DIR or /tmp (the wrapper only cleans the root location)."""
    if os.geteuid() == 0:
        return Path("/var/run/dpdk")
    return Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp") / "dpdk"


def _default_cpu() -> int:
    """The highest CPU this process may run on (testpmd busy-polls on it)."""
    try:
        return max(os.sched_getaffinity(0))
    except (AttributeError, OSError, ValueError):
        return 0


def _peer_env() -> dict[str, str]:
    """The environment without preloaded sanitizer runtimes (make sanitize): DPDK is not ours."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    return env


class DpdkPeer:
    """A running dpdk-memif-peer (testpmd) and the lines it printed so far."""

    def __init__(self, role: str, socket: str, *, forward: str = "io", queues: int = 1,
                 ring_log2: int = 10, buffer_size: int = 2048, pkt_len: int = 64,
                 secret: str | None = None, duration: int = 60, id: int = 0,
                 burst: int = 32, cpu: int | None = None, log_level: str = "info",
                 prefix: str | None = None) -> None:
        if role not in ("server", "client"):
            raise ValueError("role must be 'server' or 'client'")
        self.role = role
        self.socket = socket
        self.prefix = prefix or f"memif_test_{os.getpid()}_{next(_counter)}"
        self.args = [
            "--role", role, "--socket", socket, "--forward", forward,
            "--queues", str(queues), "--ring-log2", str(ring_log2),
            "--buffer-size", str(buffer_size), "--pkt-len", str(pkt_len),
            "--duration", str(duration), "--id", str(id), "--burst", str(burst),
            "--cpu", str(_default_cpu() if cpu is None else cpu),
            "--prefix", self.prefix, "--log-level", log_level,
        ]
        if secret:
            self.args += ["--secret", secret]
        self.output: list[str] = []
        self.started_at = 0.0
        self.ready_after = 0.0
        self._cond = threading.Condition()
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    # -- process -----------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> None:
        """Start the wrapper in its own process group and wait until testpmd is ready."""
        tool = dpdk_peer_tool()
        if tool.is_file():
            cmd = [sys.executable, str(tool), *self.args]
        else:
            # Without the wrapper, run testpmd directly (it exits when stdin closes).
            cmd = _testpmd_command(self.args)
        self.started_at = time.monotonic()
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace", bufsize=1, start_new_session=True,
            env=_peer_env(),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            if self.role == "client":
                self.wait_for(CONNECTED_TEXT, timeout)
            self.wait_for(READY_TEXT, timeout)
            if self.role == "server":
                self._wait_listening(timeout)
        except BaseException:
            self.stop()
            raise
        self.ready_after = time.monotonic() - self.started_at

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            with self._cond:
                self.output.append(_ANSI.sub("", line.rstrip("\n")))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _wait_listening(self, timeout: float) -> None:
        name = self.socket  # "@name" is how /proc/net/unix lists abstract names too
        deadline = time.monotonic() + timeout
        while not _unix_socket_listed(name):
            if time.monotonic() > deadline:
                raise TimeoutError(f"testpmd not listening on {name}\n{self.tail()}")
            if not self.running:
                raise RuntimeError(f"testpmd exited\n{self.tail()}")
            time.sleep(0.02)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGINT (the wrapper forwards it to testpmd), then SIGKILL the whole group."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None or self._group_alive(proc.pid):
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()
        # What the wrapper removes itself (only under /var/run) unless it was killed.
        shutil.rmtree(_dpdk_runtime_dir() / self.prefix, ignore_errors=True)
        if self.role == "server" and not self.socket.startswith("@"):
            try:
                if Path(self.socket).is_socket():
                    os.unlink(self.socket)
            except OSError:
                pass
        return proc.returncode

    @staticmethod
    def _group_alive(pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    # -- output ------------------------------------------------------------------
    def wait_for(self, text: str, timeout: float = 10.0, start: int = 0) -> str:
        """Wait until a line containing ``text`` appears (from line index ``start``); return it.

        Raises TimeoutError (or RuntimeError if testpmd exited) with the output tail.
        """
        deadline = time.monotonic() + timeout
        index = start
        with self._cond:
            while True:
                while index < len(self.output):
                    if text in self.output[index]:
                        return self.output[index]
                    index += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{text!r} not seen within {timeout} s\n{self.tail()}")
                if self._proc is not None and self._proc.poll() is not None and not (
                        self._reader and self._reader.is_alive()):
                    raise RuntimeError(f"testpmd exited before {text!r}\n{self.tail()}")
                self._cond.wait(min(remaining, 0.1))

    def count(self, text: str) -> int:
        """How many lines so far contain ``text``."""
        with self._cond:
            return sum(text in line for line in self.output)

    def tail(self, lines: int = 40) -> str:
        with self._cond:
            return "\n".join(self.output[-lines:])

    def last_value(self, label: str) -> int | None:
        """The last number printed after ``label`` (e.g. "RX-packets:", "Rx-pps:")."""
        pattern = re.compile(re.escape(label) + r"\s*(\d+)")
        with self._cond:
            for line in reversed(self.output):
                m = pattern.search(line)
                if m:
                    return int(m.group(1))
        return None


@contextmanager
def dpdk_peer(role: str, socket: str, forward: str = "io", queues: int = 1,
              ring_log2: int = 10, buffer_size: int = 2048, pkt_len: int = 64,
              secret: str | None = None, duration: int = 60, id: int = 0,
              **kwargs: object) -> Iterator[DpdkPeer]:
    """Run testpmd as a memif ``role`` ("server" or "client") on ``socket`` ("@name" = abstract).

    Returns once it is ready: a server when its port forwards and its socket
    listens; a client once "Connected" appeared and forwarding runs (so the
    master must already be listening and answering, e.g. in a thread: a DPDK
    client never retries). Frames sent earlier would be flushed by testpmd.
    Extra keyword arguments (burst, cpu, log_level, prefix) go to :class:`DpdkPeer`.
    """
    require_dpdk()
    peer = DpdkPeer(role, socket, forward=forward, queues=queues, ring_log2=ring_log2,
                    buffer_size=buffer_size, pkt_len=pkt_len, secret=secret,
                    duration=duration, id=id, **kwargs)  # type: ignore[arg-type]
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()
