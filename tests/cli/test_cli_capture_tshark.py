"""memif capture files read back by tshark (Wireshark's command-line reader).

tshark is an independent pcap reader and dissector: it must find every frame
with its length, time and protocol fields. The test is skipped only when
tshark is missing and MEMIF_REQUIRE_PEERS is not 1; CI installs tshark
(.ci/run) and sets MEMIF_REQUIRE_PEERS=1, so there it fails instead.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest
from clihelp import ApiPeer, cli_process

import memif_cffi as memif
from memif_cffi.packets import checksum


def require_tshark() -> str:
    exe = shutil.which("tshark")
    if exe is not None:
        return exe
    why = "tshark is not installed"
    if os.environ.get("MEMIF_REQUIRE_PEERS") == "1":
        pytest.fail(f"{why}; MEMIF_REQUIRE_PEERS=1 requires it")
    pytest.skip(why)


def ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An IPv4/UDP packet with a correct header checksum (UDP checksum 0: none)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                                   bytes(map(int, src.split("."))),
                                   bytes(map(int, dst.split(".")))))
    header[10:12] = struct.pack("!H", checksum(bytes(header)))
    return bytes(header) + udp


def ether(packet: bytes) -> bytes:
    return bytes.fromhex("02fe00000001" "02fe00000002" "0800") + packet


def tshark_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)  # tshark is not ours (make sanitize preloads ASan)
    return env


def tshark_fields(exe: str, path: Path, *fields: str) -> list[list[str]]:
    cmd = [exe, "-r", str(path), "-T", "fields", "-E", "separator=|"]
    for field in fields:
        cmd += ["-e", field]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=tshark_env())
    assert res.returncode == 0, res.stderr
    return [line.split("|") for line in res.stdout.splitlines()]


def packets_for_test() -> list[bytes]:
    """UDP packets of growing size; the last ones are chained over several buffers."""
    sizes = (0, 18, 400, 1472, 3000, 8000)
    return [ipv4_udp(f"10.0.{i}.1", f"10.9.{i}.2", 4000 + i, 5000 + i, bytes([i]) * size)
            for i, size in enumerate(sizes)]


def test_tshark_reads_an_ethernet_capture(tmp_path: Path) -> None:
    exe = require_tshark()
    sock_path = str(tmp_path / "memif.sock")
    frames = [ether(p) for p in packets_for_test()]
    out = tmp_path / "eth.pcap"
    before = time.time()
    with ApiPeer(sock_path) as peer, cli_process(
            "capture", "--socket", sock_path, "-w", str(out), "-c", str(len(frames))) as cap:
        peer.wait_connected()
        peer.send(frames)
        assert cap.wait() == 0, cap.dump()
    after = time.time()
    rows = tshark_fields(exe, out, "frame.encap_type", "frame.len", "frame.cap_len",
                         "frame.time_epoch", "eth.src", "eth.type", "ip.src", "ip.dst",
                         "udp.srcport", "udp.dstport", "udp.length")
    assert len(rows) == len(frames), rows
    for i, (row, frame) in enumerate(zip(rows, frames, strict=True)):
        encap, length, cap_len, stamp, eth_src, eth_type, src, dst, sport, dport, ulen = row
        assert encap == "1"  # Ethernet
        assert int(length) == int(cap_len) == len(frame)
        assert before - 1 <= float(stamp) <= after + 1
        assert (eth_src, int(eth_type, 16)) == ("02:fe:00:00:00:02", 0x0800)
        assert (src, dst) == (f"10.0.{i}.1", f"10.9.{i}.2")
        assert (int(sport), int(dport), int(ulen)) == (4000 + i, 5000 + i, len(frame) - 34)
    # tshark's own consistency checks: no malformed or truncated packet.
    res = subprocess.run([exe, "-r", str(out), "-Y", "_ws.malformed || _ws.expert"],
                         capture_output=True, text=True, timeout=60, env=tshark_env())
    assert res.returncode == 0 and res.stdout.strip() == "", res.stdout + res.stderr


def test_tshark_reads_a_raw_ip_capture_with_nanoseconds(tmp_path: Path) -> None:
    """ip mode: link type RAW; --snaplen cuts frames, tshark still sees the real length."""
    exe = require_tshark()
    sock_path = str(tmp_path / "memif.sock")
    packets = packets_for_test()
    out = tmp_path / "ip.pcap"
    with ApiPeer(sock_path, role=memif.Role.SLAVE, mode=memif.Mode.IP) as peer, cli_process(
            "capture", "--socket", sock_path, "--role", "master", "--mode", "ip",
            "-w", str(out), "-c", str(len(packets)), "--snaplen", "1000",
            "--nanosecond") as cap:
        peer.wait_connected()
        peer.send(packets)
        assert cap.wait() == 0, cap.dump()
    rows = tshark_fields(exe, out, "frame.encap_type", "frame.len", "frame.cap_len",
                         "frame.time_epoch", "ip.src", "udp.dstport")
    assert len(rows) == len(packets), rows
    for i, (row, packet) in enumerate(zip(rows, packets, strict=True)):
        encap, length, cap_len, stamp, src, dport = row
        assert encap == "7"  # raw IP
        assert (int(length), int(cap_len)) == (len(packet), min(len(packet), 1000))
        assert len(stamp.split(".")[1]) == 9  # nanosecond resolution
        assert (src, int(dport)) == (f"10.0.{i}.1", 5000 + i)
