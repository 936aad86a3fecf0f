"""External regions registered from Python with ``ffi.callback`` (memif_cffi.lowlevel).

The Pythonic classes do not wrap external regions (docs/python-api.md, "Not in
the Python API"); this checks the claim made there, that the raw layer is
enough: a slave whose buffer region is a memfd the application made and
mapped, a master that maps the received region itself, traffic both ways
through that memory, and every region handed back at disconnect.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Any

from lowpair import Database, Interface, get_details, poll_until, recv_packets, send_packets

from memif_cffi.lowlevel import ffi, lib


class Regions:
    """The application's side of the four external-region callbacks."""

    def __init__(self) -> None:
        self.maps: dict[int, tuple[mmap.mmap, int]] = {}  # address -> (mapping, fd)
        self.added: list[int] = []
        self.mapped: list[int] = []
        self.deleted: list[int] = []
        self.callbacks = (
            ffi.callback("memif_add_external_region_t", self.add),
            ffi.callback("memif_get_external_region_addr_t", self.get_addr),
            ffi.callback("memif_del_external_region_t", self.delete),
        )

    def _map(self, size: int, fd: int) -> int:
        m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        addr = int(ffi.cast("uintptr_t", ffi.from_buffer(m)))
        self.maps[addr] = (m, fd)
        return addr

    def add(self, addr: Any, size: int, fd: Any, _ctx: Any) -> int:
        memfd = os.memfd_create("app-buffers", os.MFD_CLOEXEC)
        os.ftruncate(memfd, size)
        addr[0] = ffi.cast("void *", self._map(size, memfd))
        fd[0] = memfd
        self.added.append(size)
        return 0

    def get_addr(self, size: int, fd: int, _ctx: Any) -> Any:
        self.mapped.append(size)
        return ffi.cast("void *", self._map(size, os.dup(fd)))

    def delete(self, addr: Any, size: int, fd: int, _ctx: Any) -> int:
        m, own_fd = self.maps.pop(int(ffi.cast("uintptr_t", addr)))
        m.close()
        os.close(own_fd)
        self.deleted.append(size)
        return 0

    def register(self, db: Database) -> None:
        ar, gr, dr = self.callbacks
        lib.memif_per_thread_register_external_region(db.handle, ar, gr, dr, ffi.NULL)


def _receive(intf: Interface, want: int, dbs: list[Database]) -> list[bytes]:
    got: list[bytes] = []

    def done() -> bool:
        got.extend(recv_packets(intf, 0))
        return len(got) >= want

    poll_until(dbs, done, 5.0, "traffic")
    return got


def test_external_regions_from_python(tmp_path: Path) -> None:
    path = str(tmp_path / "memif.sock")
    mregions, sregions = Regions(), Regions()
    with Database(b"ext-master") as mdb, Database(b"ext-slave") as sdb:
        mregions.register(mdb)
        sregions.register(sdb)
        master = Interface(mdb, mdb.socket(path), master=True, name=b"m", log2=6,
                           buffer_size=512)
        slave = Interface(sdb, sdb.socket(path), master=False, name=b"s", log2=6,
                          buffer_size=512)
        slave.tx_capacity = master.tx_capacity = 512
        poll_until([mdb, sdb], lambda: master.connected and slave.connected, 5.0, "connect")
        # Region 1 (the buffers) came from the application on both sides.
        assert sregions.added == [512 * 64 * 2]
        assert mregions.mapped == [512 * 64 * 2]
        for intf in (master, slave):
            regions = get_details(intf.conn).regions
            assert [r.is_external for r in regions] == [0, 1]
        sbase = next(iter(sregions.maps))
        packets = [bytes([i]) * (60 + 7 * i) for i in range(40)] + [b"j" * 1500]
        for sender, receiver in ((slave, master), (master, slave)):
            assert send_packets(sender, 0, packets) == len(packets)
            assert _receive(receiver, len(packets), [mdb, sdb]) == packets
        # The slave's packets really live in the application's memfd.
        m, _ = sregions.maps[sbase]
        assert b"j" * 512 in m[:]
        slave.delete()
        poll_until([mdb], lambda: not master.connected, 5.0, "disconnect")
        assert sregions.deleted == sregions.added and mregions.deleted == mregions.mapped
        assert not sregions.maps and not mregions.maps
        master.delete()
