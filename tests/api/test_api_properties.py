"""Property tests: whatever the sizes, every packet round-trips byte for byte.

Hypothesis draws a connection (buffer size, headroom, ring size) and a
sequence of packet sizes, then sends the packets in both directions through
each data-path level (per packet, PacketBatch, zero-copy views) and checks
every byte, the order and the counters. Packets larger than a buffer are
chained; the ring must only be able to hold the largest packet.
"""

from __future__ import annotations

import os
import tempfile
import uuid

from apihelp import Pair
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import memif_cffi as memif

LEVELS = ("per-packet", "batch", "views")


@st.composite
def link_and_packets(draw: st.DrawFn) -> tuple[dict[str, int], list[int]]:
    buffer_size = draw(st.one_of(st.integers(64, 4096), st.sampled_from([100, 1000, 2048, 9216])))
    headroom = draw(st.one_of(st.just(0), st.integers(0, min(buffer_size - 1, 512))))
    ring_size = 2 ** draw(st.integers(1, 10))
    # The largest packet must fit in the ring (chained over its buffers) and in 65535 bytes.
    largest = min(65535, ring_size * (buffer_size - headroom))
    sizes = draw(st.lists(st.one_of(st.integers(1, min(largest, 128)), st.integers(1, largest)),
                          min_size=1, max_size=40))
    return {"buffer_size": buffer_size, "headroom": headroom, "ring_size": ring_size}, sizes


def payload(i: int, size: int) -> bytes:
    seed = (i * 7919 + size).to_bytes(4, "little")
    return (seed + bytes((i + k * 31) & 0xFF for k in range(251)) * (size // 251 + 1))[:size]


def transfer(pair: Pair, tx: memif.TxQueue, rx: memif.RxQueue, packets: list[bytes],
             level: str) -> list[bytes]:
    """Send ``packets`` in order and receive them at ``level``, retrying on a full ring."""
    got: list[bytes] = []
    sent = 0
    batch = memif.PacketBatch(64, 65535)
    for _ in range(20000):
        if sent < len(packets):
            sent += tx.send_burst(packets[sent:])
        pair.poll()
        if level == "per-packet":
            got += rx.recv_burst(64)
        elif level == "batch":
            rx.recv_into(batch)
            got += [bytes(p) for p in batch]
        else:
            with rx.views(64) as views:
                got += [bytes(v) for v in views]
        if len(got) >= len(packets):
            return got
    raise AssertionError(f"sent {sent}, received {len(got)} of {len(packets)}")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(link_and_packets(), st.sampled_from(LEVELS))
def test_packets_round_trip_both_ways(case: tuple[dict[str, int], list[int]],
                                      level: str) -> None:
    link, sizes = case
    path = os.path.join(tempfile.gettempdir(), f"memif-prop-{uuid.uuid4().hex[:12]}.sock")
    with Pair(path, slave_kw={"headroom": link["headroom"]}, buffer_size=link["buffer_size"],
              ring_size=link["ring_size"]) as pair:
        packets = [payload(i, n) for i, n in enumerate(sizes)]
        for sender, receiver in ((pair.slave, pair.master), (pair.master, pair.slave)):
            got = transfer(pair, sender.tx[0], receiver.rx[0], packets, level)
            assert got == packets
            assert receiver.rx[0].counters.packets == len(packets)
            assert receiver.rx[0].counters.bytes == sum(sizes)
            assert receiver.rx[0].counters.drops == 0
