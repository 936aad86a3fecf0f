"""memif_cffi.packets: checksums, addresses, ARP and ICMP echo, garbage handling.

Frames are checked with decoders written here, independently of the module.
"""

from __future__ import annotations

import random
import struct

import pytest

from memif_cffi import packets
from memif_cffi.packets import EchoReply, Responder

PEER_MAC = bytes.fromhex("02fe00000001")
OUR_MAC = bytes.fromhex("02fe00000002")
PEER_IP = bytes([192, 168, 1, 1])
OUR_IP = bytes([192, 168, 1, 2])


def ref_checksum(data: bytes) -> int:
    """Internet checksum the long way: add 16-bit words, fold carries, complement."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        while total > 0xFFFF:
            total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def build_ping(*, kind: int = 8, dst_ip: bytes = OUR_IP, dst_mac: bytes | None = OUR_MAC,
               payload: bytes = b"0123456789abcdef", ident: int = 0x1234, seq: int = 7,
               options: bytes = b"", proto: int = 1, frag: int = 0x4000,
               pad: int = 0) -> bytes:
    """An echo request (or anything close to one) built field by field."""
    icmp = bytearray(struct.pack("!BBHHH", kind, 0, 0, ident, seq) + payload)
    icmp[2:4] = ref_checksum(bytes(icmp)).to_bytes(2, "big")
    ihl = 5 + len(options) // 4
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(icmp), 99, frag,
                               17, proto, 0, PEER_IP, dst_ip) + options)
    ip[10:12] = ref_checksum(bytes(ip)).to_bytes(2, "big")
    packet = bytes(ip) + bytes(icmp)
    if dst_mac is None:
        return packet + bytes(pad)
    return dst_mac + PEER_MAC + b"\x08\x00" + packet + bytes(pad)


def build_arp(*, oper: int = 1, target: bytes = OUR_IP, pad: int = 0) -> bytes:
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, oper, PEER_MAC, PEER_IP, bytes(6),
                       target)
    return b"\xff" * 6 + PEER_MAC + b"\x08\x06" + body + bytes(pad)


def check_echo_reply(reply: bytes, request: bytes, *, eth: bool) -> None:
    """Decode ``reply`` by hand and compare it with ``request``."""
    off = 14 if eth else 0
    if eth:
        assert reply[0:6] == PEER_MAC
        assert reply[6:12] == OUR_MAC
        assert reply[12:14] == b"\x08\x00"
    ihl = (reply[off] & 0x0F) * 4
    assert reply[off] >> 4 == 4
    assert ref_checksum(reply[off : off + ihl]) == 0
    assert reply[off + 8] == 64  # fresh TTL
    assert reply[off + 9] == 1
    assert reply[off + 12 : off + 16] == OUR_IP
    assert reply[off + 16 : off + 20] == PEER_IP
    total = int.from_bytes(reply[off + 2 : off + 4], "big")
    icmp = reply[off + ihl : off + total]
    assert ref_checksum(icmp) == 0
    assert icmp[0] == 0 and icmp[1] == 0
    req_icmp = request[off + ihl : off + total]
    assert icmp[4:] == req_icmp[4:]  # identifier, sequence number, data
    assert len(reply) == len(request)


# ------------------------------------------------------------- checksum


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # the worked example of RFC 1071 (sum ddf2)
        (bytes.fromhex("0001f203f4f5f6f7"), 0x220D),
        # a classic IPv4 header with its checksum field zeroed
        (bytes.fromhex("450000730000400040110000c0a80001c0a800c7"), 0xB861),
        (b"", 0xFFFF),
        (b"\x00\x00", 0xFFFF),
        (b"\xff\xff", 0x0000),
        (b"\x01", 0xFEFF),  # odd length: padded with a zero byte
        (b"\xff\xff\x00\x01", 0xFFFE),  # carry folded back in
    ],
)
def test_checksum_vectors(data: bytes, expected: int) -> None:
    assert packets.checksum(data) == expected
    assert ref_checksum(data) == expected


def test_checksum_matches_word_sum_on_random_data() -> None:
    rnd = random.Random(1071)
    for _ in range(500):
        data = rnd.randbytes(rnd.randrange(0, 200))
        assert packets.checksum(data) == ref_checksum(data), data.hex()
        assert packets.checksum(bytearray(data)) == packets.checksum(memoryview(data))


def test_checksum_of_checksummed_header_is_zero() -> None:
    header = bytearray.fromhex("450000730000400040110000c0a80001c0a800c7")
    header[10:12] = packets.checksum(header).to_bytes(2, "big")
    assert header[10:12] == b"\xb8\x61"
    assert packets.checksum(header) == 0


# ------------------------------------------------------------ addresses


def test_address_conversions() -> None:
    assert packets.mac_bytes("02:fe:00:00:00:01") == PEER_MAC
    assert packets.mac_bytes("02-FE-0-0-0-1") == PEER_MAC
    assert packets.mac_bytes(PEER_MAC) == PEER_MAC
    assert packets.mac_str(PEER_MAC) == "02:fe:00:00:00:01"
    assert packets.ip_bytes("192.168.1.2") == OUR_IP
    assert packets.ip_bytes(OUR_IP) == OUR_IP
    assert packets.ip_str(OUR_IP) == "192.168.1.2"


@pytest.mark.parametrize("bad", ["", "02:fe:00:00:00", "02:fe:00:00:00:01:02", "02:fe:00:00:00:xy",
                                 "02fe00000001", "002:fe:00:00:00:01", b"\x01\x02"])
def test_mac_bytes_rejects(bad: str | bytes) -> None:
    with pytest.raises(ValueError):
        packets.mac_bytes(bad)


@pytest.mark.parametrize("bad", ["", "192.168.1", "192.168.1.256", "1.2.3.4.5", "::1", "a.b.c.d",
                                 b"\x01\x02\x03"])
def test_ip_bytes_rejects(bad: str | bytes) -> None:
    with pytest.raises(ValueError):
        packets.ip_bytes(bad)


def test_responder_rejects_bad_addresses() -> None:
    with pytest.raises(ValueError):
        Responder("300.1.1.1")
    with pytest.raises(ValueError):
        Responder(mac="nope")


# ------------------------------------------------------------------- ARP


def test_arp_request_layout() -> None:
    frame = packets.arp_request(src_mac="02:fe:00:00:00:01", src_ip="192.168.1.1",
                                dst_ip="192.168.1.2")
    assert frame == build_arp()


def test_arp_round_trip() -> None:
    r = Responder()
    reply = r.reply(build_arp())
    assert reply is not None and len(reply) == 42
    assert reply[0:6] == PEER_MAC and reply[6:12] == OUR_MAC and reply[12:14] == b"\x08\x06"
    htype, ptype, hlen, plen, oper, sha, spa, tha, tpa = struct.unpack("!HHBBH6s4s6s4s",
                                                                       reply[14:42])
    assert (htype, ptype, hlen, plen, oper) == (1, 0x0800, 6, 4, 2)
    assert (sha, spa, tha, tpa) == (OUR_MAC, OUR_IP, PEER_MAC, PEER_IP)
    assert packets.parse_arp_reply(reply) == ("192.168.1.2", "02:fe:00:00:00:02")
    assert (r.arp_replies, r.icmp_replies, r.ignored) == (1, 0, 0)


def test_arp_padded_request_keeps_length() -> None:
    reply = Responder().reply(build_arp(pad=18))
    assert reply is not None and len(reply) == 60
    assert packets.parse_arp_reply(reply) == ("192.168.1.2", "02:fe:00:00:00:02")


def test_arp_not_for_us_or_not_a_request() -> None:
    r = Responder()
    assert r.reply(build_arp(target=bytes([192, 168, 1, 3]))) is None
    assert r.reply(build_arp(oper=2)) is None
    assert packets.parse_arp_reply(build_arp()) is None  # a request is not a reply
    assert Responder(ip_mode=True).reply(build_arp()) is None
    assert (r.arp_replies, r.ignored) == (0, 2)


def test_arp_custom_addresses() -> None:
    r = Responder("10.0.0.5", "aa:bb:cc:dd:ee:01")
    req = packets.arp_request(src_mac="02:00:00:00:00:09", src_ip="10.0.0.9", dst_ip="10.0.0.5")
    reply = r.reply(req)
    assert reply is not None
    assert packets.parse_arp_reply(reply) == ("10.0.0.5", "aa:bb:cc:dd:ee:01")
    assert reply[0:6] == bytes.fromhex("020000000009")


# ------------------------------------------------------------------ ICMP


@pytest.mark.parametrize("payload", [b"", b"x", b"0123456789abcdef", bytes(range(256)) * 5])
def test_echo_round_trip_ethernet(payload: bytes) -> None:
    r = Responder()
    request = build_ping(payload=payload)
    reply = r.reply(request)
    assert reply is not None
    check_echo_reply(reply, request, eth=True)
    parsed = packets.parse_echo_reply(reply)
    assert parsed == EchoReply(src_ip="192.168.1.2", dst_ip="192.168.1.1", ident=0x1234, seq=7,
                               payload=payload, ttl=64)
    assert (r.arp_replies, r.icmp_replies, r.ignored) == (0, 1, 0)


def test_echo_round_trip_ip_mode() -> None:
    r = Responder(ip_mode=True)
    request = build_ping(dst_mac=None, payload=b"ip mode")
    reply = r.reply(request)
    assert reply is not None
    check_echo_reply(reply, request, eth=False)
    parsed = packets.parse_echo_reply(reply, ip_mode=True)
    assert parsed is not None and parsed.payload == b"ip mode" and parsed.seq == 7
    # Each mode rejects the other's frames.
    assert packets.parse_echo_reply(reply) is None
    assert r.reply(build_ping()) is None
    assert Responder().reply(request) is None


def test_echo_request_builder_is_answered() -> None:
    for ip_mode in (False, True):
        request = packets.echo_request(src_ip="192.168.1.1", dst_ip="192.168.1.2", ident=0xBEEF,
                                       seq=0xFFFF, payload=b"hello", ip_mode=ip_mode)
        off = 0 if ip_mode else 14
        if not ip_mode:
            assert request[0:6] == b"\xff" * 6 and request[6:12] == PEER_MAC
        assert ref_checksum(request[off : off + 20]) == 0
        assert ref_checksum(request[off + 20 :]) == 0
        assert request[off + 20] == 8
        assert request[off + 20 + 8 :] == b"hello"
        reply = Responder(ip_mode=ip_mode).reply(request)  # broadcast dst MAC is accepted
        assert reply is not None
        parsed = packets.parse_echo_reply(reply, ip_mode=ip_mode)
        assert parsed == EchoReply("192.168.1.2", "192.168.1.1", 0xBEEF, 0xFFFF, b"hello", 64)


def test_echo_request_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        packets.echo_request(src_ip="1.1.1.1", dst_ip="1.1.1.2", ident=0x10000, seq=0)
    with pytest.raises(ValueError):
        packets.echo_request(src_ip="1.1.1.1", dst_ip="1.1.1.2", ident=0, seq=-1)
    with pytest.raises(ValueError):
        packets.echo_request(src_ip="1.1.1.1", dst_ip="nope", ident=0, seq=0)
    with pytest.raises(ValueError):
        packets.echo_request(src_ip="1.1.1.1", dst_ip="1.1.1.2", ident=0, seq=0,
                             payload=bytes(70000))


def test_echo_with_ip_options_and_padding() -> None:
    options = b"\x01\x01\x01\x00"  # NOP NOP NOP EOL
    request = build_ping(options=options, pad=10)
    reply = Responder().reply(request)
    assert reply is not None
    check_echo_reply(reply, request, eth=True)
    assert reply[14 + 20 : 14 + 24] == options
    parsed = packets.parse_echo_reply(reply)
    assert parsed is not None and parsed.payload == b"0123456789abcdef"


def _corrupt(frame: bytes, index: int) -> bytes:
    out = bytearray(frame)
    out[index] ^= 0x40
    return bytes(out)


IGNORED = {
    "other ip": build_ping(dst_ip=bytes([192, 168, 1, 9])),
    "other unicast mac": build_ping(dst_mac=bytes.fromhex("02fe000000ff")),
    "echo reply": build_ping(kind=0),
    "udp": build_ping(proto=17),
    "fragment": build_ping(frag=0x2000),
    "later fragment": build_ping(frag=0x0010),
    "bad ip checksum": _corrupt(build_ping(), 14 + 10),
    "bad icmp checksum": _corrupt(build_ping(), 14 + 20 + 2),
    "bad icmp payload": _corrupt(build_ping(), 14 + 20 + 9),
    "ipv6 ethertype": build_ping()[:12] + b"\x86\xdd" + build_ping()[14:],
    "version 0": _corrupt(build_ping(), 14),
    "ihl 4": build_ping()[:14] + b"\x44" + build_ping()[15:],
    "ihl 15": build_ping()[:14] + b"\x4f" + build_ping()[15:],
    "total length too long": build_ping()[:-1],
    "multicast source mac": OUR_MAC + b"\x01" + PEER_MAC[1:] + build_ping()[12:],
    "empty": b"",
    "runt": b"\x02",
}


@pytest.mark.parametrize("name", sorted(IGNORED))
def test_not_answered(name: str) -> None:
    r = Responder()
    frame = IGNORED[name]
    assert r.reply(frame) is None
    buf = bytearray(frame)
    assert not r.reply_in_place(memoryview(buf))
    assert buf == frame  # untouched
    assert (r.icmp_replies, r.arp_replies, r.ignored) == (0, 0, 2)


def test_truncated_frames_are_ignored() -> None:
    for full, ip_mode in ((build_ping(), False), (build_ping(dst_mac=None), True),
                          (build_arp(), False)):
        r = Responder(ip_mode=ip_mode)
        for cut in range(len(full)):
            assert r.reply(full[:cut]) is None, cut
            assert packets.parse_echo_reply(full[:cut], ip_mode=ip_mode) is None
            assert packets.parse_arp_reply(full[:cut]) is None
        assert r.reply(full) is not None


def test_garbage_never_raises() -> None:
    rnd = random.Random(4242)
    seeds = [build_ping(), build_ping(dst_mac=None), build_arp(), build_ping(options=bytes(8))]
    eth, ip = Responder(), Responder(ip_mode=True)
    for i in range(3000):
        if i % 3 == 0:
            frame = rnd.randbytes(rnd.randrange(0, 120))
        else:
            mutated = bytearray(rnd.choice(seeds))
            for _ in range(rnd.randrange(1, 4)):
                mutated[rnd.randrange(len(mutated))] = rnd.randrange(256)
            frame = bytes(mutated[: rnd.randrange(len(mutated) + 1)] if i % 3 == 2 else mutated)
        for r, ip_mode in ((eth, False), (ip, True)):
            reply = r.reply(frame)
            if reply is not None:
                # Whatever is answered is a valid reply of our own making.
                assert len(reply) == len(frame)
                assert (packets.parse_echo_reply(reply, ip_mode=ip_mode) is not None
                        or packets.parse_arp_reply(reply) is not None)
            buf = bytearray(frame)
            assert r.reply_in_place(buf) == (reply is not None)
            assert bytes(buf) == (reply if reply is not None else frame)
        packets.parse_echo_reply(frame)
        packets.parse_echo_reply(frame, ip_mode=True)
        packets.parse_arp_reply(frame)
    assert eth.ignored + eth.icmp_replies + eth.arp_replies == 6000


# --------------------------------------------------------- reply in place


@pytest.mark.parametrize("frame", [build_ping(), build_ping(pad=7), build_arp(), build_arp(pad=18),
                                   build_ping(options=b"\x01\x01\x01\x00")])
def test_reply_in_place_equals_reply(frame: bytes) -> None:
    expected = Responder().reply(frame)
    assert expected is not None
    storage = bytearray(b"HEAD" + frame + b"TAIL")
    view = memoryview(storage)[4 : 4 + len(frame)]
    r = Responder()
    assert r.reply_in_place(view)
    assert bytes(view) == expected
    assert storage[:4] == b"HEAD" and storage[-4:] == b"TAIL"  # nothing outside the frame
    assert r.icmp_replies + r.arp_replies == 1


def test_reply_in_place_ip_mode() -> None:
    frame = build_ping(dst_mac=None)
    buf = bytearray(frame)
    assert Responder(ip_mode=True).reply_in_place(buf)
    assert bytes(buf) == Responder(ip_mode=True).reply(frame)


def test_reply_in_place_needs_writable_buffer() -> None:
    with pytest.raises(TypeError):
        Responder().reply_in_place(memoryview(build_ping()))


# ---------------------------------------------------------- parse replies


def test_parse_echo_reply_validates() -> None:
    good = Responder().reply(build_ping())
    assert good is not None
    assert packets.parse_echo_reply(good) is not None
    assert packets.parse_echo_reply(build_ping()) is None  # a request
    assert packets.parse_echo_reply(_corrupt(good, 14 + 10)) is None  # IP checksum
    assert packets.parse_echo_reply(_corrupt(good, len(good) - 1)) is None  # ICMP checksum
    assert packets.parse_echo_reply(build_arp()) is None
    assert packets.parse_echo_reply(memoryview(good)) == packets.parse_echo_reply(good)


def test_parse_echo_reply_ttl_and_addresses() -> None:
    # A reply built by someone else, with an odd TTL.
    request = bytearray(build_ping(dst_mac=None, payload=b"abc"))
    request[20] = 0  # echo reply
    request[22:24] = b"\x00\x00"
    request[22:24] = ref_checksum(bytes(request[20:])).to_bytes(2, "big")
    request[8] = 3
    request[10:12] = b"\x00\x00"
    request[10:12] = ref_checksum(bytes(request[:20])).to_bytes(2, "big")
    parsed = packets.parse_echo_reply(bytes(request), ip_mode=True)
    assert parsed == EchoReply("192.168.1.1", "192.168.1.2", 0x1234, 7, b"abc", 3)
