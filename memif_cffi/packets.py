"""Just enough Ethernet, ARP, IPv4 and ICMP to answer and send pings.

Shared by the example programs and the command-line tool. Everything here is
pure Python over :mod:`struct`, works on ``bytes``, ``bytearray`` and
``memoryview`` alike, and never raises on malformed input: a frame that is not
what a function looks for gives ``None`` (or ``False``).

* :class:`Responder` answers ARP requests and ICMP echo requests addressed to
  its IPv4 address, either into a new frame (:meth:`Responder.reply`) or by
  rewriting the request where it lies (:meth:`Responder.reply_in_place`, for
  zero-copy forwarding).
* :func:`arp_request`, :func:`echo_request`, :func:`parse_arp_reply` and
  :func:`parse_echo_reply` are the other side: a traffic generator's tools.

Frames are Ethernet II frames, or bare IPv4 packets with ``ip_mode=True``
(a memif interface in :attr:`memif_cffi.Mode.IP` carries no link header).
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass

__all__ = [
    "BROADCAST_MAC",
    "DEFAULT_IP",
    "DEFAULT_MAC",
    "DEFAULT_PEER_IP",
    "DEFAULT_PEER_MAC",
    "EchoReply",
    "Responder",
    "arp_request",
    "checksum",
    "echo_request",
    "ip_bytes",
    "ip_str",
    "mac_bytes",
    "mac_str",
    "parse_arp_reply",
    "parse_echo_reply",
]

BytesLike = bytes | bytearray | memoryview

#: The responder's default addresses (the getting-started setup gives the
#: other end, VPP, 192.168.1.1/24).
DEFAULT_MAC = "02:fe:00:00:00:02"
DEFAULT_IP = "192.168.1.2"
#: Default addresses of the side that sends the pings.
DEFAULT_PEER_MAC = "02:fe:00:00:00:01"
DEFAULT_PEER_IP = "192.168.1.1"
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"

ETH_HEADER = 14
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ARP_LENGTH = 28
ARP_REQUEST = 1
ARP_REPLY = 2
IP_PROTO_ICMP = 1
ICMP_ECHO_REPLY = 0
ICMP_ECHO_REQUEST = 8
ICMP_HEADER = 8
REPLY_TTL = 64

_ETH = struct.Struct("!6s6sH")
# htype, ptype, hlen, plen, oper, sender mac, sender ip, target mac, target ip
_ARP = struct.Struct("!HHBBH6s4s6s4s")
# version+ihl, tos, total length, id, flags+fragment offset, ttl, protocol,
# checksum, source, destination
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
# type, code, checksum, identifier, sequence number
_ICMP = struct.Struct("!BBHHH")

_MAC_RE = re.compile(r"[0-9A-Fa-f]{1,2}([:-][0-9A-Fa-f]{1,2}){5}")
_BROADCAST = b"\xff" * 6


# --------------------------------------------------------------- addresses


def checksum(data: BytesLike) -> int:
    """The internet checksum of RFC 1071 over ``data``.

    The ones' complement of the ones' complement sum of the big-endian 16-bit
    words; an odd length is padded with a zero byte. Over a header whose
    checksum field holds a correct checksum the result is 0.
    """
    raw = bytes(data)
    if len(raw) % 2:
        raw += b"\0"
    # 2**16 is 1 modulo 0xFFFF, so the whole buffer read as one big number is
    # congruent to the sum of its 16-bit words: the remainder is the folded
    # ones' complement sum, except that a non-zero sum of 0xFFFF shows as 0.
    value = int.from_bytes(raw, "big")
    folded = value % 0xFFFF
    if folded == 0 and value:
        folded = 0xFFFF
    return 0xFFFF - folded


def mac_bytes(mac: str | BytesLike) -> bytes:
    """A MAC address as 6 bytes, from ``"02:fe:00:00:00:01"`` (or ``-`` separated) or bytes.

    Raises ValueError for anything else.
    """
    if isinstance(mac, str):
        if not _MAC_RE.fullmatch(mac):
            raise ValueError(f"not a MAC address: {mac!r}")
        return bytes(int(part, 16) for part in re.split("[:-]", mac))
    if isinstance(mac, (bytes, bytearray, memoryview)):
        raw = bytes(mac)
        if len(raw) != 6:
            raise ValueError(f"a MAC address is 6 bytes, not {len(raw)}")
        return raw
    raise TypeError(f"a MAC address is a str or bytes, not {type(mac).__name__}")


def mac_str(mac: BytesLike) -> str:
    """6 bytes as ``"02:fe:00:00:00:01"``."""
    return ":".join(f"{b:02x}" for b in bytes(mac_bytes(mac)))


def ip_bytes(ip: str | BytesLike) -> bytes:
    """An IPv4 address as 4 bytes, from a dotted quad or 4 bytes. ValueError otherwise."""
    if isinstance(ip, str):
        try:
            return ipaddress.IPv4Address(ip).packed
        except ValueError:
            raise ValueError(f"not an IPv4 address: {ip!r}") from None
    if isinstance(ip, (bytes, bytearray, memoryview)):
        raw = bytes(ip)
        if len(raw) != 4:
            raise ValueError(f"an IPv4 address is 4 bytes, not {len(raw)}")
        return raw
    raise TypeError(f"an IPv4 address is a str or bytes, not {type(ip).__name__}")


def ip_str(ip: BytesLike) -> str:
    """4 bytes as a dotted quad."""
    return str(ipaddress.IPv4Address(ip_bytes(ip)))


# ------------------------------------------------------------------- IPv4


def _ipv4_bounds(frame: BytesLike, start: int) -> tuple[int, int] | None:
    """Header length and total length of a sane, unfragmented IPv4 packet at ``start``.

    Checks the version, the header length, the total length against the
    frame (trailing padding is allowed) and the header checksum.
    """
    if len(frame) - start < _IPV4.size:
        return None
    first = frame[start]
    ihl = (first & 0x0F) * 4
    if first >> 4 != 4 or ihl < _IPV4.size:
        return None
    total = int.from_bytes(frame[start + 2 : start + 4], "big")
    if total < ihl or start + total > len(frame):
        return None
    flags_frag = int.from_bytes(frame[start + 6 : start + 8], "big")
    if flags_frag & 0x3FFF:  # more fragments, or not the first one
        return None
    if checksum(frame[start : start + ihl]) != 0:
        return None
    return ihl, total


def _ipv4_header(src: bytes, dst: bytes, payload_len: int, *, ident: int = 0,
                 ttl: int = REPLY_TTL) -> bytes:
    header = bytearray(_IPV4.pack(0x45, 0, _IPV4.size + payload_len, ident, 0x4000, ttl,
                                  IP_PROTO_ICMP, 0, src, dst))
    struct.pack_into("!H", header, 10, checksum(header))
    return bytes(header)


# -------------------------------------------------------------- responder


class Responder:
    """Answers ARP requests and ICMP echo requests (pings) for one IPv4 address.

    Args:
        ip: our IPv4 address (dotted quad).
        mac: our MAC address (ignored in ``ip_mode``).
        ip_mode: frames are bare IPv4 packets (memif ``Mode.IP``): no Ethernet
            header, no ARP.

    In Ethernet mode a frame is answered only when it is sent to our MAC or
    to a broadcast/multicast address. An echo request is answered when it is
    a well-formed, unfragmented IPv4 packet to our address with correct IP
    and ICMP checksums. The reply swaps addresses, resets the TTL to 64, keeps
    the identifier, sequence number, payload, IP options and any trailing
    padding of the frame, and carries fresh checksums: it has the request's
    length, so it can be written over the request (:meth:`reply_in_place`).

    Counters: :attr:`arp_replies`, :attr:`icmp_replies`, :attr:`ignored`
    (frames not answered).
    """

    def __init__(self, ip: str = DEFAULT_IP, mac: str = DEFAULT_MAC, *,
                 ip_mode: bool = False) -> None:
        self.ip = ip_bytes(ip)
        self.mac = mac_bytes(mac)
        self.ip_mode = ip_mode
        self.arp_replies = 0
        self.icmp_replies = 0
        self.ignored = 0

    def __repr__(self) -> str:
        mode = "ip" if self.ip_mode else "ethernet"
        return (f"<Responder {ip_str(self.ip)} {mac_str(self.mac)} {mode}: "
                f"arp {self.arp_replies}, icmp {self.icmp_replies}, ignored {self.ignored}>")

    def reply(self, frame: BytesLike) -> bytes | None:
        """The answer to ``frame`` as a new frame, or None when it needs none."""
        buf = bytearray(frame)
        if self.reply_in_place(memoryview(buf)):
            return bytes(buf)
        return None

    def reply_in_place(self, buf: memoryview | bytearray) -> bool:
        """Rewrite the request in the writable ``buf`` into its reply.

        True when ``buf`` now holds the reply; False (and ``buf`` untouched)
        when the frame needs no answer. A read-only ``buf`` raises TypeError.
        """
        if isinstance(buf, memoryview) and buf.readonly:
            raise TypeError("reply_in_place() needs a writable buffer")
        done = self._rewrite(buf)
        if not done:
            self.ignored += 1
        return done

    def _rewrite(self, buf: memoryview | bytearray) -> bool:
        if self.ip_mode:
            return self._rewrite_echo(buf, 0)
        if len(buf) < ETH_HEADER:
            return False
        dst, src, ethertype = _ETH.unpack_from(buf, 0)
        if dst != self.mac and not dst[0] & 1:  # unicast to someone else
            return False
        if src[0] & 1:  # a group address is never a sender
            return False
        if ethertype == ETHERTYPE_ARP:
            return self._rewrite_arp(buf, src)
        if ethertype == ETHERTYPE_IPV4 and self._rewrite_echo(buf, ETH_HEADER):
            _ETH.pack_into(buf, 0, src, self.mac, ETHERTYPE_IPV4)
            return True
        return False

    def _rewrite_arp(self, buf: memoryview | bytearray, eth_src: bytes) -> bool:
        if len(buf) < ETH_HEADER + ARP_LENGTH:
            return False
        htype, ptype, hlen, plen, oper, sha, spa, _tha, tpa = _ARP.unpack_from(buf, ETH_HEADER)
        if (htype, ptype, hlen, plen, oper) != (1, ETHERTYPE_IPV4, 6, 4, ARP_REQUEST):
            return False
        if tpa != self.ip:
            return False
        _ETH.pack_into(buf, 0, eth_src, self.mac, ETHERTYPE_ARP)
        _ARP.pack_into(buf, ETH_HEADER, 1, ETHERTYPE_IPV4, 6, 4, ARP_REPLY, self.mac, self.ip,
                       sha, spa)
        self.arp_replies += 1
        return True

    def _rewrite_echo(self, buf: memoryview | bytearray, start: int) -> bool:
        bounds = _ipv4_bounds(buf, start)
        if bounds is None:
            return False
        ihl, total = bounds
        (_vihl, _tos, _len, _ident, _frag, _ttl, proto, _csum, src,
         dst) = _IPV4.unpack_from(buf, start)
        if proto != IP_PROTO_ICMP or dst != self.ip:
            return False
        icmp = start + ihl
        end = start + total
        if end - icmp < ICMP_HEADER:
            return False
        if buf[icmp] != ICMP_ECHO_REQUEST or buf[icmp + 1] != 0:
            return False
        if checksum(buf[icmp:end]) != 0:
            return False
        # ICMP: echo reply, same identifier, sequence number and data.
        buf[icmp] = ICMP_ECHO_REPLY
        struct.pack_into("!H", buf, icmp + 2, 0)
        struct.pack_into("!H", buf, icmp + 2, checksum(buf[icmp:end]))
        # IPv4: swap addresses, fresh TTL and header checksum.
        buf[start + 8] = REPLY_TTL
        buf[start + 12 : start + 16] = self.ip
        buf[start + 16 : start + 20] = src
        struct.pack_into("!H", buf, start + 10, 0)
        struct.pack_into("!H", buf, start + 10, checksum(buf[start : start + ihl]))
        self.icmp_replies += 1
        return True


# ---------------------------------------------------------- the ping side


def arp_request(*, src_mac: str, src_ip: str, dst_ip: str) -> bytes:
    """A broadcast ARP request "who has ``dst_ip``? tell ``src_ip``" (42 bytes)."""
    mac = mac_bytes(src_mac)
    return _ETH.pack(_BROADCAST, mac, ETHERTYPE_ARP) + _ARP.pack(
        1, ETHERTYPE_IPV4, 6, 4, ARP_REQUEST, mac, ip_bytes(src_ip), bytes(6), ip_bytes(dst_ip)
    )


def parse_arp_reply(frame: BytesLike) -> tuple[str, str] | None:
    """``(ip, mac)`` announced by an ARP reply frame, or None if ``frame`` is not one."""
    if len(frame) < ETH_HEADER + ARP_LENGTH:
        return None
    _dst, _src, ethertype = _ETH.unpack_from(frame, 0)
    if ethertype != ETHERTYPE_ARP:
        return None
    htype, ptype, hlen, plen, oper, sha, spa, _tha, _tpa = _ARP.unpack_from(frame, ETH_HEADER)
    if (htype, ptype, hlen, plen, oper) != (1, ETHERTYPE_IPV4, 6, 4, ARP_REPLY):
        return None
    return ip_str(spa), mac_str(sha)


def echo_request(
    *,
    src_ip: str,
    dst_ip: str,
    ident: int,
    seq: int,
    payload: BytesLike = b"",
    src_mac: str = DEFAULT_PEER_MAC,
    dst_mac: str = BROADCAST_MAC,
    ip_mode: bool = False,
    ttl: int = REPLY_TTL,
) -> bytes:
    """An ICMP echo request (ping) frame; a bare IPv4 packet with ``ip_mode``.

    ``ident`` and ``seq`` are 16-bit; the IP identification field takes
    ``seq`` too. Raises ValueError for bad addresses or values out of range.
    """
    for what, value, top in (("ident", ident, 0xFFFF), ("seq", seq, 0xFFFF), ("ttl", ttl, 255)):
        if not 0 <= value <= top:
            raise ValueError(f"{what} must be in 0..{top}, not {value}")
    data = bytes(payload)
    if _IPV4.size + ICMP_HEADER + len(data) > 0xFFFF:
        raise ValueError(f"an ICMP payload of {len(data)} bytes does not fit in an IPv4 packet")
    icmp = bytearray(_ICMP.pack(ICMP_ECHO_REQUEST, 0, 0, ident, seq) + data)
    struct.pack_into("!H", icmp, 2, checksum(icmp))
    packet = _ipv4_header(ip_bytes(src_ip), ip_bytes(dst_ip), len(icmp), ident=seq,
                          ttl=ttl) + icmp
    if ip_mode:
        return packet
    return _ETH.pack(mac_bytes(dst_mac), mac_bytes(src_mac), ETHERTYPE_IPV4) + packet


@dataclass(frozen=True)
class EchoReply:
    """An ICMP echo reply decoded by :func:`parse_echo_reply`."""

    src_ip: str
    dst_ip: str
    ident: int
    seq: int
    payload: bytes
    ttl: int


def parse_echo_reply(frame: BytesLike, *, ip_mode: bool = False) -> EchoReply | None:
    """Decode an ICMP echo reply frame (bare IPv4 with ``ip_mode``).

    None unless it is a well-formed, unfragmented IPv4 ICMP echo reply with
    correct IP and ICMP checksums.
    """
    start = 0
    if not ip_mode:
        if len(frame) < ETH_HEADER:
            return None
        if _ETH.unpack_from(frame, 0)[2] != ETHERTYPE_IPV4:
            return None
        start = ETH_HEADER
    bounds = _ipv4_bounds(frame, start)
    if bounds is None:
        return None
    ihl, total = bounds
    _vihl, _tos, _len, _id, _frag, ttl, proto, _csum, src, dst = _IPV4.unpack_from(frame, start)
    icmp = start + ihl
    end = start + total
    if proto != IP_PROTO_ICMP or end - icmp < ICMP_HEADER:
        return None
    kind, code, _icsum, ident, seq = _ICMP.unpack_from(frame, icmp)
    if kind != ICMP_ECHO_REPLY or code != 0 or checksum(frame[icmp:end]) != 0:
        return None
    return EchoReply(src_ip=ip_str(src), dst_ip=ip_str(dst), ident=ident, seq=seq,
                     payload=bytes(frame[icmp + ICMP_HEADER : end]), ttl=ttl)
