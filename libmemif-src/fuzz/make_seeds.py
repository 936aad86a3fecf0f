#!/usr/bin/env python3
"""Write the seed corpora for the fuzz targets: valid handshakes from both roles.

usage: make_seeds.py OUTDIR   (creates OUTDIR/msg and OUTDIR/handshake)
"""
import os
import struct
import sys

MSG = 128


def msg(mtype: int, payload: bytes = b"") -> bytes:
    return (struct.pack("<H", mtype) + payload).ljust(MSG, b"\0")


def hello(name: bytes = b"master-app") -> bytes:
    return msg(2, name.ljust(32, b"\0") + struct.pack("<HHHHHB", 0x200, 0x200, 255, 255, 255, 14))


def init(id_: int = 0, mode: int = 0, secret: bytes = b"") -> bytes:
    return msg(3, struct.pack("<HIB", 0x200, id_, mode) + secret.ljust(24, b"\0") + b"slave-app".ljust(32, b"\0"))


def add_region(index: int, size: int) -> bytes:
    return msg(4, struct.pack("<HQ", index, size))


def add_ring(s2m: bool, index: int, offset: int, log2: int = 3) -> bytes:
    return msg(5, struct.pack("<HHHIBH", 1 if s2m else 0, index, 0, offset, log2, 0))


def connect(connected: bool = False, name: bytes = b"peer") -> bytes:
    return msg(7 if connected else 6, name.ljust(32, b"\0"))


def disconnect(reason: bytes = b"bye") -> bytes:
    return msg(8, struct.pack("<I", 0) + reason.ljust(96, b"\0"))


def op_msg(m: bytes, fdkind: int = 0) -> bytes:
    return bytes([0, fdkind]) + m


def op_data(qid: int, count: int, size: int) -> bytes:
    return bytes([2, qid, count]) + struct.pack("<H", size)


def op_poke(offset: int, value: int) -> bytes:
    return bytes([1]) + struct.pack("<IH", offset, value)


def main() -> None:
    out = sys.argv[1]
    os.makedirs(f"{out}/msg", exist_ok=True)
    os.makedirs(f"{out}/handshake", exist_ok=True)
    for i, m in enumerate([hello(), init(7, 0, b"sec"), add_region(0, 33024), add_ring(True, 0, 0, 10),
                           connect(), connect(True), disconnect(), msg(1)]):
        with open(f"{out}/msg/seed{i}", "wb") as f:
            f.write(m)
    # The harness configures 2+2 rings, log2 3, buffer 1000: ring stride 256.
    stride = 128 + 16 * 8
    master_hs = (op_msg(init()) + op_msg(add_region(0, 4 * stride), 1) + op_msg(add_region(1, 1000 * 8 * 4), 1)
                 + op_msg(add_ring(True, 0, 0), 2) + op_msg(add_ring(True, 1, stride), 2)
                 + op_msg(add_ring(False, 0, 2 * stride), 2) + op_msg(add_ring(False, 1, 3 * stride), 2)
                 + op_msg(connect()))
    slave_hs = op_msg(hello()) + op_msg(msg(1)) * 7 + op_msg(connect(True))
    traffic = op_data(0, 4, 100) + op_data(1, 2, 3000) + op_poke(6, 3) + op_data(0, 1, 10) + op_poke(64, 9)
    seeds = {
        "master_ok": bytes([1]) + master_hs + traffic,
        "master_int_secret": bytes([1 | 2 | 4]) + op_msg(init(0, 0, b"fz")) + master_hs[len(op_msg(init())):] + traffic,
        "master_bad_secret": bytes([5]) + master_hs,
        "slave_ok": bytes([0]) + slave_hs + traffic,
        "slave_int": bytes([2]) + slave_hs + traffic + op_msg(disconnect()),
    }
    for name, data in seeds.items():
        with open(f"{out}/handshake/{name}", "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
