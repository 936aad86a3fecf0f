#!/usr/bin/env python3
"""Loopback: a master and a slave interface in one process, frames out and back.

Two Contexts (as two applications would have) connect over one socket. The
slave sends --count numbered frames, the master sends every frame it receives
straight back, and the slave checks that each one returns exactly once and
unchanged. Both sides poll their rings (RxMode.POLLING); frames are spread
over the queues. Prints the rate at the end.

    python examples/loopback.py --count 100000 --size 64
    python examples/loopback.py --size 9000 --queues 2      # chained buffers
"""

from __future__ import annotations

import argparse
import os
import struct
import time

import _common
from _common import say

import memif_cffi as memif

PROG = "loopback"
CONNECT_TIMEOUT = 5.0  # seconds
STALL_TIMEOUT = 5.0  # seconds without any frame coming back
SEQ = struct.Struct("!Q")
PATTERN = bytes(range(256)) * 257  # the payload after the sequence number


def frame_for(seq: int, size: int) -> bytes:
    """Frame number ``seq``: its number, then a pattern that depends on it."""
    start = seq % 256
    return SEQ.pack(seq) + PATTERN[start : start + size - SEQ.size]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = _common.make_parser(__doc__, role=False,
                                 socket=f"@memif-loopback-{os.getpid()}")
    group = parser.add_argument_group("traffic")
    group.add_argument("--count", type=_common.positive, default=10_000,
                       help="frames to send (default 10000)")
    group.add_argument("--size", type=int, default=64,
                       help=f"bytes per frame, {SEQ.size}..65535 (default 64)")
    group.add_argument("--burst", type=_common.positive, default=64,
                       help="frames per send call (default 64)")
    args = parser.parse_args(argv)
    if not SEQ.size <= args.size <= memif.MAX_PACKET:
        parser.error(f"--size must be in {SEQ.size}..{memif.MAX_PACKET}, not {args.size}")
    return args


class Loopback:
    """The slave sends and checks, the master echoes."""

    def __init__(self, args: argparse.Namespace, master: memif.Interface,
                 slave: memif.Interface) -> None:
        self.args = args
        self.master = master
        self.slave = slave
        self.next_seq = 0
        self.seen = bytearray(args.count)  # 1 once frame n came back
        self.returned = 0
        self.pending: list[list[bytes]] = [[] for _ in master.tx]  # echoes waiting for room

    def send(self, qid: int) -> None:
        """The slave sends the next burst on its tx queue ``qid``."""
        args = self.args
        # Keep at most half a ring in flight, so the echo never finds a full ring.
        in_flight = self.next_seq - self.returned
        room = min(args.burst, args.count - self.next_seq, args.ring_size // 2 - in_flight)
        if room <= 0:
            return
        frames = [frame_for(seq, args.size) for seq in range(self.next_seq, self.next_seq + room)]
        self.next_seq += self.slave.tx[qid].send_burst(frames)

    def echo(self, qid: int) -> None:
        """The master sends back whatever came in on its rx queue ``qid``."""
        pending = self.pending[qid]
        pending += self.master.rx[qid].recv_burst(self.args.burst)
        if pending:
            del pending[: self.master.tx[qid].send_burst(pending)]

    def check(self, qid: int) -> None:
        """The slave checks what came back on its rx queue ``qid``."""
        for frame in self.slave.rx[qid].recv_burst(self.args.burst):
            seq = SEQ.unpack_from(frame)[0] if len(frame) >= SEQ.size else -1
            if not 0 <= seq < self.args.count or self.seen[seq]:
                raise _common.ExampleError(f"unexpected frame came back: {frame[:16].hex()}...")
            if frame != frame_for(seq, self.args.size):
                raise _common.ExampleError(f"frame {seq} came back changed")
            self.seen[seq] = 1
            self.returned += 1


def main(argv: list[str] | None = None) -> int:
    """Connect, send --count frames around the loop, verify them, print the rate."""
    args = parse_args(argv)
    stop = _common.Stopper()
    with memif.Context("loopback-master") as mctx, memif.Context("loopback-slave") as sctx:
        master = _common.open_interface(mctx, args, name="master", role=memif.Role.MASTER)
        slave = _common.open_interface(sctx, args, name="slave", role=memif.Role.SLAVE)
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while not (master.connected and slave.connected):
            if stop.is_set():
                return 0
            if time.monotonic() > deadline:
                raise _common.ExampleError(f"no connection after {CONNECT_TIMEOUT} s: "
                                           f"{slave.details.error or master.details.error}")
            mctx.poll(0.01)
            sctx.poll(0.01)
        for intf in (master, slave):
            for rxq in intf.rx:
                rxq.mode = memif.RxMode.POLLING
        queues = min(len(slave.tx), len(master.tx))
        plural = "s" if queues != 1 else ""
        say(PROG, f"connected over {args.socket} ({queues} queue{plural}), "
                  f"sending {args.count} frames of {args.size} bytes")

        loop = Loopback(args, master, slave)
        start = last_progress = time.monotonic()
        rounds = 0
        while loop.returned < args.count and not stop.is_set():
            before = loop.returned
            for qid in range(queues):
                loop.send(qid)
                loop.echo(qid)
                loop.check(qid)
            now = time.monotonic()
            if loop.returned != before:
                last_progress = now
            elif now - last_progress > STALL_TIMEOUT:
                raise _common.ExampleError(f"stalled: {loop.returned} of {args.count} frames "
                                           "came back")
            rounds += 1
            if rounds % 64 == 0:  # the control channel needs a turn too
                mctx.poll(0)
                sctx.poll(0)
        elapsed = time.monotonic() - start
    rate = loop.returned / elapsed if elapsed > 0 else float("inf")
    verdict = "all verified" if loop.returned == args.count else "interrupted"
    say(PROG, f"{loop.returned} of {args.count} frames came back ({verdict}) in {elapsed:.3f} s: "
              f"{rate:,.0f} frames/s each way, {rate * args.size * 8 / 1e6:,.1f} Mbit/s")
    return 0


if __name__ == "__main__":
    _common.run(PROG, main)
