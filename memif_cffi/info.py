"""Snapshots returned by the Pythonic API: interface details and counters.

All are frozen dataclasses: a snapshot never changes after it was taken, and
reading it never touches the C library again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memif_cffi._libmemif import ffi
from memif_cffi.enums import Mode, Role

__all__ = [
    "InterfaceCounters",
    "InterfaceDetails",
    "QueueCounters",
    "QueueDetails",
    "RegionDetails",
]


@dataclass(frozen=True)
class QueueCounters:
    """Traffic of one queue since the interface was created.

    Attributes:
        packets: whole packets received (rx) or queued for the peer (tx).
        bytes: their payload bytes.
        drops: rx: packets dropped because they exceeded 65535 bytes or their
            chain was cut by a disconnect; tx: packets refused because the
            ring was full (the caller still holds them: backpressure, not loss).
    """

    packets: int = 0
    bytes: int = 0
    drops: int = 0


@dataclass(frozen=True)
class InterfaceCounters:
    """Sum of the queue counters of an interface (see :class:`QueueCounters`)."""

    rx_packets: int = 0
    rx_bytes: int = 0
    rx_drops: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    tx_drops: int = 0


@dataclass(frozen=True)
class QueueDetails:
    """One ring as ``memif_get_details`` reports it (``memif_queue_details_t``)."""

    qid: int
    region: int
    ring_size: int
    flags: int
    head: int
    tail: int
    buffer_size: int


@dataclass(frozen=True)
class RegionDetails:
    """One shared-memory region (``memif_region_details_t``)."""

    index: int
    size: int
    fd: int
    is_external: bool


@dataclass(frozen=True)
class InterfaceDetails:
    """Everything ``memif_get_details`` reports about an interface.

    ``rx_queues``, ``tx_queues`` and ``regions`` are empty unless the
    interface is connected; ``error`` is the reason of the last failed
    connection attempt or disconnect ("" when there is none).
    """

    if_name: str
    inst_name: str
    remote_if_name: str
    remote_inst_name: str
    id: int
    secret: str
    role: Role
    mode: Mode
    socket_filename: str
    error: str
    link_up: bool
    regions: tuple[RegionDetails, ...]
    rx_queues: tuple[QueueDetails, ...]
    tx_queues: tuple[QueueDetails, ...]


def _text(ptr: Any) -> str:
    if ptr == ffi.NULL:
        return ""
    return str(ffi.string(ptr).decode("utf-8", "replace"))


def _queues(array: Any, count: int) -> tuple[QueueDetails, ...]:
    if array == ffi.NULL:
        return ()
    return tuple(
        QueueDetails(
            qid=int(q.qid),
            region=int(q.region),
            ring_size=int(q.ring_size),
            flags=int(q.flags),
            head=int(q.head),
            tail=int(q.tail),
            buffer_size=int(q.buffer_size),
        )
        for q in (array[i] for i in range(count))
    )


def details_from_c(md: Any) -> InterfaceDetails:
    """Build an :class:`InterfaceDetails` from a filled ``memif_details_t *``."""
    regions: tuple[RegionDetails, ...] = ()
    if md.regions != ffi.NULL:
        regions = tuple(
            RegionDetails(
                index=int(r.index), size=int(r.size), fd=int(r.fd), is_external=bool(r.is_external)
            )
            for r in (md.regions[i] for i in range(md.regions_num))
        )
    return InterfaceDetails(
        if_name=_text(md.if_name),
        inst_name=_text(md.inst_name),
        remote_if_name=_text(md.remote_if_name),
        remote_inst_name=_text(md.remote_inst_name),
        id=int(md.id),
        secret=_text(md.secret),
        role=Role(int(md.role)),
        mode=Mode(int(md.mode)),
        socket_filename=_text(md.socket_filename),
        error=_text(md.error),
        link_up=bool(md.link_up_down),
        regions=regions,
        rx_queues=_queues(md.rx_queues, int(md.rx_queues_num)),
        tx_queues=_queues(md.tx_queues, int(md.tx_queues_num)),
    )
