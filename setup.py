"""Carries cffi_modules for setuptools; everything else is in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["build_ffi.py:ffi"])
