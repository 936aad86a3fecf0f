"""Upstream-tests spec §4: control messages and the handshake, checked on the wire.

Upstream's "Socket messaging" suite (C#14-C#30) and the Unity Enq* cases
(U#14-U#21) called the library's internal enqueue/send/receive functions on
hand-made structs. Here a raw Python peer (tests/rawpeer.py) speaks the
protocol to our library over a real SOCK_SEQPACKET socket and checks the
bytes. Each raw peer is stepped from the test thread while our databases are
polled (tests/upstream/uphelpers.py). References: protocol spec §3, §4, §9,
§10, §14; libmemif-api §8.4, §8.5, §11 (O2, O3, X7, X8, C2).
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import signal
import socket
import struct
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from golden import GOLDEN
from lowpair import (
    Database,
    Interface,
    poll_for,
    poll_until,
    recv_packets,
    send_packets,
)
from rawpeer import (
    COOKIE,
    MSG_SIZE,
    Direction,
    Message,
    MsgType,
    PeerDisconnectedError,
    RawMaster,
    RawSlave,
    encode_add_ring,
    encode_hello,
    encode_init,
    encode_raw,
    ring_stride,
)
from uphelpers import (
    APP,
    DC_STRING,
    IF_NAME,
    SECRET,
    ack,
    at_eof,
    is_eventfd,
    open_fd_count,
    raw_master_handshake,
    raw_slave_handshake,
    raw_slave_hello,
    raw_slave_up_to_rings,
    read_reason,
    readable,
    wait_msg,
    wait_readable,
)

from memif_cffi.lowlevel import lib

NAME_LEN = 32


def _padded(text: bytes, size: int = NAME_LEN) -> bytes:
    return text.ljust(size, b"\0")


def _our_master(db: Database, path: str, **kw: Any) -> Interface:
    kw.setdefault("name", IF_NAME)
    return Interface(db, db.socket(path), master=True, **kw)


def _our_slave(db: Database, path: str, **kw: Any) -> Interface:
    kw.setdefault("name", IF_NAME)
    return Interface(db, db.socket(path), master=False, **kw)


def _listening_raw_master(path: str, **kw: Any) -> RawMaster:
    raw = RawMaster(path, **kw)
    raw.listen()
    return raw


def _good_slave_connects(db: Database, master: Interface, path: str, **kw: Any) -> None:
    """A correct raw slave completes the handshake, moves a packet, and leaves."""
    before = master.connects
    with RawSlave(path, **kw) as raw:
        raw_slave_handshake([db], raw)
        assert master.connects == before + 1 and master.connected
        assert raw.send(0, b"after the rejection")
        assert recv_packets(master, 0) == [b"after the rejection"]
        raw.send_disconnect("bye")
    poll_until([db], lambda: not master.connected, 3, "master on_disconnect")


# --------------------------------------------------------------------------
# Message contents
# --------------------------------------------------------------------------


def test_hello_fields(sock: str, tmp_path: Path) -> None:
    """Mirrors C#22 test_send_hello / U#15 EnqHello: HELLO is unsolicited and exact."""
    with Database(APP) as db, RawSlave(sock) as raw:
        _our_master(db, sock)
        raw.connect()
        wait_readable([db], raw.sock, what="HELLO")
        msg = raw.recv(1)
        assert len(msg.raw) == MSG_SIZE and msg.fd is None
        assert msg.type == MsgType.HELLO
        assert msg.raw[2:2 + NAME_LEN] == _padded(b"unit_test_app")
        assert (msg["min_version"], msg["max_version"]) == (0x0200, 0x0200)
        assert (msg["max_region"], msg["max_m2s_ring"], msg["max_s2m_ring"]) == (255, 255, 255)
        assert msg["max_log2_ring_size"] == 14
        assert msg.raw[45:] == bytes(MSG_SIZE - 45)
        poll_for([db], 0.05)
        assert not readable(raw.sock), "more than one unsolicited message"

    golden_path = str(tmp_path / "golden.sock")
    with Database(b"master-app") as db, RawSlave(golden_path) as raw:
        _our_master(db, golden_path, id=7, name=b"mif-m", secret=b"sec")
        raw.connect()
        wait_readable([db], raw.sock)
        assert raw.recv(1).raw == GOLDEN["hello"], "HELLO differs from protocol spec §14"


@pytest.mark.parametrize(
    ("app", "kw", "name", "secret"),
    [(APP, {"id": 69, "mode": 0, "secret": SECRET}, b"unit_test_app", SECRET),
     (None, {"id": 11, "mode": 1}, b"libmemif-app", b"")],
    ids=["id69-secret", "id11-ip-default-app"])
def test_init_fields(sock: str, app: bytes | None, kw: dict[str, Any], name: bytes,
                     secret: bytes) -> None:
    """Mirrors C#16 test_enq_init / U#16 EnqInit: INIT carries id, mode, secret and app name."""
    with _listening_raw_master(sock) as raw, Database(app) as db:
        _our_slave(db, sock, **kw)
        raw.accept(2)
        raw.send_hello()
        msg = wait_msg([db], raw, what="INIT")
        assert msg.fd is None and len(msg.raw) == MSG_SIZE
        assert msg.type == MsgType.INIT
        assert msg["version"] == 0x0200
        assert (msg["id"], msg["mode"]) == (kw["id"], kw["mode"])
        assert msg.raw[9:33] == _padded(secret, 24)
        assert msg.raw[33:65] == _padded(name)
        assert msg.raw[65:] == bytes(MSG_SIZE - 65)


def test_ack_after_init(sock: str) -> None:
    """Mirrors C#15 test_enq_ack / U#14 EnqAck: a valid INIT is answered by a bare ACK."""
    with Database(APP) as db, RawSlave(sock) as raw:
        _our_master(db, sock)
        raw.negotiate(raw_slave_hello([db], raw))
        raw.send_init()
        msg = wait_msg([db], raw, what="ACK")
        assert msg.fd is None and msg.type == MsgType.ACK
        assert msg.raw == struct.pack("<H", 1) + bytes(MSG_SIZE - 2)
        assert msg.raw == GOLDEN["ack"]


def test_add_region_fields(sock: str) -> None:
    """Mirrors C#17 test_enq_add_region / U#17: regions 0 and 1, sealed memfds, §5.2 sizes."""
    s2m, m2s, log2, bsize = 2, 1, 8, 1500
    n = 1 << log2
    seen: list[tuple[int, int, int, int]] = []

    def inspect(msg: Message) -> None:
        if msg.type == MsgType.ADD_REGION:
            assert msg.fd is not None, "ADD_REGION without an fd"
            seals = fcntl.fcntl(msg.fd, fcntl.F_GET_SEALS)
            seen.append((msg["index"], msg["size"], os.fstat(msg.fd).st_size, seals))

    with _listening_raw_master(sock) as raw, Database(APP) as db:
        slave = _our_slave(db, sock, s2m=s2m, m2s=m2s, log2=log2, buffer_size=bsize)
        raw_master_handshake([db], raw, inspect)
        poll_until([db], lambda: slave.connected)
        expected = [(s2m + m2s) * (128 + 16 * n), bsize * n * (s2m + m2s)]
        assert [(i, size) for i, size, _, _ in seen] == list(enumerate(expected))
        for _i, size, file_size, seals in seen:
            assert file_size >= size
            assert seals & fcntl.F_SEAL_SHRINK, "region memfd not sealed against shrinking"


def test_slave_messages_match_golden_vectors(sock: str) -> None:
    """Mirrors C#16-C#19 (Enq*): our slave's INIT..CONNECT equal protocol spec §14 bytes."""
    with _listening_raw_master(sock, id=7, secret="sec") as raw, \
            Database(b"slave-app") as db:
        _our_slave(db, sock, id=7, name=b"mif-s", secret=b"sec")
        raw_master_handshake([db], raw)
        assert [m.raw for m in raw.received] == [
            GOLDEN["init"], GOLDEN["add_region0"], GOLDEN["add_region1"],
            GOLDEN["add_ring_s2m0"], GOLDEN["add_ring_m2s0"], GOLDEN["connect"]]


def test_add_ring_fields(sock: str) -> None:
    """Mirrors C#18 test_enq_add_ring / U#18: one ADD_RING per ring, S2M first, eventfds."""
    s2m, m2s, log2 = 2, 3, 6
    stride = ring_stride(log2)
    rings: list[tuple[int, int, int, int, int, int]] = []
    cookies: list[int] = []

    def inspect(msg: Message) -> None:
        if msg.type == MsgType.ADD_RING:
            assert msg.fd is not None and is_eventfd(msg.fd), "ADD_RING fd is not an eventfd"
            rings.append((msg["flags"], msg["index"], msg["region"], msg["offset"],
                          msg["log2_ring_size"], msg["private_hdr_size"]))
            region0 = raw.regions[0].mm
            cookies.append(struct.unpack_from("<I", region0, msg["offset"])[0])

    with _listening_raw_master(sock) as raw, Database(APP) as db:
        _our_slave(db, sock, s2m=s2m, m2s=m2s, log2=log2)
        raw_master_handshake([db], raw, inspect)
        expected = [(1, i, 0, i * stride, log2, 0) for i in range(s2m)]
        expected += [(0, i, 0, (s2m + i) * stride, log2, 0) for i in range(m2s)]
        assert rings == expected
        assert cookies == [COOKIE] * (s2m + m2s)


def test_connect_fields(sock: str) -> None:
    """Mirrors C#19 test_enq_connect / U#19: CONNECT (if_name) only after the last ACK."""
    with _listening_raw_master(sock) as raw, Database(APP) as db:
        _our_slave(db, sock, s2m=1, m2s=2)
        rings_seen = 0

        def hold_last_ack(msg: Message) -> None:
            nonlocal rings_seen
            if msg.type == MsgType.ADD_RING:
                rings_seen += 1
                if rings_seen == 3:
                    poll_for([db], 0.1)
                    assert not readable(raw.sock), "slave sent CONNECT before the last ACK"

        raw_master_handshake([db], raw, hold_last_ack)
        msg = raw.received[-1]
        assert msg.type == MsgType.CONNECT and msg.fd is None
        assert msg.raw == struct.pack("<H", 6) + _padded(IF_NAME) + bytes(MSG_SIZE - 34)


def test_connected_fields(sock: str) -> None:
    """Mirrors C#20 test_enq_connected / U#20: our master answers CONNECT with CONNECTED."""
    with Database(APP) as db, RawSlave(sock) as raw:
        _our_master(db, sock)
        raw_slave_handshake([db], raw)
        msg = raw.received[-1]
        assert msg.type == MsgType.CONNECTED and msg.fd is None
        assert msg.raw == struct.pack("<H", 7) + _padded(IF_NAME) + bytes(MSG_SIZE - 34)
        assert len(raw.received) == 1 + 5 + 1  # HELLO, 5 ACKs, CONNECTED


def test_lock_step(sock: str) -> None:
    """Mirrors C#14 test_msg_queue: one message per ACK, in the protocol's order."""
    delay = 0.15
    order: list[tuple[str, int | None, int | None]] = []

    def slow_ack(msg: Message) -> None:
        flags = msg.get("flags")
        order.append((msg.type_name, msg.get("index"),
                      None if flags is None else flags & 1))
        # Keep our side running while the ACK is held back: nothing else may arrive.
        poll_for([db], delay)
        assert not readable(raw.sock), f"a second message while {msg.type_name} is unanswered"

    with _listening_raw_master(sock) as raw, Database(APP) as db:
        slave = _our_slave(db, sock, s2m=2, m2s=2)
        raw_master_handshake([db], raw, slow_ack)
        poll_until([db], lambda: slave.connected)
    assert order == [
        ("INIT", None, None), ("ADD_REGION", 0, None), ("ADD_REGION", 1, None),
        ("ADD_RING", 0, 1), ("ADD_RING", 1, 1), ("ADD_RING", 0, 0), ("ADD_RING", 1, 0),
        ("CONNECT", None, None)]


# --------------------------------------------------------------------------
# Negotiation and the master's checks
# --------------------------------------------------------------------------


def test_hello_negotiation(sock: str) -> None:
    """Mirrors C#24 test_recv_hello: max ring *index* + 1 limits the counts; bad versions."""
    rings: list[tuple[int, int, int]] = []
    with Database(APP) as db, _listening_raw_master(sock) as raw:
        db.set_timer(0.05)
        slave = _our_slave(db, sock, s2m=4, m2s=6, log2=10)
        # A master speaking only version 9: the slave refuses and records why ...
        raw.accept(2)
        raw.send_hello(min_version=9, max_version=9)
        assert read_reason([db], raw) == "incompatible version"
        raw._free_connection()
        assert slave.details().error == "incompatible version"
        assert slave.connects == 0
        # ... then retries on the timer. This time the master accepts ring indices 0..1.
        wait_readable([db], raw.listener, what="a reconnect attempt")
        raw.accept(1)
        raw.send_hello(max_s2m_ring=1, max_m2s_ring=1, max_log2_ring_size=14)
        while True:
            msg = wait_msg([db], raw)
            if msg.type == MsgType.ADD_RING:
                rings.append((msg["flags"] & 1, msg["index"], msg["log2_ring_size"]))
            if raw.handle(msg):
                break
        poll_until([db], lambda: slave.connected)
        d = slave.details()
        assert (d.tx_queues_num, d.rx_queues_num) == (2, 2)
    assert rings == [(1, 0, 10), (1, 1, 10), (0, 0, 10), (0, 1, 10)]


def test_slave_ring_size_wins(sock: str) -> None:
    """New (interop note, protocol spec §9.2): the slave's log2 ring size is used."""
    with Database(b"m") as mdb, Database(b"s") as sdb:
        master = _our_master(mdb, sock, log2=10)
        slave = _our_slave(sdb, sock, log2=12)
        poll_until([mdb, sdb], lambda: master.connected and slave.connected)
        for d in (master.details(), slave.details()):
            assert {q.ring_size for q in d.rx_queues + d.tx_queues} == {4096}


INIT_CASES = [
    ({}, "ACK"),
    ({"version": 9}, "incompatible version"),
    ({"id": 78}, "unmatched interface id"),
    ({"mode": 1}, "mode mismatch"),
    ({"secret": b""}, "secret required"),
    ({"secret": b"pss"}, "incorrect secret"),
    ({"secret": b"psst!"}, "incorrect secret"),
]


def test_init_checks(sock: str) -> None:
    """Mirrors C#25 test_recv_init: every INIT check, and the master recovers after each.

    The empty-secret case expects "secret required" (MEMIF_ERR_NOSECRET); upstream
    expected MEMIF_ERR_SECRET, which libmemif 3.1 does not return for an empty secret
    (upstream-tests spec §4, protocol spec §9.4). A correct INIT after every rejection
    is accepted (deliberate difference O3, libmemif-api §11.2: 3.1 wedges).
    """
    with Database(APP) as db:
        master = _our_master(db, sock, id=69, secret=SECRET)

        def answer(init: dict[str, Any]) -> str:
            with RawSlave(sock, id=69, secret=SECRET) as raw:
                raw.negotiate(raw_slave_hello([db], raw))
                raw.send_init(**init)
                msg = wait_msg([db], raw)
                if msg.type == MsgType.ACK:
                    return "ACK"
                assert msg.type == MsgType.DISCONNECT, msg.type_name
                assert msg["code"] == 0
                assert at_eof([db], raw), "not closed after the DISCONNECT"
                return str(msg["string"])

        for init, expected in INIT_CASES:
            assert answer(init) == expected, init
            if expected in ("mode mismatch", "secret required", "incorrect secret"):
                assert master.details().error == expected
            assert not master.connected
            _good_slave_connects(db, master, sock, id=69, secret=SECRET)
        # A correct INIT while another slave is connected.
        with RawSlave(sock, id=69, secret=SECRET) as first:
            raw_slave_handshake([db], first)
            assert answer({}) == "already connected"
            assert master.connected and first.send(0, b"first still connected")
            assert recv_packets(master, 0) == [b"first still connected"]


def test_master_without_secret_accepts_any(sock: str) -> None:
    """New: a master without a secret accepts a slave that sends one."""
    with Database(b"m") as mdb, Database(b"s") as sdb:
        master = _our_master(mdb, sock)
        slave = _our_slave(sdb, sock, secret=SECRET)
        poll_until([mdb, sdb], lambda: master.connected and slave.connected)
        assert master.details().secret == "" and slave.details().secret == "psst"


def _region_case(db: Database, path: str, step: Callable[[RawSlave], None]) -> str:
    """Fresh raw slave: HELLO, INIT (ACKed), then ``step``; returns the master's answer."""
    with RawSlave(path) as raw:
        raw.negotiate(raw_slave_hello([db], raw))
        raw.create_memory()
        raw.send_init()
        ack([db], raw)
        step(raw)
        msg = wait_msg([db], raw)
        if msg.type == MsgType.ACK:
            return "ACK"
        assert msg.type == MsgType.DISCONNECT, msg.type_name
        assert at_eof([db], raw)
        return str(msg["string"])


def test_add_region_checks(sock: str) -> None:
    """Mirrors C#26 test_recv_add_region: fd, index and size checks; the master survives."""
    cases: list[tuple[Callable[[RawSlave], None], str]] = [
        (lambda r: r.send_add_region(0), "ACK"),
        (lambda r: r.send_add_region(0, with_fd=False), "missing region fd"),
        (lambda r: r.send_add_region(1), "invalid region index"),
        (lambda r: r.send_add_region(0, size=r.regions[0].size + 4096), "invalid region size"),
    ]
    with Database(APP) as db:
        master = _our_master(db, sock)
        for step, expected in cases:
            base = open_fd_count()
            assert _region_case(db, sock, step) == expected
            poll_until([db], lambda b=base: open_fd_count() == b, 3, "fds released")
        _good_slave_connects(db, master, sock)


def _ring_case(db: Database, path: str, step: Callable[[RawSlave], None]) -> str:
    def after_regions(raw: RawSlave) -> None:
        for i in range(2):
            raw.send_add_region(i)
            ack([db], raw)
        step(raw)

    with RawSlave(path, num_s2m_rings=2, num_m2s_rings=2) as raw:
        raw.negotiate(raw_slave_hello([db], raw))
        raw.create_memory()
        raw.send_init()
        ack([db], raw)
        after_regions(raw)
        msg = wait_msg([db], raw)
        if msg.type == MsgType.ACK:
            return "ACK"
        assert msg.type == MsgType.DISCONNECT, msg.type_name
        assert at_eof([db], raw)
        return str(msg["string"])


def test_add_ring_checks(sock: str) -> None:
    """Mirrors C#27 test_recv_add_ring: ADD_RING validation; the master survives.

    Upstream's case failed with MEMIF_ERR_PRIVHDR because its message struct was left
    uninitialised; an explicit private_hdr_size of 0 is accepted and non-zero refused
    (upstream-tests spec §4).
    """
    def both_index_1(raw: RawSlave) -> None:
        raw.send_add_ring(Direction.S2M, 1)
        ack([db], raw)
        raw.send_add_ring(Direction.M2S, 1)

    def m2s_index_2(raw: RawSlave) -> None:
        raw.send_raw(encode_add_ring(Direction.M2S, 2, offset=raw.m2s[0].offset,
                                     log2_ring_size=raw.log2_ring_size), raw.m2s[0].eventfd)

    cases: list[tuple[Callable[[RawSlave], None], str]] = [
        (both_index_1, "ACK"),
        (lambda r: r.send_add_ring(Direction.S2M, 0, private_hdr_size=3),
         "private headers not supported"),
        (lambda r: r.send_add_ring(Direction.S2M, 0, with_fd=False), "missing interrupt fd"),
        (m2s_index_2, "too many rings"),
        (lambda r: r.send_add_ring(Direction.S2M, 0, log2_ring_size=15), "ring size too large"),
        (lambda r: r.send_add_ring(Direction.S2M, 0, offset=r.regions[0].size),
         "invalid ring"),
    ]
    with Database(APP) as db:
        master = _our_master(db, sock, s2m=2, m2s=2)
        for step, expected in cases:
            base = open_fd_count()
            assert _ring_case(db, sock, step) == expected
            poll_until([db], lambda b=base: open_fd_count() == b, 3, "fds released")
        _good_slave_connects(db, master, sock, num_s2m_rings=2, num_m2s_rings=2)


def test_master_survives_too_many_rings(sock: str) -> None:
    """New (O2): a slave asking for more rings is refused; the master keeps serving."""
    with Database(b"m") as mdb, Database(b"s") as sdb:
        master = _our_master(mdb, sock, s2m=1, m2s=1)
        ssock = sdb.socket(sock)
        greedy = Interface(sdb, ssock, master=False, s2m=2)
        poll_until([mdb, sdb], lambda: greedy.details().error == "too many rings", 3,
                   "the slave's reason")
        assert master.connects == 0 and master.details().link_up_down == 0
        greedy.delete()
        modest = Interface(sdb, ssock, master=False, s2m=1)
        poll_until([mdb, sdb], lambda: master.connected and modest.connected, 3)


# --------------------------------------------------------------------------
# Completing and ending connections
# --------------------------------------------------------------------------


def test_connect_completes_master(sock: str) -> None:
    """Mirrors C#28 test_recv_connect: CONNECT connects the master and resets the rings."""
    with Database(APP) as db, RawSlave(sock, app_name="raw_slave_app",
                                       if_name="raw_slave_if") as raw:
        master = _our_master(db, sock)
        raw_slave_up_to_rings([db], raw)
        for ring in raw.s2m + raw.m2s:  # leftovers the master must clear at connect
            ring.head, ring.tail = 5, 7
        assert master.connects == 0
        raw.send_connect()
        wait_readable([db], raw.sock, what="CONNECTED")
        assert master.connects == 1
        d = master.details()
        assert (d.remote_if_name, d.remote_inst_name) == ("raw_slave_if", "raw_slave_app")
        assert d.link_up_down == 1
        assert [(q.head, q.tail) for q in d.rx_queues + d.tx_queues] == [(0, 0)] * 2
        assert [(r.head, r.tail) for r in raw.s2m + raw.m2s] == [(0, 0)] * 2
        raw.recv_connected()


def test_connected_completes_slave(sock: str) -> None:
    """Mirrors C#29 test_recv_connected: CONNECTED connects the slave."""
    with _listening_raw_master(sock, app_name="raw_master_app",
                               if_name="unit_test_if") as raw, Database(APP) as db:
        slave = _our_slave(db, sock, name=b"our_slave_if")
        raw_master_handshake([db], raw)
        poll_until([db], lambda: slave.connected, 3, "slave on_connect")
        assert slave.connects == 1
        d = slave.details()
        assert (d.remote_if_name, d.remote_inst_name) == ("unit_test_if", "raw_master_app")
        assert d.link_up_down == 1
        assert raw.remote_if_name == "our_slave_if"


@contextlib.contextmanager
def _ours_with_raw_peer(db: Database, path: str, role: str,
                        **kw: Any) -> Iterator[tuple[Interface, RawSlave | RawMaster]]:
    """Our interface in ``role``, connected to a raw peer of the other role."""
    if role == "master":
        ours = _our_master(db, path, s2m=kw.get("s2m", 1))
        with RawSlave(path, num_s2m_rings=kw.get("s2m", 1)) as rs:
            raw_slave_handshake([db], rs)
            yield ours, rs
    else:
        with _listening_raw_master(path) as rm:
            ours = _our_slave(db, path, s2m=kw.get("s2m", 1))
            raw_master_handshake([db], rm)
            poll_until([db], lambda: ours.connected, 3, "slave on_connect")
            yield ours, rm


@pytest.mark.parametrize("role", ["master", "slave"])
def test_receive_disconnect(sock: str, role: str) -> None:
    """Mirrors C#30 test_recv_disconnect / U#21: a peer's DISCONNECT is recorded, unanswered.

    Our side does not answer with its own DISCONNECT (deliberate difference C2,
    libmemif-api §11.4); the raw peer sees only EOF.
    """
    with Database(APP) as db, _ours_with_raw_peer(db, sock, role, s2m=2) as (ours, raw):
        assert ours.connected
        raw.send_disconnect(DC_STRING, code=5)
        poll_until([db], lambda: ours.disconnects == 1, 3, "on_disconnect")
        d = ours.details()
        assert d.error == DC_STRING and d.link_up_down == 0
        assert (d.regions_num, d.rx_queues_num, d.tx_queues_num) == (0, 0, 0)
        count = len(raw.received)
        assert at_eof([db], raw), "our side answered instead of closing"
        assert len(raw.received) == count
        poll_for([db], 0.05)
        assert ours.connects == ours.disconnects == 1


@pytest.mark.parametrize("role", ["master", "slave"])
def test_delete_sends_disconnect(sock: str, role: str) -> None:
    """Mirrors C#23 test_send_disconnect: delete sends DISCONNECT "interface deleted"."""
    with Database(APP) as db, _ours_with_raw_peer(db, sock, role) as (ours, raw):
        ours.delete()
        assert ours.disconnects == 1
        assert readable(raw.sock, 2)
        msg = raw.recv(0)
        assert msg.raw == GOLDEN["disconnect"], "DISCONNECT differs from protocol spec §14"
        assert raw.sock is not None and raw.sock.recv(256) == b"", "no EOF after DISCONNECT"


# --------------------------------------------------------------------------
# EOF at every stage, in a child process with the default SIGPIPE action
# --------------------------------------------------------------------------

CLOSED = "connection closed by peer"


def _eof_against_our_master(path: str) -> list[str]:
    """Raw slaves that close at each handshake stage; returns problems found."""
    problems: list[str] = []
    with Database(APP) as db:
        master = _our_master(db, path)
        base = open_fd_count()

        def up_to_init(r: RawSlave) -> None:
            r.negotiate(raw_slave_hello([db], r))
            r.create_memory()
            r.send_init()

        def regions(r: RawSlave) -> None:
            up_to_init(r)
            ack([db], r)
            for i in range(2):
                r.send_add_region(i)
                ack([db], r)

        stages: list[tuple[str, Callable[[RawSlave], None], str | None]] = [
            ("right after connect", lambda r: r.connect(), None),
            ("after HELLO", lambda r: raw_slave_hello([db], r), None),
            ("INIT then close at once", up_to_init, ""),
            ("after the INIT's ACK", lambda r: (up_to_init(r), ack([db], r)), CLOSED),
            ("after the regions", regions, CLOSED),
            ("after the rings", lambda r: raw_slave_up_to_rings([db], r), CLOSED),
            ("CONNECT then close at once",
             lambda r: (raw_slave_up_to_rings([db], r), r.send_connect()), ""),
            ("after connect", lambda r: raw_slave_handshake([db], r), CLOSED),
        ]
        for name, steps, reason in stages:
            before = master.details().error
            with RawSlave(path) as raw:
                steps(raw)
            poll_until([db], lambda: open_fd_count() == base, 3, f"master cleanup {name}")
            if reason is None:  # nothing bound: let the master handle the connection
                poll_for([db], 0.05)
                if open_fd_count() != base:
                    problems.append(f"master, {name}: fds left open")
            err = master.details().error
            if reason is None and err != before:
                problems.append(f"master, {name}: reason changed to {err!r}")
            if reason == CLOSED and err != CLOSED:
                problems.append(f"master, {name}: reason {err!r}")
            if reason == "" and not err:
                problems.append(f"master, {name}: no reason recorded")
            if master.connects != master.disconnects:
                problems.append(f"master, {name}: callbacks unpaired")
        _good_slave_connects(db, master, path)
    return problems


def _eof_against_our_slave(path: str) -> list[str]:
    """A raw master that closes at each handshake stage; the slave comes back each time."""
    problems: list[str] = []
    with Database(APP) as db, _listening_raw_master(path) as raw:
        db.set_timer(0, 0)  # reconnect explicitly, so each stage is observed on its own
        base = open_fd_count()
        slave = _our_slave(db, path)

        def until(mtype: MsgType) -> Callable[[RawMaster], None]:
            def run(r: RawMaster) -> None:
                r.send_hello()
                while True:
                    msg = wait_msg([db], r)
                    if msg.type == mtype:
                        msg.close_fd()
                        return
                    r.handle(msg)
            return run

        def hello_then_close(r: RawMaster) -> None:
            r.send_hello()

        def ack_init_then_close(r: RawMaster) -> None:
            until(MsgType.INIT)(r)
            r.send_ack()

        stages: list[tuple[str, Callable[[RawMaster], None], str]] = [
            ("before HELLO", lambda r: None, CLOSED),
            ("HELLO then close at once", hello_then_close, ""),
            ("after INIT", until(MsgType.INIT), CLOSED),
            ("ACK then close at once", ack_init_then_close, ""),
            ("after CONNECT", until(MsgType.CONNECT), CLOSED),
            ("after connect", lambda r: raw_master_handshake([db], r), CLOSED),
        ]
        for i, (name, steps, reason) in enumerate(stages):
            if i:
                rc = lib.memif_request_connection(slave.conn)
                if rc != 0:
                    problems.append(f"slave, {name}: request_connection returned {rc}")
            raw.accept(1)
            steps(raw)
            raw._free_connection()
            poll_until([db], lambda: open_fd_count() == base, 3, f"slave teardown {name}")
            err = slave.details().error
            if reason and err != reason:
                problems.append(f"slave, {name}: reason {err!r}")
            if not reason and not err:
                problems.append(f"slave, {name}: no reason recorded")
            if slave.connected or slave.connects != slave.disconnects:
                problems.append(f"slave, {name}: callbacks unpaired")
        # The reconnect timer still works after all that.
        db.set_timer(0.05)
        wait_readable([db], raw.listener, what="the timer's reconnect")
        raw_master_handshake([db], raw)
        poll_until([db], lambda: slave.connected, 3, "final connect")
    return problems


def test_peer_eof(tmp_path: Path) -> None:
    """Mirrors C#21 test_send: a peer closing at any stage never kills us (no SIGPIPE, X8).

    Runs in a child process with the default SIGPIPE action, so a send without
    MSG_NOSIGNAL to a closed peer would kill it.
    """
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(rfd)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            problems = _eof_against_our_master(str(tmp_path / "m.sock"))
            problems += _eof_against_our_slave(str(tmp_path / "s.sock"))
            os.write(wfd, "\n".join(problems).encode())
            code = 0
        except BaseException:
            os.write(wfd, traceback.format_exc().encode())
        finally:
            os._exit(code)
    os.close(wfd)
    try:
        deadline = time.monotonic() + 30
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the child hung")
            time.sleep(0.01)
        report = b""
        while chunk := os.read(rfd, 65536):
            report += chunk
    finally:
        os.close(rfd)
    assert not os.WIFSIGNALED(status), (
        f"child killed by signal {os.WTERMSIG(status)}: {report.decode()}")
    assert os.WEXITSTATUS(status) == 0, report.decode()
    assert report == b"", report.decode()


# --------------------------------------------------------------------------
# Protocol violations
# --------------------------------------------------------------------------


def _two_fds(raw: RawSlave) -> None:
    a, b = os.eventfd(0), os.eventfd(0)
    try:
        fds = array.array("i", [a, b]).tobytes()
        assert raw.sock is not None
        raw.sock.sendmsg([encode_init()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
    finally:
        os.close(a)
        os.close(b)


def _init_and_regions(db: Database, raw: RawSlave) -> None:
    raw.create_memory()
    raw.send_init()
    ack([db], raw)
    for i in range(2):
        raw.send_add_region(i)
        ack([db], raw)


def test_protocol_violations(sock: str, tmp_path: Path) -> None:
    """New (X7): out-of-protocol messages end that connection with a reason; no crash, no leak."""
    to_master: list[tuple[str, Callable[[Database, RawSlave], None], str]] = [
        ("100-byte message", lambda db, r: r.send_raw(encode_init()[:100]),
         "malformed message"),
        ("unknown type 42", lambda db, r: r.send_raw(encode_raw(42)), "unknown message type"),
        ("HELLO to a master", lambda db, r: r.send_raw(encode_hello("x")),
         "unexpected message"),
        ("second INIT", lambda db, r: (r.send_init(), ack([db], r), r.send_init()),
         "unexpected message"),
        ("ADD_RING before INIT", lambda db, r: (r.create_memory(),
                                                r.send_add_ring(Direction.S2M, 0)),
         "unexpected message"),
        ("CONNECT before any ADD_RING", lambda db, r: (_init_and_regions(db, r),
                                                       r.send_connect()),
         "incomplete ring set"),
        ("two fds on one message", lambda db, r: _two_fds(r), "malformed message"),
    ]
    failures: list[str] = []
    with Database(APP) as db:
        master = _our_master(db, sock)
        for name, steps, reason in to_master:
            base = open_fd_count()
            with RawSlave(sock) as raw:
                raw.negotiate(raw_slave_hello([db], raw))
                steps(db, raw)
                try:
                    got = read_reason([db], raw)
                except PeerDisconnectedError:
                    got = "<EOF without DISCONNECT>"
            if got != reason:
                failures.append(f"master, {name}: expected {reason!r}, got {got!r}")
            poll_until([db], lambda b=base: open_fd_count() == b, 3, f"fds after {name}")
        _good_slave_connects(db, master, sock)

    path = str(tmp_path / "slave.sock")
    to_slave: list[tuple[str, Callable[[RawMaster], None], str]] = [
        ("100-byte message", lambda r: r.send_raw(encode_hello()[:100]), "malformed message"),
        ("unknown type 42", lambda r: r.send_raw(encode_raw(42)), "unknown message type"),
        ("INIT to a slave", lambda r: r.send_raw(encode_init()), "unexpected message"),
        ("second HELLO", lambda r: (r.send_hello(), r.send_hello()), "unexpected message"),
        ("CONNECTED before CONNECT", lambda r: (r.send_hello(), r.send_connected()),
         "unexpected message"),
    ]
    with Database(APP) as db, _listening_raw_master(path) as raw:
        db.set_timer(0, 0)  # reconnect explicitly, so each case is observed on its own
        base = open_fd_count()
        slave = _our_slave(db, path)
        for i, (name, steps, reason) in enumerate(to_slave):
            if i:
                assert lib.memif_request_connection(slave.conn) == 0
            raw.accept(1)
            steps(raw)
            got = "<nothing>"
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:  # skip INIT sent in answer to a HELLO
                msg = wait_msg([db], raw)
                msg.close_fd()
                if msg.type == MsgType.DISCONNECT:
                    got = str(msg["string"])
                    break
            if got != reason:
                failures.append(f"slave, {name}: expected {reason!r}, got {got!r}")
            elif not at_eof([db], raw):
                failures.append(f"slave, {name}: not closed after DISCONNECT")
            raw._free_connection()
            poll_until([db], lambda: open_fd_count() == base, 3, f"fds after {name}")
            if slave.details().error != reason:
                failures.append(f"slave, {name}: recorded {slave.details().error!r}")
        db.set_timer(0.05)
        wait_readable([db], raw.listener, what="the final reconnect")
        raw_master_handshake([db], raw)
        poll_until([db], lambda: slave.connected, 3, "final connect")
        slave.tx_capacity = 2048
        assert send_packets(slave, 0, [b"after the violations"]) == 1
        assert raw.recv_until(0, 1) == [b"after the violations"]
    assert not failures, "\n".join(failures)
