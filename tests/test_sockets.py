"""Socket objects and socket files (libmemif-api §8.3, protocol spec §12)."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
from lowpair import (
    Database,
    Interface,
    abstract_name,
    assert_rc,
    poll_until,
    send_packets,
    sock_path,
)
from rawpeer import MsgType, RawMaster, RawSlave, recv_message

from memif_cffi.lowlevel import ffi, lib, new_conn_args

NULL = ffi.NULL


def _create_socket(db: Database, path: bytes) -> tuple[int, object]:
    p = ffi.new("memif_socket_handle_t *")
    rc = int(lib.memif_per_thread_create_socket(db.handle, p, path, NULL))
    if rc == 0:
        assert p[0] != NULL
        assert ffi.string(lib.memif_get_socket_filename(p[0])) == path
        assert_rc(lib.memif_delete_socket(p), "MEMIF_ERR_SUCCESS", "delete")
        assert p[0] == NULL
    else:
        assert p[0] == NULL
    return rc, p


def _create_master(db: Database, sock: object, id: int = 0) -> tuple[int, object]:
    args = new_conn_args(socket=sock.handle, is_master=True, interface_id=id)  # type: ignore[attr-defined]
    conn = ffi.new("memif_conn_handle_t *")
    rc = int(lib.memif_create(conn, args, NULL, NULL, NULL, NULL))
    if rc != 0:
        assert conn[0] == NULL
    return rc, conn


def _path_of_length(base: Path, length: int) -> str:
    """A path of exactly ``length`` bytes under ``base`` whose directories exist."""
    prefix = str(base) + "/"
    remaining = length - len(prefix)
    assert remaining > 10, "tmp path too long for this test"
    parts = []
    while remaining > 60:
        parts.append("d" * 49)
        remaining -= 50
    parts.append("s" * remaining)
    directory = base.joinpath(*parts[:-1])
    directory.mkdir(parents=True, exist_ok=True)
    path = prefix + "/".join(parts)
    assert len(path.encode()) == length
    return path


def test_create_socket_names() -> None:
    with Database() as db:
        for path in (b"/run/vpp/memif.sock", b"@unit_test_abstract", b"relative.sock",
                     b"/" + b"x" * 106, b"@" + b"y" * 106):
            assert_rc(_create_socket(db, path)[0], "MEMIF_ERR_SUCCESS", repr(path))
        for path in (b"", b"@", b"/" + b"x" * 107, b"@" + b"y" * 107, b"/" + b"z" * 300):
            assert_rc(_create_socket(db, path)[0], "MEMIF_ERR_INVAL_ARG", repr(path[:20]))
        p = ffi.new("memif_socket_handle_t *")
        assert_rc(lib.memif_per_thread_create_socket(db.handle, NULL, b"/x", NULL),
                  "MEMIF_ERR_INVAL_ARG", "sock NULL")
        assert_rc(lib.memif_per_thread_create_socket(db.handle, p, NULL, NULL),
                  "MEMIF_ERR_INVAL_ARG", "filename NULL")


def test_path_of_107_bytes_listens_108_refused(tmp_path: Path) -> None:
    path107 = _path_of_length(tmp_path, 107)
    with Database() as db:
        assert_rc(_create_socket(db, (path107 + "x").encode())[0], "MEMIF_ERR_INVAL_ARG",
                  "108 bytes")
        sock = db.socket(path107)
        master = Interface(db, sock, master=True)
        assert stat.S_ISSOCK(os.stat(path107).st_mode)
        with RawSlave(path107) as raw:
            raw.connect()
            poll_until([db], lambda: raw.sock is not None and _readable(raw.sock))
            assert raw.recv_hello()["name"] == "lowpair"
        master.delete()


def _readable(sock: socket.socket) -> bool:
    import select

    return bool(select.select([sock], [], [], 0)[0])


def test_create_master_makes_socket_file(tmp_path: Path) -> None:
    path = sock_path(tmp_path)
    with Database(external=True) as db:
        sock = db.socket(path)
        assert not os.path.exists(path), "socket object alone must not bind"
        master = Interface(db, sock, master=True)
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        listener = [fd for fd, ev in db.fd_events if ev == lib.MEMIF_FD_EVENT_READ]
        assert len(listener) == 2, db.fd_events  # timerfd + listener
        assert (master.args.num_s2m_rings, master.args.buffer_size) == (1, 2048)


def test_missing_directory(tmp_path: Path) -> None:
    with Database() as db:
        sock = db.socket(str(tmp_path / "no" / "such" / "dir.sock"))
        rc, conn = _create_master(db, sock)
        assert_rc(rc, "MEMIF_ERR_NO_FILE", "master in a missing directory")
        assert conn[0] == NULL
        assert not (tmp_path / "no").exists()


def test_regular_file_not_touched(tmp_path: Path) -> None:
    path = tmp_path / "file.sock"
    path.write_bytes(b"precious")
    with Database() as db:
        sock = db.socket(str(path))
        rc, _ = _create_master(db, sock)
        assert_rc(rc, "MEMIF_ERR_FILE_NOT_SOCK", "regular file at the path")
    assert path.read_bytes() == b"precious"


def test_directory_at_path(tmp_path: Path) -> None:
    path = tmp_path / "dir.sock"
    path.mkdir()
    with Database() as db:
        rc, _ = _create_master(db, db.socket(str(path)))
        assert rc != 0, "a directory at the path must be refused"
        assert path.is_dir()


def test_live_python_listener_refused(tmp_path: Path) -> None:
    path = sock_path(tmp_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(4)
    try:
        inode = os.stat(path).st_ino
        with Database() as db:
            rc, _ = _create_master(db, db.socket(path))
            assert_rc(rc, "MEMIF_ERR_ALREADY", "path owned by a live listener")
        assert os.stat(path).st_ino == inode, "the live listener's file was replaced"
        # The Python listener still works: a client reaches it.
        client = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        client.connect(path)
        client.send(b"ping")
        # The library's probe connection (closed at once) may be queued first.
        got = []
        for _ in range(2):
            conn, _ = listener.accept()
            got.append(conn.recv(16))
            conn.close()
            if got[-1]:
                break
        assert got[-1] == b"ping" and len(got) <= 2, got
        client.close()
    finally:
        listener.close()


def test_live_master_of_another_database_refused(tmp_path: Path) -> None:
    path = sock_path(tmp_path)
    with Database(b"a") as a, Database(b"b") as b:
        Interface(a, a.socket(path), master=True)
        rc, _ = _create_master(b, b.socket(path))
        assert_rc(rc, "MEMIF_ERR_ALREADY", "second master process/database on a path")
        # The first master is still reachable.
        with RawSlave(path) as raw:
            raw.connect()
            poll_until([a], lambda: _readable(raw.sock))  # type: ignore[arg-type]
            assert raw.recv_hello()["name"] == "a"


def test_abstract_live_listener_refused() -> None:
    name = abstract_name()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind("\0" + name[1:])
    listener.listen(1)
    try:
        with Database() as db:
            rc, _ = _create_master(db, db.socket(name))
            assert_rc(rc, "MEMIF_ERR_ALREADY", "abstract name in use")
    finally:
        listener.close()


def test_stale_socket_file_replaced(tmp_path: Path) -> None:
    path = sock_path(tmp_path)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    stale.bind(path)
    stale.close()  # file left behind, nobody listens
    assert os.path.exists(path)
    with Database(b"m") as mdb, Database(b"s") as sdb:
        master = Interface(mdb, mdb.socket(path), master=True)
        slave = Interface(sdb, sdb.socket(path), master=False)
        poll_until([mdb, sdb], lambda: master.connected and slave.connected)


def test_socket_file_removed_with_last_master(tmp_path: Path) -> None:
    path = sock_path(tmp_path)
    with Database() as db:
        sock = db.socket(path)
        m0 = Interface(db, sock, master=True, id=0)
        m1 = Interface(db, sock, master=True, id=1)
        m0.delete()
        assert os.path.exists(path), "the listener still serves id 1"
        m1.delete()
        assert not os.path.exists(path), "socket file left behind (C5)"
        # The socket object listens again for a new master.
        m2 = Interface(db, sock, master=True, id=2)
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        m2.delete()
        assert not os.path.exists(path)


def test_replaced_socket_file_left_alone(tmp_path: Path) -> None:
    path = sock_path(tmp_path)
    with Database() as db:
        master = Interface(db, db.socket(path), master=True)
        os.unlink(path)
        Path(path).write_text("someone else's file")
        master.delete()
    assert Path(path).read_text() == "someone else's file"


def test_duplicate_listening_path_in_one_database(tmp_path: Path) -> None:
    path = sock_path(tmp_path)
    with Database() as db:
        # Before anything listens, several objects may name the same path.
        assert_rc(_create_socket(db, path.encode())[0], "MEMIF_ERR_SUCCESS", "before listen")
        Interface(db, db.socket(path), master=True)
        assert_rc(_create_socket(db, path.encode())[0], "MEMIF_ERR_INVAL_ARG",
                  "same path as a listening socket")
        # Exact comparison, not a prefix (X17).
        for other in (path + "2", path[:-1], path + ".x"):
            assert_rc(_create_socket(db, other.encode())[0], "MEMIF_ERR_SUCCESS", other)


def test_abstract_master_and_slave() -> None:
    name = abstract_name()
    with Database(b"m") as mdb, Database(b"s") as sdb:
        master = Interface(mdb, mdb.socket(name), master=True)
        slave = Interface(sdb, sdb.socket(name), master=False)
        poll_until([mdb, sdb], lambda: master.connected and slave.connected)
        assert master.details().socket_filename == name
        assert slave.details().socket_filename == name
        assert not os.path.exists(name), "an abstract name created a file"
        slave.tx_capacity = 2048
        assert send_packets(slave, 0, [b"abstract"]) == 1


def test_abstract_address_length_exact() -> None:
    """Our master is reachable with the exact address length only (F6)."""
    name = abstract_name()
    with Database() as db:
        Interface(db, db.socket(name), master=True)
        exact = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        exact.connect("\0" + name[1:])
        poll_until([db], lambda: _readable(exact))
        msg = recv_message(exact, 2)
        assert msg is not None and msg.type == MsgType.HELLO
        exact.close()
        padded = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        full = ("\0" + name[1:]).encode().ljust(108, b"\0")
        with pytest.raises(ConnectionRefusedError):
            padded.connect(full)
        padded.close()


def test_abstract_slave_meets_exact_length_listener() -> None:
    name = abstract_name()
    raw = RawMaster(name, app_name="raw-abstract")
    raw.listen()
    try:
        with Database() as db:
            slave = Interface(db, db.socket(name), master=False)
            raw.accept(timeout=2)
            raw.send_hello()
            poll_until([db], lambda: _readable(raw.sock))  # type: ignore[arg-type]
            init = raw.recv(2)
            assert init.type == MsgType.INIT
            assert slave.details().remote_inst_name == "raw-abstract"
    finally:
        raw.close()
