"""``memif capture``: the frames the peer sends, written to a pcap file."""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import BinaryIO

from memif_cffi import pcap
from memif_cffi.cli.common import (
    POLL_STEP,
    Commands,
    Session,
    add_command,
    add_interface_options,
    float_type,
    int_type,
    link_down_reason,
    queue_text,
    say,
)
from memif_cffi.interface import Interface

__all__ = ["cmd_capture", "register"]


def register(commands: Commands) -> None:
    """Add the ``capture`` subcommand."""
    p = add_command(
        commands, "capture", "write the frames the peer sends to a pcap file",
        "Receive frames on every queue and write them to a classic pcap file that "
        "tcpdump, tshark and Wireshark read (link type ETHERNET in ethernet mode, RAW IP "
        "in ip mode). Stops at Ctrl+C, after --count frames or --duration seconds.")
    add_interface_options(p, "capture",
                          "give up when not connected within SECONDS (default: wait)")
    p.add_argument("-w", "--write", required=True, metavar="FILE",
                   help='pcap file to write ("-": standard output)')
    p.add_argument("-c", "--count", type=int_type(0, 2**63, "the count"), default=0, metavar="N",
                   help="stop after this many frames (default 0: no limit)")
    p.add_argument("--duration", type=float_type(0, "the duration"), default=0,
                   metavar="SECONDS", help="stop after SECONDS (default 0: no limit)")
    p.add_argument("--snaplen", type=int_type(1, pcap.MAX_SNAPLEN, "the snaplen"),
                   default=65535, metavar="BYTES",
                   help="keep at most this many bytes of each frame (default 65535)")
    p.add_argument("--nanosecond", action="store_true",
                   help="nanosecond timestamps (pcap magic 0xa1b23c4d) instead of microseconds")
    p.set_defaults(func=cmd_capture)


def cmd_capture(opts: argparse.Namespace) -> int:
    """``memif capture``: received frames to a pcap file."""
    linktype = pcap.LINKTYPE_RAW if opts.mode == "ip" else pcap.LINKTYPE_ETHERNET
    to_stdout = opts.write == "-"
    out: BinaryIO = sys.stdout.buffer if to_stdout else open(opts.write, "wb")  # noqa: SIM115
    writer = pcap.PcapWriter(out, linktype, snaplen=opts.snaplen, nanosecond=opts.nanosecond)
    captured = 0
    done = False

    def collect(intf: Interface, qid: int) -> None:
        nonlocal captured, done
        frames = intf.rx[qid].recv_burst(256)
        stamp = time.time_ns()
        for frame in frames:
            if opts.count and captured >= opts.count:
                done = True
                break
            writer.write(frame, stamp)
            captured += 1
        if opts.count and captured >= opts.count:
            done = True

    def on_connect(intf: Interface) -> None:
        say(f"connected: {session.peer_text()}, {queue_text(intf)}", sys.stderr)

    def on_disconnect(intf: Interface) -> None:
        say(f"disconnected{link_down_reason(intf)}", sys.stderr)

    start = time.monotonic()
    try:
        session = Session(opts, "capture", on_connect=on_connect, on_disconnect=on_disconnect,
                          on_interrupt=collect)
        with session:
            kind = "RAW IP" if linktype == pcap.LINKTYPE_RAW else "ETHERNET"
            say(f"{session.describe()}; writing {kind} frames to "
                f"{'standard output' if to_stdout else opts.write}", sys.stderr)
            try:
                if opts.timeout is not None:
                    session.wait_connected(opts.timeout)
                end = start + opts.duration if opts.duration else math.inf
                while not done:
                    now = time.monotonic()
                    if now >= end:
                        break
                    before = captured
                    session.poll(min(POLL_STEP, end - now))
                    if session.intf.connected and not done:
                        for rxq in session.intf.rx:
                            collect(session.intf, rxq.qid)
                    if captured != before:
                        writer.flush()
            except KeyboardInterrupt:
                pass
    finally:
        try:
            writer.flush()
        finally:
            if not to_stdout:
                out.close()
    say(f"{captured} frames captured", sys.stderr)
    return 0
