"""Loopback demo: a memif master and slave in one process, traffic both ways.

Run with ``python -m memif_cffi.demo`` (or ``make run``). It creates two
per-thread databases with internal polling, a master and a slave interface on
a socket in a temporary directory, waits until both report on_connect, then
sends ``--count`` packets slave->master and master->slave through the C
burst helpers, checks every packet (length, sequence number and payload) and
prints the rate.

It uses only the raw layer (:mod:`memif_cffi.lowlevel`), so it doubles as an
example of calling libmemif from Python the way a C program would.
"""

from __future__ import annotations

import argparse
import array
import os
import sys
import tempfile
import time
from typing import Any

from memif_cffi.lowlevel import (
    ConnCallbacks,
    check,
    ffi,
    lib,
    new_conn_args,
    poll_event,
)

CONNECT_TIMEOUT = 10.0  # seconds to wait for the handshake
STALL_TIMEOUT = 5.0  # seconds without progress before giving up


class Side:
    """One end of the loopback: its database, socket and interface."""

    def __init__(self, name: str, path: bytes, is_master: bool, ring_log2: int, *,
                 interface_id: int = 0, secret: bytes = b"", mode: int = 0, queues: int = 1,
                 buffer_size: int = 2048) -> None:
        self.name = name
        self.is_master = is_master
        self.queues = queues
        self.connected = False
        self.pt_main = ffi.new("memif_per_thread_main_handle_t *")
        check(
            lib.memif_per_thread_init(
                self.pt_main, ffi.NULL, ffi.NULL, name.encode(), ffi.NULL, ffi.NULL, ffi.NULL
            )
        )
        self.sock = ffi.new("memif_socket_handle_t *")
        check(lib.memif_per_thread_create_socket(self.pt_main[0], self.sock, path, ffi.NULL))
        self.callbacks = ConnCallbacks(
            on_connect=self._on_connect, on_disconnect=self._on_disconnect
        )
        args = new_conn_args(
            socket=self.sock[0],
            is_master=is_master,
            interface_id=interface_id,
            interface_name=name.encode(),
            log2_ring_size=ring_log2,
            secret=secret,
            mode=mode,
            num_s2m_rings=queues,
            num_m2s_rings=queues,
            buffer_size=buffer_size,
        )
        self.conn = ffi.new("memif_conn_handle_t *")
        check(
            lib.memif_create(
                self.conn,
                args,
                self.callbacks.on_connect,
                self.callbacks.on_disconnect,
                self.callbacks.on_interrupt,
                self.callbacks.private_ctx,
            )
        )

    def _on_connect(self, conn: Any, ctx: Any) -> int:
        self.connected = True
        for qid in range(self.queues):
            # Poll the rx queues instead of being signalled through their eventfds.
            check(lib.memif_set_rx_mode(conn, lib.MEMIF_RX_MODE_POLLING, qid))
            if not self.is_master:
                # A slave must post empty rx buffers or the master cannot send.
                check(lib.memif_refill_queue(conn, qid, 0xFFFF, 0))
        return 0

    def _on_disconnect(self, conn: Any, ctx: Any) -> int:
        self.connected = False
        return 0

    def poll(self, timeout_ms: int) -> None:
        """Handle at most one control event of this side's database."""
        poll_event(self.pt_main[0], timeout_ms)

    def close(self) -> None:
        """Delete the interface, the socket and the database."""
        if self.conn[0] != ffi.NULL:
            check(lib.memif_delete(self.conn))
        self.callbacks.release()
        if self.sock[0] != ffi.NULL:
            check(lib.memif_delete_socket(self.sock))
        if self.pt_main[0] != ffi.NULL:
            check(lib.memif_per_thread_cleanup(self.pt_main))


class Batch:
    """Contiguous packet storage: packet i lives at ``i * stride``."""

    def __init__(self, burst: int, size: int) -> None:
        self.burst = burst
        self.size = size
        self.stride = (size + 7) & ~7  # 8-byte aligned slots for the sequence numbers
        self.mem = ffi.new("uint8_t[]", burst * self.stride)
        self.view = memoryview(ffi.buffer(self.mem))
        self.seq = self.view.cast("Q")[:: self.stride // 8]  # first 8 bytes of each slot
        self.lens = ffi.new("uint32_t[]", burst)
        self.offsets = ffi.new("uint32_t[]", [i * self.stride for i in range(burst)])

    def fill_payload(self) -> None:
        """Give every slot the same recognisable payload after the sequence number."""
        pattern = bytes((i * 7 + 1) & 0xFF for i in range(self.size))
        for i in range(self.burst):
            self.view[i * self.stride : i * self.stride + self.size] = pattern
            self.lens[i] = self.size

    def set_seq(self, first: int, n: int) -> None:
        """Number the first n slots first, first + 1, ..."""
        self.seq[:n] = array.array("Q", range(first, first + n))


def run_direction(
    label: str, tx: Side, rx: Side, count: int, size: int, burst: int, qid: int = 0
) -> tuple[int, float]:
    """Send ``count`` packets from ``tx`` to ``rx`` on queue ``qid``.

    Returns (packets verified, seconds).
    """
    out = Batch(burst, size)
    out.fill_payload()
    expected = Batch(burst, size)
    expected.fill_payload()
    got = Batch(burst, size)

    sent_out = ffi.new("uint16_t *")
    recv_out = ffi.new("uint16_t *")
    drop_out = ffi.new("uint32_t *")
    state = ffi.new("memif_cffi_rx_state_t *")
    data_ptr = ffi.cast("uint8_t *", out.mem)
    tx_conn, rx_conn = tx.conn[0], rx.conn[0]
    lens_len = 4 * burst

    sent = verified = 0
    last_progress = start = time.perf_counter()
    while verified < count:
        progressed = False
        if sent < count:
            n = min(burst, count - sent)
            out.set_seq(sent, n)
            check(lib.memif_cffi_tx_copy(tx_conn, qid, data_ptr, out.offsets, out.lens, n,
                                         sent_out))
            sent += sent_out[0]
            progressed = sent_out[0] > 0

        check(
            lib.memif_cffi_rx_copy(
                rx_conn, qid, got.mem, got.stride, got.lens, burst, recv_out, 0, state, drop_out
            )
        )
        n = recv_out[0]
        if drop_out[0]:
            raise SystemExit(f"{label}: {drop_out[0]} packets dropped by the receiver")
        if n:
            # Whole-batch checks: one memcmp for the lengths, one for the data.
            if ffi.buffer(got.lens, 4 * n)[:] != ffi.buffer(expected.lens, lens_len)[: 4 * n]:
                raise SystemExit(f"{label}: wrong packet length after packet {verified}")
            expected.set_seq(verified, n)
            end = n * got.stride
            if got.view[:end] != expected.view[:end]:
                bad = next(
                    i
                    for i in range(n)
                    if got.view[i * got.stride : (i + 1) * got.stride]
                    != expected.view[i * got.stride : (i + 1) * got.stride]
                )
                raise SystemExit(f"{label}: packet {verified + bad} differs from what was sent")
            verified += n
            progressed = True

        now = time.perf_counter()
        if progressed:
            last_progress = now
        elif now - last_progress > STALL_TIMEOUT:
            raise SystemExit(
                f"{label}: no progress for {STALL_TIMEOUT:.0f} s ({verified} received)"
            )
    return verified, time.perf_counter() - start


def report(label: str, verified: int, count: int, size: int, seconds: float) -> None:
    """Print the result line of one direction."""
    seconds = max(seconds, 1e-9)
    mpps = verified / seconds / 1e6
    gbps = verified * size * 8 / seconds / 1e9
    print(
        f"verified {verified}/{count} packets {label} "
        f"({size} B): {mpps:.2f} Mpps, {gbps:.2f} Gbit/s in {seconds:.2f} s"
    )


MODES = {"ethernet": 0, "ip": 1}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The demo's options (``memif demo`` passes its own through)."""
    parser = argparse.ArgumentParser(
        prog="python -m memif_cffi.demo",
        description="memif loopback demo: master and slave in one process",
    )
    parser.add_argument("--count", type=int, default=1_000_000, help="packets per direction")
    parser.add_argument("--size", type=int, default=64, help="packet size in bytes (8-65535)")
    parser.add_argument("--burst", type=int, default=64, help="packets per call (1-4096)")
    parser.add_argument("--ring-log2", type=int, default=10, help="log2 of the ring size (1-14)")
    parser.add_argument("--socket", default=None,
                        help="socket path or @name (default: one in a temporary directory)")
    parser.add_argument("--first", choices=("master", "slave"), default="master",
                        help="which side is created first: a slave first retries until "
                             "the master appears (default master)")
    parser.add_argument("--id", type=int, default=0, help="interface id of both sides")
    parser.add_argument("--secret", default="", help="secret of both sides")
    parser.add_argument("--mode", choices=sorted(MODES), default="ethernet")
    parser.add_argument("--queues", type=int, default=1,
                        help="queues each way (1-255); traffic runs on every one")
    parser.add_argument("--buffer-size", type=int, default=2048,
                        help="bytes per buffer; larger packets are chained")
    opts = parser.parse_args(argv)
    problem = check_options(opts)
    if problem:
        parser.error(problem)
    return opts


def check_options(opts: argparse.Namespace) -> str | None:
    """What is wrong with the demo's options, or None."""
    checks = [
        (8 <= opts.size <= 65535, "--size must be between 8 and 65535"),
        (1 <= opts.burst <= 4096, "--burst must be between 1 and 4096"),
        (opts.count >= 0, "--count must not be negative"),
        (1 <= opts.queues <= 255, "--queues must be between 1 and 255"),
        (1 <= opts.ring_log2 <= 14, "--ring-log2 must be between 1 and 14"),
        (1 <= opts.buffer_size <= 65535, "--buffer-size must be between 1 and 65535"),
    ]
    for ok, problem in checks:
        if not ok:
            return problem
    if (opts.size + opts.buffer_size - 1) // opts.buffer_size > 1 << opts.ring_log2:
        return "a packet needs more buffers than a ring has: use bigger rings or buffers"
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the process exit code."""
    return run(parse_args(argv))


def run(opts: argparse.Namespace) -> int:
    """Run the demo with checked options (see :func:`parse_args`)."""
    with tempfile.TemporaryDirectory(prefix="memif-demo-") as tmp:
        path = (opts.socket or os.path.join(tmp, "memif.sock")).encode()
        common = {"ring_log2": opts.ring_log2, "interface_id": opts.id,
                  "secret": opts.secret.encode(), "mode": MODES[opts.mode],
                  "queues": opts.queues, "buffer_size": opts.buffer_size}
        sides: dict[str, Side] = {}
        try:
            for role in (opts.first, "slave" if opts.first == "master" else "master"):
                sides[role] = Side(f"demo-{role}", path, is_master=role == "master", **common)
            master, slave = sides["master"], sides["slave"]
            deadline = time.monotonic() + CONNECT_TIMEOUT
            while not (master.connected and slave.connected):
                if time.monotonic() > deadline:
                    print("error: the interfaces did not connect", file=sys.stderr)
                    return 1
                master.poll(1)
                slave.poll(1)
            print(f"connected: master and slave on {path.decode()}")

            for label, tx, rx in (
                ("slave->master", slave, master),
                ("master->slave", master, slave),
            ):
                verified = 0
                seconds = 0.0
                for qid in range(opts.queues):
                    share = opts.count // opts.queues + (qid < opts.count % opts.queues)
                    got, took = run_direction(label, tx, rx, share, opts.size, opts.burst, qid)
                    verified += got
                    seconds += took
                report(label, verified, opts.count, opts.size, seconds)
        finally:
            for side in reversed(list(sides.values())):
                side.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
