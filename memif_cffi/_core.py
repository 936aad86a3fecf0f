"""Internal state behind the Pythonic API: C handles, locks, callbacks, cleanup.

The public objects (:class:`~memif_cffi.Context`, :class:`~memif_cffi.Socket`,
:class:`~memif_cffi.Interface`, the queues) are thin facades over the state
objects here. The split exists for lifetimes:

* the C side holds pointers to the callback objects (``ConnCallbacks``,
  ``FdUpdate``); those are pinned by :mod:`memif_cffi.lowlevel` until released
  and reference only state objects, never a public object, so a forgotten
  Context stays collectable;
* a Context's state is owned by a ``weakref.finalize`` of the Context, which
  deletes interfaces, then sockets, then the database if the user forgets to
  close it; it never runs inside a memif callback (it is deferred to the next
  safe point instead);
* user callbacks are stored on the public Interface and reached through a
  weak reference: an interface that is being collected calls nobody.

Locking: one re-entrant *control lock* per context serialises the C control
path (create, delete, event dispatch, details), as the C library requires.
Each queue has its own non-blocking, re-entrant *queue lock* for the data
path (:class:`QueueGate`, kept in the queue's C struct); a second thread on a
busy queue gets :class:`QueueBusyError`. The bulk calls take it inside C, in
the same call that moves the burst, and decline when the queue is not
*ready* (down, views open, no rx state yet): the checked path then says why.
Before an interface's shared memory goes away (``on_disconnect``, close) every
queue is *quiesced*: marked down (not ready), then its lock is taken once,
which waits for a data-path call in progress in another thread, so no C call
ever runs on unmapped memory.

Ctrl+C: Python may raise ``KeyboardInterrupt`` right after a lock was taken,
before the caller could note it. The clean-up asks whether this thread holds
the queue lock (``_is_owned``) and gives it back; the bulk calls cannot leak
it, since no Python code runs while they hold it. The poll bookkeeping uses a
plain lock's with-statement, which has no Python frame for the exception to
strike in. A leaked lock would make the next close wait forever.
"""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import sys
import threading
import time
import types
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from memif_cffi.enums import FdEvent, RxMode
from memif_cffi.errors import DisconnectedError, NoConnError, error_for
from memif_cffi.lowlevel import ConnCallbacks, FdUpdate, check, ffi, lib

if TYPE_CHECKING:
    from memif_cffi.interface import Interface

# Events handled by one Context.poll() call at most, so that a peer flooding
# the control channel cannot keep poll() from returning.
MAX_EVENTS_PER_POLL = 256

# How long a disconnect waits for a view that another thread is exporting
# (e.g. hashing it with the GIL released) before giving up on it.
_VIEW_RELEASE_WAIT = 0.2


_ClosableT = TypeVar("_ClosableT", bound="Closable")


class Closable:
    """Mixin: a context manager whose exit calls ``close()``."""

    def close(self) -> None:  # pragma: no cover - always overridden
        raise NotImplementedError

    def __enter__(self: _ClosableT) -> _ClosableT:
        """Return the object itself; leaving the block closes it."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()


class QueueBusyError(RuntimeError):
    """Two threads used one queue at the same time (one thread per queue)."""


class ClosedError(NoConnError):
    """The object was closed; raised before any C call (a ``NoConnError``, so a ValueError)."""


# ------------------------------------------------------- callback tracking

_tls = threading.local()


def callback_depth() -> int:
    """How many memif callbacks are running on this thread."""
    return int(getattr(_tls, "depth", 0))


def _enter_callback() -> None:
    _tls.depth = callback_depth() + 1


def _leave_callback() -> None:
    _tls.depth = callback_depth() - 1


_deferred_lock = threading.Lock()
_deferred: list[Callable[[], None]] = []


def defer_cleanup(func: Callable[[], None]) -> None:
    """Run ``func`` at the next safe point (outside every memif callback)."""
    with _deferred_lock:
        _deferred.append(func)


def run_deferred_cleanups() -> None:
    """Run the cleanups that were deferred, unless a callback runs on this thread."""
    if callback_depth() > 0:
        return
    while True:
        with _deferred_lock:
            if not _deferred:
                return
            func = _deferred.pop(0)
        try:
            func()
        except Exception as exc:  # a finalizer has nobody to report to
            sys.unraisablehook(_unraisable(exc, "memif_cffi deferred cleanup"))


def _unraisable(exc: BaseException, what: str) -> Any:
    class _Info:
        exc_type = type(exc)
        exc_value = exc
        exc_traceback = exc.__traceback__
        err_msg = f"Exception ignored in {what}"
        object = None

    return _Info()


def _first_error(errors: list[BaseException]) -> BaseException | None:
    """The first error; the others are attached to it as notes."""
    if not errors:
        return None
    first = errors[0]
    for other in errors[1:]:
        if hasattr(first, "add_note"):
            first.add_note(f"also raised: {other!r}")
    return first


def _rc_error(rc: int) -> BaseException | None:
    """Exception for a return code, or the pending callback exception."""
    try:
        check(rc)
    except BaseException as exc:  # every kind is handed back to the caller
        return exc
    return None


# ---------------------------------------------------------------- context


class ContextState:
    """The C database of a Context and everything created in it."""

    def __init__(
        self,
        app_name: bytes | None,
        selector: selectors.BaseSelector | None,
        on_fd_update: Callable[[int, FdEvent], object] | None,
    ) -> None:
        self.lock = threading.RLock()
        self.pt: Any = ffi.new("memif_per_thread_main_handle_t *")
        self.name = (app_name or b"").decode("utf-8", "replace")
        self.ifaces: list[IfaceState] = []
        self.sockets: list[SocketState] = []
        self.closed = False
        self.closing = False
        # memif callbacks of this context running on each thread (.depth)
        self.cb = threading.local()
        # close requests made inside callbacks, run after the dispatch
        self.deferred: list[Callable[[], list[BaseException]]] = []
        # threads blocked in poll(), counted under wait_lock; close() waits for
        # them on cond. A plain lock's with-statement has no Python frame in
        # which a KeyboardInterrupt could strike between acquire and release.
        self.waiters = 0
        self.wait_lock = threading.Lock()
        self.cond = threading.Condition(self.wait_lock)
        self.selector = selector
        self.user_fd_update = on_fd_update
        self.external = selector is not None or on_fd_update is not None
        self.handler = SelectorHandler(self) if selector is not None else None
        self.fd_update: FdUpdate | None = None
        if self.external:
            self.fd_update = FdUpdate(self._fd_update)
        name = ffi.NULL if app_name is None else ffi.new("char[]", app_name)
        try:
            check(
                lib.memif_per_thread_init(
                    self.pt,
                    self.fd_update.private_ctx if self.fd_update else ffi.NULL,
                    self.fd_update.callback if self.fd_update else ffi.NULL,
                    name,
                    ffi.NULL,
                    ffi.NULL,
                    ffi.NULL,
                )
            )
        except BaseException:
            self.closed = True
            if self.fd_update is not None:
                self.fd_update.release()
            raise

    # -- callbacks bookkeeping -------------------------------------------------

    def enter_callback(self) -> None:
        """A memif callback of this context starts on the current thread."""
        _enter_callback()
        self.cb.depth = getattr(self.cb, "depth", 0) + 1

    def leave_callback(self) -> None:
        self.cb.depth -= 1
        _leave_callback()

    def in_callback_here(self) -> bool:
        """True inside a memif callback of this context on the current thread."""
        return getattr(self.cb, "depth", 0) > 0

    def after_dispatch(self, errors: list[BaseException]) -> None:
        """Run close requests made by callbacks, then deferred finalizers."""
        if not self.in_callback_here():
            while self.deferred:
                errors.extend(self.deferred.pop(0)())
        run_deferred_cleanups()

    # -- external event loop ---------------------------------------------------

    def _fd_update(self, fd: int, events: int, _ctx: Any) -> int:
        flags = FdEvent(events)
        if self.user_fd_update is not None:
            result = self.user_fd_update(fd, flags)
            # A negative number refuses the fd (the library then fails the call).
            return -1 if isinstance(result, int) and result < 0 else 0
        sel = self.selector
        assert sel is not None and self.handler is not None
        if flags & FdEvent.DEL:
            with contextlib.suppress(KeyError, ValueError):
                sel.unregister(fd)
            return 0
        mask = 0
        if flags & FdEvent.READ:
            mask |= selectors.EVENT_READ
        if flags & FdEvent.WRITE:
            mask |= selectors.EVENT_WRITE
        mask = mask or selectors.EVENT_READ
        if flags & FdEvent.MOD:
            sel.modify(fd, mask, self.handler)
        else:
            sel.register(fd, mask, self.handler)
        return 0

    def handle_event(self, fd: int, events: int) -> None:
        """Dispatch readiness of one library fd (external mode)."""
        self.check_dispatch_allowed("handle_event()")
        errors: list[BaseException] = []
        with self.lock:
            if self.closed:
                return
            rc = lib.memif_per_thread_control_fd_handler(self.pt[0], fd, events)
            err = _rc_error(rc)
            if err is not None:
                errors.append(err)
            self.after_dispatch(errors)
        first = _first_error(errors)
        if first is not None:
            raise first

    # -- internal event loop ---------------------------------------------------

    def check_open(self) -> None:
        if self.closed or self.closing:
            raise ClosedError("the memif Context is closed")

    def check_dispatch_allowed(self, what: str) -> None:
        self.check_open()
        if self.in_callback_here():
            raise RuntimeError(f"{what} cannot be called from a memif callback of its own Context")

    def epoll_fd(self) -> int:
        self.check_open()
        if self.external:
            raise RuntimeError(
                "this Context uses an external event loop (selector/on_fd_update): "
                "it has no epoll fd"
            )
        return int(lib.memif_per_thread_get_epoll_fd(self.pt[0]))

    def poll(self, timeout_ms: int) -> int:
        """Wait up to timeout_ms (-1: forever) and handle every ready event (bounded)."""
        self.check_dispatch_allowed("poll()")
        if self.external:
            return self._poll_selector(timeout_ms)
        fd = self.epoll_fd()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        counted = False
        try:
            with self.wait_lock:
                if self.closing:
                    return 0
                self.waiters += 1
                counted = True
            ready = poller.poll(timeout_ms)  # waits with the GIL released
        finally:
            if counted:
                with self.wait_lock:
                    self.waiters -= 1
                    self.cond.notify_all()
        if not ready or self.closing or self.closed:
            run_deferred_cleanups()
            return 0
        handled = 0
        errors: list[BaseException] = []
        with self.lock:
            if self.closed:
                return 0
            while handled < MAX_EVENTS_PER_POLL:
                rc = lib.memif_per_thread_poll_event(self.pt[0], 0)
                handled += 1
                if rc == lib.MEMIF_ERR_POLL_CANCEL:
                    err = _rc_error(0)
                    if err is not None:
                        errors.append(err)
                    break
                err = _rc_error(rc)
                if err is not None:
                    errors.append(err)
                    break
                if self.closing or not poller.poll(0):
                    break
            self.after_dispatch(errors)
        first = _first_error(errors)
        if first is not None:
            raise first
        return handled

    def _poll_selector(self, timeout_ms: int) -> int:
        sel = self.selector
        if sel is None:
            raise RuntimeError(
                "this Context hands its fds to on_fd_update: drive it with "
                "handle_event(fd, events) from your own event loop"
            )
        timeout = None if timeout_ms < 0 else timeout_ms / 1000.0
        handled = 0
        for key, mask in sel.select(timeout):
            if key.data is self.handler and not self.closed:
                handled += 1
                self.handler(key.fileobj, mask)
        return handled

    def cancel_poll(self) -> None:
        self.check_open()
        if not self.external:
            check(lib.memif_per_thread_cancel_poll_event(self.pt[0]))

    def set_reconnect_interval(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError(f"reconnect interval must be >= 0 seconds, not {seconds!r}")
        timer = ffi.new("struct itimerspec *")
        whole = int(seconds)
        nsec = round((seconds - whole) * 1e9)
        if nsec >= 1_000_000_000:
            whole, nsec = whole + 1, 0
        for part in (timer.it_value, timer.it_interval):
            part.tv_sec = whole
            part.tv_nsec = nsec
        with self.lock:
            self.check_open()
            check(lib.memif_per_thread_set_connection_request_timer(self.pt[0], timer[0]))

    # -- closing -----------------------------------------------------------------

    def close(self) -> None:
        """Close everything (idempotent); raises the first callback error after cleanup."""
        if self.closed:
            return
        if self.in_callback_here():
            if not self.closing:
                self.closing = True
                self.deferred.append(self.destroy)
            return
        with self.wait_lock:
            self.closing = True
        if not self.external:
            # Wake threads blocked in poll() so that none waits on a closed fd.
            lib.memif_per_thread_cancel_poll_event(self.pt[0])
            deadline = time.monotonic() + 5.0
            with self.wait_lock:
                while self.waiters and time.monotonic() < deadline:
                    self.cond.wait(0.05)
        errors = self.destroy()
        run_deferred_cleanups()
        first = _first_error(errors)
        if first is not None:
            raise first

    def destroy(self) -> list[BaseException]:
        """Delete interfaces, then sockets, then the database. Returns callback errors."""
        errors: list[BaseException] = []
        with self.lock:
            if self.closed:
                return errors
            self.closing = True
            for iface in reversed(list(self.ifaces)):
                errors.extend(iface.delete())
            for sock in reversed(list(self.sockets)):
                sock.delete()
            rc = lib.memif_per_thread_cleanup(self.pt)
            self.closed = True
            if rc == 0 and self.fd_update is not None:
                self.fd_update.release()
            err = _rc_error(rc)
            if err is not None:
                errors.append(err)
        return errors


class SelectorHandler:
    """``data`` of the selector keys of a Context: call it as ``key.data(key.fileobj, mask)``."""

    def __init__(self, state: ContextState) -> None:
        self._state = state

    def __call__(self, fileobj: Any, mask: int) -> None:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        events = 0
        if mask & selectors.EVENT_READ:
            events |= int(FdEvent.READ)
        if mask & selectors.EVENT_WRITE:
            events |= int(FdEvent.WRITE)
        self._state.handle_event(fd, events)


def finalize_context(state: ContextState) -> None:
    """weakref.finalize callback of a Context the user did not close."""
    if state.closed:
        return
    if callback_depth() > 0:
        defer_cleanup(lambda: finalize_context(state))
        return
    errors = state.destroy()
    for exc in errors:
        sys.unraisablehook(_unraisable(exc, "memif_cffi Context finalizer"))


# ----------------------------------------------------------------- socket


class SocketState:
    """One ``memif_socket_handle_t``."""

    def __init__(self, ctx: ContextState, path: bytes) -> None:
        self.ctx = ctx
        self.path = path
        self.handle: Any = ffi.new("memif_socket_handle_t *")
        self.closed = False
        self.closing = False
        check(lib.memif_per_thread_create_socket(ctx.pt[0], self.handle, path, ffi.NULL))
        ctx.sockets.append(self)

    def request_close(self) -> None:
        """Delete now, or after the dispatch when called from a callback (its
        interfaces' deletes are deferred then too, and must come first)."""
        if self.closed or self.closing:
            return
        if self.ctx.in_callback_here():
            self.closing = True
            self.ctx.deferred.append(self._deferred_delete)
            return
        with self.ctx.lock:
            self.delete()

    def _deferred_delete(self) -> list[BaseException]:
        self.delete()
        return []

    def delete(self) -> None:
        """Delete the C socket (its interfaces must be gone). Control lock held."""
        if self.closed:
            return
        self.closed = True
        if self.handle[0] != ffi.NULL:
            # A failure leaves it to memif_per_thread_cleanup, which frees it.
            lib.memif_delete_socket(self.handle)
        if self in self.ctx.sockets:
            self.ctx.sockets.remove(self)


# -------------------------------------------------------------- interface


class IfaceState:
    """One ``memif_conn_handle_t``, its callbacks and its queues."""

    def __init__(
        self,
        ctx: ContextState,
        sock: SocketState,
        name: str,
        is_master: bool,
        n_rx: int,
        n_tx: int,
        want_interrupts: bool,
        headroom: int = 0,
    ) -> None:
        self.ctx = ctx
        self.sock = sock
        self.name = name
        self.is_master = is_master
        #: left free at the front of every rx buffer a slave posts
        self.headroom = headroom
        self.conn: Any = ffi.new("memif_conn_handle_t *")
        self.owner: weakref.ref[Interface] | None = None
        self.connected = False
        self.closing = False
        self.closed = False
        self.rxq = [QueueState(self, qid, True) for qid in range(n_rx)]
        self.txq = [QueueState(self, qid, False) for qid in range(n_tx)]
        self.n_rx = n_rx
        self.n_tx = n_tx
        self.connects = 0
        # (address, size, cffi buffer) of each mapped region while connected:
        # received packets become offsets in these, with no object per packet.
        self.regions: list[tuple[int, int, Any]] = []
        self.callbacks = ConnCallbacks(
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
            on_interrupt=self._on_interrupt if want_interrupts else None,
        )

    # -- C callbacks (run on the dispatching thread, control lock held) ----------

    def _user(self) -> Interface | None:
        return self.owner() if self.owner is not None else None

    def _on_connect(self, conn: Any, _ctx: Any) -> int:
        self.ctx.enter_callback()
        try:
            # Our bookkeeping completes whatever happens; its error (if any)
            # is raised after the user's callback ran.
            problem = self._bring_up(conn)
            intf = self._user()
            try:
                if intf is not None and intf._on_connect is not None and not self.closing:
                    intf._on_connect(intf)
            except BaseException as exc:
                if problem is not None and hasattr(exc, "add_note"):
                    exc.add_note(f"bringing the queues up also failed: {problem!r}")
                raise
            if problem is not None:
                raise problem
        finally:
            self.ctx.leave_callback()
        return 0

    def _bring_up(self, conn: Any) -> BaseException | None:
        problem: BaseException | None = None
        md = ffi.new("memif_details_t *")
        # Room for the largest possible answer (510 queues, 256 regions).
        buf = ffi.new("char[]", 32768)
        rc = lib.memif_get_details(conn, md, buf, 32768)
        if rc in (0, lib.MEMIF_ERR_NOBUF_DET):
            self.n_rx = min(int(md.rx_queues_num), len(self.rxq))
            self.n_tx = min(int(md.tx_queues_num), len(self.txq))
            regions = []
            if md.regions != ffi.NULL:
                for i in range(int(md.regions_num)):
                    r = md.regions[i]
                    if r.addr != ffi.NULL and r.size:
                        addr = int(ffi.cast("uintptr_t", r.addr))
                        regions.append((addr, int(r.size), ffi.buffer(r.addr, r.size)))
            self.regions = regions
        for q in self.rxq + self.txq:
            q.handle = conn
            q.cq.conn = conn
        for q in self.rxq[: self.n_rx]:
            with q.lock:
                q.reset_rx()
                if not self.is_master:
                    # A slave posts its empty rx buffers, or the master cannot send.
                    rc = lib.memif_refill_queue(conn, q.qid, 0xFFFF, self.headroom)
                    if rc != 0 and problem is None:
                        problem = error_for(rc, f"refilling rx queue {q.qid} at connect")
                q.down = self.closing
        for q in self.txq[: self.n_tx]:
            q.down = self.closing
        self.connected = True
        self.connects += 1
        return problem

    def _on_disconnect(self, _conn: Any, _ctx: Any) -> int:
        self.ctx.enter_callback()
        try:
            self.connected = False
            self.quiesce()
            self.regions = []  # about to be unmapped
            intf = self._user()
            if intf is not None and intf._on_disconnect is not None:
                intf._on_disconnect(intf)
        finally:
            self.ctx.leave_callback()
        return 0

    def _on_interrupt(self, conn: Any, _ctx: Any, qid: int) -> int:
        self.ctx.enter_callback()
        try:
            if qid >= len(self.rxq):
                return 0
            q = self.rxq[qid]
            before = q.stats.ops
            try:
                intf = self._user()
                if intf is not None and intf._on_interrupt is not None and not self.closing:
                    intf._on_interrupt(intf, qid)
            finally:
                if q.stats.ops == before:
                    # Nobody received: take the signal, or the level-triggered
                    # loop would report the queue again and again. The packets
                    # stay in the ring for the next receive.
                    _drain_eventfd(conn, qid)
        finally:
            self.ctx.leave_callback()
        return 0

    # -- life cycle --------------------------------------------------------------

    def quiesce(self) -> None:
        """Stop the data path: no queue call is running or can start after this."""
        for q in self.rxq + self.txq:
            q.quiesce()

    def request_close(self) -> list[BaseException]:
        """Close now, or after the dispatch when called from a callback of the context."""
        if self.closed or self.closing:
            return []
        if self.ctx.in_callback_here():
            self.closing = True
            for q in self.rxq + self.txq:
                q.down = True
            self.ctx.deferred.append(self.delete)
            return []
        with self.ctx.lock:
            errors = self.delete()
            self.ctx.after_dispatch(errors)
        return errors

    def delete(self) -> list[BaseException]:
        """memif_delete and forget (control lock held). Returns callback errors."""
        errors: list[BaseException] = []
        if self.closed:
            return errors
        self.closing = True
        self.quiesce()
        if self.conn[0] != ffi.NULL:
            rc = lib.memif_delete(self.conn)
            err = _rc_error(rc)
            if err is not None:
                errors.append(err)
        self.closed = True
        self.connected = False
        if self.conn[0] == ffi.NULL:
            # C no longer points at the callbacks (else they stay pinned).
            self.callbacks.release()
        if self in self.ctx.ifaces:
            self.ctx.ifaces.remove(self)
        return errors


def _drain_eventfd(conn: Any, qid: int) -> None:
    fd = ffi.new("int *")
    if lib.memif_get_queue_efd(conn, qid, fd) != 0 or fd[0] < 0:
        return
    with contextlib.suppress(OSError):
        os.read(fd[0], 8)


# ------------------------------------------------------------------ queues


_gate_enter = lib.memif_cffi_gate_enter
_gate_leave = lib.memif_cffi_gate_leave
_gate_owned = lib.memif_cffi_gate_owned


class QueueGate:
    """The queue lock: a re-entrant, non-blocking lock kept in the queue's C struct.

    The unchecked bulk calls (``memif_cffi_batch_send`` / ``_recv``) take it
    inside C, so a burst needs no lock call from Python; every other data-path
    call takes it here. It has the ``threading.RLock`` methods the queue code
    uses. A blocking acquire polls: it only ever waits for a call that is
    already running.
    """

    __slots__ = ("_cq",)

    def __init__(self, cq: Any) -> None:
        self._cq = cq

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock; with ``blocking``, wait up to ``timeout`` s (-1: forever)."""
        cq = self._cq
        if _gate_enter(cq):
            return True
        if not blocking:
            return False
        deadline = None if timeout < 0 else time.monotonic() + timeout
        delay = 1e-5
        while not _gate_enter(cq):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 1e-3)
        return True

    def release(self) -> None:
        """Leave once; RuntimeError when this thread does not hold the lock."""
        if _gate_leave(self._cq) != 0:
            raise RuntimeError("cannot release a queue lock this thread does not hold")

    def _is_owned(self) -> bool:
        return bool(_gate_owned(self._cq))

    def __enter__(self) -> bool:
        try:
            return self.acquire()
        except BaseException:
            # A KeyboardInterrupt raised as the acquire returned: give it back.
            if _gate_owned(self._cq):
                _gate_leave(self._cq)
            raise

    def __exit__(self, *exc: object) -> None:
        self.release()


class QueueState:
    """Data-path state of one queue: lock, counters, C scratch arrays."""

    def __init__(self, iface: IfaceState, qid: int, is_rx: bool) -> None:
        self.iface = iface
        self.qid = qid
        self.is_rx = is_rx
        #: what the bulk helpers need of the queue, in one struct (see _support.h)
        self.cq: Any = ffi.new("memif_cffi_queue_t *")
        self.cq.qid = qid
        self.cq.headroom = iface.headroom
        # Re-entrant only for its ownership test (_is_owned): a data-path call
        # never nests on one queue.
        self.lock = QueueGate(self.cq)
        self._down = True
        #: the connection handle, cached at connect for the data path
        self.handle: Any = ffi.NULL
        self.headroom = iface.headroom
        #: packets, bytes, drops and calls, counted by the C helpers (inside cq)
        self.stats: Any = ffi.addressof(self.cq[0], "stats")
        self.mode = RxMode.INTERRUPT
        self._views: RxViewsBase | None = None  # open views() block
        self._held: RxViewsBase | None = None  # views kept alive past their block
        # C scratch, allocated on first use (the rx state alone is 64 KiB)
        self.rx_state: Any = None
        self.cap = 0
        self.bufs: Any = None
        self.ptrs: Any = None
        self.lens: Any = None
        self.firsts: Any = None
        self.nsegs: Any = None
        self.out16: Any = ffi.new("uint16_t[3]")
        self.out32: Any = ffi.new("uint32_t *")
        self.out64: Any = ffi.new("uint64_t *")
        self.out8: Any = ffi.new("uint8_t *")
        self.one_off: Any = ffi.new("uint32_t[1]")
        self.one_len: Any = ffi.new("uint32_t[1]")

    # -- what decides whether the unchecked bulk calls may run ---------------------

    @property
    def down(self) -> bool:
        """Not connected (or closing): no C call may touch the queue's memory."""
        return self._down

    @down.setter
    def down(self, value: bool) -> None:
        self._down = value
        self._sync_ready()

    @property
    def views(self) -> RxViewsBase | None:
        """The open views() block, if any."""
        return self._views

    @views.setter
    def views(self, value: RxViewsBase | None) -> None:
        self._views = value
        self._sync_ready()

    @property
    def held(self) -> RxViewsBase | None:
        """Views kept alive past their block, if any."""
        return self._held

    @held.setter
    def held(self, value: RxViewsBase | None) -> None:
        self._held = value
        self._sync_ready()

    def _sync_ready(self) -> None:
        """Tell C whether a bulk call needs none of the checks of :meth:`enter`."""
        ready = not self._down and (
            not self.is_rx
            or (self.rx_state is not None and self._views is None and self._held is None))
        lib.memif_cffi_gate_set_ready(self.cq, ready)

    @property
    def label(self) -> str:
        kind = "rx" if self.is_rx else "tx"
        return f"{kind} queue {self.qid} of interface {self.iface.name!r}"

    # -- entering the data path ----------------------------------------------------

    def enter(self) -> Any:
        """Take the queue lock (non-blocking) and return the conn handle.

        Raises before any C call when the interface is closed or down, or the
        queue is used by another thread. The caller releases ``self.lock``.
        """
        lock = self.lock
        try:
            if not lock.acquire(False):
                self._raise_unusable()
                raise QueueBusyError(f"{self.label} is in use by another thread")
            if self.down or (self.is_rx and (self.views is not None or self.held is not None)):
                self._check_views()
                self._raise_unusable()
            return self.handle
        except BaseException:
            self._release_if_owned()
            raise

    def enter_control(self) -> Any:
        """Take the lock for a call that is valid while disconnected (rx mode, fd)."""
        if self.iface.closing or self.iface.closed:
            raise ClosedError(f"interface {self.iface.name!r} is closed")
        try:
            if not self.lock.acquire(False):
                raise QueueBusyError(f"{self.label} is in use by another thread")
            if self.iface.closing or self.iface.closed:
                raise ClosedError(f"interface {self.iface.name!r} is closed")
            return self.iface.conn[0]
        except BaseException:
            self._release_if_owned()
            raise

    def _release_if_owned(self) -> None:
        """Undo a lock taken by this thread before an exception.

        The exception may be a ``KeyboardInterrupt`` that Python raised right
        after the acquire returned, before its result was looked at; the lock
        knows whether this thread holds it, the result does not survive. A
        leaked lock would make the close of the interface wait forever.
        """
        if self.lock._is_owned():
            self.lock.release()

    def _raise_unusable(self) -> None:
        if self.iface.closing or self.iface.closed:
            raise ClosedError(f"interface {self.iface.name!r} is closed")
        if self.down:
            if self.iface.connected and (
                (self.is_rx and self.qid >= self.iface.n_rx)
                or (not self.is_rx and self.qid >= self.iface.n_tx)
            ):
                raise error_for(
                    lib.MEMIF_ERR_QID, f"{self.label}: the peer did not set up this queue"
                )
            raise DisconnectedError(f"interface {self.iface.name!r} is not connected")

    def _check_views(self) -> None:
        """Called with the lock held when views are open or held."""
        if self.views is not None:
            raise QueueBusyError(f"a views() block is open on {self.label}")
        held = self.held
        if held is not None:
            if not held.settle():
                raise BufferError(
                    f"memoryviews from an earlier views() block of {self.label} are still "
                    "referenced (a slice or an export outlived the block); their buffers "
                    "stay held and the queue cannot receive until they are released"
                )
            self.held = None
            held.give_back()

    # -- connect / disconnect --------------------------------------------------------

    def reset_rx(self) -> None:
        """Drop a chain cut by a disconnect, counting it (lock held)."""
        st = self.rx_state
        if st is not None:
            if st.in_chain:
                self.stats.drops += 1
            st.in_chain = 0
            st.dropping = 0
            st.len = 0

    def quiesce(self) -> None:
        self.down = True
        with self.lock:  # waits for a data-path call in another thread
            views, self.views = self.views, None
            held, self.held = self.held, None
            if self.is_rx:
                self.reset_rx()
        for v in (views, held):
            if v is not None:
                v.invalidate()

    def new_rx_state(self) -> Any:
        """The chain-reassembly state, allocated on first use."""
        if self.rx_state is None:
            self.rx_state = ffi.new("memif_cffi_rx_state_t *")
            self.cq.state = self.rx_state
            self._sync_ready()
        return self.rx_state

    def ensure_rx(self, count: int) -> None:
        """Scratch arrays for bursts of up to count buffers."""
        self.new_rx_state()
        if count > self.cap:
            cap = max(count, 64)
            self.bufs = ffi.new("memif_buffer_t[]", cap)
            self.ptrs = ffi.new("uintptr_t[]", cap)
            self.lens = ffi.new("uint32_t[]", cap)
            self.firsts = ffi.new("uint32_t[]", cap)
            self.nsegs = ffi.new("uint16_t[]", cap)
            self.cap = cap


class RxViewsBase:
    """What QueueState needs to know about an open views() block (see queues.py)."""

    def invalidate(self) -> None:
        """Release every view now (the memory is about to go away)."""
        raise NotImplementedError

    def settle(self) -> bool:
        """Try again to release held views; True when nothing references them."""
        raise NotImplementedError

    def give_back(self) -> None:
        """Refill the buffers of settled views (queue lock held)."""
        raise NotImplementedError


def release_views(views: list[memoryview], wait: float) -> bool:
    """Release memoryviews; retry exported ones up to ``wait`` seconds."""
    pending = list(views)
    deadline = time.monotonic() + wait
    while True:
        still: list[memoryview] = []
        for view in pending:
            try:
                view.release()
            except BufferError:
                still.append(view)
        if not still or time.monotonic() >= deadline:
            return not still
        pending = still
        time.sleep(0.001)


VIEW_RELEASE_WAIT = _VIEW_RELEASE_WAIT
