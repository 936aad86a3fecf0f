"""Classic pcap files: a writer for ``memif capture`` and a small reader.

The classic format (what ``tcpdump -w`` writes) is a 24-byte global header
followed by one 16-byte record header plus the captured bytes per packet::

    global header   magic u32, version 2.4 (u16 u16), thiszone i32, sigfigs u32,
                    snaplen u32, linktype u32
    record header   ts_sec u32, ts_frac u32, captured length u32, original length u32

``magic`` is 0xa1b2c3d4 when ``ts_frac`` counts microseconds and 0xa1b23c4d
when it counts nanoseconds; read in the other byte order, it tells the reader
that the file was written on a machine of the other endianness. Files are
written in the native byte order, as tcpdump does.

Link types used by memif: :data:`LINKTYPE_ETHERNET` for ethernet-mode
interfaces and :data:`LINKTYPE_RAW` (packets start with an IPv4 or IPv6 header)
for ip-mode ones.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO

__all__ = [
    "LINKTYPE_ETHERNET",
    "LINKTYPE_RAW",
    "MAGIC_MICRO",
    "MAGIC_NANO",
    "PcapError",
    "PcapHeader",
    "PcapReader",
    "PcapRecord",
    "PcapWriter",
    "read_pcap",
]

#: Magic number of files with microsecond timestamps.
MAGIC_MICRO = 0xA1B2C3D4
#: Magic number of files with nanosecond timestamps.
MAGIC_NANO = 0xA1B23C4D
#: Link type of Ethernet frames (DLT_EN10MB).
LINKTYPE_ETHERNET = 1
#: Link type of raw IPv4/IPv6 packets, no link-layer header.
LINKTYPE_RAW = 101

VERSION_MAJOR = 2
VERSION_MINOR = 4
#: Largest snapshot length accepted (tcpdump's limit).
MAX_SNAPLEN = 262144

_GLOBAL = struct.Struct("=IHHiIII")
_RECORD = struct.Struct("=IIII")


class PcapError(ValueError):
    """The data is not a classic pcap file, or it is cut short."""


@dataclass(frozen=True)
class PcapHeader:
    """The global header of a pcap file."""

    snaplen: int
    linktype: int
    nanosecond: bool
    byteorder: str  # "little" or "big"
    version: tuple[int, int] = (VERSION_MAJOR, VERSION_MINOR)


@dataclass(frozen=True)
class PcapRecord:
    """One packet of a pcap file.

    ``timestamp_ns`` is nanoseconds since the epoch (a microsecond file gives
    multiples of 1000); ``data`` is the captured part, ``orig_len`` the length
    the packet had on the wire.
    """

    timestamp_ns: int
    data: bytes
    orig_len: int

    @property
    def timestamp(self) -> float:
        """Seconds since the epoch."""
        return self.timestamp_ns / 1e9


class PcapWriter:
    """Write packets to a binary file object in the classic pcap format.

    Args:
        stream: a writable binary file (opened ``"wb"``, or ``sys.stdout.buffer``).
        linktype: :data:`LINKTYPE_ETHERNET`, :data:`LINKTYPE_RAW` or any other
            registered link type.
        snaplen: packets are cut to this many bytes (1-262144); the record
            keeps their original length.
        nanosecond: write nanosecond timestamps (magic 0xa1b23c4d) instead of
            microseconds.

    The global header is written at once. The writer does not close the
    stream; :meth:`close` flushes it.
    """

    def __init__(
        self,
        stream: BinaryIO,
        linktype: int = LINKTYPE_ETHERNET,
        *,
        snaplen: int = 65535,
        nanosecond: bool = False,
    ) -> None:
        if not 1 <= snaplen <= MAX_SNAPLEN:
            raise ValueError(f"snaplen must be in 1..{MAX_SNAPLEN}, not {snaplen}")
        if not 0 <= linktype <= 0xFFFF:
            raise ValueError(f"linktype must be in 0..65535, not {linktype}")
        self._stream = stream
        self.snaplen = snaplen
        self.linktype = linktype
        self.nanosecond = nanosecond
        #: Packets written so far.
        self.count = 0
        magic = MAGIC_NANO if nanosecond else MAGIC_MICRO
        stream.write(_GLOBAL.pack(magic, VERSION_MAJOR, VERSION_MINOR, 0, 0, snaplen, linktype))

    def write(self, packet: bytes | bytearray | memoryview, timestamp_ns: int | None = None,
              orig_len: int | None = None) -> None:
        """Append one packet, cut to the snapshot length.

        ``timestamp_ns`` defaults to now (:func:`time.time_ns`); ``orig_len``
        to ``len(packet)`` (give it when the packet was already cut).
        """
        data = memoryview(packet).cast("B")
        if timestamp_ns is None:
            timestamp_ns = time.time_ns()
        length = len(data) if orig_len is None else orig_len
        captured = data[: self.snaplen]
        seconds, frac = divmod(timestamp_ns, 1_000_000_000)
        if not self.nanosecond:
            frac //= 1000
        self._stream.write(_RECORD.pack(seconds & 0xFFFFFFFF, frac, len(captured), length))
        self._stream.write(captured)
        self.count += 1

    def flush(self) -> None:
        """Flush the underlying stream."""
        self._stream.flush()

    def close(self) -> None:
        """Flush the stream (the caller closes it)."""
        self.flush()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class PcapReader:
    """Iterate over the records of a classic pcap file (either byte order, µs or ns).

    ``PcapReader(stream)`` reads the global header at once (:attr:`header`);
    iterating yields :class:`PcapRecord` objects. A record cut short at the
    end of the file raises :class:`PcapError`.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        raw = stream.read(_GLOBAL.size)
        if len(raw) < _GLOBAL.size:
            raise PcapError(f"a pcap file starts with a {_GLOBAL.size}-byte header; "
                            f"got {len(raw)} bytes")
        for order, prefix in (("little", "<"), ("big", ">")):
            magic = struct.unpack_from(prefix + "I", raw)[0]
            if magic in (MAGIC_MICRO, MAGIC_NANO):
                byteorder = order
                break
        else:
            raise PcapError(f"not a classic pcap file (magic {raw[:4].hex()})")
        _, major, minor, _, _, snaplen, linktype = struct.unpack(prefix + "IHHiIII", raw)
        self._record = struct.Struct(prefix + "IIII")
        self._scale = 1 if magic == MAGIC_NANO else 1000
        self.header = PcapHeader(snaplen=snaplen, linktype=linktype & 0xFFFF,
                                 nanosecond=magic == MAGIC_NANO, byteorder=byteorder,
                                 version=(major, minor))

    def __iter__(self) -> Iterator[PcapRecord]:
        size = self._record.size
        while True:
            raw = self._stream.read(size)
            if not raw:
                return
            if len(raw) < size:
                raise PcapError("the file ends inside a record header")
            seconds, frac, caplen, orig_len = self._record.unpack(raw)
            data = self._stream.read(caplen)
            if len(data) < caplen:
                raise PcapError(f"the file ends inside a {caplen}-byte packet")
            yield PcapRecord(seconds * 1_000_000_000 + frac * self._scale, data, orig_len)


def read_pcap(path: str) -> tuple[PcapHeader, list[PcapRecord]]:
    """Read a whole pcap file: its header and every record."""
    with open(path, "rb") as stream:
        reader = PcapReader(stream)
        return reader.header, list(reader)
