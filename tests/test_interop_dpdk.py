"""Interop of the C core with an independent implementation: DPDK's net_memif.

testpmd in ``io`` forwarding mode sends every frame back unchanged, so a C
program built on ``build/libmemif.so`` (``tests/c/interop_echo.c``, written
against the libmemif 3.1 API) sends frames of several sizes and checks every
echo byte for byte. Both roles, filesystem and abstract sockets, one and two
queues, chained frames in both directions (9000-byte frames; DPDK chains its
own mbufs, and a 1024-byte DPDK client buffer makes DPDK chain on the wire).

These tests skip only when ``dpdk-testpmd`` is missing, and fail instead when
``MEMIF_REQUIRE_PEERS=1`` (as in CI).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from cprog import build_program, program_env
from peers import dpdk_peer, require_dpdk

SIZES = ["64", "1500", "9000"]
COUNT = "100"
# testpmd drops what it cannot transmit at once; never a corrupted frame.
MAX_DROPS = "64"


@pytest.fixture(scope="module")
def echo_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_dpdk()
    return build_program("interop_echo", tmp_path_factory.mktemp("interop"))


def socket_name(kind: str, tmp_path: Path) -> str:
    if kind == "abstract":
        return f"@memif-cffi-test-{uuid.uuid4().hex[:12]}"
    return str(tmp_path / "memif.sock")


def check_summary(res: subprocess.CompletedProcess[str], queues: int) -> None:
    out = res.stdout + res.stderr
    m = re.search(r"sent (\d+) received (\d+) corrupted (\d+) duplicates (\d+)", out)
    assert m, out
    sent, received, corrupted, duplicates = map(int, m.groups())
    assert sent == int(COUNT) * len(SIZES) * queues
    assert corrupted == 0 and duplicates == 0, out
    assert received >= sent - int(MAX_DROPS), out
    assert res.returncode == 0, out


@pytest.mark.parametrize("kind", ["filesystem", "abstract"])
@pytest.mark.parametrize("queues", [1, 2])
def test_our_slave_with_dpdk_server(echo_exe: Path, tmp_path: Path, kind: str, queues: int) -> None:
    sock = socket_name(kind, tmp_path)
    with dpdk_peer("server", sock, forward="io", queues=queues):
        cmd = [str(echo_exe), "slave", sock, str(queues), COUNT, *SIZES, "-d", MAX_DROPS]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=program_env())
    check_summary(res, queues)


def test_our_slave_with_headroom(echo_exe: Path, tmp_path: Path) -> None:
    """DPDK as server fills our M2S buffers up to the length we posted (buffer minus headroom)."""
    sock = socket_name("filesystem", tmp_path)
    with dpdk_peer("server", sock, forward="io"):
        cmd = [str(echo_exe), "slave", sock, "1", COUNT, *SIZES,
               "-h", "128", "-b", "1500", "-d", MAX_DROPS]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=program_env())
    check_summary(res, 1)


@pytest.mark.parametrize("kind", ["filesystem", "abstract"])
@pytest.mark.parametrize("queues", [1, 2])
def test_our_master_with_dpdk_client(
    echo_exe: Path, tmp_path: Path, kind: str, queues: int
) -> None:
    sock = socket_name(kind, tmp_path)
    # A DPDK client never retries: our master must listen first.
    cmd = [str(echo_exe), "master", sock, str(queues), COUNT, *SIZES, "-d", MAX_DROPS]
    ours = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=program_env())
    try:
        deadline = time.monotonic() + 5
        while kind == "filesystem" and not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        with dpdk_peer("client", sock, forward="io", queues=queues, buffer_size=1024):
            stdout, stderr = ours.communicate(timeout=60)
    finally:
        if ours.poll() is None:
            ours.kill()
            ours.wait()
    check_summary(subprocess.CompletedProcess(ours.args, ours.returncode, stdout, stderr), queues)
