"""Rx and tx queues of an interface: the data path at three levels.

* **Per packet** — :meth:`TxQueue.send`, :meth:`TxQueue.send_burst`,
  :meth:`RxQueue.recv_burst`: bytes in, bytes out; chains are joined into
  whole packets on receive and packets larger than one buffer are chained on
  send.
* **Bulk** — :meth:`RxQueue.recv_into` / :meth:`TxQueue.send_batch` with a
  :class:`~memif_cffi.PacketBatch`: one C call per burst and no Python object
  per packet.
* **Zero copy** — :meth:`RxQueue.views`: memoryviews straight into the shared
  memory, given back to the peer when the ``with`` block ends.

Backpressure is a count, not an exception: a full tx ring makes the send
methods return how many packets were queued. So is a peer whose interrupt
eventfd cannot be written: the packets are in the ring and counted as sent.
Every method raises before any C call when the interface is closed or not
connected, and :class:`QueueBusyError` when another thread is using the same
queue (use one thread per queue; different queues may be used concurrently,
with the GIL released inside the C calls).
"""

from __future__ import annotations

import operator
import sys
import types
from collections.abc import Callable, Iterable, Sequence
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from memif_cffi._core import (
    VIEW_RELEASE_WAIT,
    QueueBusyError,
    QueueState,
    RxViewsBase,
    release_views,
)
from memif_cffi.batch import MAX_PACKET, PacketBatch
from memif_cffi.enums import RxMode
from memif_cffi.errors import DisconnectedError, error_for
from memif_cffi.info import QueueCounters
from memif_cffi.lowlevel import ffi, lib

if TYPE_CHECKING:
    from memif_cffi.interface import Interface

__all__ = ["QueueBusyError", "RxQueue", "RxViews", "TxQueue"]

BytesLike = bytes | bytearray | memoryview

_ERR_DISCONNECTED = int(lib.MEMIF_ERR_DISCONNECTED)
_ERR_NOBUF_RING = int(lib.MEMIF_ERR_NOBUF_RING)
# The batch helpers return a count or a negated error code (see _support.h).
_send_batch: Callable[..., int] = lib.memif_cffi_send_batch
_queue_send: Callable[..., int] = lib.memif_cffi_queue_send
_queue_recv: Callable[..., int] = lib.memif_cffi_queue_recv
# The same on a (queue, batch) pair, taking the queue lock in C; _NOT_READY when
# the checked path must run.
_batch_send: Callable[[Any], int] = lib.memif_cffi_batch_send
_batch_recv: Callable[[Any], int] = lib.memif_cffi_batch_recv
_NOT_READY = int(lib.MEMIF_CFFI_NOT_READY)
# Pairs a queue keeps (one per batch it moved lately): enough for a batch per
# direction, double or triple buffering; more evicts them all.
_MAX_PAIRS = 4
# Published, but the peer's interrupt eventfd could not be written: the packets
# are in the ring (a polling peer gets them), so the send counts, not raises.
_ERR_INT_WRITE = int(lib.MEMIF_ERR_INT_WRITE)
_EMPTY = ffi.new("uint8_t[1]")


def _check_burst(max_packets: int) -> None:
    if not isinstance(max_packets, int) or not 1 <= max_packets <= 65535:
        raise ValueError(f"max_packets must be an int in 1..65535, not {max_packets!r}")


def _refcounts(objs: list[Any]) -> list[int]:
    return [sys.getrefcount(o) for o in objs]


# References a lone list element has in _refcounts (list, loop name, argument).
_BASE_REFS = _refcounts([object()])[0]


def _region_of(q: QueueState, ptrs: list[int]) -> tuple[int, int, Any] | None:
    """The mapped region holding every address of ``ptrs``, if one does."""
    lo, hi = min(ptrs), max(ptrs)
    for region in q.iface.regions:
        base, size, _ = region
        # The library validated each packet inside its region and regions do
        # not overlap, so a packet starting in this region ends in it.
        if base <= lo and hi < base + size:
            return region
    return None


class _Burst:
    """What one receive burst produced (see _scan)."""

    __slots__ = ("bases", "copied", "exporters", "firsts", "nbufs", "packets")

    def __init__(self, packets: list[Any], nbufs: int) -> None:
        self.packets = packets
        self.nbufs = nbufs
        #: index in the queue's buffer array of each packet's first buffer
        self.firsts: list[int] = []
        #: packets that are private copies (chains), not views of shared memory
        self.copied: frozenset[int] = frozenset()
        #: cffi buffers over shared memory that the packets' views come from
        self.exporters: list[Any] = []
        #: region-wide memoryviews the packet views were sliced from
        self.bases: list[memoryview] = []


def _scan(q: QueueState, conn: Any, max_bufs: int, as_views: bool) -> _Burst:
    """One rx burst (queue lock held).

    Packets are bytes, or memoryviews when ``as_views``: single-buffer packets
    then point into shared memory (sliced from one view of their region; the
    region's exporter is returned so that the caller can check nothing still
    references it), chained ones are joined into private bytearrays.
    """
    q.ensure_rx(max_bufs)
    state = q.rx_state
    prefix = b""
    if state.in_chain and not state.dropping and state.len:
        # The helper may overwrite the state: keep the pending chain's start.
        prefix = ffi.buffer(lib.memif_cffi_rx_state_data(state), state.len)[:]
    out16 = q.out16
    rc = lib.memif_cffi_rx_scan(conn, q.qid, q.bufs, max_bufs, out16, q.ptrs, q.lens, q.firsts,
                                q.nsegs, out16 + 1, q.out8, q.out64, q.out32, state)
    stats = q.stats
    stats.ops += 1
    nbufs = int(out16[0])
    n = int(out16[1])
    if rc != 0:
        raise error_for(rc, f"receiving on rx queue {q.qid}")
    stats.packets += n
    stats.bytes += q.out64[0]
    stats.drops += q.out32[0]
    burst = _Burst([], nbufs)
    if n == 0:
        return burst
    ptrs: list[int] = ffi.unpack(q.ptrs, n)
    lens: list[int] = ffi.unpack(q.lens, n)
    resumed = bool(q.out8[0])
    if nbufs == n and not resumed:
        # Every buffer is a whole packet (the common case): slice its region.
        region = _region_of(q, ptrs)
        if region is not None:
            base, size, whole = region
            if not as_views:
                burst.packets = [whole[p - base : p - base + s]
                                 for p, s in zip(ptrs, lens, strict=True)]
                return burst
            exporter = ffi.buffer(ffi.cast("char *", base), size)
            view = memoryview(exporter)
            burst.exporters.append(exporter)
            burst.bases.append(view)
            burst.packets = [view[p - base : p - base + s] for p, s in zip(ptrs, lens, strict=True)]
            burst.firsts = list(range(n))
            return burst
    out = burst.packets
    buffer = ffi.buffer
    bufs = q.bufs
    if as_views:
        burst.firsts = ffi.unpack(q.firsts, n)
        burst.copied = frozenset(i for i in range(n) if not ptrs[i])
    for i in range(n):
        ptr = ptrs[i]
        if ptr:
            b = buffer(ffi.cast("char *", ptr), lens[i])
            if as_views:
                burst.exporters.append(b)
                out.append(memoryview(b))
            else:
                out.append(b[:])
            continue
        joined = bytearray(prefix if i == 0 and resumed else b"")
        first = int(q.firsts[i])
        for j in range(first, first + int(q.nsegs[i])):
            seg = bufs[j]
            joined += buffer(seg.data, seg.len)
        out.append(memoryview(joined) if as_views else bytes(joined))
    return burst


def _give_back(q: QueueState, nbufs: int) -> None:
    """Refill nbufs received buffers (queue lock held)."""
    if nbufs == 0 or q.down:
        return
    rc = lib.memif_refill_queue(q.iface.conn[0], q.qid, nbufs, q.iface.headroom)
    if rc not in (0, _ERR_DISCONNECTED):
        raise error_for(rc, f"giving buffers back on rx queue {q.qid}")


class RxViews(RxViewsBase):
    """Context manager returned by :meth:`RxQueue.views` (single use).

    ``with`` gives a ``list[memoryview]``, one writable view per whole packet.
    On exit every view is released (using one afterwards raises ValueError)
    and the buffers go back to the peer. A view that cannot be released
    because something still references it (a slice or numpy array that
    outlived the block) is detected: the exit raises BufferError and the
    buffers stay held, so the memory is never recycled under a live view; the
    queue refuses to receive until those references are gone.
    """

    def __init__(self, q: QueueState, max_packets: int) -> None:
        self._q = q
        self._max = max_packets
        self._views: list[memoryview] = []
        self._exporters: list[Any] = []
        self._bases: list[memoryview] = []
        self._nbufs = 0
        self._firsts: list[int] = []
        self._copied: frozenset[int] = frozenset()
        self._forwarded = False
        self._phase = "new"

    def __enter__(self) -> list[memoryview]:
        if self._phase != "new":
            raise RuntimeError("a views() context manager can be entered only once")
        q = self._q
        conn = q.enter()
        try:
            burst = _scan(q, conn, self._max, True)
            self._views = burst.packets
            self._exporters = burst.exporters
            self._bases = burst.bases
            self._nbufs = burst.nbufs
            self._firsts = burst.firsts
            self._copied = burst.copied
            self._phase = "open"
            if self._nbufs:
                q.views = self
        finally:
            q.lock.release()
        return self._views

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        if self._phase != "open":
            return
        q = self._q
        with q.lock:
            if q.views is not self:
                # Nothing taken, or a disconnect already reclaimed the memory.
                self._phase = "closed"
                release_views(self._views + self._bases, 0)
                return
            q.views = None
            if self.settle():
                self._phase = "closed"
                _give_back(q, self._nbufs)
                return
            self._phase = "held"
            q.held = self
        raise BufferError(
            f"{len(self._views)} packet views of rx queue {q.qid} are still referenced after "
            "their views() block (a slice or an export outlived it); their buffers stay held "
            "until the references are gone"
        )

    @property
    def copied(self) -> frozenset[int]:
        """Indices of the packets that are private copies (chained packets, joined).

        Every other packet is a view of shared memory, which :meth:`forward`
        can send on without copying.
        """
        return self._copied

    def forward(self, tx: TxQueue, packets: Iterable[int] | None = None) -> int:
        """Send packets of this block on ``tx`` without copying them (slave only).

        Call inside the ``with`` block, after editing the packets in place
        (e.g. turning requests into replies of the same length). The buffers
        of ``packets`` (indices into the block's list; default: all of them)
        move to the tx ring and the rx ring gets free buffers in exchange
        (``memif_buffer_enq_tx``), then one ``memif_tx_burst`` publishes them.
        Returns how many were sent: fewer when the tx ring is full, in order;
        the others are given back to the peer on exit like packets not
        forwarded.

        Forwarding ends the block's use of the views: all of them are
        released first, and BufferError is raised (nothing sent) while
        something still references one. Chained packets (:attr:`copied`)
        cannot be forwarded: send their copies with :meth:`TxQueue.send`.
        """
        q = self._q
        if self._phase != "open" or self._forwarded:
            raise RuntimeError("forward() is for an open views() block, once")
        if not isinstance(tx, TxQueue) or tx._q.iface is not q.iface:
            raise ValueError("forward() needs a TxQueue of the same interface")
        if q.iface.is_master:
            raise ValueError("zero-copy forwarding is for slaves: a master's receive buffers "
                             "are in its peer's memory")
        count = len(self._views)
        if count == 0:
            self._forwarded = True
            return 0
        chosen = list(range(count)) if packets is None else [operator.index(i) for i in packets]
        if len(set(chosen)) != len(chosen):
            raise ValueError("forward(): a packet index is repeated")
        for i in chosen:
            if not 0 <= i < count:
                raise IndexError(f"forward(): packet {i} outside the {count} of this block")
            if i in self._copied:
                raise ValueError(f"forward(): packet {i} is chained and was copied; "
                                 "send its copy instead")
        with q.lock:
            if q.views is not self:
                raise DisconnectedError(f"{q.label}: disconnected; the block's buffers are gone")
            if not self.settle():
                raise BufferError(f"views of {q.label} are still referenced; "
                                  "forward() releases them all first")
            self._forwarded = True
            if not chosen:
                return 0
            txs = tx._q
            conn = txs.enter()
            try:
                bufs = ffi.new("memif_buffer_t[]", len(chosen))
                for k, i in enumerate(chosen):
                    bufs[k] = q.bufs[self._firsts[i]]
                enq = ffi.new("uint16_t *")
                rc = lib.memif_buffer_enq_tx(conn, txs.qid, bufs, len(chosen), enq)
                if rc == _ERR_NOBUF_RING:
                    rc = 0
                sent = ffi.new("uint16_t *")
                rc_tx = lib.memif_tx_burst(conn, txs.qid, bufs, enq[0], sent) if enq[0] else 0
                if rc_tx == _ERR_INT_WRITE:
                    rc_tx = 0
                n = int(sent[0])
                stats = txs.stats
                stats.packets += n
                stats.bytes += sum(int(bufs[k].len) for k in range(n))
                stats.drops += len(chosen) - n
            finally:
                txs.lock.release()
        if rc or rc_tx:
            raise error_for(rc or rc_tx, f"forwarding from {q.label} to tx queue {txs.qid}")
        return n

    # -- RxViewsBase -----------------------------------------------------------------

    def settle(self) -> bool:
        if not release_views(self._views + self._bases, 0):
            return False
        return not any(count > _BASE_REFS for count in _refcounts(self._exporters))

    def give_back(self) -> None:
        self._phase = "closed"
        _give_back(self._q, self._nbufs)

    def invalidate(self) -> None:
        self._phase = "invalid"
        release_views(self._views + self._bases, VIEW_RELEASE_WAIT)


class _Queue:
    __slots__ = ("_cq", "_intf", "_pairs", "_q")

    def __init__(self, intf: Interface, state: QueueState) -> None:
        self._intf = intf
        self._q = state
        self._cq = state.cq
        #: batch -> the memif_cffi_bulk_t (this queue, that batch) the
        #: one-argument bulk calls take; only exact PacketBatch instances, whose
        #: memory the key keeps alive while the pair points into it.
        self._pairs: dict[PacketBatch, Any] = {}

    def _pair(self, batch: PacketBatch) -> None:
        """Remember the pair of this queue and ``batch`` for the next hot call."""
        if type(batch) is not PacketBatch:
            return  # a subclass stays on the checked path
        pairs = self._pairs
        if batch not in pairs:
            if len(pairs) >= _MAX_PAIRS:
                pairs.clear()
            pairs[batch] = ffi.new("memif_cffi_bulk_t *", {"q": self._cq, "b": batch._c})

    @property
    def qid(self) -> int:
        """Queue number (0-based)."""
        return self._q.qid

    @property
    def interface(self) -> Interface:
        """The interface this queue belongs to."""
        return self._intf

    @property
    def counters(self) -> QueueCounters:
        """Packets, bytes and drops of this queue so far (a snapshot)."""
        stats = self._q.stats
        return QueueCounters(packets=int(stats.packets), bytes=int(stats.bytes),
                             drops=int(stats.drops))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._q.qid} of {self._intf!r}>"


class RxQueue(_Queue):
    """One receive queue of an :class:`~memif_cffi.Interface` (``intf.rx[qid]``)."""

    __slots__ = ()

    def recv_burst(self, max_packets: int = 256) -> list[bytes]:
        """Receive up to ``max_packets`` whole packets as bytes (chains joined).

        Returns an empty list when nothing is waiting. One call takes up to
        ``max_packets`` ring buffers, so it may return fewer packets when some
        are chained; when more are waiting the queue stays signalled, so an
        interrupt-driven loop comes back without a new signal from the peer.
        """
        _check_burst(max_packets)
        q = self._q
        conn = q.enter()
        try:
            burst = _scan(q, conn, max_packets, False)
            _give_back(q, burst.nbufs)
        finally:
            q.lock.release()
        packets: list[bytes] = burst.packets
        return packets

    def recv_into(self, batch: PacketBatch) -> int:
        """Receive up to ``batch.capacity`` packets into ``batch``; returns their number.

        One C call copies the whole burst (chains joined) and gives the buffers
        back; ``batch.count`` is set to the result. Packets longer than
        ``batch.slot_size`` are dropped and counted in ``counters.drops``.
        """
        try:
            pair = self._pairs[batch]
        except (KeyError, TypeError):
            pass  # not paired yet (or not a batch at all): the checked path
        else:
            # The hot path: one one-argument C call, which takes the queue lock
            # itself, sets batch.count and declines (_NOT_READY) when anything
            # needs checking.
            n = _batch_recv(pair)
            if n >= 0:
                return n
            if n != _NOT_READY:
                raise error_for(-n, f"receiving on rx queue {self._q.qid}")
        if not isinstance(batch, PacketBatch):
            raise TypeError(f"recv_into() needs a PacketBatch, not {type(batch).__name__}")
        # The checked path: the same call, under the lock taken here.
        q = self._q
        if q.rx_state is None:
            q.new_rx_state()
        q.enter()
        try:
            n = _queue_recv(q.cq, batch._c)
        finally:
            q.lock.release()
        if n < 0:
            raise error_for(-n, f"receiving on rx queue {q.qid}")
        self._pair(batch)  # the hot path takes the next call
        return n

    def views(self, max_packets: int = 256) -> RxViews:
        """Zero-copy receive: ``with q.views(n) as views:`` gives up to n packets.

        Each item is a writable memoryview of one whole packet in the shared
        memory (a chained packet is joined into a private copy). The buffers
        return to the peer when the block ends; the views are released then.
        While the block is open, other receive calls on this queue raise
        :class:`QueueBusyError`. A slave can also send the edited packets on
        without copying, with :meth:`RxViews.forward`::

            block = intf.rx[0].views(256)
            with block as packets:
                for p in packets:
                    edit(p)
                block.forward(intf.tx[0])
        """
        _check_burst(max_packets)
        return RxViews(self._q, max_packets)

    @property
    def mode(self) -> RxMode:
        """Receive mode (:class:`~memif_cffi.RxMode`); settable, kept across reconnects."""
        return self._q.mode

    @mode.setter
    def mode(self, value: RxMode) -> None:
        mode = RxMode(value)
        q = self._q
        conn = q.enter_control()
        try:
            rc = lib.memif_set_rx_mode(conn, int(mode), q.qid)
            if rc == 0:
                q.mode = mode
        finally:
            q.lock.release()
        if rc != 0:
            raise error_for(rc, f"setting the mode of rx queue {q.qid}")

    def fileno(self) -> int:
        """The queue's eventfd: readable when the peer signalled packets.

        For your own selector or asyncio loop (interrupt mode, with no
        ``on_interrupt`` callback on the interface). It belongs to the library
        and changes at each connection: valid from ``on_connect`` to
        ``on_disconnect``. A receive call drains it.
        """
        q = self._q
        conn = q.enter_control()
        fd = ffi.new("int *")
        try:
            rc = lib.memif_get_queue_efd(conn, q.qid, fd)
        finally:
            q.lock.release()
        if rc != 0:
            raise error_for(rc, f"eventfd of rx queue {q.qid}")
        return int(fd[0])


class TxQueue(_Queue):
    """One transmit queue of an :class:`~memif_cffi.Interface` (``intf.tx[qid]``)."""

    __slots__ = ()

    def send(self, frame: BytesLike) -> bool:
        """Queue one packet; False when the ring is full (nothing was sent).

        A packet larger than one buffer is chained over several; at most
        65535 bytes.
        """
        data = ffi.from_buffer("uint8_t[]", frame)
        n = len(data)
        if n > MAX_PACKET:
            raise ValueError(f"a packet is at most {MAX_PACKET} bytes, not {n}")
        if n == 0:
            data = _EMPTY
        q = self._q
        conn = q.enter()
        try:
            q.one_len[0] = n
            sent = _send_batch(conn, q.qid, data, q.one_off, q.one_len, 1, MAX_PACKET, q.stats)
        finally:
            q.lock.release()
        if sent < 0:
            raise error_for(-sent, f"sending on tx queue {q.qid}")
        return sent == 1

    def send_burst(self, frames: Iterable[BytesLike]) -> int:
        """Queue packets in order with one C call; returns how many were queued.

        Stops at the first packet that does not fit in the ring (the rest is
        the caller's to retry). Frames are bytes-like objects of at most 65535
        bytes each.
        """
        items: Sequence[BytesLike] = frames if isinstance(frames, (list, tuple)) else list(frames)
        if not items:
            return 0
        lens = [len(f) for f in items]
        if max(lens) > MAX_PACKET:
            raise ValueError(f"a packet is at most {MAX_PACKET} bytes")
        done = 0
        for start in range(0, len(items), 65535):
            part = items[start : start + 65535]
            part_lens = lens[start : start + 65535]
            joined = b"".join(part)
            if len(joined) != sum(part_lens):
                raise ValueError("frames must be bytes-like objects with 1-byte items")
            data = ffi.from_buffer("uint8_t[]", joined) if joined else _EMPTY
            offsets = ffi.new("uint32_t[]", list(accumulate(part_lens[:-1], initial=0)))
            c_lens = ffi.new("uint32_t[]", part_lens)
            sent = self._send(data, offsets, c_lens, len(part), MAX_PACKET)
            done += sent
            if sent < len(part):
                break
        return done

    def send_batch(self, batch: PacketBatch, start: int = 0, count: int | None = None) -> int:
        """Queue ``count`` packets of ``batch`` from index ``start`` with one C call.

        ``count`` defaults to the rest of the batch (``batch.count - start``).
        Returns how many were queued: fewer when the ring fills up, so a
        sender retries with ``start += sent``. Lengths are checked against
        ``batch.slot_size`` in C before anything is sent.
        """
        if start == 0 and count is None:
            try:
                pair = self._pairs[batch]
            except (KeyError, TypeError):
                pass  # not paired yet (or not a batch at all): the checked path
            else:
                # The hot path: the whole batch in one one-argument C call,
                # which takes the queue lock itself and declines (_NOT_READY)
                # when anything needs checking.
                sent = _batch_send(pair)
                if sent >= 0:
                    return sent
                if sent != _NOT_READY:
                    raise error_for(-sent, f"sending on tx queue {self._q.qid}")
        if not isinstance(batch, PacketBatch):
            raise TypeError(f"send_batch() needs a PacketBatch, not {type(batch).__name__}")
        # The checked path: ranges, then the same call under the lock taken here.
        total: int = batch._c.count
        whole = start == 0 and count is None
        if whole:
            count = total
        else:
            if count is None:
                count = total - start
            if not 0 <= start <= total or not 0 <= count <= total - start:
                raise ValueError(
                    f"start={start}, count={count} outside the {total} packets of the batch"
                )
        if count == 0:
            return 0
        q = self._q
        q.enter()
        try:
            sent = _queue_send(q.cq, batch._c, start, count)
        finally:
            q.lock.release()
        if sent < 0:
            raise error_for(-sent, f"sending on tx queue {q.qid}")
        if whole:
            self._pair(batch)  # the hot path takes the next call
        return sent

    def _send(self, data: Any, offsets: Any, lens: Any, count: int, max_len: int) -> int:
        q = self._q
        conn = q.enter()
        try:
            sent = _send_batch(conn, q.qid, data, offsets, lens, count, max_len, q.stats)
        finally:
            q.lock.release()
        if sent < 0:
            raise error_for(-sent, f"sending on tx queue {q.qid}")
        return sent
