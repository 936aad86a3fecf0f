"""C programs written against libmemif.h only, linked with build/libmemif.so.

* ``two_peers.c`` - global database (memif_init / memif_create /
  memif_poll_event): fork, master + slave, traffic both ways, every byte
  verified; optionally with external regions (memif_register_external_region);
* ``per_thread_pair.c`` - per-thread API: two threads with their own
  databases (one with external polling and on_interrupt, one with internal
  polling and rx queues in polling mode), several queues; plus a two-thread
  memif_strerror check.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import pytest
from cprog import build_program, program_env


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("cprogs")
    return {name: build_program(name, out) for name in ("two_peers", "per_thread_pair")}


def run(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                         env=program_env())
    return res


@pytest.mark.parametrize(
    ("kind", "count", "extra"),
    [("fs", 20000, []), ("fs", 5000, ["1500", "64"]), ("abstract", 5000, ["1000", "0"]),
     ("fs", 5000, ["1500", "64", "external"])],
    ids=["default", "buf1500-headroom64", "abstract-buf1000", "external-regions"],
)
def test_two_peers(programs: dict[str, Path], tmp_path: Path, kind: str, count: int,
                   extra: list[str]) -> None:
    sock = str(tmp_path / "two.sock") if kind == "fs" else f"@two-peers-{uuid.uuid4().hex[:12]}"
    res = run([str(programs["two_peers"]), sock, str(count), *extra])
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    for side in ("master", "slave"):
        assert f"{side}: sent {count} received {count} verified, connects 1 disconnects 1" in (
            res.stdout), out
    assert res.stdout.rstrip().endswith("two_peers: PASS"), out
    if "external" in extra:
        assert "slave: external adds 1 gets 0 dels 1" in res.stdout, out
        assert "master: external adds 0 gets 1 dels 1" in res.stdout, out
    if kind == "fs":
        assert not Path(sock).exists(), "socket file left after the master was deleted"


def test_two_peers_reports_failure(programs: dict[str, Path], tmp_path: Path) -> None:
    """The program's checks can fail: a socket in a missing directory must not PASS."""
    res = run([str(programs["two_peers"]), str(tmp_path / "missing" / "x.sock"), "10"])
    assert res.returncode != 0
    assert "PASS" not in res.stdout


@pytest.mark.parametrize("queues", [1, 3])
def test_per_thread_pair(programs: dict[str, Path], tmp_path: Path, queues: int) -> None:
    count = 4000
    res = run([str(programs["per_thread_pair"]), str(tmp_path / "pt.sock"), str(count),
               str(queues)])
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "strerror: thread-local" in res.stdout
    for side in ("pt-master", "pt-slave"):
        m = re.search(rf"{side}: sent (\d+) received (\d+) on (\d+) queues$", res.stdout, re.M)
        assert m, out
        assert tuple(map(int, m.groups())) == (count * queues, count * queues, queues)
    assert res.stdout.rstrip().endswith("per_thread_pair: PASS"), out
