"""rawpeer.py against an independent implementation: DPDK testpmd's net_memif.

testpmd runs with ``--forward io`` and sends every frame back unchanged on the
queue it came from. RawSlave talks to a DPDK server, RawMaster to a DPDK
client; frames of 64..9000 bytes (chained on the wire above the buffer size)
must come back byte for byte. testpmd may drop frames it cannot transmit at
once; a dropped frame is tolerated (up to one burst per queue), a corrupted,
duplicated or misrouted one never.

Skipped when dpdk-testpmd is missing, failed instead when MEMIF_REQUIRE_PEERS=1.
"""

from __future__ import annotations

import struct
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from peers import DpdkPeer, dpdk_peer, require_dpdk
from rawpeer import (
    DESC_FLAG_NEXT,
    RING_FLAG_MASK_INT,
    VERSION,
    PeerDisconnectedError,
    RawMaster,
    RawSlave,
)

pytestmark = pytest.mark.usefixtures("need_dpdk")

SIZES = [64, 65, 128, 1000, 1500, 2047, 2048, 2049, 3000, 4096, 8192, 9000]
ROUNDS = 4                 # every size this many times per queue
WINDOW = 24                # frames in flight per queue (9000-byte frames use 5 slots each)
MAX_DROPS_PER_QUEUE = 32   # one testpmd burst
MAGIC = b"RAWP"


@pytest.fixture
def need_dpdk() -> None:
    require_dpdk()


def socket_name(kind: str, tmp_path: Path) -> str:
    if kind == "abstract":
        return f"@rawpeer-dpdk-{uuid.uuid4().hex[:12]}"
    return str(tmp_path / "memif.sock")


def make_frame(qid: int, seq: int, size: int) -> bytes:
    """A frame that names its queue and sequence number; the rest is a seq-dependent pattern."""
    header = MAGIC + struct.pack("<HI", qid, seq)
    body = bytes((seq * 31 + i * 7 + qid) & 0xFF for i in range(size - len(header)))
    return header + body


class EchoResult:
    def __init__(self) -> None:
        self.sent: dict[tuple[int, int], bytes] = {}
        self.received: set[tuple[int, int]] = set()
        self.problems: list[str] = []

    def check(self, qid_rx: int, frame: bytes) -> None:
        if len(frame) < 10 or frame[:4] != MAGIC:
            self.problems.append(f"q{qid_rx}: unknown frame of {len(frame)} bytes")
            return
        qid, seq = struct.unpack_from("<HI", frame, 4)
        key = (qid, seq)
        expected = self.sent.get(key)
        if expected is None:
            self.problems.append(f"q{qid_rx}: frame {key} never sent")
        elif frame != expected:
            self.problems.append(f"q{qid_rx}: frame {key} corrupted ({len(frame)} bytes, "
                                 f"sent {len(expected)})")
        elif key in self.received:
            self.problems.append(f"q{qid_rx}: frame {key} duplicated")
        elif qid != qid_rx:
            self.problems.append(f"frame {key} came back on queue {qid_rx}")
        else:
            self.received.add(key)


def echo(peer: RawSlave | RawMaster, queues: int, sizes: list[int] = SIZES,
         rounds: int = ROUNDS) -> EchoResult:
    """Send every size ``rounds`` times on each queue, window by window; check the echoes."""
    result = EchoResult()
    plan = [size for _ in range(rounds) for size in sizes]
    for start in range(0, len(plan), WINDOW):
        window = plan[start:start + WINDOW]
        for qid in range(queues):
            frames = [make_frame(qid, start + i, size) for i, size in enumerate(window)]
            sent = 0
            deadline = time.monotonic() + 2
            while sent < len(frames) and time.monotonic() < deadline:
                n = peer.send_burst(qid, frames[sent:])
                if n == 0:  # no room (master: slave has not posted yet); let echoes drain
                    for frame in peer.recv_frames(qid):
                        result.check(qid, frame)
                    time.sleep(0.001)
                sent += n
            assert sent == len(frames), f"q{qid}: only {sent} of {len(frames)} frames fit"
            for i, frame in enumerate(frames):
                result.sent[(qid, start + i)] = frame
        for qid in range(queues):
            expected = sum(1 for key in result.sent if key[0] == qid) - sum(
                1 for key in result.received if key[0] == qid)
            for frame in peer.recv_until(qid, expected, timeout=1.0):
                result.check(qid, frame)
    # Late echoes.
    for qid in range(queues):
        for frame in peer.recv_until(qid, 0, timeout=0.1):
            result.check(qid, frame)
    return result


def assert_echo_ok(result: EchoResult, queues: int) -> None:
    assert not result.problems, result.problems[:40]
    for qid in range(queues):
        sent = sum(1 for key in result.sent if key[0] == qid)
        got = sum(1 for key in result.received if key[0] == qid)
        assert got >= sent - MAX_DROPS_PER_QUEUE, f"q{qid}: {got} of {sent} frames came back"
        assert got > 0


@contextmanager
def raw_master_with_dpdk_client(sock: str, **dpdk_kw: Any) -> Iterator[tuple[RawMaster, DpdkPeer]]:
    """RawMaster listens first (a DPDK client never retries), handshakes in a thread."""
    master = RawMaster(sock, app_name="rawpeer-master", if_name="raw-m")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            master.handshake(timeout=15)
        except BaseException as exc:
            errors.append(exc)

    master.listen()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        with dpdk_peer("client", sock, forward="io", duration=60, **dpdk_kw) as peer:
            thread.join(10)
            if errors:
                raise errors[0]
            assert master.connected
            yield master, peer
    finally:
        thread.join(5)
        master.close()


def wait_posted(master: RawMaster, queues: int, timeout: float = 3.0) -> None:
    """Wait until the DPDK client has posted buffers on every M2S ring, then a moment more.

    (dpdk_peer already waits until testpmd forwards: frames sent before that are
    flushed by testpmd. The extra moment is a margin, not a requirement.)
    """
    deadline = time.monotonic() + timeout
    while any(master.posted(q) == 0 for q in range(queues)):
        assert time.monotonic() < deadline, "DPDK client posted no M2S buffers"
        time.sleep(0.01)
    time.sleep(0.1)


# --------------------------------------------------------------------------
# RawSlave <-> DPDK server
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["filesystem", "abstract"])
@pytest.mark.parametrize("queues", [1, 2])
def test_raw_slave_with_dpdk_server(tmp_path: Path, kind: str, queues: int) -> None:
    sock = socket_name(kind, tmp_path)
    with dpdk_peer("server", sock, forward="io", queues=queues) as peer:
        with RawSlave(sock, num_s2m_rings=queues, num_m2s_rings=queues) as slave:
            slave.handshake()
            # DPDK's HELLO and CONNECTED, decoded (spec §13).
            assert slave.hello is not None
            assert slave.hello["min_version"] == slave.hello["max_version"] == VERSION
            assert (slave.hello["max_region"], slave.hello["max_m2s_ring"],
                    slave.hello["max_s2m_ring"], slave.hello["max_log2_ring_size"]) == (
                255, 255, 255, 14)
            assert slave.remote_app_name.startswith("DPDK")
            assert slave.remote_if_name == "net_memif0"
            peer.wait_for("Connected", 5)
            # testpmd polls: it masks interrupts on its rx rings (our S2M).
            assert all(r.flags & RING_FLAG_MASK_INT for r in slave.s2m)
            result = echo(slave, queues)
            slave.close("test done")
        peer.wait_for("Disconnect received: test done", 5)
    assert_echo_ok(result, queues)
    # DPDK fills our M2S buffers at the posted length and chains above it.
    assert slave.stats.rx_slots > slave.stats.rx_frames


def test_raw_slave_headroom_small_ring(tmp_path: Path) -> None:
    """DPDK (server) fills M2S up to the length we post (buffer minus headroom), any ring size."""
    sock = socket_name("filesystem", tmp_path)
    with (dpdk_peer("server", sock, forward="io") as peer,
          RawSlave(sock, buffer_size=1500, headroom=128, log2_ring_size=8) as slave):
        slave.handshake()
        peer.wait_for("Connected", 5)
        ring = slave.m2s[0]
        assert ring.size == 256
        result = echo(slave, 1, sizes=[64, 1372, 1373, 1500, 2744, 9000], rounds=4)
        # Look at what DPDK wrote before we consume it: 3000 bytes in 1372-byte slots.
        frame = make_frame(0, 10**6, 3000)
        assert slave.send(0, frame)
        first = ring.last
        deadline = time.monotonic() + 2
        while (ring.tail - first) & 0xFFFF < 3 and time.monotonic() < deadline:
            time.sleep(0.001)
        descs = [ring.get_desc(first + i) for i in range(3)]
        assert [d.length for d in descs] == [1372, 1372, 256]
        assert [d.flags for d in descs] == [DESC_FLAG_NEXT, DESC_FLAG_NEXT, 0]
        assert all(d.offset % 1500 == 128 and d.region == 1 for d in descs)
        assert slave.recv_frames(0) == [frame]
    assert_echo_ok(result, 1)


def test_raw_slave_secret(tmp_path: Path) -> None:
    sock = socket_name("abstract", tmp_path)
    with dpdk_peer("server", sock, forward="io", secret="s3cret") as peer:
        with RawSlave(sock, secret="wrong") as slave, pytest.raises(PeerDisconnectedError) as e:
            slave.handshake()
        assert e.value.reason == "Incorrect secret"
        with RawSlave(sock) as slave, pytest.raises(PeerDisconnectedError) as e:
            slave.handshake()
        assert e.value.reason == "Secret required"
        with RawSlave(sock, secret="s3cret") as slave:
            slave.handshake()
            peer.wait_for("Connected", 5)
            assert_echo_ok(echo(slave, 1, sizes=[64, 9000], rounds=2), 1)


# --------------------------------------------------------------------------
# RawMaster <-> DPDK client
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["filesystem", "abstract"])
@pytest.mark.parametrize("queues", [1, 2])
def test_raw_master_with_dpdk_client(tmp_path: Path, kind: str, queues: int) -> None:
    sock = socket_name(kind, tmp_path)
    with raw_master_with_dpdk_client(sock, queues=queues) as (master, peer):
        assert master.remote_app_name.startswith("DPDK")
        assert master.remote_if_name == "net_memif0"
        assert (len(master.s2m), len(master.m2s)) == (queues, queues)
        # DPDK client copy mode: one region with rings then buffers (spec §5.2).
        assert len(master.regions) == 1
        assert master.regions[0].size == 2 * queues * (128 + 16 * 1024 + 1024 * 2048)
        assert all(r.flags & RING_FLAG_MASK_INT for r in master.m2s)
        wait_posted(master, queues)
        result = echo(master, queues)
        master.close("test done")
        peer.wait_for("Disconnect received: test done", 5)
    assert_echo_ok(result, queues)


def test_raw_master_with_dpdk_client_small_buffers(tmp_path: Path) -> None:
    """1024-byte DPDK buffers: DPDK chains on the wire in both directions."""
    sock = socket_name("filesystem", tmp_path)
    with raw_master_with_dpdk_client(sock, buffer_size=1024, ring_log2=9) as (master, _peer):
        assert master.m2s[0].size == 512
        wait_posted(master, 1)
        assert master.m2s[0].get_desc(0).length == 1024
        result = echo(master, 1)
        assert master.stats.rx_slots > master.stats.rx_frames
    assert_echo_ok(result, 1)
