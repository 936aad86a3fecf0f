"""Upstream-tests spec §3: socket objects, socket files and abstract addresses.

Mirrors the Unity cases U#12 CreateSocket and U#13 DeleteSocket, plus the
socket-file behaviours upstream never tested. References: libmemif-api §8.3,
§11 (F5, F6, X15, X17, C5); protocol spec §12.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any

from lowpair import Database, Interface, poll_until, recv_packets, send_packets
from rawpeer import MsgType
from uphelpers import APP, NULL, expect, path_of_length, readable

from memif_cffi.lowlevel import ffi, lib, new_conn_args


def _new_socket(db: Database, path: bytes) -> tuple[int, Any]:
    p = ffi.new("memif_socket_handle_t *")
    rc = int(lib.memif_per_thread_create_socket(db.handle, p, path, NULL))
    if rc != 0:
        assert p[0] == NULL, "a failed create_socket set the handle"
    return rc, p


def _master(db: Database, sock: Any, id: int = 0) -> tuple[int, Any]:
    args = new_conn_args(socket=sock[0], is_master=True, interface_id=id)
    conn = ffi.new("memif_conn_handle_t *")
    rc = int(lib.memif_create(conn, args, NULL, NULL, NULL, NULL))
    if rc != 0:
        assert conn[0] == NULL
    return rc, conn


def _bound_stale_file(path: str) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.bind(path)
    s.close()


def _hello_from(db: Database, address: str) -> bytes:
    """Connect a raw SOCK_SEQPACKET client to ``address`` and return the first message."""
    c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        c.connect(address)
        poll_until([db], lambda: readable(c), 3, "HELLO")
        return c.recv(256)
    finally:
        c.close()


def test_create_socket(sock: str, abstract: str) -> None:
    """Mirrors U#12 CreateSocket: the object keeps its filename (path or @name)."""
    with Database(APP) as db:
        for name in (sock.encode(), abstract.encode()):
            rc, p = _new_socket(db, name)
            expect(rc, "SUCCESS", f"create_socket {name!r}")
            assert p[0] != NULL
            assert ffi.string(lib.memif_get_socket_filename(p[0])) == name
            expect(lib.memif_delete_socket(p), "SUCCESS", "delete_socket")


def test_delete_socket(sock: str) -> None:
    """Mirrors U#13 DeleteSocket: unused sockets go; one in use is refused."""
    with Database(APP) as db:
        rc, p = _new_socket(db, sock.encode())
        expect(rc, "SUCCESS", "create_socket")
        expect(lib.memif_delete_socket(p), "SUCCESS", "delete unused socket")
        assert p[0] == NULL
        expect(lib.memif_delete_socket(p), "INVAL_ARG", "delete a NULL handle")
        expect(lib.memif_delete_socket(NULL), "INVAL_ARG", "delete_socket(NULL)")

        rc, p = _new_socket(db, sock.encode())
        rc, conn = _master(db, p)
        expect(rc, "SUCCESS", "master")
        expect(lib.memif_delete_socket(p), "INVAL_ARG", "delete a socket in use")
        assert p[0] != NULL
        assert os.path.exists(sock)
        expect(lib.memif_delete(conn), "SUCCESS", "delete interface")
        expect(lib.memif_delete_socket(p), "SUCCESS", "delete socket after its interface")
        assert lib.memif_get_socket_filename(NULL) == NULL


def test_socket_path_too_long(tmp_path: Path) -> None:
    """New (F5): a 108-byte path is refused, a 107-byte path works end to end."""
    path107 = path_of_length(tmp_path, 107)
    with Database(APP) as db:
        rc, _ = _new_socket(db, (path107 + "x").encode())
        expect(rc, "INVAL_ARG", "108-byte path")
        rc, _ = _new_socket(db, b"@" + b"a" * 107)
        expect(rc, "INVAL_ARG", "abstract name of 108 bytes with the @")
        rc, p = _new_socket(db, path107.encode())
        expect(rc, "SUCCESS", "107-byte path")
        rc, conn = _master(db, p)
        expect(rc, "SUCCESS", "master on the 107-byte path")
        assert stat.S_ISSOCK(os.stat(path107).st_mode)
        assert _hello_from(db, path107)[0] == MsgType.HELLO
        expect(lib.memif_delete(conn), "SUCCESS", "delete")
        expect(lib.memif_delete_socket(p), "SUCCESS", "delete socket")


def test_socket_duplicate_listener(sock: str) -> None:
    """New (X17): a second object for a listened-on path is refused; a prefix is not a match."""
    with Database(APP) as db:
        rc, first = _new_socket(db, sock.encode())
        rc, conn = _master(db, first)
        expect(rc, "SUCCESS", "master")
        rc, _ = _new_socket(db, sock.encode())
        expect(rc, "INVAL_ARG", "same path while listening")
        handles = []
        for other in (sock + "2", sock[:-1]):
            rc, p = _new_socket(db, other.encode())
            expect(rc, "SUCCESS", f"path sharing a prefix: {other}")
            handles.append(p)
        for p in handles:
            expect(lib.memif_delete_socket(p), "SUCCESS", "delete")
        expect(lib.memif_delete(conn), "SUCCESS", "delete master")
        expect(lib.memif_delete_socket(first), "SUCCESS", "delete socket")


def test_stale_socket_file(sock: str) -> None:
    """New: a socket file nobody listens on is replaced by a new master; a slave connects."""
    _bound_stale_file(sock)
    assert stat.S_ISSOCK(os.stat(sock).st_mode)
    with Database(b"m") as mdb, Database(b"s") as sdb:
        master = Interface(mdb, mdb.socket(sock), master=True)
        slave = Interface(sdb, sdb.socket(sock), master=False)
        poll_until([mdb, sdb], lambda: master.connected and slave.connected, 3)
        slave.tx_capacity = 2048
        assert send_packets(slave, 0, [b"over a once-stale path"]) == 1
        assert recv_packets(master, 0) == [b"over a once-stale path"]


def test_live_socket_file(sock: str) -> None:
    """New (X15): a path someone listens on is not hijacked: ALREADY, listener intact."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        listener.bind(sock)
        listener.listen(4)
        inode = os.stat(sock).st_ino
        with Database(APP) as db:
            rc, p = _new_socket(db, sock.encode())
            rc, _conn = _master(db, p)
            expect(rc, "ALREADY", "master on a live listener's path")
            expect(lib.memif_delete_socket(p), "SUCCESS", "delete socket")
        assert os.stat(sock).st_ino == inode, "the live listener's file was replaced"
        client = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            client.connect(sock)
            client.send(b"ping")
            listener.settimeout(2)
            got = b""
            for _ in range(2):  # the library's probe connection may be queued first
                accepted, _ = listener.accept()
                with accepted:
                    accepted.settimeout(0.5)
                    try:
                        got = accepted.recv(16)
                    except TimeoutError:
                        got = b""
                if got:
                    break
            assert got == b"ping", "the Python listener no longer works"
        finally:
            client.close()
    finally:
        listener.close()


def test_non_socket_file(sock: str) -> None:
    """New (X15): a regular file at the path gives FILE_NOT_SOCK and is left untouched."""
    Path(sock).write_bytes(b"not a socket\n")
    with Database(APP) as db:
        rc, p = _new_socket(db, sock.encode())
        rc, _conn = _master(db, p)
        expect(rc, "FILE_NOT_SOCK", "master on a regular file")
        expect(lib.memif_delete_socket(p), "SUCCESS", "delete socket")
    assert Path(sock).read_bytes() == b"not a socket\n"


def test_socket_file_removed_on_delete(sock: str) -> None:
    """New (C5): the last master's delete unlinks its own socket file, and only its own."""
    with Database(APP) as db:
        rc, p = _new_socket(db, sock.encode())
        rc, m0 = _master(db, p, 0)
        rc, m1 = _master(db, p, 1)
        expect(lib.memif_delete(m0), "SUCCESS", "delete first master")
        assert os.path.exists(sock), "file removed while a master still listens"
        expect(lib.memif_delete(m1), "SUCCESS", "delete last master")
        assert not os.path.exists(sock), "the socket file was left behind"

        # Replaced by someone else meanwhile: left alone.
        rc, m2 = _master(db, p, 2)
        expect(rc, "SUCCESS", "listen again")
        os.unlink(sock)
        Path(sock).write_text("someone else's file")
        expect(lib.memif_delete(m2), "SUCCESS", "delete")
        assert Path(sock).read_text() == "someone else's file"
        expect(lib.memif_delete_socket(p), "SUCCESS", "delete socket")


def test_abstract_address_length(abstract: str) -> None:
    """New (F6): @name is the abstract address of exactly offsetof(sun_path) + len bytes."""
    name = abstract[1:]
    # Our slave meets a raw listener bound with the exact length.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        listener.bind("\0" + name)
        listener.listen(1)
        with Database(APP) as db:
            slave = Interface(db, db.socket(abstract), master=False)
            assert readable(listener, 2), "our slave did not reach the exact-length address"
            conn, _ = listener.accept()
            conn.close()
            slave.delete()
    finally:
        listener.close()

    with Database(APP) as db:
        master = Interface(db, db.socket(abstract), master=True)
        # Reachable with the exact length ...
        assert _hello_from(db, "\0" + name)[0] == MsgType.HELLO
        # ... but not at the address padded to sizeof(struct sockaddr_un).
        padded = ("\0" + name).ljust(108, "\0")
        c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            try:
                c.connect(padded)
                reached = True
            except ConnectionRefusedError:
                reached = False
            assert not reached, "the master is bound to the padded address"
        finally:
            c.close()
        master.delete()
