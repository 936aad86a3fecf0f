"""Fixtures of the upstream-mirror suite (see README.md in this directory).

* ``sock`` - a socket path in a fresh temporary directory;
* ``abstract`` - a unique abstract name (``@unit_test_<random>``);
* ``global_db`` - runs the test with the global database torn down before and
  after (``memif_cleanup`` in a finally), so tests using ``memif_init`` stay
  independent inside one pytest process;
* an autouse check that every test leaves the set of open file descriptors
  exactly as it found it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from memif_cffi.lowlevel import lib, set_global_fd_update


def _fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


@pytest.fixture(autouse=True)
def no_fd_leak() -> Iterator[None]:
    before = _fds()
    yield
    leaked = _fds() - before
    details = {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in leaked
               if os.path.exists(f"/proc/self/fd/{fd}")}
    assert not details, f"file descriptors left open by the test: {details}"


@pytest.fixture
def sock(tmp_path: Path) -> str:
    return str(tmp_path / "memif.sock")


@pytest.fixture
def abstract() -> str:
    return f"@unit_test_{uuid.uuid4().hex[:16]}"


@pytest.fixture
def global_db() -> Iterator[None]:
    """The global database is not initialised when the test starts, and is cleaned up after."""
    assert lib.memif_cleanup() == 0, "the global database was left with interfaces"
    try:
        yield
    finally:
        lib.memif_cleanup()
        set_global_fd_update(None)
