#!/usr/bin/env python3
"""Zero-copy ICMP responder (slave only): replies leave in the buffers the requests came in.

Packets are received as memoryviews straight into the shared memory
(RxQueue.views). Each ARP request or ping is rewritten in place into its
reply (same length), and the very same buffers are moved onto the transmit
queue (RxViews.forward, i.e. memif_buffer_enq_tx + memif_tx_burst): no byte
of a packet is copied. Only a slave can do this, because only the slave owns
the shared memory. A request larger than one buffer arrives chained and is
joined into a private copy; its reply is sent the ordinary way.

    python examples/icmp_responder_zero_copy.py        # slave on /run/vpp/memif.sock
"""

from __future__ import annotations

import argparse

import _common
from _common import say

import memif_cffi as memif
from memif_cffi.packets import Responder

PROG = "icmp_responder_zero_copy"
BURST = 256


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Responder]:
    """Command-line options (--role master is refused)."""
    parser = _common.make_parser(__doc__)
    _common.add_responder_options(parser)
    args = parser.parse_args(argv)
    if args.role != "slave":
        parser.error("zero-copy replies need --role slave: a master's buffers belong to its peer")
    return args, _common.make_responder(parser, args)


def main(argv: list[str] | None = None) -> int:
    """Run the responder until Ctrl+C (or --count / --duration)."""
    args, responder = parse_args(argv)
    stop = _common.Stopper(args.duration)
    stats = {"forwarded": 0, "copied": 0, "dropped": 0}

    def on_connect(intf: memif.Interface) -> None:
        say(PROG, f"connected to {_common.describe_peer(intf)}")

    def on_disconnect(intf: memif.Interface) -> None:
        say(PROG, "disconnected")

    def on_interrupt(intf: memif.Interface, qid: int) -> None:
        txq = intf.tx[qid if qid < len(intf.tx) else 0]
        block = intf.rx[qid].views(BURST)
        with block as views:
            in_place: list[int] = []
            copies: list[bytes] = []
            for i, view in enumerate(views):
                if responder.reply_in_place(view):
                    if i in block.copied:  # a joined chain: not in shared memory
                        copies.append(bytes(view))
                    else:
                        in_place.append(i)
            forwarded = block.forward(txq, in_place)
        # The replies forward() could not queue went back to the peer unsent.
        stats["forwarded"] += forwarded
        stats["dropped"] += len(in_place) - forwarded
        if copies:
            sent = txq.send_burst(copies)
            stats["copied"] += sent
            stats["dropped"] += len(copies) - sent
        if args.count and responder.icmp_replies >= args.count:
            stop.stop_soon(0.2)

    with memif.Context(PROG) as ctx:
        intf = _common.open_interface(ctx, args, name="memif0", on_connect=on_connect,
                                      on_disconnect=on_disconnect, on_interrupt=on_interrupt)
        say(PROG, f"slave on {args.socket}; waiting for the peer (Ctrl+C to stop)")
        watch = _common.ConnectionWatch(PROG, intf)
        while not stop.is_set():
            ctx.poll(stop.timeout(0.2))
            watch.check()
        received = intf.counters.rx_packets
    say(PROG, _common.summary(responder, received, stats["dropped"]))
    say(PROG, f"{stats['forwarded']} replies sent in the request's own buffer, "
              f"{stats['copied']} copied (chained requests)")
    return 0


if __name__ == "__main__":
    _common.run(PROG, main)
