"""Fixtures for the command-line tests (helpers live in clihelp.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def sock_path(tmp_path: Path) -> str:
    return str(tmp_path / "memif.sock")
