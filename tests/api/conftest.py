"""Fixtures for the Pythonic-API tests (helpers live in apihelp.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from apihelp import Pair


@pytest.fixture
def sock_path(tmp_path: Path) -> str:
    return str(tmp_path / "memif.sock")


@pytest.fixture
def pair(sock_path: str) -> Iterator[Pair]:
    with Pair(sock_path) as p:
        yield p
