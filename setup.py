"""Carries cffi_modules for setuptools; everything else is in pyproject.toml.

The module cffi generates uses only the stable ABI (Py_LIMITED_API), so the
wheel is tagged cp310-abi3: one wheel for CPython 3.10 and every later version.
"""

from setuptools import setup

setup(
    cffi_modules=["build_ffi.py:ffi"],
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
