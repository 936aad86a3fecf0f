"""examples/loopback.py: master and slave in one process, frames out and back, verified."""

from __future__ import annotations

import re

import pytest
from exhelp import assert_clean_exit, run_to_end

NAME = "loopback"


@pytest.mark.parametrize(
    ("extra", "count", "size", "queues"),
    [
        ((), 3000, 64, 1),  # default abstract socket
        (("--queues", "2", "--mode", "ip", "--ring-size", "32"), 1000, 3000, 2),  # chained
    ],
)
def test_frames_come_back_verified(sock_path: str, extra: tuple[str, ...], count: int, size: int,
                                   queues: int) -> None:
    args = ["--count", str(count), "--size", str(size), *extra]
    if queues > 1:
        args += ["--socket", sock_path]
    rc, out, err = run_to_end(NAME, *args)
    assert_clean_exit(rc, out, err)
    assert f"({queues} queue{'s' if queues > 1 else ''}), sending {count} frames of {size} bytes" \
        in out
    match = re.search(r"(\d+) of (\d+) frames came back \(all verified\) in [\d.]+ s: "
                      r"([\d,]+) frames/s", out)
    assert match is not None, out
    assert int(match[1]) == int(match[2]) == count
    assert int(match[3].replace(",", "")) > 0


def test_bad_size_is_a_usage_error() -> None:
    rc, out, err = run_to_end(NAME, "--size", "4")
    assert rc == 2
    assert out == ""
    assert "--size must be in 8..65535, not 4" in err
