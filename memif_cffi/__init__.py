"""memif_cffi: the memif shared-memory packet interface for Python.

The package bundles its own implementation of the libmemif 3.1 C API and
compiles it into a cffi extension. Two layers:

* the Pythonic API, re-exported here::

      import memif_cffi as memif

      with memif.Context("app") as ctx:
          intf = ctx.interface(ctx.socket("/run/vpp/memif.sock"), role=memif.Role.SLAVE)
          intf.wait_connected(timeout=5)
          intf.tx[0].send(frame)
          frames = intf.rx[0].recv_burst(256)

  :class:`Context` (a libmemif per-thread database), :class:`Socket`,
  :class:`Interface`, :class:`RxQueue` / :class:`TxQueue`,
  :class:`PacketBatch`, the enums :class:`Role`, :class:`Mode`,
  :class:`RxMode`, :class:`FdEvent`, and :mod:`memif_cffi.aio` for asyncio;
* the raw layer: :mod:`memif_cffi.lowlevel` (``ffi``, ``lib``, ``check`` and
  callback plumbing) for programs that keep the C call sequence.

Errors: :class:`MemifError` and one subclass per libmemif error code, each also
derived from the fitting builtin (:mod:`memif_cffi.errors`, ``BY_CODE``).
"""

from memif_cffi import errors
from memif_cffi._core import ClosedError, QueueBusyError
from memif_cffi._version import __version__
from memif_cffi.batch import MAX_PACKET, PacketBatch
from memif_cffi.context import Context, Socket
from memif_cffi.enums import FdEvent, Mode, Role, RxMode
from memif_cffi.errors import *  # noqa: F403  (every error class, see errors.__all__)
from memif_cffi.info import (
    InterfaceCounters,
    InterfaceDetails,
    QueueCounters,
    QueueDetails,
    RegionDetails,
)
from memif_cffi.interface import Interface
from memif_cffi.lowlevel import check, ffi, lib
from memif_cffi.queues import RxQueue, TxQueue

from memif_cffi import aio  # isort: skip  (needs the modules above)

__all__ = [
    "MAX_PACKET",
    "ClosedError",
    "Context",
    "FdEvent",
    "Interface",
    "InterfaceCounters",
    "InterfaceDetails",
    "Mode",
    "PacketBatch",
    "QueueBusyError",
    "QueueCounters",
    "QueueDetails",
    "RegionDetails",
    "Role",
    "RxMode",
    "RxQueue",
    "Socket",
    "TxQueue",
    "__version__",
    "aio",
    "check",
    "errors",
    "ffi",
    "lib",
]
__all__ += errors.__all__
