"""examples/test_app.py: the traffic generator, against the responder and a lossy peer."""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Callable

import pytest
from exhelp import Example, Peer, assert_clean_exit

import memif_cffi as memif
from memif_cffi import packets

NAME = "test_app"


@pytest.mark.parametrize("mode", ["ethernet", "ip"])
def test_pings_the_responder(start_example: Callable[..., Example], abstract_sock: str,
                             mode: str) -> None:
    app = start_example(NAME, "--role", "master", "--socket", abstract_sock, "--mode", mode,
                        "--count", "500", "--size", "100", "--burst", "16",
                        "--connect-timeout", "10")
    app.wait_for("waiting for the peer")  # listening: the slave connects at its first try
    responder = start_example("icmp_responder", "--socket", abstract_sock, "--mode", mode)
    rc, out, err = app.finish(sig=None, timeout=20)
    assert_clean_exit(rc, out, err)
    if mode == "ethernet":
        assert "192.168.1.2 is at 02:fe:00:00:00:02" in out
    else:
        assert " is at " not in out
    assert "sent 500 requests, received 500 replies, 0.0% loss" in out
    assert re.search(r"rates: [\d,]+ requests/s, [\d,]+ replies/s", out), out
    assert re.search(r"rtt min/avg/max = [\d.]+/[\d.]+/[\d.]+ ms", out), out
    assert "duplicate or late replies 0, bad replies 0, other frames 0" in out
    rc, out, err = responder.finish()
    assert_clean_exit(rc, out, err)
    assert f"answered 500 pings and {1 if mode == 'ethernet' else 0} ARP requests" in out


def _spoil_payload(reply: bytes) -> bytes:
    """Change one payload byte and fix the ICMP checksum: valid, but not what was sent."""
    out = bytearray(reply)
    icmp = 14 + 20
    out[-1] ^= 0xFF
    out[icmp + 2 : icmp + 4] = b"\0\0"
    struct.pack_into("!H", out, icmp + 2, packets.checksum(out[icmp:]))
    return bytes(out)


def test_counts_loss_duplicates_and_bad_replies(start_example: Callable[..., Example],
                                                sock_path: str) -> None:
    """A peer that drops, corrupts, repeats and alters replies, each for a fifth of them."""
    count = 50
    app = start_example(NAME, "--role", "master", "--socket", sock_path, "--count", str(count),
                        "--burst", "5", "--timeout", "0.3", "--connect-timeout", "10")
    responder = packets.Responder()
    requests = 0
    resolved = []
    with Peer(sock_path, role=memif.Role.SLAVE) as peer:
        peer.wait(app)
        # test_app answers ARP for its own address, as a peer like VPP needs.
        peer.send(packets.arp_request(src_mac=packets.DEFAULT_MAC, src_ip=packets.DEFAULT_IP,
                                      dst_ip=packets.DEFAULT_PEER_IP))
        deadline = time.monotonic() + 15
        while app.running() and time.monotonic() < deadline:
            peer.ctx.poll(0.005)
            if not peer.intf.connected:
                break
            for frame in peer.intf.rx[0].recv_burst():
                if (learned := packets.parse_arp_reply(frame)) is not None:
                    resolved.append(learned)
                    continue
                reply = responder.reply(frame)
                if reply is None:
                    continue
                if packets.parse_arp_reply(reply) is not None:
                    peer.send(reply)
                    continue
                kind = requests % 5
                requests += 1
                if kind == 1:
                    reply = reply[:-1] + bytes([reply[-1] ^ 1])  # ICMP checksum now wrong
                elif kind == 2:
                    peer.send(reply)  # and once more below: a duplicate
                elif kind == 4:
                    reply = _spoil_payload(reply)
                if kind != 0:
                    peer.send(reply)
        rc, out, err = app.finish(sig=None)
    assert_clean_exit(rc, out, err)
    assert requests == count
    assert resolved == [(packets.DEFAULT_PEER_IP, packets.DEFAULT_PEER_MAC)]
    assert f"sent {count} requests, received 20 replies, 60.0% loss" in out
    assert "duplicate or late replies 10, bad replies 10, other frames 10" in out


def test_no_reply_at_all_fails(start_example: Callable[..., Example], sock_path: str) -> None:
    app = start_example(NAME, "--role", "master", "--socket", sock_path, "--mode", "ip",
                        "--count", "3", "--timeout", "0.2", "--connect-timeout", "10")
    with Peer(sock_path, role=memif.Role.SLAVE, ip_mode=True) as peer:
        peer.wait(app)
        deadline = time.monotonic() + 10
        while app.running() and time.monotonic() < deadline:
            peer.ctx.poll(0.01)
            if not peer.intf.connected:
                break
            peer.intf.rx[0].recv_burst()  # swallow the requests
        rc, out, err = app.finish(sig=None)
    assert rc == 1
    assert "Traceback" not in err
    assert "sent 3 requests, received 0 replies, 100.0% loss" in out


def test_lost_requests_do_not_stall_the_window(start_example: Callable[..., Example],
                                               sock_path: str) -> None:
    """With 8-slot rings at most 4 requests are in flight; lost ones expire after --timeout."""
    app = start_example(NAME, "--role", "master", "--socket", sock_path, "--mode", "ip",
                        "--ring-size", "8", "--count", "30", "--burst", "2", "--timeout", "0.2",
                        "--connect-timeout", "10")
    responder = packets.Responder(ip_mode=True)
    seen = 0
    with Peer(sock_path, role=memif.Role.SLAVE, ip_mode=True) as peer:
        peer.wait(app)
        deadline = time.monotonic() + 15
        while app.running() and time.monotonic() < deadline:
            peer.ctx.poll(0.005)
            if not peer.intf.connected:
                break
            for frame in peer.intf.rx[0].recv_burst():
                seen += 1
                reply = responder.reply(frame)
                if seen > 10 and reply is not None:  # the first 10 are lost
                    peer.send(reply)
        rc, out, err = app.finish(sig=None)
    assert_clean_exit(rc, out, err)
    assert seen == 30
    assert "sent 30 requests, received 20 replies, 33.3% loss" in out
