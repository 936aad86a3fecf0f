#!/usr/bin/env python3
"""ICMP responder with the application's own epoll loop.

The Context is created with an fd-update callback (on_fd_update): the library
tells us which fds to watch (its reconnect timer, the listener, the control
connection, the rx queues' eventfds) and which to forget; this program keeps
them in its own select.epoll object and hands every ready fd back with
Context.handle_event(). Received packets reach on_interrupt as usual.

    python examples/icmp_responder_epoll.py                  # slave on /run/vpp/memif.sock
    python examples/icmp_responder_epoll.py --role master --socket @memif
"""

from __future__ import annotations

import argparse
import contextlib
import select

import _common
from _common import say

import memif_cffi as memif
from memif_cffi.packets import Responder

PROG = "icmp_responder_epoll"


class EpollLoop:
    """The application's event loop: an epoll set the library fills through on_fd_update."""

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.watched: set[int] = set()

    def on_fd_update(self, fd: int, events: memif.FdEvent) -> int:
        """The library's fd-update callback: watch, re-arm or forget ``fd``."""
        if events & memif.FdEvent.DEL:
            if fd in self.watched:
                self.watched.discard(fd)
                with contextlib.suppress(OSError):
                    self.epoll.unregister(fd)
            return 0
        mask = 0
        if events & memif.FdEvent.READ:
            mask |= select.EPOLLIN
        if events & memif.FdEvent.WRITE:
            mask |= select.EPOLLOUT
        if fd in self.watched:
            self.epoll.modify(fd, mask or select.EPOLLIN)
        else:
            self.epoll.register(fd, mask or select.EPOLLIN)
            self.watched.add(fd)
        return 0

    def run_once(self, ctx: memif.Context, timeout: float) -> None:
        """Wait up to ``timeout`` seconds and hand every ready fd to the library."""
        for fd, ready in self.epoll.poll(timeout):
            if fd not in self.watched:
                continue  # forgotten by an earlier handler of this round
            events = memif.FdEvent(0)
            if ready & (select.EPOLLIN | select.EPOLLHUP):
                events |= memif.FdEvent.READ
            if ready & select.EPOLLOUT:
                events |= memif.FdEvent.WRITE
            if ready & select.EPOLLERR:
                events |= memif.FdEvent.ERROR
            ctx.handle_event(fd, events)

    def close(self) -> None:
        """Close the epoll fd."""
        self.epoll.close()


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Responder]:
    """Command-line options."""
    parser = _common.make_parser(__doc__)
    _common.add_responder_options(parser)
    args = parser.parse_args(argv)
    return args, _common.make_responder(parser, args)


def main(argv: list[str] | None = None) -> int:
    """Run the responder until Ctrl+C (or --count / --duration)."""
    args, responder = parse_args(argv)
    stop = _common.Stopper(args.duration)
    loop = EpollLoop()
    dropped = 0

    def on_connect(intf: memif.Interface) -> None:
        say(PROG, f"connected to {_common.describe_peer(intf)}")

    def on_disconnect(intf: memif.Interface) -> None:
        say(PROG, "disconnected")

    def on_interrupt(intf: memif.Interface, qid: int) -> None:
        nonlocal dropped
        frames = intf.rx[qid].recv_burst(256)
        replies = [reply for reply in map(responder.reply, frames) if reply is not None]
        if replies:
            txq = intf.tx[qid if qid < len(intf.tx) else 0]
            dropped += len(replies) - txq.send_burst(replies)
        if args.count and responder.icmp_replies >= args.count:
            stop.stop_soon(0.2)

    try:
        with memif.Context(PROG, on_fd_update=loop.on_fd_update) as ctx:
            intf = _common.open_interface(ctx, args, name="memif0", on_connect=on_connect,
                                          on_disconnect=on_disconnect,
                                          on_interrupt=on_interrupt)
            say(PROG, f"{args.role} on {args.socket}, {len(loop.watched)} fds in our epoll; "
                      "waiting for the peer (Ctrl+C to stop)")
            watch = _common.ConnectionWatch(PROG, intf)
            while not stop.is_set():
                loop.run_once(ctx, stop.timeout(0.2))
                watch.check()
            received = intf.counters.rx_packets
    finally:
        loop.close()
    say(PROG, _common.summary(responder, received, dropped))
    return 0


if __name__ == "__main__":
    _common.run(PROG, main)
