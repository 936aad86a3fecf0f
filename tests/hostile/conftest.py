"""Fixtures of the hostile-peer suite (helpers live in hostile.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile import OurMaster, OurSlave, Side, Usage, make_side, usage

ROLES = ["our-master", "our-slave"]


@pytest.fixture(params=ROLES)
def side(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Side]:
    """Our interface in a fresh Context, as master (raw slave peers) or slave (raw masters)."""
    s = make_side("master" if request.param == "our-master" else "slave", tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def our_master(tmp_path: Path) -> Iterator[OurMaster]:
    s = OurMaster(tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def our_slave(tmp_path: Path) -> Iterator[OurSlave]:
    s = OurSlave(tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="session", autouse=True)
def hostile_baseline() -> Usage:
    """Fds, memfd mappings and RSS before the first test of this directory ran
    (checked again by test_zz_after_all.py, which runs last)."""
    gc.collect()
    return usage()
