"""Context and Socket: a memif database and the sockets in it.

A :class:`Context` is one libmemif per-thread database
(``memif_per_thread_init``): its own sockets, interfaces and event loop.
Several contexts live side by side in a process, in one thread or in many;
two contexts may even talk to each other over a socket.

Event loops:

* internal (default): :meth:`Context.poll` waits on the context's epoll set;
  :meth:`Context.fileno` is that epoll fd, so one fd in any selector or
  asyncio loop watches the whole context (see :mod:`memif_cffi.aio`);
* external: ``Context(selector=sel)`` registers the library's fds in your
  :mod:`selectors` selector (``key.data(key.fileobj, mask)`` dispatches), or
  ``Context(on_fd_update=func)`` hands them to ``func(fd, events)`` and you
  call :meth:`Context.handle_event` when one is ready.
"""

from __future__ import annotations

import math
import os
import selectors
import weakref
from collections.abc import Callable

from memif_cffi._core import (
    Closable,
    ClosedError,
    ContextState,
    IfaceState,
    SocketState,
    finalize_context,
)
from memif_cffi.enums import FdEvent, Mode, Role
from memif_cffi.errors import error_for
from memif_cffi.interface import ConnectCallback, Interface, InterruptCallback, ring_log2
from memif_cffi.lowlevel import check, ffi, lib, new_conn_args

__all__ = ["Context", "Socket"]

_NAME_MAX = 32
_SECRET_MAX = 24
_PATH_MAX = 107


def _name_bytes(what: str, value: str | bytes, limit: int) -> bytes:
    raw = value.encode("utf-8") if isinstance(value, str) else value
    if not isinstance(raw, bytes):
        raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")
    if b"\0" in raw:
        raise ValueError(f"{what} must not contain NUL characters")
    if len(raw) > limit:
        raise ValueError(f"{what} is {len(raw)} bytes long; the limit is {limit} bytes")
    return raw


def _int_in(what: str, value: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{what} must be in {low}..{high}, not {value}")
    return value


class Socket(Closable):
    """A memif control socket of a Context: a filesystem path or an ``@abstract`` name.

    Created with :meth:`Context.socket`. The first master interface on it
    makes it listen; slaves connect to it. Several sockets may name the same
    path in one process (e.g. a master and a slave of two contexts).
    """

    def __init__(self, context: Context, state: SocketState, path: str) -> None:
        self._context = context
        self._state = state
        self._path = path

    @property
    def path(self) -> str:
        """The path as given (abstract names keep their leading ``@``)."""
        return self._path

    @property
    def abstract(self) -> bool:
        """True for an abstract-namespace socket (``@name``)."""
        return self._path.startswith("@")

    @property
    def context(self) -> Context:
        """The Context the socket belongs to."""
        return self._context

    @property
    def closed(self) -> bool:
        """True once closed (directly or with its Context)."""
        return self._state.closed or self._state.closing

    @property
    def interfaces(self) -> tuple[Interface, ...]:
        """The open interfaces on this socket."""
        return tuple(i for i in self._context.interfaces if i.socket is self)

    def close(self) -> None:
        """Close the interfaces on this socket, then the socket. Idempotent."""
        if self.closed:
            return
        errors: list[BaseException] = []
        for intf in self.interfaces:
            try:
                intf.close()
            except Exception as exc:
                errors.append(exc)
        if not self._context._state.closed:
            self._state.request_close()
        self._context._forget_socket(self)
        if errors:
            raise errors[0]


    def __repr__(self) -> str:
        return f"<memif Socket {self._path!r}{' closed' if self.closed else ''}>"


class Context(Closable):
    """A memif database with its own sockets, interfaces and event loop.

    Args:
        app_name: instance name sent to peers (at most 32 bytes; default
            the library's ``"libmemif-app"``).
        selector: external event loop: the library's fds are registered in
            this :mod:`selectors` selector with a callable as ``data``; call
            ``key.data(key.fileobj, mask)`` for each ready key (or
            :meth:`poll`, which does that for the keys of this context).
        on_fd_update: external event loop, general form:
            ``on_fd_update(fd, events)`` is called when the library wants
            ``fd`` watched (:class:`FdEvent` ``READ``) or forgotten (``DEL``);
            report readiness with :meth:`handle_event`. Returning a negative
            number (or raising) refuses the fd: the library call that wanted
            it fails (``FdUpdateCallbackError``, or the exception raised).
        reconnect_interval: seconds between a disconnected slave's connection
            attempts (library default 2; 0 disables).

    Use it as a context manager, or call :meth:`close`. A Context that is
    garbage-collected without being closed is cleaned up by a finalizer
    (interfaces, then sockets, then the database).
    """

    def __init__(
        self,
        app_name: str | None = None,
        *,
        selector: selectors.BaseSelector | None = None,
        on_fd_update: Callable[[int, FdEvent], object] | None = None,
        reconnect_interval: float | None = None,
    ) -> None:
        if selector is not None and on_fd_update is not None:
            raise ValueError("give either selector or on_fd_update, not both")
        if on_fd_update is not None and not callable(on_fd_update):
            raise TypeError("on_fd_update must be callable")
        raw = None if app_name is None else _name_bytes("app_name", app_name, _NAME_MAX)
        if reconnect_interval is not None and not reconnect_interval >= 0:
            raise ValueError(f"reconnect_interval must be >= 0, not {reconnect_interval!r}")
        self._state = ContextState(raw, selector, on_fd_update)
        self._finalizer = weakref.finalize(self, finalize_context, self._state)
        self._interfaces: list[Interface] = []
        self._sockets: list[Socket] = []
        default = ffi.string(lib.MEMIF_DEFAULT_APP_NAME).decode()
        self._app_name = app_name if app_name is not None else default
        if reconnect_interval is not None:
            self.set_reconnect_interval(reconnect_interval)

    # ------------------------------------------------------------ identity

    @property
    def app_name(self) -> str:
        """Instance name sent to peers."""
        return self._app_name

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._state.closed or self._state.closing

    @property
    def interfaces(self) -> tuple[Interface, ...]:
        """The open interfaces, oldest first."""
        self._prune()
        return tuple(self._interfaces)

    @property
    def sockets(self) -> tuple[Socket, ...]:
        """The open sockets, oldest first."""
        return tuple(self._sockets)

    def __repr__(self) -> str:
        return (f"<memif Context {self._app_name!r} {len(self._interfaces)} interfaces"
                f"{' closed' if self.closed else ''}>")

    # -------------------------------------------------------------- making

    def socket(self, path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> Socket:
        """A socket for ``path``: a filesystem path, or ``"@name"`` for an abstract one.

        At most 107 bytes. Nothing is bound or connected until an interface
        uses it.
        """
        self._state.check_open()
        raw = os.fsencode(path)
        if not raw or raw == b"@":
            raise ValueError("the socket path must not be empty")
        if b"\0" in raw:
            raise ValueError("the socket path must not contain NUL characters")
        if len(raw) > _PATH_MAX:
            raise ValueError(f"the socket path is {len(raw)} bytes long; the limit is {_PATH_MAX}")
        for other in self._sockets:
            if other.path == os.fsdecode(raw) and not other.closed and any(
                    i.role is Role.MASTER for i in other.interfaces):
                raise error_for(lib.MEMIF_ERR_INVAL_ARG,
                                f"a socket of this Context already listens on {other.path!r}; "
                                "use that Socket object")
        st = self._state
        with st.lock:
            st.check_open()
            state = SocketState(st, raw)
        sock = Socket(self, state, os.fsdecode(raw))
        self._sockets.append(sock)
        return sock

    def interface(
        self,
        socket: Socket,
        *,
        role: Role = Role.SLAVE,
        id: int = 0,
        name: str | bytes = "",
        secret: str | bytes | None = None,
        mode: Mode = Mode.ETHERNET,
        rx_queues: int = 1,
        tx_queues: int = 1,
        ring_size: int = 1024,
        buffer_size: int = 2048,
        headroom: int = 0,
        on_connect: ConnectCallback | None = None,
        on_disconnect: ConnectCallback | None = None,
        on_interrupt: InterruptCallback | None = None,
    ) -> Interface:
        """Create an interface on ``socket`` (every ``memif_conn_args_t`` field is a keyword).

        Args:
            socket: a :class:`Socket` of this Context.
            role: :attr:`Role.MASTER` (listens) or :attr:`Role.SLAVE` (connects
                at once, then retries every ``reconnect_interval``).
            id: ``interface_id``, 0..2**32-1; master and slave must match.
            name: ``interface_name``, at most 32 bytes.
            secret: at most 24 bytes; None for none. Must match the peer's.
            mode: :class:`Mode`; must match the peer's.
            rx_queues: receive queues, 1..255 (``num_m2s_rings`` for a
                slave, ``num_s2m_rings`` for a master; a master's counts are
                maxima, the slave's are used).
            tx_queues: transmit queues, 1..255 (mapped the other way).
            ring_size: slots per ring, a power of two 2..16384 (``log2_ring_size``).
            buffer_size: bytes per buffer, 1..65535; larger packets are chained.
            headroom: slave only: bytes left free at the front of every
                receive buffer posted to the master (``memif_refill_queue``'s
                ``headroom``), 0..buffer_size-1, so that a received packet
                can grow at the front in place (e.g. before
                :meth:`RxViews.forward <memif_cffi.queues.RxViews.forward>`).
                The master's receive buffers are posted by the slave, so a
                master takes 0 only.
            on_connect: called with the interface once it is connected
                (see :class:`Interface`).
            on_disconnect: called with the interface when it disconnects.
            on_interrupt: called with the interface and a queue number when
                that rx queue is signalled; it also puts the rx eventfds in
                the context's event loop. Without it, use ``rx[q].fileno()``
                or poll the queues.

        The defaults are the C library's (one queue each way, 1024 slots of
        2048 bytes). Wrong arguments raise before any C call.
        """
        st = self._state
        st.check_open()
        if not isinstance(socket, Socket) or socket.context is not self:
            raise ValueError("socket must be a Socket created by this Context")
        if socket.closed:
            raise ClosedError(f"socket {socket.path!r} is closed")
        role = Role(role)
        mode = Mode(mode)
        _int_in("id", id, 0, 2**32 - 1)
        raw_name = _name_bytes("name", name, _NAME_MAX)
        raw_secret = b"" if secret is None else _name_bytes("secret", secret, _SECRET_MAX)
        _int_in("rx_queues", rx_queues, 1, 255)
        _int_in("tx_queues", tx_queues, 1, 255)
        log2 = ring_log2(ring_size)
        _int_in("buffer_size", buffer_size, 1, 65535)
        _int_in("headroom", headroom, 0, buffer_size - 1)
        for cb_name, cb in (("on_connect", on_connect), ("on_disconnect", on_disconnect),
                            ("on_interrupt", on_interrupt)):
            if cb is not None and not callable(cb):
                raise TypeError(f"{cb_name} must be callable or None")
        region = buffer_size * (1 << log2) * (rx_queues + tx_queues)
        if region > 2**32 - 1:
            raise error_for(lib.MEMIF_ERR_INVAL_ARG,
                            f"buffers of {region} bytes exceed the 4 GiB region limit")
        is_master = role is Role.MASTER
        if is_master and headroom:
            raise ValueError("headroom applies to the receive buffers a slave posts; "
                             "a master receives into the buffers its slave posted")
        users = socket.interfaces
        if users and (users[0].role is Role.MASTER) != is_master:
            raise error_for(lib.MEMIF_ERR_INVAL_ARG,
                            f"socket {socket.path!r} is used by {users[0].role.name.lower()} "
                            "interfaces; one socket serves one role")
        if is_master and any(i.id == id for i in users):
            raise error_for(lib.MEMIF_ERR_INVAL_ARG,
                            f"a master with id {id} already exists on socket {socket.path!r}")
        text_name = raw_name.decode("utf-8", "replace")
        with st.lock:
            st.check_open()
            if socket.closed:
                raise ClosedError(f"socket {socket.path!r} is closed")
            state = IfaceState(st, socket._state, text_name, is_master, rx_queues, tx_queues,
                               on_interrupt is not None, headroom)
            args = new_conn_args(
                socket=socket._state.handle[0],
                secret=raw_secret,
                num_s2m_rings=rx_queues if is_master else tx_queues,
                num_m2s_rings=tx_queues if is_master else rx_queues,
                buffer_size=buffer_size,
                log2_ring_size=log2,
                is_master=is_master,
                interface_id=id,
                interface_name=raw_name,
                mode=int(mode),
            )
            cbs = state.callbacks
            try:
                check(lib.memif_create(state.conn, args, cbs.on_connect, cbs.on_disconnect,
                                       cbs.on_interrupt, cbs.private_ctx))
            except BaseException:
                if state.conn[0] == ffi.NULL:
                    cbs.release()
                raise
            st.ifaces.append(state)
            intf = Interface(self, socket, state, role=role, id=id, name=text_name, mode=mode,
                             on_connect=on_connect, on_disconnect=on_disconnect,
                             on_interrupt=on_interrupt)
            self._prune()
            self._interfaces.append(intf)
        return intf

    # ---------------------------------------------------------- event loop

    def fileno(self) -> int:
        """The context's epoll fd: readable when :meth:`poll` has work to do.

        Only with the internal event loop (no ``selector``/``on_fd_update``).
        """
        return self._state.epoll_fd()

    def poll(self, timeout: float | None = 0.0) -> int:
        """Wait up to ``timeout`` seconds for events and handle all that are ready.

        ``timeout`` None waits until an event arrives; 0 only handles what
        is already pending. Handles events until none is immediately ready
        (at most 256 per call), then returns how many it handled. An exception
        raised by a callback is raised here, with its traceback, once the
        library's state is consistent; events not handled yet stay for the
        next call. Returns early (0) when :meth:`cancel_poll` is called or the
        Context is closed from another thread.
        """
        if timeout is None:
            ms = -1
        elif timeout >= 0:
            ms = math.ceil(timeout * 1000)
        else:
            raise ValueError(f"timeout must be >= 0 or None, not {timeout!r}")
        return self._state.poll(ms)

    def cancel_poll(self) -> None:
        """Make a :meth:`poll` blocked in another thread return (thread-safe)."""
        self._state.cancel_poll()

    def handle_event(self, fd: int, events: int) -> None:
        """External event loop: ``fd`` (announced through ``on_fd_update``) is ready.

        ``events`` is a combination of :class:`FdEvent` ``READ``/``WRITE``/
        ``ERROR`` (report hang-ups as ``READ``). Callback exceptions are
        raised here.
        """
        if not self._state.external:
            raise RuntimeError("handle_event() is for Contexts with selector or on_fd_update")
        self._state.handle_event(fd, int(events))

    def set_reconnect_interval(self, seconds: float) -> None:
        """Seconds between connection attempts of disconnected slaves (0: never)."""
        self._state.set_reconnect_interval(seconds)

    # ------------------------------------------------------------ closing

    def close(self) -> None:
        """Close every interface, then every socket, then the database. Idempotent.

        Waits for threads blocked in :meth:`poll` to return. From inside a
        callback of this Context, the close happens when the current poll()
        has finished dispatching. Raises the first exception raised by an
        ``on_disconnect`` callback, after everything is closed.
        """
        try:
            self._state.close()
        finally:
            if self._state.closed:
                self._finalizer.detach()
                self._interfaces.clear()
                self._sockets.clear()

    def _forget(self, intf: Interface) -> None:
        if intf._state.closed and intf in self._interfaces:
            self._interfaces.remove(intf)

    def _prune(self) -> None:
        # Interfaces closed from a callback are deleted after the dispatch.
        self._interfaces = [i for i in self._interfaces if not i._state.closed]

    def _forget_socket(self, sock: Socket) -> None:
        if sock.closed and sock in self._sockets:
            self._sockets.remove(sock)

