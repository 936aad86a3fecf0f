"""memif capture, and the pcap module it writes with."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest
from clihelp import ApiPeer, cli_command, cli_env, cli_process, run_cli

import memif_cffi as memif
from memif_cffi import pcap


def frames_for_test() -> list[bytes]:
    """Distinct frames; 3000 and 9000 bytes span several 2048-byte buffers."""
    out = []
    for i, size in enumerate((60, 64, 1500, 3000, 9000, 42)):
        body = bytes((i * 31 + j) & 0xFF for j in range(size - 14))
        out.append(bytes.fromhex("02fe00000001" "02fe00000002" "88b5") + body)
    return out


def parse_pcap(raw: bytes) -> tuple[tuple[int, ...], list[tuple[int, int, int, int, bytes]]]:
    """A minimal independent reader: the header fields and (sec, frac, caplen, len, data)."""
    header = struct.unpack_from("<IHHiIII", raw)
    records = []
    offset = 24
    while offset < len(raw):
        sec, frac, caplen, length = struct.unpack_from("<IIII", raw, offset)
        offset += 16
        records.append((sec, frac, caplen, length, raw[offset : offset + caplen]))
        offset += caplen
    assert offset == len(raw)
    return header, records


def test_capture_ethernet_frames(sock_path: str, tmp_path: Path) -> None:
    frames = frames_for_test()
    out = tmp_path / "eth.pcap"
    before = time.time()
    with ApiPeer(sock_path) as peer, cli_process(
            "capture", "--socket", sock_path, "-w", str(out), "-c", str(len(frames))) as cap:
        peer.wait_connected()
        peer.send(frames)
        assert cap.wait() == 0, cap.dump()
    after = time.time()
    assert f"{len(frames)} frames captured" in cap.stderr
    assert f"writing ETHERNET frames to {out}" in cap.stderr
    assert "connected: peer peer0 (cli-test-peer), 1 queue" in cap.stderr
    assert cap.stdout == ""

    header, records = pcap.read_pcap(str(out))
    assert (header.linktype, header.snaplen, header.nanosecond) == (1, 65535, False)
    assert header.version == (2, 4)
    assert [r.data for r in records] == frames
    assert [r.orig_len for r in records] == [len(f) for f in frames]
    assert all(before - 1 <= r.timestamp <= after + 1 for r in records)
    assert [r.timestamp_ns for r in records] == sorted(r.timestamp_ns for r in records)

    raw = out.read_bytes()
    (magic, major, minor, zone, sigfigs, snaplen, linktype), recs = parse_pcap(raw)
    assert (magic, major, minor, zone, sigfigs, snaplen, linktype) == (
        0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    assert [r[4] for r in recs] == frames
    assert all(r[2] == r[3] == len(r[4]) and r[1] < 1_000_000 for r in recs)

    for tool in ("tcpdump", "tshark"):
        exe = shutil.which(tool)
        if exe is not None:  # an extra, independent reader when one is installed
            args = [exe, "-r", str(out)] + (["-nn"] if tool == "tcpdump" else [])
            res = subprocess.run(args, capture_output=True, text=True, timeout=30)
            assert res.returncode == 0, res.stderr
            assert len(res.stdout.strip().splitlines()) == len(frames)


def test_capture_ip_mode_snaplen_nanoseconds(sock_path: str, tmp_path: Path) -> None:
    """ip mode is link type 101 (RAW); frames are cut to --snaplen, lengths kept."""
    packets = [bytes([0x45]) + bytes(range(i, i + 199)) for i in range(3)]
    out = tmp_path / "ip.pcap"
    with ApiPeer(sock_path, role=memif.Role.SLAVE, mode=memif.Mode.IP) as peer, cli_process(
            "capture", "--socket", sock_path, "--role", "master", "--mode", "ip",
            "-w", str(out), "-c", "3", "--snaplen", "100", "--nanosecond") as cap:
        peer.wait_connected()
        peer.send(packets)
        assert cap.wait() == 0, cap.dump()
    header, records = pcap.read_pcap(str(out))
    assert (header.linktype, header.snaplen, header.nanosecond) == (101, 100, True)
    assert [r.data for r in records] == [p[:100] for p in packets]
    assert [r.orig_len for r in records] == [200] * 3
    raw = out.read_bytes()
    (magic, *_rest, snaplen, linktype), recs = parse_pcap(raw)
    assert (magic, snaplen, linktype) == (0xA1B23C4D, 100, 101)
    assert all(r[2] == 100 and r[3] == 200 and r[1] < 1_000_000_000 for r in recs)
    assert "writing RAW IP frames" in cap.stderr


def test_capture_to_stdout_stops_after_count(sock_path: str) -> None:
    """-w - writes the pcap stream to stdout; frames beyond -c are not written."""
    frames = frames_for_test()
    proc = subprocess.Popen(cli_command("capture", "--socket", sock_path, "--role", "master",
                                        "-w", "-", "-c", "2"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env())
    try:
        with ApiPeer(sock_path, role=memif.Role.SLAVE) as peer:
            peer.wait_connected()
            peer.send(frames)
            out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    reader = pcap.PcapReader(io.BytesIO(out))
    assert [r.data for r in reader] == frames[:2]
    assert b"2 frames captured" in err


def test_capture_duration_without_traffic(sock_path: str, tmp_path: Path) -> None:
    out = tmp_path / "empty.pcap"
    res = run_cli("capture", "--socket", sock_path, "--role", "master", "-w", str(out),
                  "--duration", "0.3")
    assert res.returncode == 0, res.stderr
    assert "0 frames captured" in res.stderr
    header, records = pcap.read_pcap(str(out))
    assert records == [] and header.linktype == 1
    assert out.stat().st_size == 24


def test_capture_interrupted_keeps_what_it_wrote(sock_path: str, tmp_path: Path) -> None:
    frames = frames_for_test()[:3]
    out = tmp_path / "int.pcap"
    with ApiPeer(sock_path) as peer, cli_process("capture", "--socket", sock_path,
                                                  "-w", str(out)) as cap:
        peer.wait_connected()
        peer.send(frames)
        deadline = time.monotonic() + 10
        while out.stat().st_size < 24 + sum(16 + len(f) for f in frames):
            assert time.monotonic() < deadline, "frames not flushed to the file"
            time.sleep(0.02)
        assert cap.interrupt() == 0
    assert [r.data for r in pcap.read_pcap(str(out))[1]] == frames
    assert "3 frames captured" in cap.stderr


def test_capture_unwritable_file(sock_path: str, tmp_path: Path) -> None:
    from clihelp import one_error_line

    res = run_cli("capture", "--socket", sock_path, "-w", str(tmp_path / "no" / "x.pcap"))
    assert "No such file or directory" in one_error_line(res, "capture")


# ----------------------------------------------------------------- the pcap module


@pytest.mark.parametrize("nanosecond", [False, True])
def test_pcap_round_trip(nanosecond: bool) -> None:
    buf = io.BytesIO()
    with pcap.PcapWriter(buf, pcap.LINKTYPE_RAW, snaplen=10, nanosecond=nanosecond) as w:
        w.write(b"0123456789abcdef", timestamp_ns=1_700_000_000_123_456_789)
        w.write(memoryview(b"xyz"), timestamp_ns=5, orig_len=40)
        assert w.count == 2
    buf.seek(0)
    reader = pcap.PcapReader(buf)
    assert reader.header == pcap.PcapHeader(snaplen=10, linktype=101, nanosecond=nanosecond,
                                            byteorder="little")
    first, second = list(reader)
    assert first.data == b"0123456789" and first.orig_len == 16
    expected = 1_700_000_000_123_456_789 if nanosecond else 1_700_000_000_123_456_000
    assert first.timestamp_ns == expected
    assert (second.data, second.orig_len) == (b"xyz", 40)
    assert second.timestamp_ns == (5 if nanosecond else 0)


def test_pcap_reads_big_endian_files() -> None:
    raw = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 1500, 1)
    raw += struct.pack(">IIII", 10, 20, 3, 3) + b"abc"
    reader = pcap.PcapReader(io.BytesIO(raw))
    assert reader.header.byteorder == "big" and reader.header.snaplen == 1500
    (rec,) = list(reader)
    assert (rec.timestamp_ns, rec.data, rec.orig_len) == (10_000_020_000, b"abc", 3)


def test_pcap_rejects_bad_input() -> None:
    with pytest.raises(pcap.PcapError, match="not a classic pcap file"):
        pcap.PcapReader(io.BytesIO(b"\x0a\x0d\x0d\x0a" + bytes(20)))  # pcapng
    with pytest.raises(pcap.PcapError, match="24-byte header"):
        pcap.PcapReader(io.BytesIO(b"\xd4\xc3\xb2\xa1"))
    good = io.BytesIO()
    pcap.PcapWriter(good).write(b"abcdef", timestamp_ns=0)
    with pytest.raises(pcap.PcapError, match="inside a 6-byte packet"):
        list(pcap.PcapReader(io.BytesIO(good.getvalue()[:-1])))
    with pytest.raises(pcap.PcapError, match="inside a record header"):
        list(pcap.PcapReader(io.BytesIO(good.getvalue()[:30])))
    with pytest.raises(ValueError, match="snaplen"):
        pcap.PcapWriter(io.BytesIO(), snaplen=0)
