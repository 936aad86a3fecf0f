#!/usr/bin/env python3
"""Multi-threaded ICMP responder: one thread per queue.

The main thread runs the connection (Context.poll). When the interface comes
up, one worker thread starts per queue pair and answers ARP requests and
pings on its own rx/tx queues:

* queue 0 is in polling mode (RxMode.POLLING): the peer does not signal it
  and its worker polls the ring, sleeping briefly when it is empty;
* the other queues are interrupt driven: each worker waits on its queue's
  eventfd (rx[q].fileno()) with select.poll, then drains the queue.

The workers stop when the interface disconnects, and start again at the next
connection. Two queues by default.

    python examples/icmp_responder_mt.py                 # slave on /run/vpp/memif.sock
"""

from __future__ import annotations

import argparse
import select
import threading

import _common
from _common import say

import memif_cffi as memif
from memif_cffi.packets import Responder

PROG = "icmp_responder_mt"
BURST = 256
IDLE_SLEEP = 0.0005  # seconds a polling worker sleeps on an empty ring
WAIT_STEP = 0.1  # seconds an interrupt worker waits before looking at the stop flag


class QueueWorker(threading.Thread):
    """Answers the packets of rx queue ``qid`` on tx queue ``qid``, until told to stop."""

    def __init__(self, intf: memif.Interface, qid: int, responder: Responder,
                 stats: dict[str, int]) -> None:
        super().__init__(name=f"queue-{qid}", daemon=True)
        self.rxq = intf.rx[qid]
        self.txq = intf.tx[qid]
        self.polling = self.rxq.mode is memif.RxMode.POLLING
        self.responder = responder
        self.stats = stats
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            if self.polling:
                self._poll_ring()
            else:
                self._wait_for_interrupts()
        except (memif.DisconnectedError, memif.ClosedError):
            pass  # the interface went down under us: the main thread stops us anyway

    def _poll_ring(self) -> None:
        while not self.stop.is_set():
            if not self._answer_burst():
                self.stop.wait(IDLE_SLEEP)

    def _wait_for_interrupts(self) -> None:
        poller = select.poll()
        poller.register(self.rxq.fileno(), select.POLLIN)
        while not self.stop.is_set():
            if poller.poll(WAIT_STEP * 1000):
                # One signal may stand for many packets: drain until a short burst.
                while self._answer_burst() == BURST:
                    pass

    def _answer_burst(self) -> int:
        frames = self.rxq.recv_burst(BURST)
        replies = [reply for reply in map(self.responder.reply, frames) if reply is not None]
        if replies:
            self.stats["dropped"] += len(replies) - self.txq.send_burst(replies)
        self.stats["received"] += len(frames)
        return len(frames)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    """Command-line options."""
    parser = _common.make_parser(__doc__, queues=2)
    _common.add_responder_options(parser)
    return parser.parse_args(argv), parser


def main(argv: list[str] | None = None) -> int:
    """Run the responder until Ctrl+C (or --count / --duration)."""
    args, parser = parse_args(argv)
    stop = _common.Stopper(args.duration)
    # Per queue: its own Responder and counters (a worker never shares them).
    responders = [_common.make_responder(parser, args) for _ in range(args.queues)]
    stats = [{"received": 0, "dropped": 0} for _ in range(args.queues)]
    workers: list[QueueWorker] = []

    def on_connect(intf: memif.Interface) -> None:
        say(PROG, f"connected to {_common.describe_peer(intf)}")
        intf.rx[0].mode = memif.RxMode.POLLING
        pairs = min(len(intf.rx), len(intf.tx))
        for qid in range(pairs):
            worker = QueueWorker(intf, qid, responders[qid], stats[qid])
            workers.append(worker)
            worker.start()
        kinds = ", ".join(f"queue {w.rxq.qid}: {'polling' if w.polling else 'interrupt'}"
                          for w in workers)
        say(PROG, f"{pairs} worker threads ({kinds})")

    def stop_workers() -> None:
        for worker in workers:
            worker.stop.set()
        for worker in workers:
            worker.join()
        workers.clear()

    def on_disconnect(intf: memif.Interface) -> None:
        stop_workers()
        say(PROG, "disconnected")

    with memif.Context(PROG) as ctx:
        intf = _common.open_interface(ctx, args, name="memif0", on_connect=on_connect,
                                      on_disconnect=on_disconnect)
        say(PROG, f"{args.role} on {args.socket}, {args.queues} queues; "
                  "waiting for the peer (Ctrl+C to stop)")
        watch = _common.ConnectionWatch(PROG, intf)
        try:
            while not stop.is_set():
                ctx.poll(stop.timeout(0.2))
                watch.check()
                if args.count and sum(r.icmp_replies for r in responders) >= args.count:
                    stop.stop_soon(0.2)
        finally:
            stop_workers()
    for qid, (responder, counts) in enumerate(zip(responders, stats, strict=True)):
        text = _common.summary(responder, counts["received"], counts["dropped"])
        say(PROG, f"queue {qid}: {text}")
    return 0


if __name__ == "__main__":
    _common.run(PROG, main)
