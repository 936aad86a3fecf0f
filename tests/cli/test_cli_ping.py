"""memif responder and memif ping: against each other and against peers made in the test."""

from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest
from clihelp import ApiPeer, abstract_name, cli_process, run_cli

import memif_cffi as memif
from memif_cffi import packets

REPLY_LINE = re.compile(
    r"^(\d+) bytes from 192\.168\.1\.2: icmp_seq=(\d+) ttl=64 time=(\d+\.\d{3}) ms$")
SUMMARY = re.compile(
    r"^(\d+) packets transmitted, (\d+) received, ([\d.]+)% packet loss, time (\d+)ms$")
RTT = re.compile(r"^rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms$")


def check_ping_output(out: str, count: int, size: int = 56) -> None:
    """Every reply line, in order, then ping's summary."""
    lines = out.splitlines()
    assert lines[0] == f"PING 192.168.1.2 (192.168.1.2) {size}({size + 28}) bytes of data " \
                       f"over memif {lines[0].rsplit(' ', 1)[1]}", lines[0]
    replies = [REPLY_LINE.match(line) for line in lines[1 : 1 + count]]
    assert all(replies), out
    assert [int(m.group(2)) for m in replies if m] == list(range(1, count + 1))
    assert all(int(m.group(1)) == size + 8 for m in replies if m)
    times = [float(m.group(3)) for m in replies if m]
    assert lines[1 + count] == "--- 192.168.1.2 memif ping statistics ---"
    summary = SUMMARY.match(lines[2 + count])
    assert summary, out
    assert summary.group(1) == summary.group(2) == str(count)
    assert summary.group(3) == "0"
    rtt = RTT.match(lines[3 + count])
    assert rtt, out
    low, avg, high, _ = map(float, rtt.groups())
    assert low == min(times) and high == max(times)
    assert low <= avg <= high
    assert len(lines) == 4 + count, out


def test_responder_and_ping_processes(sock_path: str) -> None:
    with cli_process("responder", "--socket", sock_path, "--role", "master",
                     "--count", "3") as responder:
        responder.wait_line("listening on")
        res = run_cli("ping", "--socket", sock_path, "-c", "3", "-i", "0.05")
        assert res.returncode == 0, res.stdout + res.stderr
        check_ping_output(res.stdout, 3)
        assert responder.wait() == 0
        assert "Traceback" not in responder.stderr
        out = responder.stdout
    assert "connected: peer memif-ping (memif_cffi), 1 queue" in out
    assert "echo replies 3, ARP replies 1, ignored 0, not sent (ring full) 0;" in out
    assert "frames rx 4 tx 4" in out


def test_ip_mode_abstract_socket_roles_swapped_chained_frames() -> None:
    """ip mode has no ARP; 3000-byte packets span three 1024-byte buffers."""
    name = abstract_name()
    common = ["--socket", name, "--mode", "ip", "--buffer-size", "1024", "--queues", "2"]
    with cli_process("responder", *common, "--role", "slave", "--ip", "10.0.0.9") as responder:
        res = run_cli("ping", *common, "--role", "master", "--dst", "10.0.0.9",
                      "--src-ip", "10.0.0.1", "-c", "2", "-i", "0.05", "-s", "3000")
        assert res.returncode == 0, res.stdout + res.stderr
        lines = res.stdout.splitlines()
        assert lines[0].startswith("PING 10.0.0.9 (10.0.0.9) 3000(3028) bytes of data")
        assert re.match(r"3008 bytes from 10\.0\.0\.9: icmp_seq=1 ttl=64 time=", lines[1])
        assert re.match(r"3008 bytes from 10\.0\.0\.9: icmp_seq=2 ttl=64 time=", lines[2])
        assert "2 packets transmitted, 2 received, 0% packet loss" in res.stdout
        assert responder.interrupt(signal.SIGTERM) == 0
    assert "answering for 10.0.0.9 (ip mode)" in responder.stdout
    assert "connected: peer memif-ping (memif_cffi), 2 queues" in responder.stdout
    assert "echo replies 2, ARP replies 0" in responder.stdout


def test_ping_sends_what_ping_sends(sock_path: str) -> None:
    """Against a responder made with the API: one ARP request, then the echo requests."""
    responder = packets.Responder()

    def answer(qid: int, frame: bytes) -> bytes | None:
        return responder.reply(frame)

    with ApiPeer(sock_path, name="api-responder", on_frame=answer) as peer:
        res = run_cli("ping", "--socket", sock_path, "-c", "4", "-i", "0", "-s", "100")
        frames = peer.received()
    assert res.returncode == 0, res.stdout + res.stderr
    check_ping_output(res.stdout, 4, size=100)
    assert responder.arp_replies == 1 and responder.icmp_replies == 4
    arp, *echoes = [f for _, f in frames]
    assert arp[:6] == b"\xff" * 6 and arp[12:14] == b"\x08\x06"
    assert arp[6:12] == packets.mac_bytes("02:fe:00:00:00:01")
    assert len(echoes) == 4
    idents = set()
    for seq, frame in enumerate(echoes, 1):
        assert len(frame) == 14 + 20 + 8 + 100
        assert frame[:6] == packets.mac_bytes(packets.DEFAULT_MAC)  # learnt with ARP
        assert frame[26:30] == bytes([192, 168, 1, 1]) and frame[30:34] == bytes([192, 168, 1, 2])
        icmp_type, _, _, ident, icmp_seq = struct.unpack_from("!BBHHH", frame, 34)
        assert (icmp_type, icmp_seq) == (8, seq)
        assert packets.checksum(frame[34:]) == 0
        idents.add(ident)
    assert len(idents) == 1


def test_ping_answers_arp_and_pings_for_its_own_address(sock_path: str) -> None:
    """A peer (like VPP) may ask who has --src-ip, and ping it: ping answers."""
    asked = [packets.arp_request(src_mac="02:fe:00:00:00:09", src_ip="192.168.1.2",
                                 dst_ip="192.168.1.1"),
             packets.echo_request(src_ip="192.168.1.2", dst_ip="192.168.1.1", ident=7, seq=1,
                                  payload=b"abc", src_mac="02:fe:00:00:00:09",
                                  dst_mac="02:fe:00:00:00:01")]
    responder = packets.Responder()
    replies: list[bytes] = []

    def answer(qid: int, frame: bytes) -> bytes | None:
        if packets.parse_arp_reply(frame) == ("192.168.1.1", "02:fe:00:00:00:01") or (
                packets.parse_echo_reply(frame) is not None
                and packets.parse_echo_reply(frame).ident == 7):  # type: ignore[union-attr]
            replies.append(frame)
            return None
        if frame[12:14] == b"\x08\x06" and frame[20:22] == b"\x00\x01" and not replies:
            peer.send(asked)
        return responder.reply(frame)

    with ApiPeer(sock_path, on_frame=answer) as peer:
        res = run_cli("ping", "--socket", sock_path, "-c", "2", "-i", "0.2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(replies) == 2, replies
    echo = packets.parse_echo_reply(replies[1])
    assert echo is not None and (echo.seq, echo.payload, echo.src_ip) == (1, b"abc", "192.168.1.1")


def test_ping_without_replies_exits_1(sock_path: str) -> None:
    with ApiPeer(sock_path) as peer:  # receives and drops
        res = run_cli("ping", "--socket", sock_path, "-c", "2", "-i", "0", "-W", "0.2",
                      "--dst-mac", "02:fe:00:00:00:02")
        received = peer.received()
    assert res.returncode == 1, res.stdout + res.stderr
    assert "no reply for icmp_seq=1 within 0.2 s" in res.stdout
    assert "no reply for icmp_seq=2 within 0.2 s" in res.stdout
    assert "2 packets transmitted, 0 received, 100% packet loss" in res.stdout
    assert "rtt" not in res.stdout
    assert len(received) == 2  # --dst-mac: no ARP
    assert res.stderr == ""


def test_ping_arp_failure_is_one_error_line(sock_path: str) -> None:
    from clihelp import one_error_line

    with ApiPeer(sock_path) as peer:
        res = run_cli("ping", "--socket", sock_path, "-W", "0.1")
        asked = peer.received()
    assert "no ARP reply for 192.168.1.2 from the peer" in one_error_line(res, "ping")
    assert len(asked) == 3  # three ARP requests


def test_ping_goes_on_when_the_link_goes_down(sock_path: str) -> None:
    responder = packets.Responder()

    def answer(qid: int, frame: bytes) -> bytes | None:
        return responder.reply(frame)

    with cli_process("ping", "--socket", sock_path, "--role", "master", "-c", "4",
                     "-i", "0.3", "--dst-mac", packets.DEFAULT_MAC, "--timeout", "10") as ping:
        with ApiPeer(sock_path, role=memif.Role.SLAVE, on_frame=answer):
            ping.wait_line("icmp_seq=1 ")
        assert ping.wait() == 0, ping.dump()  # one reply is enough
    assert "icmp_seq=4 not sent: the link is down" in ping.stdout
    m = re.search(SUMMARY.pattern[1:-1], ping.stdout)
    assert m and int(m.group(2)) >= 1 and int(m.group(1)) < 4, ping.stdout


def test_ping_until_interrupted(sock_path: str) -> None:
    with cli_process("responder", "--socket", sock_path, "--role", "master") as responder, \
            cli_process("ping", "--socket", sock_path, "-c", "0", "-i", "0.05") as ping:
        responder.wait_line("listening on")
        ping.wait_line("icmp_seq=3 ")
        assert ping.interrupt() == 0
        assert responder.interrupt() == 0
        assert "--- 192.168.1.2 memif ping statistics ---" in ping.stdout
        m = re.search(SUMMARY.pattern[1:-1], ping.stdout)
        assert m and int(m.group(2)) >= 3
        assert "Traceback" not in ping.stderr + responder.stderr
        assert "echo replies" in responder.stdout


@pytest.mark.parametrize("queues", [2])
def test_responder_answers_on_every_queue(sock_path: str, queues: int) -> None:
    """Requests on queue 1 are answered on queue 1; junk is counted as ignored."""
    with cli_process("responder", "--socket", sock_path, "--role", "master",
                     "--queues", str(queues), "--mac", "02:aa:bb:cc:dd:ee") as responder:
        responder.wait_line("listening on")
        with ApiPeer(sock_path, role=memif.Role.SLAVE, rx_queues=queues,
                     tx_queues=queues) as peer:
            peer.wait_connected()
            request = packets.echo_request(src_ip="192.168.1.1", dst_ip="192.168.1.2",
                                           ident=1, seq=5, payload=b"q1",
                                           dst_mac="02:aa:bb:cc:dd:ee")
            arp = packets.arp_request(src_mac="02:fe:00:00:00:01", src_ip="192.168.1.1",
                                      dst_ip="192.168.1.2")
            peer.send([request, arp], qid=1)
            peer.send([b"junk" * 20], qid=0)
            got = peer.wait_frames(2)
        assert responder.interrupt() == 0
    assert sorted(q for q, _ in got) == [1, 1]
    echo = packets.parse_echo_reply(got[0][1])
    assert echo is not None and (echo.seq, echo.payload) == (5, b"q1")
    assert got[0][1][6:12] == bytes.fromhex("02aabbccddee")
    assert packets.parse_arp_reply(got[1][1]) == ("192.168.1.2", "02:aa:bb:cc:dd:ee")
    assert "connected: peer peer0 (cli-test-peer), 2 queues" in responder.stdout
    assert "echo replies 1, ARP replies 1, ignored 1," in responder.stdout
    assert "frames rx 3 tx 2" in responder.stdout


def test_responder_duration_and_reconnect(sock_path: str) -> None:
    """A master responder outlives its peers: one status line per connect and disconnect."""
    with cli_process("responder", "--socket", sock_path, "--role", "master",
                     "--duration", "60") as responder:
        responder.wait_line("listening on")
        for n in (1, 2):
            with ApiPeer(sock_path, role=memif.Role.SLAVE, name="again") as peer:
                peer.wait_connected()
                responder.wait_line("connected: peer again", nth=n)
            responder.wait_line("disconnected", nth=n)
        assert responder.interrupt() == 0, responder.dump()
    lines = responder.out
    assert [line.split(":")[0] for line in lines[1:5]] == [
        "connected", "disconnected", "connected", "disconnected"], lines
    res = run_cli("responder", "--socket", "@" + sock_path, "--duration", "0.3")
    assert res.returncode == 0
    assert "echo replies 0," in res.stdout


def test_ping_dpdk_testpmd_icmpecho(tmp_path: Path) -> None:
    """testpmd's icmpecho mode answers ARP and pings: an independent responder."""
    from peers import require_dpdk

    require_dpdk()
    sock = str(tmp_path / "dpdk.sock")
    prefix = f"memif_cli_test_{os.getpid()}"
    cmd = [str(shutil.which("dpdk-testpmd")), "--no-huge", "-m", "512", "--no-pci",
           f"--file-prefix={prefix}",
           f"--vdev=net_memif0,role=server,socket={sock},socket-abstract=no", "--",
           "--forward-mode=icmpecho", "--total-num-mbufs=16384"]
    # An open stdin keeps testpmd running; its own session keeps our signals away from it.
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while not os.path.exists(sock):
            assert proc.poll() is None and time.monotonic() < deadline, "testpmd did not start"
            time.sleep(0.05)
        res = run_cli("ping", "--socket", sock, "-c", "3", "-i", "0.05")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
    assert res.returncode == 0, res.stdout + res.stderr
    check_ping_output(res.stdout, 3)
