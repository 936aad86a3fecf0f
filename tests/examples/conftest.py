"""Fixtures for the example-program tests (helpers live in exhelp.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from exhelp import Example


@pytest.fixture
def sock_path(tmp_path: Path) -> str:
    return str(tmp_path / "memif.sock")


@pytest.fixture
def abstract_sock() -> str:
    return f"@memif-cffi-test-{uuid.uuid4().hex}"


@pytest.fixture
def start_example() -> Iterator[Callable[..., Example]]:
    """Start example programs; any still running at the end of the test is killed."""
    started: list[Example] = []

    def start(name: str, *args: str) -> Example:
        example = Example(name, *args)
        started.append(example)
        return example

    try:
        yield start
    finally:
        for example in started:
            example.kill()
