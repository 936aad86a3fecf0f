"""``memif ping``: ICMP echo requests over memif, replies and a summary printed like ping(8)."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from memif_cffi import packets
from memif_cffi.batch import MAX_PACKET
from memif_cffi.cli.common import (
    IPV4_HEADER,
    POLL_STEP,
    CliError,
    Commands,
    Session,
    add_command,
    add_interface_options,
    float_type,
    int_type,
    ipv4,
    mac,
    say,
    send_all,
)
from memif_cffi.interface import Interface
from memif_cffi.packets import ETH_HEADER, ICMP_HEADER

__all__ = ["cmd_ping", "register"]


def register(commands: Commands) -> None:
    """Add the ``ping`` subcommand."""
    p = add_command(
        commands, "ping", "send ICMP echo requests and print the replies, like ping(8)",
        "Send ICMP echo requests over the interface and print each reply and a summary "
        "like ping(8). In ethernet mode the peer's MAC address is first resolved with ARP "
        "(unless --dst-mac is given). ARP and echo requests for --src-ip are answered. "
        "Exit status 0 when at least one reply arrived, 1 otherwise.")
    add_interface_options(p, "ping", "seconds to wait for the connection (default 5)")
    p.add_argument("--dst", type=ipv4, default="192.168.1.2", metavar="IP",
                   help="address to ping (default 192.168.1.2)")
    p.add_argument("--src-ip", type=ipv4, default="192.168.1.1", metavar="IP",
                   help="our address (default 192.168.1.1)")
    p.add_argument("--src-mac", type=mac, default="02:fe:00:00:00:01", metavar="MAC",
                   help="our MAC address (default 02:fe:00:00:00:01)")
    p.add_argument("--dst-mac", type=mac, default=None, metavar="MAC",
                   help="the peer's MAC address (default: ask with ARP)")
    p.add_argument("-c", "--count", type=int_type(0, 2**31, "the count"), default=4, metavar="N",
                   help="requests to send (default 4; 0: until Ctrl+C)")
    p.add_argument("-i", "--interval", type=float_type(0, "the interval"), default=1.0,
                   metavar="SECONDS", help="seconds between requests (default 1)")
    p.add_argument("-s", "--size", type=int_type(0, MAX_PACKET, "the size"), default=56,
                   metavar="BYTES", help="ICMP payload bytes (default 56)")
    p.add_argument("-W", "--wait", type=float_type(0, "the wait", inclusive=False),
                   default=1.0, metavar="SECONDS",
                   help="seconds to wait for each reply (default 1)")
    p.set_defaults(func=cmd_ping)


@dataclasses.dataclass
class _PingStats:
    """Requests sent, replies received and their round-trip times (seconds)."""

    transmitted: int = 0
    received: int = 0
    rtts: list[float] = dataclasses.field(default_factory=list)

    def summary(self, dst: str, elapsed: float) -> list[str]:
        """The closing lines of ping(8): counts, loss, and rtt min/avg/max/mdev."""
        lines = [f"--- {dst} memif ping statistics ---"]
        loss = 0.0
        if self.transmitted:
            loss = 100.0 * (self.transmitted - self.received) / self.transmitted
        lines.append(f"{self.transmitted} packets transmitted, {self.received} received, "
                     f"{loss:g}% packet loss, time {elapsed * 1000:.0f}ms")
        if self.rtts:
            ms = [r * 1000 for r in self.rtts]
            mean = sum(ms) / len(ms)
            mdev = math.sqrt(max(0.0, sum(x * x for x in ms) / len(ms) - mean * mean))
            lines.append(f"rtt min/avg/max/mdev = {min(ms):.3f}/{mean:.3f}/{max(ms):.3f}/"
                         f"{mdev:.3f} ms")
        return lines


class _Pinger:
    """ICMP echo over one interface; answers ARP and pings for its own address."""

    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.ip_mode = opts.mode == "ip"
        self.ident = os.getpid() & 0xFFFF
        self.inbox: deque[tuple[float, int, bytes]] = deque()
        self.own = packets.Responder(opts.src_ip, opts.src_mac, ip_mode=self.ip_mode)
        self.session = Session(opts, "ping", on_interrupt=self._collect)
        self.dst_mac: str | None = opts.dst_mac
        self.sent_at: dict[int, float] = {}
        self.answered: set[int] = set()
        self.payloads: dict[int, bytes] = {}
        self.stats = _PingStats()
        self.sent_mono = 0.0

    def _collect(self, intf: Interface, qid: int) -> None:
        frames = intf.rx[qid].recv_burst(256)
        now = time.perf_counter()
        self.inbox.extend((now, qid, f) for f in frames)

    def _sweep(self) -> None:
        """Receive what the peer queued without signalling us."""
        intf = self.session.intf
        if intf.connected:
            for rxq in intf.rx:
                self._collect(intf, rxq.qid)

    def pump(self, until: float, done: Callable[[], bool] = lambda: False) -> None:
        """Handle events and incoming frames until ``until`` (monotonic) or ``done()``."""
        while True:
            self._process()
            if done():
                return
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            self.session.poll(min(POLL_STEP, remaining))
            self._sweep()

    def _process(self) -> None:
        intf = self.session.intf
        while self.inbox:
            when, qid, frame = self.inbox.popleft()
            if not self.ip_mode and self.dst_mac is None:
                arp = packets.parse_arp_reply(frame)
                if arp is not None and arp[0] == self.opts.dst:
                    self.dst_mac = arp[1]
                    continue
            reply = packets.parse_echo_reply(frame, ip_mode=self.ip_mode)
            if reply is not None and reply.ident == self.ident and reply.src_ip == self.opts.dst:
                self._on_reply(when, reply)
                continue
            answer = self.own.reply(frame)
            if answer is not None and intf.connected:
                send_all(intf, qid, [answer])

    def _on_reply(self, when: float, reply: packets.EchoReply) -> None:
        seq = reply.seq
        sent = self.sent_at.get(seq)
        if sent is None or seq in self.answered:
            return
        self.answered.add(seq)
        rtt = when - sent
        self.stats.received += 1
        self.stats.rtts.append(rtt)
        note = "" if reply.payload == self.payloads.pop(seq, b"") else " (wrong data)"
        say(f"{ICMP_HEADER + len(reply.payload)} bytes from {reply.src_ip}: icmp_seq={seq} "
            f"ttl={reply.ttl} time={rtt * 1000:.3f} ms{note}")

    def resolve(self) -> None:
        """Ask for the peer's MAC address with ARP (three tries of --wait seconds)."""
        opts = self.opts
        request = packets.arp_request(src_mac=opts.src_mac, src_ip=opts.src_ip, dst_ip=opts.dst)
        for _ in range(3):
            self._transmit(request)
            self.pump(time.monotonic() + opts.wait, lambda: self.dst_mac is not None)
            if self.dst_mac is not None:
                return
        raise CliError(f"no ARP reply for {opts.dst} from the peer")

    def _transmit(self, frame: bytes) -> None:
        intf = self.session.intf
        if not intf.connected:
            raise CliError("the peer disconnected")
        if send_all(intf, 0, [frame], patience=self.opts.wait):
            raise CliError("cannot send: the tx ring stays full")

    def run(self) -> int:
        """Ping until --count requests or Ctrl+C; the exit status (0: a reply arrived)."""
        opts = self.opts
        with self.session:
            self.session.wait_connected(5.0 if opts.timeout is None else opts.timeout)
            ip_size = opts.size + IPV4_HEADER + ICMP_HEADER
            say(f"PING {opts.dst} ({opts.dst}) {opts.size}({ip_size}) bytes of data "
                f"over memif {self.session.path}")
            start = time.monotonic()
            try:
                if not self.ip_mode and self.dst_mac is None:
                    self.resolve()
                sent = 0
                while not opts.count or sent < opts.count:
                    sent += 1
                    seq = sent & 0xFFFF
                    self.sent_mono = time.monotonic()
                    if not self.session.intf.connected:
                        # Like ping(8) on a network that went away: say so, keep going
                        # (a slave reconnects by itself).
                        say(f"icmp_seq={seq} not sent: the link is down")
                    else:
                        self._send_request(seq)
                        self.pump(time.monotonic() + opts.wait, self._answered(seq))
                        if seq not in self.answered:
                            say(f"no reply for icmp_seq={seq} within {opts.wait:g} s")
                    if not opts.count or sent < opts.count:
                        self.pump(self.sent_mono + opts.interval)
            except KeyboardInterrupt:
                pass
            for line in self.stats.summary(opts.dst, time.monotonic() - start):
                say(line)
        return 0 if self.stats.received else 1

    def _answered(self, seq: int) -> Callable[[], bool]:
        return lambda: seq in self.answered

    def _send_request(self, seq: int) -> None:
        opts = self.opts
        payload = bytes((seq + i) & 0xFF for i in range(opts.size))
        kwargs: dict[str, Any] = {}
        if not self.ip_mode:
            kwargs = {"src_mac": opts.src_mac, "dst_mac": self.dst_mac}
        frame = packets.echo_request(src_ip=opts.src_ip, dst_ip=opts.dst, ident=self.ident,
                                     seq=seq, payload=payload, ip_mode=self.ip_mode, **kwargs)
        self.payloads[seq] = payload
        self.sent_at[seq] = time.perf_counter()
        self.answered.discard(seq)
        self._transmit(frame)
        self.stats.transmitted += 1


def cmd_ping(opts: argparse.Namespace) -> int:
    """``memif ping``: ICMP echo over memif."""
    overhead = IPV4_HEADER + ICMP_HEADER + (0 if opts.mode == "ip" else ETH_HEADER)
    if opts.size + overhead > MAX_PACKET:
        raise CliError(f"--size {opts.size} makes frames of {opts.size + overhead} bytes; "
                       f"the limit is {MAX_PACKET}", status=2)
    return _Pinger(opts).run()
