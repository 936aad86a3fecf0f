"""Interop of the Pythonic API with DPDK's net_memif (testpmd, io forwarding echoes frames).

Skips only when testpmd or the wrapper is missing, fails then when
MEMIF_REQUIRE_PEERS=1 (CI).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

import memif_cffi as memif

try:
    from peers import dpdk_peer, require_dpdk
except ImportError:  # pragma: no cover - peers.py is part of the suite
    pytest.skip("tests/peers.py not available", allow_module_level=True)

SIZES = (64, 1500, 9000)
PER_SIZE = 100


def frame(seq: int, size: int) -> bytes:
    body = bytes((seq * 7 + k) & 0xFF for k in range(size))
    # Ethernet-like header: broadcast destination, so testpmd forwards everything.
    return (b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + seq.to_bytes(4, "big")
            + body)[:size]


def expected() -> dict[int, bytes]:
    frames = {}
    seq = 0
    for size in SIZES:
        for _ in range(PER_SIZE):
            frames[seq] = frame(seq, size)
            seq += 1
    return frames


def check_echoes(got: list[bytes], sent: dict[int, bytes]) -> None:
    seen: set[int] = set()
    for f in got:
        seq = int.from_bytes(f[14:18], "big")
        assert f == sent.get(seq), f"corrupted echo of frame {seq} ({len(f)} bytes)"
        assert seq not in seen, f"duplicate frame {seq}"
        seen.add(seq)
    # testpmd may drop what it cannot transmit at once; never corrupt.
    assert len(seen) >= len(sent) - 30, f"{len(seen)} of {len(sent)} echoed"


def exchange(send_some: Callable[[int], int], recv_some: Callable[[], list[bytes]],
             total: int) -> list[bytes]:
    """Send ``total`` frames while receiving echoes; stop when all came back or 2 s idle."""
    got: list[bytes] = []
    sent = 0
    last_progress = time.monotonic()
    while sent < total or len(got) < total:
        if sent < total:
            sent += send_some(sent)
        new = recv_some()
        if new:
            got += new
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > 2:
            break
    assert sent == total
    return got


def test_python_slave_with_dpdk_server(tmp_path: Path) -> None:
    require_dpdk()
    path = str(tmp_path / "dpdk.sock")
    with dpdk_peer("server", path, forward="io"), memif.Context("py-slave") as ctx:
        intf = ctx.interface(ctx.socket(path), role=memif.Role.SLAVE, name="py0")
        intf.wait_connected(timeout=10)
        assert intf.details.remote_inst_name  # DPDK's instance name
        sent = expected()
        items = list(sent.values())

        def recv() -> list[bytes]:
            ctx.poll(0)
            return intf.rx[0].recv_burst(64)

        got = exchange(lambda i: intf.tx[0].send_burst(items[i:i + 8]), recv, len(items))
        check_echoes(got, sent)
        assert intf.counters.tx_packets == len(expected())


def test_python_master_with_dpdk_client(tmp_path: Path) -> None:
    """Bulk and zero-copy levels; our control path runs in a thread of its own."""
    require_dpdk()
    path = f"@memif-cffi-api-{uuid.uuid4().hex[:12]}"
    with memif.Context("py-master") as ctx:
        intf = ctx.interface(ctx.socket(path), role=memif.Role.MASTER, name="py0")
        stop = threading.Event()
        failures: list[BaseException] = []

        def control() -> None:
            try:
                while not stop.is_set():
                    ctx.poll(0.05)
            except BaseException as exc:
                failures.append(exc)

        poller = threading.Thread(target=control)
        poller.start()
        try:
            # A 1024-byte DPDK buffer: DPDK chains 1500/9000-byte frames on the wire.
            with dpdk_peer("client", path, forward="io", buffer_size=1024):
                deadline = time.monotonic() + 10
                while not intf.connected and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert intf.connected
                sent = expected()
                out = memif.PacketBatch(len(sent), 9000)
                out.extend(sent.values())
                inbox = memif.PacketBatch(256, 9000)
                turn = [0]

                def recv() -> list[bytes]:
                    turn[0] += 1
                    if turn[0] % 2:
                        with intf.rx[0].views(64) as views:  # zero copy
                            return [bytes(v) for v in views]
                    intf.rx[0].recv_into(inbox)  # bulk: one C call per burst
                    return inbox.tolist()

                got = exchange(lambda i: intf.tx[0].send_batch(out, i, min(16, out.count - i)),
                               recv, out.count)
                check_echoes(got, sent)
        finally:
            stop.set()
            poller.join(5)
        assert not failures, failures
