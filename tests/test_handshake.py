"""Handshakes in one process: every role pairing, golden vectors, rejections.

Our master + our slave (two databases), our master + RawSlave, RawMaster + our
slave, over a filesystem socket and an abstract ``@`` name. The raw peers run
their blocking side in a thread while the test thread polls our database.
References: protocol spec §4, §9, §10, §14; libmemif-api §7, §8.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from golden import GOLDEN
from lowpair import (
    Database,
    Interface,
    abstract_name,
    connected_pair,
    get_details,
    open_fds,
    poll_for,
    poll_until,
    recv_packets,
    send_packets,
    sock_path,
)
from rawpeer import (
    COOKIE,
    Direction,
    MsgType,
    PeerDisconnectedError,
    RawMaster,
    RawSlave,
    encode_add_ring,
    encode_connected,
    encode_hello,
    encode_init,
    encode_raw,
    ring_stride,
)

from memif_cffi.lowlevel import ffi, lib

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------




class Background:
    """Run a blocking raw-peer step in a thread; the test thread keeps polling."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:
            self.error = exc

    def done(self) -> bool:
        return not self.thread.is_alive()

    def join(self) -> Any:
        self.thread.join(10)
        assert not self.thread.is_alive(), "raw peer thread hung"
        if self.error is not None:
            raise self.error
        return self.result


def readable(sock: socket.socket | None) -> bool:
    return sock is not None and bool(select.select([sock], [], [], 0)[0])


def paths(tmp_path: Path) -> list[str]:
    return [sock_path(tmp_path), abstract_name()]


# --------------------------------------------------------------------------
# Our master + our slave
# --------------------------------------------------------------------------


@pytest.mark.parametrize("external", [False, True], ids=["internal-poll", "external-poll"])
@pytest.mark.parametrize("abstract", [False, True], ids=["fs", "abstract"])
def test_pair_handshake_and_details(tmp_path: Path, abstract: bool, external: bool) -> None:
    with connected_pair(tmp_path, abstract=abstract, external=external, s2m=2, m2s=3,
                        log2=8, buffer_size=1024) as pair:
        m, s = pair.master, pair.slave
        assert (m.connects, m.disconnects, s.connects, s.disconnects) == (1, 0, 1, 0)
        # link_up_down is 1 from just before on_connect.
        assert m.link_in_callbacks == [("connect", 1)]
        assert s.link_in_callbacks == [("connect", 1)]
        md, sd = m.details(), s.details()
        assert (md.role, sd.role) == (0, 1)
        assert md.link_up_down == sd.link_up_down == 1
        assert md.error == sd.error == ""
        assert (md.if_name, md.inst_name) == ("pair-master", "lowpair-master")
        assert (md.remote_if_name, md.remote_inst_name) == ("pair-slave", "lowpair-slave")
        assert (sd.remote_if_name, sd.remote_inst_name) == ("pair-master", "lowpair-master")
        assert md.socket_filename == sd.socket_filename == pair.path
        # Regions (protocol spec §5.2): rings only, then buffers.
        stride = ring_stride(8)
        for d in (md, sd):
            assert d.regions_num == 2
            assert [r.index for r in d.regions] == [0, 1]
            assert d.regions[0].size == 5 * stride
            assert d.regions[1].size == 1024 * 256 * 5
            assert all(r.addr != 0 and r.fd >= 0 and r.is_external == 0 for r in d.regions)
        # Queues: master rx = S2M (2), tx = M2S (3); the slave the other way round.
        assert (md.rx_queues_num, md.tx_queues_num, sd.rx_queues_num, sd.tx_queues_num) == (
            2, 3, 3, 2)
        for q in md.rx_queues + md.tx_queues + sd.rx_queues + sd.tx_queues:
            assert q.ring_size == 256 and q.region == 0 and q.flags == 0
        assert [q.qid for q in md.rx_queues] == [0, 1]
        assert [q.qid for q in sd.rx_queues] == [0, 1, 2]
        assert {q.buffer_size for q in sd.rx_queues + sd.tx_queues} == {1024}
        assert {q.buffer_size for q in md.rx_queues + md.tx_queues} == {0}
        # The slave refilled every M2S ring in on_connect: head = N, tail = 0.
        assert [(q.head, q.tail) for q in sd.rx_queues] == [(256, 0)] * 3
        assert [(q.head, q.tail) for q in md.tx_queues] == [(256, 0)] * 3
        assert [(q.head, q.tail) for q in md.rx_queues] == [(0, 0)] * 2
        # Ring headers in shared memory, read through the master's mapping of region 0.
        base = ffi.cast("uint8_t *", md.regions[0].addr)
        for k in range(5):
            ring = ffi.cast("memif_ring_t *", base + k * stride)
            assert ring.cookie == COOKIE
        # Traffic on the last queue of each direction.
        assert send_packets(s, 1, [b"to master"]) == 1
        assert send_packets(m, 2, [b"to slave"]) == 1
        assert recv_packets(m, 1) == [b"to master"]
        assert recv_packets(s, 2) == [b"to slave"]
    # Deleting the slave (connected_pair exit) disconnected the master first:
    assert m.disconnects == 1 and s.disconnects == 1
    assert m.link_in_callbacks[-1] == ("disconnect", 0)
    assert s.link_in_callbacks[-1] == ("disconnect", 0)


def test_slave_delete_seen_by_master(tmp_path: Path) -> None:
    with connected_pair(tmp_path) as pair:
        pair.slave.delete()
        pair.poll_until(lambda: pair.master.disconnects == 1, what="master on_disconnect")
        d = pair.master.details()
        assert d.link_up_down == 0
        assert d.error == "interface deleted"
        assert (d.regions_num, d.rx_queues_num, d.tx_queues_num) == (0, 0, 0)
        assert pair.master.connects == 1
        # A new slave connects to the same master.
        again = Interface(pair.sdb, pair.sdb.sockets[0], master=False)
        pair.slave = again
        pair.poll_until(lambda: again.connected and pair.master.connects == 2)
        assert pair.master.details().error == ""


def test_fd_update_sequence(tmp_path: Path) -> None:
    """External polling: READ adds, never WRITE or MOD, a DEL for each fd before close."""
    before = open_fds()
    path = sock_path(tmp_path)
    mdb = Database(b"m", external=True)
    sdb = Database(b"s", external=True)
    try:
        m_timer = mdb.fd_events[0][0]
        master = Interface(mdb, mdb.socket(path), master=True, interrupts=True, s2m=2, m2s=1)
        slave = Interface(sdb, sdb.socket(path), master=False, interrupts=True, s2m=2, m2s=1)
        poll_until([mdb, sdb], lambda: master.connected and slave.connected)
        for db in (mdb, sdb):
            for _fd, ev in db.fd_events:
                assert ev in (lib.MEMIF_FD_EVENT_READ, lib.MEMIF_FD_EVENT_DEL), db.fd_events
            assert all(rc == 0 for rc in db.handler_rcs)
        # Master: timerfd, listener, accepted control fd, 2 rx eventfds.
        assert len(mdb.watched) == 5, mdb.watched
        # Slave: timerfd, control fd, 1 rx eventfd.
        assert len(sdb.watched) == 3, sdb.watched
        efd = ffi.new("int *")
        for q in range(2):
            assert lib.memif_get_queue_efd(master.conn, q, efd) == 0
            assert efd[0] in mdb.watched
        assert lib.memif_get_queue_efd(slave.conn, 0, efd) == 0
        assert efd[0] in sdb.watched
        slave.delete()
        poll_until([mdb], lambda: master.disconnects == 1)
        assert set(mdb.watched) == {m_timer, *(fd for fd, _ in mdb.fd_events[1:2])}
        assert len(sdb.watched) == 1  # only the timerfd
        master.delete()
        assert set(mdb.watched) == {m_timer}
    finally:
        mdb.close()
        sdb.close()
    assert not mdb.watched and not sdb.watched
    for db in (mdb, sdb):
        added = [fd for fd, ev in db.fd_events if ev != lib.MEMIF_FD_EVENT_DEL]
        deleted = [fd for fd, ev in db.fd_events if ev == lib.MEMIF_FD_EVENT_DEL]
        assert sorted(added) == sorted(deleted)
    assert open_fds() == before


def test_null_callbacks(tmp_path: Path) -> None:
    path = sock_path(tmp_path)
    with Database(b"m") as mdb, Database(b"s") as sdb:
        master = Interface(mdb, mdb.socket(path), master=True, null_callbacks=True)
        slave = Interface(sdb, sdb.socket(path), master=False, null_callbacks=True)
        poll_until([mdb, sdb], lambda: master.details().link_up_down == 1
                   and slave.details().link_up_down == 1)
        # Without on_connect the slave refills itself.
        assert lib.memif_refill_queue(slave.conn, 0, 0xFFFF, 0) == 0
        slave.tx_capacity = master.tx_capacity = 2048
        assert send_packets(slave, 0, [b"a"]) == 1 and send_packets(master, 0, [b"b"]) == 1
        assert recv_packets(master, 0) == [b"a"] and recv_packets(slave, 0) == [b"b"]
        slave.delete()
        poll_until([mdb], lambda: master.details().link_up_down == 0)


def test_slave_ring_size_wins(tmp_path: Path) -> None:
    path = sock_path(tmp_path)
    with Database(b"m") as mdb, Database(b"s") as sdb:
        master = Interface(mdb, mdb.socket(path), master=True, log2=10)
        slave = Interface(sdb, sdb.socket(path), master=False, log2=12)
        poll_until([mdb, sdb], lambda: master.connected and slave.connected)
        for d in (master.details(), slave.details()):
            assert {q.ring_size for q in d.rx_queues + d.tx_queues} == {4096}


def test_master_without_secret_accepts_any(tmp_path: Path) -> None:
    path = sock_path(tmp_path)
    with Database(b"m") as mdb, Database(b"s") as sdb:
        master = Interface(mdb, mdb.socket(path), master=True)
        slave = Interface(sdb, sdb.socket(path), master=False, secret=b"psst")
        poll_until([mdb, sdb], lambda: master.connected and slave.connected)
        assert slave.details().secret == "psst" and master.details().secret == ""


def test_many_interfaces_one_socket(tmp_path: Path) -> None:
    path = sock_path(tmp_path)
    with Database(b"m") as mdb, Database(b"s") as sdb:
        msock, ssock = mdb.socket(path), sdb.socket(path)
        masters = [Interface(mdb, msock, master=True, id=i) for i in range(4)]
        slaves = [Interface(sdb, ssock, master=False, id=i) for i in (3, 1, 0, 2)]
        poll_until([mdb, sdb], lambda: all(i.connected for i in masters + slaves))
        for s in slaves:
            s.tx_capacity = 2048
            assert send_packets(s, 0, [f"from slave {s.args.interface_id}".encode()]) == 1
        for i, m in enumerate(masters):
            assert recv_packets(m, 0) == [f"from slave {i}".encode()]


# --------------------------------------------------------------------------
# Our master + RawSlave
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fs", "abstract"])
def test_our_master_with_raw_slave(tmp_path: Path, kind: str) -> None:
    path = sock_path(tmp_path) if kind == "fs" else abstract_name()
    with Database(b"master-app") as db:
        master = Interface(db, db.socket(path), master=True, id=7, name=b"mif-m",
                           secret=b"sec")
        master.tx_capacity = 2048
        raw = RawSlave(path, id=7, secret="sec", app_name="slave-app", if_name="mif-s")
        try:
            bg = Background(raw.handshake)
            poll_until([db], lambda: bg.done() and master.connected)
            bg.join()
            got = [m.raw for m in raw.received]
            assert got[0] == GOLDEN["hello"], "HELLO differs from protocol spec §14"
            assert got[1:6] == [GOLDEN["ack"]] * 5
            assert got[6] == GOLDEN["connected"]
            assert all(m.fd is None for m in raw.received)
            d = master.details()
            assert (d.remote_if_name, d.remote_inst_name) == ("mif-s", "slave-app")
            assert d.secret == "sec" and d.link_up_down == 1
            # Traffic both ways, including a chain.
            frames = [b"x" * 60, bytes(range(256)) * 20, b"end"]
            assert raw.send_burst(0, frames) == 3
            assert recv_packets(master, 0) == frames
            assert send_packets(master, 0, frames) == 3
            assert raw.recv_until(0, 3) == frames
            master.delete()
            assert raw.poll_disconnect(2) == "interface deleted"
            assert raw.received[-1].raw == GOLDEN["disconnect"]
        finally:
            raw.close()


def test_init_checks_and_master_stays_usable(tmp_path: Path) -> None:
    """Protocol spec §9.4 / upstream C#25, with a good slave after every rejection (O3)."""
    path = sock_path(tmp_path)
    with Database(b"unit_test_app") as db:
        master = Interface(db, db.socket(path), master=True, id=69, secret=b"psst",
                           name=b"unit_test_if")

        def exchange(init: dict[str, Any]) -> str:
            with RawSlave(path, id=69, secret="psst") as raw:
                raw.connect()
                poll_until([db], lambda: readable(raw.sock))
                raw.recv_hello()
                raw.send_init(**init)
                poll_until([db], lambda: readable(raw.sock))
                msg = raw.recv(1)
                if msg.type == MsgType.ACK:
                    return "ACK"
                assert msg.type == MsgType.DISCONNECT, msg.type_name
                assert msg["code"] == 0
                poll_until([db], lambda: readable(raw.sock))
                with pytest.raises(PeerDisconnectedError):
                    raw.recv(1)  # then EOF
                return str(msg["string"])

        def good_slave_connects() -> None:
            raw = RawSlave(path, id=69, secret="psst")
            try:
                bg = Background(raw.handshake)
                poll_until([db], lambda: bg.done() and master.connected)
                bg.join()
                raw.close("interface deleted")
                poll_until([db], lambda: not master.connected)
            finally:
                raw.close()

        cases = [
            ({"version": 9}, "incompatible version"),
            ({"version": 0x0201}, "incompatible version"),
            ({"id": 78}, "unmatched interface id"),
            ({"mode": 1}, "mode mismatch"),
            ({"secret": b""}, "secret required"),
            ({"secret": b"pss"}, "incorrect secret"),
            ({"secret": b"psst!"}, "incorrect secret"),
        ]
        for init, reason in cases:
            assert exchange(init) == reason, init
            assert master.connects == master.disconnects
            good_slave_connects()
        assert master.connects == len(cases)
        assert exchange({}) == "ACK"

        # Already connected: a second slave while one is connected.
        first = RawSlave(path, id=69, secret="psst")
        try:
            bg = Background(first.handshake)
            poll_until([db], lambda: bg.done() and master.connected)
            bg.join()
            assert exchange({}) == "already connected"
            assert master.connected
            assert first.send(0, b"still connected")
            assert recv_packets(master, 0) == [b"still connected"]
        finally:
            first.close()


def test_receive_disconnect_no_answer(tmp_path: Path) -> None:
    path = sock_path(tmp_path)
    with Database() as db:
        master = Interface(db, db.socket(path), master=True)
        raw = RawSlave(path)
        try:
            bg = Background(raw.handshake)
            poll_until([db], lambda: bg.done() and master.connected)
            bg.join()
            count = len(raw.received)
            raw.send_disconnect("unit_test_dc", code=5)
            poll_until([db], lambda: master.disconnects == 1)
            d = master.details()
            assert d.error == "unit_test_dc" and d.link_up_down == 0
            assert (d.rx_queues_num, d.tx_queues_num, d.regions_num) == (0, 0, 0)
            with pytest.raises(PeerDisconnectedError) as info:
                raw.recv(2)
            assert info.value.reason == "", "our side answered a DISCONNECT (C2)"
            assert len(raw.received) == count
        finally:
            raw.close()


def test_peer_eof_after_connect(tmp_path: Path) -> None:
    path = sock_path(tmp_path)
    with Database() as db:
        master = Interface(db, db.socket(path), master=True)
        raw = RawSlave(path)
        bg = Background(raw.handshake)
        poll_until([db], lambda: bg.done() and master.connected)
        bg.join()
        raw.close()  # no DISCONNECT: just EOF
        poll_until([db], lambda: master.disconnects == 1)
        assert master.details().error == "connection closed by peer"


# --------------------------------------------------------------------------
# RawMaster + our slave
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fs", "abstract"])
def test_our_slave_with_raw_master(tmp_path: Path, kind: str) -> None:
    path = sock_path(tmp_path) if kind == "fs" else abstract_name()
    raw = RawMaster(path, id=7, secret="sec", app_name="master-app", if_name="mif-m")
    raw.listen()
    try:
        with Database(b"slave-app") as db:
            slave = Interface(db, db.socket(path), master=False, id=7, name=b"mif-s",
                              secret=b"sec", s2m=1, m2s=1, log2=10, buffer_size=2048)
            slave.tx_capacity = 2048
            bg = Background(lambda: raw.handshake(timeout=5))
            poll_until([db], lambda: bg.done() and slave.connected)
            bg.join()
            got = [m.raw for m in raw.received]
            assert got == [GOLDEN["init"], GOLDEN["add_region0"], GOLDEN["add_region1"],
                           GOLDEN["add_ring_s2m0"], GOLDEN["add_ring_m2s0"],
                           GOLDEN["connect"]], "slave messages differ from protocol spec §14"
            d = slave.details()
            assert (d.remote_if_name, d.remote_inst_name) == ("mif-m", "master-app")
            assert [r.size for r in d.regions] == [33024, 4194304]
            # The ring headers the raw master mapped carry the cookie; the slave refilled.
            assert all(r.cookie == COOKIE for r in raw.s2m + raw.m2s)
            assert raw.posted(0) == 1024
            desc = raw.m2s[0].get_desc(5)
            assert (desc.region, desc.offset, desc.length) == (1, (1024 + 5) * 2048, 2048)
            frames = [b"a", b"b" * 2048, b"c" * 2049, bytes(range(256)) * 35]
            assert raw.send_burst(0, frames) == 4
            assert recv_packets(slave, 0) == frames
            assert send_packets(slave, 0, frames) == 4
            assert raw.recv_until(0, 4) == frames
            slave.delete()
            assert raw.poll_disconnect(2) == "interface deleted"
            assert raw.received[-1].raw == GOLDEN["disconnect"]
    finally:
        raw.close()


def test_slave_lock_step_and_negotiation(tmp_path: Path) -> None:
    """HELLO limits are max ring *indices*; the slave waits for each ACK (§9.2, §9.3)."""
    path = sock_path(tmp_path)
    raw = RawMaster(path)
    raw.listen()
    try:
        with Database(b"unit_test_app") as db:
            slave = Interface(db, db.socket(path), master=False, id=0, s2m=4, m2s=6, log2=10,
                              buffer_size=2048)
            raw.accept(2)
            raw.send_hello(max_s2m_ring=1, max_m2s_ring=1, max_log2_ring_size=14)
            order = []
            while True:
                poll_until([db], lambda: readable(raw.sock))
                msg = raw.recv(1)
                order.append((msg.type, msg.get("flags"), msg.get("index")))
                # Lock step: nothing more arrives before our reply.
                poll_for([db], 0.02)
                assert not readable(raw.sock), f"second message before the reply to {order[-1]}"
                if raw.handle(msg):
                    break
            assert order == [
                (MsgType.INIT, None, None),
                (MsgType.ADD_REGION, None, 0), (MsgType.ADD_REGION, None, 1),
                (MsgType.ADD_RING, 1, 0), (MsgType.ADD_RING, 1, 1),
                (MsgType.ADD_RING, 0, 0), (MsgType.ADD_RING, 0, 1),
                (MsgType.CONNECT, None, None)]
            poll_until([db], lambda: slave.connected)
            d = slave.details()
            assert (d.tx_queues_num, d.rx_queues_num) == (2, 2)
            assert {q.ring_size for q in d.rx_queues} == {1024}
            offsets = [r.offset for r in raw.s2m + raw.m2s]
            assert offsets == [k * ring_stride(10) for k in range(4)]
            # Queue ids are checked against the negotiated counts once connected.
            assert lib.memif_set_rx_mode(slave.conn, lib.MEMIF_RX_MODE_POLLING, 1) == 0
            assert lib.memif_set_rx_mode(slave.conn, lib.MEMIF_RX_MODE_POLLING, 2) == (
                lib.MEMIF_ERR_QID)
            assert raw.m2s[1].flags & 1
            out = ffi.new("uint16_t *")
            bufs = ffi.new("memif_buffer_t[1]")
            assert lib.memif_buffer_alloc(slave.conn, 2, bufs, 1, out, 10) == lib.MEMIF_ERR_QID
            assert lib.memif_buffer_alloc(slave.conn, 1, bufs, 1, out, 10) == 0
    finally:
        raw.close()


def test_slave_refuses_incompatible_hello(tmp_path: Path) -> None:
    path = sock_path(tmp_path)
    raw = RawMaster(path)
    raw.listen()
    try:
        with Database() as db:
            slave = Interface(db, db.socket(path), master=False)
            raw.accept(2)
            raw.send_hello(min_version=9, max_version=9)
            poll_until([db], lambda: readable(raw.sock))
            msg = raw.recv(1)
            assert msg.type == MsgType.DISCONNECT
            assert msg["string"] == "incompatible version"
            poll_until([db], lambda: slave.details().error == "incompatible version")
            assert slave.connects == 0 and slave.disconnects == 0
            # It retries on the reconnect timer.
            db.set_timer(0.1)
            raw._free_connection()
            bg = Background(lambda: raw.handshake(timeout=5))
            poll_until([db], lambda: bg.done() and slave.connected)
            bg.join()
    finally:
        raw.close()


# --------------------------------------------------------------------------
# Mismatches between our master and our slave
# --------------------------------------------------------------------------

MISMATCHES = {
    "secret": ({"secret": b"psst"}, {"secret": b"pss"}, "incorrect secret"),
    "no-secret": ({"secret": b"psst"}, {}, "secret required"),
    "mode": ({"mode": 0}, {"mode": 1}, "mode mismatch"),
    "id": ({"id": 3}, {"id": 4}, "unmatched interface id"),
    "s2m-rings": ({"s2m": 1}, {"s2m": 2}, "too many rings"),
    "m2s-rings": ({"m2s": 2}, {"m2s": 3}, "too many rings"),
}


@pytest.mark.parametrize("case", sorted(MISMATCHES))
def test_mismatch_reason_and_master_survives(tmp_path: Path, case: str) -> None:
    master_kw, slave_kw, reason = MISMATCHES[case]
    path = sock_path(tmp_path)
    with Database(b"m") as mdb, Database(b"s") as sdb:
        master = Interface(mdb, mdb.socket(path), master=True, **master_kw)
        ssock = sdb.socket(path)
        bad = Interface(sdb, ssock, master=False, **slave_kw)
        poll_until([mdb, sdb], lambda: bad.details().error == reason, 5,
                   f"slave error {reason!r} (now {bad.details().error!r})")
        assert bad.connects == bad.disconnects == 0
        assert master.connects == master.disconnects == 0
        assert bad.details().link_up_down == 0 and master.details().link_up_down == 0
        if case != "id":
            # The master records the reason it sent (protocol spec §9.4, §10.3).
            poll_until([mdb, sdb], lambda: master.details().error == reason, 2,
                       f"master error {reason!r} (now {master.details().error!r})")
        bad.delete()
        good_kw = {k: v for k, v in master_kw.items()}
        good = Interface(sdb, ssock, master=False, **good_kw)
        poll_until([mdb, sdb], lambda: good.connected and master.connected, 5,
                   "a good slave after the rejection")
        good.tx_capacity = 2048
        assert send_packets(good, 0, [b"after " + case.encode()]) == 1
        assert recv_packets(master, 0) == [b"after " + case.encode()]


def test_details_from_callbacks_during_failed_handshake(tmp_path: Path) -> None:
    """O4: details on a master whose slave is rejected at ADD_RING never crash."""
    path = sock_path(tmp_path)
    seen: list[int] = []
    with Database(b"m") as mdb, Database(b"s") as sdb:
        master = Interface(mdb, mdb.socket(path), master=True, s2m=1,
                           on_disconnect=lambda i: seen.append(i.details().link_up_down))
        bad = Interface(sdb, sdb.socket(path), master=False, s2m=3)
        for _ in range(500):
            mdb.poll(1)
            sdb.poll(1)
            assert get_details(master.conn).link_up_down == 0
            if bad.details().error == "too many rings":
                break
        assert bad.details().error == "too many rings"
        assert seen == [], "on_disconnect for a handshake that never connected (C1)"


# --------------------------------------------------------------------------
# Many queues
# --------------------------------------------------------------------------


def test_255_queues_each_way(tmp_path: Path) -> None:
    with connected_pair(tmp_path, s2m=255, m2s=255, log2=3, buffer_size=256,
                        timeout=30) as pair:
        m, s = pair.master, pair.slave
        md = m.details(1 << 17)
        sd = s.details(1 << 17)
        assert (md.rx_queues_num, md.tx_queues_num) == (255, 255)
        assert (sd.rx_queues_num, sd.tx_queues_num) == (255, 255)
        assert md.regions[0].size == 510 * ring_stride(3)
        assert md.regions[1].size == 510 * 8 * 256
        for q in range(255):
            assert send_packets(s, q, [f"s2m {q}".encode() * 3]) == 1
            assert send_packets(m, q, [f"m2s {q}".encode() * 40]) == 1
        for q in range(255):
            assert recv_packets(m, q) == [f"s2m {q}".encode() * 3]
            assert recv_packets(s, q) == [f"m2s {q}".encode() * 40]


def test_raw_master_255_rings_offsets(tmp_path: Path) -> None:
    """Ring offsets for many rings follow §5.2 (k x stride, S2M first) in 32-bit arithmetic."""
    path = sock_path(tmp_path)
    raw = RawMaster(path)
    raw.listen()
    try:
        with Database() as db:
            slave = Interface(db, db.socket(path), master=False, s2m=16, m2s=16, log2=12,
                              buffer_size=2048)
            bg = Background(lambda: raw.handshake(timeout=10))
            poll_until([db], lambda: bg.done() and slave.connected, 10)
            bg.join()
            stride = ring_stride(12)
            assert [r.offset for r in raw.s2m] == [k * stride for k in range(16)]
            assert [r.offset for r in raw.m2s] == [(16 + k) * stride for k in range(16)]
            assert raw.regions[1].size == 32 * 4096 * 2048
            # Every posted M2S buffer is distinct and where §5.2 puts it.
            last = raw.m2s[15]
            offs = {last.get_desc(j).offset for j in range(4096)}
            assert offs == {((16 + 15) * 4096 + j) * 2048 for j in range(4096)}
            assert raw.send(15, b"last queue") and recv_packets(slave, 15) == [b"last queue"]
            slave.tx_capacity = 2048
            assert send_packets(slave, 15, [b"back"]) == 1
            assert raw.recv_until(15, 1) == [b"back"]
    finally:
        raw.close()


def test_add_ring_direction_flags(tmp_path: Path) -> None:
    path = sock_path(tmp_path)
    raw = RawMaster(path)
    raw.listen()
    try:
        with Database() as db:
            Interface(db, db.socket(path), master=False, s2m=1, m2s=2)
            bg = Background(lambda: raw.handshake(timeout=5))
            poll_until([db], bg.done)
            bg.join()
            rings = [m for m in raw.received if m.type == MsgType.ADD_RING]
            assert [(r["flags"], r["index"], r["private_hdr_size"]) for r in rings] == [
                (1, 0, 0), (0, 0, 0), (0, 1, 0)]
            assert {r.direction for r in raw.s2m} == {Direction.S2M}
    finally:
        raw.close()


# --------------------------------------------------------------------------
# Hostile slaves: checks on ADD_REGION / ADD_RING / CONNECT and protocol errors
# --------------------------------------------------------------------------


def _init_regions(raw: RawSlave) -> None:
    raw.send_init()
    raw.expect_ack()
    for i in range(2):
        raw.send_add_region(i)
        raw.expect_ack()


def _all_rings(raw: RawSlave) -> None:
    _init_regions(raw)
    for d, n in ((Direction.S2M, raw.num_s2m), (Direction.M2S, raw.num_m2s)):
        for i in range(n):
            raw.send_add_ring(d, i)
            raw.expect_ack()


def _two_fds(raw: RawSlave) -> None:
    import array
    import os

    a, b = os.eventfd(0), os.eventfd(0)
    try:
        fds = array.array("i", [a, b]).tobytes()
        raw._require_sock().sendmsg([encode_init(0)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                         fds)])
    finally:
        os.close(a)
        os.close(b)


def _bad_cookie(raw: RawSlave) -> None:
    raw.m2s[1].cookie = 0x12345678
    _all_rings(raw)
    raw.send_connect()


HOSTILE = {
    "region-no-fd": (lambda r: (r.send_init(), r.expect_ack(),
                                r.send_add_region(0, with_fd=False)), "missing region fd"),
    "region-index-1-first": (lambda r: (r.send_init(), r.expect_ack(), r.send_add_region(1)),
                             "invalid region index"),
    "region-too-large": (lambda r: (r.send_init(), r.expect_ack(), r.send_add_region(
        0, size=r.regions[0].size + 65536)), "invalid region size"),
    "region-size-0": (lambda r: (r.send_init(), r.expect_ack(), r.send_add_region(
        0, size=0)), "invalid region size"),
    "ring-no-fd": (lambda r: (_init_regions(r), r.send_add_ring(Direction.S2M, 0,
                                                                with_fd=False)),
                   "missing interrupt fd"),
    "ring-private-hdr": (lambda r: (_init_regions(r), r.send_add_ring(
        Direction.S2M, 0, private_hdr_size=3)), "private headers not supported"),
    "ring-index-2": (lambda r: (_init_regions(r), r.send_raw(encode_add_ring(
        Direction.M2S, 2, offset=r.m2s[0].offset, log2_ring_size=r.log2_ring_size),
        r.m2s[0].eventfd)), "too many rings"),
    "ring-twice": (lambda r: (_init_regions(r), r.send_add_ring(Direction.S2M, 0),
                              r.expect_ack(), r.send_add_ring(Direction.S2M, 0)),
                   "too many rings"),
    "ring-log2-15": (lambda r: (_init_regions(r), r.send_add_ring(
        Direction.S2M, 0, log2_ring_size=15)), "ring size too large"),
    "ring-outside-region": (lambda r: (_init_regions(r), r.send_add_ring(
        Direction.S2M, 0, offset=r.regions[0].size - 64)), "invalid ring"),
    "ring-misaligned": (lambda r: (_init_regions(r), r.send_add_ring(
        Direction.S2M, 0, offset=4)), "invalid ring"),
    "ring-unknown-region": (lambda r: (_init_regions(r), r.send_add_ring(
        Direction.S2M, 0, region=5)), "invalid ring"),
    "connect-without-rings": (lambda r: (_init_regions(r), r.send_connect()),
                              "incomplete ring set"),
    "bad-cookie": (_bad_cookie, "invalid ring cookie"),
    "short-message": (lambda r: r.send_raw(encode_init(0)[:100]), "malformed message"),
    "unknown-type": (lambda r: r.send_raw(encode_raw(42)), "unknown message type"),
    "hello-to-master": (lambda r: r.send_raw(encode_hello("evil")), "unexpected message"),
    "second-init": (lambda r: (r.send_init(), r.expect_ack(), r.send_init()),
                    "unexpected message"),
    "ring-before-init": (lambda r: r.send_add_ring(Direction.S2M, 0), "unexpected message"),
    "connected-to-master": (lambda r: r.send_raw(encode_connected("x")), "unexpected message"),
    "two-fds": (_two_fds, "malformed message"),
}


def test_hostile_slaves_rejected_master_survives(tmp_path: Path) -> None:
    """Protocol spec §9.5 / §9.6 (upstream C#26, C#27, X7): every bad message ends that
    connection with the documented reason; the master keeps serving and leaks nothing."""
    path = sock_path(tmp_path)
    with Database(b"unit_test_app") as db:
        master = Interface(db, db.socket(path), master=True, s2m=2, m2s=2)
        before = open_fds()
        failures = []
        for case, (steps, reason) in HOSTILE.items():
            raw = RawSlave(path, num_s2m_rings=2, num_m2s_rings=2)

            def script(raw: RawSlave = raw, steps: Any = steps) -> str:
                raw.connect()
                raw.negotiate(raw.recv_hello())
                raw.create_memory()
                try:
                    steps(raw)
                    msg = raw.recv(3)
                except PeerDisconnectedError as exc:
                    return exc.reason
                if msg.type != MsgType.DISCONNECT:
                    return f"got {msg.type_name}"
                return str(msg["string"])

            try:
                bg = Background(script)
                poll_until([db], bg.done, 5, case)
                got = bg.join()
            finally:
                raw.close()
            if got != reason:
                failures.append(f"{case}: expected {reason!r}, got {got!r}")
            poll_for([db], 0.01)
            assert not master.connected and master.connects == 0
        # The master still accepts a good slave, and nothing leaked.
        good = RawSlave(path, num_s2m_rings=2, num_m2s_rings=2)
        try:
            bg = Background(good.handshake)
            poll_until([db], lambda: bg.done() and master.connected)
            bg.join()
            assert good.send(1, b"good") and recv_packets(master, 1) == [b"good"]
        finally:
            good.close("interface deleted")
        poll_until([db], lambda: master.disconnects == 1)
        assert open_fds() == before
        assert not failures, "\n".join(failures)


def test_per_thread_poll_isolation(tmp_path: Path) -> None:
    """X1: polling one database dispatches only its own events."""
    with Database(b"a-m") as am, Database(b"a-s") as as_, Database(b"b-m") as bm, \
            Database(b"b-s") as bs:
        pa, pb = sock_path(tmp_path, "a.sock"), sock_path(tmp_path, "b.sock")
        a_master = Interface(am, am.socket(pa), master=True)
        a_slave = Interface(as_, as_.socket(pa), master=False)
        b_master = Interface(bm, bm.socket(pb), master=True)
        b_slave = Interface(bs, bs.socket(pb), master=False)
        poll_until([am, as_], lambda: a_master.connected and a_slave.connected)
        poll_for([am, as_], 0.1)
        assert b_master.events == [] and b_slave.events == []
        poll_until([bm, bs], lambda: b_master.connected and b_slave.connected)
        assert a_master.connects == 1 and b_master.connects == 1
