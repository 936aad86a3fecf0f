"""Upstream-tests spec §5: the data path (buffer alloc, tx/rx bursts, refill, chains).

Mirrors C#7 test_buffer_alloc, C#8 test_tx_burst and C#9 test_rx_burst, which
built regions and rings by hand with internal functions and faked arrivals by
bumping ``ring->tail`` in memory; here a real connected pair (two databases in
this process) moves the packets. References: libmemif-api §8.7, §11 (F1, F3,
F4, F7, F9, F10, F11, F12, X10, X11); protocol spec §5-§7.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from lowpair import (
    ALL,
    NOBUF,
    Database,
    Flow,
    Interface,
    PacketSet,
    Pair,
    alloc,
    connected_pair,
    fd_readable,
    fill_chain,
    poll_until,
    recv_packets,
    refill,
    run_flows,
    rx_burst,
    send_packets,
    tx_burst,
)
from rawpeer import ring_stride
from uphelpers import NULL, expect

from memif_cffi.lowlevel import ffi, lib

NEXT = lib.MEMIF_BUFFER_FLAG_NEXT
RX = lib.MEMIF_BUFFER_FLAG_RX


def _addr(p: object) -> int:
    return int(ffi.cast("uintptr_t", p))


def _payload(bufs: object, i: int) -> bytes:
    b = bufs[i]  # type: ignore[index]
    return ffi.buffer(b.data, b.len)[:]


def _both_ways(pair: Pair) -> list[tuple[Interface, Interface]]:
    return [(pair.slave, pair.master), (pair.master, pair.slave)]


def test_buffer_alloc(tmp_path: Path) -> None:
    """Mirrors C#7 test_buffer_alloc: 10 buffers per queue on both sides, and the guards."""
    with connected_pair(tmp_path, s2m=2, m2s=2, log2=10, buffer_size=2048) as pair:
        for side in (pair.master, pair.slave):
            for q in (0, 1):
                rc, bufs, n = alloc(side.conn, q, 10, 2048)
                expect(rc, "SUCCESS", f"alloc q{q}")
                assert n == 10
                assert [bufs[i].len for i in range(n)] == [2048] * 10
                assert [bufs[i].flags for i in range(n)] == [0] * 10
                addrs = {_addr(bufs[i].data) for i in range(n)}
                assert NULL not in [bufs[i].data for i in range(n)] and len(addrs) == 10
            rc, _b, n = alloc(side.conn, 2, 1, 64)
            expect(rc, "QID", "qid 2")
            bufs = ffi.new("memif_buffer_t[1]")
            expect(lib.memif_buffer_alloc(side.conn, 0, bufs, 1, NULL, 64), "INVAL_ARG",
                   "NULL count_out")
        out = ffi.new("uint16_t *")
        expect(lib.memif_buffer_alloc(NULL, 0, bufs, 1, out, 64), "NOCONN", "NULL conn")
    with Database(b"lonely") as db:
        lonely = Interface(db, db.socket(str(tmp_path / "nobody.sock")), master=False)
        expect(lib.memif_buffer_alloc(lonely.conn, 0, bufs, 1, out, 64), "DISCONNECTED",
               "not connected")


def test_buffer_alloc_master_capacity(tmp_path: Path) -> None:
    """New (headroom): a master's slot holds what the slave posted, B - headroom."""
    with connected_pair(tmp_path, headroom=64) as pair:
        m = pair.master
        rc, bufs, n = alloc(m.conn, 0, 3, 1984)
        expect(rc, "SUCCESS", "three 1984-byte packets")
        assert n == 3 and [(bufs[i].len, bufs[i].flags) for i in range(3)] == [(1984, 0)] * 3
        rc, chain, n = alloc(m.conn, 0, 1, 2048, nbufs=2)
        expect(rc, "SUCCESS", "one 2048-byte packet")
        assert n == 2
        assert [(chain[i].len, chain[i].flags) for i in range(2)] == [(1984, NEXT), (64, 0)]
        packets = [bytes([i]) * 1984 for i in range(3)]
        for i in range(3):
            fill_chain(bufs, i, 1, packets[i])
        big = random.Random(1).randbytes(2048)
        fill_chain(chain, 0, 2, big)
        assert tx_burst(m.conn, 0, bufs, 3) == (0, 3)
        assert tx_burst(m.conn, 0, chain, 2) == (0, 2)
        assert recv_packets(pair.slave, 0) == [*packets, big]


def test_tx_burst(tmp_path: Path) -> None:
    """Mirrors C#8 test_tx_burst: 10 distinct payloads are published and arrive intact.

    Upstream also asserted ``bufs[i].data == NULL`` after the transmit; no libmemif
    version does that and it is not part of the contract (libmemif-api §8.7), so
    only delivery is checked.
    """
    with connected_pair(tmp_path) as pair:
        for tx, rx in _both_ways(pair):
            rc, bufs, n = alloc(tx.conn, 0, 10, 100)
            assert (rc, n) == (0, 10)
            payloads = [bytes([0x30 + i]) * (50 + i) for i in range(10)]
            for i, p in enumerate(payloads):
                ffi.memmove(bufs[i].data, p, len(p))
                bufs[i].len = len(p)
            rc, sent = tx_burst(tx.conn, 0, bufs, 10)
            expect(rc, "SUCCESS", "tx_burst")
            assert sent == 10
            assert recv_packets(rx, 0) == payloads
            rc, sent = tx_burst(tx.conn, 2, bufs, 1)
            expect(rc, "QID", "tx_burst on qid 2")


def test_rx_burst(tmp_path: Path) -> None:
    """Mirrors C#9 test_rx_burst: 10 packets from the peer, flags RX, lengths as sent.

    Upstream meant to check an invalid qid but reused a valid one; ours uses qid 1
    on a single-queue interface (upstream-tests spec §9).
    """
    with connected_pair(tmp_path) as pair:
        for tx, rx in _both_ways(pair):
            payloads = [bytes([i]) * (i + 1) * 7 for i in range(10)]
            assert send_packets(tx, 0, payloads) == 10
            rc, bufs, n = rx_burst(rx.conn, 0, 32)
            expect(rc, "SUCCESS", "rx_burst")
            assert n == 10
            for i in range(n):
                assert bufs[i].data != NULL
                assert bufs[i].flags == RX
                assert bufs[i].len == len(payloads[i])
                assert _payload(bufs, i) == payloads[i]
            assert refill(rx.conn, 0, n, rx.headroom) == 0
            rc, _b, n = rx_burst(rx.conn, 1, 32)
            expect(rc, "QID", "rx_burst on qid 1")
            assert n == 0


def test_rx_burst_nobuf(tmp_path: Path) -> None:
    """New: fewer requested than waiting gives NOBUF and keeps the eventfd readable."""
    with connected_pair(tmp_path) as pair:
        efd = pair.master.queue_efd(0)
        assert send_packets(pair.slave, 0, [bytes([i]) for i in range(10)]) == 10
        got: list[bytes] = []
        for expected in ("NOBUF", "NOBUF", "SUCCESS"):
            assert fd_readable(efd), "eventfd not readable while packets wait"
            rc, bufs, n = rx_burst(pair.master.conn, 0, 4)
            expect(rc, expected, f"rx_burst after {len(got)}")
            got += [_payload(bufs, i) for i in range(n)]
            assert refill(pair.master.conn, 0, n) == 0
        assert got == [bytes([i]) for i in range(10)]
        assert not fd_readable(efd)


def test_refill_queue(tmp_path: Path) -> None:
    """New (F1): refill posts exactly the free slots, also across the 16-bit counter wrap."""
    n_slots = 16
    with Database(b"m") as mdb, Database(b"s") as sdb:
        path = str(tmp_path / "refill.sock")
        master = Interface(mdb, mdb.socket(path), master=True, log2=4)
        slave = Interface(sdb, sdb.socket(path), master=False, log2=4, auto_refill=False)
        poll_until([mdb, sdb], lambda: master.connected and slave.connected)
        assert slave.details().rx_queues[0].head == 0
        rc, _b, n = alloc(master.conn, 0, 1, 10)
        expect(rc, "NOBUF_RING", "nothing posted yet")
        expect(refill(slave.conn, 0, ALL, 0), "SUCCESS", "refill all")
        assert slave.details().rx_queues[0].head == n_slots

        seq = 0
        expected_seq = 0
        rounds = 70_000 // n_slots
        for _ in range(rounds):
            # The master can fill exactly the posted slots, never more.
            rc, bufs, n = alloc(master.conn, 0, n_slots + 1, 4, nbufs=n_slots + 1)
            assert (rc, n) == (lib.MEMIF_ERR_NOBUF_RING, n_slots), (
                f"after {seq} packets: {n} slots to fill, rc {rc}")
            for i in range(n):
                ffi.memmove(bufs[i].data, struct.pack("<I", seq), 4)
                seq += 1
            assert tx_burst(master.conn, 0, bufs, n) == (0, n)
            rc, rbufs, got = rx_burst(slave.conn, 0, n_slots)
            assert (rc, got) == (0, n_slots)
            for i in range(got):
                assert struct.unpack("<I", _payload(rbufs, i))[0] == expected_seq
                expected_seq += 1
            assert refill(slave.conn, 0, ALL, 0) == 0
        assert seq > 65536
        q = slave.details().rx_queues[0]
        assert (q.head - q.tail) % 65536 == n_slots


def test_tx_len_checks(tmp_path: Path) -> None:
    """New (F3, F4): lengths beyond the buffer are refused; a moved data pointer is honoured."""
    with connected_pair(tmp_path, headroom=64) as pair:
        s, m = pair.slave, pair.master
        rc, bufs, _ = alloc(s.conn, 0, 1, 100)
        base = ffi.cast("uint8_t *", bufs[0].data)
        bufs[0].len = 2049
        rc, sent = tx_burst(s.conn, 0, bufs, 1)
        expect(rc, "INVAL_ARG", "len > buffer_size")
        assert sent == 0 and recv_packets(m, 0) == []
        bufs[0].data = base + 1990
        bufs[0].len = 100
        rc, sent = tx_burst(s.conn, 0, bufs, 1)
        expect(rc, "INVAL_ARG", "data offset 1990 + len 100 > 2048")
        assert sent == 0 and recv_packets(m, 0) == []
        bufs[0].data = base + 100
        ffi.memmove(bufs[0].data, b"moved!" * 16 + b"..!!", 100)
        rc, sent = tx_burst(s.conn, 0, bufs, 1)
        expect(rc, "SUCCESS", "data moved 100 bytes into the buffer")
        rc, rbufs, n = rx_burst(m.conn, 0, 4)
        assert n == 1 and _payload(rbufs, 0) == b"moved!" * 16 + b"..!!"
        region1 = m.details().regions[1]
        assert (_addr(rbufs[0].data) - region1.addr) % 2048 == 100
        assert refill(m.conn, 0, n) == 0

        # Master: the capacity is the slave's posted 2048 - 64.
        rc, one, _ = alloc(m.conn, 0, 1, 10)
        one[0].len = 1985
        rc, sent = tx_burst(m.conn, 0, one, 1)
        expect(rc, "INVAL_ARG", "len > posted capacity")
        assert sent == 0
        # A master writes only lengths: its data must stay where the slave posted it.
        posted = one[0].data
        one[0].len = 10
        one[0].data = ffi.cast("uint8_t *", posted) + 1
        rc, sent = tx_burst(m.conn, 0, one, 1)
        expect(rc, "INVAL_ARG", "master buffer moved")
        assert sent == 0
        one[0].data = posted
        one[0].len = 1984
        ffi.memmove(one[0].data, b"c" * 1984, 1984)
        assert tx_burst(m.conn, 0, one, 1) == (0, 1)
        assert recv_packets(s, 0) == [b"c" * 1984]


def test_tx_burst_order(tmp_path: Path) -> None:
    """New (X11): buffers must be published in slot order; the second first is refused."""
    with connected_pair(tmp_path) as pair:
        for tx, rx in _both_ways(pair):
            rc, bufs, n = alloc(tx.conn, 0, 2, 8)
            assert (rc, n) == (0, 2)
            for i in range(2):
                ffi.memmove(bufs[i].data, bytes([0x41 + i]) * 8, 8)
            swapped = ffi.new("memif_buffer_t[2]", [bufs[1], bufs[0]])
            rc, sent = tx_burst(tx.conn, 0, swapped, 2)
            expect(rc, "INVAL_ARG", "second buffer first")
            assert sent == 0 and recv_packets(rx, 0) == []
            assert tx_burst(tx.conn, 0, bufs, 2) == (0, 2)
            assert recv_packets(rx, 0) == [b"A" * 8, b"B" * 8]


def test_alloc_flags_reset(tmp_path: Path) -> None:
    """New (F7): alloc into an array rx_burst filled (RX | NEXT) resets every flag."""
    with connected_pair(tmp_path) as pair:
        assert send_packets(pair.master, 0, [b"j" * 5000]) == 1
        rc, bufs, n = rx_burst(pair.slave.conn, 0, 8)
        assert (rc, n) == (0, 3)
        assert [bufs[i].flags for i in range(3)] == [RX | NEXT, RX | NEXT, RX]
        assert refill(pair.slave.conn, 0, n) == 0
        out = ffi.new("uint16_t *")
        expect(lib.memif_buffer_alloc(pair.slave.conn, 0, bufs, 3, out, 100), "SUCCESS",
               "alloc into a used array")
        assert out[0] == 3 and [bufs[i].flags for i in range(3)] == [0, 0, 0]
        for i in range(3):
            fill_chain(bufs, i, 1, bytes([i]) * 100)
        assert tx_burst(pair.slave.conn, 0, bufs, 3) == (0, 3)
        assert recv_packets(pair.master, 0) == [bytes([i]) * 100 for i in range(3)]


def test_alloc_rollback(tmp_path: Path) -> None:
    """New (F11): a chain that does not fit in the 3 free slots is rolled back entirely."""
    with connected_pair(tmp_path, log2=4) as pair:
        s = pair.slave
        rc, bufs, n = alloc(s.conn, 0, 13, 100, nbufs=13)
        assert (rc, n) == (0, 13)
        first_free = (bufs[12].desc_index + 1) & 0xFFFF
        rc, big, n = alloc(s.conn, 0, 1, 4 * 2048, nbufs=4)
        expect(rc, "NOBUF_RING", "4-slot chain in 3 free slots")
        assert n == 0
        assert all(big[i].data == NULL and big[i].len == 0 for i in range(4)), "not zeroed"
        rc, one, n = alloc(s.conn, 0, 1, 10)
        expect(rc, "SUCCESS", "1-slot packet after the rollback")
        assert n == 1 and one[0].desc_index == first_free
        for i in range(13):
            fill_chain(bufs, i, 1, bytes([i]) * 100)
        fill_chain(one, 0, 1, b"after" * 2)
        assert tx_burst(s.conn, 0, bufs, 13) == (0, 13)
        assert tx_burst(s.conn, 0, one, 1) == (0, 1)
        assert recv_packets(pair.master, 0) == [bytes([i]) * 100 for i in range(13)] + [
            b"after" * 2]


@pytest.mark.parametrize("direction", ["s2m", "m2s"])
def test_ring_full_backpressure(tmp_path: Path, direction: str) -> None:
    """New (user pain point): alloc stops at the free slots; sending resumes; no loss.

    The free slots are N for a slave producing on S2M and the buffers the slave
    posted for a master producing on M2S (here 10 of 32).
    """
    rng = random.Random(direction)
    path = str(tmp_path / "full.sock")
    with Database(b"m") as mdb, Database(b"s") as sdb:
        master = Interface(mdb, mdb.socket(path), master=True, log2=5)
        slave = Interface(sdb, sdb.socket(path), master=False, log2=5, auto_refill=False)
        poll_until([mdb, sdb], lambda: master.connected and slave.connected)
        master.tx_capacity = slave.tx_capacity = 2048
        capacity = 32
        if direction == "m2s":
            capacity = 10
            assert refill(slave.conn, 0, capacity, 0) == 0
        tx, rx = (slave, master) if direction == "s2m" else (master, slave)
        sent: list[int] = []
        received: list[int] = []
        seq = 0
        for _round in range(40):
            rc, bufs, n = alloc(tx.conn, 0, 64, 4, nbufs=64)
            expect(rc, "NOBUF_RING", "allocating until the ring is full")
            free = capacity - (len(sent) - len(received))
            assert n == free, f"{n} allocated, {free} free"
            for i in range(n):
                ffi.memmove(bufs[i].data, struct.pack("<I", seq), 4)
                sent.append(seq)
                seq += 1
            assert tx_burst(tx.conn, 0, bufs, n) == (0, n)
            take = rng.randint(1, capacity)
            rc, rbufs, got = rx_burst(rx.conn, 0, take)
            assert rc in (0, NOBUF)
            received += [struct.unpack("<I", _payload(rbufs, i))[0] for i in range(got)]
            assert refill(rx.conn, 0, got, 0) == 0
        received += [struct.unpack("<I", p)[0] for p in recv_packets(rx, 0)]
        assert received == sent, "packets lost, duplicated or reordered"
        assert len(sent) > 10 * capacity


@pytest.mark.parametrize("size_kind", ["60", "B-1", "B", "B+1", "9000", "65535"])
@pytest.mark.parametrize("headroom", [0, 64])
@pytest.mark.parametrize("buffer_size", [2048, 1500])
@pytest.mark.parametrize("direction", ["s2m", "m2s"])
def test_chained_jumbo(tmp_path: Path, direction: str, buffer_size: int, headroom: int,
                       size_kind: str) -> None:
    """New (F9, user pain point): frames of any size are split into ceil(size/capacity)."""
    size = {"60": 60, "B-1": buffer_size - 1, "B": buffer_size, "B+1": buffer_size + 1,
            "9000": 9000, "65535": 65535}[size_kind]
    capacity = buffer_size if direction == "s2m" else buffer_size - headroom
    nbuf = -(-size // capacity)
    frames = [random.Random(size).randbytes(size) for _ in range(2)]
    with connected_pair(tmp_path, buffer_size=buffer_size, headroom=headroom) as pair:
        tx, rx = pair.sender(direction), pair.receiver(direction)
        assert send_packets(tx, 0, frames) == 2
        rc, bufs, n = rx_burst(rx.conn, 0, 2 * nbuf + 1)
        expect(rc, "SUCCESS", "rx_burst")
        assert n == 2 * nbuf, f"{n} buffers for two {size}-byte frames, not {2 * nbuf}"
        for k, frame in enumerate(frames):
            chain = range(k * nbuf, (k + 1) * nbuf)
            flags = [bufs[i].flags for i in chain]
            assert flags == [RX | NEXT] * (nbuf - 1) + [RX]
            assert [bufs[i].len for i in chain][:-1] == [capacity] * (nbuf - 1)
            assert b"".join(_payload(bufs, i) for i in chain) == frame
        assert refill(rx.conn, 0, n, rx.headroom) == 0


def test_chain_split_across_bursts(tmp_path: Path) -> None:
    """New: a 10-buffer chain received 4 buffers at a time keeps NEXT until its end."""
    with connected_pair(tmp_path) as pair:
        for tx, rx in _both_ways(pair):
            frame = random.Random(10).randbytes(10 * 2048)
            assert send_packets(tx, 0, [frame]) == 1
            pieces: list[bytes] = []
            flags: list[int] = []
            for expected in ("NOBUF", "NOBUF", "SUCCESS"):
                rc, bufs, n = rx_burst(rx.conn, 0, 4)
                expect(rc, expected, f"burst after {len(pieces)} buffers")
                pieces += [_payload(bufs, i) for i in range(n)]
                flags += [bufs[i].flags for i in range(n)]
                assert refill(rx.conn, 0, n, rx.headroom) == 0
            assert flags == [RX | NEXT] * 9 + [RX]
            assert b"".join(pieces) == frame


def test_enq_tx_zero_copy(tmp_path: Path) -> None:
    """New (X10): a slave forwards received buffers without copying; guards on misuse."""
    with connected_pair(tmp_path, log2=5) as pair:
        m, s = pair.master, pair.slave
        out = ffi.new("uint16_t *")
        for rnd in range(5):  # more than the ring size in total
            frames = [random.Random(rnd * 10 + i).randbytes(100 + 1000 * i) for i in range(8)]
            assert send_packets(m, 0, frames) == 8
            rc, bufs, n = rx_burst(s.conn, 0, 64)
            assert rc == 0
            expect(lib.memif_buffer_enq_tx(s.conn, 0, bufs, n, out), "SUCCESS", "enq_tx")
            assert out[0] == n
            assert all(not bufs[i].flags & RX for i in range(n))
            assert tx_burst(s.conn, 0, bufs, n) == (0, n)
            expect(refill(s.conn, 0, n, 0), "SUCCESS", "refill after forwarding")
            assert recv_packets(m, 0) == frames
        # A master may not use it.
        assert send_packets(s, 0, [b"to master"]) == 1
        rc, mbufs, n = rx_burst(m.conn, 0, 4)
        expect(lib.memif_buffer_enq_tx(m.conn, 0, mbufs, n, out), "INVAL_ARG", "master")
        assert refill(m.conn, 0, n) == 0
        # A buffer without the RX flag stops the burst there.
        assert send_packets(m, 0, [b"one", b"two", b"three"]) == 3
        rc, bufs, n = rx_burst(s.conn, 0, 8)
        assert n == 3
        bufs[2].flags = 0
        expect(lib.memif_buffer_enq_tx(s.conn, 0, bufs, 3, out), "INVAL_ARG", "no RX flag")
        assert out[0] == 2
        assert tx_burst(s.conn, 0, bufs, 2) == (0, 2)
        assert refill(s.conn, 0, 3, 0) == 0
        assert recv_packets(m, 0) == [b"one", b"two"]


@pytest.mark.parametrize("buffer_size", [1500, 1000, 3000, 2047])
def test_non_power_of_two_buffers(tmp_path: Path, buffer_size: int) -> None:
    """New (F10 / O1): any buffer size works; 10 000 random packets per direction intact."""
    rng = random.Random(buffer_size)
    with connected_pair(tmp_path, buffer_size=buffer_size) as pair:
        flows = []
        for direction in ("s2m", "m2s"):
            lengths = [rng.randint(1, 9000) for _ in range(10_000)]
            flows.append(Flow(pair.sender(direction), pair.receiver(direction), 0,
                              PacketSet(lengths, rng, 1 << 20), name=direction))
        run_flows(flows, timeout=20)  # compares every byte of every packet


@pytest.mark.parametrize(("s2m", "m2s"), [(1, 3), (3, 1)])
def test_multi_queue_asymmetric(tmp_path: Path, s2m: int, m2s: int) -> None:
    """New (X4): differing queue counts; every rx queue interrupts with its own qid."""
    with connected_pair(tmp_path, s2m=s2m, m2s=m2s, interrupts=True) as pair:
        for tx, rx, queues in ((pair.slave, pair.master, s2m), (pair.master, pair.slave, m2s)):
            for q in range(queues):
                rx.interrupts.clear()
                assert send_packets(tx, q, [b"queue %d" % q]) == 1
                pair.poll_until(lambda rx=rx: bool(rx.interrupts), what=f"interrupt q{q}")
                assert set(rx.interrupts) == {q}
                assert recv_packets(rx, q) == [b"queue %d" % q]


def test_many_queues_large_rings(tmp_path: Path) -> None:
    """New (F12): 16 + 16 queues of 4096 slots; every slot has its own buffer."""
    n, queues, bsize = 4096, 16, 2048
    with connected_pair(tmp_path, s2m=queues, m2s=queues, log2=12, buffer_size=bsize,
                        timeout=20) as pair:
        d = pair.master.details()
        region0, region1 = d.regions[0], d.regions[1]
        stride = ring_stride(12)
        assert region0.size == 2 * queues * stride
        words = memoryview(ffi.buffer(ffi.cast("uint8_t *", region0.addr), region0.size)
                           ).cast("I")
        offsets: set[int] = set()
        for k in range(2 * queues):
            first = (k * stride + 128 + 8) // 4  # descriptor offset field of slot 0
            ring_offsets = words[first:first + 4 * n:4].tolist()
            assert len(ring_offsets) == n
            offsets.update(ring_offsets)
        words.release()
        assert len(offsets) == 2 * queues * n, "slots share buffers"
        assert max(offsets) + bsize <= region1.size
        assert all(o % bsize == 0 for o in offsets)
        last = queues - 1
        frames = [random.Random(i).randbytes(3000 + i) for i in range(4)]
        assert send_packets(pair.slave, last, frames) == 4
        assert send_packets(pair.master, last, frames) == 4
        assert recv_packets(pair.master, last) == frames
        assert recv_packets(pair.slave, last) == frames
