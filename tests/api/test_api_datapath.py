"""The data path at three levels: per packet, PacketBatch, zero-copy views."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import pytest
from apihelp import Pair, drain

import memif_cffi as memif


def frame(i: int, size: int) -> bytes:
    head = i.to_bytes(4, "little")
    return (head + bytes((i + k) & 0xFF for k in range(256)) * (size // 256 + 1))[:size]


@pytest.fixture
def small(sock_path: str) -> Iterator[Pair]:
    """1024-byte buffers so that 1500-byte frames chain, 64-slot rings."""
    with Pair(sock_path, buffer_size=1024, ring_size=64) as p:
        yield p


@pytest.mark.parametrize("direction", ["slave-to-master", "master-to-slave"])
def test_per_packet_sizes_and_chains(small: Pair, direction: str) -> None:
    tx, rx = ((small.slave, small.master) if direction == "slave-to-master"
              else (small.master, small.slave))
    sizes = [0, 1, 60, 1023, 1024, 1025, 1500, 3000, 9000, 20000, 65535]
    for i, size in enumerate(sizes):
        assert tx.tx[0].send(frame(i, size)), size
        assert drain(rx.rx[0], 1, burst=64) == [frame(i, size)]
    frames = [frame(i, s) for i, s in enumerate(sizes[:8])]
    assert tx.tx[0].send_burst(frames) == len(frames)
    assert drain(rx.rx[0], len(frames)) == frames
    c = rx.counters
    assert c.rx_packets == 2 * len(sizes[:8]) + 3 and c.rx_drops == 0
    assert c.rx_bytes == sum(sizes) + sum(sizes[:8])
    with pytest.raises(ValueError, match="65535"):
        tx.tx[0].send(bytes(65536))
    with pytest.raises(ValueError, match="65535"):
        tx.tx[0].send_burst([b"ok", bytes(70000)])
    assert tx.counters.tx_packets == c.rx_packets  # nothing reached C for the refused ones


def test_chain_cut_across_bursts_and_helpers(small: Pair) -> None:
    """A 9000-byte frame spans 9 buffers; receive it 4 buffers at a time, mixing levels."""
    big = [frame(i, 9000) for i in range(4)]
    assert small.slave.tx[0].send_burst(big) == 4
    rxq = small.master.rx[0]
    out: list[bytes] = []
    batch = memif.PacketBatch(4, 9000)
    step = 0
    while len(out) < 4:
        if step % 3 == 0:
            out += rxq.recv_burst(4)
        elif step % 3 == 1:
            with rxq.views(4) as views:
                out += [bytes(v) for v in views]
        else:
            # recv_into takes up to batch.capacity buffers' worth of packets
            rxq.recv_into(batch)
            out += batch.tolist()
        step += 1
        assert step < 100
    assert out == big


def test_backpressure_returns_counts(small: Pair) -> None:
    tx = small.slave.tx[0]
    sent = 0
    while tx.send(b"x" * 100):
        sent += 1
        assert sent <= 64
    assert sent == 64  # the ring is full: False, not an exception
    assert tx.send_burst([b"y"] * 10) == 0
    c = tx.counters
    assert (c.packets, c.drops) == (64, 11)
    assert len(drain(small.master.rx[0], 64)) == 64
    assert tx.send_burst([b"z" * 2000] * 40) == 32  # 2 buffers each: 32 fit in 64 slots


def test_packet_batch_round_trip(pair: Pair) -> None:
    out = memif.PacketBatch(256, 2048)
    for i in range(256):
        out.append(frame(i, 60 + i))
    assert len(out) == 256 and out[3].tobytes() == frame(3, 63)
    assert out.total_bytes() == sum(60 + i for i in range(256))
    assert pair.slave.tx[0].send_batch(out) == 256
    got = memif.PacketBatch(256, 2048)
    n = 0
    while n < 256:
        n += pair.master.rx[0].recv_into(got) if n == 0 else 0
        pair.mctx.poll(0)
    assert got.count == 256
    assert [bytes(p) for p in got] == [frame(i, 60 + i) for i in range(256)]
    assert list(got.lengths[:3]) == [60, 61, 62]
    # send_batch with start/count, for retrying after a short send
    assert pair.slave.tx[0].send_batch(out, start=250) == 6
    assert pair.slave.tx[0].send_batch(out, start=10, count=2) == 2
    assert drain(pair.master.rx[0], 8) == [frame(i, 60 + i) for i in (*range(250, 256), 10, 11)]


def test_packet_batch_lengths_are_checked_in_c(pair: Pair) -> None:
    b = memif.PacketBatch(4, 100)
    b.fill(b"a" * 100)
    b.lengths[2] = 5000  # written through the buffer protocol: larger than a slot
    with pytest.raises(memif.InvalidArgError):
        pair.slave.tx[0].send_batch(b)
    assert pair.slave.counters.tx_packets == 0  # nothing was sent
    b.lengths[2] = 100
    assert pair.slave.tx[0].send_batch(b) == 4


def test_packet_batch_api() -> None:
    b = memif.PacketBatch(3, 10)
    assert b.buffer.nbytes == 30 and b.lengths.format == "I" and len(b.lengths) == 3
    b.slot(1)[:3] = b"abc"
    b.set_length(1, 3)
    b.count = 2
    assert b[1].tobytes() == b"abc" and b[-1].tobytes() == b"abc"
    b.clear()
    b.extend([b"1", b"22", b"333"])
    with pytest.raises(IndexError):
        b.append(b"4")
    with pytest.raises(ValueError):
        memif.PacketBatch(2, 10).append(b"x" * 11)
    with pytest.raises(ValueError):
        memif.PacketBatch(0, 10)
    with pytest.raises(ValueError):
        memif.PacketBatch(1, 65536)
    with pytest.raises(ValueError):
        b.count = 4
    assert b.tolist() == [b"1", b"22", b"333"] and "count=3" in repr(b)


def test_recv_into_drops_packets_longer_than_a_slot(pair: Pair) -> None:
    pair.slave.tx[0].send_burst([b"a" * 10, b"b" * 500, b"c" * 10])
    b = memif.PacketBatch(8, 100)
    assert pair.master.rx[0].recv_into(b) == 2
    assert b.tolist() == [b"a" * 10, b"c" * 10]
    assert pair.master.rx[0].counters.drops == 1


def test_views_are_zero_copy_and_die_with_the_block(pair: Pair) -> None:
    pair.slave.tx[0].send_burst([b"first", b"second"])
    rxq = pair.master.rx[0]
    region = pair.master.details.regions
    assert region  # connected: the shared memory is mapped
    with rxq.views(16) as views:
        assert [bytes(v) for v in views] == [b"first", b"second"]
        assert not views[0].readonly
        with pytest.raises(memif.QueueBusyError, match="views"):
            rxq.recv_burst()  # the buffers are held by the block
        with pytest.raises(memif.QueueBusyError, match="views"):
            rxq.recv_into(memif.PacketBatch(4, 64))  # the bulk call's C gate declines too
    with pytest.raises(ValueError, match="released"):
        bytes(views[0])  # used after exit: raises instead of reading recycled memory
    pair.slave.tx[0].send(b"third")
    assert drain(rxq, 1) == [b"third"]  # the ring was given back
    with pytest.raises(RuntimeError, match="once"):
        ctxm = rxq.views(1)
        with ctxm:
            pass
        ctxm.__enter__()


def test_views_leaked_slice_holds_the_buffers(pair: Pair) -> None:
    pair.slave.tx[0].send(b"keep me")
    rxq = pair.master.rx[0]
    with pytest.raises(BufferError, match="still referenced"), rxq.views(4) as views:
        leaked = views[0][0:4]  # a slice outlives the block
    assert bytes(leaked) == b"keep"  # still the right data: the buffer was not recycled
    pair.slave.tx[0].send(b"next")
    with pytest.raises(BufferError):
        rxq.recv_burst()  # the queue refuses to recycle under a live view
    with pytest.raises(BufferError):
        rxq.recv_into(memif.PacketBatch(4, 64))
    del leaked
    gc.collect()
    assert drain(rxq, 1) == [b"next"]  # settled: buffers given back, receive resumes


def test_disconnect_invalidates_open_views(pair: Pair) -> None:
    pair.slave.tx[0].send(b"bye")
    rxq = pair.master.rx[0]
    with rxq.views(4) as views:
        pair.slave.close()
        pair.mctx.poll(1)  # on_disconnect: the memory is about to be unmapped
        assert not pair.master.connected
        with pytest.raises(ValueError, match="released"):
            bytes(views[0])
    with pytest.raises(memif.DisconnectedError):
        rxq.recv_burst()
    with pytest.raises(memif.DisconnectedError):
        rxq.recv_into(memif.PacketBatch(4, 64))
    one = memif.PacketBatch(4, 64)
    one.append(b"late")
    with pytest.raises(memif.DisconnectedError):
        pair.master.tx[0].send_batch(one)
    one.clear()
    assert pair.master.tx[0].send_batch(one) == 0  # nothing to send is not an error


def test_writable_views_and_in_place_reply(pair: Pair) -> None:
    pair.slave.tx[0].send(b"ping....")
    out = memif.PacketBatch(16, 2048)
    with pair.master.rx[0].views() as views:
        for v in views:
            v[:4] = b"pong"
            out.append(v)
    assert pair.master.tx[0].send_batch(out) == 1
    assert drain(pair.slave.rx[0], 1) == [b"pong...."]


def test_batch_struct_bounds_hold_when_attributes_are_changed(pair: Pair) -> None:
    """The C calls use the geometry a batch was created with, not its public attributes."""
    out = memif.PacketBatch(4, 64)
    out.fill(b"x" * 64)
    out.capacity = 1000  # the storage is still 4 slots
    out.count = 1000
    with pytest.raises(ValueError):
        pair.slave.tx[0].send_batch(out)
    out.count = 4
    out.slot_size = 2048  # a length above the real slot is still refused
    out.set_length(0, 1000)
    with pytest.raises(ValueError):
        pair.slave.tx[0].send_batch(out)
    out.set_length(0, 64)
    assert pair.slave.tx[0].send_batch(out) == 4
    into = memif.PacketBatch(2, 2048)
    into.capacity = 1000
    got = 0
    for _ in range(200):
        n = pair.master.rx[0].recv_into(into)
        assert n <= 2
        got += n
        if got == 4:
            break
        pair.poll()
    assert got == 4


def test_bulk_helpers_check_their_structs() -> None:
    """memif_cffi_queue_send/recv refuse NULLs and ranges outside the batch before any I/O."""
    from memif_cffi.lowlevel import ffi, lib

    inval = -lib.MEMIF_ERR_INVAL_ARG
    q = ffi.new("memif_cffi_queue_t *")
    b = memif.PacketBatch(4, 64)
    cb = b._c
    assert lib.memif_cffi_queue_send(ffi.NULL, cb, 0, 1) == inval
    assert lib.memif_cffi_queue_send(q, ffi.NULL, 0, 1) == inval
    assert lib.memif_cffi_queue_send(q, cb, 0, 5) == inval
    assert lib.memif_cffi_queue_send(q, cb, 3, 2) == inval
    assert lib.memif_cffi_queue_send(q, cb, 5, 0) == inval
    assert lib.memif_cffi_queue_send(q, cb, 0, 70000) == inval
    assert lib.memif_cffi_queue_recv(ffi.NULL, cb) == inval
    assert lib.memif_cffi_queue_recv(q, ffi.NULL) == inval
    assert lib.memif_cffi_queue_recv(q, cb) == inval  # no rx state yet
    assert q.stats.packets == 0 and q.stats.ops == 0


def test_queue_gate_in_c() -> None:
    """The queue lock kept in C: re-entrant for its owner, refused to other threads.

    The bulk calls take it themselves and decline (MEMIF_CFFI_NOT_READY, nothing
    touched) while it is held, by any thread, or while the queue is not ready.
    """
    import threading

    from memif_cffi.lowlevel import ffi, lib

    q = ffi.new("memif_cffi_queue_t *")
    batch = memif.PacketBatch(4, 64)  # kept: it owns the memory cb points into
    cb = batch._c
    cb.count = 1
    p = ffi.new("memif_cffi_bulk_t *", {"q": q, "b": cb})
    not_ready = lib.MEMIF_CFFI_NOT_READY
    assert not_ready < 0 and -not_ready not in range(0, 256)  # not a memif error code
    assert lib.memif_cffi_gate_leave(q) == -1 and not lib.memif_cffi_gate_owned(q)
    assert lib.memif_cffi_batch_send(p) == not_ready  # free, but not ready
    assert lib.memif_cffi_batch_recv(p) == not_ready
    cb.count = 0
    assert lib.memif_cffi_batch_send(p) == 0  # nothing to send: not even the gate is asked
    cb.count = 1
    assert q.stats.ops == 0
    assert lib.memif_cffi_gate_enter(q) == 1 and lib.memif_cffi_gate_enter(q) == 1
    assert lib.memif_cffi_gate_owned(q)

    seen: list[int] = []

    def other() -> None:
        seen.append(lib.memif_cffi_gate_enter(q))
        seen.append(lib.memif_cffi_gate_owned(q))
        seen.append(lib.memif_cffi_gate_leave(q))
        lib.memif_cffi_gate_set_ready(q, 1)
        seen.append(lib.memif_cffi_batch_send(p))

    t = threading.Thread(target=other)
    t.start()
    t.join(5)
    assert seen == [0, 0, -1, not_ready]  # held here: the other thread gets nothing
    assert lib.memif_cffi_batch_send(p) == not_ready  # held, even by this thread
    assert lib.memif_cffi_gate_leave(q) == 0 and lib.memif_cffi_gate_owned(q)
    assert lib.memif_cffi_gate_leave(q) == 0 and not lib.memif_cffi_gate_owned(q)
    assert lib.memif_cffi_gate_leave(q) == -1
    # Free and ready: the call runs (no connection here, so libmemif refuses it)
    # and leaves the gate free again.
    assert lib.memif_cffi_batch_send(p) == -lib.MEMIF_ERR_NOCONN
    assert q.stats.ops == 1
    cb.count = 5
    assert lib.memif_cffi_batch_send(p) == -lib.MEMIF_ERR_INVAL_ARG  # over capacity
    assert lib.memif_cffi_batch_recv(p) == -lib.MEMIF_ERR_INVAL_ARG  # no rx state
    assert lib.memif_cffi_gate_enter(q) == 1 and lib.memif_cffi_gate_leave(q) == 0
    assert lib.memif_cffi_batch_send(ffi.NULL) == -lib.MEMIF_ERR_INVAL_ARG
    assert lib.memif_cffi_batch_recv(ffi.NULL) == -lib.MEMIF_ERR_INVAL_ARG
    for half in ({"q": q}, {"b": cb}):  # a pair with a NULL member
        hp = ffi.new("memif_cffi_bulk_t *", half)
        assert lib.memif_cffi_batch_send(hp) == -lib.MEMIF_ERR_INVAL_ARG
        assert lib.memif_cffi_batch_recv(hp) == -lib.MEMIF_ERR_INVAL_ARG
    assert lib.memif_cffi_gate_enter(ffi.NULL) == 0 and lib.memif_cffi_gate_leave(ffi.NULL) == -1


def _recv_exactly(rxq: memif.RxQueue, batch: memif.PacketBatch, n: int) -> list[bytes]:
    for _ in range(1000):
        if rxq.recv_into(batch):
            break
    assert batch.count == n
    return batch.tolist()


def test_bulk_pairs_follow_the_batches(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hot bulk path pairs a queue with the batches it moved lately (at most
    four); whatever the order of use, each call moves the batch it was given,
    with the count the batch has at that moment."""
    from memif_cffi import queues
    from memif_cffi.queues import _MAX_PAIRS

    txq, rxq = pair.slave.tx[0], pair.master.rx[0]
    batches = [memif.PacketBatch(4, 64) for _ in range(_MAX_PAIRS + 3)]
    for k, b in enumerate(batches):
        b.fill(bytes([k]) * (10 + k), 1 + k % 4)
    got = memif.PacketBatch(8, 64)
    for order in (batches, batches[::-1], batches[:2] * 3, batches):
        for b in order:
            assert txq.send_batch(b) == b.count
            assert _recv_exactly(rxq, got, b.count) == b.tolist()
            assert len(txq._pairs) <= _MAX_PAIRS and len(rxq._pairs) == 1
    assert txq.counters.packets == rxq.counters.packets
    b = batches[0]
    b.fill(b"n" * 20, 3)
    assert txq.send_batch(b) == 3 and _recv_exactly(rxq, got, 3) == [b"n" * 20] * 3
    assert b in txq._pairs and got in rxq._pairs

    # From here on every call must take the hot path: the checked one fails.
    def checked(*args: object) -> int:
        raise AssertionError("a paired batch went through the checked path")

    monkeypatch.setattr(queues, "_queue_send", checked)
    monkeypatch.setattr(queues, "_queue_recv", checked)
    # The count is the batch's own, read in C at each call: change it, and the
    # next call sends the new count.
    b.count = 2
    assert txq.send_batch(b) == 2 and _recv_exactly(rxq, got, 2) == [b"n" * 20] * 2
    b.clear()
    assert txq.send_batch(b) == 0 and rxq.recv_into(got) == 0 and got.count == 0
    monkeypatch.undo()
    # One batch forwarded: received on one interface's queue, sent on the other's.
    fwd = memif.PacketBatch(8, 64)
    back = pair.slave.rx[0]
    for k in range(3):
        pair.slave.tx[0].send_burst([bytes([k]) * 30] * 2)
        assert _recv_exactly(rxq, fwd, 2) == [bytes([k]) * 30] * 2
        assert pair.master.tx[0].send_batch(fwd) == 2
        assert _recv_exactly(back, got, 2) == [bytes([k]) * 30] * 2
    assert fwd in rxq._pairs and fwd in pair.master.tx[0]._pairs
    # Closing the interface lets go of the batches its queues moved.
    pair.master.close()
    assert not rxq._pairs and not pair.master.tx[0]._pairs


def test_a_batch_subclass_takes_the_checked_path(pair: Pair) -> None:
    class Sub(memif.PacketBatch):
        __slots__ = ()

    b = Sub(2, 64)
    b.fill(b"s" * 40)
    txq, rxq = pair.slave.tx[0], pair.master.rx[0]
    got = Sub(4, 64)
    for _ in range(3):
        assert txq.send_batch(b) == 2
        assert _recv_exactly(rxq, got, 2) == [b"s" * 40] * 2
    assert not txq._pairs and not rxq._pairs  # never paired: nothing skips the checks


def test_bulk_calls_and_the_python_held_lock(pair: Pair) -> None:
    """A thread holding a queue's lock in Python keeps the C bulk path out; its own calls nest."""
    import threading

    txq = pair.slave.tx[0]
    batch = memif.PacketBatch(4, 64)
    batch.fill(b"z" * 64)
    lock = txq._q.lock
    errors: list[BaseException] = []

    def other() -> None:
        try:
            txq.send_batch(batch)
        except memif.QueueBusyError as exc:
            errors.append(exc)

    assert lock.acquire(False)
    try:
        t = threading.Thread(target=other)
        t.start()
        t.join(5)
        assert len(errors) == 1 and "in use by another thread" in str(errors[0])
        assert txq.send_batch(batch) == 4  # the owner re-enters
    finally:
        lock.release()
    assert not lock._is_owned()
    with pytest.raises(RuntimeError):
        lock.release()
    assert txq.send_batch(batch) == 4
    assert drain(pair.master.rx[0], 8) == [b"z" * 64] * 8


def test_empty_queue_and_arguments(pair: Pair) -> None:
    rxq = pair.master.rx[0]
    assert rxq.recv_burst() == []
    assert rxq.recv_into(memif.PacketBatch(4, 64)) == 0
    with rxq.views() as views:
        assert views == []
    for bad in (0, 65536, 2.0):
        with pytest.raises(ValueError):
            rxq.recv_burst(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        rxq.recv_into(bytearray(10))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        pair.slave.tx[0].send_batch([b"x"])  # type: ignore[arg-type]
    for other in (5, "batch", None):  # hashable, but no batch either
        with pytest.raises(TypeError):
            pair.slave.tx[0].send_batch(other)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            rxq.recv_into(other)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        pair.slave.tx[0].send_batch(memif.PacketBatch(2, 8), start=3)
    with pytest.raises(TypeError):
        pair.slave.tx[0].send("text")  # type: ignore[arg-type]
    assert pair.slave.tx[0].send_burst([]) == 0
    assert pair.slave.tx[0].send(memoryview(b"mv") ) and pair.slave.tx[0].send(bytearray(b"ba"))
    assert drain(rxq, 2) == [b"mv", b"ba"]
    assert os.path.exists(pair.path)


def _region_offset(intf: memif.Interface, view: memoryview) -> tuple[int, int]:
    """(region number, offset) of a packet view in the interface's mapping of the regions."""
    ptr = int(memif.ffi.cast("uintptr_t", memif.ffi.from_buffer(view)))
    for index, (base, size, _) in enumerate(intf._state.regions):
        if base <= ptr < base + size:
            return index, ptr - base
    raise AssertionError("the view is not in shared memory")


def test_forward_sends_the_received_buffers_without_copying(pair: Pair) -> None:
    """A slave edits received packets in place and forwards them (memif_buffer_enq_tx)."""
    frames = [bytes([i]) * (60 + i) for i in range(20)]
    assert pair.master.tx[0].send_burst(frames) == 20
    rxq, txq = pair.slave.rx[0], pair.slave.tx[0]
    block = rxq.views(64)
    offsets = []
    with block as views:
        assert len(views) == 20 and block.copied == frozenset()
        for v in views:
            offsets.append(_region_offset(pair.slave, v))
            v[0] = 0xEE
        assert block.forward(txq) == 20
        with pytest.raises(ValueError, match="released"):
            bytes(views[0])  # forwarded: the memory belongs to the peer now
        with pytest.raises(RuntimeError, match="once"):
            block.forward(txq)
    got = pair.master.rx[0]
    vblock = got.views(64)
    with vblock as echoed:
        # The master reads the very buffers the slave received into.
        assert [_region_offset(pair.master, v) for v in echoed] == offsets
        assert [bytes(v) for v in echoed] == [b"\xee" + f[1:] for f in frames]
    assert txq.counters.packets == 20
    # The rx ring got buffers in exchange: traffic keeps flowing both ways, many times over.
    for round_ in range(40):
        burst = [bytes([round_]) * 100] * 50
        assert pair.master.tx[0].send_burst(burst) == 50
        blk = rxq.views(64)
        with blk:
            assert blk.forward(txq) == 50
        assert drain(pair.master.rx[0], 50) == burst


def test_forward_subset_backpressure_and_misuse(sock_path: str) -> None:
    with Pair(sock_path, ring_size=16, buffer_size=1024) as pair:
        rxq, txq = pair.slave.rx[0], pair.slave.tx[0]
        # A full tx ring: forward() sends what fits and the rest is given back.
        assert txq.send_burst([b"fill"] * 16) == 16
        pair.master.tx[0].send_burst([b"a", b"b", b"c", b"x" * 1500])
        block = rxq.views(16)
        with block as views:
            assert block.copied == frozenset({3})  # chained across two buffers: a copy
            with pytest.raises(ValueError, match="chained"):
                block.forward(txq, [3])
            with pytest.raises(IndexError):
                block.forward(txq, [4])
            with pytest.raises(ValueError, match="repeated"):
                block.forward(txq, [0, 0])
            with pytest.raises(ValueError, match="same interface"):
                block.forward(pair.master.tx[0])
            assert bytes(views[3]) == b"x" * 1500
            assert block.forward(txq, [2, 0]) == 0  # ring full: nothing fits
        assert len(drain(pair.master.rx[0], 16)) == 16
        pair.master.tx[0].send_burst([b"p", b"q", b"r"])
        block = rxq.views(16)
        with block as views:
            keep = views[1][:]  # a slice: it keeps the shared memory exported
            with pytest.raises(BufferError):
                block.forward(txq)  # a view is still referenced: nothing is sent
            del keep
            with pytest.raises(ValueError, match="released"):
                bytes(views[0])  # released all the same: the block is over for views
        # The failed forward sent nothing; the block gave its buffers back on exit.
        pair.master.tx[0].send(b"again")
        block = rxq.views(16)
        with block as views:
            assert [bytes(v) for v in views] == [b"again"]
            assert block.forward(txq, [0]) == 1
        assert drain(pair.master.rx[0], 1) == [b"again"]
        # A master cannot forward: its rx buffers are in the slave's memory.
        pair.slave.tx[0].send(b"to master")
        mblock = pair.master.rx[0].views(4)
        with mblock, pytest.raises(ValueError, match="slaves"):
            mblock.forward(pair.master.tx[0])
        outside = rxq.views(4)
        with pytest.raises(RuntimeError):
            outside.forward(txq)


def test_headroom_leaves_room_in_front_of_received_packets(sock_path: str) -> None:
    with Pair(sock_path, buffer_size=256, slave_kw={"headroom": 64}) as pair:
        assert pair.slave.headroom == 64 and pair.master.headroom == 0
        # Each posted buffer is 256 - 64 bytes long: bigger packets chain.
        frames = [b"h" * 192, b"i" * 193, b"j" * 1000]
        assert pair.master.tx[0].send_burst(frames) == 3
        assert drain(pair.slave.rx[0], 3) == frames
        for _ in range(3):  # refills keep the headroom, through recv_into too
            pair.master.tx[0].send_burst(frames)
            batch = memif.PacketBatch(8, 1024)
            got: list[bytes] = []
            while len(got) < 3:
                pair.slave.rx[0].recv_into(batch)
                got += [bytes(p) for p in batch]
            assert got == frames
        pair.master.tx[0].send(b"front")
        block = pair.slave.rx[0].views(4)
        with block as views:
            # The 64 bytes in front of the packet belong to the same buffer.
            # (The buffer region is mapped page-aligned and made of 256-byte buffers.)
            ptr = int(memif.ffi.cast("uintptr_t", memif.ffi.from_buffer(views[0])))
            assert ptr % 256 == 64
    with memif.Context() as ctx:
        with pytest.raises(ValueError, match="master"):
            ctx.interface(ctx.socket(sock_path), role=memif.Role.MASTER, headroom=8)
        for bad in (-1, 2048):
            with pytest.raises(ValueError, match="headroom"):
                ctx.interface(ctx.socket(sock_path), headroom=bad)


def test_bulk_level_allocates_nothing_per_packet(pair: Pair) -> None:
    """send_batch/recv_into of 256 packets allocate no more than of 8 (traced peak)."""
    import tracemalloc

    def peak_of(burst: int) -> int:
        out = memif.PacketBatch(burst, 64)
        out.fill(b"p" * 64)
        into = memif.PacketBatch(burst, 2048)
        tx, rx = pair.slave.tx[0], pair.master.rx[0]
        for _ in range(3):  # warm up (first calls allocate the queues' scratch)
            tx.send_batch(out)
            drain_into(rx, into, burst)
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            assert tx.send_batch(out) == burst
            drain_into(rx, into, burst)
            return tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()

    small, large = peak_of(8), peak_of(256)
    # Per-packet objects would cost tens of bytes each: 248 more packets, kilobytes more.
    assert large < small + 512, (small, large)
    assert large < 2048, large


def drain_into(rx: memif.RxQueue, into: memif.PacketBatch, want: int) -> None:
    got = 0
    while got < want:
        got += rx.recv_into(into)
