"""scapy over memif: a scapy socket whose packets travel on a memif interface.

:class:`MemifSocket` is a scapy ``SuperSocket``: everything scapy does with
an opened socket works on a memif link, for example::

    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether
    from scapy.sendrecv import sendp, sniff

    from memif_cffi.contrib.scapy import MemifSocket

    with MemifSocket.open("/run/vpp/memif.sock", timeout=5) as sock:
        sendp(Ether() / IP(dst="192.168.1.1") / ICMP(), socket=sock)
        replies = sniff(opened_socket=sock, count=1, timeout=2)
        answer = sock.sr1(Ether() / IP(dst="192.168.1.1") / ICMP(), timeout=2)

Received frames are dissected as ``Ether`` in ethernet mode and as ``IP`` /
``IPv6`` (from the version nibble) in IP mode, unless ``basecls`` says
otherwise; ``send`` takes packets or bytes.

The socket drives the event loop of the interface's Context itself:
receiving or selecting runs ``Context.poll(0)``, so the Context must use the
internal event loop (no ``selector`` / ``on_fd_update``). Its ``fileno()`` is
an epoll fd of its own that watches the Context's fd and the eventfds of the
receive queues, so a plain ``select`` on the socket wakes up for control
events and for packets. Receive queues must be in interrupt mode (the
default); other threads may poll the same Context, but only the socket should
read the interface's receive queues, and the interface should have no
``on_interrupt`` callback.

Requires scapy: ``pip install memif_cffi[scapy]``.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import select
import time
from collections.abc import Iterable
from typing import Any

from scapy.config import conf
from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.supersocket import SuperSocket

from memif_cffi.context import Context
from memif_cffi.enums import Mode, Role
from memif_cffi.interface import Interface

__all__ = ["MemifSocket"]

#: scapy's "whole packet" receive size (scapy.data.MTU).
_MTU = 0xFFFF


class MemifSocket(SuperSocket):  # type: ignore[misc]  # scapy is untyped here
    """A scapy socket on a memif :class:`~memif_cffi.Interface`.

    Args:
        interface: the interface to send and receive on; its Context must use
            the internal event loop.
        recv_queues: ids of the rx queues to receive from (default: all).
        send_queue: id of the tx queue :meth:`send` uses.
        basecls: scapy class that dissects received frames (default: by
            interface mode, see the module documentation).
        burst: frames taken from a queue per receive call.
        send_timeout: seconds :meth:`send` retries while the tx ring is full
            before raising ``BlockingIOError``.
        close_interface: :meth:`close` also closes the interface.

    :meth:`open` makes a socket with its own Context and interface.
    """

    desc = "a memif interface (memif_cffi)"
    nonblocking_socket = False

    def __init__(
        self,
        interface: Interface,
        *,
        recv_queues: Iterable[int] | None = None,
        send_queue: int = 0,
        basecls: Any = None,
        burst: int = 256,
        send_timeout: float = 1.0,
        close_interface: bool = False,
    ) -> None:
        # Nothing to release until the checks pass (scapy's __del__ calls close).
        self.closed = True
        self._pending: collections.deque[tuple[bytes, float]] = collections.deque()
        self._owned: Context | None = None
        self._intf = interface
        self._ctx = interface.context
        self._recv_queues = None if recv_queues is None else tuple(int(q) for q in recv_queues)
        self._send_queue = int(send_queue)
        self._burst = burst
        self._send_timeout = send_timeout
        self._close_interface = close_interface
        self.basecls = basecls
        self.iface = interface.name
        # Watches the Context's epoll fd and, while connected, the rx eventfds.
        self._poller: Any = None
        self._queue_fds: list[int] = []
        self._link = -1  # interface.connections when _queue_fds was filled
        if burst < 1:
            raise ValueError(f"burst must be >= 1, not {burst!r}")
        if not send_timeout >= 0:
            raise ValueError(f"send_timeout must be >= 0, not {send_timeout!r}")
        try:
            ctx_fd = self._ctx.fileno()
        except RuntimeError as exc:
            raise ValueError(
                "MemifSocket drives its Context's event loop: create the Context "
                "without selector/on_fd_update"
            ) from exc
        self._poller = select.epoll()
        self._poller.register(ctx_fd, select.EPOLLIN)
        self.closed = False

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        role: Role = Role.SLAVE,
        timeout: float | None = 5.0,
        app_name: str = "scapy",
        recv_queues: Iterable[int] | None = None,
        send_queue: int = 0,
        basecls: Any = None,
        send_timeout: float = 1.0,
        **interface_args: Any,
    ) -> MemifSocket:
        """A socket on a new interface in a Context of its own.

        ``path`` is the control socket (``"@name"``: abstract), ``role`` the
        interface's role; other keywords go to :meth:`Context.interface`
        (``id``, ``secret``, ``mode``, ``rx_queues``...). Waits up to
        ``timeout`` seconds for the connection (None: does not wait).
        :meth:`close` closes the Context.
        """
        ctx = Context(app_name)
        try:
            intf = ctx.interface(ctx.socket(path), role=role, **interface_args)
            sock = cls(intf, recv_queues=recv_queues, send_queue=send_queue, basecls=basecls,
                       send_timeout=send_timeout)
            sock._owned = ctx
            if timeout is not None:
                intf.wait_connected(timeout)
        except BaseException:
            ctx.close()
            raise
        return sock

    # ------------------------------------------------------------- identity

    @property
    def interface(self) -> Interface:
        """The memif interface."""
        return self._intf

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("connected" if self._intf.connected else "down")
        return f"<MemifSocket {self._intf.name!r} {self._intf.role.name.lower()} {state}>"

    # -------------------------------------------------------------- receive

    def fileno(self) -> int:
        """An epoll fd, readable when the Context has events or a receive queue was signalled."""
        if self.closed:
            return -1
        return int(self._poller.fileno())

    def _queues(self) -> Iterable[Any]:
        rx = self._intf.rx
        if self._recv_queues is None:
            return rx
        return (rx[q] for q in self._recv_queues if q < len(rx))

    def _watch_queues(self) -> None:
        """Keep the rx eventfds of the current connection in the poller."""
        intf = self._intf
        link = intf.connections if intf.connected else -1
        if link == self._link:
            return
        for fd in self._queue_fds:
            # Gone already when the library closed it at the disconnect.
            with contextlib.suppress(OSError):
                self._poller.unregister(fd)
        self._queue_fds = []
        self._link = link
        if link >= 0:
            for q in self._queues():
                fd = q.fileno()
                self._poller.register(fd, select.EPOLLIN)
                self._queue_fds.append(fd)

    def _fill(self) -> bool:
        """Run pending events, then take received frames; True if any is waiting."""
        if self.closed:
            return False
        if not self._pending:
            self._ctx.poll(0)
            self._watch_queues()
            if self._intf.connected:
                for q in self._queues():
                    frames = q.recv_burst(self._burst)
                    if frames:
                        now = time.time()
                        self._pending.extend((frame, now) for frame in frames)
        return bool(self._pending)

    def _class_for(self, frame: bytes) -> Any:
        if self.basecls is not None:
            return self.basecls
        mode = self._intf.mode
        if mode is Mode.ETHERNET:
            return Ether
        if mode is Mode.IP and frame:
            version = frame[0] >> 4
            if version == 4:
                return IP
            if version == 6:
                return IPv6
        return conf.raw_layer

    def recv_raw(self, x: int = _MTU) -> tuple[Any, bytes | None, float | None]:
        """One received frame as ``(class, bytes, time)``; ``(None, None, None)`` if none.

        Never blocks: scapy calls it once :meth:`select` reports the socket.
        Frames are whole (``x`` is not applied).
        """
        if not self._fill():
            return None, None, None
        frame, stamp = self._pending.popleft()
        return self._class_for(frame), frame, stamp

    @staticmethod
    def select(sockets: list[Any], remain: float | None = None) -> list[Any]:
        """Sockets with frames to read, waiting up to ``remain`` seconds (None: no limit).

        Works on a mix of memif sockets and other objects with ``fileno()``.
        """
        ready = [s for s in sockets if isinstance(s, MemifSocket) and s._fill()]
        if ready:
            return ready
        readable, _, _ = select.select(sockets, [], [], remain)
        return list(readable)

    # ----------------------------------------------------------------- send

    def send(self, x: Any) -> int:
        """Send a packet (or bytes) on the tx queue; returns its length.

        While the ring is full the call runs the event loop and retries, for
        up to ``send_timeout`` seconds, then raises ``BlockingIOError``.
        """
        frame = bytes(x)
        with contextlib.suppress(AttributeError, TypeError):
            x.sent_time = time.time()
        tx = self._intf.tx[self._send_queue]
        deadline: float | None = None
        while not tx.send(frame):
            now = time.monotonic()
            if deadline is None:
                deadline = now + self._send_timeout
            elif now >= deadline:
                raise BlockingIOError(
                    errno.ENOBUFS,
                    f"tx queue {self._send_queue} of {self._intf.name!r} stayed full "
                    f"for {self._send_timeout} s",
                )
            self._ctx.poll(0.001)
        return len(frame)

    # ---------------------------------------------------------------- close

    def close(self) -> None:
        """Forget buffered frames; close the owned Context (or the interface if asked)."""
        if self.closed:
            return
        self.closed = True
        self._pending.clear()
        self._poller.close()
        if self._owned is not None:
            self._owned.close()
        elif self._close_interface:
            self._intf.close()
