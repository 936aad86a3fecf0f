#!/usr/bin/env python3
"""Traffic generator: sends pings over memif and reports what came back.

Connects (slave by default), learns the responder's MAC address with ARP in
Ethernet mode (unless --dst-mac is given), then sends --count ICMP echo
requests to --dst-ip in bursts of --burst, --interval seconds apart (0: as
fast as the rings allow, keeping at most half a ring in flight). Every reply
is checked: IP and ICMP checksums, identifier, sequence number and payload.
At the end it prints the replies received, the loss, the request and reply
rates and the round-trip times. It also answers ARP requests and pings for
its own address, so a peer such as VPP can resolve it.

    python examples/icmp_responder.py --role master --socket @pingme &
    python examples/test_app.py --socket @pingme --count 10000

Exit status: 0 when at least one valid reply came back, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import struct
import time
from collections import OrderedDict

import _common
from _common import say

import memif_cffi as memif
from memif_cffi import packets

PROG = "test_app"
STAMP = struct.Struct("!QQ")  # request number, send time in ns: the start of every payload
PATTERN = bytes(range(256)) * 257
ARP_TRIES = 3
ARP_WAIT = 1.0  # seconds per try


def payload_for(number: int, size: int, sent_ns: int) -> bytes:
    """The payload of request ``number``: number, send time, then a pattern."""
    start = number % 256
    return STAMP.pack(number, sent_ns) + PATTERN[start : start + size - STAMP.size]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = _common.make_parser(__doc__)
    group = parser.add_argument_group("traffic")
    group.add_argument("--ip", default=packets.DEFAULT_PEER_IP,
                       help=f"our IPv4 address (default {packets.DEFAULT_PEER_IP})")
    group.add_argument("--mac", default=packets.DEFAULT_PEER_MAC,
                       help=f"our MAC address (default {packets.DEFAULT_PEER_MAC})")
    group.add_argument("--dst-ip", default=packets.DEFAULT_IP,
                       help=f"address to ping (default {packets.DEFAULT_IP})")
    group.add_argument("--dst-mac", default=None,
                       help="the responder's MAC address: skips ARP (Ethernet mode)")
    group.add_argument("--count", type=int, default=100, metavar="N",
                       help="requests to send (default 100; 0: until Ctrl+C)")
    group.add_argument("--size", type=int, default=56,
                       help=f"ICMP payload bytes, at least {STAMP.size} (default 56)")
    group.add_argument("--burst", type=_common.positive, default=32,
                       help="requests per burst (default 32)")
    group.add_argument("--interval", type=_common.not_negative, default=0.0,
                       metavar="SECONDS", help="time between bursts (default 0: flat out)")
    group.add_argument("--timeout", type=float, default=1.0, metavar="SECONDS",
                       help="a request unanswered this long is lost; also how long to wait "
                            "for the last replies (default 1)")
    group.add_argument("--connect-timeout", type=_common.not_negative, default=0.0,
                       metavar="SECONDS", help="give up if not connected by then "
                                               "(default 0: wait until Ctrl+C)")
    args = parser.parse_args(argv)
    if not STAMP.size <= args.size <= 65000:
        parser.error(f"--size must be in {STAMP.size}..65000, not {args.size}")
    if args.count < 0:
        parser.error("--count must be 0 or more")
    if not args.timeout > 0:
        parser.error("--timeout must be more than 0")
    try:
        for option in ("ip", "dst_ip"):
            packets.ip_bytes(getattr(args, option))
        for option in ("mac", "dst_mac"):
            if getattr(args, option) is not None:
                packets.mac_bytes(getattr(args, option))
    except ValueError as exc:
        parser.error(str(exc))
    return args


class Generator:
    """Builds the requests and checks the replies."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ip_mode = args.mode == "ip"
        self.ident = os.getpid() & 0xFFFF
        self.dst_mac: str | None = args.dst_mac
        self.local = packets.Responder(args.ip, args.mac, ip_mode=self.ip_mode)
        self.sent = 0
        self.received = 0
        self.duplicates = 0
        self.bad = 0
        self.other = 0
        self.tx_dropped = 0
        # Requests waiting for their reply (number -> send time), oldest first; one
        # unanswered for --timeout seconds is given up on (lost), so memory stays bounded.
        self.waiting: OrderedDict[int, float] = OrderedDict()
        self.rtt_min = float("inf")
        self.rtt_max = self.rtt_sum = 0.0
        self.first_sent = self.last_sent = self.last_reply = 0.0

    # -- sending ---------------------------------------------------------------------

    def requests(self, count: int) -> list[bytes]:
        """The next ``count`` echo requests."""
        now_ns = time.monotonic_ns()
        return [
            packets.echo_request(
                src_ip=self.args.ip, dst_ip=self.args.dst_ip, ident=self.ident,
                seq=number & 0xFFFF, payload=payload_for(number, self.args.size, now_ns),
                src_mac=self.args.mac, dst_mac=self.dst_mac or packets.BROADCAST_MAC,
                ip_mode=self.ip_mode,
            )
            for number in range(self.sent, self.sent + count)
        ]

    def sent_some(self, count: int) -> None:
        """Book ``count`` requests as sent."""
        now = time.monotonic()
        if self.sent == 0:
            self.first_sent = now
        self.last_sent = now
        for number in range(self.sent, self.sent + count):
            self.waiting[number] = now
        self.sent += count

    def in_flight(self, now: float) -> int:
        """Requests still waiting for a reply (forgetting those older than --timeout)."""
        limit = now - self.args.timeout
        while self.waiting and next(iter(self.waiting.values())) < limit:
            self.waiting.popitem(last=False)
        return len(self.waiting)

    # -- receiving -------------------------------------------------------------------

    def on_interrupt(self, intf: memif.Interface, qid: int) -> None:
        """Take everything that arrived on rx queue ``qid``."""
        answers = []
        for frame in intf.rx[qid].recv_burst(256):
            answer = self.take(frame)
            if answer is not None:
                answers.append(answer)
        if answers:
            self.tx_dropped += len(answers) - intf.tx[0].send_burst(answers)

    def take(self, frame: bytes) -> bytes | None:
        """Account for one received frame; returns a frame to send back, if any."""
        reply = packets.parse_echo_reply(frame, ip_mode=self.ip_mode)
        if reply is None:
            if not self.ip_mode and self.dst_mac is None:
                learned = packets.parse_arp_reply(frame)
                if learned is not None and learned[0] == self.args.dst_ip:
                    self.dst_mac = learned[1]
                    return None
            answer = self.local.reply(frame)  # somebody resolving or pinging us
            if answer is None:
                self.other += 1
            return answer
        if reply.ident != self.ident or reply.src_ip != self.args.dst_ip:
            self.other += 1
            return None
        if len(reply.payload) != self.args.size:
            self.bad += 1
            return None
        number, sent_ns = STAMP.unpack_from(reply.payload)
        if (number >= self.sent or reply.seq != number & 0xFFFF
                or reply.payload != payload_for(number, self.args.size, sent_ns)):
            self.bad += 1
            return None
        if self.waiting.pop(number, None) is None:
            self.duplicates += 1  # answered already, or given up on
            return None
        self.received += 1
        self.last_reply = time.monotonic()
        rtt = (time.monotonic_ns() - sent_ns) / 1e6
        self.rtt_min = min(self.rtt_min, rtt)
        self.rtt_max = max(self.rtt_max, rtt)
        self.rtt_sum += rtt
        return None

    # -- report ----------------------------------------------------------------------

    def report(self) -> list[str]:
        """The summary lines."""
        loss = 100.0 * (self.sent - self.received) / self.sent if self.sent else 0.0

        def rate(count: int, end: float) -> str:
            span = end - self.first_sent
            return f"{count / span:,.0f}" if count and span > 0 else "-"

        lines = [
            f"sent {self.sent} requests, received {self.received} replies, {loss:.1f}% loss",
            f"rates: {rate(self.sent, self.last_sent)} requests/s, "
            f"{rate(self.received, self.last_reply)} replies/s",
        ]
        if self.received:
            avg = self.rtt_sum / self.received
            lines.append(f"rtt min/avg/max = {self.rtt_min:.3f}/{avg:.3f}/{self.rtt_max:.3f} ms")
        lines.append(f"duplicate or late replies {self.duplicates}, bad replies {self.bad}, "
                     f"other frames {self.other}, tx ring full {self.tx_dropped}")
        return lines


def wait_connected(ctx: memif.Context, intf: memif.Interface, args: argparse.Namespace,
                   stop: _common.Stopper) -> bool:
    """Poll until connected; False if stopped first. Raises on --connect-timeout."""
    deadline = time.monotonic() + args.connect_timeout if args.connect_timeout else None
    watch = _common.ConnectionWatch(PROG, intf)
    while not intf.connected:
        watch.check()
        if stop.is_set():
            return False
        if deadline is not None and time.monotonic() > deadline:
            raise _common.ExampleError(f"not connected after {args.connect_timeout} s: "
                                       f"{intf.details.error or 'no answer from the peer'}")
        ctx.poll(0.1)
    return True


def resolve(ctx: memif.Context, intf: memif.Interface, gen: Generator,
            stop: _common.Stopper) -> bool:
    """Learn the responder's MAC address with ARP; False if stopped first."""
    request = packets.arp_request(src_mac=gen.args.mac, src_ip=gen.args.ip,
                                  dst_ip=gen.args.dst_ip)
    for _ in range(ARP_TRIES):
        sent = False
        deadline = time.monotonic() + ARP_WAIT
        while gen.dst_mac is None and time.monotonic() < deadline:
            if stop.is_set():
                return False
            # Right after connecting, a master may find no free buffer yet: retry.
            sent = sent or intf.tx[0].send(request)
            ctx.poll(0.05 if sent else 0.005)
        if gen.dst_mac is not None:
            say(PROG, f"{gen.args.dst_ip} is at {gen.dst_mac}")
            return True
    raise _common.ExampleError(f"no ARP reply from {gen.args.dst_ip}")


def send_all(ctx: memif.Context, intf: memif.Interface, gen: Generator,
             stop: _common.Stopper) -> None:
    """Send the requests, then wait up to --timeout for the last replies."""
    args = gen.args
    window = max(1, args.ring_size // 2)
    next_burst = time.monotonic()
    qid = 0
    while not stop.is_set() and intf.connected:
        now = time.monotonic()
        if args.count and gen.sent >= args.count:
            if gen.in_flight(now) == 0 or now - gen.last_sent >= args.timeout:
                return
            ctx.poll(min(0.05, args.timeout))
            continue
        if now < next_burst:
            ctx.poll(next_burst - now)
            continue
        todo = args.burst if not args.count else min(args.burst, args.count - gen.sent)
        todo = min(todo, window - gen.in_flight(now))
        if todo <= 0:
            ctx.poll(0.01)  # window full: wait for replies
            continue
        txq = intf.tx[qid % len(intf.tx)]
        sent = txq.send_burst(gen.requests(todo))
        gen.sent_some(sent)
        if sent == todo:
            qid += 1
            next_burst = next_burst + args.interval if args.interval else now
            ctx.poll(0)
        else:
            ctx.poll(0.001)  # the ring is full: give the peer a moment


def main(argv: list[str] | None = None) -> int:
    """Connect, ping, report."""
    args = parse_args(argv)
    stop = _common.Stopper()
    gen = Generator(args)

    def on_connect(intf: memif.Interface) -> None:
        say(PROG, f"connected to {_common.describe_peer(intf)}")

    def on_disconnect(intf: memif.Interface) -> None:
        say(PROG, "disconnected")

    with memif.Context(PROG) as ctx:
        intf = _common.open_interface(ctx, args, name="memif0", on_connect=on_connect,
                                      on_disconnect=on_disconnect, on_interrupt=gen.on_interrupt)
        say(PROG, f"{args.role} on {args.socket}; waiting for the peer (Ctrl+C to stop)")
        if (wait_connected(ctx, intf, args, stop)
                and (gen.ip_mode or gen.dst_mac is not None or resolve(ctx, intf, gen, stop))):
            say(PROG, f"pinging {args.dst_ip} from {args.ip}: "
                      f"{args.count or 'unlimited'} requests of {args.size} bytes")
            send_all(ctx, intf, gen, stop)
    for line in gen.report():
        say(PROG, line)
    return 0 if gen.received else 1


if __name__ == "__main__":
    _common.run(PROG, main)
