"""The raw libmemif 3.1 API, for programs that want the C call sequence.

``ffi`` and ``lib`` come from the compiled module: every libmemif function,
type and constant is there under its C name (``lib.memif_create``,
``ffi.new("memif_conn_args_t *")``, ``lib.MEMIF_ERR_NOCONN``...), plus the
burst-copy helpers ``lib.memif_cffi_tx_copy`` / ``lib.memif_cffi_rx_copy``.

This module adds what Python needs around them:

* :func:`check` turns a non-zero return code into the matching
  :class:`~memif_cffi.errors.MemifError` subclass;
* :class:`FdUpdate` and :func:`set_global_fd_update` provide the fd-update
  callback of a database, :class:`ConnCallbacks` the on_connect /
  on_disconnect / on_interrupt callbacks of an interface, as Python callables.

An exception raised inside a Python callback cannot propagate through C, so it
is stored (per thread) and raised by the next :func:`check`,
:func:`raise_pending` or :func:`poll_event` on the thread that ran the
callback. A ported C program therefore reads like the original::

    from memif_cffi.lowlevel import (
        ConnCallbacks, check, ffi, lib, new_conn_args, poll_event)

    pt_main = ffi.new("memif_per_thread_main_handle_t *")
    check(lib.memif_per_thread_init(pt_main, ffi.NULL, ffi.NULL, b"app",
                                    ffi.NULL, ffi.NULL, ffi.NULL))
    sock = ffi.new("memif_socket_handle_t *")
    check(lib.memif_per_thread_create_socket(pt_main[0], sock, b"/run/x.sock", ffi.NULL))
    cbs = ConnCallbacks(on_connect=lambda conn, ctx: print("up"))
    args = new_conn_args(socket=sock[0], interface_id=0, is_master=False)
    conn = ffi.new("memif_conn_handle_t *")
    check(lib.memif_create(conn, args, cbs.on_connect, cbs.on_disconnect,
                           cbs.on_interrupt, cbs.private_ctx))
    while True:
        poll_event(pt_main[0], -1)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from memif_cffi._libmemif import ffi, lib
from memif_cffi._version import __version__
from memif_cffi.errors import MemifError, error_for

__all__ = [
    "ConnCallbacks",
    "FdUpdate",
    "MemifError",
    "check",
    "ffi",
    "get_args_mode",
    "lib",
    "new_conn_args",
    "poll_event",
    "raise_pending",
    "set_args_mode",
    "set_global_fd_update",
]

_built_for = ffi.string(lib.memif_cffi_version()).decode("ascii")
if _built_for != __version__:
    raise ImportError(
        f"memif_cffi._libmemif was built for memif_cffi {_built_for}, "
        f"but the package is {__version__}: rebuild the extension "
        "(make, or pip install .)"
    )

#: fd-update callback: ``func(fd, events, ctx)``; return < 0 to report failure.
FdUpdateFunc = Callable[[int, int, Any], int | None]
#: on_connect / on_disconnect callback: ``func(conn, ctx)``.
ConnFunc = Callable[[Any, Any], int | None]
#: on_interrupt callback: ``func(conn, ctx, qid)``.
InterruptFunc = Callable[[Any, Any, int], int | None]


# ---------------------------------------------------------------- errors


class _Pending(threading.local):
    """Exceptions raised by callbacks on this thread, oldest first."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []


_pending = _Pending()


def _stash(
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> None:
    if exc is None:
        exc = exc_type() if exc_type is not None else RuntimeError("unknown callback error")
    if tb is not None and exc.__traceback__ is None:
        exc = exc.with_traceback(tb)
    _pending.errors.append(exc)


def raise_pending() -> None:
    """Raise the oldest exception a callback raised on this thread, if any.

    Later ones stay queued for the next call, so none is lost.
    """
    if _pending.errors:
        raise _pending.errors.pop(0)


def check(rc: int, message: str | None = None) -> None:
    """Raise for a libmemif return code.

    A pending callback exception (see :func:`raise_pending`) is raised first,
    even when ``rc`` is 0; otherwise a non-zero ``rc`` raises the
    :class:`MemifError` subclass of that code (``message`` adds context).
    """
    if _pending.errors:
        exc = _pending.errors.pop(0)
        if rc != 0 and hasattr(exc, "add_note"):
            exc.add_note(f"the libmemif call then returned {error_for(rc)}")
        raise exc
    if rc != 0:
        raise error_for(rc, message)


def poll_event(pt_main: Any = None, timeout: int = -1) -> bool:
    """Wait up to ``timeout`` ms for one event of a database and handle it.

    ``pt_main`` is a per-thread database handle, or ``None`` for the global
    database. Returns ``False`` if the wait was cancelled
    (``memif_cancel_poll_event``), ``True`` otherwise (also on timeout).
    Exceptions raised by callbacks during the call are raised here.
    """
    if pt_main is None:
        rc = lib.memif_poll_event(timeout)
    else:
        rc = lib.memif_per_thread_poll_event(pt_main, timeout)
    if rc == lib.MEMIF_ERR_POLL_CANCEL:
        raise_pending()
        return False
    check(rc)
    return True


# ------------------------------------------------------------- callbacks

# Objects whose cffi handle has been given to C. Holding them here means a
# forgotten reference can never leave C with a dangling handle; release()
# drops them once C no longer uses the handle.
_live: dict[int, object] = {}
_live_lock = threading.Lock()


def _keep(obj: object) -> None:
    with _live_lock:
        _live[id(obj)] = obj


def _drop(obj: object) -> None:
    with _live_lock:
        _live.pop(id(obj), None)


class FdUpdate:
    """The fd-update callback of a per-thread database, as a Python callable.

    ``func(fd, events, ctx)`` is called when the library wants ``fd`` watched
    (``events`` has ``MEMIF_FD_EVENT_READ``/``WRITE``), changed
    (``MEMIF_FD_EVENT_MOD``) or dropped (``MEMIF_FD_EVENT_DEL``). Returning a
    negative number (or raising) reports failure to the library.

    Pass :attr:`callback` and :attr:`private_ctx` to ``memif_per_thread_init``.
    Call :meth:`release` after ``memif_per_thread_cleanup``.
    """

    def __init__(self, func: FdUpdateFunc, ctx: Any = None) -> None:
        self.func = func
        self.ctx = ctx
        self.callback: Any = lib._memif_cffi_on_fd_update
        self.private_ctx: Any = ffi.new_handle(self)
        _keep(self)

    def release(self) -> None:
        """Forget this object on the C side (once the database is gone)."""
        _drop(self)


_global_fd_update: tuple[FdUpdateFunc, Any] | None = None


def set_global_fd_update(func: FdUpdateFunc | None, ctx: Any = None) -> Any:
    """Set the fd-update callable of the global database.

    Returns the C callback to pass to ``memif_init`` (``ffi.NULL`` when
    ``func`` is None, which selects internal polling). The global database
    calls it with ``private_ctx`` NULL; ``ctx`` is what ``func`` receives.
    """
    global _global_fd_update
    if func is None:
        _global_fd_update = None
        return ffi.NULL
    _global_fd_update = (func, ctx)
    return lib._memif_cffi_on_fd_update


class ConnCallbacks:
    """The callbacks of one interface, as Python callables.

    ``on_connect(conn, ctx)``, ``on_disconnect(conn, ctx)`` and
    ``on_interrupt(conn, ctx, qid)``; any may be None. ``conn`` is the
    interface handle (a ``void *`` cdata), ``ctx`` the object given here.

    Pass :attr:`on_connect`, :attr:`on_disconnect`, :attr:`on_interrupt` and
    :attr:`private_ctx` to ``memif_create``. Call :meth:`release` after
    ``memif_delete``.
    """

    def __init__(
        self,
        on_connect: ConnFunc | None = None,
        on_disconnect: ConnFunc | None = None,
        on_interrupt: InterruptFunc | None = None,
        ctx: Any = None,
    ) -> None:
        self.connect_func = on_connect
        self.disconnect_func = on_disconnect
        self.interrupt_func = on_interrupt
        self.ctx = ctx
        self.on_connect: Any = lib._memif_cffi_on_connect if on_connect else ffi.NULL
        self.on_disconnect: Any = lib._memif_cffi_on_disconnect if on_disconnect else ffi.NULL
        self.on_interrupt: Any = lib._memif_cffi_on_interrupt if on_interrupt else ffi.NULL
        self.private_ctx: Any = ffi.new_handle(self)
        _keep(self)

    def release(self) -> None:
        """Forget this object on the C side (once the interface is deleted)."""
        _drop(self)


def _result(value: int | None) -> int:
    return 0 if value is None else int(value)


_F = TypeVar("_F", bound=Callable[..., int])


def _extern(func: _F) -> _F:
    """Register ``func`` as the Python side of the extern "Python" of that name."""
    ffi.def_extern(onerror=_callback_error)(func)
    return func


def _callback_error(
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> int:
    # Stored for check(); -1 tells the library an fd-update failed (the
    # value is ignored for the other callbacks).
    _stash(exc_type, exc, tb)
    return -1


@_extern
def _memif_cffi_on_fd_update(fd: int, events: int, private_ctx: Any) -> int:
    if private_ctx == ffi.NULL:
        if _global_fd_update is None:
            return -1
        func, ctx = _global_fd_update
        return _result(func(fd, events, ctx))
    target: FdUpdate = ffi.from_handle(private_ctx)
    return _result(target.func(fd, events, target.ctx))


@_extern
def _memif_cffi_on_connect(conn: Any, private_ctx: Any) -> int:
    cbs: ConnCallbacks = ffi.from_handle(private_ctx)
    if cbs.connect_func is None:
        return 0
    return _result(cbs.connect_func(conn, cbs.ctx))


@_extern
def _memif_cffi_on_disconnect(conn: Any, private_ctx: Any) -> int:
    cbs: ConnCallbacks = ffi.from_handle(private_ctx)
    if cbs.disconnect_func is None:
        return 0
    return _result(cbs.disconnect_func(conn, cbs.ctx))


@_extern
def _memif_cffi_on_interrupt(conn: Any, private_ctx: Any, qid: int) -> int:
    cbs: ConnCallbacks = ffi.from_handle(private_ctx)
    if cbs.interrupt_func is None:
        return 0
    return _result(cbs.interrupt_func(conn, cbs.ctx, qid))


# ------------------------------------------------------- argument helpers


def set_args_mode(args: Any, mode: int) -> None:
    """Set ``args->mode`` (an enum bit-field cffi cannot reach directly)."""
    lib.memif_cffi_args_set_mode(args, mode)


def get_args_mode(args: Any) -> int:
    """Read ``args->mode``."""
    return int(lib.memif_cffi_args_get_mode(args))


def new_conn_args(
    *,
    socket: Any = None,
    secret: bytes = b"",
    num_s2m_rings: int = 0,
    num_m2s_rings: int = 0,
    buffer_size: int = 0,
    log2_ring_size: int = 0,
    is_master: bool = False,
    interface_id: int = 0,
    interface_name: bytes = b"",
    mode: int = 0,
) -> Any:
    """A zeroed ``memif_conn_args_t *`` with the given fields set.

    Zero values mean the library defaults, as in C. ``secret`` (at most 24
    bytes) and ``interface_name`` (at most 32 bytes) are NUL-padded.
    """
    if len(secret) > 24:
        raise ValueError("secret is longer than 24 bytes")
    if len(interface_name) > 32:
        raise ValueError("interface_name is longer than 32 bytes")
    args = ffi.new("memif_conn_args_t *")
    args.socket = ffi.NULL if socket is None else socket
    ffi.memmove(args.secret, secret, len(secret))
    args.num_s2m_rings = num_s2m_rings
    args.num_m2s_rings = num_m2s_rings
    args.buffer_size = buffer_size
    args.log2_ring_size = log2_ring_size
    args.is_master = 1 if is_master else 0
    args.interface_id = interface_id
    ffi.memmove(args.interface_name, interface_name, len(interface_name))
    set_args_mode(args, mode)
    return args
