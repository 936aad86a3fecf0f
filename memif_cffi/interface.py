"""Interface: one memif connection (master or slave) of a Context.

Create interfaces with :meth:`Context.interface <memif_cffi.Context.interface>`.
The Context keeps every open interface alive and closes it with itself; an
interface's queues are :attr:`Interface.rx` and :attr:`Interface.tx`.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from memif_cffi._core import Closable, ClosedError, IfaceState
from memif_cffi.enums import Mode, Role
from memif_cffi.errors import error_for
from memif_cffi.info import InterfaceCounters, InterfaceDetails, details_from_c
from memif_cffi.lowlevel import ffi, lib
from memif_cffi.queues import RxQueue, TxQueue

if TYPE_CHECKING:
    from memif_cffi.context import Context, Socket

__all__ = ["ConnectCallback", "Interface", "InterruptCallback"]

#: ``on_connect(interface)`` / ``on_disconnect(interface)``.
ConnectCallback = Callable[["Interface"], object]
#: ``on_interrupt(interface, qid)``: rx queue ``qid`` was signalled.
InterruptCallback = Callable[["Interface", int], object]

_DETAILS_SIZES = (4096, 32768)


class Interface(Closable):
    """A memif interface: its connection state, details, counters and queues.

    Callbacks run on the thread that polls the Context, inside
    :meth:`Context.poll <memif_cffi.Context.poll>` (or ``handle_event``, or
    :meth:`close` for ``on_disconnect``):

    * ``on_connect(intf)`` once the queues are usable (a slave's rx rings are
      already refilled);
    * ``on_disconnect(intf)`` exactly once per ``on_connect``, before the
      shared memory goes away; queues are already stopped;
    * ``on_interrupt(intf, qid)`` when rx queue ``qid`` was signalled: receive
      from ``intf.rx[qid]`` there. When it comes back full, the queue stays
      signalled and the callback runs again in the same ``poll()``, so
      nothing waits for another signal from the peer. If the callback does
      not receive at all, the signal is consumed and the packets wait in the
      ring.

    An exception raised by a callback is re-raised, with its traceback, by the
    call that ran it (``poll()``, ``handle_event()``, ``close()``), after the
    library finished its own work. Closing the interface from one of its
    callbacks is allowed: it happens once that poll() has dispatched.
    """

    def __init__(
        self,
        context: Context,
        socket: Socket,
        state: IfaceState,
        *,
        role: Role,
        id: int,
        name: str,
        mode: Mode,
        on_connect: ConnectCallback | None,
        on_disconnect: ConnectCallback | None,
        on_interrupt: InterruptCallback | None,
    ) -> None:
        self._context = context
        self._socket = socket
        self._state = state
        self._role = role
        self._id = id
        self._name = name
        self._mode = mode
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._on_interrupt = on_interrupt
        self._rx = tuple(RxQueue(self, q) for q in state.rxq)
        self._tx = tuple(TxQueue(self, q) for q in state.txq)
        state.owner = weakref.ref(self)

    # ------------------------------------------------------------ identity

    @property
    def context(self) -> Context:
        """The Context that owns this interface."""
        return self._context

    @property
    def socket(self) -> Socket:
        """The Socket the interface listens on (master) or connects to (slave)."""
        return self._socket

    @property
    def role(self) -> Role:
        """:attr:`Role.MASTER` or :attr:`Role.SLAVE`."""
        return self._role

    @property
    def id(self) -> int:
        """Interface id, matched against the peer's."""
        return self._id

    @property
    def name(self) -> str:
        """Interface name sent to the peer."""
        return self._name

    @property
    def mode(self) -> Mode:
        """Interface mode (both sides must agree)."""
        return self._mode

    @property
    def headroom(self) -> int:
        """Bytes left free at the front of each receive buffer (slave; 0 for a master)."""
        return self._state.headroom

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("connected" if self.connected else "disconnected")
        return (f"<memif Interface {self._name!r} id={self._id} {self._role.name.lower()} "
                f"{state}>")

    # --------------------------------------------------------------- state

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._state.closing or self._state.closed

    @property
    def connected(self) -> bool:
        """True between ``on_connect`` and ``on_disconnect``."""
        return self._state.connected and not self.closed

    @property
    def connections(self) -> int:
        """How many times the interface has connected so far."""
        return self._state.connects

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedError(f"interface {self._name!r} is closed")

    def wait_connected(self, timeout: float | None = None) -> None:
        """Poll the Context until the interface is connected.

        ``timeout`` in seconds (None: no limit). Raises TimeoutError with the
        last connection error the library recorded (``details.error``).
        Returns at once when already connected. Must not be called from a
        callback of the same Context.

        A master is connected a moment before its slave has posted the
        buffers the master transmits into (the slave does that in its own
        ``on_connect``), so a master's first sends may report a full ring:
        retry them, as with any backpressure.
        """
        self._check_open()
        self._context._state.check_dispatch_allowed("wait_connected()")
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be >= 0 or None, not {timeout!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.connected:
            self._check_open()
            step = 0.1
            if deadline is not None:
                step = min(step, deadline - time.monotonic())
                if step <= 0:
                    reason = self.details.error or "no answer from the peer yet"
                    raise TimeoutError(
                        f"interface {self._name!r} not connected after {timeout} s: {reason}"
                    )
            self._context.poll(step)

    def connect(self) -> None:
        """Try to connect now (slave only), instead of waiting for the reconnect timer.

        Raises the reason when the attempt fails at once
        (``ConnRefusedError``, ``NoFileError``...) and ``AlreadyConnectedError``
        when connected or connecting.
        """
        self._check_open()
        if self._role is Role.MASTER:
            raise ValueError("a master interface does not connect; it waits for slaves")
        ctx = self._context._state
        with ctx.lock:
            self._check_open()
            rc = lib.memif_request_connection(self._state.conn[0])
        if rc != 0:
            raise error_for(rc, f"connecting interface {self._name!r}")

    # ----------------------------------------------------------- queues

    @property
    def rx(self) -> tuple[RxQueue, ...]:
        """Receive queues: as negotiated while connected, as configured otherwise."""
        st = self._state
        return self._rx[: st.n_rx] if st.connected else self._rx

    @property
    def tx(self) -> tuple[TxQueue, ...]:
        """Transmit queues: as negotiated while connected, as configured otherwise."""
        st = self._state
        return self._tx[: st.n_tx] if st.connected else self._tx

    # ------------------------------------------------------------ details

    def _check_handle(self) -> None:
        # Details stay readable while closing (e.g. in on_disconnect run by close()).
        if self._state.closed or self._state.conn[0] == ffi.NULL:
            raise ClosedError(f"interface {self._name!r} is closed")

    @property
    def details(self) -> InterfaceDetails:
        """A snapshot of ``memif_get_details`` (names, peer, queues, last error).

        Readable until the interface is deleted, including from
        ``on_disconnect`` when :meth:`close` runs it.
        """
        self._check_handle()
        ctx = self._context._state
        md = ffi.new("memif_details_t *")
        for size in _DETAILS_SIZES:
            buf = ffi.new("char[]", size)
            with ctx.lock:
                self._check_handle()
                rc = lib.memif_get_details(self._state.conn[0], md, buf, size)
                if rc == 0 or (rc == lib.MEMIF_ERR_NOBUF_DET and size == _DETAILS_SIZES[-1]):
                    return details_from_c(md)
            if rc != lib.MEMIF_ERR_NOBUF_DET:
                raise error_for(rc, f"details of interface {self._name!r}")
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def counters(self) -> InterfaceCounters:
        """Packets, bytes and drops of all queues (a snapshot; see QueueCounters)."""
        rx = [q.stats for q in self._state.rxq]
        tx = [q.stats for q in self._state.txq]
        return InterfaceCounters(
            rx_packets=sum(int(s.packets) for s in rx),
            rx_bytes=sum(int(s.bytes) for s in rx),
            rx_drops=sum(int(s.drops) for s in rx),
            tx_packets=sum(int(s.packets) for s in tx),
            tx_bytes=sum(int(s.bytes) for s in tx),
            tx_drops=sum(int(s.drops) for s in tx),
        )

    # ------------------------------------------------------------ closing

    def close(self) -> None:
        """Disconnect (``on_disconnect`` runs if connected) and delete the interface.

        Idempotent. Waits for a data-path call running in another thread on
        one of its queues; releases open zero-copy views. Raises an exception
        raised by ``on_disconnect``, after the interface is gone.
        """
        errors = self._state.request_close()
        self._context._forget(self)
        for queue in (*self._rx, *self._tx):
            queue._pairs.clear()  # the batches they moved lately: theirs to free now
        if errors:
            first = errors[0]
            for other in errors[1:]:
                if hasattr(first, "add_note"):
                    first.add_note(f"also raised: {other!r}")
            raise first



def ring_log2(ring_size: int) -> int:
    """log2 of a ring size (power of two, 2-16384); RingSizeError otherwise."""
    if isinstance(ring_size, bool) or not isinstance(ring_size, int):
        raise TypeError(f"ring_size must be an int, not {type(ring_size).__name__}")
    if ring_size < 2 or ring_size & (ring_size - 1):
        raise error_for(lib.MEMIF_ERR_MAX_RING,
                        f"ring_size must be a power of two from 2 to 16384, not {ring_size}")
    log2 = int(math.log2(ring_size))
    if log2 > 14:
        raise error_for(lib.MEMIF_ERR_MAX_RING,
                        f"ring_size {ring_size} is larger than the limit 16384 (2**14)")
    return log2
