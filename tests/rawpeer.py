"""A memif peer in pure Python, for tests (no dependency on the C library).

Written from the project's protocol specification (memif wire protocol 2.0):
control messages on an ``AF_UNIX`` / ``SOCK_SEQPACKET`` socket, one fd per
message as ``SCM_RIGHTS``, shared memory created by the slave with
``memfd_create`` and mapped by the master, rings driven by the head/tail
protocol, one eventfd per ring.

The module has three layers, each usable on its own by tests:

* message encoders/decoders (``encode_*``, :func:`encode`, :func:`decode`) with
  explicit little-endian formats; every encoder takes overrides so tests can
  build malformed messages, and :func:`encode_raw` builds anything at all;
* socket helpers (:func:`unix_address`, :func:`send_message`,
  :func:`recv_message`);
* :class:`RawSlave` and :class:`RawMaster`: a handshake that can be driven one
  message at a time or all at once (``handshake()``), and the data path
  (``refill``, ``send``, ``send_burst``, ``recv``, ``recv_until``).

Correctness and readability come first; speed is secondary. Everything runs
in the calling thread; the two peers of a loopback test can be stepped from
one thread or run their handshakes in two threads.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import mmap
import os
import select
import socket
import struct
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, NoReturn, TypeVar

# --------------------------------------------------------------------------
# Constants (spec §2)
# --------------------------------------------------------------------------

COOKIE = 0x3E31F20
VERSION_MAJOR = 2
VERSION_MINOR = 0
VERSION = (VERSION_MAJOR << 8) | VERSION_MINOR  # 0x0200
MSG_SIZE = 128
NAME_LEN = 32
SECRET_LEN = 24
DISCONNECT_STRING_LEN = 96
MAX_LOG2_RING_SIZE = 14
MAX_RING_INDEX = 255
MAX_REGION_INDEX = 255
CACHELINE_SIZE = 64

ADD_RING_FLAG_S2M = 1 << 0
RING_FLAG_MASK_INT = 1 << 0
DESC_FLAG_NEXT = 1 << 0

RING_HEADER_SIZE = 2 * CACHELINE_SIZE  # 128
DESC_SIZE = 16
RING_COOKIE_OFFSET = 0
RING_FLAGS_OFFSET = 4
RING_HEAD_OFFSET = 6
RING_TAIL_OFFSET = CACHELINE_SIZE  # 64

DEFAULT_LOG2_RING_SIZE = 10
DEFAULT_BUFFER_SIZE = 2048
DEFAULT_MAX_FRAME = 65535
_LITTLE_ENDIAN = sys.byteorder == "little"

# Control buffer big enough for one fd plus one SCM_CREDENTIALS record (§3.5);
# we make room for a few fds so that "more than one fd" can be detected.
_CMSG_BUFSIZE = socket.CMSG_SPACE(4 * array.array("i").itemsize) + socket.CMSG_SPACE(12)
_MSG_CMSG_CLOEXEC = getattr(socket, "MSG_CMSG_CLOEXEC", 0x40000000)


class MsgType(IntEnum):
    """Control message types (spec §4.1)."""

    NONE = 0
    ACK = 1
    HELLO = 2
    INIT = 3
    ADD_REGION = 4
    ADD_RING = 5
    CONNECT = 6
    CONNECTED = 7
    DISCONNECT = 8


class Mode(IntEnum):
    """Interface modes carried by INIT.mode."""

    ETHERNET = 0
    IP = 1
    PUNT_INJECT = 2


class Direction(IntEnum):
    """Ring direction; the values match libmemif's MEMIF_RING_S2M / MEMIF_RING_M2S."""

    S2M = 0
    M2S = 1


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


class MemifError(Exception):
    """Base class of everything this module raises on a protocol problem."""


class ProtocolError(MemifError):
    """The peer sent something the protocol does not allow (or we could not parse)."""


class PeerDisconnectedError(MemifError):
    """The peer sent DISCONNECT (``reason`` is its string) or closed the socket (``reason`` '')."""

    def __init__(self, reason: str, code: int = 0) -> None:
        super().__init__(reason or "connection closed by peer")
        self.reason = reason
        self.code = code


class HandshakeTimeoutError(MemifError):
    """No message arrived in time."""


# --------------------------------------------------------------------------
# Messages (spec §4)
# --------------------------------------------------------------------------

#: Explicit little-endian, packed layouts: type -> (struct format, field names).
#: The payload of each is followed by zeros up to MSG_SIZE.
MESSAGE_FORMATS: dict[MsgType, tuple[str, tuple[str, ...]]] = {
    MsgType.NONE: ("<H", ("type",)),
    MsgType.ACK: ("<H", ("type",)),
    MsgType.HELLO: (
        "<H32sHHHHHB",
        ("type", "name", "min_version", "max_version", "max_region",
         "max_m2s_ring", "max_s2m_ring", "max_log2_ring_size"),
    ),
    MsgType.INIT: ("<HHIB24s32s", ("type", "version", "id", "mode", "secret", "name")),
    MsgType.ADD_REGION: ("<HHQ", ("type", "index", "size")),
    MsgType.ADD_RING: (
        "<HHHHIBH",
        ("type", "flags", "index", "region", "offset", "log2_ring_size", "private_hdr_size"),
    ),
    MsgType.CONNECT: ("<H32s", ("type", "if_name")),
    MsgType.CONNECTED: ("<H32s", ("type", "if_name")),
    MsgType.DISCONNECT: ("<HI96s", ("type", "code", "string")),
}

_KNOWN_TYPES = frozenset(int(t) for t in MsgType if t != MsgType.NONE)

#: Fields that are fixed-size, NUL-padded strings.
STRING_FIELDS = frozenset({"name", "secret", "if_name", "string"})

# Sanity: payload sizes from the spec tables.
assert struct.calcsize(MESSAGE_FORMATS[MsgType.HELLO][0]) == 45
assert struct.calcsize(MESSAGE_FORMATS[MsgType.INIT][0]) == 65
assert struct.calcsize(MESSAGE_FORMATS[MsgType.ADD_REGION][0]) == 12
assert struct.calcsize(MESSAGE_FORMATS[MsgType.ADD_RING][0]) == 15
assert struct.calcsize(MESSAGE_FORMATS[MsgType.CONNECT][0]) == 34
assert struct.calcsize(MESSAGE_FORMATS[MsgType.DISCONNECT][0]) == 102


def _to_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def _from_cstr(raw: bytes) -> str:
    """Decode a NUL-padded field, bounded by its size (spec §4.3)."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def pad_message(payload: bytes, size: int = MSG_SIZE) -> bytes:
    """Zero-pad (or truncate) ``payload`` to ``size`` bytes."""
    return payload[:size].ljust(size, b"\0")


def encode_raw(msg_type: int, payload: bytes = b"", size: int = MSG_SIZE) -> bytes:
    """Any message at all: a u16 type (any value) then ``payload``, padded to ``size``."""
    return pad_message(struct.pack("<H", msg_type & 0xFFFF) + payload, size)


def encode(msg_type: MsgType | int, /, msg_size: int = MSG_SIZE, **fields: Any) -> bytes:
    """Encode a known message type from keyword fields; missing fields are zero.

    String fields accept ``str`` or ``bytes`` and are NUL-padded (a value longer
    than the field is truncated by ``struct``). ``msg_size`` other than 128 builds
    a malformed message of that length.
    """
    mtype = MsgType(msg_type)
    fmt, names = MESSAGE_FORMATS[mtype]
    unknown = set(fields) - set(names[1:])
    if unknown:
        raise TypeError(f"{mtype.name} has no field(s) {sorted(unknown)}")
    values: list[Any] = [int(mtype)]
    for name in names[1:]:
        value = fields.get(name, b"" if name in STRING_FIELDS else 0)
        values.append(_to_bytes(value) if name in STRING_FIELDS else int(value))
    return pad_message(struct.pack(fmt, *values), msg_size)


def encode_ack() -> bytes:
    """ACK: type 1, all zero otherwise."""
    return encode(MsgType.ACK)


def encode_hello(
    name: str | bytes = "",
    *,
    min_version: int = VERSION,
    max_version: int = VERSION,
    max_region: int = MAX_REGION_INDEX,
    max_m2s_ring: int = MAX_RING_INDEX,
    max_s2m_ring: int = MAX_RING_INDEX,
    max_log2_ring_size: int = MAX_LOG2_RING_SIZE,
) -> bytes:
    """HELLO as every known master sends it (255/255/255/14 by default)."""
    return encode(
        MsgType.HELLO, name=name, min_version=min_version, max_version=max_version,
        max_region=max_region, max_m2s_ring=max_m2s_ring, max_s2m_ring=max_s2m_ring,
        max_log2_ring_size=max_log2_ring_size,
    )


def encode_init(
    id: int = 0,
    *,
    mode: int = Mode.ETHERNET,
    secret: str | bytes = b"",
    name: str | bytes = "",
    version: int = VERSION,
) -> bytes:
    """INIT: interface id, mode, secret (NUL-padded, 24 bytes), slave app name."""
    return encode(MsgType.INIT, version=version, id=id, mode=mode, secret=secret, name=name)


def encode_add_region(index: int, size: int) -> bytes:
    """ADD_REGION: region index and its size in bytes (the memfd travels as SCM_RIGHTS)."""
    return encode(MsgType.ADD_REGION, index=index, size=size)


def encode_add_ring(
    direction: Direction | int,
    index: int,
    *,
    region: int = 0,
    offset: int = 0,
    log2_ring_size: int = DEFAULT_LOG2_RING_SIZE,
    private_hdr_size: int = 0,
    flags: int | None = None,
) -> bytes:
    """ADD_RING; ``flags`` defaults to the direction bit (S2M = 1, M2S = 0)."""
    if flags is None:
        flags = ADD_RING_FLAG_S2M if Direction(direction) == Direction.S2M else 0
    return encode(
        MsgType.ADD_RING, flags=flags, index=index, region=region, offset=offset,
        log2_ring_size=log2_ring_size, private_hdr_size=private_hdr_size,
    )


def encode_connect(if_name: str | bytes = "") -> bytes:
    """CONNECT (slave -> master) with the slave's interface name."""
    return encode(MsgType.CONNECT, if_name=if_name)


def encode_connected(if_name: str | bytes = "") -> bytes:
    """CONNECTED (master -> slave) with the master's interface name."""
    return encode(MsgType.CONNECTED, if_name=if_name)


def encode_disconnect(string: str | bytes = "", code: int = 0) -> bytes:
    """DISCONNECT with a reason string (96 bytes, NUL-padded) and a code (always 0 upstream)."""
    return encode(MsgType.DISCONNECT, code=code, string=string)


@dataclass
class Message:
    """A decoded control message.

    ``fields`` maps the field names of :data:`MESSAGE_FORMATS` to values; string
    fields are decoded up to the first NUL (bounded by the field size).
    ``fd`` is the file descriptor that came with it (owned by the receiver).
    ``raw`` is the exact bytes received; ``msg_flags`` recvmsg's flags.
    """

    type: int
    fields: dict[str, Any] = field(default_factory=dict)
    fd: int | None = None
    raw: bytes = b""
    msg_flags: int = 0

    @property
    def type_name(self) -> str:
        try:
            return MsgType(self.type).name
        except ValueError:
            return f"UNKNOWN({self.type})"

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    def close_fd(self) -> None:
        """Close the received fd, if any."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def decode(data: bytes, fd: int | None = None, msg_flags: int = 0) -> Message:
    """Decode a message. Unknown types decode to a Message with only ``type``.

    Does not check the length: a short message of a known type raises
    ``ProtocolError``; a long one is decoded from its first bytes. Use
    :func:`check_message` for the strict checks of spec §3.3.
    """
    if len(data) < 2:
        raise ProtocolError(f"message of {len(data)} bytes has no type")
    (mtype,) = struct.unpack_from("<H", data, 0)
    msg = Message(type=mtype, fd=fd, raw=bytes(data), msg_flags=msg_flags)
    try:
        known = MsgType(mtype)
    except ValueError:
        return msg
    fmt, names = MESSAGE_FORMATS[known]
    if len(data) < struct.calcsize(fmt):
        raise ProtocolError(f"{known.name} of {len(data)} bytes is too short")
    values = struct.unpack_from(fmt, data, 0)
    for name, value in zip(names[1:], values[1:], strict=True):
        msg.fields[name] = _from_cstr(value) if name in STRING_FIELDS else value
    return msg


def check_message(msg: Message) -> None:
    """Strict checks of spec §3.3 / §4.1: exactly 128 bytes, no truncation, known type."""
    if len(msg.raw) != MSG_SIZE:
        raise ProtocolError(f"malformed message: {len(msg.raw)} bytes")
    if msg.msg_flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        raise ProtocolError("malformed message: truncated")
    if msg.type not in _KNOWN_TYPES:
        raise ProtocolError(f"unknown message type {msg.type}")


# --------------------------------------------------------------------------
# Socket helpers (spec §3, §12.4)
# --------------------------------------------------------------------------


def unix_address(path: str) -> str:
    """The address to bind/connect for ``path``: "@name" is the abstract "\\0name".

    Python passes ``offsetof(sun_path) + len(address)`` as the address length for
    an address starting with NUL, which is the exact length the spec requires.
    """
    if path.startswith("@"):
        if len(path) == 1:
            raise ValueError("empty abstract socket name")
        return "\0" + path[1:]
    return path


def new_seqpacket_socket() -> socket.socket:
    """A non-blocking, close-on-exec AF_UNIX SOCK_SEQPACKET socket."""
    return socket.socket(
        socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
    )


def wait_readable(fd: int | socket.socket, timeout: float | None) -> bool:
    """True when ``fd`` becomes readable within ``timeout`` seconds (None = forever)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    ms = None if timeout is None else max(0, int(timeout * 1000))
    return bool(poller.poll(ms))


def send_message(sock: socket.socket, data: bytes, fd: int | None = None) -> None:
    """One message, one ``sendmsg``; ``fd`` (if any) travels as SCM_RIGHTS. MSG_NOSIGNAL."""
    ancdata = []
    if fd is not None:
        ancdata.append((socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]).tobytes()))
    sent = sock.sendmsg([data], ancdata, socket.MSG_NOSIGNAL)
    if sent != len(data):
        raise ProtocolError(f"short send: {sent} of {len(data)} bytes")


def recv_message(
    sock: socket.socket, timeout: float | None = 5.0, bufsize: int = 4 * MSG_SIZE
) -> Message | None:
    """Receive one message with its fd; None on EOF.

    Waits up to ``timeout`` seconds (raises :class:`HandshakeTimeoutError`). The data
    buffer is larger than 128 bytes so a wrong-size message is seen with its real
    length (check it with :func:`check_message`). More than one fd: all are
    closed and ProtocolError is raised.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not wait_readable(sock, remaining):
            raise HandshakeTimeoutError(f"no message within {timeout} s")
        try:
            data, ancdata, msg_flags, _ = sock.recvmsg(bufsize, _CMSG_BUFSIZE, _MSG_CMSG_CLOEXEC)
        except (BlockingIOError, InterruptedError):
            continue  # stale readiness
        break
    fds: list[int] = []
    for level, ctype, cdata in ancdata:
        if level == socket.SOL_SOCKET and ctype == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(cdata[: len(cdata) - (len(cdata) % arr.itemsize)])
            fds.extend(arr)
    if not data and not fds:
        return None
    if len(fds) > 1:
        for extra in fds:
            os.close(extra)
        raise ProtocolError(f"malformed message: {len(fds)} fds")
    if not data:
        for extra in fds:
            os.close(extra)
        return None
    return decode(data, fds[0] if fds else None, msg_flags)


# --------------------------------------------------------------------------
# Shared memory (spec §5)
# --------------------------------------------------------------------------

DESC_FORMAT = "<HHIII"  # flags, region, length, offset, metadata
assert struct.calcsize(DESC_FORMAT) == DESC_SIZE


@dataclass
class Descriptor:
    """One ring slot (spec §5.4)."""

    flags: int = 0
    region: int = 0
    length: int = 0
    offset: int = 0
    metadata: int = 0


class Region:
    """A shared-memory region: its fd, its size and its mapping."""

    def __init__(self, index: int, fd: int, size: int, mm: mmap.mmap) -> None:
        self.index = index
        self.fd = fd
        self.size = size
        self.mm = mm

    @classmethod
    def create(cls, index: int, size: int, name: str = "memif region") -> Region:
        """Slave side (§5.1): memfd, seal against shrinking, grow, map shared."""
        if size <= 0:
            raise ValueError("region size must be > 0")
        fd = os.memfd_create(f"{name} {index}", os.MFD_ALLOW_SEALING | os.MFD_CLOEXEC)
        try:
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            raise
        return cls(index, fd, size, mm)

    @classmethod
    def map(cls, index: int, fd: int, size: int) -> Region:
        """Master side (§5.1): check the file is big enough, then map ``size`` bytes.

        Takes ownership of ``fd`` on success only.
        """
        if size <= 0:
            raise ProtocolError("invalid region size: 0")
        st = os.fstat(fd)
        if st.st_size < size:
            raise ProtocolError(f"invalid region size: file has {st.st_size} < {size} bytes")
        mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        return cls(index, fd, size, mm)

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ProtocolError(f"buffer {offset}+{length} outside region {self.index}")
        return self.mm[offset : offset + length]

    def write(self, offset: int, data: bytes) -> None:
        if offset < 0 or offset + len(data) > self.size:
            raise ProtocolError(f"buffer {offset}+{len(data)} outside region {self.index}")
        self.mm[offset : offset + len(data)] = data

    def close(self) -> None:
        with contextlib.suppress(BufferError, ValueError):
            self.mm.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def ring_stride(log2_ring_size: int) -> int:
    """Bytes of one ring: header + descriptors (R = 128 + 16 N)."""
    return RING_HEADER_SIZE + DESC_SIZE * (1 << log2_ring_size)


class Ring:
    """A ring header and its descriptors inside a region (spec §5.3).

    Counter loads and stores go through ``struct`` on the shared mapping: each is
    one aligned 2-byte access, and CPython performs them in program order (on
    x86_64 that is enough for the release/acquire ordering of §6.4).
    """

    def __init__(
        self, direction: Direction, index: int, region: Region, offset: int,
        log2_size: int, eventfd: int,
    ) -> None:
        if offset < 0 or offset + ring_stride(log2_size) > region.size:
            raise ProtocolError("invalid ring: does not fit its region")
        self.direction = direction
        self.index = index
        self.region = region
        self.offset = offset
        self.log2_size = log2_size
        self.size = 1 << log2_size
        self.mask = self.size - 1
        self.eventfd = eventfd
        self._hdr = memoryview(region.mm)[offset:offset + RING_HEADER_SIZE].cast("H")
        # Private counters (§6.1): master last_head on S2M, slave last_tail on M2S.
        self.last = 0
        # Reassembly state of a chain that continues in a later burst (§7).
        self.pending: bytearray | None = None
        self.pending_oversize = False

    # header fields ---------------------------------------------------------
    # flags, head and tail are shared with a concurrently running peer, so each
    # access must be one 16-bit load or store. struct.pack_into is NOT: CPython
    # zero-fills the target bytes before packing, so the peer could read a
    # transient 0 (it did: DPDK then saw a huge free count and overran the
    # ring). A memoryview cast to "H" stores and loads with one memcpy of 2 bytes.
    def _get16(self, off: int) -> int:
        value = int(self._hdr[off // 2])
        return value if _LITTLE_ENDIAN else _bswap16(value)

    def _set16(self, off: int, value: int) -> None:
        value &= 0xFFFF
        self._hdr[off // 2] = value if _LITTLE_ENDIAN else _bswap16(value)

    def release(self) -> None:
        """Drop our view of the header (so the region can be unmapped)."""
        self._hdr.release()

    @property
    def cookie(self) -> int:
        return int(struct.unpack_from("<I", self.region.mm, self.offset + RING_COOKIE_OFFSET)[0])

    @cookie.setter
    def cookie(self, value: int) -> None:
        struct.pack_into("<I", self.region.mm, self.offset + RING_COOKIE_OFFSET, value)

    @property
    def flags(self) -> int:
        return self._get16(RING_FLAGS_OFFSET)

    @flags.setter
    def flags(self, value: int) -> None:
        self._set16(RING_FLAGS_OFFSET, value)

    @property
    def head(self) -> int:
        return self._get16(RING_HEAD_OFFSET)

    @head.setter
    def head(self, value: int) -> None:
        self._set16(RING_HEAD_OFFSET, value)

    @property
    def tail(self) -> int:
        return self._get16(RING_TAIL_OFFSET)

    @tail.setter
    def tail(self, value: int) -> None:
        self._set16(RING_TAIL_OFFSET, value)

    # descriptors -----------------------------------------------------------
    def desc_offset(self, slot: int) -> int:
        return self.offset + RING_HEADER_SIZE + DESC_SIZE * (slot & self.mask)

    def get_desc(self, slot: int) -> Descriptor:
        """Descriptor of ``slot`` (a counter value; it is masked)."""
        return Descriptor(*struct.unpack_from(DESC_FORMAT, self.region.mm, self.desc_offset(slot)))

    def set_desc(self, slot: int, desc: Descriptor) -> None:
        struct.pack_into(
            DESC_FORMAT, self.region.mm, self.desc_offset(slot),
            desc.flags, desc.region, desc.length, desc.offset, desc.metadata,
        )

    def set_desc_length_flags(self, slot: int, length: int, flags: int) -> None:
        """Write only ``length`` and ``flags`` (what a master filling M2S may change)."""
        off = self.desc_offset(slot)
        struct.pack_into("<H", self.region.mm, off, flags)
        struct.pack_into("<I", self.region.mm, off + 4, length)

    @property
    def mask_int(self) -> bool:
        """True when the consumer asked not to be signalled (flags bit 0)."""
        return bool(self.flags & RING_FLAG_MASK_INT)

    def reset(self) -> None:
        """Zero head, tail and the private state (done by both sides at connect, §6.5)."""
        self.head = 0
        self.tail = 0
        self.last = 0
        self.pending = None
        self.pending_oversize = False


def _bswap16(value: int) -> int:
    return ((value & 0xFF) << 8) | (value >> 8)


def _dist(a: int, b: int) -> int:
    """(a - b) mod 65536."""
    return (a - b) & 0xFFFF


def _close_quietly(fd: int | None) -> None:
    if fd is not None and fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)


# --------------------------------------------------------------------------
# Peers
# --------------------------------------------------------------------------


@dataclass
class PeerStats:
    """Counters a test may look at."""

    tx_frames: int = 0
    tx_slots: int = 0
    rx_frames: int = 0
    rx_slots: int = 0
    rx_oversize_dropped: int = 0
    signals_sent: int = 0
    signals_skipped: int = 0


_PeerT = TypeVar("_PeerT", bound="_Peer")


class _Peer:
    """What slave and master share: the control socket, regions, rings, data path helpers."""

    is_master = False

    def __init__(
        self,
        socket_path: str,
        *,
        id: int = 0,
        mode: int = Mode.ETHERNET,
        secret: str | bytes | None = None,
        app_name: str = "",
        if_name: str = "",
        polling: bool = False,
        timeout: float = 5.0,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.socket_path = socket_path
        self.id = id
        self.mode = int(mode)
        self.secret = _to_bytes(secret) if secret else b""
        self.app_name = app_name
        self.if_name = if_name
        self.polling = polling
        self.timeout = timeout
        self.max_frame = max_frame
        self.sock: socket.socket | None = None
        self.regions: list[Region] = []
        self.s2m: list[Ring] = []
        self.m2s: list[Ring] = []
        self.connected = False
        self.remote_app_name = ""
        self.remote_if_name = ""
        self.disconnect_reason = ""
        self.received: list[Message] = []  # every control message, in order (fds closed/moved)
        self.stats = PeerStats()

    # -- control socket --------------------------------------------------
    def _require_sock(self) -> socket.socket:
        if self.sock is None:
            raise MemifError("not connected")
        return self.sock

    def send_raw(self, data: bytes, fd: int | None = None) -> None:
        """Send arbitrary bytes as one message (for malformed-message tests)."""
        send_message(self._require_sock(), data, fd)

    def recv(self, timeout: float | None = None) -> Message:
        """Receive one control message (with its fd); packets: :meth:`recv_frames`.

        EOF raises :class:`PeerDisconnectedError` with reason ''.
        """
        msg = recv_message(self._require_sock(), self.timeout if timeout is None else timeout)
        if msg is None:
            self.disconnect_reason = ""
            raise PeerDisconnectedError("")
        self.received.append(msg)
        return msg

    def expect(self, msg_type: MsgType, timeout: float | None = None) -> Message:
        """Receive one message and require its type; DISCONNECT raises PeerDisconnectedError."""
        msg = self.recv(timeout)
        check_message(msg)
        if msg.type == MsgType.DISCONNECT:
            msg.close_fd()
            self.disconnect_reason = msg["string"]
            raise PeerDisconnectedError(msg["string"], msg["code"])
        if msg.type != msg_type:
            msg.close_fd()
            raise ProtocolError(f"expected {msg_type.name}, got {msg.type_name}")
        return msg

    def send_disconnect(self, reason: str = "interface deleted", code: int = 0) -> None:
        """Send DISCONNECT (the connection is then closed by :meth:`close`)."""
        send_message(self._require_sock(), encode_disconnect(reason, code))

    def poll_disconnect(self, timeout: float = 0.0) -> str | None:
        """After connect: None if nothing arrived, else the peer's reason ('' for EOF)."""
        if self.sock is None:
            return ""
        if not wait_readable(self.sock, timeout):
            return None
        try:
            msg = self.recv(0)
        except PeerDisconnectedError as exc:
            return exc.reason
        msg.close_fd()
        if msg.type == MsgType.DISCONNECT:
            self.disconnect_reason = msg["string"]
            return str(msg["string"])
        raise ProtocolError(f"unexpected {msg.type_name} after connect")

    # -- rings -------------------------------------------------------------
    @property
    def rx_rings(self) -> list[Ring]:
        return self.s2m if self.is_master else self.m2s

    @property
    def tx_rings(self) -> list[Ring]:
        return self.m2s if self.is_master else self.s2m

    def _apply_rx_mode(self) -> None:
        for ring in self.rx_rings:
            ring.flags = RING_FLAG_MASK_INT if self.polling else 0

    def set_polling(self, qid: int, polling: bool) -> None:
        """Set or clear MASK_INT on our rx ring ``qid`` (we are its consumer)."""
        ring = self.rx_rings[qid]
        ring.flags = (ring.flags | RING_FLAG_MASK_INT) if polling else (
            ring.flags & ~RING_FLAG_MASK_INT)

    def _check_cookies(self) -> None:
        for ring in self.s2m + self.m2s:
            if ring.cookie != COOKIE:
                raise ProtocolError(
                    f"invalid ring cookie {ring.cookie:#x} ({ring.direction.name} {ring.index})")

    def _signal(self, ring: Ring) -> None:
        """Producer side of §8: write 1 unless the consumer set MASK_INT."""
        if ring.mask_int:
            self.stats.signals_skipped += 1
            return
        try:
            os.eventfd_write(ring.eventfd, 1)
            self.stats.signals_sent += 1
        except BlockingIOError:
            pass  # counter overflow: harmless

    @staticmethod
    def _drain(ring: Ring) -> None:
        """Consumer side of §8: read the eventfd (non-blocking) before reading the counter."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.eventfd_read(ring.eventfd)

    def _region(self, index: int) -> Region:
        if index >= len(self.regions):
            raise ProtocolError(f"descriptor names region {index} of {len(self.regions)}")
        return self.regions[index]

    def _read_desc_data(self, desc: Descriptor) -> bytes:
        return self._region(desc.region).read(desc.offset, desc.length)

    def _consume(self, ring: Ring, first: int, count: int, clear_next: bool) -> list[bytes]:
        """Read ``count`` filled slots from counter ``first``; join chains (§7)."""
        frames: list[bytes] = []
        for i in range(count):
            slot = (first + i) & 0xFFFF
            desc = ring.get_desc(slot)
            data = self._read_desc_data(desc)
            if clear_next and desc.flags & DESC_FLAG_NEXT:
                ring.set_desc_length_flags(slot, desc.length, desc.flags & ~DESC_FLAG_NEXT)
            self.stats.rx_slots += 1
            if ring.pending is None:
                ring.pending = bytearray()
                ring.pending_oversize = False
            if not ring.pending_oversize:
                if len(ring.pending) + len(data) > self.max_frame:
                    ring.pending_oversize = True
                    ring.pending = bytearray()
                else:
                    ring.pending += data
            if not desc.flags & DESC_FLAG_NEXT:
                if ring.pending_oversize:
                    self.stats.rx_oversize_dropped += 1
                else:
                    frames.append(bytes(ring.pending))
                    self.stats.rx_frames += 1
                ring.pending = None
                ring.pending_oversize = False
        return frames

    def wait_rx(self, qid: int, timeout: float) -> bool:
        """Wait until rx ring ``qid``'s eventfd is readable (interrupt mode) or ``timeout``."""
        return wait_readable(self.rx_rings[qid].eventfd, timeout)

    def recv_frames(self, qid: int) -> list[bytes]:  # pragma: no cover - overridden
        raise NotImplementedError

    def recv_until(self, qid: int, count: int, timeout: float = 2.0) -> list[bytes]:
        """Receive on ``qid`` until ``count`` frames arrived or ``timeout`` passed."""
        frames: list[bytes] = []
        deadline = time.monotonic() + timeout
        while True:
            frames += self.recv_frames(qid)
            remaining = deadline - time.monotonic()
            if len(frames) >= count or remaining <= 0:
                return frames
            # Interrupt mode: the eventfd wakes us; the short bound covers polling mode.
            self.wait_rx(qid, min(remaining, 0.01))

    def send_burst(self, qid: int, frames: Iterable[bytes]) -> int:  # pragma: no cover
        raise NotImplementedError

    def send(self, qid: int, frame: bytes) -> bool:
        """Send one frame on tx queue ``qid``; False when there is no room (nothing sent)."""
        return self.send_burst(qid, [frame]) == 1

    # -- teardown ------------------------------------------------------------
    def _free_connection(self) -> None:
        for ring in self.s2m + self.m2s:
            ring.release()
            _close_quietly(ring.eventfd)
        self.s2m = []
        self.m2s = []
        for region in self.regions:
            region.close()
        self.regions = []
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.connected = False

    def close(self, reason: str | None = None) -> None:
        """Optionally send DISCONNECT(``reason``), then release everything."""
        if reason is not None and self.sock is not None:
            with contextlib.suppress(OSError):
                self.send_disconnect(reason)
        self._free_connection()

    def __enter__(self: _PeerT) -> _PeerT:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RawSlave(_Peer):
    """The slave (client): connects, creates all memory and eventfds, drives the handshake.

    Typical use::

        with RawSlave("/tmp/x.sock", id=0) as s:
            s.handshake()              # ends with every M2S ring refilled
            s.send(0, frame)
            frames = s.recv_until(0, 1)

    Step by step: ``connect()``, ``recv_hello()``, ``negotiate(hello)``,
    ``create_memory()``, ``send_init()``, ``expect_ack()``,
    ``send_add_region(i)``, ``send_add_ring(dir, i)``, ``send_connect()``,
    ``recv_connected()`` (which runs ``on_connected()``), ``refill(qid)``.
    """

    is_master = False

    def __init__(
        self,
        socket_path: str,
        *,
        id: int = 0,
        mode: int = Mode.ETHERNET,
        secret: str | bytes | None = None,
        app_name: str = "rawpeer-slave",
        if_name: str = "raw-s",
        num_s2m_rings: int = 1,
        num_m2s_rings: int = 1,
        log2_ring_size: int = DEFAULT_LOG2_RING_SIZE,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        headroom: int = 0,
        polling: bool = False,
        timeout: float = 5.0,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        super().__init__(
            socket_path, id=id, mode=mode, secret=secret, app_name=app_name, if_name=if_name,
            polling=polling, timeout=timeout, max_frame=max_frame,
        )
        if not 0 <= headroom < buffer_size:
            raise ValueError("headroom must be smaller than buffer_size")
        self.cfg_s2m = num_s2m_rings
        self.cfg_m2s = num_m2s_rings
        self.cfg_log2 = log2_ring_size
        self.buffer_size = buffer_size
        self.headroom = headroom
        # Negotiated (§9.2); default to the configuration until HELLO arrives.
        self.num_s2m = num_s2m_rings
        self.num_m2s = num_m2s_rings
        self.log2_ring_size = log2_ring_size
        self.hello: Message | None = None

    # -- layout (§5.2) ----------------------------------------------------------
    @property
    def ring_size(self) -> int:
        return 1 << self.log2_ring_size

    def ring_number(self, direction: Direction, index: int) -> int:
        """k: S2M rings first, then M2S rings."""
        return index if direction == Direction.S2M else self.num_s2m + index

    def ring_offset(self, direction: Direction, index: int) -> int:
        return self.ring_number(direction, index) * ring_stride(self.log2_ring_size)

    def region_sizes(self) -> tuple[int, int]:
        """(region 0 size, region 1 size) for the negotiated configuration."""
        rings = self.num_s2m + self.num_m2s
        return (rings * ring_stride(self.log2_ring_size),
                self.buffer_size * self.ring_size * rings)

    def buffer_offset(self, direction: Direction, index: int, slot: int) -> int:
        """Offset in region 1 of the buffer of ring (direction, index) slot ``slot``."""
        k = self.ring_number(direction, index)
        return (k * self.ring_size + (slot & (self.ring_size - 1))) * self.buffer_size

    # -- handshake steps -------------------------------------------------------
    def connect(self) -> None:
        """connect() to the master's socket."""
        sock = new_seqpacket_socket()
        try:
            sock.setblocking(True)
            sock.settimeout(self.timeout)
            sock.connect(unix_address(self.socket_path))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def recv_hello(self) -> Message:
        """Wait for the master's unsolicited HELLO."""
        hello = self.expect(MsgType.HELLO)
        hello.close_fd()
        self.hello = hello
        self.remote_app_name = hello["name"]
        return hello

    def negotiate(self, hello: Message) -> None:
        """Spec §9.2: version range, ring counts (index + 1), ring size."""
        if hello["min_version"] > VERSION or hello["max_version"] < VERSION:
            raise ProtocolError("incompatible version")
        self.num_s2m = min(int(hello["max_s2m_ring"]) + 1, self.cfg_s2m)
        self.num_m2s = min(int(hello["max_m2s_ring"]) + 1, self.cfg_m2s)
        self.log2_ring_size = min(int(hello["max_log2_ring_size"]), self.cfg_log2)

    def create_memory(self) -> None:
        """Create regions 0 and 1, ring headers, descriptors and eventfds (§5.2, §5.5, §8)."""
        size0, size1 = self.region_sizes()
        if size1 > 0xFFFFFFFF:
            raise ValueError("region 1 would exceed 2^32 - 1 bytes")
        self.regions = [Region.create(0, size0), Region.create(1, size1)]
        n = self.ring_size
        for direction, count in ((Direction.S2M, self.num_s2m), (Direction.M2S, self.num_m2s)):
            for i in range(count):
                efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
                ring = Ring(direction, i, self.regions[0], self.ring_offset(direction, i),
                            self.log2_ring_size, efd)
                ring.cookie = COOKIE
                ring.flags = 0
                ring.head = 0
                ring.tail = 0
                for slot in range(n):
                    ring.set_desc(slot, Descriptor(
                        flags=0, region=1, length=self.buffer_size,
                        offset=self.buffer_offset(direction, i, slot)))
                (self.s2m if direction == Direction.S2M else self.m2s).append(ring)

    def send_init(self, **overrides: Any) -> None:
        """INIT from our configuration; keyword overrides replace any field."""
        fields: dict[str, Any] = {"version": VERSION, "id": self.id, "mode": self.mode,
                                  "secret": self.secret, "name": self.app_name}
        fields.update(overrides)
        send_message(self._require_sock(), encode(MsgType.INIT, **fields))

    def send_add_region(self, index: int, *, with_fd: bool = True, **overrides: Any) -> None:
        """ADD_REGION for region ``index`` with its memfd."""
        region = self.regions[index]
        fields: dict[str, Any] = {"index": index, "size": region.size}
        fields.update(overrides)
        send_message(self._require_sock(), encode(MsgType.ADD_REGION, **fields),
                     region.fd if with_fd else None)

    def send_add_ring(
        self, direction: Direction, index: int, *, with_fd: bool = True, **overrides: Any
    ) -> None:
        """ADD_RING for ring (direction, index) with its eventfd."""
        ring = (self.s2m if direction == Direction.S2M else self.m2s)[index]
        fields: dict[str, Any] = {
            "flags": ADD_RING_FLAG_S2M if direction == Direction.S2M else 0,
            "index": index, "region": 0, "offset": ring.offset,
            "log2_ring_size": ring.log2_size, "private_hdr_size": 0,
        }
        fields.update(overrides)
        send_message(self._require_sock(), encode(MsgType.ADD_RING, **fields),
                     ring.eventfd if with_fd else None)

    def send_connect(self, if_name: str | None = None) -> None:
        send_message(self._require_sock(),
                     encode_connect(self.if_name if if_name is None else if_name))

    def expect_ack(self) -> Message:
        msg = self.expect(MsgType.ACK)
        msg.close_fd()
        return msg

    def recv_connected(self) -> Message:
        """Wait for CONNECTED, then run :meth:`on_connected`."""
        msg = self.expect(MsgType.CONNECTED)
        msg.close_fd()
        self.remote_if_name = msg["if_name"]
        self.on_connected()
        return msg

    def on_connected(self) -> None:
        """Step 15 of §9.1: check cookies, zero head/tail, apply our rx mode."""
        self._check_cookies()
        for ring in self.s2m + self.m2s:
            ring.reset()
        self._apply_rx_mode()
        self.connected = True

    def handshake(self, refill: bool = True) -> None:
        """The whole handshake of §9.1, then (by default) refill every M2S ring."""
        if self.sock is None:
            self.connect()
        hello = self.recv_hello()
        self.negotiate(hello)
        self.create_memory()
        self.send_init()
        self.expect_ack()
        for i in range(len(self.regions)):
            self.send_add_region(i)
            self.expect_ack()
        for i in range(self.num_s2m):
            self.send_add_ring(Direction.S2M, i)
            self.expect_ack()
        for i in range(self.num_m2s):
            self.send_add_ring(Direction.M2S, i)
            self.expect_ack()
        self.send_connect()
        self.recv_connected()
        if refill:
            for qid in range(self.num_m2s):
                self.refill(qid)

    # -- data path ---------------------------------------------------------------
    def refill(self, qid: int, headroom: int | None = None) -> int:
        """Post every free M2S slot of ``qid`` (offset = base + headroom, length = B - headroom).

        Returns the number of slots posted.
        """
        headroom = self.headroom if headroom is None else headroom
        if not 0 <= headroom < self.buffer_size:
            raise ValueError("bad headroom")
        ring = self.m2s[qid]
        head = ring.head
        count = ring.size - _dist(head, ring.last)
        for i in range(count):
            slot = (head + i) & 0xFFFF
            ring.set_desc(slot, Descriptor(
                flags=0, region=1, length=self.buffer_size - headroom,
                offset=self.buffer_offset(Direction.M2S, qid, slot) + headroom))
        if count:
            ring.head = head + count  # release store: descriptors first
        return count

    def send_burst(self, qid: int, frames: Iterable[bytes]) -> int:
        """Put frames on S2M ring ``qid``; chains when a frame exceeds the buffer size.

        Stops at the first frame that does not fit; returns how many were sent.
        Signals once per burst unless the master set MASK_INT.
        """
        ring = self.s2m[qid]
        bsize = self.buffer_size
        head = ring.head
        tail = ring.tail
        used = _dist(head, tail)
        if used > ring.size:
            raise ProtocolError(f"S2M {qid}: head - tail = {used} > {ring.size}")
        free = ring.size - used
        sent = 0
        for frame in frames:
            nslots = max(1, -(-len(frame) // bsize))
            if nslots > free:
                break
            for j in range(nslots):
                chunk = frame[j * bsize : (j + 1) * bsize]
                slot = (head + j) & 0xFFFF
                base = self.buffer_offset(Direction.S2M, qid, slot)
                self.regions[1].write(base, chunk)
                ring.set_desc(slot, Descriptor(
                    flags=DESC_FLAG_NEXT if j < nslots - 1 else 0,
                    region=1, length=len(chunk), offset=base))
            head = (head + nslots) & 0xFFFF
            free -= nslots
            sent += 1
            self.stats.tx_frames += 1
            self.stats.tx_slots += nslots
        if sent:
            ring.head = head  # publish after data and descriptors
            self._signal(ring)
        return sent

    def recv_frames(self, qid: int, refill: bool = True) -> list[bytes]:
        """Whole frames waiting on M2S ring ``qid`` (chains joined); then refill."""
        ring = self.m2s[qid]
        self._drain(ring)
        tail = ring.tail  # acquire
        head = ring.head
        n = _dist(tail, ring.last)
        if n > _dist(head, ring.last):
            raise ProtocolError(f"M2S {qid}: tail passed head (tail {tail}, head {head})")
        frames = self._consume(ring, ring.last, n, clear_next=False)
        ring.last = (ring.last + n) & 0xFFFF
        if refill and n:
            self.refill(qid)
        return frames


class RawMaster(_Peer):
    """The master (server): listens, maps what the slave sends, answers the handshake.

    Typical use::

        with RawMaster("/tmp/x.sock") as m:
            m.listen()
            m.handshake()          # accept, HELLO, ... CONNECTED
            m.send(0, frame)       # needs buffers posted by the slave
            frames = m.recv_until(0, 1)

    Step by step: ``listen()``, ``accept()``, ``send_hello()``, then
    ``handle(m.recv())`` for each message (or ``recv_init()`` / ``send_ack()`` /
    ``send_connected()`` by hand).
    """

    is_master = True

    def __init__(
        self,
        socket_path: str,
        *,
        id: int = 0,
        mode: int = Mode.ETHERNET,
        secret: str | bytes | None = None,
        app_name: str = "rawpeer-master",
        if_name: str = "raw-m",
        num_s2m_rings: int = MAX_RING_INDEX + 1,
        num_m2s_rings: int = MAX_RING_INDEX + 1,
        polling: bool = False,
        check_init: bool = True,
        timeout: float = 5.0,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        super().__init__(
            socket_path, id=id, mode=mode, secret=secret, app_name=app_name, if_name=if_name,
            polling=polling, timeout=timeout, max_frame=max_frame,
        )
        self.cfg_s2m = num_s2m_rings
        self.cfg_m2s = num_m2s_rings
        self.check_init = check_init
        self.listener: socket.socket | None = None
        self._bound_path: str | None = None
        self._pending_rings: dict[tuple[Direction, int], tuple[Message, int]] = {}
        self.init: Message | None = None

    # -- listening -------------------------------------------------------------
    def listen(self, backlog: int = 1) -> None:
        """bind() + listen(); a stale filesystem socket file is removed first."""
        lsock = new_seqpacket_socket()
        addr = unix_address(self.socket_path)
        try:
            if not addr.startswith("\0") and os.path.exists(addr):
                os.unlink(addr)
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            lsock.bind(addr)
            lsock.listen(backlog)
        except BaseException:
            lsock.close()
            raise
        self.listener = lsock
        self._bound_path = None if addr.startswith("\0") else addr

    def accept(self, timeout: float | None = None) -> None:
        """Accept one slave connection."""
        if self.listener is None:
            self.listen()
        assert self.listener is not None
        wait = self.timeout if timeout is None else timeout
        if not wait_readable(self.listener, wait):
            raise HandshakeTimeoutError(f"no slave connected within {wait} s")
        conn, _ = self.listener.accept()
        conn.setblocking(False)
        self.sock = conn

    # -- handshake steps -------------------------------------------------------
    def send_hello(self, **overrides: Any) -> None:
        """HELLO with our app name and the usual 255/255/255/14 (overridable)."""
        fields: dict[str, Any] = {
            "name": self.app_name, "min_version": VERSION, "max_version": VERSION,
            "max_region": MAX_REGION_INDEX, "max_m2s_ring": MAX_RING_INDEX,
            "max_s2m_ring": MAX_RING_INDEX, "max_log2_ring_size": MAX_LOG2_RING_SIZE,
        }
        fields.update(overrides)
        send_message(self._require_sock(), encode(MsgType.HELLO, **fields))

    def send_ack(self) -> None:
        send_message(self._require_sock(), encode_ack())

    def send_connected(self, if_name: str | None = None) -> None:
        send_message(self._require_sock(),
                     encode_connected(self.if_name if if_name is None else if_name))

    def reject(self, reason: str) -> NoReturn:
        """DISCONNECT with ``reason``, drop the connection, raise ProtocolError."""
        with contextlib.suppress(OSError):
            self.send_disconnect(reason)
        self._free_connection()
        raise ProtocolError(reason)

    def init_problem(self, msg: Message) -> str | None:
        """The §9.4 check that fails for this INIT, as its reason string (None: all pass)."""
        if msg["version"] != VERSION:
            return "incompatible version"
        if msg["id"] != self.id:
            return "unmatched interface id"
        if msg["mode"] != self.mode:
            return "mode mismatch"
        if self.secret:
            theirs = msg.raw[9:9 + SECRET_LEN]
            if not theirs.strip(b"\0"):
                return "secret required"
            if theirs != self.secret[:SECRET_LEN].ljust(SECRET_LEN, b"\0"):
                return "incorrect secret"
        return None

    def recv_init(self) -> Message:
        """Receive INIT, check it (unless ``check_init`` is False), reply ACK."""
        msg = self.expect(MsgType.INIT)
        msg.close_fd()
        self.handle(msg)
        return msg

    def handle(self, msg: Message) -> bool:
        """Process one received message of the BOUND/WAIT_INIT states and send its reply.

        Returns True once CONNECTED has been sent. Violations send DISCONNECT and
        raise ProtocolError; a DISCONNECT from the slave raises PeerDisconnectedError.
        """
        if len(msg.raw) != MSG_SIZE or msg.msg_flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            msg.close_fd()
            self.reject("malformed message")
        if msg.type not in _KNOWN_TYPES:
            msg.close_fd()
            self.reject("unknown message type")
        mtype = msg.type
        if mtype == MsgType.DISCONNECT:
            self.disconnect_reason = msg["string"]
            raise PeerDisconnectedError(msg["string"], msg["code"])
        if mtype == MsgType.INIT:
            if self.init is not None:
                self.reject("unexpected message")
            problem = self.init_problem(msg) if self.check_init else None
            if problem:
                self.reject(problem)
            self.init = msg
            self.remote_app_name = msg["name"]
            self.send_ack()
            return False
        if self.init is None:
            msg.close_fd()
            self.reject("unexpected message")
        if mtype == MsgType.ADD_REGION:
            self._add_region(msg)
            self.send_ack()
            return False
        if mtype == MsgType.ADD_RING:
            self._add_ring(msg)
            self.send_ack()
            return False
        if mtype == MsgType.CONNECT:
            self.remote_if_name = msg["if_name"]
            self._build_rings()
            self.send_connected()
            return True
        msg.close_fd()
        self.reject("unexpected message")

    def _add_region(self, msg: Message) -> None:
        fd = msg.fd
        msg.fd = None  # ownership moves to the Region (or is closed here)
        if fd is None:
            self.reject("missing region fd")
        assert fd is not None
        if msg["index"] != len(self.regions) or msg["index"] > MAX_REGION_INDEX:
            _close_quietly(fd)
            self.reject("invalid region index")
        try:
            region = Region.map(msg["index"], fd, msg["size"])
        except (ProtocolError, OSError, ValueError, OverflowError):
            _close_quietly(fd)
            self.reject("invalid region size")
        self.regions.append(region)

    def _add_ring(self, msg: Message) -> None:
        fd = msg.fd
        msg.fd = None
        if fd is None:
            self.reject("missing interrupt fd")
        assert fd is not None
        direction = Direction.S2M if msg["flags"] & ADD_RING_FLAG_S2M else Direction.M2S
        limit = self.cfg_s2m if direction == Direction.S2M else self.cfg_m2s
        problem = None
        if msg["private_hdr_size"] != 0:
            problem = "private headers not supported"
        elif msg["index"] >= limit or (direction, msg["index"]) in self._pending_rings:
            problem = "too many rings"
        elif msg["log2_ring_size"] > MAX_LOG2_RING_SIZE:
            problem = "ring size too large"
        elif (msg["region"] >= len(self.regions) or msg["offset"] % 8
              or msg["offset"] + ring_stride(msg["log2_ring_size"])
              > self.regions[msg["region"]].size):
            problem = "invalid ring"
        if problem:
            _close_quietly(fd)
            self.reject(problem)
        with contextlib.suppress(OSError):
            os.set_blocking(fd, False)
        self._pending_rings[(direction, msg["index"])] = (msg, fd)

    def _build_rings(self) -> None:
        s2m = sorted(i for d, i in self._pending_rings if d == Direction.S2M)
        m2s = sorted(i for d, i in self._pending_rings if d == Direction.M2S)
        if not s2m or not m2s or s2m != list(range(len(s2m))) or m2s != list(range(len(m2s))):
            self.reject("incomplete ring set")
        for direction, indices, target in ((Direction.S2M, s2m, self.s2m),
                                           (Direction.M2S, m2s, self.m2s)):
            for i in indices:
                msg, fd = self._pending_rings.pop((direction, i))
                target.append(Ring(direction, i, self.regions[msg["region"]], msg["offset"],
                                   msg["log2_ring_size"], fd))
        try:
            self._check_cookies()
        except ProtocolError:
            self.reject("invalid ring cookie")
        for ring in self.s2m + self.m2s:
            ring.reset()
        self._apply_rx_mode()
        self.connected = True

    def handshake(self, timeout: float | None = None) -> None:
        """Accept (if needed), send HELLO, answer messages until CONNECTED is sent."""
        if self.sock is None:
            self.accept(timeout)
        self.send_hello()
        while not self.handle(self.recv(timeout)):
            pass

    # -- data path ---------------------------------------------------------------
    def posted(self, qid: int) -> int:
        """Buffers the slave has posted on M2S ``qid`` that we may fill (head - tail)."""
        ring = self.m2s[qid]
        n = _dist(ring.head, ring.tail)
        if n > ring.size:
            raise ProtocolError(f"M2S {qid}: head - tail = {n} > {ring.size}")
        return n

    def send_burst(self, qid: int, frames: Iterable[bytes]) -> int:
        """Fill posted M2S buffers of ``qid``, chaining by the posted lengths (§7).

        Stops at the first frame that does not fit; returns how many were sent.
        Never changes a descriptor's region or offset. Signals once per burst
        unless the slave set MASK_INT.
        """
        ring = self.m2s[qid]
        tail = ring.tail
        avail = self.posted(qid)
        sent = 0
        for frame in frames:
            # Plan the slots first, so a frame that does not fit leaves no trace.
            plan: list[tuple[int, Descriptor, int, int]] = []  # slot, desc, start, length
            pos = 0
            slot = tail
            ok = True
            while True:
                if len(plan) >= avail:
                    ok = False
                    break
                desc = ring.get_desc(slot)
                capacity = desc.length
                region = self._region(desc.region)
                if desc.offset + capacity > region.size:
                    raise ProtocolError(f"M2S {qid}: posted buffer outside region")
                take = min(capacity, len(frame) - pos)
                if take == 0 and len(frame) - pos > 0:
                    ok = False  # a zero-capacity slot cannot carry data
                    break
                plan.append((slot, desc, pos, take))
                pos += take
                slot = (slot + 1) & 0xFFFF
                if pos >= len(frame):
                    break
            if not ok:
                break
            for j, (pslot, desc, start, take) in enumerate(plan):
                self.regions[desc.region].write(desc.offset, frame[start:start + take])
                ring.set_desc_length_flags(
                    pslot, take, DESC_FLAG_NEXT if j < len(plan) - 1 else 0)
            tail = slot
            avail -= len(plan)
            sent += 1
            self.stats.tx_frames += 1
            self.stats.tx_slots += len(plan)
        if sent:
            ring.tail = tail  # publish after data and descriptors
            self._signal(ring)
        return sent

    def recv_frames(self, qid: int) -> list[bytes]:
        """Whole frames waiting on S2M ring ``qid``; the slots are released (tail) at once."""
        ring = self.s2m[qid]
        self._drain(ring)
        head = ring.head  # acquire
        n = _dist(head, ring.last)
        if n > ring.size:
            raise ProtocolError(f"S2M {qid}: head - last_head = {n} > {ring.size}")
        frames = self._consume(ring, ring.last, n, clear_next=True)
        ring.last = (ring.last + n) & 0xFFFF
        if n:
            ring.tail = ring.last
        return frames

    def _free_connection(self) -> None:
        for _msg, fd in self._pending_rings.values():
            _close_quietly(fd)
        self._pending_rings = {}
        self.init = None
        super()._free_connection()

    def close(self, reason: str | None = None) -> None:
        """Close the connection (optionally with DISCONNECT) and the listener; unlink the file."""
        super().close(reason)
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        if self._bound_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._bound_path)
            self._bound_path = None


def frames_equal_report(sent: Sequence[bytes], got: Sequence[bytes]) -> str:
    """A short human description of how two frame lists differ (for assertion messages)."""
    if len(sent) != len(got):
        return f"{len(sent)} sent, {len(got)} received"
    for i, (a, b) in enumerate(zip(sent, got, strict=True)):
        if a != b:
            return f"frame {i}: {len(a)} bytes sent, {len(b)} received, differ"
    return "equal"


__all__ = [
    "COOKIE",
    "DESC_FLAG_NEXT",
    "MSG_SIZE",
    "RING_FLAG_MASK_INT",
    "VERSION",
    "Descriptor",
    "Direction",
    "HandshakeTimeoutError",
    "MemifError",
    "Message",
    "Mode",
    "MsgType",
    "PeerDisconnectedError",
    "PeerStats",
    "ProtocolError",
    "RawMaster",
    "RawSlave",
    "Region",
    "Ring",
    "check_message",
    "decode",
    "encode",
    "encode_ack",
    "encode_add_region",
    "encode_add_ring",
    "encode_connect",
    "encode_connected",
    "encode_disconnect",
    "encode_hello",
    "encode_init",
    "encode_raw",
    "recv_message",
    "ring_stride",
    "send_message",
    "unix_address",
]
