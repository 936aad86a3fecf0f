"""Version of the memif_cffi package (read by build_ffi.py and pyproject.toml)."""

__version__ = "0.1.0"
