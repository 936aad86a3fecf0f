"""Hostile memif peers, resource accounting and the "our side" harness.

The hostile-peer suite puts one of our interfaces (the Pythonic API, one
:class:`memif_cffi.Context` per test) in front of a raw Python peer from
``tests/rawpeer.py`` that misbehaves on purpose. Everything runs in one
thread: the peer sends a message, then :meth:`HostileSlave.reply` /
:meth:`HostileMaster.reply` poll our Context until the answer (or EOF) is on
the peer's socket. That keeps every case deterministic and fast.

* :func:`usage` - open fds, mappings of memfd files and RSS of this process;
* :class:`HostileSlave`, :class:`HostileMaster` - rawpeer subclasses that
  step a handshake against our Context and can break it at any point, plus
  helpers to corrupt the shared memory once connected;
* :class:`OurMaster`, :class:`OurSlave` - our interface in a Context, with
  the checks every case ends with (:meth:`Side.recover`): our side is alive,
  recorded a reason, leaked nothing, and serves a well-behaved peer again.

The raw peers live in this process, so their fds and mappings count too:
every comparison is made after the peer is closed.
"""

from __future__ import annotations

import array
import contextlib
import gc
import os
import select
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rawpeer import (
    COOKIE,
    DESC_FLAG_NEXT,
    Descriptor,
    Direction,
    Message,
    MsgType,
    PeerDisconnectedError,
    RawMaster,
    RawSlave,
    Ring,
    encode_disconnect,
    send_message,
)

import memif_cffi as memif

# --------------------------------------------------------------------------
# Resources
# --------------------------------------------------------------------------


def open_fds() -> int:
    """Number of open file descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


def memfd_maps() -> int:
    """Lines of /proc/self/maps that map a memfd (shared-memory regions)."""
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
        return sum(1 for line in f if "memfd:" in line)


def rss_kb() -> int:
    """Resident set size of this process in KiB (VmRSS)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


@dataclass(frozen=True)
class Usage:
    """A snapshot of what a leak would make grow."""

    fds: int
    maps: int
    rss_kb: int

    def same_handles(self, other: Usage) -> bool:
        return (self.fds, self.maps) == (other.fds, other.maps)

    def no_more_handles_than(self, other: Usage) -> bool:
        return self.fds <= other.fds and self.maps <= other.maps

    def __str__(self) -> str:
        return f"{self.fds} fds, {self.maps} memfd mappings, {self.rss_kb} KiB RSS"


def usage() -> Usage:
    return Usage(open_fds(), memfd_maps(), rss_kb())


def assert_no_handle_growth(baseline: Usage, what: str) -> Usage:
    """No more fds or memfd mappings than ``baseline``.

    Fewer is fine: garbage of earlier tests (in other directories too) may be
    collected meanwhile. On growth, a garbage collection gets one chance to
    free what only unreachable Python objects still hold.
    """
    now = usage()
    if not now.no_more_handles_than(baseline):
        gc.collect()
        now = usage()
    assert now.no_more_handles_than(baseline), f"leak {what}: before {baseline}, after {now}"
    return now


def sanitized() -> bool:
    """Running under AddressSanitizer (make sanitize)? Its allocator keeps freed memory in
    quarantine, so RSS only grows there: RSS bounds are checked only without it."""
    return ("asan" in os.environ.get("LD_PRELOAD", "")
            or "sanitize" in os.environ.get("MEMIF_CFFI_CFLAGS", ""))


def assert_rss_growth_below(before: Usage, after: Usage, kib: int, what: str) -> None:
    if not sanitized():
        assert after.rss_kb - before.rss_kb < kib, f"RSS grew {what}: {before} -> {after}"


def child_env() -> dict[str, str]:
    """Environment for helper processes: they import the memif_cffi this process uses."""
    env = dict(os.environ)
    pkg_root = str(Path(memif.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
    return env


# --------------------------------------------------------------------------
# Polling our side
# --------------------------------------------------------------------------


def readable(sock: socket.socket | int | None) -> bool:
    """True when ``sock`` has data or EOF waiting (never blocks)."""
    if sock is None:
        return False
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(0))


def pump(ctx: memif.Context, until: Callable[[], bool], timeout: float = 2.0,
         what: str = "condition") -> None:
    """Poll ``ctx`` until ``until()`` holds; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        ctx.poll(0.002)


def collect(ctx: memif.Context, rxq: memif.RxQueue, want: int = 1, timeout: float = 2.0,
            burst: int = 256) -> list[bytes]:
    """Receive on ``rxq`` (polling ``ctx`` in between) until ``want`` packets arrived."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while True:
        got += rxq.recv_burst(burst)
        if len(got) >= want:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"received {len(got)} of {want} packets in {timeout} s")
        ctx.poll(0.002)


def settle(ctx: memif.Context, seconds: float = 0.02) -> None:
    """Poll ``ctx`` for ``seconds`` (lets our side handle whatever is pending)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ctx.poll(0.002)


#: What our side answered: a message (its fd, if any, already closed) or None for EOF.
Answer = Message | None


def disconnect_reason(answer: Answer) -> str | None:
    """The reason of a DISCONNECT answer, '' for EOF, None for any other message."""
    if answer is None:
        return ""
    if answer.type == MsgType.DISCONNECT:
        return str(answer["string"])
    return None


class _Stepping:
    """What both hostile peers share: replies read while our Context is polled."""

    ctx: memif.Context
    sock: socket.socket | None

    def reply(self, timeout: float = 2.0) -> Answer:
        """Poll our Context until a message (or EOF) is waiting for us, and read it."""
        pump(self.ctx, lambda: readable(self.sock), timeout, "an answer from our side")
        try:
            msg: Message = self.recv(0)  # type: ignore[attr-defined]
        except PeerDisconnectedError:
            return None
        except OSError:  # ECONNRESET: our side closed with data still unread
            return None
        msg.close_fd()
        return msg

    def rejection(self, timeout: float = 2.0) -> str:
        """Read our side's answer and require a rejection: its reason ('' for plain EOF).

        After a DISCONNECT the socket must then reach EOF (our side closed it).
        """
        answer = self.reply(timeout)
        reason = disconnect_reason(answer)
        if reason is None:
            assert answer is not None
            raise AssertionError(f"expected a rejection, got {answer.type_name}")
        if answer is not None:
            assert answer["code"] == 0
            tail = self.reply(timeout)
            assert tail is None, f"{answer.type_name} then {tail.type_name}, not EOF"
        return reason

    def send_fds(self, data: bytes, fds: list[int]) -> None:
        """One message carrying several fds (a protocol violation when more than one)."""
        sock = self.sock
        assert sock is not None
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        sock.sendmsg([data], anc, socket.MSG_NOSIGNAL)

    def send_empty(self) -> None:
        """A zero-length datagram (on SOCK_SEQPACKET it reads like EOF)."""
        sock = self.sock
        assert sock is not None
        sock.sendmsg([b""], [], socket.MSG_NOSIGNAL)


# --------------------------------------------------------------------------
# Hostile peers
# --------------------------------------------------------------------------


def publish(ring: Ring, counter: str, descs: list[Descriptor], signal: bool = True) -> None:
    """Write ``descs`` at the producer's counter (``"head"`` or ``"tail"``) and advance it."""
    start = getattr(ring, counter)
    for i, d in enumerate(descs):
        ring.set_desc(start + i, d)
    setattr(ring, counter, (start + len(descs)) & 0xFFFF)
    if signal:
        with contextlib.suppress(OSError):
            os.eventfd_write(ring.eventfd, 1)


class HostileSlave(_Stepping, RawSlave):
    """A raw slave stepped against our master's Context, message by message.

    Stages, each usable on its own: :meth:`start` (connect, HELLO, create the
    memory), :meth:`init`, :meth:`add_regions`, :meth:`add_rings`,
    :meth:`finish` (CONNECT/CONNECTED, then the M2S rings are refilled).
    Every stage requires our side's normal answer.
    """

    def __init__(self, path: str, ctx: memif.Context, **kw: Any) -> None:
        kw.setdefault("log2_ring_size", 4)
        kw.setdefault("buffer_size", 2048)
        kw.setdefault("timeout", 2.0)
        super().__init__(path, **kw)
        self.ctx = ctx

    def _ok(self, answer: Answer, want: MsgType) -> None:
        if answer is None:
            raise AssertionError(f"EOF instead of {want.name}")
        if answer.type != want:
            extra = f" ({answer['string']!r})" if answer.type == MsgType.DISCONNECT else ""
            raise AssertionError(f"{answer.type_name}{extra} instead of {want.name}")

    def start(self) -> None:
        """connect(), read HELLO, negotiate, create regions, rings and eventfds."""
        self.connect()
        hello = self.reply()
        self._ok(hello, MsgType.HELLO)
        assert hello is not None
        self.hello = hello
        self.negotiate(hello)
        self.create_memory()

    def init(self, **overrides: Any) -> None:
        self.send_init(**overrides)
        self._ok(self.reply(), MsgType.ACK)

    def add_regions(self) -> None:
        for i in range(len(self.regions)):
            self.send_add_region(i)
            self._ok(self.reply(), MsgType.ACK)

    def add_rings(self) -> None:
        for d, n in ((Direction.S2M, self.num_s2m), (Direction.M2S, self.num_m2s)):
            for i in range(n):
                self.send_add_ring(d, i)
                self._ok(self.reply(), MsgType.ACK)

    def finish(self) -> None:
        self.send_connect()
        answer = self.reply()
        self._ok(answer, MsgType.CONNECTED)
        self.on_connected()
        for qid in range(self.num_m2s):
            self.refill(qid)

    def handshake_stepped(self) -> None:
        """The whole well-behaved handshake."""
        self.start()
        self.init()
        self.add_regions()
        self.add_rings()
        self.finish()

    # Rings as seen from our side --------------------------------------------------
    @property
    def our_rx(self) -> Ring:
        """The ring our master receives on (S2M 0); this peer produces with ``head``."""
        return self.s2m[0]

    @property
    def our_tx(self) -> Ring:
        """The ring our master transmits on (M2S 0); this peer posts buffers with ``head``."""
        return self.m2s[0]

    producer_counter = "head"

    def rx_room(self) -> int:
        """Slots this peer may still publish on our rx ring (S2M 0)."""
        ring = self.s2m[0]
        return ring.size - ((ring.head - ring.tail) & 0xFFFF)

    def good_desc(self, slot: int) -> Descriptor:
        """A descriptor of this peer's own S2M buffer for ``slot``."""
        return Descriptor(0, 1, 64, self.buffer_offset(Direction.S2M, 0, slot))

    def data_size(self) -> int:
        """Size of the buffer region (region 1)."""
        return self.regions[1].size


class HostileMaster(_Stepping, RawMaster):
    """A raw master stepped against our slave's Context.

    :meth:`start` listens (done at creation), makes our slave connect and
    accepts; then :meth:`send_hello` and :meth:`serve` answer our slave's
    messages until CONNECTED is sent (or until a hook stops it).
    """

    def __init__(self, path: str, ctx: memif.Context, intf: memif.Interface, **kw: Any) -> None:
        kw.setdefault("timeout", 2.0)
        super().__init__(path, **kw)
        self.ctx = ctx
        self.intf = intf
        self.listen()

    def start(self) -> None:
        """Make our slave connect now, and accept it."""
        self.intf.connect()
        pump(self.ctx, lambda: readable(self.listener), 2.0, "our slave to connect")
        self.accept(0)

    def serve(self, stop_before: MsgType | None = None) -> Message | None:
        """Answer our slave like a good master until CONNECTED is sent.

        With ``stop_before``: return the first message of that type unanswered
        (its fd, if any, still open) instead.
        """
        while True:
            msg = self.recv_from_ours()
            if stop_before is not None and msg.type == stop_before:
                return msg
            if self.handle(msg):
                return None

    def recv_from_ours(self) -> Message:
        pump(self.ctx, lambda: readable(self.sock), 2.0, "a message from our slave")
        return self.recv(0)

    def handshake_stepped(self) -> None:
        self.start()
        self.send_hello()
        self.serve()
        pump(self.ctx, lambda: self.intf.connected, 2.0, "our slave to connect")

    @property
    def our_rx(self) -> Ring:
        """The ring our slave receives on (M2S 0); this peer produces with ``tail``."""
        return self.m2s[0]

    @property
    def our_tx(self) -> Ring:
        """The ring our slave transmits on (S2M 0); this peer releases slots with ``tail``."""
        return self.s2m[0]

    producer_counter = "tail"

    def rx_room(self) -> int:
        """Buffers our slave has posted on M2S 0 that this peer has not filled yet."""
        ring = self.m2s[0]
        return (ring.head - ring.tail) & 0xFFFF

    def good_desc(self, slot: int) -> Descriptor:
        """The buffer our slave posted in ``slot`` of M2S 0, with a 64-byte length."""
        posted = self.m2s[0].get_desc(slot)
        return Descriptor(0, posted.region, 64, posted.offset)

    def data_size(self) -> int:
        return self.regions[1].size


# --------------------------------------------------------------------------
# Our side
# --------------------------------------------------------------------------

RING_SIZE = 16  # small rings: wrapping and "more than N" are cheap to reach


@dataclass
class Events:
    connects: int = 0
    disconnects: int = 0


class Side:
    """Our interface in its own Context, facing one raw peer at a time."""

    role: memif.Role
    peer_class: type[HostileSlave] | type[HostileMaster]

    def __init__(self, tmp: Path, abstract: bool = False) -> None:
        self.path = f"@hostile-{os.getpid()}-{id(self)}-{time.monotonic_ns()}" if abstract \
            else str(tmp / "hostile.sock")
        self.events = Events()
        self.ctx = memif.Context("ours")
        self.peers: list[HostileSlave | HostileMaster] = []
        self.intf = self._create()
        self.baseline = usage()

    def _on_connect(self, intf: memif.Interface) -> None:
        self.events.connects += 1

    def _on_disconnect(self, intf: memif.Interface) -> None:
        self.events.disconnects += 1

    def _create(self) -> memif.Interface:
        raise NotImplementedError

    def peer(self, **kw: Any) -> Any:
        raise NotImplementedError

    def connect_peer(self, **kw: Any) -> Any:
        raise NotImplementedError

    @property
    def error(self) -> str:
        return self.intf.details.error

    def close_peers(self, reason: str | None = None) -> None:
        for p in self.peers:
            p.close(reason)
        self.peers = []

    def wait_disconnected(self, timeout: float = 2.0) -> None:
        pump(self.ctx, lambda: not self.intf.connected, timeout, "our side to disconnect")

    def roundtrip(self, peer: Any, frame: bytes = b"ping") -> None:
        """One packet each way between our interface and a connected raw peer."""
        assert peer.send(0, frame), "the peer could not send"
        assert collect(self.ctx, self.intf.rx[0]) == [frame]
        back = frame[::-1] + b"!"
        assert self.intf.tx[0].send(back)
        assert peer.recv_until(0, 1, timeout=2.0) == [back]

    def recover(self) -> None:
        """The end of every case: our side is alive, clean, and serves a good peer.

        1. The hostile peer is gone: our side must be disconnected, holding
           exactly the fds and memfd mappings it held before the case.
        2. A well-behaved peer connects and one packet goes each way.
        3. It leaves with DISCONNECT: our side records it, and is back to
           the same fds and mappings again.
        """
        self.close_peers()
        self.wait_disconnected()
        settle(self.ctx, 0.005)
        assert_no_handle_growth(self.baseline, "after the hostile peer")
        good = self.connect_peer()
        self.roundtrip(good, b"good peer after a hostile one")
        good.close("good bye")
        self.peers.remove(good)
        self.wait_disconnected()
        assert self.error == "good bye"
        settle(self.ctx, 0.005)
        assert_no_handle_growth(self.baseline, "after the good peer")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.close_peers()
        self.ctx.close()


class OurMaster(Side):
    """Our master interface; the peers are :class:`HostileSlave`."""

    role = memif.Role.MASTER

    def _create(self) -> memif.Interface:
        return self.ctx.interface(
            self.ctx.socket(self.path), role=memif.Role.MASTER, name="our-master",
            ring_size=RING_SIZE, on_connect=self._on_connect, on_disconnect=self._on_disconnect)

    def peer(self, **kw: Any) -> HostileSlave:
        p = HostileSlave(self.path, self.ctx, **kw)
        self.peers.append(p)
        return p

    def connect_peer(self, **kw: Any) -> HostileSlave:
        p = self.peer(**kw)
        p.handshake_stepped()
        pump(self.ctx, lambda: self.intf.connected, 2.0, "our master to connect")
        return p


class OurSlave(Side):
    """Our slave interface (automatic reconnection off); the peers are :class:`HostileMaster`."""

    role = memif.Role.SLAVE
    #: the size of the buffers our slave creates (a subclass may change it)
    buffer_size = 2048

    def _create(self) -> memif.Interface:
        self.ctx.set_reconnect_interval(0)
        intf = self.ctx.interface(
            self.ctx.socket(self.path), role=memif.Role.SLAVE, name="our-slave",
            ring_size=RING_SIZE, buffer_size=self.buffer_size, on_connect=self._on_connect,
            on_disconnect=self._on_disconnect)
        settle(self.ctx, 0.001)
        return intf

    def peer(self, **kw: Any) -> HostileMaster:
        p = HostileMaster(self.path, self.ctx, self.intf, **kw)
        self.peers.append(p)
        return p

    def connect_peer(self, **kw: Any) -> HostileMaster:
        p = self.peer(**kw)
        p.handshake_stepped()
        return p


def make_side(role: str, tmp: Path) -> Side:
    return OurMaster(tmp) if role == "master" else OurSlave(tmp)


@contextlib.contextmanager
def side_for(role: str, tmp: Path) -> Iterator[Side]:
    s = make_side(role, tmp)
    try:
        yield s
    finally:
        s.close()


__all__ = [
    "COOKIE",
    "DESC_FLAG_NEXT",
    "Answer",
    "Descriptor",
    "Direction",
    "Events",
    "HostileMaster",
    "HostileSlave",
    "MsgType",
    "OurMaster",
    "OurSlave",
    "Side",
    "Usage",
    "assert_no_handle_growth",
    "assert_rss_growth_below",
    "child_env",
    "collect",
    "disconnect_reason",
    "encode_disconnect",
    "make_side",
    "memfd_maps",
    "open_fds",
    "publish",
    "pump",
    "readable",
    "rss_kb",
    "sanitized",
    "send_message",
    "settle",
    "side_for",
    "usage",
]
