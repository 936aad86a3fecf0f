"""memif_cffi: the memif shared-memory packet interface for Python.

The package bundles its own implementation of the libmemif 3.1 C API and
compiles it into a cffi extension. For now the public surface is the raw
layer: :mod:`memif_cffi.lowlevel` (``ffi``, ``lib``, ``check`` and callback
plumbing) and :mod:`memif_cffi.errors` (one exception class per error code).
"""

from memif_cffi._version import __version__
from memif_cffi.errors import BY_CODE, MemifError, error_for
from memif_cffi.lowlevel import check, ffi, lib

__all__ = [
    "BY_CODE",
    "MemifError",
    "__version__",
    "check",
    "error_for",
    "ffi",
    "lib",
]
