"""Helpers shared by the upstream-mirror suite (tests/upstream/).

Everything here drives the public libmemif API through ``memif_cffi.lowlevel``
(via the ``lowpair`` helpers) or talks to it over the wire with the pure-Python
peers of ``rawpeer``. The raw peers are stepped from the test thread: after a
raw peer sends a message, :func:`wait_msg` polls our databases until the
answer is readable on the raw socket, so no second thread is needed.
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lowpair import Database, err_name, poll_until
from rawpeer import Direction, Message, MsgType, RawMaster, RawSlave

from memif_cffi.lowlevel import ConnCallbacks, ffi, lib, new_conn_args

NULL = ffi.NULL

#: The constants the upstream unit tests used, so our tests read like their origin.
APP = b"unit_test_app"
IF_NAME = b"unit_test_if"
SECRET = b"psst"
DC_STRING = "unit_test_dc"


def rc_name(rc: int) -> str:
    return err_name(int(rc))


def expect(rc: int, name: str, what: str = "") -> None:
    """Assert that a return code is ``MEMIF_ERR_<name>``."""
    expected = getattr(lib, f"MEMIF_ERR_{name}")
    assert rc == expected, f"{what}: expected MEMIF_ERR_{name}, got {rc_name(rc)}"


def strerror(code: int) -> str:
    return ffi.string(lib.memif_strerror(code)).decode()


def readable(sock: socket.socket | int | None, timeout: float = 0.0) -> bool:
    if sock is None:
        return False
    return bool(select.select([sock], [], [], timeout)[0])


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def is_eventfd(fd: int) -> bool:
    return os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventfd]"


def fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------
# Stepping raw peers against our databases
# --------------------------------------------------------------------------


def wait_readable(dbs: Sequence[Database], sock: socket.socket | None, timeout: float = 3.0,
                  what: str = "a message from our side") -> None:
    """Poll our databases until ``sock`` is readable; every poll must return SUCCESS."""
    assert sock is not None, "the raw peer has no control socket"
    poll_until(dbs, lambda: readable(sock), timeout, what)


def wait_msg(dbs: Sequence[Database], raw: RawSlave | RawMaster, timeout: float = 3.0,
             what: str = "a message from our side") -> Message:
    """Poll until the raw peer can read, then read one message (EOF raises)."""
    wait_readable(dbs, raw.sock, timeout, what)
    return raw.recv(1)


def read_reason(dbs: Sequence[Database], raw: RawSlave | RawMaster,
                timeout: float = 3.0) -> str:
    """The next message must be DISCONNECT followed by EOF; returns its string."""
    msg = wait_msg(dbs, raw, timeout, "DISCONNECT")
    msg.close_fd()
    assert msg.type == MsgType.DISCONNECT, f"expected DISCONNECT, got {msg.type_name}"
    assert msg["code"] == 0, f"DISCONNECT code {msg['code']}"
    assert at_eof(dbs, raw), "connection not closed after DISCONNECT"
    return str(msg["string"])


def at_eof(dbs: Sequence[Database], raw: RawSlave | RawMaster, timeout: float = 3.0) -> bool:
    """True when the raw peer's socket reaches EOF (nothing but EOF may arrive)."""
    sock = raw.sock
    assert sock is not None
    wait_readable(dbs, sock, timeout, "EOF")
    data = sock.recv(256)
    return data == b""


def raw_slave_hello(dbs: Sequence[Database], raw: RawSlave) -> Message:
    """Connect the raw slave and read HELLO."""
    raw.connect()
    wait_readable(dbs, raw.sock, what="HELLO")
    return raw.recv_hello()


def raw_slave_up_to_rings(dbs: Sequence[Database], raw: RawSlave) -> None:
    """Connect, HELLO, INIT, both regions and every ring, each ACKed (no CONNECT yet)."""
    raw.negotiate(raw_slave_hello(dbs, raw))
    raw.create_memory()
    raw.send_init()
    ack(dbs, raw)
    for i in range(len(raw.regions)):
        raw.send_add_region(i)
        ack(dbs, raw)
    for direction, count in ((Direction.S2M, raw.num_s2m), (Direction.M2S, raw.num_m2s)):
        for i in range(count):
            raw.send_add_ring(direction, i)
            ack(dbs, raw)


def ack(dbs: Sequence[Database], raw: RawSlave) -> None:
    msg = wait_msg(dbs, raw, what="ACK")
    msg.close_fd()
    assert msg.type == MsgType.ACK, (
        f"expected ACK, got {msg.type_name} {msg.get('string', '')!r}")


def raw_slave_handshake(dbs: Sequence[Database], raw: RawSlave, refill: bool = True) -> None:
    """The whole slave handshake of protocol spec §9.1, stepped from this thread."""
    raw_slave_up_to_rings(dbs, raw)
    raw.send_connect()
    wait_readable(dbs, raw.sock, what="CONNECTED")
    raw.recv_connected()
    if refill:
        for qid in range(raw.num_m2s):
            raw.refill(qid)


def raw_master_handshake(dbs: Sequence[Database], raw: RawMaster,
                         before_reply: Callable[[Message], None] | None = None) -> None:
    """Accept our slave, send HELLO and answer every message until CONNECTED is sent.

    ``before_reply(msg)`` runs after each message arrives and before its reply.
    """
    if raw.sock is None:
        raw.accept(2)
    raw.send_hello()
    while True:
        msg = wait_msg(dbs, raw, what="the slave's next handshake message")
        if before_reply is not None:
            before_reply(msg)
        if raw.handle(msg):
            return


# --------------------------------------------------------------------------
# The global database (memif_init / memif_cleanup)
# --------------------------------------------------------------------------


class GlobalInterface:
    """An interface of the global database, with recording callbacks."""

    def __init__(self, sock: Any, **kw: Any) -> None:
        self.connects = 0
        self.disconnects = 0
        self.cbs = ConnCallbacks(on_connect=self._up, on_disconnect=self._down)
        self.args = new_conn_args(socket=sock, **kw)
        self.p = ffi.new("memif_conn_handle_t *")
        rc = lib.memif_create(self.p, self.args, self.cbs.on_connect, self.cbs.on_disconnect,
                              NULL, self.cbs.private_ctx)
        if rc != 0:
            self.cbs.release()
        expect(rc, "SUCCESS", "memif_create in the global database")

    def _up(self, _conn: Any, _ctx: Any) -> int:
        self.connects += 1
        return 0

    def _down(self, _conn: Any, _ctx: Any) -> int:
        self.disconnects += 1
        return 0

    @property
    def conn(self) -> Any:
        return self.p[0]

    def delete(self) -> None:
        if self.p[0] != NULL:
            expect(lib.memif_delete(self.p), "SUCCESS", "memif_delete")
            self.cbs.release()


def poll_global_and(dbs: Sequence[Database], predicate: Callable[[], bool],
                    timeout: float = 3.0, what: str = "condition") -> None:
    """Drive the global database (internal polling) and ``dbs`` until ``predicate()``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        rc = lib.memif_poll_event(0)
        assert rc == 0, f"memif_poll_event: {rc_name(rc)}"
        for db in dbs:
            db.poll(0)
        time.sleep(0.001)


# --------------------------------------------------------------------------
# Misc
# --------------------------------------------------------------------------


def path_of_length(base: Path, length: int) -> str:
    """A filesystem path of exactly ``length`` bytes under ``base`` (directories made)."""
    prefix = str(base) + "/"
    remaining = length - len(prefix)
    assert remaining > 10, "the temporary directory path is too long for this test"
    parts: list[str] = []
    while remaining > 60:
        parts.append("d" * 49)
        remaining -= 50
    parts.append("s" * remaining)
    base.joinpath(*parts[:-1]).mkdir(parents=True, exist_ok=True)
    path = prefix + "/".join(parts)
    assert len(path.encode()) == length
    return path
