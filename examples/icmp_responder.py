#!/usr/bin/env python3
"""ICMP responder: answers ARP requests and pings on a memif interface.

The library runs the event loop (Context.poll); packets are received in the
interface's on_interrupt callback, answered, and the replies go out on one
transmit queue, 0 unless given as the first argument:

    python examples/icmp_responder.py          # slave on /run/vpp/memif.sock
    python examples/icmp_responder.py 1        # replies on tx queue 1 (2 queues)

With VPP as the master (``create interface memif id 0 master``,
``set int state memif0 up``, ``set int ip address memif0 192.168.1.1/24``),
``ping 192.168.1.2`` in VPP is answered here. Ctrl+C stops it.
"""

from __future__ import annotations

import argparse

import _common
from _common import say

import memif_cffi as memif
from memif_cffi.packets import Responder

PROG = "icmp_responder"


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Responder]:
    """Options, with --queues defaulting to enough queues for the transmit queue id."""
    parser = _common.make_parser(__doc__, queues="TX_QUEUE + 1")
    parser.add_argument("tx_queue", nargs="?", type=int, default=0, metavar="TX_QUEUE",
                        help="transmit queue id for the replies (default 0)")
    _common.add_responder_options(parser)
    args = parser.parse_args(argv)
    if args.tx_queue < 0:
        parser.error(f"the transmit queue id must be 0 or more, not {args.tx_queue}")
    if args.queues is None:
        args.queues = args.tx_queue + 1
    if args.tx_queue >= args.queues:
        parser.error(f"transmit queue {args.tx_queue} needs --queues {args.tx_queue + 1} or more")
    return args, _common.make_responder(parser, args)


def main(argv: list[str] | None = None) -> int:
    """Run the responder until Ctrl+C (or --count / --duration)."""
    args, responder = parse_args(argv)
    stop = _common.Stopper(args.duration)
    dropped = 0

    def on_connect(intf: memif.Interface) -> None:
        say(PROG, f"connected to {_common.describe_peer(intf)}")
        if args.tx_queue >= len(intf.tx):
            say(PROG, f"the peer set up {len(intf.tx)} tx queues: replying on queue 0")

    def on_disconnect(intf: memif.Interface) -> None:
        say(PROG, "disconnected")

    def on_interrupt(intf: memif.Interface, qid: int) -> None:
        nonlocal dropped
        frames = intf.rx[qid].recv_burst(256)
        replies = [reply for reply in map(responder.reply, frames) if reply is not None]
        if replies:
            txq = intf.tx[args.tx_queue if args.tx_queue < len(intf.tx) else 0]
            dropped += len(replies) - txq.send_burst(replies)
        if args.count and responder.icmp_replies >= args.count:
            stop.stop_soon(0.2)

    with memif.Context(PROG) as ctx:
        intf = _common.open_interface(ctx, args, name="memif0", on_connect=on_connect,
                                      on_disconnect=on_disconnect, on_interrupt=on_interrupt)
        say(PROG, f"{args.role} on {args.socket}, replies on tx queue {args.tx_queue}; "
                  "waiting for the peer (Ctrl+C to stop)")
        watch = _common.ConnectionWatch(PROG, intf)
        while not stop.is_set():
            ctx.poll(stop.timeout(0.2))
            watch.check()
        received = intf.counters.rx_packets
    say(PROG, _common.summary(responder, received, dropped))
    return 0


if __name__ == "__main__":
    _common.run(PROG, main)
