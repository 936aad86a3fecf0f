"""Upstream-tests spec §2: interface creation and deletion.

Mirrors C#3 test_create, C#4 test_create_master, C#5 test_create_mult and the
Unity cases U#6 (connection request timer), U#9 (create master), U#10 (create
slave) and U#11 (delete). Upstream read the reconnect timer and the socket list
from library internals; here the same facts are observed through
memif_get_details, the socket file, the announced fds and real connections.
References: libmemif-api §8.4, §5.1; protocol spec §11, §12.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any

from lowpair import (
    Database,
    Interface,
    get_details,
    poll_for,
    poll_until,
    recv_packets,
    send_packets,
)
from rawpeer import MsgType
from uphelpers import APP, IF_NAME, NULL, expect, readable, strerror

from memif_cffi.lowlevel import ffi, lib, new_conn_args

READ = lib.MEMIF_FD_EVENT_READ


def _create(db: Database, path_or_sock: Any, **kw: Any) -> tuple[int, Any, Any]:
    """memif_create without callbacks; returns (rc, conn pointer, args)."""
    sock = path_or_sock if not isinstance(path_or_sock, str) else db.socket(path_or_sock)
    args = new_conn_args(socket=sock.handle, **kw)
    conn = ffi.new("memif_conn_handle_t *")
    rc = int(lib.memif_create(conn, args, NULL, NULL, NULL, NULL))
    return rc, conn, args


def _written_back(args: Any) -> tuple[int, int, int, int]:
    return (args.num_s2m_rings, args.num_m2s_rings, args.buffer_size, args.log2_ring_size)


def test_create_slave_defaults(sock: str) -> None:
    """Mirrors C#3 test_create: a slave with zeroed arguments gets the defaults."""
    with Database(APP) as db:
        rc, conn, args = _create(db, sock, interface_name=IF_NAME)
        expect(rc, "SUCCESS", "slave create with nobody listening")
        assert conn[0] != NULL
        assert _written_back(args) == (1, 1, 2048, 10)
        d = get_details(conn[0])
        assert d.if_name == "unit_test_if" and d.inst_name == "unit_test_app"
        assert (d.role, d.mode, d.id, d.link_up_down) == (1, 0, 0, 0)
        assert d.error, "the failed connect was not recorded"
        expect(lib.memif_delete(conn), "SUCCESS", "memif_delete")
        assert conn[0] == NULL


def test_slave_retries_on_timer(sock: str) -> None:
    """Mirrors C#3/C#5/U#6: a slave reconnects on the request timer, no explicit request."""
    with Database(b"m") as mdb, Database(b"s") as sdb:
        sdb.set_timer(0.1)
        slave = Interface(sdb, sdb.socket(sock), master=False)
        poll_for([sdb], 0.2)
        assert not slave.connected
        master = Interface(mdb, mdb.socket(sock), master=True)
        took = poll_until([mdb, sdb], lambda: master.connected and slave.connected, 3,
                          "both on_connect")
        assert took < 1.0, f"connected only after {took:.2f} s with a 100 ms timer"
        assert (slave.connects, master.connects) == (1, 1)


def test_create_master(tmp_path: Path) -> None:
    """Mirrors C#4 test_create_master / U#9: a master listens on a socket file it created."""
    path = str(tmp_path / "memif.sock")
    with Database(APP, external=True) as db:
        assert len(db.fd_events) == 1  # the timerfd
        rc, conn, args = _create(db, path, is_master=True, interface_name=IF_NAME)
        expect(rc, "SUCCESS", "master create")
        try:
            assert stat.S_ISSOCK(os.stat(path).st_mode)
            assert _written_back(args) == (1, 1, 2048, 10)
            assert len(db.fd_events) == 2, db.fd_events
            listener, events = db.fd_events[1]
            assert events == READ
            probe = socket.socket(fileno=os.dup(listener))
            try:
                assert probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
                assert probe.type == socket.SOCK_SEQPACKET
            finally:
                probe.close()
            d = get_details(conn[0])
            assert (d.role, d.socket_filename, d.if_name) == (0, path, "unit_test_if")
        finally:
            expect(lib.memif_delete(conn), "SUCCESS", "delete")


def test_create_master_no_dir(tmp_path: Path) -> None:
    """Mirrors C#4 (which failed without /run/vpp): a missing directory gives NO_FILE."""
    with Database(APP) as db:
        rc, conn, _ = _create(db, str(tmp_path / "missing" / "memif.sock"), is_master=True)
        expect(rc, "NO_FILE", "master in a missing directory")
        assert conn[0] == NULL
        assert not (tmp_path / "missing").exists()


def test_create_master_abstract(abstract: str, tmp_path: Path,
                                monkeypatch: Any) -> None:
    """Mirrors U#9 (abstract socket): no file; reachable at the exact-length address."""
    monkeypatch.chdir(tmp_path)
    with Database(APP) as db:
        rc, conn, _ = _create(db, abstract, is_master=True)
        expect(rc, "SUCCESS", "abstract master")
        try:
            assert list(tmp_path.iterdir()) == [], "an abstract master created a file"
            raw = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                raw.connect("\0" + abstract[1:])  # Python passes the exact length
                poll_until([db], lambda: readable(raw))
                data = raw.recv(256)
                assert len(data) == 128 and data[0] == MsgType.HELLO
            finally:
                raw.close()
        finally:
            expect(lib.memif_delete(conn), "SUCCESS", "delete")


def test_create_multiple_slaves(sock: str) -> None:
    """Mirrors C#5 test_create_mult: two slaves (ids 0, 1) on one socket both connect."""
    with Database(b"m") as mdb, Database(b"s") as sdb:
        sdb.set_timer(0.1)
        ssock = sdb.socket(sock)
        slaves = []
        for i in (0, 1):
            s = Interface(sdb, ssock, master=False, id=i, name=b"s%d" % i)
            assert _written_back(s.args) == (1, 1, 2048, 10)
            slaves.append(s)
        msock = mdb.socket(sock)
        masters = [Interface(mdb, msock, master=True, id=i, name=b"m%d" % i) for i in (0, 1)]
        poll_until([mdb, sdb], lambda: all(x.connected for x in slaves + masters), 3)
        for i in (0, 1):
            assert slaves[i].details().remote_if_name == f"m{i}"
            assert masters[i].details().remote_if_name == f"s{i}"


def test_create_slave_without_listener(tmp_path: Path) -> None:
    """Mirrors U#10 MemifCreateSlave: creating a slave nobody answers still succeeds."""
    stale = str(tmp_path / "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.bind(stale)
    s.close()
    with Database(APP) as db:
        rc, conn, _ = _create(db, str(tmp_path / "missing.sock"), is_master=False)
        expect(rc, "SUCCESS", "slave on a missing path")
        assert get_details(conn[0]).error == strerror(lib.MEMIF_ERR_NO_FILE)
        rc2, conn2, _ = _create(db, stale, is_master=False)
        expect(rc2, "SUCCESS", "slave on a socket nobody listens on")
        assert get_details(conn2[0]).error == strerror(lib.MEMIF_ERR_CONNREFUSED)
        for c in (conn, conn2):
            expect(lib.memif_delete(c), "SUCCESS", "delete")


def test_delete_sets_handle_null(sock: str) -> None:
    """Mirrors U#11 MemifDelete: delete NULLs the handle; a second delete is NOCONN."""
    with Database(APP) as db:
        for master in (True, False):
            rc, conn, _ = _create(db, db.socket(sock), is_master=master)
            expect(rc, "SUCCESS", "create")
            expect(lib.memif_delete(conn), "SUCCESS", "delete")
            assert conn[0] == NULL
            expect(lib.memif_delete(conn), "NOCONN", "delete again")
        expect(lib.memif_delete(NULL), "NOCONN", "delete(NULL)")


def test_create_handle_not_null(sock: str) -> None:
    """New: memif_create into a handle that already holds an interface is CONN."""
    with Database(APP) as db:
        msock = db.socket(sock)
        rc, conn, _ = _create(db, msock, is_master=True, interface_name=b"first")
        expect(rc, "SUCCESS", "create")
        held = conn[0]
        args = new_conn_args(socket=msock.handle, is_master=True, interface_id=1)
        expect(lib.memif_create(conn, args, NULL, NULL, NULL, NULL), "CONN", "second create")
        assert conn[0] == held
        assert get_details(conn[0]).if_name == "first"
        expect(lib.memif_delete(conn), "SUCCESS", "delete")


def test_create_bad_args(tmp_path: Path) -> None:
    """New: argument checks of memif_create (ring size, mode, region size, roles, ids)."""
    with Database(APP) as db:
        path = str(tmp_path / "a.sock")
        for master in (True, False):
            rc, conn, _ = _create(db, path, is_master=master, log2_ring_size=15)
            expect(rc, "MAX_RING", "log2 15")
            assert conn[0] == NULL
            rc, conn, _ = _create(db, path, is_master=master, mode=3)
            expect(rc, "INVAL_ARG", "mode 3")
            assert conn[0] == NULL
        # Buffer region 1 larger than 4 GiB (its offsets are 32-bit), and just below.
        rc, conn, _ = _create(db, path, is_master=False, num_s2m_rings=255, num_m2s_rings=255,
                              log2_ring_size=14, buffer_size=2048)
        expect(rc, "INVAL_ARG", "510 rings x 16384 x 2048 bytes")
        assert conn[0] == NULL
        rc, conn, _ = _create(db, path, is_master=False, num_s2m_rings=3, num_m2s_rings=2,
                              log2_ring_size=14, buffer_size=65535)
        expect(rc, "INVAL_ARG", "5 x 16384 x 65535 bytes > 2^32 - 1")
        rc, conn, _ = _create(db, path, is_master=False, num_s2m_rings=2, num_m2s_rings=2,
                              log2_ring_size=14, buffer_size=65535)
        expect(rc, "SUCCESS", "4 x 16384 x 65535 bytes < 2^32")
        expect(lib.memif_delete(conn), "SUCCESS", "delete")

        # Roles on one socket object, and a duplicate master id.
        shared = db.socket(str(tmp_path / "b.sock"))
        rc, slave, _ = _create(db, shared, is_master=False)
        expect(rc, "SUCCESS", "slave")
        rc, conn, _ = _create(db, shared, is_master=True)
        expect(rc, "INVAL_ARG", "master on a slave's socket")
        assert conn[0] == NULL
        expect(lib.memif_delete(slave), "SUCCESS", "delete slave")

        other = db.socket(str(tmp_path / "c.sock"))
        rc, master, _ = _create(db, other, is_master=True, interface_id=5)
        expect(rc, "SUCCESS", "master")
        rc, conn, _ = _create(db, other, is_master=False)
        expect(rc, "INVAL_ARG", "slave on a master's socket")
        rc, conn, _ = _create(db, other, is_master=True, interface_id=5)
        expect(rc, "INVAL_ARG", "second master with id 5")
        assert conn[0] == NULL
        rc, conn, _ = _create(db, other, is_master=True, interface_id=6)
        expect(rc, "SUCCESS", "second master with id 6")
        for c in (conn, master):
            expect(lib.memif_delete(c), "SUCCESS", "delete")


def test_null_callbacks(sock: str) -> None:
    """New (X3): NULL on_connect / on_disconnect / on_interrupt never crash."""
    with Database(b"m") as mdb, Database(b"s") as sdb:
        master = Interface(mdb, mdb.socket(sock), master=True, null_callbacks=True)
        slave = Interface(sdb, sdb.socket(sock), master=False, null_callbacks=True)
        poll_until([mdb, sdb], lambda: master.details().link_up_down == 1
                   and slave.details().link_up_down == 1, 3, "connect without callbacks")
        expect(lib.memif_refill_queue(slave.conn, 0, 0xFFFF, 0), "SUCCESS", "refill")
        slave.tx_capacity = master.tx_capacity = 2048
        assert send_packets(slave, 0, [b"to master"]) == 1
        assert send_packets(master, 0, [b"to slave"]) == 1
        assert recv_packets(master, 0) == [b"to master"]
        assert recv_packets(slave, 0) == [b"to slave"]
        slave.delete()
        poll_until([mdb], lambda: master.details().link_up_down == 0, 3, "master sees delete")
        master.delete()

