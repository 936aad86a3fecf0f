"""memif_cffi.contrib.scapy: scapy's sniff / sendp / sr1 over a memif link.

The peer is an interface of the Pythonic API served by a thread (ApiPeer).
scapy is installed by the Makefile (VENV_DEPS), so these tests never skip.
"""

from __future__ import annotations

import select
import selectors
import time

import pytest
from clihelp import ApiPeer, abstract_name
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw
from scapy.sendrecv import sendp, sniff

import memif_cffi as memif
from memif_cffi.contrib.scapy import MemifSocket
from memif_cffi.packets import DEFAULT_IP, DEFAULT_MAC, DEFAULT_PEER_IP, Responder


def udp_frames(count: int, *, big: bool = True) -> list[Ether]:
    """Distinct UDP frames; the last one spans several 2048-byte buffers."""
    frames = [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
              / IP(src=f"10.0.{i}.1", dst="10.0.0.2") / UDP(sport=1000 + i, dport=2000)
              / Raw(bytes([i]) * (10 + i)) for i in range(count)]
    if big:
        frames[-1] = frames[-1] / Raw(b"\x5a" * 5000)
    return frames


def test_sendp_reaches_the_peer() -> None:
    path = abstract_name()
    frames = udp_frames(20)
    with ApiPeer(path) as peer, MemifSocket.open(path, timeout=10) as sock:
        assert repr(sock).endswith("slave connected>")
        sendp(frames, socket=sock, verbose=False)
        got = peer.wait_frames(len(frames))
        assert not sock.closed  # sendp leaves a socket it was given open
    assert [f for _, f in got] == [bytes(p) for p in frames]
    assert sock.closed


def test_sniff_receives_what_the_peer_sends() -> None:
    path = abstract_name()
    frames = udp_frames(30)
    with ApiPeer(path) as peer, MemifSocket.open(path, timeout=10) as sock:
        started = time.time()
        peer.send([bytes(p) for p in frames])
        sniffed = sniff(opened_socket=sock, count=len(frames), timeout=10)
        # Filters see dissected packets: keep the odd source networks only.
        peer.send([bytes(p) for p in frames])
        odd = sniff(opened_socket=sock, count=15, timeout=10,
                    lfilter=lambda p: UDP in p and p[UDP].sport % 2 == 1)
    assert [bytes(p) for p in sniffed] == [bytes(p) for p in frames]
    first = sniffed[0]
    assert isinstance(first, Ether)
    assert (first[IP].src, first[UDP].sport, first[UDP].dport) == ("10.0.0.1", 1000, 2000)
    assert len(sniffed[-1]) > 5000
    assert all(started - 1 <= float(p.time) <= time.time() + 1 for p in sniffed)
    assert [p[UDP].sport for p in odd] == list(range(1001, 1030, 2))


def test_sr1_against_an_icmp_responder() -> None:
    """scapy's request/answer matching works through the socket (ARP, then a ping)."""
    path = abstract_name()
    responder = Responder()
    with ApiPeer(path, on_frame=lambda _q, f: responder.reply(f)) as _peer, \
            MemifSocket.open(path, timeout=10) as sock:
        arp = sock.sr1(Ether(dst="ff:ff:ff:ff:ff:ff", src="02:fe:00:00:00:01")
                       / ARP(op="who-has", psrc=DEFAULT_PEER_IP, pdst=DEFAULT_IP),
                       timeout=5, verbose=False)
        ping = sock.sr1(Ether(dst=DEFAULT_MAC, src="02:fe:00:00:00:01")
                        / IP(src=DEFAULT_PEER_IP, dst=DEFAULT_IP) / ICMP(id=7, seq=3)
                        / Raw(b"memif"), timeout=5, verbose=False)
    assert arp is not None and ping is not None
    assert (arp[ARP].op, arp[ARP].hwsrc, arp[ARP].psrc) == (2, DEFAULT_MAC, DEFAULT_IP)
    assert (ping[IP].src, ping[ICMP].type, ping[ICMP].id, ping[ICMP].seq) == (
        DEFAULT_IP, 0, 7, 3)
    assert ping[Raw].load == b"memif"


def test_ip_mode_dissects_by_ip_version() -> None:
    path = abstract_name()
    v4 = IP(src="10.1.1.1", dst="10.1.1.2") / UDP(sport=5, dport=6) / Raw(b"four")
    v6 = IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=7, dport=8) / Raw(b"six")
    with ApiPeer(path, role=memif.Role.SLAVE, mode=memif.Mode.IP) as peer, \
            MemifSocket.open(path, role=memif.Role.MASTER, mode=memif.Mode.IP,
                             timeout=10) as sock:
        peer.wait_connected()
        peer.send([bytes(v4), bytes(v6)])
        got = sniff(opened_socket=sock, count=2, timeout=10)
        sendp([v6, v4], socket=sock, verbose=False)
        back = peer.wait_frames(2)
    assert [type(p) for p in got] == [IP, IPv6]
    assert (got[0][UDP].dport, got[1][UDP].dport) == (6, 8)
    assert [f for _, f in back] == [bytes(v6), bytes(v4)]


def test_queue_choice_and_dissection_class() -> None:
    """recv_queues / send_queue pick the queues; basecls overrides the dissector."""
    path = abstract_name()
    frames = [bytes(f) for f in udp_frames(6, big=False)]
    with ApiPeer(path, rx_queues=2, tx_queues=2) as peer, \
            MemifSocket.open(path, timeout=10, rx_queues=2, tx_queues=2, recv_queues=[1, 5],
                             send_queue=1, basecls=Raw) as sock:
        peer.send(frames[:3], qid=0)
        peer.send(frames[3:], qid=1)
        got = sniff(opened_socket=sock, count=3, timeout=10)
        assert len(sniff(opened_socket=sock, count=1, timeout=0.2)) == 0  # queue 0: not read
        sendp(Raw(b"raw payload"), socket=sock, verbose=False)
        back = peer.wait_frames(1)
    assert [type(p) for p in got] == [Raw] * 3
    assert [bytes(p) for p in got] == frames[3:]
    assert back == [(1, b"raw payload")]


def test_punt_inject_mode_gives_raw_packets() -> None:
    path = abstract_name()
    with ApiPeer(path, mode=memif.Mode.PUNT_INJECT) as peer, \
            MemifSocket.open(path, timeout=10, mode=memif.Mode.PUNT_INJECT) as sock:
        peer.send([b"\x01punted"])
        got = sniff(opened_socket=sock, count=1, timeout=10)
    assert [(type(p), bytes(p)) for p in got] == [(Raw, b"\x01punted")]


def test_fileno_wakes_a_plain_select_and_reconnects() -> None:
    """fileno() is selectable; after the peer goes and comes back, frames still arrive."""
    path = abstract_name()
    ctx = memif.Context("wrapped", reconnect_interval=0.05)
    intf = ctx.interface(ctx.socket(path), role=memif.Role.SLAVE, name="sc0")
    sock = MemifSocket(intf)
    try:
        for round_ in range(2):
            with ApiPeer(path) as peer:
                deadline = time.monotonic() + 10
                while not intf.connected:  # the socket drives the Context
                    assert time.monotonic() < deadline
                    select.select([sock], [], [], 0.05)
                    sock.recv()
                assert intf.connections == round_ + 1
                assert sock.recv() is None  # nothing sent yet: never blocks
                peer.send([bytes(udp_frames(1, big=False)[0])])
                received = None
                while received is None:
                    assert time.monotonic() < deadline
                    ready, _, _ = select.select([sock], [], [], 5)
                    assert ready == [sock]
                    received = sock.recv()
                assert received[UDP].sport == 1000
            while intf.connected:
                assert time.monotonic() < deadline
                MemifSocket.select([sock], 0.05)
                sock.recv()
    finally:
        sock.close()
    assert not intf.closed  # the socket did not own the interface
    assert sock.fileno() == -1
    assert sock.recv() is None
    ctx.close()


def test_socket_options_and_misuse() -> None:
    path = abstract_name()
    with memif.Context("opts", selector=selectors.DefaultSelector()) as ctx:
        intf = ctx.interface(ctx.socket(path), role=memif.Role.MASTER)
        with pytest.raises(ValueError, match="without selector"):
            MemifSocket(intf)
    with memif.Context("opts") as ctx:
        intf = ctx.interface(ctx.socket(path), role=memif.Role.MASTER)
        with pytest.raises(ValueError, match="burst"):
            MemifSocket(intf, burst=0)
        with pytest.raises(ValueError, match="send_timeout"):
            MemifSocket(intf, send_timeout=-1)
        with MemifSocket(intf, close_interface=True, basecls=Raw) as sock:
            assert sock.interface is intf
            assert sock.iface == intf.name
        assert intf.closed  # close_interface=True
    with pytest.raises(TimeoutError):
        MemifSocket.open(abstract_name(), timeout=0.2)


def test_send_gives_up_when_the_ring_stays_full() -> None:
    """A peer that never reads: sends fill the ring, then BlockingIOError."""
    path = abstract_name()
    with memif.Context("stuck") as peer_ctx:
        peer = peer_ctx.interface(peer_ctx.socket(path), role=memif.Role.MASTER)
        with MemifSocket.open(path, timeout=None, ring_size=8, send_timeout=0.2) as sock:
            deadline = time.monotonic() + 10
            while not (peer.connected and sock.interface.connected):
                assert time.monotonic() < deadline
                peer_ctx.poll(0.01)
                sock.interface.context.poll(0.01)
            frame = bytes(udp_frames(1, big=False)[0])
            sent = 0
            with pytest.raises(BlockingIOError, match="stayed full"):
                for _ in range(100):
                    assert sock.send(frame) == len(frame)
                    sent += 1
            assert 1 <= sent <= 8
