"""Enumerations of the Pythonic API, with the values of the C library.

Every member takes its value from the compiled module (``lib``), so they can be
passed straight to the raw layer and compared with what the C side reports.
"""

from __future__ import annotations

import enum

from memif_cffi._libmemif import lib

__all__ = ["FdEvent", "Mode", "Role", "RxMode"]


class Role(enum.IntEnum):
    """Which side of the memif connection an interface plays.

    The values are those of ``memif_details_t.role``: the master (server)
    listens on the socket and owns nothing but the rings' consumer side, the
    slave (client) connects and creates the shared memory.
    """

    MASTER = 0
    SLAVE = 1


class Mode(enum.IntEnum):
    """Interface mode (``memif_interface_mode_t``); both sides must agree."""

    ETHERNET = lib.MEMIF_INTERFACE_MODE_ETHERNET
    IP = lib.MEMIF_INTERFACE_MODE_IP
    PUNT_INJECT = lib.MEMIF_INTERFACE_MODE_PUNT_INJECT


class RxMode(enum.IntEnum):
    """Receive mode of one rx queue (``memif_rx_mode_t``).

    ``INTERRUPT``: the peer signals the queue's eventfd after each burst it
    publishes. ``POLLING``: the peer is asked not to signal; the application
    polls the queue.
    """

    INTERRUPT = lib.MEMIF_RX_MODE_INTERRUPT
    POLLING = lib.MEMIF_RX_MODE_POLLING


class FdEvent(enum.IntFlag):
    """What the library asks of an fd in external event-loop mode (``MEMIF_FD_EVENT_*``).

    Also the flags given back to :meth:`memif_cffi.Context.handle_event`.
    """

    READ = lib.MEMIF_FD_EVENT_READ
    WRITE = lib.MEMIF_FD_EVENT_WRITE
    ERROR = lib.MEMIF_FD_EVENT_ERROR
    DEL = lib.MEMIF_FD_EVENT_DEL
    MOD = lib.MEMIF_FD_EVENT_MOD
