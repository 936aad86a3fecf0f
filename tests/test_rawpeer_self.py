"""rawpeer.py on its own: golden vectors of spec §14, and RawMaster <-> RawSlave loopback.

No C library and no DPDK needed. The loopback runs the master's handshake in a
thread and the slave's in the test thread; the data path is then stepped from
the test thread.
"""

from __future__ import annotations

import os
import struct
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from golden import GOLDEN
from rawpeer import (
    COOKIE,
    DESC_FLAG_NEXT,
    MSG_SIZE,
    RING_FLAG_MASK_INT,
    Direction,
    Message,
    MsgType,
    PeerDisconnectedError,
    ProtocolError,
    RawMaster,
    RawSlave,
    check_message,
    decode,
    encode,
    encode_ack,
    encode_add_region,
    encode_add_ring,
    encode_connect,
    encode_connected,
    encode_disconnect,
    encode_hello,
    encode_init,
    encode_raw,
    ring_stride,
    unix_address,
)

SPEC_MASTER = {"id": 7, "secret": "sec", "app_name": "master-app", "if_name": "mif-m"}
SPEC_SLAVE = {"id": 7, "secret": "sec", "app_name": "slave-app", "if_name": "mif-s",
              "num_s2m_rings": 1, "num_m2s_rings": 1, "log2_ring_size": 10,
              "buffer_size": 2048}


# --------------------------------------------------------------------------
# Encoders and decoders
# --------------------------------------------------------------------------


def test_encoders_reproduce_golden_vectors() -> None:
    assert encode_hello("master-app") == GOLDEN["hello"]
    assert encode_init(7, secret="sec", name="slave-app") == GOLDEN["init"]
    assert encode_ack() == GOLDEN["ack"]
    assert encode_add_region(0, 33024) == GOLDEN["add_region0"]
    assert encode_add_region(1, 4194304) == GOLDEN["add_region1"]
    assert encode_add_ring(Direction.S2M, 0, offset=0, log2_ring_size=10) == GOLDEN[
        "add_ring_s2m0"]
    assert encode_add_ring(Direction.M2S, 0, offset=16512, log2_ring_size=10) == GOLDEN[
        "add_ring_m2s0"]
    assert encode_connect("mif-s") == GOLDEN["connect"]
    assert encode_connected("mif-m") == GOLDEN["connected"]
    assert encode_disconnect("interface deleted") == GOLDEN["disconnect"]
    for data in GOLDEN.values():
        assert len(data) == MSG_SIZE


def test_decoder_reads_golden_vectors() -> None:
    hello = decode(GOLDEN["hello"])
    assert hello.type == MsgType.HELLO and hello.type_name == "HELLO"
    assert hello.fields == {"name": "master-app", "min_version": 0x200, "max_version": 0x200,
                            "max_region": 255, "max_m2s_ring": 255, "max_s2m_ring": 255,
                            "max_log2_ring_size": 14}
    init = decode(GOLDEN["init"])
    assert init.fields == {"version": 0x200, "id": 7, "mode": 0, "secret": "sec",
                           "name": "slave-app"}
    assert decode(GOLDEN["add_region1"]).fields == {"index": 1, "size": 4194304}
    assert decode(GOLDEN["add_ring_m2s0"]).fields == {
        "flags": 0, "index": 0, "region": 0, "offset": 16512, "log2_ring_size": 10,
        "private_hdr_size": 0}
    assert decode(GOLDEN["add_ring_s2m0"])["flags"] == 1
    assert decode(GOLDEN["connect"])["if_name"] == "mif-s"
    assert decode(GOLDEN["connected"])["if_name"] == "mif-m"
    disc = decode(GOLDEN["disconnect"])
    assert disc["code"] == 0 and disc["string"] == "interface deleted"
    assert decode(GOLDEN["ack"]).fields == {}
    for data in GOLDEN.values():
        check_message(decode(data))
        # Re-encoding the decoded fields gives the same bytes.
        msg = decode(data)
        assert encode(msg.type, **msg.fields) == data


def test_malformed_messages() -> None:
    # Full-width names carry no terminator; the decoder bounds them by the field size.
    full = encode_hello("x" * 32)
    assert full[2:34] == b"x" * 32 and decode(full)["name"] == "x" * 32
    assert decode(encode_disconnect("r" * 200))["string"] == "r" * 96
    with pytest.raises(ProtocolError, match="malformed"):
        check_message(decode(encode_ack()[:100]))
    with pytest.raises(ProtocolError, match="malformed"):
        check_message(decode(encode(MsgType.ACK, msg_size=129)))
    unknown = decode(encode_raw(9, b"\x01\x02"))
    assert unknown.type == 9 and unknown.type_name == "UNKNOWN(9)" and unknown.fields == {}
    with pytest.raises(ProtocolError, match="unknown message type"):
        check_message(unknown)
    with pytest.raises(ProtocolError, match="unknown message type"):
        check_message(decode(encode_raw(0)))
    with pytest.raises(TypeError):
        encode(MsgType.ACK, index=1)


def test_abstract_address() -> None:
    assert unix_address("@memif") == "\0memif"
    assert unix_address("/run/x.sock") == "/run/x.sock"
    with pytest.raises(ValueError):
        unix_address("@")


# --------------------------------------------------------------------------
# Loopback
# --------------------------------------------------------------------------


@contextmanager
def loopback(
    sock: str, master_kw: dict[str, Any] | None = None, slave_kw: dict[str, Any] | None = None,
) -> Iterator[tuple[RawMaster, RawSlave]]:
    """Listen, handshake (master in a thread), yield both connected peers, close both."""
    master = RawMaster(sock, **(master_kw or {}))
    slave = RawSlave(sock, **(slave_kw or {}))
    errors: list[BaseException] = []

    def run_master() -> None:
        try:
            master.handshake(timeout=5)
        except BaseException as exc:
            errors.append(exc)

    try:
        master.listen()
        thread = threading.Thread(target=run_master, daemon=True)
        thread.start()
        try:
            slave.handshake()
        finally:
            thread.join(10)
        if errors:
            raise errors[0]
        yield master, slave
    finally:
        slave.close()
        master.close()


def raw_of(messages: list[Message]) -> list[bytes]:
    return [m.raw for m in messages]


def test_handshake_is_byte_identical_to_golden_vectors(tmp_path: Path) -> None:
    with loopback(str(tmp_path / "m.sock"), SPEC_MASTER, SPEC_SLAVE) as (master, slave):
        assert raw_of(master.received) == [
            GOLDEN["init"], GOLDEN["add_region0"], GOLDEN["add_region1"],
            GOLDEN["add_ring_s2m0"], GOLDEN["add_ring_m2s0"], GOLDEN["connect"]]
        assert raw_of(slave.received) == [GOLDEN["hello"]] + [GOLDEN["ack"]] * 5 + [
            GOLDEN["connected"]]
        # The fds travelled: same eventfd objects and same memory on both sides.
        os.eventfd_write(slave.s2m[0].eventfd, 5)
        assert os.eventfd_read(master.s2m[0].eventfd) == 5
        os.eventfd_write(master.m2s[0].eventfd, 3)
        assert os.eventfd_read(slave.m2s[0].eventfd) == 3
        assert len(master.regions) == 2 and master.regions[1].size == 4194304
        slave.regions[1].write(12345, b"shared")
        assert master.regions[1].read(12345, 6) == b"shared"
        assert master.remote_app_name == "slave-app" and master.remote_if_name == "mif-s"
        assert slave.remote_app_name == "master-app" and slave.remote_if_name == "mif-m"
        # Layout of §5.2 / §5.5, seen through the master's mappings.
        for ring in master.s2m + master.m2s:
            assert ring.cookie == COOKIE
        m2s = master.m2s[0]
        assert m2s.offset == 16512
        # After connect the slave refilled: 1024 buffers posted at (1024 + j) * 2048.
        assert master.posted(0) == 1024
        d5 = m2s.get_desc(5)
        assert (d5.region, d5.offset, d5.length, d5.flags) == (1, (1024 + 5) * 2048, 2048, 0)
        slave.close("interface deleted")
        assert master.poll_disconnect(2) == "interface deleted"
        assert master.received[-1].raw == GOLDEN["disconnect"]


def test_derived_layouts() -> None:
    s = RawSlave("unused", num_s2m_rings=2, num_m2s_rings=2, log2_ring_size=10)
    assert ring_stride(10) == 16512
    assert [s.ring_offset(Direction.S2M, 0), s.ring_offset(Direction.S2M, 1),
            s.ring_offset(Direction.M2S, 0), s.ring_offset(Direction.M2S, 1)] == [
        0, 16512, 33024, 49536]
    assert s.region_sizes() == (66048, 8388608)
    s = RawSlave("unused", log2_ring_size=12, buffer_size=1500)
    assert ring_stride(12) == 65664
    assert s.region_sizes() == (131328, 12288000)
    assert s.ring_offset(Direction.M2S, 0) == 65664
    assert s.buffer_offset(Direction.M2S, 0, 5) == 6151500


def pattern(n: int, seed: int) -> bytes:
    return bytes((seed * 7 + i * 13) & 0xFF for i in range(n))


SIZES = [0, 1, 60, 64, 1500, 2047, 2048, 2049, 4096, 9000, 20000, 65535]


@pytest.mark.parametrize("kind", ["filesystem", "abstract"])
def test_frames_both_directions(tmp_path: Path, kind: str) -> None:
    sock = (f"@rawpeer-{uuid.uuid4().hex[:12]}" if kind == "abstract"
            else str(tmp_path / "m.sock"))
    with loopback(sock) as (master, slave):
        if kind == "abstract":
            assert not os.path.exists(sock)
        frames = [pattern(n, i) for i, n in enumerate(SIZES)]
        assert slave.send_burst(0, frames) == len(frames)
        got = master.recv_until(0, len(frames), timeout=2)
        assert got == frames
        assert master.send_burst(0, frames) == len(frames)
        assert slave.recv_until(0, len(frames), timeout=2) == frames
        # Chains: 9000 bytes in 2048-byte buffers is 5 slots.
        assert slave.stats.tx_slots == sum(max(1, -(-n // 2048)) for n in SIZES)


def test_master_chains_by_posted_length_with_headroom(tmp_path: Path) -> None:
    with loopback(str(tmp_path / "m.sock"), slave_kw={"buffer_size": 1500, "headroom": 128}) as (
            master, slave):
        ring = master.m2s[0]
        first = ring.get_desc(0)
        assert first.length == 1500 - 128 and first.offset == (1 << 10) * 1500 + 128
        frame = pattern(3000, 3)
        assert master.send(0, frame)
        # 3000 bytes at 1372 per slot: 3 slots, NEXT on the first two; region/offset unchanged.
        descs = [ring.get_desc(i) for i in range(3)]
        assert [d.length for d in descs] == [1372, 1372, 256]
        assert [d.flags for d in descs] == [DESC_FLAG_NEXT, DESC_FLAG_NEXT, 0]
        assert descs[1].offset == (1024 + 1) * 1500 + 128
        assert slave.recv_until(0, 1) == [frame]


def test_multiple_queues_and_counts(tmp_path: Path) -> None:
    with loopback(str(tmp_path / "m.sock"),
                  slave_kw={"num_s2m_rings": 2, "num_m2s_rings": 3, "log2_ring_size": 8}) as (
            master, slave):
        assert (len(master.s2m), len(master.m2s)) == (2, 3)
        assert master.m2s[2].offset == (2 + 2) * ring_stride(8)
        for q in range(2):
            frames = [pattern(100 * (q + 1) + i, q) for i in range(5)]
            assert slave.send_burst(q, frames) == 5
        for q in range(2):
            assert master.recv_until(q, 5) == [pattern(100 * (q + 1) + i, q) for i in range(5)]
        for q in range(3):
            assert master.send(q, pattern(3000 + q, q))
        for q in range(3):
            assert slave.recv_until(q, 1) == [pattern(3000 + q, q)]


def test_counters_wrap_and_ring_full(tmp_path: Path) -> None:
    """More than 65536 slots through a 16-slot ring each way; a full ring refuses frames."""
    with loopback(str(tmp_path / "m.sock"),
                  slave_kw={"log2_ring_size": 4, "buffer_size": 64}) as (master, slave):
        # Ring full: 16 slots, 4 per 200-byte frame.
        assert slave.send_burst(0, [pattern(200, i) for i in range(5)]) == 4
        assert not slave.send(0, b"x")
        assert len(master.recv_frames(0)) == 4
        total = 0
        seq = 0
        while total < 70000:
            frames = [pattern(200, seq + i) for i in range(4)]  # 16 slots per round
            assert slave.send_burst(0, frames) == 4
            assert master.recv_frames(0) == frames
            assert master.send_burst(0, frames) == 4
            assert slave.recv_frames(0) == frames
            total += 16
            seq += 4
        assert master.s2m[0].head == (16 + total) & 0xFFFF


def test_interrupts_honour_mask_int(tmp_path: Path) -> None:
    with loopback(str(tmp_path / "m.sock"), master_kw={"polling": True}) as (master, slave):
        # The master polls: MASK_INT on S2M, so the slave never signals.
        assert master.s2m[0].flags & RING_FLAG_MASK_INT
        assert slave.send(0, b"a" * 60)
        assert slave.stats.signals_sent == 0 and slave.stats.signals_skipped == 1
        assert not master.wait_rx(0, 0.05)
        assert master.recv_frames(0) == [b"a" * 60]
        # The slave is in interrupt mode: the master signals the M2S eventfd.
        assert not slave.m2s[0].flags & RING_FLAG_MASK_INT
        assert master.send(0, b"b" * 60)
        assert master.stats.signals_sent == 1
        assert slave.wait_rx(0, 1)
        assert slave.recv_frames(0) == [b"b" * 60]
        assert not slave.wait_rx(0, 0.05)  # drained before reading


def test_oversize_chain_is_dropped(tmp_path: Path) -> None:
    with loopback(str(tmp_path / "m.sock"), master_kw={"max_frame": 5000}) as (master, slave):
        assert slave.send_burst(0, [pattern(6000, 1), pattern(100, 2)]) == 2
        assert master.recv_until(0, 1) == [pattern(100, 2)]
        assert master.stats.rx_oversize_dropped == 1


@pytest.mark.parametrize(("slave_secret", "reason"), [
    (None, "secret required"), ("nope", "incorrect secret")])
def test_master_rejects_bad_secret(tmp_path: Path, slave_secret: str | None, reason: str) -> None:
    sock = str(tmp_path / "m.sock")
    master = RawMaster(sock, secret="sec")
    slave = RawSlave(sock, secret=slave_secret)
    master.listen()
    errors: list[BaseException] = []

    def run_master() -> None:
        try:
            master.handshake(timeout=5)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run_master, daemon=True)
    thread.start()
    try:
        with pytest.raises(PeerDisconnectedError) as info:
            slave.handshake()
        assert info.value.reason == reason
        thread.join(5)
        assert isinstance(errors[0], ProtocolError) and str(errors[0]) == reason
    finally:
        slave.close()
        master.close()
    assert not os.path.exists(sock)


def test_step_by_step_slave_against_scripted_master(tmp_path: Path) -> None:
    """Both sides driven message by message, as a malformed-message test would."""
    sock = str(tmp_path / "m.sock")
    master = RawMaster(sock)
    slave = RawSlave(sock, log2_ring_size=6)
    try:
        master.listen()
        slave.connect()
        master.accept()
        master.send_hello(max_log2_ring_size=5, max_s2m_ring=0)
        hello = slave.recv_hello()
        slave.negotiate(hello)
        assert (slave.num_s2m, slave.num_m2s, slave.log2_ring_size) == (1, 1, 5)
        slave.create_memory()
        slave.send_init()
        assert master.recv_init()["id"] == 0
        slave.expect_ack()
        slave.send_add_region(0, with_fd=False)  # no fd: the master refuses
        with pytest.raises(ProtocolError, match="missing region fd"):
            master.handle(master.recv())
        with pytest.raises(PeerDisconnectedError, match="missing region fd"):
            slave.expect_ack()
    finally:
        slave.close()
        master.close()


def test_counters_are_single_16_bit_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """head/tail/flags must not go through struct.pack_into, which zero-fills before writing.

    A concurrently reading peer (DPDK) then sees a transient 0, computes a huge
    free count and overruns the ring; this happened before counters used a
    memoryview.
    """
    with loopback(str(tmp_path / "m.sock")) as (master, slave):
        def forbidden(*_args: object) -> None:
            raise AssertionError("struct.pack_into used on a shared counter")

        ring = slave.s2m[0]
        monkeypatch.setattr(struct, "pack_into", forbidden)
        ring.head = 0x1234
        ring.tail = 0xFFFF
        ring.flags = RING_FLAG_MASK_INT
        monkeypatch.undo()
        raw = bytes(slave.regions[0].mm[ring.offset:ring.offset + 128])
        assert raw[4:8] == bytes([1, 0, 0x34, 0x12]) and raw[64:66] == b"\xff\xff"
        assert (master.s2m[0].head, master.s2m[0].tail) == (0x1234, 0xFFFF)
