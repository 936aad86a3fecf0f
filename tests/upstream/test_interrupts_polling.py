"""Upstream-tests spec §6: interrupts, polling mode and the event loop.

Mirrors C#6 test_control_fd_handler and the Unity cases U#5 (fd update /
epoll), U#7 (timer without interval) and U#8 (poll_event). Upstream injected a
fake fd into an internal list and called the internal epoll helper; here the
fd-update calls of a real connection are recorded and real events dispatched.
References: libmemif-api §7, §8.5, §8.6, §11 (F8, X1, X5, X12); protocol
spec §8, §11.
"""

from __future__ import annotations

import os
import random
import select
import threading
import time
from pathlib import Path
from typing import Any

from lowpair import (
    NOBUF,
    Database,
    Interface,
    connected_pair,
    fd_readable,
    poll_for,
    poll_until,
    recv_packets,
    refill,
    rx_burst,
    send_packets,
)
from uphelpers import APP, NULL, expect, fd_open

from memif_cffi.lowlevel import ffi, lib, set_global_fd_update

READ = lib.MEMIF_FD_EVENT_READ
DEL = lib.MEMIF_FD_EVENT_DEL
POLLING = lib.MEMIF_RX_MODE_POLLING
INTERRUPT = lib.MEMIF_RX_MODE_INTERRUPT


def test_interrupt_mode(tmp_path: Path) -> None:
    """New: one tx burst raises on_interrupt with the queue's id; rx_burst drains the eventfd."""
    with connected_pair(tmp_path, s2m=2, m2s=2, interrupts=True) as pair:
        for tx, rx in ((pair.slave, pair.master), (pair.master, pair.slave)):
            for q in (1, 0):
                efd = rx.queue_efd(q)
                rx.interrupts.clear()
                assert send_packets(tx, q, [b"irq %d" % i for i in range(32)]) == 32
                pair.poll_until(lambda rx=rx: bool(rx.interrupts), what="on_interrupt")
                assert set(rx.interrupts) == {q}
                assert fd_readable(efd), "the library read the eventfd itself"
                assert recv_packets(rx, q) == [b"irq %d" % i for i in range(32)]
                assert not fd_readable(efd), "rx_burst did not drain the eventfd"


def test_polling_mode(tmp_path: Path) -> None:
    """New (X12): POLLING sets the ring flag, silences the eventfd, survives reconnects."""
    path = str(tmp_path / "poll.sock")
    with Database(b"m") as mdb, Database(b"s") as sdb:
        sdb.set_timer(0.05)
        slave = Interface(sdb, sdb.socket(path), master=False, m2s=2, interrupts=True)
        # Before connecting: accepted for a configured queue, applied at connect.
        expect(lib.memif_set_rx_mode(slave.conn, POLLING, 1), "SUCCESS", "before connect")
        expect(lib.memif_set_rx_mode(slave.conn, POLLING, 2), "QID", "unconfigured queue")
        expect(lib.memif_set_rx_mode(slave.conn, 2, 0), "INVAL_ARG", "rx_mode 2")
        expect(lib.memif_set_rx_mode(NULL, POLLING, 0), "NOCONN", "NULL conn")
        msock = mdb.socket(path)
        for rnd in range(2):  # the second round is a reconnect
            master = Interface(mdb, msock, master=True, m2s=2)
            master.tx_capacity = 2048
            poll_until([mdb, sdb], lambda m=master: m.connected and slave.connected, 3)
            assert [q.flags for q in slave.details().rx_queues] == [0, 1], f"round {rnd}"
            efd = slave.queue_efd(1)
            slave.interrupts.clear()
            assert send_packets(master, 1, [b"polled"] * 8) == 8
            poll_for([mdb, sdb], 0.05)
            assert not fd_readable(efd), "eventfd signalled in polling mode"
            assert slave.interrupts == []
            assert recv_packets(slave, 1) == [b"polled"] * 8
            assert send_packets(master, 0, [b"interrupt"]) == 1
            assert fd_readable(slave.queue_efd(0), 1.0), "queue 0 is still in interrupt mode"
            assert recv_packets(slave, 0) == [b"interrupt"]
            master.delete()
            poll_until([sdb], lambda r=rnd: slave.disconnects == r + 1, 3)
        # Back to interrupt mode.
        expect(lib.memif_set_rx_mode(slave.conn, INTERRUPT, 1), "SUCCESS", "interrupt")
        master = Interface(mdb, msock, master=True, m2s=2)
        poll_until([mdb, sdb], lambda: master.connected and slave.connected, 3)
        assert [q.flags for q in slave.details().rx_queues] == [0, 0]


def test_queue_efd(tmp_path: Path) -> None:
    """New: memif_get_queue_efd gives the rx eventfd; -1 with an error otherwise."""
    fd = ffi.new("int *")
    with Database(b"lonely") as db:
        lonely = Interface(db, db.socket(str(tmp_path / "nobody.sock")), master=False)
        fd[0] = 1234
        expect(lib.memif_get_queue_efd(lonely.conn, 0, fd), "DISCONNECTED", "not connected")
        assert fd[0] == -1
    fd[0] = 1234
    expect(lib.memif_get_queue_efd(NULL, 0, fd), "NOCONN", "NULL conn")
    assert fd[0] == -1
    with connected_pair(tmp_path) as pair:
        expect(lib.memif_get_queue_efd(pair.master.conn, 0, NULL), "INVAL_ARG", "NULL fd")
        fd[0] = 1234
        expect(lib.memif_get_queue_efd(pair.master.conn, 1, fd), "QID", "qid 1 of 1")
        assert fd[0] == -1
        for tx, rx in ((pair.slave, pair.master), (pair.master, pair.slave)):
            expect(lib.memif_get_queue_efd(rx.conn, 0, fd), "SUCCESS", "queue 0")
            assert select.select([fd[0]], [], [], 0)[0] == []
            assert send_packets(tx, 0, [b"wake"]) == 1
            assert select.select([fd[0]], [], [], 1.0)[0] == [fd[0]]
            assert recv_packets(rx, 0) == [b"wake"]


def test_no_lost_wakeup(tmp_path: Path) -> None:
    """New (X5): a consumer sleeping only on the eventfd never misses a packet."""
    total = 300
    with connected_pair(tmp_path) as pair:
        efd = pair.master.queue_efd(0)
        errors: list[BaseException] = []

        def produce() -> None:
            rng = random.Random(5)
            try:
                for i in range(total):
                    while send_packets(pair.slave, 0, [i.to_bytes(4, "little")]) != 1:
                        time.sleep(0.0005)
                    if rng.random() < 0.3:
                        time.sleep(rng.random() * 0.002)
            except BaseException as exc:
                errors.append(exc)

        producer = threading.Thread(target=produce)
        producer.start()
        got: list[int] = []
        try:
            while len(got) < total and not errors:
                ready = select.select([efd], [], [], 1.0)[0]
                assert ready, f"no wake-up with {len(got)} of {total} received"
                rc, bufs, n = rx_burst(pair.master.conn, 0, 1)
                assert rc in (0, NOBUF)
                got += [int.from_bytes(ffi.buffer(bufs[i].data, 4)[:], "little")
                        for i in range(n)]
                assert refill(pair.master.conn, 0, n) == 0
        finally:
            producer.join(30)
        assert not errors, errors
        assert got == list(range(total))


def test_poll_event_timeout(global_db: None) -> None:
    """Mirrors U#8 MemifPollEvent: timeouts in milliseconds; cancel from any thread."""
    expect(lib.memif_init(NULL, APP, NULL, NULL, NULL), "SUCCESS", "memif_init")
    start = time.monotonic()
    expect(lib.memif_poll_event(0), "SUCCESS", "poll(0)")
    assert time.monotonic() - start < 0.05
    start = time.monotonic()
    expect(lib.memif_poll_event(200), "SUCCESS", "poll(200)")
    took = time.monotonic() - start
    assert 0.15 < took < 1.0, f"poll_event(200) took {took:.3f} s"
    expect(lib.memif_cancel_poll_event(), "SUCCESS", "cancel")
    start = time.monotonic()
    expect(lib.memif_poll_event(-1), "POLL_CANCEL", "poll(-1) after a cancel")
    assert time.monotonic() - start < 0.5
    canceller = threading.Timer(0.1, lib.memif_cancel_poll_event)
    canceller.start()
    start = time.monotonic()
    rc = lib.memif_poll_event(-1)
    took = time.monotonic() - start
    canceller.join()
    expect(rc, "POLL_CANCEL", "poll(-1) cancelled by another thread")
    assert 0.05 < took < 2.0, took
    expect(lib.memif_cleanup(), "SUCCESS", "cleanup")


def test_per_thread_poll_isolation(tmp_path: Path) -> None:
    """New (X1): polling database A handles only A's events; B's wait for B's poll."""
    dbs = []
    pairs = []
    try:
        for name in ("a", "b"):
            db = Database(name.encode())
            dbs.append(db)
            path = str(tmp_path / f"{name}.sock")
            msock, ssock = db.socket(path), db.socket(path)  # both before listening
            master = Interface(db, msock, master=True, name=b"m")
            slave = Interface(db, ssock, master=False, name=b"s")
            pairs.append((master, slave))
        a, b = dbs
        poll_until([a], lambda: all(i.connected for i in pairs[0]), 3, "pair A")
        poll_for([a], 0.1)
        assert [i.events for i in pairs[1]] == [[], []], "B's callbacks ran while polling A"
        poll_until([b], lambda: all(i.connected for i in pairs[1]), 3, "pair B")
        assert [i.connects for i in pairs[0] + pairs[1]] == [1, 1, 1, 1]
    finally:
        for db in dbs:
            db.close()


def test_fd_update_sequence(tmp_path: Path, global_db: None) -> None:
    """Mirrors U#5 / C#6: READ for each fd, never WRITE or MOD, DEL before every close.

    Upstream's C#6 injected a fake fd 69 into an internal list; here the handler is
    given the real timerfd and an fd the library never saw, both giving SUCCESS.
    """
    path = str(tmp_path / "fds.sock")
    adds: dict[str, list[str]] = {"m": [], "s": []}
    problems: list[str] = []
    live: dict[str, set[int]] = {"m": set(), "s": set()}

    def recorder(side: str) -> Any:
        def on_update(fd: int, events: int) -> int:
            if events not in (READ, DEL):
                problems.append(f"{side}: fd {fd} announced with events {events:#x}")
            elif events == DEL:
                if not fd_open(fd):
                    problems.append(f"{side}: DEL for fd {fd} after it was closed")
                if fd not in live[side]:
                    problems.append(f"{side}: DEL for fd {fd} never added")
                live[side].discard(fd)
            else:
                if fd in live[side]:
                    problems.append(f"{side}: fd {fd} added twice")
                live[side].add(fd)
                link = os.readlink(f"/proc/self/fd/{fd}")
                adds[side].append(link.split(":")[1] if link.startswith("anon_inode:")
                                  else link.split(":")[0])
            return 0
        return on_update

    with Database(b"m", external=True, fd_update_result=recorder("m")) as mdb, \
            Database(b"s", external=True, fd_update_result=recorder("s")) as sdb:
        master = Interface(mdb, mdb.socket(path), master=True, s2m=2, m2s=1, interrupts=True)
        slave = Interface(sdb, sdb.socket(path), master=False, s2m=2, m2s=1, interrupts=True)
        poll_until([mdb, sdb], lambda: master.connected and slave.connected, 3)
        assert all(rc == 0 for rc in mdb.handler_rcs + sdb.handler_rcs)
        slave.delete()
        poll_until([mdb], lambda: master.disconnects == 1, 3)
        master.delete()
    assert not problems, "\n".join(problems)
    assert live == {"m": set(), "s": set()}, f"fds never announced DEL: {live}"
    # Master: timerfd, listener, accepted control socket, its 2 rx (S2M) eventfds.
    assert adds["m"] == ["[timerfd]", "socket", "socket", "[eventfd]", "[eventfd]"]
    # Slave: timerfd, control socket, its 1 rx (M2S) eventfd.
    assert adds["s"] == ["[timerfd]", "socket", "[eventfd]"]

    # memif_control_fd_handler on the global database: known and unknown fds.
    calls: list[tuple[int, int]] = []
    cb = set_global_fd_update(lambda fd, ev, ctx: calls.append((fd, ev)) or 0)
    expect(lib.memif_init(cb, APP, NULL, NULL, NULL), "SUCCESS", "memif_init")
    timerfd = calls[0][0]
    expect(lib.memif_control_fd_handler(timerfd, READ), "SUCCESS", "timerfd READ")
    r, w = os.pipe()
    try:
        expect(lib.memif_control_fd_handler(r, READ), "SUCCESS", "an fd the library never saw")
        assert fd_open(r) and fd_open(w)
    finally:
        os.close(r)
        os.close(w)
    expect(lib.memif_cleanup(), "SUCCESS", "cleanup")
    assert calls[-1] == (timerfd, DEL)


def test_timer_disabled(tmp_path: Path) -> None:
    """Mirrors U#7 (no timer): an all-zero timer stops retries; request_connection works."""
    path = str(tmp_path / "notimer.sock")
    with Database(b"m") as mdb, Database(b"s") as sdb:
        sdb.set_timer(0.1)
        sdb.set_timer(0, 0)
        slave = Interface(sdb, sdb.socket(path), master=False)
        master = Interface(mdb, mdb.socket(path), master=True)
        poll_for([mdb, sdb], 1.0)
        assert not slave.connected and not master.connected
        expect(lib.memif_request_connection(slave.conn), "SUCCESS", "request_connection")
        poll_until([mdb, sdb], lambda: master.connected and slave.connected, 2)
        expect(lib.memif_request_connection(slave.conn), "ALRCONN", "request when connected")
        expect(lib.memif_request_connection(master.conn), "INVAL_ARG", "request on a master")


def test_timer_no_spin(tmp_path: Path) -> None:
    """New (F8): each timer expiry is read; about 20 events per second, not thousands."""
    period = 0.05
    with Database(APP) as db:
        db.set_timer(period)
        Interface(db, db.socket(str(tmp_path / "nobody.sock")), master=False)
        watchdog = threading.Timer(2.0, lib.memif_per_thread_cancel_poll_event, [db.handle])
        watchdog.start()
        events = 0
        end = time.monotonic() + 1.0
        try:
            while time.monotonic() < end:
                rc = lib.memif_per_thread_poll_event(db.handle, -1)
                expect(rc, "SUCCESS", "poll_event(-1)")
                events += 1
        finally:
            watchdog.cancel()
            watchdog.join()
        assert 5 <= events <= 40, f"{events} events in 1 s with a {period} s timer"
