"""Upstream-tests spec §7: memif_get_details.

Mirrors C#10 test_get_details / U#4 MemifGetDetails, and C#11
test_init_regions_and_queues / C#12 test_connect1 (which built the regions with
internal functions; here the shared memory of a real connection is read through
the addresses details reports). References: libmemif-api §5.3-§5.5, §8.6,
§11 (O4, O9, X6); protocol spec §5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lowpair import (
    Database,
    Interface,
    connected_pair,
    details_of,
    get_details,
    poll_until,
)
from rawpeer import COOKIE, RawSlave, ring_stride
from uphelpers import APP, NULL, SECRET, expect, raw_slave_up_to_rings

from memif_cffi.lowlevel import ffi, lib

GUARD = 0xA5


def test_get_details(tmp_path: Path) -> None:
    """Mirrors C#10 / U#4: every field, unconnected and connected.

    Without a secret ``secret`` is "" (the v21.01 test expected that and 3.1 failed
    it, leaving the field unset: deliberate difference O9, libmemif-api §11.2).
    """
    path = str(tmp_path / "details.sock")
    with Database(APP) as sdb, Database(b"master_app") as mdb:
        ssock = sdb.socket(path)
        slave = Interface(sdb, ssock, master=False, name=b"memif0/0", secret=SECRET, id=0)
        d = slave.details()
        assert (d.if_name, d.inst_name, d.id, d.secret) == ("memif0/0", "unit_test_app", 0,
                                                             "psst")
        assert (d.role, d.mode, d.socket_filename, d.link_up_down) == (1, 0, path, 0)
        assert (d.remote_if_name, d.remote_inst_name) == ("", "")
        assert (d.regions_num, d.rx_queues_num, d.tx_queues_num) == (0, 0, 0)
        plain = Interface(sdb, ssock, master=False, name=b"plain", id=1)
        assert plain.details().secret == ""
        plain.delete()

        master = Interface(mdb, mdb.socket(path), master=True, name=b"memif0/0m",
                           secret=SECRET, s2m=2, m2s=3, log2=9, buffer_size=1000)
        slave_cfg: dict[str, Any] = {"s2m": 2, "m2s": 3, "log2": 9, "buffer_size": 1000}
        slave.delete()
        slave = Interface(sdb, ssock, master=False, name=b"memif0/0", secret=SECRET,
                          **slave_cfg)
        poll_until([mdb, sdb], lambda: master.connected and slave.connected, 3)
        n, stride = 512, ring_stride(9)
        for intf, role, remote in ((slave, 1, ("memif0/0m", "master_app")),
                                   (master, 0, ("memif0/0", "unit_test_app"))):
            d = intf.details()
            assert d.role == role and d.link_up_down == 1 and d.error == ""
            assert (d.remote_if_name, d.remote_inst_name) == remote
            assert d.regions_num == 2
            assert [(r.index, r.size) for r in d.regions] == [(0, 5 * stride),
                                                              (1, 1000 * n * 5)]
            rx, tx = (3, 2) if role == 1 else (2, 3)
            assert (d.rx_queues_num, d.tx_queues_num) == (rx, tx)
            assert [q.qid for q in d.rx_queues] == list(range(rx))
            assert [q.qid for q in d.tx_queues] == list(range(tx))
            bsize = 1000 if role == 1 else 0
            for q in d.rx_queues + d.tx_queues:
                assert (q.ring_size, q.buffer_size, q.region) == (n, bsize, 0)


@pytest.mark.parametrize("buflen", [0, 10, 100])
def test_details_small_buffer(tmp_path: Path, buflen: int) -> None:
    """New: too small a buffer gives NOBUF_DET, NULL for what did not fit, no overrun."""
    with connected_pair(tmp_path, s2m=2, m2s=2) as pair:
        raw = ffi.new("uint8_t[]", buflen + 256)
        ffi.memmove(raw, bytes([GUARD]) * (buflen + 256), buflen + 256)
        md = ffi.new("memif_details_t *")
        buf = ffi.cast("char *", raw)
        expect(lib.memif_get_details(pair.slave.conn, md, buf, buflen), "NOBUF_DET",
               f"buflen {buflen}")
        assert ffi.buffer(raw + buflen, 256)[:] == bytes([GUARD]) * 256, "wrote past buflen"
        start = int(ffi.cast("uintptr_t", raw))
        pointers = [md.if_name, md.inst_name, md.remote_if_name, md.remote_inst_name,
                    md.secret, md.socket_filename, md.error]
        assert any(p == NULL for p in pointers) or md.regions == NULL
        for p in pointers:
            if p != NULL:
                addr = int(ffi.cast("uintptr_t", p))
                assert start <= addr < start + buflen
                assert addr + len(ffi.string(p)) < start + buflen  # terminator inside too
        for p, count, size in ((md.regions, md.regions_num, 32),
                               (md.rx_queues, md.rx_queues_num, 16),
                               (md.tx_queues, md.tx_queues_num, 16)):
            if p != NULL and count:
                addr = int(ffi.cast("uintptr_t", p))
                assert start <= addr and addr + count * size <= start + buflen
        assert (md.regions_num, md.rx_queues_num, md.tx_queues_num) == (2, 2, 2)
        assert md.link_up_down == 1


@pytest.mark.parametrize("misalign", [1, 3, 5, 7])
def test_details_alignment(tmp_path: Path, misalign: int) -> None:
    """New (X6): the details arrays are 8-byte aligned whatever the buffer's alignment."""
    with connected_pair(tmp_path, s2m=2, m2s=3) as pair:
        raw = ffi.new("char[]", 4096 + 8)
        buf = raw + misalign
        assert int(ffi.cast("uintptr_t", buf)) % 8 == misalign % 8
        md = ffi.new("memif_details_t *")
        expect(lib.memif_get_details(pair.master.conn, md, buf, 4096), "SUCCESS", "details")
        for p in (md.regions, md.rx_queues, md.tx_queues):
            assert p != NULL and int(ffi.cast("uintptr_t", p)) % 8 == 0
        d = details_of(md)
        assert [q.qid for q in d.rx_queues] == [0, 1] and [q.qid for q in d.tx_queues] == [
            0, 1, 2]


def test_details_during_failed_handshake(sock: str) -> None:
    """New (O4): details of a master whose slave is rejected never crash, link stays 0."""
    seen: list[int] = []

    def from_fd_update(fd: int, events: int) -> int:
        if master_holder:
            seen.append(get_details(master_holder[0].conn).link_up_down)
        return 0

    master_holder: list[Interface] = []
    with Database(b"m", external=True, fd_update_result=from_fd_update) as mdb, \
            Database(b"s") as sdb:
        master = Interface(mdb, mdb.socket(sock), master=True, s2m=1,
                           on_connect=lambda i: seen.append(i.details().link_up_down),
                           on_disconnect=lambda i: seen.append(i.details().link_up_down))
        master_holder.append(master)
        greedy = Interface(sdb, sdb.socket(sock), master=False, s2m=3)
        for _ in range(300):
            mdb.poll(1)
            sdb.poll(1)
            assert master.details().link_up_down == 0
            if greedy.details().error == "too many rings":
                break
        assert greedy.details().error == "too many rings"
        assert master.connects == 0 and seen and set(seen) == {0}
        greedy.delete()

        # Stopped between ADD_RING and CONNECT: rings known to the master, nothing mapped.
        with RawSlave(sock) as raw:
            raw_slave_up_to_rings([mdb], raw)
            d = master.details()
            assert d.link_up_down == 0
            assert (d.regions_num, d.rx_queues_num, d.tx_queues_num) == (0, 0, 0)
        poll_until([mdb], lambda: master.details().error == "connection closed by peer", 3)
        assert master.details().link_up_down == 0
        master_holder.clear()  # deleting: the handle is going away
        assert set(seen) == {0}


def test_region_layout_via_details(tmp_path: Path) -> None:
    """Mirrors C#11 / C#12: each ring header in shared memory, as protocol spec §5.2-§5.5."""
    s2m, m2s, log2 = 2, 3, 5
    stride = ring_stride(log2)
    path = str(tmp_path / "layout.sock")
    with Database(b"m") as mdb, Database(b"s") as sdb:
        master = Interface(mdb, mdb.socket(path), master=True, s2m=s2m, m2s=m2s, log2=log2)
        slave = Interface(sdb, sdb.socket(path), master=False, s2m=s2m, m2s=m2s, log2=log2,
                          auto_refill=False)
        poll_until([mdb, sdb], lambda: master.connected and slave.connected, 3)
        for intf in (master, slave):  # each side's own mapping of the same memory
            region0 = intf.details().regions[0]
            assert region0.size == (s2m + m2s) * (128 + 16 * (1 << log2))
            base = ffi.cast("uint8_t *", region0.addr)
            for k in range(s2m + m2s):
                header = ffi.buffer(base + k * stride, 128)[:]
                cookie = int.from_bytes(header[0:4], "little")
                flags = int.from_bytes(header[4:6], "little")
                head = int.from_bytes(header[6:8], "little")
                tail = int.from_bytes(header[64:66], "little")
                assert (cookie, flags, head, tail) == (COOKIE, 0, 0, 0), f"ring {k}"
        # After the slave's refill the M2S heads move, in the same memory.
        expect(lib.memif_refill_queue(slave.conn, 0, 0xFFFF, 0), "SUCCESS", "refill")
        base = ffi.cast("uint8_t *", master.details().regions[0].addr)
        head = int.from_bytes(ffi.buffer(base + s2m * stride + 6, 2)[:], "little")
        assert head == 1 << log2
