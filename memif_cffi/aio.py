"""asyncio integration: memif contexts driven by the running event loop.

::

    from memif_cffi import aio

    async def echo(path: str) -> None:
        async with aio.Context("echo") as ctx:
            intf = ctx.interface(ctx.socket(path), role=memif.Role.MASTER)
            await intf.wait_connected()
            async for frame in intf.rx[0]:
                await intf.tx[0].send(frame)

An :class:`aio.Context <Context>` wraps a :class:`memif_cffi.Context` (its
``sync`` attribute) and registers the context's epoll fd with the loop
(``add_reader``), so control events and rx interrupts are handled as they
come, without a thread. The queues' interrupt-driven receive drains each queue
until a burst comes back short, so no frame waits for a second signal;
``await tx.send(frame)`` waits while the ring is full instead of dropping.

Callbacks (``on_connect`` ...) are plain functions called with the
:class:`aio.Interface <Interface>`; an exception they raise is delivered to
the coroutines waiting on that context (or to the next one that awaits).
The rx queues must stay in interrupt mode (the default): a polled queue is
never signalled.
"""

from __future__ import annotations

import asyncio
import collections
import types
from collections.abc import Callable, Iterable
from typing import Any

from memif_cffi import context as _context
from memif_cffi import interface as _interface
from memif_cffi import queues as _queues
from memif_cffi._core import Closable, ClosedError
from memif_cffi.batch import PacketBatch
from memif_cffi.enums import Mode, Role
from memif_cffi.errors import DisconnectedError
from memif_cffi.info import InterfaceCounters, InterfaceDetails, QueueCounters

__all__ = ["Context", "Interface", "RxQueue", "TxQueue"]

BytesLike = bytes | bytearray | memoryview
AioConnectCallback = Callable[["Interface"], object]
AioInterruptCallback = Callable[["Interface", int], object]

# Frames one rx queue buffers in Python before it leaves them in the ring.
DEFAULT_MAX_PENDING = 8192
_BURST = 256
# Backoff while a tx ring is full: first a bare yield, then up to 2 ms.
_MIN_WAIT = 50e-6
_MAX_WAIT = 2e-3


class Context(Closable):
    """A :class:`memif_cffi.Context` whose events are handled by the running asyncio loop.

    Arguments as for :class:`memif_cffi.Context` (internal event loop only).
    Use ``async with``, or call :meth:`close`.
    """

    def __init__(self, app_name: str | None = None, *,
                 reconnect_interval: float | None = None) -> None:
        #: The underlying synchronous Context.
        self.sync = _context.Context(app_name, reconnect_interval=reconnect_interval)
        self._fd = self.sync.fileno()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: set[asyncio.Future[None]] = set()
        self._errors: list[BaseException] = []
        self._interfaces: list[Interface] = []

    # -- loop wiring -------------------------------------------------------------

    def _attach(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            if self.sync.closed:
                raise ClosedError("the memif Context is closed")
            loop.add_reader(self._fd, self._on_readable)
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("an aio.Context is bound to the event loop that first used it")
        return loop

    def _on_readable(self) -> None:
        try:
            self.sync.poll(0)
        except BaseException as exc:  # handed to the awaiting coroutines
            self._deliver(exc)

    def _deliver(self, exc: BaseException) -> None:
        waiters = [w for w in self._waiters if not w.done()]
        if not waiters:
            self._errors.append(exc)
            return
        for waiter in waiters:
            waiter.set_exception(exc)

    def _raise_pending(self) -> None:
        if self._errors:
            raise self._errors.pop(0)

    async def _wait(self, fut: asyncio.Future[None], timeout: float | None = None) -> None:
        self._waiters.add(fut)
        try:
            if timeout is None:
                await fut
            else:
                await asyncio.wait_for(fut, timeout)
        finally:
            self._waiters.discard(fut)

    # -- objects -------------------------------------------------------------------

    def socket(self, path: str | bytes) -> _context.Socket:
        """See :meth:`memif_cffi.Context.socket`."""
        return self.sync.socket(path)

    def interface(
        self,
        socket: _context.Socket,
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
        on_connect: AioConnectCallback | None = None,
        on_disconnect: AioConnectCallback | None = None,
        on_interrupt: AioInterruptCallback | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> Interface:
        """Create an interface; arguments as :meth:`memif_cffi.Context.interface`.

        ``max_pending`` bounds the frames each rx queue moves out of the ring
        ahead of the consumer. ``on_interrupt`` runs after the queue's frames
        were moved into its buffer (read them with ``await rx.recv()``).
        """
        aintf = Interface(self, on_connect, on_disconnect, on_interrupt, max_pending)
        aintf.sync = self.sync.interface(
            socket, role=role, id=id, name=name, secret=secret, mode=mode,
            rx_queues=rx_queues, tx_queues=tx_queues, ring_size=ring_size,
            buffer_size=buffer_size, headroom=headroom, on_connect=aintf._hook_connect,
            on_disconnect=aintf._hook_disconnect, on_interrupt=aintf._hook_interrupt,
        )
        aintf._make_queues()
        self._interfaces.append(aintf)
        return aintf

    @property
    def closed(self) -> bool:
        """True once closed."""
        return self.sync.closed

    def close(self) -> None:
        """Stop watching the context's fd and close it (idempotent)."""
        if self._loop is not None and not self.sync.closed:
            self._loop.remove_reader(self._fd)
            self._loop = None
        try:
            self.sync.close()
        finally:
            for aintf in self._interfaces:
                aintf._wake_all()

    async def __aenter__(self) -> Context:
        self._attach()
        return self


    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()


class Interface(Closable):
    """asyncio face of a :class:`memif_cffi.Interface` (its ``sync`` attribute)."""

    sync: _interface.Interface

    def __init__(
        self,
        ctx: Context,
        on_connect: AioConnectCallback | None,
        on_disconnect: AioConnectCallback | None,
        on_interrupt: AioInterruptCallback | None,
        max_pending: int,
    ) -> None:
        if not isinstance(max_pending, int) or max_pending < _BURST:
            raise ValueError(f"max_pending must be an int >= {_BURST}")
        self._ctx = ctx
        self._user_connect = on_connect
        self._user_disconnect = on_disconnect
        self._user_interrupt = on_interrupt
        self._max_pending = max_pending
        self._connect_waiters: list[asyncio.Future[None]] = []
        self._rx: tuple[RxQueue, ...] = ()
        self._tx: tuple[TxQueue, ...] = ()

    def _make_queues(self) -> None:
        self._rx = tuple(RxQueue(self, q, self._max_pending) for q in self.sync._rx)
        self._tx = tuple(TxQueue(self, q) for q in self.sync._tx)

    # -- hooks (called by poll) ------------------------------------------------------

    def _hook_connect(self, _intf: _interface.Interface) -> None:
        for waiter in self._connect_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._connect_waiters.clear()
        for q in self._rx:
            q._wake()
        if self._user_connect is not None:
            self._user_connect(self)

    def _hook_disconnect(self, _intf: _interface.Interface) -> None:
        if self._user_disconnect is not None:
            self._user_disconnect(self)

    def _hook_interrupt(self, _intf: _interface.Interface, qid: int) -> None:
        if qid < len(self._rx):
            self._rx[qid]._on_interrupt()
        if self._user_interrupt is not None:
            self._user_interrupt(self, qid)

    def _wake_all(self) -> None:
        for waiter in self._connect_waiters:
            if not waiter.done():
                waiter.set_result(None)
        for q in self._rx:
            q._wake()

    # -- public ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """Interface name."""
        return self.sync.name

    @property
    def connected(self) -> bool:
        """True between on_connect and on_disconnect."""
        return self.sync.connected

    @property
    def closed(self) -> bool:
        """True once closed."""
        return self.sync.closed

    @property
    def details(self) -> InterfaceDetails:
        """See :attr:`memif_cffi.Interface.details`."""
        return self.sync.details

    @property
    def counters(self) -> InterfaceCounters:
        """See :attr:`memif_cffi.Interface.counters`."""
        return self.sync.counters

    @property
    def rx(self) -> tuple[RxQueue, ...]:
        """Receive queues (``async for frame in intf.rx[0]``)."""
        return self._rx[: len(self.sync.rx)]

    @property
    def tx(self) -> tuple[TxQueue, ...]:
        """Transmit queues (``await intf.tx[0].send(frame)``)."""
        return self._tx[: len(self.sync.tx)]

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the interface is connected; TimeoutError after ``timeout`` seconds."""
        loop = self._ctx._attach()
        self._ctx._raise_pending()
        while not self.sync.connected:
            if self.sync.closed:
                raise ClosedError(f"interface {self.name!r} is closed")
            fut: asyncio.Future[None] = loop.create_future()
            self._connect_waiters.append(fut)
            try:
                await self._ctx._wait(fut, timeout)
            except asyncio.TimeoutError:
                reason = self.sync.details.error or "no answer from the peer yet"
                raise TimeoutError(
                    f"interface {self.name!r} not connected after {timeout} s: {reason}"
                ) from None

    def close(self) -> None:
        """Close the interface (see :meth:`memif_cffi.Interface.close`)."""
        try:
            self.sync.close()
        finally:
            self._wake_all()


    def __repr__(self) -> str:
        return f"<aio {self.sync!r}>"


class RxQueue:
    """Receive side: ``async for frame in rxq`` or ``await rxq.recv()``.

    Frames are moved out of the ring when the peer signals the queue (the
    queue is drained until a burst comes back short) or when a consumer finds
    the buffer empty; at most ``max_pending`` wait in Python. Iteration ends
    when the interface is closed.
    """

    def __init__(self, intf: Interface, sync: _queues.RxQueue, max_pending: int) -> None:
        self._intf = intf
        #: The underlying synchronous queue.
        self.sync = sync
        self._frames: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._max_pending = max_pending

    @property
    def counters(self) -> QueueCounters:
        """See :attr:`memif_cffi.RxQueue.counters`."""
        return self.sync.counters

    def _fill(self) -> None:
        frames = self._frames
        while len(frames) + _BURST <= self._max_pending:
            try:
                got = self.sync.recv_burst(_BURST)
            except (DisconnectedError, ClosedError):
                return
            frames.extend(got)
            if len(got) < _BURST:
                return

    def _on_interrupt(self) -> None:
        self._fill()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def recv(self) -> bytes:
        """The next frame; waits for one. Raises ClosedError once the interface is closed."""
        ctx = self._intf._ctx
        loop = ctx._attach()
        while True:
            ctx._raise_pending()
            if self._frames:
                return self._frames.popleft()
            if self._intf.closed:
                raise ClosedError(f"interface {self._intf.name!r} is closed")
            if self._intf.connected:
                self._fill()
                if self._frames:
                    continue
            fut: asyncio.Future[None] = loop.create_future()
            self._waiter = fut
            try:
                await ctx._wait(fut)
            finally:
                self._waiter = None

    async def recv_burst(self, max_packets: int = 256) -> list[bytes]:
        """Wait for at least one frame, then return up to ``max_packets``."""
        first = await self.recv()
        out = [first]
        frames = self._frames
        if not frames and self._intf.connected:
            self._fill()
        while frames and len(out) < max_packets:
            out.append(frames.popleft())
        return out

    def __aiter__(self) -> RxQueue:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except ClosedError:
            raise StopAsyncIteration from None


class TxQueue:
    """Transmit side: sends wait while the ring is full instead of dropping."""

    def __init__(self, intf: Interface, sync: _queues.TxQueue) -> None:
        self._intf = intf
        #: The underlying synchronous queue.
        self.sync = sync

    @property
    def counters(self) -> QueueCounters:
        """See :attr:`memif_cffi.TxQueue.counters` (``drops`` counts retries here)."""
        return self.sync.counters

    async def _backoff(self, delay: float) -> float:
        await asyncio.sleep(delay)
        self._intf._ctx._raise_pending()
        return min(max(delay * 2, _MIN_WAIT), _MAX_WAIT)

    async def send(self, frame: BytesLike) -> None:
        """Send one frame, waiting for room in the ring. Raises if disconnected."""
        self._intf._ctx._attach()
        self._intf._ctx._raise_pending()
        delay = 0.0
        while not self.sync.send(frame):
            delay = await self._backoff(delay)

    async def send_burst(self, frames: Iterable[BytesLike]) -> int:
        """Send every frame in order, waiting for room; returns how many (all)."""
        self._intf._ctx._attach()
        rest: list[Any] = list(frames)
        total = len(rest)
        delay = 0.0
        while rest:
            n = self.sync.send_burst(rest)
            rest = rest[n:]
            if n:
                delay = 0.0
            elif rest:
                delay = await self._backoff(delay)
        return total

    async def send_batch(self, batch: PacketBatch) -> int:
        """Send every packet of ``batch``, waiting for room; returns ``batch.count``."""
        self._intf._ctx._attach()
        start = 0
        delay = 0.0
        while start < batch.count:
            n = self.sync.send_batch(batch, start)
            start += n
            if n:
                delay = 0.0
            elif start < batch.count:
                delay = await self._backoff(delay)
        return batch.count
