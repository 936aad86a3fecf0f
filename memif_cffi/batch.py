"""PacketBatch: contiguous storage for a burst of packets.

The bulk data path (:meth:`RxQueue.recv_into <memif_cffi.RxQueue.recv_into>`,
:meth:`TxQueue.send_batch <memif_cffi.TxQueue.send_batch>`) moves a whole
burst with one C call and creates no Python object per packet. A batch is
``capacity`` fixed-size slots in one block of memory plus an array of lengths:
packet ``i`` occupies ``buffer[i * stride : i * stride + lengths[i]]``.

Both the block and the lengths are exposed through the buffer protocol
(:attr:`PacketBatch.buffer`, :attr:`PacketBatch.lengths`), so numpy or
``struct.pack_into`` can fill or inspect a burst in place.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from memif_cffi._libmemif import ffi, lib

__all__ = ["MAX_PACKET", "PacketBatch"]

#: Largest packet the copy helpers move (memif buffers are sized in 16 bits).
MAX_PACKET: int = int(lib.MEMIF_CFFI_MAX_PACKET)


class PacketBatch:
    """A burst of up to ``capacity`` packets of at most ``slot_size`` bytes each.

    Args:
        capacity: number of slots, 1-65535.
        slot_size: largest packet a slot holds, 1-65535 bytes. A received
            packet longer than this is dropped (and counted in the queue's
            ``drops``), so size it for the largest frame you expect.

    ``len(batch)`` is the number of valid packets (:attr:`count`); indexing and
    iteration give writable memoryviews of those packets.

    Reuse a batch from burst to burst: a queue remembers the last few batches
    it moved (at most four, each referenced until it is displaced or the
    interface closes), and moving one of them again is a single C call with a
    single argument.
    """

    __slots__ = ("_buf", "_c", "_data", "_lens", "_lens_view", "_offsets", "_view",
                 "capacity", "slot_size", "stride")

    def __init__(self, capacity: int = 256, slot_size: int = 2048) -> None:
        if not isinstance(capacity, int) or not 1 <= capacity <= 65535:
            raise ValueError(f"capacity must be an int in 1..65535, not {capacity!r}")
        if not isinstance(slot_size, int) or not 1 <= slot_size <= MAX_PACKET:
            raise ValueError(f"slot_size must be an int in 1..{MAX_PACKET}, not {slot_size!r}")
        self.capacity = capacity
        self.slot_size = slot_size
        #: Distance in bytes between the starts of two slots (= slot_size: the
        #: C receive helper uses one number for both spacing and size limit).
        self.stride = slot_size
        self._data: Any = ffi.new("uint8_t[]", capacity * self.stride)
        self._lens: Any = ffi.new("uint32_t[]", capacity)
        self._offsets: Any = ffi.new("uint32_t[]", [i * self.stride for i in range(capacity)])
        self._buf = ffi.buffer(self._data)
        self._view = memoryview(self._buf)
        self._lens_view = memoryview(ffi.buffer(self._lens)).cast("B").cast("I")
        #: the same storage as one C struct: what a bulk call passes (see _support.h).
        #: Its ``count`` is the batch's count, kept in C so that a send reads it
        #: and a receive sets it without a Python argument or result.
        self._c: Any = ffi.new("memif_cffi_batch_t *", {
            "data": self._data, "offsets": self._offsets, "lens": self._lens,
            "stride": self.stride, "slot_size": slot_size, "capacity": capacity})

    # ------------------------------------------------------------ buffers

    @property
    def buffer(self) -> memoryview:
        """Writable view of the whole storage (``capacity * stride`` bytes)."""
        return self._view

    @property
    def lengths(self) -> memoryview:
        """Writable view (format ``"I"``) of the ``capacity`` packet lengths.

        Lengths written here are checked against :attr:`slot_size` by
        :meth:`TxQueue.send_batch <memif_cffi.TxQueue.send_batch>` (in C, one
        pass), never trusted blindly.
        """
        return self._lens_view

    @property
    def count(self) -> int:
        """Number of valid packets (0-``capacity``)."""
        count: int = self._c.count
        return count

    @count.setter
    def count(self, value: int) -> None:
        if not isinstance(value, int) or not 0 <= value <= self.capacity:
            raise ValueError(f"count must be an int in 0..{self.capacity}, not {value!r}")
        self._c.count = value

    def __len__(self) -> int:
        count: int = self._c.count
        return count

    def slot(self, index: int) -> memoryview:
        """Writable view of the whole slot ``index`` (``slot_size`` bytes), for filling in place."""
        if not 0 <= index < self.capacity:
            raise IndexError(f"slot {index} out of range 0..{self.capacity - 1}")
        start = index * self.stride
        return self._view[start : start + self.slot_size]

    def __getitem__(self, index: int) -> memoryview:
        """View of packet ``index`` (its current length), ``index < count``."""
        count = self._c.count
        if index < 0:
            index += count
        if not 0 <= index < count:
            raise IndexError("packet index out of range")
        start = index * self.stride
        return self._view[start : start + self._lens[index]]

    def __iter__(self) -> Iterator[memoryview]:
        for i in range(self._c.count):
            start = i * self.stride
            yield self._view[start : start + self._lens[i]]

    # ------------------------------------------------------------ filling

    def clear(self) -> None:
        """Forget every packet (``count = 0``); the storage is left as it is."""
        self._c.count = 0

    def append(self, frame: bytes | bytearray | memoryview) -> None:
        """Copy one packet into the next free slot."""
        n = len(frame) if not isinstance(frame, memoryview) else frame.nbytes
        c = self._c
        i = c.count
        if i >= self.capacity:
            raise IndexError("PacketBatch is full")
        if n > self.slot_size:
            raise ValueError(f"packet of {n} bytes does not fit a {self.slot_size}-byte slot")
        start = i * self.stride
        self._view[start : start + n] = frame
        self._lens[i] = n
        c.count = i + 1

    def extend(self, frames: Iterable[bytes | bytearray | memoryview]) -> None:
        """:meth:`append` every frame (stops with IndexError when full)."""
        for frame in frames:
            self.append(frame)

    def fill(self, frame: bytes | bytearray | memoryview, count: int | None = None) -> None:
        """Put the same packet in the first ``count`` slots (default: all)."""
        self.clear()
        for _ in range(self.capacity if count is None else count):
            self.append(frame)

    def set_length(self, index: int, length: int) -> None:
        """Set the length of slot ``index`` (after filling it through :meth:`slot`)."""
        if not 0 <= index < self.capacity:
            raise IndexError(f"slot {index} out of range 0..{self.capacity - 1}")
        if not 0 <= length <= self.slot_size:
            raise ValueError(f"length must be in 0..{self.slot_size}")
        self._lens[index] = length

    def tolist(self) -> list[bytes]:
        """The valid packets as bytes (one copy each)."""
        return [bytes(view) for view in self]

    def total_bytes(self) -> int:
        """Sum of the lengths of the valid packets (computed in C)."""
        return int(lib.memif_cffi_sum_u32(self._lens, self._c.count))

    def __repr__(self) -> str:
        return (f"PacketBatch(capacity={self.capacity}, slot_size={self.slot_size}, "
                f"count={self._c.count})")
