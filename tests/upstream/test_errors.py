"""Upstream-tests spec §8: versions, error codes and texts, errno mapping, teardown.

Mirrors the Unity cases U#1 MemifGetVersion, U#2 MemifGetVersionStr, U#3
MemifStrError and the Check case C#13 test_disconnect_internal (which called
the internal disconnect on a hand-built connection; here a real peer leaves).
References: libmemif-api §3.1, §8.1, §9, §10, §11 (O6, X16); protocol spec §10.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from pathlib import Path

import pytest
from lowpair import Database, Interface, open_fds, poll_until, recv_packets, send_packets
from uphelpers import APP, NULL, expect, strerror

from memif_cffi import errors
from memif_cffi.lowlevel import ffi, lib, new_conn_args

#: libmemif-api §3.1, in code order.
CODES = [
    "SUCCESS", "SYSCALL", "CONNREFUSED", "ACCES", "NO_FILE", "FILE_LIMIT", "PROC_FILE_LIMIT",
    "ALREADY", "AGAIN", "BAD_FD", "NOMEM", "INVAL_ARG", "NOCONN", "CONN", "CB_FDUPDATE",
    "FILE_NOT_SOCK", "NO_SHMFD", "COOKIE", "NOBUF_RING", "NOBUF", "NOBUF_DET", "INT_WRITE",
    "MFMSG", "QID", "PROTO", "ID", "ACCSLAVE", "ALRCONN", "MODE", "SECRET", "NOSECRET",
    "MAXREG", "MAXRING", "NO_INTFD", "DISCONNECT", "DISCONNECTED", "UNKNOWN_MSG",
    "POLL_CANCEL", "MAX_RING", "PRIVHDR",
]


def test_version() -> None:
    """Mirrors U#1 MemifGetVersion: the protocol version 2.0; the library version "3.1"."""
    assert lib.memif_get_version() == 0x0200 == 512 == lib.MEMIF_VERSION
    assert ffi.string(lib.LIBMEMIF_VERSION) == b"3.1"


def test_version_str() -> None:
    """Mirrors U#2 MemifGetVersionStr (a 4.x function, an optional extension here)."""
    if not hasattr(lib, "memif_get_version_str"):
        pytest.skip("memif_get_version_str is not built")
    assert ffi.string(lib.memif_get_version_str()) == b"2.0"


def test_strerror() -> None:
    """Mirrors U#3 MemifStrError: 40 distinct texts, one unknown text, per-thread buffers."""
    texts = [strerror(code) for code in range(40)]
    assert all(texts) and len(set(texts)) == 40
    unknown = {strerror(code) for code in (40, 1000, -1, -1000, 2**31 - 1)}
    assert len(unknown) == 1 and unknown.isdisjoint(texts)
    max_ring = texts[lib.MEMIF_ERR_MAX_RING]
    assert "14" in max_ring and "15" not in max_ring  # X16

    mismatches: list[str] = []
    start = threading.Barrier(2)

    def hammer(code: int) -> None:
        start.wait()
        for _ in range(20_000):
            got = ffi.string(lib.memif_strerror(code)).decode()
            if got != texts[code]:
                mismatches.append(f"code {code} read {got!r}")
                return

    threads = [threading.Thread(target=hammer, args=(c,)) for c in (lib.MEMIF_ERR_NOCONN,
                                                                     lib.MEMIF_ERR_PRIVHDR)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not mismatches, mismatches[0]


def test_error_codes_table() -> None:
    """New: every MEMIF_ERR_* has its libmemif 3.1 value and a Python exception class."""
    for code, name in enumerate(CODES):
        assert getattr(lib, f"MEMIF_ERR_{name}") == code, name
        cls = errors.BY_CODE[code]
        assert issubclass(cls, errors.MemifError)
        assert (cls.code, cls.name) == (code, f"MEMIF_ERR_{name}")
    assert sorted(errors.BY_CODE) == list(range(40))


def _listen_as_unprivileged(path: str) -> int:
    """In a child (without root's override when run as root), create a master on ``path``."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            with Database(APP) as db:
                sock = db.socket(path)
                conn = ffi.new("memif_conn_handle_t *")
                args = new_conn_args(socket=sock.handle, is_master=True)
                code = int(lib.memif_create(conn, args, NULL, NULL, NULL, NULL))
                if code == 0:
                    lib.memif_delete(conn)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status), f"child died: status {status:#x}"
    return os.WEXITSTATUS(status)


def test_errno_mapping(tmp_path: Path) -> None:
    """New: ENOENT -> NO_FILE, ECONNREFUSED -> CONNREFUSED, EACCES -> ACCES."""
    stale = str(tmp_path / "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.bind(stale)
    s.close()
    with Database(APP) as db:
        db.set_timer(0, 0)
        missing = Interface(db, db.socket(str(tmp_path / "missing.sock")), master=False)
        expect(lib.memif_request_connection(missing.conn), "NO_FILE", "connect, missing path")
        assert missing.details().error == strerror(lib.MEMIF_ERR_NO_FILE)
        refused = Interface(db, db.socket(stale), master=False)
        expect(lib.memif_request_connection(refused.conn), "CONNREFUSED", "nobody listening")
        assert refused.details().error == strerror(lib.MEMIF_ERR_CONNREFUSED)

    ro_dir = tempfile.mkdtemp(prefix="memif-ro-")
    try:
        os.chmod(ro_dir, 0o555)
        assert _listen_as_unprivileged(os.path.join(ro_dir, "x.sock")) == lib.MEMIF_ERR_ACCES
        assert os.listdir(ro_dir) == []
    finally:
        os.chmod(ro_dir, 0o755)
        os.rmdir(ro_dir)


def _memfd_mappings() -> set[int]:
    """Start addresses of the shared-memory (memfd) mappings of this process."""
    with open("/proc/self/maps") as f:
        return {int(line.split("-", 1)[0], 16) for line in f if "/memfd:" in line}


def test_disconnect_internal(tmp_path: Path) -> None:
    """Mirrors C#13 test_disconnect_internal: after the peer leaves, everything is released."""
    path = str(tmp_path / "dc.sock")
    with Database(b"m") as mdb, Database(b"s", external=True) as sdb:
        sdb.set_timer(0.05)
        msock, ssock = mdb.socket(path), sdb.socket(path)
        before_master = open_fds()
        master = Interface(mdb, msock, master=True, s2m=2, m2s=2)
        listener = open_fds() - before_master
        before = open_fds()
        maps_before = _memfd_mappings()
        first_event = len(sdb.fd_events)
        slave = Interface(sdb, ssock, master=False, s2m=2, m2s=2, interrupts=True)
        poll_until([mdb, sdb], lambda: master.connected and slave.connected, 3)
        regions = {r.addr for r in slave.details().regions}
        assert regions <= _memfd_mappings()
        master.delete()
        poll_until([sdb], lambda: slave.disconnects == 1, 3, "the slave sees the peer leave")
        d = slave.details()
        assert (d.link_up_down, d.regions_num, d.rx_queues_num, d.tx_queues_num) == (0, 0, 0, 0)
        announced = sdb.fd_events[first_event:]
        added = [fd for fd, ev in announced if not ev & lib.MEMIF_FD_EVENT_DEL]
        deleted = [fd for fd, ev in announced if ev & lib.MEMIF_FD_EVENT_DEL]
        assert len(added) == 3 and sorted(added) == sorted(deleted)  # control + 2 rx fds
        assert open_fds() == before - listener, "connection fds left open"
        assert _memfd_mappings() == maps_before, "shared memory left mapped"
        # The reconnect timer was re-armed: the slave comes back to a new master.
        master = Interface(mdb, msock, master=True, s2m=2, m2s=2)
        poll_until([mdb, sdb], lambda: master.connected and slave.connected, 3, "reconnect")
        master.tx_capacity = 2048
        assert send_packets(master, 1, [b"again"]) == 1
        assert recv_packets(slave, 1) == [b"again"]
