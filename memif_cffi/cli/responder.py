"""``memif responder``: answer ARP requests and ICMP echo requests on every queue."""

from __future__ import annotations

import argparse
import math
import time

from memif_cffi import packets
from memif_cffi.cli.common import (
    POLL_STEP,
    Commands,
    Session,
    add_command,
    add_interface_options,
    float_type,
    int_type,
    ipv4,
    link_down_reason,
    mac,
    queue_text,
    say,
    send_all,
)
from memif_cffi.interface import Interface

__all__ = ["cmd_responder", "register"]


def register(commands: Commands) -> None:
    """Add the ``responder`` subcommand."""
    p = add_command(
        commands, "responder", "answer ARP and ICMP echo requests (ping) on every queue",
        "Answer ARP requests and ICMP echo requests for --ip on every queue of the "
        "interface, until Ctrl+C, --count echo replies or --duration seconds. A status "
        "line is printed on each connect and disconnect, the counters at exit.")
    add_interface_options(p, "responder",
                          "give up when not connected within SECONDS (default: wait)")
    p.add_argument("--ip", type=ipv4, default="192.168.1.2", metavar="IP",
                   help="address to answer for (default 192.168.1.2)")
    p.add_argument("--mac", type=mac, default="02:fe:00:00:00:02", metavar="MAC",
                   help="MAC address to answer with (default 02:fe:00:00:00:02)")
    p.add_argument("-c", "--count", type=int_type(0, 2**63, "the count"), default=0, metavar="N",
                   help="exit after this many ICMP echo replies (default 0: no limit)")
    p.add_argument("--duration", type=float_type(0, "the duration"), default=0,
                   metavar="SECONDS", help="exit after SECONDS (default 0: no limit)")
    p.set_defaults(func=cmd_responder)


def cmd_responder(opts: argparse.Namespace) -> int:
    """``memif responder``: answer ARP and ICMP echo requests."""
    ip_mode = opts.mode == "ip"
    responder = packets.Responder(opts.ip, opts.mac, ip_mode=ip_mode)
    unsent = 0

    def on_connect(intf: Interface) -> None:
        say(f"connected: {session.peer_text()}, {queue_text(intf)}")

    def on_disconnect(intf: Interface) -> None:
        say(f"disconnected{link_down_reason(intf)}")

    def serve(intf: Interface, qid: int) -> None:
        nonlocal unsent
        replies: list[bytes] = []
        for frame in intf.rx[qid].recv_burst(256):
            reply = responder.reply(frame)
            if reply is not None:
                replies.append(reply)
        unsent += send_all(intf, qid, replies)

    session = Session(opts, "responder", on_connect=on_connect, on_disconnect=on_disconnect,
                      on_interrupt=serve)
    with session:
        what = f"{opts.ip}" if ip_mode else f"{opts.ip} at {opts.mac}"
        say(f"{session.describe()}, answering for {what} ({opts.mode} mode)")
        start = time.monotonic()
        try:
            if opts.timeout is not None:
                session.wait_connected(opts.timeout)
            end = start + opts.duration if opts.duration else math.inf
            while not (opts.count and responder.icmp_replies >= opts.count):
                now = time.monotonic()
                if now >= end:
                    break
                session.poll(min(POLL_STEP, end - now))
        except KeyboardInterrupt:
            pass
        counters = session.intf.counters
        say(f"echo replies {responder.icmp_replies}, ARP replies {responder.arp_replies}, "
            f"ignored {responder.ignored}, not sent (ring full) {unsent}; "
            f"frames rx {counters.rx_packets} tx {counters.tx_packets} "
            f"in {time.monotonic() - start:.1f} s")
    return 0
