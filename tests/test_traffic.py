"""Data path between our master and our slave: integrity, chains, backpressure, interrupts.

Bulk traffic goes through the C helpers memif_cffi_tx_copy / memif_cffi_rx_copy
(one call per burst); the per-packet tests use memif_buffer_alloc /
memif_tx_burst / memif_rx_burst / memif_refill_queue directly.
References: libmemif-api §8.7, §11 (F1, F3, F4, F7, F9, F10, F11, X10, X11; X5 is in
tests/upstream/test_interrupts_polling.py);
protocol spec §6, §7, §8.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from lowpair import (
    ALL,
    NOBUF,
    BulkReceiver,
    BulkSender,
    Flow,
    Interface,
    PacketSet,
    Pair,
    alloc,
    assert_rc,
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
from rawpeer import RING_FLAG_MASK_INT, RawSlave

from memif_cffi.lowlevel import ffi, lib

NULL = ffi.NULL


def _lengths(rng: random.Random, n: int, lo: int, hi: int, edges: list[int]) -> list[int]:
    """n random lengths in [lo, hi] with the interesting ones mixed in."""
    lens = [rng.randint(lo, hi) for _ in range(n)]
    for i, e in enumerate(x for x in edges if lo <= x <= hi):
        lens[(i * 7919) % n] = e
    return lens


def _flows(pair: Pair, total: int, rng: random.Random, lo: int = 1, hi: int = 9000,
           bulk: bool = True) -> list[Flow]:
    """Flows for every queue of both directions, ``total`` packets altogether."""
    b = pair.config["buffer_size"]
    cap = b - pair.config["headroom"]
    edges = [1, 2, 63, 64, cap - 1, cap, cap + 1, b - 1, b, b + 1, 2 * cap, 2 * b + 1, hi]
    flows = []
    per_flow = total // (pair.config["s2m"] + pair.config["m2s"])
    for direction, queues in (("s2m", pair.config["s2m"]), ("m2s", pair.config["m2s"])):
        for q in range(queues):
            ps = PacketSet(_lengths(rng, per_flow, lo, hi, edges), rng)
            flows.append(Flow(pair.sender(direction), pair.receiver(direction), q, ps,
                              bulk=bulk, name=f"{direction}{q}"))
    return flows


# --------------------------------------------------------------------------
# Integrity
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("queues", "headroom"), [(1, 0), (2, 0), (3, 64), (2, 128)],
                         ids=["1q", "2q", "3q-headroom64", "2q-headroom128"])
def test_integrity_100k_bulk(tmp_path: Path, queues: int, headroom: int) -> None:
    rng = random.Random(1000 + queues * 10 + headroom)
    with connected_pair(tmp_path, s2m=queues, m2s=queues, headroom=headroom) as pair:
        flows = _flows(pair, 100_000, rng)
        run_flows(flows, timeout=20)
        assert sum(len(f.packets) for f in flows) >= 99_990
        # Everything was given back: every rx ring is empty again.
        for intf in (pair.master, pair.slave):
            for q in range(queues):
                rc, _b, n = rx_burst(intf.conn, q, 8)
                assert_rc(rc, "MEMIF_ERR_SUCCESS", "final rx")
                assert n == 0


@pytest.mark.parametrize("interrupts", [False, True], ids=["no-int-cb", "int-cb"])
def test_integrity_per_packet(tmp_path: Path, interrupts: bool) -> None:
    rng = random.Random(7)
    with connected_pair(tmp_path, s2m=2, m2s=2, headroom=64, interrupts=interrupts) as pair:
        flows = _flows(pair, 4000, rng, bulk=False)
        run_flows(flows, timeout=20, max_send=64, dbs=pair.dbs if interrupts else ())


@pytest.mark.parametrize("buffer_size", [1000, 1500, 3000, 2047])
def test_non_power_of_two_buffers(tmp_path: Path, buffer_size: int) -> None:
    """F10 / O1: buffer base by modulo; any buffer size works, both ways."""
    rng = random.Random(buffer_size)
    headroom = 100 if buffer_size == 1500 else 0
    with connected_pair(tmp_path, s2m=2, m2s=1, buffer_size=buffer_size,
                        headroom=headroom) as pair:
        run_flows(_flows(pair, 30_000, rng), timeout=20)
        # Per-packet path as well.
        run_flows(_flows(pair, 600, rng, bulk=False), timeout=20, max_send=64)
        # Posted M2S buffers sit at base + headroom with capacity B - headroom.
        region1 = pair.master.details().regions[1]  # the master's mapping
        rc, bufs, n = alloc(pair.master.conn, 0, 4, 10)
        assert_rc(rc, "MEMIF_ERR_SUCCESS", "master alloc")
        for i in range(n):
            off = int(ffi.cast("uintptr_t", bufs[i].data)) - region1.addr
            assert 0 <= off < region1.size
            assert off % buffer_size == headroom


@pytest.mark.parametrize("log2", [1, 2, 14])
def test_ring_sizes(tmp_path: Path, log2: int) -> None:
    rng = random.Random(log2)
    with connected_pair(tmp_path, log2=log2, headroom=0) as pair:
        d = pair.master.details()
        assert {q.ring_size for q in d.rx_queues + d.tx_queues} == {1 << log2}
        if log2 <= 2:
            # A packet can use at most 2^log2 slots.
            hi = (1 << log2) * 2048
            run_flows(_flows(pair, 4000, rng, hi=hi), timeout=20)
            run_flows(_flows(pair, 400, rng, hi=hi, bulk=False), timeout=20)
            # A packet that needs more slots than the ring has is never allocated.
            rc, _b, n = alloc(pair.slave.conn, 0, 1, hi + 1, nbufs=(1 << log2) + 2)
            assert_rc(rc, "MEMIF_ERR_NOBUF_RING", "chain longer than the ring")
            assert n == 0
        else:
            run_flows(_flows(pair, 40_000, rng), timeout=20)


def test_counter_wrap(tmp_path: Path) -> None:
    """F1: more than 65536 packets through a small ring in each direction, no slot lost."""
    rng = random.Random(5)
    with connected_pair(tmp_path, log2=6) as pair:
        flows = [Flow(pair.slave, pair.master, 0, PacketSet(
                    [rng.randint(1, 100) for _ in range(70_000)], rng, 1 << 16), name="s2m"),
                 Flow(pair.master, pair.slave, 0, PacketSet(
                    [rng.randint(1, 100) for _ in range(70_000)], rng, 1 << 16), name="m2s")]
        run_flows(flows, timeout=20, max_send=64)
        # Counters wrapped; the slave still posts a full ring.
        sd = pair.slave.details()
        assert sd.rx_queues[0].head - sd.rx_queues[0].tail in (64, 64 - 65536)
        md = pair.master.details()
        assert (md.tx_queues[0].head - md.tx_queues[0].tail) % 65536 == 64


# --------------------------------------------------------------------------
# Chains
# --------------------------------------------------------------------------


def _recv_chains(intf: Interface, qid: int, burst: int = 64) -> list[list[tuple[int, int, bytes]]]:
    """Received packets as lists of (len, flags, data) per buffer; buffers refilled."""
    chains: list[list[tuple[int, int, bytes]]] = []
    cur: list[tuple[int, int, bytes]] = []
    while True:
        rc, bufs, n = rx_burst(intf.conn, qid, burst)
        assert rc in (0, NOBUF)
        for i in range(n):
            b = bufs[i]
            cur.append((b.len, b.flags, ffi.buffer(b.data, b.len)[:]))
            if not b.flags & lib.MEMIF_BUFFER_FLAG_NEXT:
                chains.append(cur)
                cur = []
        if n:
            assert refill(intf.conn, qid, n, intf.headroom) == 0
        if rc != NOBUF:
            break
    assert not cur, "unfinished chain"
    return chains


@pytest.mark.parametrize("headroom", [0, 64])
@pytest.mark.parametrize("buffer_size", [2048, 1500])
@pytest.mark.parametrize("direction", ["s2m", "m2s"])
def test_chained_packets(tmp_path: Path, direction: str, buffer_size: int, headroom: int) -> None:
    """F9: each packet is ceil(size / capacity) buffers, NEXT on all but the last."""
    cap = buffer_size if direction == "s2m" else buffer_size - headroom
    sizes = [60, cap - 1, cap, cap + 1, buffer_size - 1, buffer_size, buffer_size + 1, 9000,
             65535]
    rng = random.Random(buffer_size + headroom)
    with connected_pair(tmp_path, buffer_size=buffer_size, headroom=headroom) as pair:
        tx, rx = pair.sender(direction), pair.receiver(direction)
        packets = [rng.randbytes(n) for n in sizes]
        assert send_packets(tx, 0, packets, burst=len(packets)) == len(packets)
        chains = _recv_chains(rx, 0)
        assert len(chains) == len(packets)
        for pkt, chain in zip(packets, chains, strict=True):
            nbuf = -(-len(pkt) // cap)
            assert len(chain) == nbuf, f"{len(pkt)} bytes in {len(chain)} buffers, not {nbuf}"
            for j, (ln, flags, _data) in enumerate(chain):
                assert flags & lib.MEMIF_BUFFER_FLAG_RX
                assert bool(flags & lib.MEMIF_BUFFER_FLAG_NEXT) == (j < nbuf - 1)
                assert ln == (cap if j < nbuf - 1 else len(pkt) - cap * (nbuf - 1))
            assert b"".join(d for _l, _f, d in chain) == pkt


def test_chain_split_across_bursts(tmp_path: Path) -> None:
    with connected_pair(tmp_path) as pair:
        pkt = random.Random(3).randbytes(10 * 2048)
        assert send_packets(pair.slave, 0, [pkt]) == 1
        pieces = []
        flags = []
        for _ in range(3):
            rc, bufs, n = rx_burst(pair.master.conn, 0, 4)
            pieces += [ffi.buffer(bufs[i].data, bufs[i].len)[:] for i in range(n)]
            flags += [bool(bufs[i].flags & lib.MEMIF_BUFFER_FLAG_NEXT) for i in range(n)]
            assert refill(pair.master.conn, 0, n) == 0
            assert rc == (NOBUF if len(pieces) < 10 else 0)
        assert flags == [True] * 9 + [False]
        assert b"".join(pieces) == pkt


def test_rx_copy_joins_chain_cut_by_max_packets(tmp_path: Path) -> None:
    """memif_cffi_rx_copy keeps an unfinished chain in its state across calls."""
    rng = random.Random(11)
    with connected_pair(tmp_path) as pair:
        ps = PacketSet([100, 5000, 3, 9000, 2048, 2049], rng)
        sender = BulkSender(pair.slave, 0, ps)
        assert sender.step() == 6
        rx = BulkReceiver(pair.master, 0, max_packets=1)
        got: list[bytes] = []
        for _ in range(20):
            got += [bytes(m) for m in rx.step()]
        assert got == [ps.packet(i) for i in range(6)]


# --------------------------------------------------------------------------
# Backpressure
# --------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["s2m", "m2s"])
def test_ring_full_alloc(tmp_path: Path, direction: str) -> None:
    n_slots = 64
    with connected_pair(tmp_path, log2=6) as pair:
        tx, rx = pair.sender(direction), pair.receiver(direction)
        rc, bufs, n = alloc(tx.conn, 0, n_slots + 5, 64, nbufs=n_slots + 5)
        assert_rc(rc, "MEMIF_ERR_NOBUF_RING", "alloc of more packets than free slots")
        assert n == n_slots, "the packets that fit are allocated"
        for i in range(n):
            assert bufs[i].len == 64 and bufs[i].flags == 0 and bufs[i].data != NULL
            ffi.memmove(bufs[i].data, i.to_bytes(2, "little") * 32, 64)
        assert len({int(ffi.cast("uintptr_t", bufs[i].data)) for i in range(n)}) == n
        # Reserved slots stay reserved: nothing more until they are published and consumed.
        rc2, _b, n2 = alloc(tx.conn, 0, 1, 64)
        assert_rc(rc2, "MEMIF_ERR_NOBUF_RING", "alloc on a full ring")
        assert n2 == 0
        rc, sent = tx_burst(tx.conn, 0, bufs, n)
        assert_rc(rc, "MEMIF_ERR_SUCCESS", "tx_burst")
        assert sent == n_slots
        assert send_packets(tx, 0, [b"no room"]) == 0
        # The receiver takes 10 and gives them back: exactly 10 more fit.
        rc, rbufs, got = rx_burst(rx.conn, 0, 10)
        assert_rc(rc, "MEMIF_ERR_NOBUF", "more are waiting")
        assert got == 10
        assert [rbufs[i].len for i in range(10)] == [64] * 10
        assert [ffi.buffer(rbufs[i].data, 2)[:] for i in range(10)] == [
            i.to_bytes(2, "little") for i in range(10)]
        assert refill(rx.conn, 0, 10, rx.headroom) == 0
        rc, bufs, n = alloc(tx.conn, 0, 11, 64, nbufs=11)
        assert_rc(rc, "MEMIF_ERR_NOBUF_RING", "11 packets, 10 slots")
        assert n == 10
        for i in range(n):
            ffi.memmove(bufs[i].data, (n_slots + i).to_bytes(2, "little") * 32, 64)
        rc, sent = tx_burst(tx.conn, 0, bufs, n)
        assert sent == 10
        # No packet lost or duplicated.
        seen = [int.from_bytes(p[:2], "little") for p in recv_packets(rx, 0)]
        assert seen == list(range(10, n_slots + 10))


def test_alloc_rollback_partial_chain(tmp_path: Path) -> None:
    """F11: a chain that does not fit is rolled back completely."""
    with connected_pair(tmp_path, log2=4) as pair:
        s = pair.slave
        rc, bufs, n = alloc(s.conn, 0, 13, 100, nbufs=13)
        assert_rc(rc, "MEMIF_ERR_SUCCESS", "13 of 16 slots")
        assert n == 13
        first_free = (bufs[12].desc_index + 1) & 0xFFFF
        rc, big, nbig = alloc(s.conn, 0, 1, 4 * 2048, nbufs=4)
        assert_rc(rc, "MEMIF_ERR_NOBUF_RING", "4-slot chain in 3 free slots")
        assert nbig == 0
        assert all(big[i].data == NULL and big[i].len == 0 for i in range(4)), "not zeroed"
        rc, one, n1 = alloc(s.conn, 0, 1, 3 * 2048, nbufs=3)
        assert_rc(rc, "MEMIF_ERR_SUCCESS", "3-slot chain after the rollback")
        assert n1 == 3 and one[0].desc_index == first_free
        assert tx_burst(s.conn, 0, bufs, 13) == (0, 13)
        assert tx_burst(s.conn, 0, one, 3) == (0, 3)
        assert len(recv_packets(pair.master, 0)) == 14
        # Several packets: five 3-slot chains fit in 16 slots, the sixth is cut after
        # one slot and rolled back.
        rc, mix, nmix = alloc(s.conn, 0, 20, 2 * 2048 + 1, nbufs=60)
        assert_rc(rc, "MEMIF_ERR_NOBUF_RING", "3-slot packets in 16 slots")
        assert nmix == 15
        assert mix[15].data == NULL and mix[15].len == 0, "partial chain entry not zeroed"
        rc, last, n1 = alloc(s.conn, 0, 1, 10)
        assert_rc(rc, "MEMIF_ERR_SUCCESS", "the slot of the rolled-back chain")
        assert n1 == 1 and last[0].desc_index == (mix[14].desc_index + 1) & 0xFFFF
        assert tx_burst(s.conn, 0, mix, 15) == (0, 15)
        assert tx_burst(s.conn, 0, last, 1) == (0, 1)
        got = recv_packets(pair.master, 0)
        assert [len(p) for p in got] == [2 * 2048 + 1] * 5 + [10]


def test_alloc_resets_flags(tmp_path: Path) -> None:
    """F7: an array that rx_burst filled (RX | NEXT) gets clean flags from alloc."""
    with connected_pair(tmp_path) as pair:
        assert send_packets(pair.master, 0, [b"x" * 5000]) == 1
        rc, bufs, n = rx_burst(pair.slave.conn, 0, 8)
        assert rc == 0 and n == 3
        assert bufs[0].flags == lib.MEMIF_BUFFER_FLAG_RX | lib.MEMIF_BUFFER_FLAG_NEXT
        assert refill(pair.slave.conn, 0, n) == 0
        out = ffi.new("uint16_t *")
        assert_rc(lib.memif_buffer_alloc(pair.slave.conn, 0, bufs, 3, out, 100),
                  "MEMIF_ERR_SUCCESS", "alloc into a used array")
        assert out[0] == 3 and [bufs[i].flags for i in range(3)] == [0, 0, 0]
        for i in range(3):
            fill_chain(bufs, i, 1, bytes([i]) * 100)
        assert tx_burst(pair.slave.conn, 0, bufs, 3) == (0, 3)
        assert recv_packets(pair.master, 0) == [bytes([i]) * 100 for i in range(3)]


def test_tx_copy_partial_counts_no_loss(tmp_path: Path) -> None:
    """A producer much faster than its consumer: partial counts, zero loss or duplication."""
    rng = random.Random(99)
    with connected_pair(tmp_path, log2=8) as pair:
        for direction in ("s2m", "m2s"):
            ps = PacketSet([rng.randint(1, 3000) for _ in range(20_000)], rng)
            sender = BulkSender(pair.sender(direction), 0, ps, chunk=512)
            receiver = BulkReceiver(pair.receiver(direction), 0, max_packets=16)
            partial = 0
            got = 0
            deadline = time.monotonic() + 20
            while got < len(ps):
                offered = min(512, len(ps) - sender.next)
                n = sender.step()
                partial += offered > 0 and n < offered
                for pkt in receiver.step():
                    assert bytes(pkt) == ps.packet(got), f"packet {got}"
                    got += 1
                assert got <= sender.next
                assert time.monotonic() < deadline, f"stalled at {got}"
            assert partial > 100, "the ring never filled up"
            assert sender.next == got == len(ps)


# --------------------------------------------------------------------------
# tx_burst checks
# --------------------------------------------------------------------------


def test_tx_len_and_data_checks(tmp_path: Path) -> None:
    """F3 / F4 on the slave, F4 on the master (capacity = posted length)."""
    with connected_pair(tmp_path, headroom=64) as pair:
        s, m = pair.slave, pair.master
        rc, bufs, n = alloc(s.conn, 0, 1, 100)
        base = bufs[0].data
        bufs[0].len = 2049
        rc, sent = tx_burst(s.conn, 0, bufs, 1)
        assert_rc(rc, "MEMIF_ERR_INVAL_ARG", "len > buffer_size")
        assert sent == 0
        # data moved 1990 bytes into the buffer: 1990 + 100 > 2048.
        bufs[0].data = ffi.cast("uint8_t *", base) + 1990
        bufs[0].len = 100
        rc, sent = tx_burst(s.conn, 0, bufs, 1)
        assert_rc(rc, "MEMIF_ERR_INVAL_ARG", "data offset + len > buffer_size")
        assert recv_packets(m, 0) == []
        # data moved 100 bytes: accepted, the peer reads it there (F3).
        bufs[0].data = ffi.cast("uint8_t *", base) + 100
        ffi.memmove(bufs[0].data, b"moved" * 20, 100)
        rc, sent = tx_burst(s.conn, 0, bufs, 1)
        assert_rc(rc, "MEMIF_ERR_SUCCESS", "moved data")
        assert sent == 1
        assert recv_packets(m, 0) == [b"moved" * 20]

        # Master: capacity is the posted 2048 - 64.
        rc, bufs, n = alloc(m.conn, 0, 1, 2048, nbufs=2)
        assert n == 2 and (bufs[0].len, bufs[1].len) == (1984, 64)
        rc, one, _ = alloc(m.conn, 0, 1, 10, nbufs=1)
        rc, sent = tx_burst(m.conn, 0, bufs, 2)
        assert sent == 2
        one[0].len = 1985
        rc, sent = tx_burst(m.conn, 0, one, 1)
        assert_rc(rc, "MEMIF_ERR_INVAL_ARG", "len > posted capacity")
        assert sent == 0
        one[0].len = 1984
        ffi.memmove(one[0].data, b"z" * 1984, 1984)
        rc, sent = tx_burst(m.conn, 0, one, 1)
        assert sent == 1
        got = recv_packets(s, 0)
        assert len(got) == 2 and got[1] == b"z" * 1984 and len(got[0]) == 2048


def test_tx_burst_slot_order(tmp_path: Path) -> None:
    """X11: buffers must be published in slot order."""
    with connected_pair(tmp_path) as pair:
        for tx, rx in ((pair.slave, pair.master), (pair.master, pair.slave)):
            rc, bufs, n = alloc(tx.conn, 0, 2, 10)
            assert (rc, n) == (0, 2)
            for i in range(2):
                ffi.memmove(bufs[i].data, bytes([65 + i]) * 10, 10)
            swapped = ffi.new("memif_buffer_t[2]", [bufs[1], bufs[0]])
            rc, sent = tx_burst(tx.conn, 0, swapped, 2)
            assert_rc(rc, "MEMIF_ERR_INVAL_ARG", "second buffer first")
            assert sent == 0
            assert recv_packets(rx, 0) == []
            rc, sent = tx_burst(tx.conn, 0, bufs, 2)
            assert sent == 2
            assert recv_packets(rx, 0) == [b"A" * 10, b"B" * 10]


def test_refill_semantics(tmp_path: Path) -> None:
    with connected_pair(tmp_path, log2=5) as pair:
        s, m = pair.slave, pair.master
        # After the on_connect refill the slave posted the whole ring.
        assert s.details().rx_queues[0].head == 32
        assert send_packets(m, 0, [bytes([i]) for i in range(40)]) == 32
        got = recv_packets(s, 0, limit=5)  # takes 5, gives 5 back
        assert got == [bytes([i]) for i in range(5)]
        assert send_packets(m, 0, [b"more"] * 10) == 5
        # 32 buffers are filled and not consumed (27 + 5): refilling "all" posts nothing.
        assert refill(s.conn, 0, ALL, 0) == 0
        d = s.details().rx_queues[0]
        assert (d.head, d.tail) == (37, 37)
        got = recv_packets(s, 0)  # consumes 32, refills 32
        assert len(got) == 32 and got[-5:] == [b"more"] * 5
        d = s.details().rx_queues[0]
        assert (d.head, d.tail) == (69, 37)
        # Master side (S2M): tail follows what was consumed, at most.
        assert send_packets(s, 0, [b"s"] * 3) == 3
        rc, _b, n = rx_burst(m.conn, 0, 8)
        assert (rc, n) == (0, 3)
        assert refill(m.conn, 0, 1, 0) == 0
        assert m.details().rx_queues[0].tail == 1
        assert refill(m.conn, 0, ALL, 0) == 0
        assert m.details().rx_queues[0].tail == 3


def test_slave_without_refill_blocks_master(tmp_path: Path) -> None:
    path = str(tmp_path / "r.sock")
    from lowpair import Database

    with Database(b"m") as mdb, Database(b"s") as sdb:
        m = Interface(mdb, mdb.socket(path), master=True, log2=4)
        s = Interface(sdb, sdb.socket(path), master=False, log2=4, auto_refill=False)
        poll_until([mdb, sdb], lambda: m.connected and s.connected)
        m.tx_capacity = 2048
        assert s.details().rx_queues[0].head == 0
        assert send_packets(m, 0, [b"x"]) == 0
        assert refill(s.conn, 0, 5, 0) == 0
        assert s.details().rx_queues[0].head == 5
        assert send_packets(m, 0, [b"y"] * 8) == 5
        assert recv_packets(s, 0) == [b"y"] * 5


def test_enq_tx_zero_copy_forwarding(tmp_path: Path) -> None:
    rng = random.Random(21)
    with connected_pair(tmp_path, log2=5) as pair:
        m, s = pair.master, pair.slave
        for rnd in range(6):  # several times the ring size
            pkts = [rng.randbytes(rng.randint(1, 5000)) for _ in range(8)]
            assert send_packets(m, 0, pkts) == 8
            rc, bufs, n = rx_burst(s.conn, 0, 64)
            assert rc == 0
            out = ffi.new("uint16_t *")
            assert_rc(lib.memif_buffer_enq_tx(s.conn, 0, bufs, n, out), "MEMIF_ERR_SUCCESS",
                      f"enq_tx round {rnd}")
            assert out[0] == n
            for i in range(n):
                assert not bufs[i].flags & lib.MEMIF_BUFFER_FLAG_RX
            rc, sent = tx_burst(s.conn, 0, bufs, n)
            assert_rc(rc, "MEMIF_ERR_SUCCESS", "tx_burst after enq_tx")
            assert sent == n
            assert refill(s.conn, 0, n, 0) == 0
            assert recv_packets(m, 0) == pkts


# --------------------------------------------------------------------------
# Interrupt and polling modes
# --------------------------------------------------------------------------


def test_interrupt_mode(tmp_path: Path) -> None:
    with connected_pair(tmp_path, s2m=2, m2s=3, interrupts=True) as pair:
        for tx, rx, queues in ((pair.slave, pair.master, 2), (pair.master, pair.slave, 3)):
            for q in range(queues):
                efd = rx.queue_efd(q)
                assert not fd_readable(efd)
                rx.interrupts.clear()
                assert send_packets(tx, q, [b"irq"] * 32) == 32
                assert fd_readable(efd, 1.0), "eventfd not signalled after tx_burst"
                pair.poll_until(lambda rx=rx: bool(rx.interrupts), what="on_interrupt")
                assert set(rx.interrupts) == {q}, rx.interrupts
                got = recv_packets(rx, q)
                assert got == [b"irq"] * 32
                assert not fd_readable(efd), "rx_burst did not drain the eventfd"
                assert rx.details().rx_queues[q].flags == 0


def test_polling_mode(tmp_path: Path) -> None:
    with connected_pair(tmp_path, s2m=2, m2s=2, interrupts=True,
                        rx_mode=lib.MEMIF_RX_MODE_POLLING) as pair:
        for tx, rx in ((pair.slave, pair.master), (pair.master, pair.slave)):
            d = rx.details()
            assert [q.flags for q in d.rx_queues] == [lib.MEMIF_QUEUE_FLAG_POLLING] * 2
            # The peer sees MASK_INT on its tx rings.
            assert [q.flags & 1 for q in tx.details().tx_queues] == [1, 1]
            for q in range(2):
                efd = rx.queue_efd(q)
                rx.interrupts.clear()
                assert send_packets(tx, q, [b"poll"] * 16) == 16
                assert not fd_readable(efd, 0.05), "eventfd signalled in polling mode"
                assert recv_packets(rx, q) == [b"poll"] * 16
                assert rx.interrupts == []
            # Back to interrupt mode on queue 1 only.
            rx.set_rx_mode(lib.MEMIF_RX_MODE_INTERRUPT, 1)
            assert [q.flags for q in rx.details().rx_queues] == [1, 0]
            assert send_packets(tx, 1, [b"int"]) == 1
            assert fd_readable(rx.queue_efd(1), 1.0)
            assert send_packets(tx, 0, [b"poll"]) == 1
            assert not fd_readable(rx.queue_efd(0), 0.05)
            assert recv_packets(rx, 1) == [b"int"] and recv_packets(rx, 0) == [b"poll"]


def test_polling_mode_seen_by_raw_peer(tmp_path: Path) -> None:
    """MASK_INT in the shared ring header (independent view through a raw slave)."""
    from lowpair import Database
    from test_handshake import Background

    path = str(tmp_path / "p.sock")
    with Database() as db:
        m = Interface(db, db.socket(path), master=True, s2m=2)
        m.tx_capacity = 2048
        raw = RawSlave(path, num_s2m_rings=2)
        try:
            bg = Background(raw.handshake)
            poll_until([db], lambda: bg.done() and m.connected)
            bg.join()
            m.set_rx_mode(lib.MEMIF_RX_MODE_POLLING, 1)
            assert raw.s2m[1].flags & RING_FLAG_MASK_INT
            assert not raw.s2m[0].flags & RING_FLAG_MASK_INT
            raw.send_burst(1, [b"a"])
            raw.send_burst(0, [b"b"])
            assert raw.stats.signals_skipped == 1 and raw.stats.signals_sent == 1
            # Our producer honours the raw slave's MASK_INT on M2S.
            raw.set_polling(0, True)
            assert send_packets(m, 0, [b"c"]) == 1
            assert not raw.wait_rx(0, 0.05)
            raw.set_polling(0, False)
            assert send_packets(m, 0, [b"d"]) == 1
            assert raw.wait_rx(0, 1.0)
            assert raw.recv_frames(0) == [b"c", b"d"]
            assert recv_packets(m, 1) == [b"a"] and recv_packets(m, 0) == [b"b"]
        finally:
            raw.close()


def test_rx_burst_nobuf_keeps_eventfd_readable(tmp_path: Path) -> None:
    with connected_pair(tmp_path) as pair:
        efd = pair.master.queue_efd(0)
        assert send_packets(pair.slave, 0, [bytes([i]) for i in range(10)]) == 10
        got: list[bytes] = []
        for expected_rc in (NOBUF, NOBUF, 0):
            assert fd_readable(efd), "eventfd not readable while packets wait"
            rc, bufs, n = rx_burst(pair.master.conn, 0, 4)
            assert rc == expected_rc
            got += [ffi.buffer(bufs[i].data, bufs[i].len)[:] for i in range(n)]
            assert refill(pair.master.conn, 0, n) == 0
        assert got == [bytes([i]) for i in range(10)]
        assert not fd_readable(efd)


def test_one_thread_per_queue(tmp_path: Path) -> None:
    """libmemif-api §6: data-path calls on different queues may run in parallel threads."""
    rng = random.Random(17)
    with connected_pair(tmp_path, s2m=3, m2s=3, headroom=32) as pair:
        flows = _flows(pair, 60_000, rng)
        errors: list[BaseException] = []

        def worker(q: int) -> None:
            try:
                run_flows([f for f in flows if f.qid == q], timeout=20)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(q,)) for q in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors[0]
        assert all(f.done for f in flows)


def _raw_master_pair(tmp_path: Path) -> tuple[Any, Any, Any]:
    from lowpair import Database
    from rawpeer import RawMaster
    from test_handshake import Background

    path = str(tmp_path / "h.sock")
    raw = RawMaster(path)
    raw.listen()
    db = Database()
    slave = Interface(db, db.socket(path), master=False, log2=4)
    bg = Background(lambda: raw.handshake(timeout=5))
    poll_until([db], lambda: bg.done() and slave.connected)
    bg.join()
    return raw, db, slave


@pytest.mark.parametrize("attack", ["length", "region", "offset", "tail-jump"])
def test_hostile_master_descriptors(tmp_path: Path, attack: str) -> None:
    """Protocol spec §6.6: a descriptor outside its region or a counter jumping by more
    than N never reaches the application; the connection ends with a reason."""
    from rawpeer import Descriptor

    raw, db, slave = _raw_master_pair(tmp_path)
    try:
        ring = raw.m2s[0]
        assert raw.send(0, b"fine")
        assert recv_packets(slave, 0) == [b"fine"]
        slot = ring.tail
        good = ring.get_desc(slot)
        size1 = raw.regions[1].size
        if attack == "length":
            ring.set_desc(slot, Descriptor(0, 1, size1, good.offset))
        elif attack == "region":
            ring.set_desc(slot, Descriptor(0, 9, 10, 0))
        elif attack == "offset":
            ring.set_desc(slot, Descriptor(0, 1, 10, size1 - 5))
        if attack == "tail-jump":
            ring.tail = (slot + 17 + 16) & 0xFFFF
        else:
            ring.tail = (slot + 1) & 0xFFFF
        rc, _bufs, n = rx_burst(slave.conn, 0, 64)
        assert n == 0, f"{n} buffers handed out from a hostile ring (rc {rc})"
        poll_until([db], lambda: slave.disconnects == 1, 3, "disconnect after the attack")
        err = slave.details().error
        assert err, "no reason recorded"
        assert raw.poll_disconnect(2) is not None
    finally:
        raw.close()
        db.close()


def test_hostile_slave_head_jump(tmp_path: Path) -> None:
    from lowpair import Database
    from test_handshake import Background

    path = str(tmp_path / "j.sock")
    with Database() as db:
        master = Interface(db, db.socket(path), master=True, log2=4)
        raw = RawSlave(path, log2_ring_size=4)
        try:
            bg = Background(raw.handshake)
            poll_until([db], lambda: bg.done() and master.connected)
            bg.join()
            raw.s2m[0].head = 40  # more than N = 16 packets "published"
            _rc, _bufs, n = rx_burst(master.conn, 0, 64)
            assert n == 0
            poll_until([db], lambda: master.disconnects == 1, 3)
            assert master.details().error
        finally:
            raw.close()


def test_control_fd_error_event(tmp_path: Path) -> None:
    """libmemif-api §8.5: ERROR on a control fd ends the connection; WRITE alone does nothing."""
    with connected_pair(tmp_path, external=True) as pair:
        listener_and_timer = 2
        ctrl = [fd for fd, ev in pair.mdb.fd_events if ev == lib.MEMIF_FD_EVENT_READ][
            listener_and_timer]
        assert_rc(lib.memif_per_thread_control_fd_handler(pair.mdb.handle, ctrl,
                                                          lib.MEMIF_FD_EVENT_WRITE),
                  "MEMIF_ERR_SUCCESS", "WRITE only")
        assert pair.master.connected
        assert_rc(lib.memif_per_thread_control_fd_handler(pair.mdb.handle, ctrl,
                                                          lib.MEMIF_FD_EVENT_ERROR),
                  "MEMIF_ERR_SUCCESS", "ERROR")
        assert pair.master.disconnects == 1
        assert pair.master.details().error == "control channel error"
        pair.poll_until(lambda: pair.slave.disconnects == 1)
