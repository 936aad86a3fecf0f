"""MEMIF_CFFI_SYSTEM_LIBMEMIF=1: the extension built against an installed libmemif.

build/libmemif.so and the public headers are "installed" into a temporary
prefix; build_ffi.py then builds the module against that prefix into a copy
of the package, and traffic runs through it. The module must call nothing
outside the libmemif 3.1 API (the bundled library's extensions are replaced
by memif_cffi/_system_libmemif.c), so it also works with a stock libmemif 3.1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pkghelp import ROOT, run
from test_build import API_FUNCTIONS

# Runs with the package copy first on sys.path.
TRAFFIC = r'''
import selectors
import sys
import threading
import time
from pathlib import Path

import memif_cffi as memif
from memif_cffi import _libmemif, lowlevel

pkg = Path(sys.argv[1]).resolve()
assert Path(_libmemif.__file__).resolve().parent == pkg, _libmemif.__file__
lib, ffi = lowlevel.lib, lowlevel.ffi

# The extensions, as provided on top of 3.1.
assert lib.memif_get_last_errno() == 0
assert ffi.string(lib.memif_get_version_str()) == b"2.0"
assert lib.memif_get_version() == 0x0200


def pair(path, **ctx_args):
    server = memif.Context("sys-master", **ctx_args)
    client = memif.Context("sys-slave", **ctx_args)
    master = server.interface(server.socket(path), role=memif.Role.MASTER, name="m0",
                              rx_queues=2, tx_queues=2)
    slave = client.interface(client.socket(path), role=memif.Role.SLAVE, name="s0",
                             rx_queues=2, tx_queues=2)
    return server, client, master, slave


def exchange(server, client, master, slave):
    deadline = time.monotonic() + 10

    def step():
        assert time.monotonic() < deadline, "timed out"
        server.poll(0.005)
        client.poll(0.005)

    while not (master.connected and slave.connected):
        step()
    frames = [bytes([i]) * (60 + 97 * i) for i in range(40)] + [b"\xab" * 5000]
    for src, dst in ((master, slave), (slave, master)):
        for qid in (0, 1):
            todo = list(frames)
            got = []
            while len(got) < len(frames):
                if todo:
                    todo = todo[src.tx[qid].send_burst(todo):]
                step()
                got += dst.rx[qid].recv_burst(256)
            assert got == frames, (qid, [len(f) for f in got])
    assert slave.details.remote_inst_name == "sys-master"
    assert master.counters.rx_packets == 2 * len(frames)


tmp = Path(sys.argv[2])

# The internal event loop: the epoll set and cancellation come from the shim.
server, client, master, slave = pair(str(tmp / "internal.sock"))
assert server.fileno() >= 0 and server.fileno() != client.fileno()
exchange(server, client, master, slave)
woke = []
waiter = threading.Thread(target=lambda: woke.append(client.poll(None)))
waiter.start()
time.sleep(0.1)
client.cancel_poll()
waiter.join(5)
assert len(woke) == 1 and not waiter.is_alive(), woke
slave.close()
deadline = time.monotonic() + 5
while master.connected:
    assert time.monotonic() < deadline
    server.poll(0.01)
server.close()
client.close()

# An external event loop: the application's fd-update callback goes straight to 3.1.
server, client, master, slave = pair(str(tmp / "external.sock"),
                                     selector=selectors.DefaultSelector())
exchange(server, client, master, slave)
server.close()
client.close()

# Errors still map to their exceptions.
with memif.Context("sys-err") as ctx:
    try:
        ctx.interface(ctx.socket(str(tmp / "nowhere" / "x.sock")), role=memif.Role.MASTER)
    except memif.MemifError as exc:
        print("error", type(exc).__name__)
print("system ok")
'''


def _symbols(path: Path, *flags: str) -> set[str]:
    res = subprocess.run(["nm", "-D", *flags, str(path)], capture_output=True, text=True,
                         check=True)
    return {line.split()[-1] for line in res.stdout.splitlines() if line.split()}


@pytest.fixture(scope="module")
def system_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(package copy holding the system-linked module, the prefix)."""
    work = tmp_path_factory.mktemp("system-libmemif")
    build = subprocess.run(["make", "-s", "lib"], cwd=ROOT, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    prefix = work / "prefix"
    (prefix / "include").mkdir(parents=True)
    (prefix / "lib").mkdir()
    for header in ("libmemif.h", "memif.h"):
        shutil.copy(ROOT / "libmemif-src" / "include" / header, prefix / "include")
    shutil.copy(ROOT / "build" / "libmemif.so", prefix / "lib")
    pkg = work / "pkg" / "memif_cffi"
    shutil.copytree(ROOT / "memif_cffi", pkg,
                    ignore=shutil.ignore_patterns("__pycache__", "_libmemif*.so", "_libmemif.c"))
    # The run's own environment: under make sanitize the module gets the same
    # sanitizer flags as everything else (MEMIF_CFFI_CFLAGS).
    env = dict(os.environ, MEMIF_CFFI_SYSTEM_LIBMEMIF="1",
               MEMIF_CFFI_SYSTEM_LIBMEMIF_PREFIX=str(prefix))
    res = run([sys.executable, ROOT / "build_ffi.py", "--tmpdir", work / "cffi",
               "--out-dir", pkg], cwd=work, env=env)
    assert "against the installed libmemif" in res.stdout
    return pkg, prefix


def test_module_uses_only_the_31_api(system_build: tuple[Path, Path]) -> None:
    pkg, prefix = system_build
    [module] = pkg.glob("_libmemif*.so")
    needed = subprocess.run(["readelf", "-d", str(module)], capture_output=True, text=True,
                            check=True).stdout
    assert "Shared library: [libmemif.so]" in needed
    assert str(prefix / "lib") in needed  # run path of the prefix
    imported = {s for s in _symbols(module, "--undefined-only") if s.startswith("memif_")}
    assert imported == set(API_FUNCTIONS), sorted(imported ^ set(API_FUNCTIONS))
    defined = {s for s in _symbols(module, "--defined-only") if s.startswith("memif_")}
    assert all(s.startswith("memif_cffi_") for s in defined), sorted(defined)


def test_traffic_through_the_installed_library(system_build: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    pkg, _prefix = system_build
    script = tmp_path / "traffic.py"
    script.write_text(TRAFFIC, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(pkg.parent))
    res = run([sys.executable, script, pkg, tmp_path], cwd=tmp_path, env=env, timeout=120)
    assert res.stdout.splitlines()[-2:] == ["error NoFileError", "system ok"], res.stdout
