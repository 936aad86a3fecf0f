"""Test support: drive the raw libmemif API (``memif_cffi.lowlevel``) from Python.

Everything here goes through ``ffi`` / ``lib`` / ``check`` and the callback
plumbing of :mod:`memif_cffi.lowlevel` (``ConnCallbacks``, ``FdUpdate``); the
Pythonic classes are not used.

* :class:`Database` - a per-thread database, either with internal polling
  (``memif_per_thread_init`` with a NULL fd-update callback, polled with
  ``memif_per_thread_poll_event``) or with a recording fd-update callback
  (external polling through a Python ``select.epoll`` and
  ``memif_per_thread_control_fd_handler``).
* :class:`Interface` - one ``memif_create`` with callbacks that record
  every connect / disconnect / interrupt; a slave refills its rx queues in
  ``on_connect`` as a libmemif application does.
* :func:`poll_until` - drive several databases until a condition holds.
* :func:`connected_pair` - a master and a slave in two databases of this
  process, connected over a temporary filesystem socket or an abstract name.
* Data path: :func:`send_packets` / :func:`recv_packets` (per packet, with
  ``memif_buffer_alloc`` / ``memif_tx_burst`` / ``memif_rx_burst`` /
  ``memif_refill_queue``) and :class:`BulkSender` / :class:`BulkReceiver` /
  :class:`Flow` (the C helpers ``memif_cffi_tx_copy`` / ``memif_cffi_rx_copy``).
"""

from __future__ import annotations

import contextlib
import os
import select
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memif_cffi.lowlevel import (
    ConnCallbacks,
    FdUpdate,
    check,
    ffi,
    lib,
    new_conn_args,
    raise_pending,
)

# --------------------------------------------------------------------------
# Error codes
# --------------------------------------------------------------------------

#: Names of the 40 error codes of libmemif 3.1, index = code (libmemif-api §3.1).
ERROR_NAMES = [
    "MEMIF_ERR_SUCCESS", "MEMIF_ERR_SYSCALL", "MEMIF_ERR_CONNREFUSED", "MEMIF_ERR_ACCES",
    "MEMIF_ERR_NO_FILE", "MEMIF_ERR_FILE_LIMIT", "MEMIF_ERR_PROC_FILE_LIMIT",
    "MEMIF_ERR_ALREADY", "MEMIF_ERR_AGAIN", "MEMIF_ERR_BAD_FD", "MEMIF_ERR_NOMEM",
    "MEMIF_ERR_INVAL_ARG", "MEMIF_ERR_NOCONN", "MEMIF_ERR_CONN", "MEMIF_ERR_CB_FDUPDATE",
    "MEMIF_ERR_FILE_NOT_SOCK", "MEMIF_ERR_NO_SHMFD", "MEMIF_ERR_COOKIE",
    "MEMIF_ERR_NOBUF_RING", "MEMIF_ERR_NOBUF", "MEMIF_ERR_NOBUF_DET", "MEMIF_ERR_INT_WRITE",
    "MEMIF_ERR_MFMSG", "MEMIF_ERR_QID", "MEMIF_ERR_PROTO", "MEMIF_ERR_ID",
    "MEMIF_ERR_ACCSLAVE", "MEMIF_ERR_ALRCONN", "MEMIF_ERR_MODE", "MEMIF_ERR_SECRET",
    "MEMIF_ERR_NOSECRET", "MEMIF_ERR_MAXREG", "MEMIF_ERR_MAXRING", "MEMIF_ERR_NO_INTFD",
    "MEMIF_ERR_DISCONNECT", "MEMIF_ERR_DISCONNECTED", "MEMIF_ERR_UNKNOWN_MSG",
    "MEMIF_ERR_POLL_CANCEL", "MEMIF_ERR_MAX_RING", "MEMIF_ERR_PRIVHDR",
]

NOBUF_RING = lib.MEMIF_ERR_NOBUF_RING
NOBUF = lib.MEMIF_ERR_NOBUF
ALL = 0xFFFF  # memif_refill_queue count meaning "everything"


def err_name(rc: int) -> str:
    """``MEMIF_ERR_*`` name of a return code (or the number for an unknown one)."""
    return ERROR_NAMES[rc] if 0 <= rc < len(ERROR_NAMES) else f"unknown({rc})"


def assert_rc(rc: int, expected: int | str, what: str = "") -> None:
    """Assert a return code, reporting both codes by name."""
    if isinstance(expected, str):
        expected = ERROR_NAMES.index(expected)
    assert rc == expected, f"{what}: expected {err_name(expected)}, got {err_name(rc)}"


def cstr(p: Any) -> str | None:
    """A NUL-terminated C string as text (None for NULL)."""
    return None if p == ffi.NULL else ffi.string(p).decode("utf-8", "replace")


def itimerspec(value: float, interval: float | None = None) -> Any:
    """A ``struct itimerspec`` (by value) of ``value`` seconds, period ``interval``."""
    interval = value if interval is None else interval
    ts = ffi.new("struct itimerspec *")
    ts.it_value.tv_sec = int(value)
    ts.it_value.tv_nsec = round((value - int(value)) * 1e9)
    ts.it_interval.tv_sec = int(interval)
    ts.it_interval.tv_nsec = round((interval - int(interval)) * 1e9)
    return ts[0]


def open_fds() -> set[int]:
    """File descriptors currently open in this process."""
    return {int(name) for name in os.listdir("/proc/self/fd")}


def fd_readable(fd: int, timeout: float = 0.0) -> bool:
    """True when ``fd`` is readable within ``timeout`` seconds."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(int(timeout * 1000)))


# --------------------------------------------------------------------------
# Details
# --------------------------------------------------------------------------


@dataclass
class QueueDetails:
    region: int
    qid: int
    ring_size: int
    flags: int
    head: int
    tail: int
    buffer_size: int


@dataclass
class RegionDetails:
    index: int
    addr: int
    size: int
    fd: int
    is_external: int


@dataclass
class Details:
    """``memif_details_t`` copied into Python values."""

    if_name: str | None
    inst_name: str | None
    remote_if_name: str | None
    remote_inst_name: str | None
    id: int
    secret: str | None
    role: int
    mode: int
    socket_filename: str | None
    regions: list[RegionDetails]
    rx_queues: list[QueueDetails]
    tx_queues: list[QueueDetails]
    error: str | None
    link_up_down: int
    regions_num: int = 0
    rx_queues_num: int = 0
    tx_queues_num: int = 0


def _queues(p: Any, n: int) -> list[QueueDetails]:
    if p == ffi.NULL:
        return []
    return [QueueDetails(p[i].region, p[i].qid, p[i].ring_size, p[i].flags, p[i].head,
                         p[i].tail, p[i].buffer_size) for i in range(n)]


def details_of(md: Any) -> Details:
    """Convert a filled ``memif_details_t *``."""
    regions = []
    if md.regions != ffi.NULL:
        regions = [RegionDetails(r.index, int(ffi.cast("uintptr_t", r.addr)), r.size, r.fd,
                                 r.is_external)
                   for r in (md.regions[i] for i in range(md.regions_num))]
    return Details(
        if_name=cstr(md.if_name), inst_name=cstr(md.inst_name),
        remote_if_name=cstr(md.remote_if_name), remote_inst_name=cstr(md.remote_inst_name),
        id=md.id, secret=cstr(md.secret), role=md.role, mode=md.mode,
        socket_filename=cstr(md.socket_filename), regions=regions,
        rx_queues=_queues(md.rx_queues, md.rx_queues_num),
        tx_queues=_queues(md.tx_queues, md.tx_queues_num),
        error=cstr(md.error), link_up_down=md.link_up_down, regions_num=md.regions_num,
        rx_queues_num=md.rx_queues_num, tx_queues_num=md.tx_queues_num,
    )


def get_details(conn: Any, buflen: int = 1 << 16) -> Details:
    """``memif_get_details`` with a large buffer; raises on any error."""
    md = ffi.new("memif_details_t *")
    buf = ffi.new("char[]", max(buflen, 1))
    check(lib.memif_get_details(conn, md, buf, buflen))
    return details_of(md)


# --------------------------------------------------------------------------
# Databases
# --------------------------------------------------------------------------


class Database:
    """A per-thread database (``memif_per_thread_init``).

    ``external=False``: internal polling, :meth:`poll` is
    ``memif_per_thread_poll_event``. ``external=True``: an fd-update callback
    records every ``(fd, events)`` call in :attr:`fd_events` and keeps the fds
    in a Python epoll set; :meth:`poll` dispatches ready fds with
    ``memif_per_thread_control_fd_handler``.
    """

    def __init__(self, app_name: bytes | None = b"lowpair", *, external: bool = False,
                 fd_update_result: int | Callable[[int, int], int] = 0) -> None:
        self.external = external
        self.fd_events: list[tuple[int, int]] = []
        self.watched: dict[int, int] = {}
        self.fd_update_result = fd_update_result
        self.handler_rcs: list[int] = []
        self._epoll: select.epoll | None = None
        self._fd_update: FdUpdate | None = None
        self._p = ffi.new("memif_per_thread_main_handle_t *")
        name = ffi.NULL if app_name is None else app_name
        if external:
            self._epoll = select.epoll()
            self._fd_update = FdUpdate(self._on_fd_update)
            rc = lib.memif_per_thread_init(self._p, self._fd_update.private_ctx,
                                           self._fd_update.callback, name,
                                           ffi.NULL, ffi.NULL, ffi.NULL)
        else:
            rc = lib.memif_per_thread_init(self._p, ffi.NULL, ffi.NULL, name,
                                           ffi.NULL, ffi.NULL, ffi.NULL)
        self.init_rc = rc
        if rc != 0:
            self._release()
        check(rc)
        self.sockets: list[Socket] = []
        self.interfaces: list[Interface] = []

    @property
    def handle(self) -> Any:
        return self._p[0]

    @property
    def handle_ptr(self) -> Any:
        return self._p

    # -- fd-update callback (external polling) ------------------------------
    def _on_fd_update(self, fd: int, events: int, _ctx: Any) -> int:
        self.fd_events.append((fd, events))
        assert self._epoll is not None
        result = self.fd_update_result
        if callable(result):
            result = result(fd, events)
        if result < 0:
            return result
        if events & lib.MEMIF_FD_EVENT_DEL:
            self.watched.pop(fd, None)
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)
            return 0
        mask = 0
        if events & lib.MEMIF_FD_EVENT_READ:
            mask |= select.EPOLLIN
        if events & lib.MEMIF_FD_EVENT_WRITE:
            mask |= select.EPOLLOUT
        if events & lib.MEMIF_FD_EVENT_MOD or fd in self.watched:
            self._epoll.modify(fd, mask)
        else:
            self._epoll.register(fd, mask)
        self.watched[fd] = events
        return 0

    # -- polling -----------------------------------------------------------
    def fileno(self) -> int:
        """An fd that is readable when this database has an event to handle."""
        if self._epoll is not None:
            return self._epoll.fileno()
        return int(lib.memif_per_thread_get_epoll_fd(self.handle))

    def poll(self, timeout_ms: int = 0) -> int:
        """Handle pending events (at most one with internal polling); the return code."""
        if self._epoll is None:
            rc = int(lib.memif_per_thread_poll_event(self.handle, timeout_ms))
            raise_pending()
            return rc
        rc = 0
        for fd, ev in self._epoll.poll(timeout_ms / 1000 if timeout_ms >= 0 else -1):
            flags = 0
            if ev & (select.EPOLLIN | select.EPOLLHUP):
                flags |= lib.MEMIF_FD_EVENT_READ
            if ev & select.EPOLLOUT:
                flags |= lib.MEMIF_FD_EVENT_WRITE
            if ev & select.EPOLLERR:
                flags |= lib.MEMIF_FD_EVENT_ERROR
            r = int(lib.memif_per_thread_control_fd_handler(self.handle, fd, flags))
            raise_pending()
            self.handler_rcs.append(r)
            rc = rc or r
        return rc

    # -- objects -------------------------------------------------------------
    def socket(self, path: str | bytes) -> Socket:
        return Socket(self, path)

    def set_timer(self, value: float, interval: float | None = None) -> None:
        """``memif_per_thread_set_connection_request_timer``."""
        check(lib.memif_per_thread_set_connection_request_timer(
            self.handle, itimerspec(value, interval)))

    def _release(self) -> None:
        if self._fd_update is not None:
            self._fd_update.release()
            self._fd_update = None
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None

    def close(self) -> None:
        """Delete every interface and socket still open, then the database."""
        if self._p[0] == ffi.NULL:
            return
        for intf in list(self.interfaces):
            intf.delete()
        for sock in list(self.sockets):
            sock.delete()
        rc = lib.memif_per_thread_cleanup(self._p)
        self._release()
        check(rc)

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Socket:
    """A socket object of a database (``memif_per_thread_create_socket``)."""

    def __init__(self, db: Database, path: str | bytes) -> None:
        self.db = db
        self.path = path if isinstance(path, str) else path.decode()
        self._p = ffi.new("memif_socket_handle_t *")
        raw = path.encode() if isinstance(path, str) else path
        check(lib.memif_per_thread_create_socket(db.handle, self._p, raw, ffi.NULL))
        db.sockets.append(self)

    @property
    def handle(self) -> Any:
        return self._p[0]

    def delete(self) -> None:
        if self._p[0] == ffi.NULL:
            return
        check(lib.memif_delete_socket(self._p))
        self.db.sockets.remove(self)


# --------------------------------------------------------------------------
# Interfaces
# --------------------------------------------------------------------------

Hook = Callable[["Interface"], None]


class Interface:
    """One interface (``memif_create``) whose callbacks record what happens.

    :attr:`connects` / :attr:`disconnects` count the callbacks,
    :attr:`interrupts` lists the qids passed to ``on_interrupt``,
    :attr:`events` keeps everything in order. ``auto_refill`` (slaves): refill
    every rx queue with :attr:`headroom` in ``on_connect``. ``on_connect`` /
    ``on_disconnect`` hooks run after the recording.
    """

    def __init__(
        self,
        db: Database,
        sock: Socket | None,
        *,
        master: bool,
        id: int = 0,
        name: bytes = b"",
        secret: bytes = b"",
        s2m: int = 0,
        m2s: int = 0,
        log2: int = 0,
        buffer_size: int = 0,
        mode: int = 0,
        headroom: int = 0,
        interrupts: bool = False,
        auto_refill: bool = True,
        on_connect: Hook | None = None,
        on_disconnect: Hook | None = None,
        null_callbacks: bool = False,
    ) -> None:
        self.db = db
        self.sock = sock
        self.is_master = master
        self.headroom = headroom
        self.auto_refill = auto_refill
        self.hook_connect = on_connect
        self.hook_disconnect = on_disconnect
        self.connects = 0
        self.disconnects = 0
        self.interrupts: list[int] = []
        self.events: list[Any] = []
        self.refill_rcs: list[int] = []
        self.link_in_callbacks: list[tuple[str, int]] = []
        #: per-packet receive: bytes of an unfinished chain, per queue
        self.pending: dict[int, bytearray] = {}
        #: slot capacity of this side's tx queues (set by connected_pair)
        self.tx_capacity: int | None = None
        self.args = new_conn_args(
            socket=None if sock is None else sock.handle, secret=secret,
            num_s2m_rings=s2m, num_m2s_rings=m2s, buffer_size=buffer_size,
            log2_ring_size=log2, is_master=master, interface_id=id, interface_name=name,
            mode=mode)
        if null_callbacks:
            self.cbs = None
            on_c = on_d = on_i = ctx = ffi.NULL
        else:
            self.cbs = ConnCallbacks(
                on_connect=self._on_connect, on_disconnect=self._on_disconnect,
                on_interrupt=self._on_interrupt if interrupts else None)
            on_c, on_d, on_i = self.cbs.on_connect, self.cbs.on_disconnect, self.cbs.on_interrupt
            ctx = self.cbs.private_ctx
        self._p = ffi.new("memif_conn_handle_t *")
        rc = lib.memif_create(self._p, self.args, on_c, on_d, on_i, ctx)
        if rc != 0 and self.cbs is not None:
            self.cbs.release()
        check(rc)
        db.interfaces.append(self)

    @property
    def conn(self) -> Any:
        return self._p[0]

    @property
    def conn_ptr(self) -> Any:
        return self._p

    @property
    def connected(self) -> bool:
        return self.connects > self.disconnects

    # -- callbacks -----------------------------------------------------------
    def _on_connect(self, conn: Any, _ctx: Any) -> int:
        assert conn == self._p[0], "on_connect got another handle"
        self.connects += 1
        self.events.append("connect")
        self.link_in_callbacks.append(("connect", get_details(conn).link_up_down))
        if not self.is_master and self.auto_refill:
            for qid in range(get_details(conn).rx_queues_num):
                self.refill_rcs.append(
                    int(lib.memif_refill_queue(conn, qid, ALL, self.headroom)))
        if self.hook_connect is not None:
            self.hook_connect(self)
        return 0

    def _on_disconnect(self, conn: Any, _ctx: Any) -> int:
        assert conn == self._p[0], "on_disconnect got another handle"
        self.disconnects += 1
        self.events.append("disconnect")
        self.link_in_callbacks.append(("disconnect", get_details(conn).link_up_down))
        self.pending.clear()
        if self.hook_disconnect is not None:
            self.hook_disconnect(self)
        return 0

    def _on_interrupt(self, conn: Any, _ctx: Any, qid: int) -> int:
        assert conn == self._p[0], "on_interrupt got another handle"
        self.interrupts.append(qid)
        self.events.append(("interrupt", qid))
        return 0

    # -- helpers -------------------------------------------------------------
    def details(self, buflen: int = 1 << 16) -> Details:
        return get_details(self.conn, buflen)

    def queue_efd(self, qid: int) -> int:
        fd = ffi.new("int *")
        check(lib.memif_get_queue_efd(self.conn, qid, fd))
        return int(fd[0])

    def set_rx_mode(self, mode: int, qid: int) -> None:
        check(lib.memif_set_rx_mode(self.conn, mode, qid))

    def delete(self) -> None:
        if self._p[0] == ffi.NULL:
            return
        rc = lib.memif_delete(self._p)
        raise_pending()
        check(rc)
        if self.cbs is not None:
            self.cbs.release()
        self.db.interfaces.remove(self)


# --------------------------------------------------------------------------
# Event loop
# --------------------------------------------------------------------------


def poll_until(
    dbs: Sequence[Database],
    predicate: Callable[[], bool],
    timeout: float = 5.0,
    what: str = "condition",
    allow_errors: bool = False,
) -> float:
    """Poll every database until ``predicate()`` is true; returns the time it took.

    Waits on the databases' fds together (up to 10 ms at a time) and handles
    the events of whichever is ready with a zero-timeout poll. Every poll must
    return ``MEMIF_ERR_SUCCESS`` unless ``allow_errors``.
    """
    start = time.monotonic()
    deadline = start + timeout
    fds = {db.fileno(): db for db in dbs}
    while not predicate():
        now = time.monotonic()
        if now >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        ready, _, _ = select.select(list(fds), [], [], min(0.01, deadline - now))
        for fd in ready:
            rc = fds[fd].poll(0)
            if not allow_errors:
                assert rc == 0, f"poll returned {err_name(rc)}"
    return time.monotonic() - start


def poll_for(dbs: Sequence[Database], seconds: float, allow_errors: bool = False) -> None:
    """Keep polling for ``seconds`` (for "nothing else happens" checks)."""
    end = time.monotonic() + seconds
    with contextlib.suppress(AssertionError):
        poll_until(dbs, lambda: time.monotonic() >= end, seconds + 1, allow_errors=allow_errors)


def sock_path(tmp_path: Path, name: str = "memif.sock") -> str:
    return str(tmp_path / name)


def abstract_name(prefix: str = "lowpair") -> str:
    return f"@{prefix}-{uuid.uuid4().hex[:16]}"


@dataclass
class Pair:
    """A connected master and slave and their databases."""

    master: Interface
    slave: Interface
    mdb: Database
    sdb: Database
    path: str
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def dbs(self) -> list[Database]:
        return [self.mdb, self.sdb]

    def poll_until(self, predicate: Callable[[], bool], timeout: float = 5.0,
                   what: str = "condition") -> float:
        return poll_until(self.dbs, predicate, timeout, what)

    def sender(self, direction: str) -> Interface:
        """'s2m': the slave sends; 'm2s': the master sends."""
        return self.slave if direction == "s2m" else self.master

    def receiver(self, direction: str) -> Interface:
        return self.master if direction == "s2m" else self.slave


@contextlib.contextmanager
def connected_pair(
    tmp_path: Path | None = None,
    *,
    s2m: int = 1,
    m2s: int = 1,
    log2: int = 10,
    buffer_size: int = 2048,
    headroom: int = 0,
    rx_mode: int = 0,
    abstract: bool = False,
    interrupts: bool = False,
    id: int = 0,
    secret: bytes = b"",
    mode: int = 0,
    external: bool = False,
    timeout: float = 10.0,
) -> Iterator[Pair]:
    """A master and a slave (one database each), connected; yields a :class:`Pair`.

    ``rx_mode`` (``MEMIF_RX_MODE_*``) is applied to every rx queue of both
    sides once connected. The slave refills its rx queues with ``headroom`` in
    ``on_connect``. Everything is deleted on exit.
    """
    if abstract:
        path = abstract_name()
    else:
        assert tmp_path is not None, "a filesystem socket needs tmp_path"
        path = sock_path(tmp_path)
    with Database(b"lowpair-master", external=external) as mdb, \
            Database(b"lowpair-slave", external=external) as sdb:
        msock = mdb.socket(path)
        ssock = sdb.socket(path)
        master = Interface(mdb, msock, master=True, id=id, name=b"pair-master", secret=secret,
                           s2m=s2m, m2s=m2s, log2=log2, buffer_size=buffer_size, mode=mode,
                           interrupts=interrupts)
        slave = Interface(sdb, ssock, master=False, id=id, name=b"pair-slave", secret=secret,
                          s2m=s2m, m2s=m2s, log2=log2, buffer_size=buffer_size, mode=mode,
                          headroom=headroom, interrupts=interrupts)
        slave.tx_capacity = buffer_size
        master.tx_capacity = buffer_size - headroom
        poll_until([mdb, sdb], lambda: master.connected and slave.connected, timeout,
                   "the pair to connect")
        assert slave.refill_rcs and all(rc == 0 for rc in slave.refill_rcs), slave.refill_rcs
        if rx_mode:
            for q in range(s2m):
                master.set_rx_mode(rx_mode, q)
            for q in range(m2s):
                slave.set_rx_mode(rx_mode, q)
        yield Pair(master, slave, mdb, sdb, path, dict(
            s2m=s2m, m2s=m2s, log2=log2, buffer_size=buffer_size, headroom=headroom,
            rx_mode=rx_mode))
        slave.delete()
        master.delete()


# --------------------------------------------------------------------------
# Per-packet data path
# --------------------------------------------------------------------------


def alloc(conn: Any, qid: int, count: int, size: int, nbufs: int | None = None
          ) -> tuple[int, Any, int]:
    """``memif_buffer_alloc``; returns (rc, bufs array, count_out)."""
    bufs = ffi.new("memif_buffer_t[]", max(1, nbufs if nbufs is not None else count))
    out = ffi.new("uint16_t *")
    rc = lib.memif_buffer_alloc(conn, qid, bufs, count, out, size)
    return int(rc), bufs, int(out[0])


def fill_chain(bufs: Any, first: int, n: int, packet: bytes) -> None:
    """Copy ``packet`` into the chain ``bufs[first:first + n]`` and check its shape."""
    pos = 0
    for i in range(first, first + n):
        b = bufs[i]
        last = i == first + n - 1
        assert bool(b.flags & lib.MEMIF_BUFFER_FLAG_NEXT) == (not last), (
            f"buffer {i - first} of a {n}-buffer chain has flags {b.flags}")
        assert b.data != ffi.NULL
        chunk = packet[pos:pos + b.len]
        assert len(chunk) == b.len, "alloc gave more room than the packet needs"
        ffi.memmove(b.data, chunk, len(chunk))
        pos += b.len
    assert pos == len(packet), f"chain of {n} buffers holds {pos} of {len(packet)} bytes"


def tx_burst(conn: Any, qid: int, bufs: Any, count: int) -> tuple[int, int]:
    out = ffi.new("uint16_t *")
    rc = lib.memif_tx_burst(conn, qid, bufs, count, out)
    return int(rc), int(out[0])


def send_packets(intf: Interface, qid: int, packets: Sequence[bytes], burst: int = 32) -> int:
    """Send whole packets with memif_buffer_alloc + memif_tx_burst; returns how many.

    Each packet is allocated with its own ``memif_buffer_alloc`` call (count
    1) into one array, published ``burst`` packets at a time. Stops at
    ``MEMIF_ERR_NOBUF_RING`` (ring full). Any other error raises.
    """
    cap = intf.tx_capacity
    assert cap, "tx_capacity unknown"
    sent = 0
    while sent < len(packets):
        chunk = packets[sent:sent + burst]
        nslots = sum(max(1, -(-len(p) // cap)) for p in chunk)
        bufs = ffi.new("memif_buffer_t[]", nslots)
        out = ffi.new("uint16_t *")
        used = 0
        done = 0
        full = False
        for p in chunk:
            rc = lib.memif_buffer_alloc(intf.conn, qid, bufs + used, 1, out, len(p))
            if rc == NOBUF_RING:
                assert out[0] == 0, "NOBUF_RING for one packet but buffers were filled"
                full = True
                break
            assert rc == 0, f"memif_buffer_alloc: {err_name(rc)}"
            n = int(out[0])
            assert n == max(1, -(-len(p) // cap)), f"{len(p)} bytes took {n} buffers"
            fill_chain(bufs, used, n, p)
            used += n
            done += 1
        if used:
            rc, tx = tx_burst(intf.conn, qid, bufs, used)
            assert rc == 0, f"memif_tx_burst: {err_name(rc)}"
            assert tx == used, f"memif_tx_burst published {tx} of {used}"
        sent += done
        if full:
            break
    return sent


def rx_burst(conn: Any, qid: int, count: int) -> tuple[int, Any, int]:
    bufs = ffi.new("memif_buffer_t[]", max(1, count))
    out = ffi.new("uint16_t *")
    rc = lib.memif_rx_burst(conn, qid, bufs, count, out)
    return int(rc), bufs, int(out[0])


def refill(conn: Any, qid: int, count: int, headroom: int = 0) -> int:
    return int(lib.memif_refill_queue(conn, qid, count, headroom))


def recv_packets(intf: Interface, qid: int, burst: int = 64, limit: int | None = None
                 ) -> list[bytes]:
    """Receive whole packets with memif_rx_burst (chains joined) + memif_refill_queue.

    Loops while rx_burst says more are waiting (``MEMIF_ERR_NOBUF``); buffers
    are given back right after they are copied. An unfinished chain is kept in
    ``intf.pending`` for the next call. ``limit`` bounds the buffers taken.
    """
    packets: list[bytes] = []
    taken = 0
    while True:
        want = burst if limit is None else min(burst, limit - taken)
        if want <= 0:
            break
        rc, bufs, n = rx_burst(intf.conn, qid, want)
        assert rc in (0, NOBUF), f"memif_rx_burst: {err_name(rc)}"
        assert n <= want
        for i in range(n):
            b = bufs[i]
            assert b.flags & lib.MEMIF_BUFFER_FLAG_RX, f"rx buffer without RX flag: {b.flags}"
            part = intf.pending.setdefault(qid, bytearray())
            part += ffi.buffer(b.data, b.len)[:] if b.len else b""
            if not b.flags & lib.MEMIF_BUFFER_FLAG_NEXT:
                packets.append(bytes(part))
                del intf.pending[qid]
        if n:
            frc = refill(intf.conn, qid, n, intf.headroom)
            assert frc == 0, f"memif_refill_queue: {err_name(frc)}"
        taken += n
        if rc != NOBUF:
            break
    return packets


# --------------------------------------------------------------------------
# Bulk data path (C helpers)
# --------------------------------------------------------------------------


class PacketSet:
    """Packets as (offset, length) slices of one random blob, ready for the C helpers."""

    def __init__(self, lengths: Sequence[int], rng: Any, blob_size: int = 1 << 22) -> None:
        maxlen = max(lengths) if lengths else 0
        self.blob = rng.randbytes(max(blob_size, maxlen + 1))
        self.lengths = list(lengths)
        span = len(self.blob) - maxlen
        self.offsets = [rng.randrange(span) for _ in self.lengths]
        self.c_blob = ffi.from_buffer(self.blob)
        self.c_offsets = ffi.new("uint32_t[]", self.offsets)
        self.c_lens = ffi.new("uint32_t[]", self.lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    def packet(self, i: int) -> bytes:
        return self.blob[self.offsets[i]:self.offsets[i] + self.lengths[i]]


class BulkSender:
    """``memif_cffi_tx_copy`` over a :class:`PacketSet`."""

    def __init__(self, intf: Interface, qid: int, packets: PacketSet, chunk: int = 512) -> None:
        self.intf = intf
        self.qid = qid
        self.packets = packets
        self.chunk = chunk
        self.next = 0
        self._sent = ffi.new("uint16_t *")

    @property
    def done(self) -> bool:
        return self.next >= len(self.packets)

    def step(self) -> int:
        """Offer the next chunk; returns how many packets were published."""
        count = min(self.chunk, len(self.packets) - self.next)
        if count <= 0:
            return 0
        rc = lib.memif_cffi_tx_copy(self.intf.conn, self.qid, self.packets.c_blob,
                                    self.packets.c_offsets + self.next,
                                    self.packets.c_lens + self.next, count, self._sent)
        assert rc == 0, f"memif_cffi_tx_copy: {err_name(rc)}"
        n = int(self._sent[0])
        assert n <= count
        self.next += n
        return n


class BulkReceiver:
    """``memif_cffi_rx_copy`` into a contiguous buffer; packets compared on the fly."""

    def __init__(self, intf: Interface, qid: int, stride: int = 9216, max_packets: int = 256
                 ) -> None:
        self.intf = intf
        self.qid = qid
        self.stride = stride
        self.max_packets = max_packets
        self.data = ffi.new("uint8_t[]", stride * max_packets)
        self.view = ffi.buffer(self.data)
        self.lens = ffi.new("uint32_t[]", max_packets)
        self.state = ffi.new("memif_cffi_rx_state_t *")
        self._received = ffi.new("uint16_t *")
        self._dropped = ffi.new("uint32_t *")
        self.dropped = 0

    def step(self) -> list[memoryview]:
        rc = lib.memif_cffi_rx_copy(self.intf.conn, self.qid, self.data, self.stride, self.lens,
                                    self.max_packets, self._received, self.intf.headroom,
                                    self.state, self._dropped)
        assert rc == 0, f"memif_cffi_rx_copy: {err_name(rc)}"
        self.dropped += int(self._dropped[0])
        mv = memoryview(self.view)
        return [mv[i * self.stride:i * self.stride + self.lens[i]]
                for i in range(int(self._received[0]))]


class Flow:
    """One direction of one queue: send a :class:`PacketSet`, receive and verify it.

    ``bulk=True`` uses the C helpers, ``False`` the per-packet path.
    """

    def __init__(self, sender: Interface, receiver: Interface, qid: int, packets: PacketSet,
                 bulk: bool = True, name: str = "") -> None:
        self.packets = packets
        self.qid = qid
        self.sender_intf = sender
        self.receiver_intf = receiver
        self.bulk = bulk
        self.name = name or f"q{qid}"
        self.tx = BulkSender(sender, qid, packets) if bulk else None
        self.rx = BulkReceiver(receiver, qid) if bulk else None
        self.sent = 0
        self.received = 0

    @property
    def done(self) -> bool:
        return self.received >= len(self.packets)

    def _check(self, got: Iterable[bytes | memoryview]) -> None:
        for data in got:
            i = self.received
            assert i < len(self.packets), f"{self.name}: more packets than sent"
            expected = self.packets.packet(i)
            if len(data) != len(expected) or bytes(data) != expected:
                raise AssertionError(
                    f"{self.name}: packet {i} differs: sent {len(expected)} bytes, "
                    f"received {len(data)}")
            self.received += 1

    def step(self, max_send: int = 512) -> bool:
        """Send what fits, receive what arrived; True if anything moved."""
        before = (self.sent, self.received)
        if self.tx is not None and self.rx is not None:
            self.tx.chunk = max_send
            self.tx.step()
            self.sent = self.tx.next
            self._check(self.rx.step())
            assert self.rx.dropped == 0, f"{self.name}: {self.rx.dropped} packets dropped"
        else:
            todo = [self.packets.packet(i)
                    for i in range(self.sent, min(len(self.packets), self.sent + max_send))]
            if todo:
                self.sent += send_packets(self.sender_intf, self.qid, todo)
            self._check(recv_packets(self.receiver_intf, self.qid))
        assert self.received <= self.sent, f"{self.name}: received more than sent"
        return (self.sent, self.received) != before


def run_flows(flows: Sequence[Flow], timeout: float = 20.0, max_send: int = 512,
              dbs: Sequence[Database] = ()) -> None:
    """Step every flow until all packets arrived intact (or fail on timeout / stall)."""
    deadline = time.monotonic() + timeout
    while not all(f.done for f in flows):
        moved = False
        for f in flows:
            if not f.done:
                moved |= f.step(max_send)
        for db in dbs:
            db.poll(0)
        if time.monotonic() > deadline:
            raise AssertionError("flows timed out: " + ", ".join(
                f"{f.name} sent {f.sent} received {f.received}/{len(f.packets)}"
                for f in flows))
        if not moved:
            time.sleep(0.0005)
