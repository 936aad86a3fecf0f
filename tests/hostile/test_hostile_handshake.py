"""Malformed control messages from a raw peer, against our master and our slave.

Protocol spec §3 (transport), §4 (messages), §9 (handshake checks and state
machines) and §10 (disconnect). For every case our side must answer as the
spec says (a DISCONNECT with the documented reason and a close, or just a
close), record the reason in ``details.error`` once the connection belongs to
the interface, call ``on_disconnect`` only for a connection that had
completed, and then pass :meth:`Side.recover`: no fd or mapping left behind,
and a well-behaved peer connects and exchanges a packet.

The first group of cases applies to both roles and to three stages of a
connection (the peer's first message, the middle of the handshake, after
connect). The other groups are specific to one role.
"""

from __future__ import annotations

import mmap
import os
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hostile import (
    Direction,
    HostileMaster,
    HostileSlave,
    MsgType,
    OurMaster,
    OurSlave,
    Side,
    open_fds,
    pump,
    usage,
)
from rawpeer import (
    Message,
    Region,
    encode,
    encode_ack,
    encode_add_region,
    encode_add_ring,
    encode_connect,
    encode_connected,
    encode_disconnect,
    encode_hello,
    encode_init,
    encode_raw,
    ring_stride,
)

import memif_cffi as memif

MALFORMED = "malformed message"
UNKNOWN = "unknown message type"
UNEXPECTED = "unexpected message"
EOF = "connection closed by peer"

Peer = HostileSlave | HostileMaster


def eventfd() -> int:
    return os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)


def send_with_temp_fd(peer: Peer, data: bytes, make: Callable[[], int] = eventfd) -> None:
    """Send ``data`` with a fresh fd attached, and close our copy at once."""
    fd = make()
    try:
        peer.send_raw(data, fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------
# Both roles, three stages
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    send: Callable[[Peer], None]
    #: the DISCONNECT reason our side answers with; '' = it closes without one
    #: (a tuple: any of these)
    answer: str | tuple[str, ...]
    #: what our interface records once the connection is its own
    recorded: str


#: A DISCONNECT is used as the payload of the wrong-size messages: if our side
#: ever accepted one, it would record "bait" instead of "malformed message".
_BAIT = encode_disconnect("bait")


def _flood(peer: Peer) -> None:
    sent = 0
    for _ in range(200):
        try:
            peer.send_raw(encode_raw(0x4242))
        except BlockingIOError:  # the kernel's queue limit for one socket
            break
        sent += 1
    assert sent >= 2


def _many_fds(n: int) -> Callable[[Peer], None]:
    def send(peer: Peer) -> None:
        fds = [eventfd() for _ in range(n)]
        try:
            peer.send_fds(_BAIT, fds)
        finally:
            for fd in fds:
                os.close(fd)
    return send


def _close(peer: Peer) -> None:
    assert peer.sock is not None
    peer.sock.shutdown(socket.SHUT_WR)


GENERIC: dict[str, Violation] = {
    "size-2": Violation(lambda p: p.send_raw(_BAIT[:2]), MALFORMED, MALFORMED),
    "size-127": Violation(lambda p: p.send_raw(_BAIT[:127]), MALFORMED, MALFORMED),
    "size-129": Violation(lambda p: p.send_raw(_BAIT + b"\0"), MALFORMED, MALFORMED),
    "size-4096": Violation(lambda p: p.send_raw(_BAIT.ljust(4096, b"\0")), MALFORMED, MALFORMED),
    "size-0": Violation(lambda p: p.send_empty(), "", EOF),
    "type-0-none": Violation(lambda p: p.send_raw(encode_raw(0)), UNKNOWN, UNKNOWN),
    "type-9": Violation(lambda p: p.send_raw(encode_raw(9)), UNKNOWN, UNKNOWN),
    "type-0xffff": Violation(lambda p: p.send_raw(encode_raw(0xFFFF)), UNKNOWN, UNKNOWN),
    # Our side closes with the rest unread: the kernel may then report a reset to
    # the peer instead of delivering the DISCONNECT that was sent first.
    "flood-200-unknown": Violation(_flood, (UNKNOWN, ""), UNKNOWN),
    "two-fds": Violation(_many_fds(2), MALFORMED, MALFORMED),
    "six-fds": Violation(_many_fds(6), MALFORMED, MALFORMED),
    "disconnect": Violation(lambda p: p.send_raw(encode_disconnect("hostile bye", 7)), "",
                            "hostile bye"),
    "disconnect-96-bytes-no-nul": Violation(
        lambda p: p.send_raw(encode_disconnect("z" * 96)), "", "z" * 96),
    "disconnect-with-fd": Violation(
        lambda p: send_with_temp_fd(p, encode_disconnect("fd attached")), "", "fd attached"),
    "disconnect-empty-reason": Violation(lambda p: p.send_raw(encode_disconnect("")), "",
                                         "peer disconnected"),
    "eof": Violation(_close, "", EOF),
}

STAGES = ["first", "mid", "connected"]


def reach(side: Side, stage: str) -> Peer:
    """A hostile peer that behaved until ``stage``.

    first: connected, nothing sent yet (our master has sent HELLO; our slave waits
    for it). mid: our side is in the middle of the handshake, holding mapped
    regions (master) or waiting for an ACK (slave). connected: handshake done.
    """
    peer: Peer = side.peer()
    if stage == "connected":
        peer.handshake_stepped()
        pump(side.ctx, lambda: side.intf.connected)
        return peer
    if isinstance(peer, HostileSlave):
        peer.start()
        if stage == "mid":
            peer.init()
            peer.add_regions()
            peer.send_add_ring(Direction.S2M, 0)
            assert peer.reply() is not None
    else:
        peer.start()
        if stage == "mid":
            peer.send_hello()
            ring_msg = peer.serve(stop_before=MsgType.ADD_RING)
            assert ring_msg is not None
            ring_msg.close_fd()
    return peer


def bound(side: Side, stage: str) -> bool:
    """Does the connection belong to our interface at ``stage``? (A master binds a
    connection to an interface only once INIT passed its checks, spec §9.4.)"""
    return not (isinstance(side, OurMaster) and stage == "first")


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("case", list(GENERIC))
def test_generic_violation(side: Side, case: str, stage: str) -> None:
    v = GENERIC[case]
    before_error = side.error
    peer = reach(side, stage)
    v.send(peer)
    answers = v.answer if isinstance(v.answer, tuple) else (v.answer,)
    assert peer.rejection() in answers
    if bound(side, stage):
        pump(side.ctx, lambda: side.error == v.recorded, what=f"error {v.recorded!r}")
    else:
        # A connection that never named an interface leaves it untouched.
        assert side.error == before_error
    assert not side.intf.connected
    expected = 1 if stage == "connected" else 0
    assert side.events.connects == side.events.disconnects == expected
    side.recover()


# --------------------------------------------------------------------------
# Our master, hostile slaves
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    steps: Callable[[Any], Any]
    #: reason of our DISCONNECT answer
    answer: str
    #: details.error afterwards ("" = untouched: the connection was never bound)
    recorded: str = ""
    #: the connection had completed (on_disconnect must run once)
    was_connected: bool = False


def _before_init(send: Callable[[HostileSlave], None]) -> Callable[[HostileSlave], None]:
    def steps(p: HostileSlave) -> None:
        p.start()
        send(p)
    return steps


def _after_init(send: Callable[[HostileSlave], None]) -> Callable[[HostileSlave], None]:
    def steps(p: HostileSlave) -> None:
        p.start()
        p.init()
        send(p)
    return steps


def _after_regions(send: Callable[[HostileSlave], None]) -> Callable[[HostileSlave], None]:
    def steps(p: HostileSlave) -> None:
        p.start()
        p.init()
        p.add_regions()
        send(p)
    return steps


def _after_rings(send: Callable[[HostileSlave], None]) -> Callable[[HostileSlave], None]:
    def steps(p: HostileSlave) -> None:
        p.start()
        p.init()
        p.add_regions()
        p.add_rings()
        send(p)
    return steps


def _after_connect(send: Callable[[HostileSlave], None]) -> Callable[[HostileSlave], None]:
    def steps(p: HostileSlave) -> None:
        p.handshake_stepped()
        send(p)
    return steps


def _region_fd(make: Callable[[HostileSlave], int], size: int | None = None
               ) -> Callable[[HostileSlave], None]:
    """ADD_REGION 0 carrying the fd ``make`` returns (closed after sending)."""
    def send(p: HostileSlave) -> None:
        fd = make(p)
        try:
            p.send_raw(encode_add_region(0, p.regions[0].size if size is None else size), fd)
        finally:
            os.close(fd)
    return send


def _socket_fd(p: HostileSlave) -> int:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    b.close()
    return a.detach()


def _pipe_fd(p: HostileSlave) -> int:
    r, w = os.pipe()
    os.close(w)
    return r


def _devnull_fd(p: HostileSlave) -> int:
    return os.open(os.devnull, os.O_RDWR)


def _directory_fd(p: HostileSlave) -> int:
    return os.open(tempfile.gettempdir(), os.O_RDONLY | os.O_DIRECTORY)


def _readonly_memfd(p: HostileSlave) -> int:
    return os.open(f"/proc/self/fd/{p.regions[0].fd}", os.O_RDONLY)


def _ring(direction: Direction = Direction.S2M, index: int = 0, with_fd: bool = True,
          **fields: Any) -> Callable[[HostileSlave], None]:
    def send(p: HostileSlave) -> None:
        p.send_add_ring(direction, index, with_fd=with_fd, **fields)
    return send


def _ring_index(direction: Direction, index: int) -> Callable[[HostileSlave], None]:
    """ADD_RING naming ring ``index`` (the peer's ring 0 of that direction otherwise)."""
    def send(p: HostileSlave) -> None:
        ring = (p.s2m if direction == Direction.S2M else p.m2s)[0]
        p.send_raw(encode_add_ring(direction, index, offset=ring.offset,
                                   log2_ring_size=ring.log2_size), ring.eventfd)
    return send


def _region_index(region: int, index: int) -> Callable[[HostileSlave], None]:
    """ADD_REGION of the peer's region ``region`` (its fd and size) claiming ``index``."""
    def send(p: HostileSlave) -> None:
        r = p.regions[region]
        p.send_raw(encode_add_region(index, r.size), r.fd)
    return send


def _ring_then_connect(direction: Direction) -> Callable[[HostileSlave], None]:
    """One ring of ``direction`` only, then CONNECT."""
    def send(p: HostileSlave) -> None:
        _ring(direction)(p)
        assert p.reply() is not None
        p.send_connect()
    return send


def _ring_twice(p: HostileSlave) -> None:
    _ring()(p)
    assert p.reply() is not None
    _ring()(p)


def _two_regions_then(send: Callable[[HostileSlave], None]) -> Callable[[HostileSlave], None]:
    def steps(p: HostileSlave) -> None:
        p.send_add_region(0)
        assert p.reply() is not None
        send(p)
    return steps


def _bad_cookie(direction: Direction) -> Callable[[HostileSlave], None]:
    def send(p: HostileSlave) -> None:
        (p.s2m if direction == Direction.S2M else p.m2s)[0].cookie = 0x3E31F21
        p.send_connect()
    return send


def _add_regions_up_to(p: HostileSlave, last: int) -> None:
    """After regions 0 and 1: regions 2..``last`` of one page each, every one ACKed. The
    peer keeps only its mappings (it closes its fds) to stay far from RLIMIT_NOFILE."""
    for i in range(2, last + 1):
        r = Region.create(i, 4096)
        p.regions.append(r)
        p.send_add_region(i)
        os.close(r.fd)
        r.fd = -1
        answer = p.reply()
        assert answer is not None and answer.type == MsgType.ACK, (i, answer)


def _region_257(p: HostileSlave) -> None:
    _add_regions_up_to(p, 255)
    _region_index(1, 256)(p)


_U32 = 0xFFFFFFFF

MASTER_CASES: dict[str, Case] = {
    # Before INIT: the connection is not bound to any interface yet.
    "hello-to-master": Case(_before_init(lambda p: p.send_raw(encode_hello("evil"))),
                            UNEXPECTED),
    "ack-to-master": Case(_before_init(lambda p: p.send_raw(encode_ack())), UNEXPECTED),
    "connect-before-init": Case(_before_init(lambda p: p.send_raw(encode_connect("x"))),
                                UNEXPECTED),
    "connected-before-init": Case(_before_init(lambda p: p.send_raw(encode_connected("x"))),
                                  UNEXPECTED),
    "region-before-init": Case(_before_init(lambda p: p.send_add_region(0)), UNEXPECTED),
    "ring-before-init": Case(_before_init(_ring()), UNEXPECTED),
    "init-version-0x0100": Case(_before_init(lambda p: p.send_init(version=0x0100)),
                                "incompatible version"),
    "init-version-0x0201": Case(_before_init(lambda p: p.send_init(version=0x0201)),
                                "incompatible version"),
    "init-version-0xffff": Case(_before_init(lambda p: p.send_init(version=0xFFFF)),
                                "incompatible version"),
    "init-unknown-id": Case(_before_init(lambda p: p.send_init(id=99)),
                            "unmatched interface id"),
    "init-id-0xffffffff": Case(_before_init(lambda p: p.send_init(id=_U32)),
                               "unmatched interface id"),
    "init-mode-ip": Case(_before_init(lambda p: p.send_init(mode=1)), "mode mismatch",
                         "mode mismatch"),
    "init-mode-255": Case(_before_init(lambda p: p.send_init(mode=255)), "mode mismatch",
                          "mode mismatch"),
    # After INIT: out of order.
    "second-init": Case(_after_init(lambda p: p.send_init()), UNEXPECTED, UNEXPECTED),
    "hello-after-init": Case(_after_init(lambda p: p.send_raw(encode_hello())), UNEXPECTED,
                             UNEXPECTED),
    "ack-after-init": Case(_after_init(lambda p: p.send_raw(encode_ack())), UNEXPECTED,
                           UNEXPECTED),
    "connected-after-init": Case(_after_init(lambda p: p.send_raw(encode_connected())),
                                 UNEXPECTED, UNEXPECTED),
    # ADD_REGION.
    "region-without-fd": Case(_after_init(lambda p: p.send_add_region(0, with_fd=False)),
                              "missing region fd", "missing region fd"),
    "region-index-1-first": Case(_after_init(lambda p: p.send_add_region(1)),
                                 "invalid region index", "invalid region index"),
    "region-0-twice": Case(_after_init(_two_regions_then(lambda p: p.send_add_region(0))),
                           "invalid region index", "invalid region index"),
    "region-index-256": Case(_after_init(_two_regions_then(_region_index(1, 256))),
                             "invalid region index", "invalid region index"),
    "region-257th": Case(_after_regions(_region_257), "invalid region index",
                         "invalid region index"),
    "region-index-65535": Case(_after_init(_region_index(0, 0xFFFF)),
                               "invalid region index", "invalid region index"),
    "region-size-0": Case(_after_init(lambda p: p.send_add_region(0, size=0)),
                          "invalid region size", "invalid region size"),
    "region-larger-than-file": Case(_after_init(lambda p: p.send_add_region(
        0, size=p.regions[0].size + 1)), "invalid region size", "invalid region size"),
    "region-size-2**63": Case(_after_init(lambda p: p.send_add_region(0, size=1 << 63)),
                              "invalid region size", "invalid region size"),
    "region-size-2**64-1": Case(_after_init(lambda p: p.send_add_region(0, size=(1 << 64) - 1)),
                                "invalid region size", "invalid region size"),
    "region-fd-socket": Case(_after_init(_region_fd(_socket_fd)), "invalid region size",
                             "invalid region size"),
    "region-fd-eventfd": Case(_after_init(_region_fd(lambda p: eventfd())),
                              "invalid region size", "invalid region size"),
    "region-fd-pipe": Case(_after_init(_region_fd(_pipe_fd)), "invalid region size",
                           "invalid region size"),
    "region-fd-dev-null": Case(_after_init(_region_fd(_devnull_fd)), "invalid region size",
                               "invalid region size"),
    "region-fd-directory": Case(_after_init(_region_fd(_directory_fd, size=64)),
                                "invalid region size", "invalid region size"),
    "region-fd-read-only": Case(_after_init(_region_fd(_readonly_memfd)),
                                "invalid region size", "invalid region size"),
    # ADD_RING.
    "ring-before-regions": Case(_after_init(_ring()), "invalid ring", "invalid ring"),
    "ring-without-fd": Case(_after_regions(_ring(with_fd=False)), "missing interrupt fd",
                            "missing interrupt fd"),
    "ring-private-header-1": Case(_after_regions(_ring(private_hdr_size=1)),
                                  "private headers not supported",
                                  "private headers not supported"),
    "ring-private-header-65535": Case(_after_regions(_ring(private_hdr_size=0xFFFF)),
                                      "private headers not supported",
                                      "private headers not supported"),
    "ring-index-1": Case(_after_regions(_ring_index(Direction.M2S, 1)), "too many rings",
                         "too many rings"),
    "ring-index-65535": Case(_after_regions(_ring_index(Direction.S2M, 0xFFFF)),
                             "too many rings", "too many rings"),
    "ring-twice": Case(_after_regions(_ring_twice), "too many rings", "too many rings"),
    "ring-log2-15": Case(_after_regions(_ring(log2_ring_size=15)), "ring size too large",
                         "ring size too large"),
    "ring-log2-255": Case(_after_regions(_ring(log2_ring_size=255)), "ring size too large",
                          "ring size too large"),
    "ring-past-region-end": Case(_after_regions(lambda p: _ring(
        offset=p.regions[0].size - ring_stride(p.log2_ring_size) + 8)(p)),
        "invalid ring", "invalid ring"),
    "ring-offset-0xfffffff8": Case(_after_regions(_ring(offset=0xFFFFFFF8)), "invalid ring",
                                   "invalid ring"),
    "ring-misaligned": Case(_after_regions(_ring(offset=4)), "invalid ring", "invalid ring"),
    "ring-region-2": Case(_after_regions(_ring(region=2)), "invalid ring", "invalid ring"),
    "ring-region-65535": Case(_after_regions(_ring(region=0xFFFF)), "invalid ring",
                              "invalid ring"),
    "ring-log2-14-in-small-region": Case(_after_regions(_ring(log2_ring_size=14)),
                                         "invalid ring", "invalid ring"),
    # CONNECT.
    "connect-without-rings": Case(_after_regions(lambda p: p.send_connect()),
                                  "incomplete ring set", "incomplete ring set"),
    "connect-without-m2s": Case(_after_regions(_ring_then_connect(Direction.S2M)),
                                "incomplete ring set", "incomplete ring set"),
    "connect-without-s2m": Case(_after_regions(_ring_then_connect(Direction.M2S)),
                                "incomplete ring set", "incomplete ring set"),
    "connect-bad-s2m-cookie": Case(_after_rings(_bad_cookie(Direction.S2M)),
                                   "invalid ring cookie", "invalid ring cookie"),
    "connect-bad-m2s-cookie": Case(_after_rings(_bad_cookie(Direction.M2S)),
                                   "invalid ring cookie", "invalid ring cookie"),
    # After CONNECTED: only DISCONNECT is allowed.
    "connect-again": Case(_after_connect(lambda p: p.send_connect()), UNEXPECTED, UNEXPECTED,
                          True),
    "init-after-connect": Case(_after_connect(lambda p: p.send_init()), UNEXPECTED,
                               UNEXPECTED, True),
    "region-after-connect": Case(_after_connect(lambda p: p.send_add_region(1)), UNEXPECTED,
                                 UNEXPECTED, True),
    "ring-after-connect": Case(_after_connect(_ring()), UNEXPECTED, UNEXPECTED, True),
    "ack-after-connect": Case(_after_connect(lambda p: p.send_raw(encode_ack())), UNEXPECTED,
                              UNEXPECTED, True),
}


@pytest.mark.parametrize("case", list(MASTER_CASES))
def test_master_rejects_hostile_slave(our_master: OurMaster, case: str) -> None:
    c = MASTER_CASES[case]
    peer = our_master.peer()
    c.steps(peer)
    assert peer.rejection() == c.answer
    pump(our_master.ctx, lambda: our_master.error == c.recorded,
         what=f"details.error {c.recorded!r} (now {our_master.error!r})")
    assert not our_master.intf.connected
    n = 1 if c.was_connected else 0
    assert our_master.events.connects == our_master.events.disconnects == n
    our_master.recover()


# Odd but acceptable input: the handshake completes and traffic flows.


def _init_with_fd(p: HostileSlave) -> None:
    p.start()
    send_with_temp_fd(p, encode_init(0, name="fd on init"))
    assert p.reply() is not None
    p.add_regions()
    p.add_rings()
    p.finish()


def _connect_with_fd(p: HostileSlave) -> None:
    p.start()
    p.init()
    p.add_regions()
    p.add_rings()
    send_with_temp_fd(p, encode_connect("fd on connect"))
    msg = p.reply()
    assert msg is not None and msg.type == MsgType.CONNECTED
    p.on_connected()
    p.refill(0)


def _names_without_nul(p: HostileSlave) -> None:
    p.start()
    p.init(name="A" * 32)
    p.add_regions()
    p.add_rings()
    p.send_connect("B" * 32)
    msg = p.reply()
    assert msg is not None and msg.type == MsgType.CONNECTED
    p.on_connected()
    p.refill(0)


def _dup_region_fds(p: HostileSlave) -> None:
    p.start()
    p.init()
    for r in p.regions:
        fd = os.dup(r.fd)
        try:
            p.send_raw(encode_add_region(r.index, r.size), fd)
        finally:
            os.close(fd)
        assert p.reply() is not None
    p.add_rings()
    p.finish()


def _one_eventfd_for_both_rings(p: HostileSlave) -> None:
    p.start()
    p.init()
    p.add_regions()
    shared = p.s2m[0].eventfd
    for ring in p.s2m + p.m2s:
        p.send_raw(encode_add_ring(ring.direction, ring.index, offset=ring.offset,
                                   log2_ring_size=ring.log2_size), shared)
        assert p.reply() is not None
    p.finish()


def _regular_file_region(p: HostileSlave) -> None:
    """Region 1 is a plain temporary file, not a memfd (DPDK may send hugepage files)."""
    p.start()
    p.init()
    p.send_add_region(0)
    assert p.reply() is not None
    old = p.regions[1]
    fd, name = tempfile.mkstemp()
    os.unlink(name)
    os.ftruncate(fd, old.size)
    p.regions[1] = Region(1, fd, old.size, mmap.mmap(fd, old.size))
    old.close()
    p.send_add_region(1)
    assert p.reply() is not None
    p.add_rings()
    p.finish()


def _huge_sparse_region(p: HostileSlave) -> None:
    """Region 1 claims 64 GiB (a sparse memfd): valid, only its first 4 GiB addressable."""
    p.start()
    p.init()
    p.send_add_region(0)
    assert p.reply() is not None
    os.ftruncate(p.regions[1].fd, 64 << 30)
    p.send_add_region(1, size=64 << 30)
    assert p.reply() is not None
    p.add_rings()
    p.finish()


def _max_regions(p: HostileSlave) -> None:
    """256 regions, the most there can be (indices 0..255)."""
    p.start()
    p.init()
    p.add_regions()
    _add_regions_up_to(p, 255)
    p.add_rings()
    p.finish()


def _one_slot_rings(p: HostileSlave) -> None:
    p.cfg_log2 = 0  # negotiates rings of 2**0 = 1 slot
    p.handshake_stepped()


def _secret_to_master_without_one(p: HostileSlave) -> None:
    p.start()
    p.init(secret="a secret nobody asked for")
    p.add_regions()
    p.add_rings()
    p.finish()


def _odd_interrupt_fd(direction: Direction, make: Callable[[], int]
                      ) -> Callable[[HostileSlave], None]:
    """The ring of ``direction`` gets the fd ``make`` returns instead of an eventfd (spec §8:
    a master must tolerate other kinds of fd; reads and writes may fail)."""
    def steps(p: HostileSlave) -> None:
        p.start()
        p.init()
        p.add_regions()
        for ring in p.s2m + p.m2s:
            if ring.direction == direction:
                fd = make()
                p.odd_fd = fd  # type: ignore[attr-defined]
                p.send_raw(encode_add_ring(ring.direction, ring.index, offset=ring.offset,
                                           log2_ring_size=ring.log2_size), fd)
            else:
                p.send_add_ring(ring.direction, ring.index)
            assert p.reply() is not None
        p.finish()
    return steps


_keep: list[Any] = []  # the other ends of pipes and sockets, closed after each case


def _close_kept() -> None:
    while _keep:
        k = _keep.pop()
        if isinstance(k, int):
            os.close(k)
        else:
            k.close()


def _socket_end() -> int:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    _keep.append(b)
    return a.detach()


def _pipe_end(read: bool) -> Callable[[], int]:
    def make() -> int:
        r, w = os.pipe()  # blocking, unlike an eventfd from a well-behaved peer
        _keep.append(w if read else r)
        return r if read else w
    return make


def _devnull() -> int:
    return os.open(os.devnull, os.O_RDWR)


ODD_SLAVES: dict[str, Callable[[HostileSlave], None]] = {
    "init-with-fd": _init_with_fd,
    "connect-with-fd": _connect_with_fd,
    "names-32-bytes-without-nul": _names_without_nul,
    "region-fds-duplicated": _dup_region_fds,
    "one-eventfd-for-both-rings": _one_eventfd_for_both_rings,
    "region-in-regular-file": _regular_file_region,
    "region-64-gib-sparse": _huge_sparse_region,
    "secret-to-master-without-secret": _secret_to_master_without_one,
    "256-regions": _max_regions,
    "rings-of-one-slot": _one_slot_rings,
    "rx-interrupt-fd-socket": _odd_interrupt_fd(Direction.S2M, _socket_end),
    "rx-interrupt-fd-pipe-read-end": _odd_interrupt_fd(Direction.S2M, _pipe_end(True)),
    "rx-interrupt-fd-pipe-write-end": _odd_interrupt_fd(Direction.S2M, _pipe_end(False)),
    "rx-interrupt-fd-dev-null": _odd_interrupt_fd(Direction.S2M, _devnull),
    "tx-interrupt-fd-socket": _odd_interrupt_fd(Direction.M2S, _socket_end),
    "tx-interrupt-fd-pipe-write-end": _odd_interrupt_fd(Direction.M2S, _pipe_end(False)),
    "tx-interrupt-fd-dev-null": _odd_interrupt_fd(Direction.M2S, _devnull),
}


@pytest.mark.parametrize("case", list(ODD_SLAVES))
def test_master_accepts_odd_but_valid_slave(our_master: OurMaster, case: str) -> None:
    peer = our_master.peer()
    try:
        ODD_SLAVES[case](peer)
        pump(our_master.ctx, lambda: our_master.intf.connected)
        odd = getattr(peer, "odd_fd", None)
        if odd is not None:
            # Our master made it non-blocking (spec §8), so draining it cannot hang.
            assert os.get_blocking(odd) is False
            os.close(odd)
        our_master.roundtrip(peer, case.encode())
        our_master.roundtrip(peer, case.encode() + b" again")
        d = our_master.intf.details
        if case == "names-32-bytes-without-nul":
            assert (d.remote_inst_name, d.remote_if_name) == ("A" * 32, "B" * 32)
    finally:
        _close_kept()
    our_master.recover()


def test_master_send_count_survives_unwritable_interrupt_fd(our_master: OurMaster) -> None:
    """A slave gives a pipe's read end as the M2S interrupt fd: writing the signal fails.
    The packets are published anyway (spec §8), so the sender must learn how many."""
    peer = our_master.peer()
    try:
        _odd_interrupt_fd(Direction.M2S, _pipe_end(True))(peer)
        pump(our_master.ctx, lambda: our_master.intf.connected)
        frames = [b"one", b"two", b"three"]
        # No exception: the packets are in the ring, the count says so.
        assert our_master.intf.tx[0].send_burst(frames) == len(frames)
        assert peer.recv_until(0, 3) == frames  # published exactly once
    finally:
        _close_kept()
        os.close(peer.odd_fd)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------
# Our slave, hostile masters
# --------------------------------------------------------------------------


def _first(send: Callable[[HostileMaster], None]) -> Callable[[HostileMaster], None]:
    """Instead of HELLO."""
    def steps(p: HostileMaster) -> None:
        p.start()
        send(p)
    return steps


def _after_hello(send: Callable[[HostileMaster], None]) -> Callable[[HostileMaster], None]:
    """Instead of the ACK to INIT."""
    def steps(p: HostileMaster) -> None:
        p.start()
        p.send_hello()
        assert p.recv_from_ours().type == MsgType.INIT
        send(p)
    return steps


def _instead_of_connected(send: Callable[[HostileMaster], None]
                          ) -> Callable[[HostileMaster], None]:
    def steps(p: HostileMaster) -> None:
        p.start()
        p.send_hello()
        msg = p.serve(stop_before=MsgType.CONNECT)
        assert msg is not None
        send(p)
    return steps


def _after_connected(send: Callable[[HostileMaster], None]) -> Callable[[HostileMaster], None]:
    def steps(p: HostileMaster) -> None:
        p.handshake_stepped()
        send(p)
    return steps


def _hello(**fields: Any) -> Callable[[HostileMaster], None]:
    return lambda p: p.send_hello(**fields)


def _cookie_before_connected(p: HostileMaster) -> None:
    p._build_rings()
    p.m2s[0].cookie = 0
    p.send_connected()


def _memfd(p: HostileMaster) -> int:
    fd = os.memfd_create("hostile", os.MFD_CLOEXEC)
    os.ftruncate(fd, 4096)
    return fd


SLAVE_CASES: dict[str, Case] = {
    # Instead of HELLO.
    "ack-first": Case(_first(lambda p: p.send_ack()), UNEXPECTED, UNEXPECTED),
    "connected-first": Case(_first(lambda p: p.send_connected()), UNEXPECTED, UNEXPECTED),
    "init-to-slave": Case(_first(lambda p: p.send_raw(encode_init(0))), UNEXPECTED, UNEXPECTED),
    "connect-to-slave": Case(_first(lambda p: p.send_raw(encode_connect())), UNEXPECTED,
                             UNEXPECTED),
    "region-to-slave": Case(_first(lambda p: send_with_temp_fd(
        p, encode_add_region(0, 4096), lambda: _memfd(p))), UNEXPECTED, UNEXPECTED),
    "ring-to-slave": Case(_first(lambda p: send_with_temp_fd(
        p, encode_add_ring(Direction.S2M, 0))), UNEXPECTED, UNEXPECTED),
    "hello-min-version-0x0201": Case(_first(_hello(min_version=0x0201, max_version=0x0300)),
                                     "incompatible version", "incompatible version"),
    "hello-max-version-0x0100": Case(_first(_hello(min_version=0x0100, max_version=0x0100)),
                                     "incompatible version", "incompatible version"),
    "hello-min-above-max": Case(_first(_hello(min_version=0x0300, max_version=0x0100)),
                                "incompatible version", "incompatible version"),
    "hello-versions-zero": Case(_first(_hello(min_version=0, max_version=0)),
                                "incompatible version", "incompatible version"),
    # Instead of the ACK to INIT.
    "hello-twice": Case(_after_hello(lambda p: p.send_hello()), UNEXPECTED, UNEXPECTED),
    "connected-early": Case(_after_hello(lambda p: p.send_connected()), UNEXPECTED, UNEXPECTED),
    "init-mid-handshake": Case(_after_hello(lambda p: p.send_raw(encode_init(0))), UNEXPECTED,
                               UNEXPECTED),
    "connect-mid-handshake": Case(_after_hello(lambda p: p.send_raw(encode_connect())),
                                  UNEXPECTED, UNEXPECTED),
    # Instead of CONNECTED.
    "ack-instead-of-connected": Case(_instead_of_connected(lambda p: p.send_ack()), UNEXPECTED,
                                     UNEXPECTED),
    "hello-instead-of-connected": Case(_instead_of_connected(lambda p: p.send_hello()),
                                       UNEXPECTED, UNEXPECTED),
    "cookie-overwritten-before-connected": Case(_instead_of_connected(_cookie_before_connected),
                                                "invalid ring cookie", "invalid ring cookie"),
    # After CONNECTED.
    "connected-again": Case(_after_connected(lambda p: p.send_connected()), UNEXPECTED,
                            UNEXPECTED, True),
    "ack-after-connect": Case(_after_connected(lambda p: p.send_ack()), UNEXPECTED, UNEXPECTED,
                              True),
    "hello-after-connect": Case(_after_connected(lambda p: p.send_hello()), UNEXPECTED,
                                UNEXPECTED, True),
}


@pytest.mark.parametrize("case", list(SLAVE_CASES))
def test_slave_rejects_hostile_master(our_slave: OurSlave, case: str) -> None:
    c = SLAVE_CASES[case]
    peer = our_slave.peer()
    c.steps(peer)
    assert peer.rejection() == c.answer
    pump(our_slave.ctx, lambda: our_slave.error == c.recorded,
         what=f"details.error {c.recorded!r} (now {our_slave.error!r})")
    assert not our_slave.intf.connected
    n = 1 if c.was_connected else 0
    assert our_slave.events.connects == our_slave.events.disconnects == n
    our_slave.recover()


def _send_with_fd(msg: Callable[[HostileMaster], bytes]) -> Callable[[HostileMaster], None]:
    return lambda p: send_with_temp_fd(p, msg(p), lambda: _memfd(p))


def _stepped(hello: Callable[[HostileMaster], None] | None = None,
             ack: Callable[[HostileMaster], None] | None = None,
             connected: Callable[[HostileMaster], None] | None = None
             ) -> Callable[[HostileMaster], None]:
    """A full handshake in which HELLO, the first ACK or CONNECTED is sent by a hook."""
    def steps(p: HostileMaster) -> None:
        p.start()
        (hello or (lambda q: q.send_hello()))(p)
        init = p.recv_from_ours()
        assert init.type == MsgType.INIT, init.type_name
        p.init = init
        p.remote_app_name = init["name"]
        (ack or (lambda q: q.send_ack()))(p)
        msg = p.serve(stop_before=MsgType.CONNECT)
        assert isinstance(msg, Message)
        p.remote_if_name = msg["if_name"]
        p._build_rings()
        (connected or (lambda q: q.send_connected()))(p)
    return steps


ODD_MASTERS: dict[str, tuple[Callable[[HostileMaster], None], int]] = {
    # name: (steps, ring size our slave must end up with)
    "hello-with-fd": (_stepped(hello=_send_with_fd(lambda p: encode_hello("fd"))), 16),
    "ack-with-fd": (_stepped(ack=_send_with_fd(lambda p: encode_ack())), 16),
    "connected-with-fd": (_stepped(connected=_send_with_fd(
        lambda p: encode_connected("fd"))), 16),
    "names-32-bytes-without-nul": (_stepped(
        hello=lambda p: p.send_hello(name="C" * 32),
        connected=lambda p: p.send_connected("D" * 32)), 16),
    "hello-ring-limits-65535": (_stepped(hello=_hello(max_s2m_ring=0xFFFF, max_m2s_ring=0xFFFF,
                                                      max_region=0xFFFF)), 16),
    "hello-ring-limits-0": (_stepped(hello=_hello(max_s2m_ring=0, max_m2s_ring=0,
                                                  max_region=0)), 16),
    "hello-log2-255": (_stepped(hello=_hello(max_log2_ring_size=255)), 16),
    "hello-log2-1": (_stepped(hello=_hello(max_log2_ring_size=1)), 2),
    "hello-log2-0": (_stepped(hello=_hello(max_log2_ring_size=0)), 1),
    "hello-version-range-wide": (_stepped(hello=_hello(min_version=0, max_version=0xFFFF)), 16),
    "connected-code-garbage": (_stepped(connected=lambda p: p.send_raw(
        encode(MsgType.CONNECTED, if_name="x")[:34] + b"\xff" * 94)), 16),
}


@pytest.mark.parametrize("case", list(ODD_MASTERS))
def test_slave_accepts_odd_but_valid_master(our_slave: OurSlave, case: str) -> None:
    steps, ring_size = ODD_MASTERS[case]
    peer = our_slave.peer()
    steps(peer)
    pump(our_slave.ctx, lambda: our_slave.intf.connected)
    d = our_slave.intf.details
    assert [q.ring_size for q in d.rx_queues + d.tx_queues] == [ring_size, ring_size]
    # Our slave posts every rx buffer at connect.
    assert peer.posted(0) == ring_size
    our_slave.roundtrip(peer, case.encode())
    if case == "names-32-bytes-without-nul":
        assert (d.remote_inst_name, d.remote_if_name) == ("C" * 32, "D" * 32)
    our_slave.recover()


def test_fd_on_every_master_message_is_closed(our_slave: OurSlave) -> None:
    """HELLO, ACKs and CONNECTED each carry an fd: our slave closes every one."""
    before = open_fds()

    class FdMaster(HostileMaster):
        def send_raw(self, data: bytes, fd: int | None = None) -> None:
            extra = _memfd(self)
            try:
                super().send_raw(data, extra if fd is None else fd)
            finally:
                os.close(extra)

        def send_hello(self, **overrides: Any) -> None:
            self.send_raw(encode_hello(self.app_name, **overrides))

        def send_ack(self) -> None:
            self.send_raw(encode_ack())

        def send_connected(self, if_name: str | None = None) -> None:
            self.send_raw(encode_connected(self.if_name if if_name is None else if_name))

    peer = FdMaster(our_slave.path, our_slave.ctx, our_slave.intf)
    our_slave.peers.append(peer)
    peer.handshake_stepped()
    our_slave.roundtrip(peer)
    peer.close("done")
    our_slave.peers.remove(peer)
    our_slave.wait_disconnected()
    assert open_fds() <= before
    our_slave.recover()


def test_interrupt_fds_the_event_loop_cannot_watch(tmp_path: Path) -> None:
    """A slave sends a regular file (a memfd) as a ring's interrupt fd. A master that
    watches its rx queues with on_interrupt cannot add it to epoll: the connection
    ends with a reason instead of half-working."""
    with memif.Context("ours") as ctx:
        path = str(tmp_path / "irq.sock")
        seen: list[int] = []
        intf = ctx.interface(ctx.socket(path), role=memif.Role.MASTER, ring_size=16,
                             on_interrupt=lambda i, q: seen.append(q))
        before = usage()
        peer = HostileSlave(path, ctx)
        try:
            peer.start()
            peer.init()
            peer.add_regions()
            peer.send_raw(encode_add_ring(Direction.S2M, 0, offset=peer.s2m[0].offset,
                                          log2_ring_size=peer.log2_ring_size),
                          peer.regions[1].fd)
            assert peer.reply() is not None
            peer.send_add_ring(Direction.M2S, 0)
            assert peer.reply() is not None
            peer.send_connect()
            assert peer.rejection() == "event registration failed"
            assert intf.details.error == "event registration failed"
        finally:
            peer.close()
        pump(ctx, lambda: usage().no_more_handles_than(before),
             what="the fds and mappings to be freed")
        good = HostileSlave(path, ctx)
        try:
            good.handshake_stepped()
            pump(ctx, lambda: intf.connected)
            assert good.send(0, b"irq")
            pump(ctx, lambda: bool(seen))
            assert intf.rx[0].recv_burst() == [b"irq"]
        finally:
            good.close()


# --------------------------------------------------------------------------
# Our master and several connections at once
# --------------------------------------------------------------------------


def test_master_many_idle_connections(our_master: OurMaster) -> None:
    """64 connections that read HELLO and then say nothing (until the 10 s handshake
    deadline, which is not waited for here): a good slave still connects meanwhile,
    and every idle connection's fd is freed when it goes away."""
    idle = [our_master.peer() for _ in range(64)]
    for p in idle:
        p.connect()
        hello = p.reply()
        assert hello is not None and hello.type == MsgType.HELLO
    assert open_fds() >= our_master.baseline.fds + 64
    good = our_master.connect_peer()
    our_master.roundtrip(good, b"through the crowd")
    for p in idle:
        p.close()
        our_master.peers.remove(p)
    our_master.recover()


@pytest.mark.parametrize("when", ["connected", "handshaking"])
def test_master_second_slave_for_a_busy_interface(our_master: OurMaster, when: str) -> None:
    """INIT for an interface that is connected, or in a handshake with another slave, is
    refused with "already connected" and does not disturb that connection (spec §9.4)."""
    first = our_master.peer()
    if when == "connected":
        first.handshake_stepped()
        pump(our_master.ctx, lambda: our_master.intf.connected)
    else:
        first.start()
        first.init()
        first.add_regions()
    intruder = our_master.peer()
    intruder.start()
    intruder.send_init()
    assert intruder.rejection() == "already connected"
    assert our_master.error == ""
    if when == "handshaking":
        first.add_rings()
        first.finish()
        pump(our_master.ctx, lambda: our_master.intf.connected)
    our_master.roundtrip(first, b"undisturbed")
    assert our_master.events.connects == 1
    our_master.recover()
