"""Every example: --help, and a failure reported as one line without a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from exhelp import ALL_EXAMPLES, EXAMPLES, run_to_end


def test_every_example_is_listed() -> None:
    found = sorted(p.stem for p in EXAMPLES.glob("*.py") if not p.stem.startswith("_"))
    assert found == sorted(ALL_EXAMPLES)


@pytest.mark.parametrize("name", ALL_EXAMPLES)
def test_help(name: str, tmp_path: Path) -> None:
    # From another directory: the scripts find their helper module and the package.
    rc, out, err = run_to_end(name, "--help", cwd=str(tmp_path))
    assert rc == 0, err
    assert out.startswith(f"usage: {name}.py")
    for option in ("--socket", "--id", "--secret", "--mode", "--queues", "--ring-size",
                   "--buffer-size"):
        assert option in out
    if name != "loopback":  # both roles at once
        assert "--role" in out
    assert err == ""


FAILING_MASTER = [name for name in ALL_EXAMPLES if name != "icmp_responder_zero_copy"]


@pytest.mark.parametrize("name", FAILING_MASTER)
def test_master_socket_in_missing_directory(name: str, tmp_path: Path) -> None:
    path = str(tmp_path / "no" / "such" / "dir" / "memif.sock")
    args = ["--socket", path] + ([] if name == "loopback" else ["--role", "master"])
    rc, out, err = run_to_end(name, *args)
    assert rc == 1
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0] == (f"{name}: error: cannot create the master interface on {path!r}: "
                        "The socket path or its directory does not exist.")


def test_bad_ring_size() -> None:
    """The shared option parser checks values before anything is created."""
    rc, out, err = run_to_end("icmp_responder", "--ring-size", "1000")
    assert rc == 2
    assert out == ""
    assert "Traceback" not in err
    assert err.splitlines()[-1] == ("icmp_responder.py: error: argument --ring-size: must be a "
                                    "power of two from 2 to 16384, not 1000")


@pytest.mark.parametrize("name", ["icmp_responder", "icmp_responder_epoll", "icmp_responder_mt",
                                  "icmp_responder_zero_copy", "test_app"])
def test_bad_address(name: str) -> None:
    rc, out, err = run_to_end(name, "--ip", "192.168.1.300")
    assert rc == 2
    assert out == ""
    assert "Traceback" not in err
    assert "not an IPv4 address: '192.168.1.300'" in err.splitlines()[-1]
