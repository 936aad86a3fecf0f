"""Reconnection: the slave's reconnect timer, master restarts, peers that die.

References: protocol spec §10, §11; libmemif-api §8.4, §8.5, §8.6 (X12), §11.4 (C1).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cprog import build_program
from lowpair import (
    Database,
    Interface,
    assert_rc,
    connected_pair,
    open_fds,
    poll_for,
    poll_until,
    recv_packets,
    send_packets,
    sock_path,
)

from memif_cffi.lowlevel import lib


def _roundtrip(master: Interface, slave: Interface, tag: bytes) -> None:
    master.tx_capacity = master.tx_capacity or 2048
    slave.tx_capacity = slave.tx_capacity or 2048
    assert send_packets(slave, 0, [b"s2m " + tag]) == 1
    assert send_packets(master, 0, [b"m2s " + tag]) == 1
    assert recv_packets(master, 0) == [b"s2m " + tag]
    assert recv_packets(slave, 0) == [b"m2s " + tag]


def test_reconnect_after_master_restart(tmp_path: Path) -> None:
    with connected_pair(tmp_path) as pair:
        pair.sdb.set_timer(0.1)
        msock = pair.mdb.sockets[0]
        master, slave = pair.master, pair.slave
        _roundtrip(master, slave, b"0")
        for rnd in range(1, 6):
            master.delete()
            pair.poll_until(lambda r=rnd: slave.disconnects == r, what="slave on_disconnect")
            assert slave.details().error == "interface deleted"
            assert slave.details().link_up_down == 0
            master = Interface(pair.mdb, msock, master=True, name=b"pair-master")
            took = pair.poll_until(lambda m=master: m.connected and slave.connected, 3,
                                   f"reconnect {rnd}")
            assert took < 1.5, f"reconnect took {took:.2f} s with a 100 ms timer"
            assert slave.connects == rnd + 1 and slave.disconnects == rnd
            assert slave.details().error == ""
            _roundtrip(master, slave, str(rnd).encode())


def test_slave_started_before_master(tmp_path: Path) -> None:
    path = sock_path(tmp_path)
    with Database(b"m") as mdb, Database(b"s") as sdb:
        sdb.set_timer(0.1)
        slave = Interface(sdb, sdb.socket(path), master=False)
        err = slave.details().error
        assert err, "the failed first connect records a reason"
        poll_for([sdb], 0.25)
        assert not slave.connected
        master = Interface(mdb, mdb.socket(path), master=True)
        took = poll_until([mdb, sdb], lambda: master.connected and slave.connected, 3)
        assert took < 1.0, took
        _roundtrip(master, slave, b"late master")


def test_set_timer_rearms_at_once(tmp_path: Path) -> None:
    path = sock_path(tmp_path)
    with Database(b"m") as mdb, Database(b"s") as sdb:
        slave = Interface(sdb, sdb.socket(path), master=False)  # default 2 s timer
        master = Interface(mdb, mdb.socket(path), master=True)
        sdb.set_timer(0.05)
        took = poll_until([mdb, sdb], lambda: master.connected and slave.connected, 3)
        assert took < 1.0, f"the new timer value was not applied at once ({took:.2f} s)"


def test_timer_disabled_then_request_connection(tmp_path: Path) -> None:
    path = sock_path(tmp_path)
    with Database(b"m") as mdb, Database(b"s") as sdb:
        sdb.set_timer(0, 0)
        slave = Interface(sdb, sdb.socket(path), master=False)
        master = Interface(mdb, mdb.socket(path), master=True)
        poll_for([mdb, sdb], 0.5)
        assert not slave.connected and not master.connected
        assert_rc(lib.memif_request_connection(slave.conn), "MEMIF_ERR_SUCCESS",
                  "request_connection")
        poll_until([mdb, sdb], lambda: master.connected and slave.connected, 2)
        assert_rc(lib.memif_request_connection(slave.conn), "MEMIF_ERR_ALRCONN",
                  "request_connection while connected")


def test_request_connection_errors(tmp_path: Path) -> None:
    with Database() as db:
        db.set_timer(0, 0)
        missing = Interface(db, db.socket(sock_path(tmp_path, "missing.sock")), master=False)
        assert_rc(lib.memif_request_connection(missing.conn), "MEMIF_ERR_NO_FILE", "no file")
        stale = sock_path(tmp_path, "stale.sock")
        import socket

        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.bind(stale)
        s.close()
        refused = Interface(db, db.socket(stale), master=False)
        assert_rc(lib.memif_request_connection(refused.conn), "MEMIF_ERR_CONNREFUSED",
                  "nobody listening")
        assert refused.details().error


def test_timer_does_not_spin(tmp_path: Path) -> None:
    """F8: each expiry is read; a 50 ms timer gives ~20 events per second, not thousands."""
    with Database() as db:
        db.set_timer(0.05)
        Interface(db, db.socket(sock_path(tmp_path)), master=False)
        events = 0
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            assert_rc(lib.memif_per_thread_poll_event(db.handle, 100), "MEMIF_ERR_SUCCESS",
                      "poll")
            events += 1
        assert 5 <= events <= 60, events


def test_rx_mode_survives_reconnect(tmp_path: Path) -> None:
    """X12: stored rx modes are applied at every connect, on both sides."""
    path = sock_path(tmp_path)
    with Database(b"m") as mdb, Database(b"s") as sdb:
        sdb.set_timer(0.1)
        msock, ssock = mdb.socket(path), sdb.socket(path)
        slave = Interface(sdb, ssock, master=False, m2s=2)
        assert_rc(lib.memif_set_rx_mode(slave.conn, lib.MEMIF_RX_MODE_POLLING, 1),
                  "MEMIF_ERR_SUCCESS", "polling before connect")
        master = Interface(mdb, msock, master=True, m2s=2)
        poll_until([mdb, sdb], lambda: master.connected and slave.connected, 3)
        assert [q.flags for q in slave.details().rx_queues] == [0, 1]
        master.set_rx_mode(lib.MEMIF_RX_MODE_POLLING, 0)
        for rnd in range(2):
            # Master restart: the slave recreates its rings with flags 0 ...
            master.delete()
            poll_until([sdb], lambda r=rnd: slave.disconnects == r + 1)
            master = Interface(mdb, msock, master=True, m2s=2)
            master.set_rx_mode(lib.MEMIF_RX_MODE_POLLING, 0)  # before connect this time
            poll_until([mdb, sdb], lambda m=master: m.connected and slave.connected, 3)
            # ... and re-applies its stored mode.
            assert [q.flags for q in slave.details().rx_queues] == [0, 1]
            assert [q.flags for q in master.details().rx_queues] == [1]
        # Slave restart: the master re-applies its mode too.
        slave.delete()
        poll_until([mdb], lambda: not master.connected)
        slave = Interface(sdb, ssock, master=False, m2s=2)
        poll_until([mdb, sdb], lambda: master.connected and slave.connected, 3)
        assert [q.flags for q in master.details().rx_queues] == [1]
        assert [q.flags for q in slave.details().rx_queues] == [0, 0]


def test_disconnect_releases_everything(tmp_path: Path) -> None:
    """C#13: after the peer leaves, counts are 0 and every connection fd is closed."""
    path = sock_path(tmp_path)
    with Database(b"m") as mdb:
        master = Interface(mdb, mdb.socket(path), master=True, s2m=2, m2s=2, interrupts=True)
        before = open_fds()
        for rnd in range(3):
            with Database(b"s") as sdb:
                slave = Interface(sdb, sdb.socket(path), master=False, s2m=2, m2s=2,
                                  interrupts=True)
                poll_until([mdb, sdb], lambda s=slave: master.connected and s.connected)
                _roundtrip(master, slave, b"%d" % rnd)
                slave.delete()
            poll_until([mdb], lambda r=rnd: master.disconnects == r + 1)
            d = master.details()
            assert (d.link_up_down, d.regions_num, d.rx_queues_num, d.tx_queues_num) == (
                0, 0, 0, 0)
            assert open_fds() == before, f"round {rnd}: fds leaked"
        assert master.connects == master.disconnects == 3


def test_callbacks_pair_up(tmp_path: Path) -> None:
    """C1: on_disconnect exactly once per on_connect, on both sides, whoever leaves."""
    with connected_pair(tmp_path) as pair:
        pair.sdb.set_timer(0.1)
        pair.master.delete()
        pair.poll_until(lambda: pair.slave.disconnects == 1)
        master = Interface(pair.mdb, pair.mdb.sockets[0], master=True)
        pair.poll_until(lambda: master.connected and pair.slave.connected)
        pair.slave.delete()
        pair.poll_until(lambda: master.disconnects == 1)
        assert pair.slave.events == ["connect", "disconnect", "connect", "disconnect"]
        assert master.events == ["connect", "disconnect"]
        assert pair.master.events == ["connect", "disconnect"]


# --------------------------------------------------------------------------
# A peer in another process that gets killed
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def echo_peer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_program("echo_peer", tmp_path_factory.mktemp("echo"))


@contextmanager
def spawn(exe: Path, role: str, path: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([str(exe), role, path, "1", "30"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _echo(intf: Interface, dbs: list[Database], payload: bytes) -> None:
    # A master may connect before the slave process has posted its buffers.
    poll_until(dbs, lambda: send_packets(intf, 0, [payload]) == 1, 3, "room to send")
    got: list[bytes] = []
    poll_until(dbs, lambda: bool(got.extend(recv_packets(intf, 0)) or got), 3, "echo")
    assert got == [payload]


def test_killed_master_process_restarted(tmp_path: Path, echo_peer: Path) -> None:
    path = sock_path(tmp_path)
    with Database(b"s") as sdb:
        sdb.set_timer(0.1)
        slave = Interface(sdb, sdb.socket(path), master=False)
        slave.tx_capacity = 2048
        for rnd in range(3):
            with spawn(echo_peer, "master", path) as proc:
                poll_until([sdb], lambda r=rnd: slave.connects == r + 1, 5, "connect")
                _echo(slave, [sdb], b"echo %d" % rnd + b"x" * 3000)
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
            poll_until([sdb], lambda r=rnd: slave.disconnects == r + 1, 3, "disconnect")
            assert slave.details().error == "connection closed by peer"
            assert os.path.exists(path), "a killed master leaves its socket file"
        # The stale file does not stop a new master (protocol spec §12.2).
        with spawn(echo_peer, "master", path):
            poll_until([sdb], lambda: slave.connects == 4, 5)
            _echo(slave, [sdb], b"after stale file")


def test_killed_slave_process_replaced(tmp_path: Path, echo_peer: Path) -> None:
    path = sock_path(tmp_path)
    with Database(b"m") as mdb:
        master = Interface(mdb, mdb.socket(path), master=True)
        master.tx_capacity = 2048
        for rnd in range(3):
            with spawn(echo_peer, "slave", path) as proc:
                poll_until([mdb], lambda r=rnd: master.connects == r + 1, 5, "connect")
                _echo(master, [mdb], b"echo %d" % rnd + b"y" * 5000)
                proc.send_signal(signal.SIGKILL)
                proc.wait(5)
            poll_until([mdb], lambda r=rnd: master.disconnects == r + 1, 3, "disconnect")
            assert master.details().error == "connection closed by peer"
            assert master.details().link_up_down == 0
