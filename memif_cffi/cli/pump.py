"""The data path of ``memif bench`` and ``memif bench-peer``.

:func:`bench_frame` makes the frame a flooding end sends, :class:`Pump` moves
bursts on every queue and counts them, :class:`Progress` shows the live rate.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from memif_cffi.batch import PacketBatch
from memif_cffi.cli.common import IPV4_HEADER, Session, check_interrupt
from memif_cffi.enums import Mode, RxMode
from memif_cffi.errors import DisconnectedError
from memif_cffi.packets import checksum

__all__ = ["CONTROL_EVERY", "PROGRESS_EVERY", "SINK_SLOT", "Progress", "Pump", "bench_frame"]

#: Slot size of a receiving batch: any frame up to a jumbo frame fits.
SINK_SLOT = 9216
#: Seconds between two ``Context.poll(0)`` calls of a data loop (disconnects, control).
CONTROL_EVERY = 0.02
#: Seconds between two updates of the live rate line.
PROGRESS_EVERY = 0.5

UDP_HEADER = 8


def bench_frame(size: int, ip_mode: bool) -> bytes:
    """A frame of exactly ``size`` bytes: IPv4/UDP to the discard port, zero payload.

    In ethernet mode it goes from 02:fe:00:00:00:01 to 02:fe:00:00:00:02.
    Sizes too small for the headers give the headers cut short.
    """
    link = b"" if ip_mode else bytes.fromhex("02fe00000002" "02fe00000001" "0800")
    ip_len = max(IPV4_HEADER + UDP_HEADER, size - len(link))
    header = bytearray(
        bytes([0x45, 0]) + ip_len.to_bytes(2, "big") + bytes(4) + bytes([64, 17]) + bytes(2)
        + bytes([192, 168, 1, 1]) + bytes([192, 168, 1, 2]))
    header[10:12] = checksum(header).to_bytes(2, "big")
    udp = (9).to_bytes(2, "big") * 2 + (ip_len - IPV4_HEADER).to_bytes(2, "big") + bytes(2)
    frame = link + bytes(header) + udp
    return (frame + bytes(max(0, size - len(frame))))[:size]


class Progress:
    """A live rate line on stderr, rewritten in place."""

    def __init__(self, enabled: bool, label: str) -> None:
        self.enabled = enabled
        self.label = label
        self.shown = False
        self._last_t = time.perf_counter()
        self._last_n = 0

    def update(self, elapsed: float, packets: int, size: int) -> None:
        """Show the rate since the last update (``packets`` is the running total)."""
        if not self.enabled:
            return
        now = time.perf_counter()
        rate = (packets - self._last_n) / max(now - self._last_t, 1e-9)
        self._last_t, self._last_n = now, packets
        sys.stderr.write(f"\r{self.label} {elapsed:6.1f} s {rate:>14,.0f} pps "
                         f"{rate * size * 8 / 1e9:8.3f} Gbit/s {packets:>15,} packets")
        sys.stderr.flush()
        self.shown = True

    def finish(self) -> None:
        """End the line, if one was shown."""
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.shown = False


class Pump:
    """The data loop of one bench end: flood every tx queue or drain every rx queue."""

    def __init__(self, session: Session, action: str, size: int, burst: int) -> None:
        self.session = session
        self.intf = session.intf
        self.action = action
        self.size = size
        self.packets = 0
        self.ring_full = 0
        self.elapsed = 0.0
        self.start_bytes = 0
        self.start_drops = 0
        if action == "flood":
            self.batch = PacketBatch(burst, size)
            self.batch.fill(bench_frame(size, session.mode is Mode.IP))
        else:
            self.batch = PacketBatch(burst, max(size, SINK_SLOT))
            # A polling receiver asks the sender not to signal every burst.
            for rxq in self.intf.rx:
                rxq.mode = RxMode.POLLING

    def mark(self) -> None:
        """Start counting from now."""
        self.packets = 0
        self.ring_full = 0
        c = self.intf.counters
        self.start_bytes = c.tx_bytes if self.action == "flood" else c.rx_bytes
        self.start_drops = c.rx_drops

    @property
    def bytes(self) -> int:
        """Bytes sent (flood) or received (sink) since :meth:`mark`."""
        c = self.intf.counters
        return (c.tx_bytes if self.action == "flood" else c.rx_bytes) - self.start_bytes

    @property
    def drops(self) -> int:
        """Frames the receiver itself dropped (too long for its batch, cut chains)."""
        return self.intf.counters.rx_drops - self.start_drops

    def step(self) -> int:
        """One burst on every queue; returns the packets moved."""
        moved = 0
        batch = self.batch
        if self.action == "flood":
            for txq in self.intf.tx:
                sent = txq.send_batch(batch)
                if sent < batch.count:
                    self.ring_full += 1
                moved += sent
        else:
            for rxq in self.intf.rx:
                moved += rxq.recv_into(batch)
        self.packets += moved
        return moved

    def run(self, duration: float, progress: Progress | None = None,
            stop: Callable[[], bool] | None = None, wait_first: bool = False) -> str:
        """Move packets for ``duration`` seconds (0: no limit); returns why it stopped.

        ``"time"``, ``"stopped"`` (``stop()`` became true), ``"peer disconnected"`` or
        ``"interrupted"``. With ``wait_first`` the clock starts at the first packet.
        """
        ctx = self.session.ctx
        self.mark()
        begin = now = time.perf_counter()
        next_control = now + CONTROL_EVERY
        next_progress = now + PROGRESS_EVERY
        waiting = wait_first
        reason = "time"
        try:
            while True:
                moved = self.step()
                now = time.perf_counter()
                if waiting and moved:
                    waiting = False
                    begin = now
                    next_progress = now + PROGRESS_EVERY
                if not waiting and duration and now - begin >= duration:
                    break
                if now >= next_control:
                    next_control = now + CONTROL_EVERY
                    ctx.poll(0)
                    check_interrupt()
                    if not self.intf.connected:
                        reason = "peer disconnected"
                        break
                    if stop is not None and stop():
                        reason = "stopped"
                        break
                if progress is not None and not waiting and now >= next_progress:
                    next_progress = now + PROGRESS_EVERY
                    progress.update(now - begin, self.packets, self.size)
        except KeyboardInterrupt:
            reason = "interrupted"
            now = time.perf_counter()
        except DisconnectedError:
            reason = "peer disconnected"
            now = time.perf_counter()
        if progress is not None:
            progress.finish()
        self.elapsed = 0.0 if waiting else now - begin
        return reason

    def drain(self, quiet: float = 0.01, limit: float = 5.0) -> None:
        """Receive until nothing arrived for ``quiet`` seconds (the sender has stopped)."""
        deadline = time.perf_counter() + limit
        last = time.perf_counter()
        while time.perf_counter() - last < quiet and time.perf_counter() < deadline:
            try:
                if self.step():
                    last = time.perf_counter()
            except DisconnectedError:
                return
