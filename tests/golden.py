"""The protocol spec §14 test vectors: a captured libmemif 3.1 handshake, byte for byte."""

from __future__ import annotations

MSG_SIZE = 128


def vector(text: str) -> bytes:
    """A §14 hex dump ("00: 02 00 ...") as a 128-byte message (the rest is zero)."""
    data = bytearray()
    for line in text.strip().splitlines():
        offset, _, hexbytes = line.partition(":")
        assert int(offset, 16) == len(data)
        data += bytes.fromhex(hexbytes)
    return bytes(data.ljust(MSG_SIZE, b"\0"))


# Spec §14: master app "master-app", if "mif-m"; slave app "slave-app", if "mif-s";
# id 7, secret "sec", ethernet, 1 + 1 rings, log2 10, buffer size 2048.
GOLDEN = {
    "hello": vector("""
        00: 02 00 6d 61 73 74 65 72 2d 61 70 70 00 00 00 00
        10: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
        20: 00 00 00 02 00 02 ff 00 ff 00 ff 00 0e 00 00 00
    """),
    "init": vector("""
        00: 03 00 00 02 07 00 00 00 00 73 65 63 00 00 00 00
        10: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
        20: 00 73 6c 61 76 65 2d 61 70 70 00 00 00 00 00 00
    """),
    "ack": vector("00: 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"),
    "add_region0": vector("00: 04 00 00 00 00 81 00 00 00 00 00 00 00 00 00 00"),
    "add_region1": vector("00: 04 00 01 00 00 00 40 00 00 00 00 00 00 00 00 00"),
    "add_ring_s2m0": vector("00: 05 00 01 00 00 00 00 00 00 00 00 00 0a 00 00 00"),
    "add_ring_m2s0": vector("00: 05 00 00 00 00 00 00 00 80 40 00 00 0a 00 00 00"),
    "connect": vector("00: 06 00 6d 69 66 2d 73 00 00 00 00 00 00 00 00 00"),
    "connected": vector("00: 07 00 6d 69 66 2d 6d 00 00 00 00 00 00 00 00 00"),
    "disconnect": vector("""
        00: 08 00 00 00 00 00 69 6e 74 65 72 66 61 63 65 20
        10: 64 65 6c 65 74 65 64 00 00 00 00 00 00 00 00 00
    """),
}
