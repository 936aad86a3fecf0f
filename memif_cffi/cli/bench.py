"""``memif bench``: throughput; ``memif bench-peer``: the peer process it starts.

Without ``--external-peer`` bench starts ``memif bench-peer`` on a private
socket and both ends count (:func:`cmd_bench` drives it through
:class:`_PeerProcess`); with it, only our end counts.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import queue
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from memif_cffi.batch import MAX_PACKET
from memif_cffi.cli.common import (
    POLL_STEP,
    CliError,
    Commands,
    Session,
    add_command,
    add_interface_options,
    check_interrupt,
    float_type,
    int_type,
    queue_text,
    say,
)
from memif_cffi.cli.pump import Progress, Pump

__all__ = ["BenchResult", "cmd_bench", "cmd_bench_peer", "register"]


def register(commands: Commands) -> None:
    """Add the ``bench`` subcommand and the internal ``bench-peer`` (not in the help)."""
    p = add_command(
        commands, "bench", "measure throughput against a spawned or a running peer",
        "Measure throughput with the bulk API. Without --external-peer a peer process is "
        "started on a private socket (--socket is ignored) and both ends are counted, so "
        "the loss is exact. With --external-peer, connect to a peer already running on "
        "--socket: another 'memif bench --sink' or '--flood', VPP, DPDK testpmd "
        "(--forward rxonly / txonly). A full tx ring makes the sender wait: that is "
        "counted as 'ring full', not as loss.")
    add_interface_options(p, "bench", "seconds to wait for the connection "
                                      "(default 10; with an external peer: wait)")
    p.add_argument("--direction", choices=("tx", "rx"), default="tx",
                   help="tx: we send, the peer receives; rx: the peer sends, we receive "
                        "(default tx)")
    peer = p.add_mutually_exclusive_group()
    peer.add_argument("--external-peer", action="store_true",
                      help="use the peer running on --socket instead of starting one")
    peer.add_argument("--sink", action="store_true",
                      help="receive and count what a running peer sends (the same as "
                           "--direction rx with an external peer)")
    peer.add_argument("--flood", action="store_true",
                      help="send to a running peer (the same as --direction tx with an "
                           "external peer)")
    p.add_argument("--size", type=int_type(1, MAX_PACKET, "the frame size"), default=64,
                   metavar="BYTES", help="frame size in bytes (default 64)")
    p.add_argument("--burst", type=int_type(1, 4096, "the burst"), default=256, metavar="N",
                   help="frames per call (default 256)")
    p.add_argument("--duration", type=float_type(0, "the duration"), default=5.0,
                   metavar="SECONDS",
                   help="seconds to measure (default 5). Receiving from an external peer, "
                        "the clock starts at its first frame; 0 there means until Ctrl+C "
                        "or the peer leaves")
    p.add_argument("--progress", action="store_true",
                   help="print a live rate line on stderr even when it is not a terminal")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=cmd_bench)

    p = commands.add_parser("bench-peer",
                            description="internal: the peer process of 'memif bench'")
    add_interface_options(p, "bench-peer", "seconds to wait for the connection")
    p.add_argument("--action", choices=("sink", "flood"), required=True)
    p.add_argument("--size", type=int_type(1, MAX_PACKET, "the frame size"), default=64)
    p.add_argument("--burst", type=int_type(1, 4096, "the burst"), default=256)
    p.set_defaults(func=cmd_bench_peer)


@dataclasses.dataclass
class BenchResult:
    """What ``memif bench`` measured (``--json`` prints it with the rates added)."""

    direction: str
    peer: str
    mode: str
    size: int
    burst: int
    queues: int
    ring_size: int
    buffer_size: int
    duration: float
    stopped: str
    sent: int | None
    sent_bytes: int | None
    received: int | None
    received_bytes: int | None
    dropped: int | None
    ring_full: int | None

    def rate(self, packets: int | None) -> float | None:
        """Packets per second over :attr:`duration` (None when not counted)."""
        if packets is None:
            return None
        return packets / self.duration if self.duration > 0 else 0.0

    def gbps(self, nbytes: int | None) -> float | None:
        """Gbit/s over :attr:`duration` (None when not counted)."""
        if nbytes is None:
            return None
        return nbytes * 8 / self.duration / 1e9 if self.duration > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        """The fields and the rates, for ``--json``."""
        out = dataclasses.asdict(self)
        out["sent_pps"] = self.rate(self.sent)
        out["sent_gbps"] = self.gbps(self.sent_bytes)
        out["received_pps"] = self.rate(self.received)
        out["received_gbps"] = self.gbps(self.received_bytes)
        main_count, main_bytes = ((self.received, self.received_bytes)
                                  if self.received is not None else (self.sent, self.sent_bytes))
        out["pps"] = self.rate(main_count)
        out["gbps"] = self.gbps(main_bytes)
        return out

    def table(self) -> list[str]:
        """The result as the lines of a table."""
        queues = f"{self.queues} queue{'s' if self.queues != 1 else ''}"
        lines = [
            f"memif bench: {self.direction}, {self.size}-byte frames, burst {self.burst}, "
            f"{queues}, ring {self.ring_size}, buffers {self.buffer_size} B, {self.mode}",
            f"peer: {self.peer}",
            "",
            f"{'':<10} {'packets':>15} {'pps':>15} {'Gbit/s':>9}",
        ]

        def row(name: str, packets: int | None, nbytes: int | None) -> str:
            if packets is None:
                return f"{name:<10} {'n/a':>15}"
            rate = self.rate(packets) or 0.0
            gbps = self.gbps(nbytes) or 0.0
            return f"{name:<10} {packets:>15,} {rate:>15,.0f} {gbps:>9.3f}"

        lines.append(row("sent", self.sent, self.sent_bytes))
        lines.append(row("received", self.received, self.received_bytes))
        dropped = "n/a" if self.dropped is None else f"{self.dropped:,}"
        lines.append(f"{'dropped':<10} {dropped:>15}")
        if self.ring_full is not None:
            lines.append(f"{'ring full':<10} {self.ring_full:>15,}   "
                         "(sender retries on a full ring; not drops)")
        lines.append(f"{'duration':<10} {self.duration:>15.3f} s"
                     + ("" if self.stopped == "time" else f"   ({self.stopped})"))
        return lines


class _PeerProcess:
    """The ``memif bench-peer`` child: commands on its stdin, reports on its stdout."""

    def __init__(self, argv: list[str]) -> None:
        env = dict(os.environ)
        # The directory holding the memif_cffi package, so that the child imports this copy.
        package_root = os.path.dirname(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "memif_cffi", "bench-peer", *argv],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, start_new_session=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.errors: list[str | None] = []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines.put),
                         daemon=True).start()
        self._stderr = threading.Thread(target=self._read,
                                        args=(self.proc.stderr, self.errors.append), daemon=True)
        self._stderr.start()

    @staticmethod
    def _read(stream: IO[bytes] | None, put: Callable[[Any], None]) -> None:
        if stream is None:
            return
        for raw in stream:
            put(raw.decode("utf-8", "replace").rstrip("\n"))
        put(None)

    def failure(self) -> str:
        """Why the peer failed: its last stderr line, or its exit status."""
        self._stderr.join(1.0)
        messages = [e for e in self.errors if e]
        detail = messages[-1] if messages else f"exit status {self.proc.poll()}"
        return f"the peer process failed: {detail}"

    def check_alive(self) -> None:
        """CliError when the peer has exited."""
        if self.proc.poll() is not None:
            raise CliError(self.failure())

    def expect(self, timeout: float) -> str:
        """The next line from the peer (CliError when it ends or stays silent)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=min(POLL_STEP, max(deadline - time.monotonic(), 0)))
                break
            except queue.Empty:
                check_interrupt()
                if time.monotonic() >= deadline:
                    raise CliError(
                        f"the peer process did not answer within {timeout:g} s") from None
        if line is None:
            self.proc.wait(1.0)
            raise CliError(self.failure())
        return line

    def send(self, command: str) -> None:
        """Write one command line to the peer."""
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.write(command.encode() + b"\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                raise CliError(self.failure()) from None

    def finish(self) -> None:
        """Let the peer exit (closes its stdin) and wait for it."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        try:
            self.proc.wait(5.0)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """End the peer if it still runs and close its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _bench_common(opts: argparse.Namespace) -> dict[str, Any]:
    return {"mode": opts.mode, "size": opts.size, "burst": opts.burst, "queues": opts.queues,
            "ring_size": opts.ring_size, "buffer_size": opts.buffer_size}


def _bench_spawned(opts: argparse.Namespace, progress: Progress) -> BenchResult:
    """Both ends are ours: a peer process on a private socket."""
    timeout = 10.0 if opts.timeout is None else opts.timeout
    peer_role = "master" if opts.role == "slave" else "slave"
    action = "flood" if opts.direction == "tx" else "sink"
    peer_action = "sink" if action == "flood" else "flood"
    with tempfile.TemporaryDirectory(prefix="memif-bench-") as tmp:
        path = os.path.join(tmp, "bench.sock")
        argv = ["--socket", path, "--role", peer_role, "--id", str(opts.id), "--mode", opts.mode,
                "--queues", str(opts.queues), "--ring-size", str(opts.ring_size),
                "--buffer-size", str(opts.buffer_size), "--size", str(opts.size),
                "--burst", str(opts.burst), "--action", peer_action,
                "--timeout", str(timeout)]
        if opts.secret is not None:
            argv += ["--secret", opts.secret]
        session: Session | None = None
        peer: _PeerProcess | None = None
        try:
            if peer_role == "slave":
                session = Session(opts, "bench", socket_path=path)
            peer = _PeerProcess(argv)
            if peer.expect(timeout) != "ready":
                raise CliError("the peer process said something unexpected")
            if session is None:
                session = Session(opts, "bench", socket_path=path)
            session.wait_connected(timeout, check=peer.check_alive)
            pump = Pump(session, action, opts.size, opts.burst)
            stopped = pump.run(opts.duration, progress)
            if stopped == "peer disconnected":
                raise CliError(peer.failure() if peer.proc.poll() is not None
                               else "the peer process disconnected")
            window = pump.elapsed
            peer.send("stop")
            try:
                report = json.loads(peer.expect(timeout))
            except ValueError:
                raise CliError("the peer process sent a malformed report") from None
            if action == "sink":
                pump.drain()
            if action == "flood":
                sent, sent_bytes = pump.packets, pump.bytes
                received, received_bytes = int(report["packets"]), int(report["bytes"])
                ring_full = pump.ring_full
            else:
                sent, sent_bytes = int(report["packets"]), int(report["bytes"])
                received, received_bytes = pump.packets, pump.bytes
                ring_full = int(report["ring_full"])
            peer.finish()
        finally:
            if session is not None:
                session.close()
            if peer is not None:
                peer.kill()
    return BenchResult(
        direction=opts.direction, peer=f"spawned process ({peer_role}) on a private socket",
        duration=window, stopped=stopped, sent=sent, sent_bytes=sent_bytes, received=received,
        received_bytes=received_bytes, dropped=sent - received, ring_full=ring_full,
        **_bench_common(opts))


def _bench_external(opts: argparse.Namespace, progress: Progress) -> BenchResult:
    """Only our end is ours: the peer runs on --socket."""
    action = "flood" if opts.direction == "tx" else "sink"
    with Session(opts, "bench") as session:
        say(session.describe(), sys.stderr)
        session.wait_connected(opts.timeout)
        peer = f"external, {session.peer_text()} on {session.path}"
        say(f"connected: {session.peer_text()}, {queue_text(session.intf)}; "
            + ("sending" if action == "flood" else "receiving")
            + (f" for {opts.duration:g} s" if opts.duration else " until Ctrl+C"),
            sys.stderr)
        pump = Pump(session, action, opts.size, opts.burst)
        stopped = pump.run(opts.duration, progress, wait_first=action == "sink")
        if action == "flood":
            return BenchResult(
                direction=opts.direction, peer=peer, duration=pump.elapsed, stopped=stopped,
                sent=pump.packets, sent_bytes=pump.bytes, received=None, received_bytes=None,
                dropped=None, ring_full=pump.ring_full, **_bench_common(opts))
        return BenchResult(
            direction=opts.direction, peer=peer, duration=pump.elapsed, stopped=stopped,
            sent=None, sent_bytes=None, received=pump.packets, received_bytes=pump.bytes,
            dropped=pump.drops, ring_full=None, **_bench_common(opts))


def cmd_bench(opts: argparse.Namespace) -> int:
    """``memif bench``: throughput."""
    if opts.sink or opts.flood:
        opts.external_peer = True
        opts.direction = "rx" if opts.sink else "tx"
    if not opts.external_peer and opts.duration <= 0:
        raise CliError("--duration must be > 0 with a spawned peer", status=2)
    label = "sending" if opts.direction == "tx" else "receiving"
    progress = Progress(opts.progress or sys.stderr.isatty(), label)
    if opts.external_peer:
        result = _bench_external(opts, progress)
    else:
        result = _bench_spawned(opts, progress)
    if opts.json:
        say(json.dumps(result.as_json()))
    else:
        for line in result.table():
            say(line)
    return 0


def _stdin_says_stop() -> bool:
    """True when the parent wrote a command or closed our stdin."""
    ready, _, _ = select.select([0], [], [], 0)
    if not ready:
        return False
    os.read(0, 4096)
    return True


def cmd_bench_peer(opts: argparse.Namespace) -> int:
    """``memif bench-peer`` (internal): the far end of ``memif bench``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with Session(opts, "bench-peer") as session:
        say("ready")
        session.wait_connected(10.0 if opts.timeout is None else opts.timeout)
        pump = Pump(session, opts.action, opts.size, opts.burst)
        pump.run(0, stop=_stdin_says_stop)
        if opts.action == "sink":
            pump.drain()
        say(json.dumps({"packets": pump.packets, "bytes": pump.bytes,
                        "ring_full": pump.ring_full, "drops": pump.drops}))
        # Stay connected until the parent has drained what we sent.
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            ready, _, _ = select.select([0], [], [], 0.05)
            if ready and not os.read(0, 4096):
                break
            session.ctx.poll(0)
    return 0
