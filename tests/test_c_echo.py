"""Two C programs written for libmemif 3.1, linked with build/libmemif.so, talking.

``echo_peer`` (external event loop: fd-update callback, its own epoll,
interrupt mode) echoes every frame; ``interop_echo`` (internal polling,
polling rx mode) sends frames and checks every echo byte for byte. Run in
both role assignments, over filesystem and abstract sockets, with chained
frames, headroom, odd buffer sizes and tiny rings.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from cprog import build_program, program_env


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("cprog")
    return build_program("echo_peer", out), build_program("interop_echo", out)


CASES = [
    # (echo role, socket kind, queues, echo options, checker options, sizes)
    ("master", "fs", 1, [], [], ["64", "1500", "9000"]),
    ("slave", "fs", 2, ["-b", "1000", "-h", "128"], [], ["60", "1500", "9000", "60000"]),
    ("master", "abstract", 3, [], ["-b", "3000", "-l", "3"], ["64", "1500", "9000"]),
    ("slave", "abstract", 1, ["-b", "1500", "-h", "64", "-l", "2"], [], ["24", "1499", "3000"]),
    ("master", "fs", 2, ["-l", "14"], ["-b", "2048", "-h", "256", "-l", "14"], ["64", "65535"]),
]


@pytest.mark.parametrize(("echo_role", "kind", "queues", "echo_opts", "opts", "sizes"), CASES)
def test_two_c_programs_exchange_frames(
    programs: tuple[Path, Path], tmp_path: Path, echo_role: str, kind: str, queues: int,
    echo_opts: list[str], opts: list[str], sizes: list[str],
) -> None:
    echo, checker = programs
    sock = str(tmp_path / "c.sock") if kind == "fs" else f"@memif-c-{uuid.uuid4().hex[:12]}"
    checker_role = "slave" if echo_role == "master" else "master"
    peer = subprocess.Popen([str(echo), echo_role, sock, str(queues), "30", *echo_opts],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=program_env())
    try:
        assert peer.stdout is not None
        assert peer.stdout.readline().strip() == "ready"
        time.sleep(0.05)
        res = subprocess.run([str(checker), checker_role, sock, str(queues), "200", *sizes, *opts],
                             capture_output=True, text=True, timeout=60, env=program_env())
    finally:
        peer.wait(timeout=30)  # exits once its peer has gone
    m = re.search(r"sent (\d+) received (\d+) corrupted (\d+) duplicates (\d+)", res.stdout)
    assert m, res.stdout + res.stderr
    sent, received, corrupted, duplicates = map(int, m.groups())
    assert sent == 200 * len(sizes) * queues
    assert (received, corrupted, duplicates) == (sent, 0, 0)
    assert res.returncode == 0
    assert peer.returncode == 0
