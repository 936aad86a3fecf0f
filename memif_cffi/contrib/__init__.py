"""Adapters between memif_cffi and other Python tools.

Each module imports its tool, which is an optional dependency:

* :mod:`memif_cffi.contrib.scapy` - a scapy socket on a memif interface
  (``pip install memif_cffi[scapy]``).
"""
