"""A Python-API end point for the benchmarks, run as its own process.

``python -m bench.pyworker LEVEL DIRECTION SOCKET [options]`` connects to a
C peer (``memif_bench sink`` or ``flood``) and sends or receives as fast as
one level of the API allows:

========  ==========================================  ===================================
level     tx (against the C sink)                     rx (against the C flood)
========  ==========================================  ===================================
packet    ``send_burst(list of bytes)``               ``recv_burst(n)`` (one bytes each)
bulk      ``send_batch(PacketBatch)``                 ``recv_into(PacketBatch)``
views     --                                          ``with views(n)``: zero copy
aio       ``await aio send_batch(PacketBatch)``       ``await aio recv_burst(n)`` (interrupts)
========  ==========================================  ===================================

The synchronous levels receive in polling mode (the peer is asked not to
signal) and poll the control socket every 10 ms; the aio level keeps the
queue in interrupt mode, as ``memif_cffi.aio`` requires. A receiver measures
its own window (warm-up after the first packet, then ``--window`` seconds)
and prints one ``key=value`` line like the C programs; a sender prints its
own counts when it stops (SIGTERM, or the peer leaving).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import memif_cffi as memif
from memif_cffi import aio

CTL_PERIOD = 0.01  # seconds between control-socket polls of the synchronous loops
CHECK_EVERY = 16  # bursts between clock reads
LEVELS = ("packet", "bulk", "views", "aio")


@dataclass
class Meter:
    """Warm-up then a measured window, started by the first packet."""

    warmup: float
    window: float
    packets: int = 0
    bursts: int = 0
    first: float | None = None
    start: tuple[float, int, int] | None = None
    end: tuple[float, int, int] | None = None
    partial: bool = False
    stats: dict[str, float] = field(default_factory=dict)

    def tick(self, now: float) -> bool:
        """Advance the state machine; True once the window has ended."""
        if self.end is not None:
            return True
        if self.first is None:
            if self.packets:
                self.first = now
            return False
        if self.start is None:
            if now - self.first >= self.warmup:
                self.start = (now, self.packets, self.bursts)
            return False
        if now - self.start[0] >= self.window:
            self.end = (now, self.packets, self.bursts)
            return True
        return False

    def stats_fields(self) -> dict[str, str]:
        return {k: f"{v:.1f}" for k, v in self.stats.items()}

    def line(self, kind: str, size: int) -> str:
        """The result as ``key=value`` pairs (the window, or all packets when cut short)."""
        if self.start is None or self.end is None:
            now = time.perf_counter()
            begin = self.first if self.first is not None else now
            self.start, self.end, self.partial = (begin, 0, 0), (now, self.packets,
                                                                 self.bursts), True
        sec = self.end[0] - self.start[0]
        packets = self.end[1] - self.start[1]
        bursts = self.end[2] - self.start[2]
        pps = packets / sec if sec > 0 else 0.0
        fields = {
            "kind": kind + ("-partial" if self.partial else ""),
            "pps": f"{pps:.0f}", "mpps": f"{pps / 1e6:.4f}",
            "gbps": f"{pps * size * 8 / 1e9:.4f}", "packets": str(packets),
            "seconds": f"{sec:.6f}", "bursts": str(bursts),
            "pkts_per_burst": f"{packets / bursts:.2f}" if bursts else "0",
            **self.stats_fields(),
        }
        return " ".join(f"{k}={v}" for k, v in fields.items())


def make_frame(size: int) -> bytes:
    """An Ethernet-like frame: broadcast, locally administered source, experimental type."""
    body = bytes((i * 7 + 3) & 0xFF for i in range(size))
    return (b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + body[14:])[:size]


def pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


class Stop:
    """Set by SIGTERM/SIGINT; checked by the loops between bursts."""

    def __init__(self) -> None:
        self.flag = False
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def _set(self, _sig: int, _frame: object) -> None:
        self.flag = True


# ------------------------------------------------------------------ synchronous


#: One burst of a level: ``call(arg)`` moves a burst and returns its packets.
#: The loop makes that call itself, as an application's loop would write
#: ``txq.send_batch(batch)``: a ``functools.partial`` in between would make
#: every burst enter the interpreter anew from C (about 300 instructions more
#: per call by callgrind).
Step = tuple[Callable[[Any], int], Any]


def _tx_step(level: str, txq: memif.TxQueue, size: int, burst: int) -> Step:
    frame = make_frame(size)
    if level == "packet":
        return txq.send_burst, [frame] * burst
    batch = memif.PacketBatch(burst, max(size, 64))
    batch.fill(frame)
    return txq.send_batch, batch


def _rx_step(level: str, rxq: memif.RxQueue, burst: int) -> Step:
    if level == "packet":
        recv_burst = rxq.recv_burst
        return (lambda n: len(recv_burst(n))), burst
    if level == "bulk":
        return rxq.recv_into, memif.PacketBatch(burst, 2048)
    views = rxq.views

    def zero_copy(n: int) -> int:
        with views(n) as packets:
            return len(packets)

    return zero_copy, burst


def alloc_probe(step: Step, bursts: int = 50, limit: float = 2.0) -> float | None:
    """Traced Python allocation peak per packet of one burst, in bytes.

    ``step`` is run untraced a few times (first calls allocate scratch), then
    under ``tracemalloc`` until ``bursts`` non-empty bursts or ``limit``
    seconds; the peak of traced memory above the start, divided by the
    largest burst, is what one burst holds per packet. It runs before the
    measured window (the meter starts with the first packet it counts).
    None when no packet moved.
    """
    call, arg = step
    for _ in range(3):
        call(arg)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        largest = done = 0
        end = time.perf_counter() + limit
        while done < bursts and time.perf_counter() < end:
            n = call(arg)
            if n:
                done += 1
                largest = max(largest, n)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return max(peak, 0) / largest if largest else None


def run_sync(args: argparse.Namespace, stop: Stop) -> str:
    role = memif.Role.MASTER if args.role == "master" else memif.Role.SLAVE
    meter = Meter(args.warmup, args.window)
    with memif.Context("bench-py") as ctx:
        intf = ctx.interface(ctx.socket(args.socket), role=role, name="bench-py",
                             ring_size=1 << args.ring_log2)
        intf.wait_connected(args.timeout)
        if args.direction == "rx":
            intf.rx[0].mode = memif.RxMode.POLLING
            step = _rx_step(args.level, intf.rx[0], args.burst)
        else:
            step = _tx_step(args.level, intf.tx[0], args.size, args.burst)
        probed = alloc_probe(step)
        if probed is not None:
            meter.stats["alloc_peak_bpp"] = probed
        now = time.perf_counter()
        deadline = now + args.duration
        next_ctl = now + CTL_PERIOD
        receiving = args.direction == "rx"
        call, arg = step
        try:
            while not stop.flag:
                # Counted in locals, CHECK_EVERY bursts at a time, so that the
                # loop adds as little as the C programs' loops do.
                packets = bursts = 0
                for _ in repeat(None, CHECK_EVERY):
                    n = call(arg)
                    if n:
                        packets += n
                        bursts += 1
                meter.packets += packets
                meter.bursts += bursts
                now = time.perf_counter()
                if meter.tick(now) and receiving:
                    break
                if now >= next_ctl:
                    ctx.poll(0)
                    next_ctl = now + CTL_PERIOD
                    if not intf.connected or now > deadline:
                        break
        except (memif.DisconnectedError, memif.ClosedError):
            pass
    return meter.line(f"py-{args.level}-{args.direction}", args.size)


# ------------------------------------------------------------------------ asyncio


async def run_aio(args: argparse.Namespace, stop: Stop) -> str:
    role = memif.Role.MASTER if args.role == "master" else memif.Role.SLAVE
    meter = Meter(args.warmup, args.window)
    async with aio.Context("bench-py") as ctx:
        intf = ctx.interface(ctx.socket(args.socket), role=role, name="bench-py",
                             ring_size=1 << args.ring_log2)
        await intf.wait_connected(args.timeout)
        deadline = time.perf_counter() + args.duration
        receiving = args.direction == "rx"
        rxq, txq = intf.rx[0], intf.tx[0]
        batch = memif.PacketBatch(args.burst, max(args.size, 64))
        batch.fill(make_frame(args.size))
        iterations = 0
        try:
            while not stop.flag:
                if receiving:
                    n = len(await asyncio.wait_for(rxq.recv_burst(args.burst), args.timeout))
                else:
                    n = await txq.send_batch(batch)
                meter.packets += n
                meter.bursts += 1
                iterations += 1
                if iterations % CHECK_EVERY:
                    continue
                now = time.perf_counter()
                if (meter.tick(now) and receiving) or now > deadline or not intf.connected:
                    break
        except (memif.DisconnectedError, memif.ClosedError, TimeoutError,
                asyncio.TimeoutError):
            pass
    return meter.line(f"py-{args.level}-{args.direction}", args.size)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.pyworker", description=__doc__)
    p.add_argument("level", choices=LEVELS)
    p.add_argument("direction", choices=("tx", "rx"))
    p.add_argument("socket")
    p.add_argument("--role", choices=("master", "slave"), default="slave")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--burst", type=int, default=32)
    p.add_argument("--warmup", type=float, default=0.3)
    p.add_argument("--window", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=60.0, help="give up after this long")
    p.add_argument("--timeout", type=float, default=10.0, help="connect timeout")
    p.add_argument("--ring-log2", type=int, default=10)
    p.add_argument("--cpu", type=int, default=None)
    args = p.parse_args(argv)
    if args.level == "views" and args.direction == "tx":
        p.error("views is a receive level")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pin(args.cpu)
    stop = Stop()
    line = asyncio.run(run_aio(args, stop)) if args.level == "aio" else run_sync(args, stop)
    print(line, flush=True)
    return 1 if args.direction == "rx" and "-partial" in line else 0


if __name__ == "__main__":
    sys.exit(main())
