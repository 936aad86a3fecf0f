"""Packaging: ``python -m build`` makes an sdist and an abi3 wheel, both install and work.

One session fixture builds both from a copy of the source tree (the wheel is
built from the sdist, so a file missing from the sdist breaks the wheel too).
Each install goes into a fresh virtual environment outside the source tree
that holds nothing but the package and its dependency, cffi (from PyPI); the
checks run from a directory outside the tree, in isolated mode, so nothing
of the checkout can be imported by accident.
"""

from __future__ import annotations

import re
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from pkghelp import ROOT, copy_sources, package_version, run

VERSION = package_version()

# Runs in the fresh environment: import, version, a packet from master to slave.
SMOKE = r'''
import os
import sys
import tempfile
import time
from pathlib import Path

import memif_cffi as memif
from memif_cffi import _libmemif

expected = sys.argv[1]
assert memif.__version__ == expected, (memif.__version__, expected)
prefix = Path(sys.prefix).resolve()
for module in (memif, _libmemif):
    assert Path(module.__file__).resolve().is_relative_to(prefix), module.__file__
assert _libmemif.__file__.endswith(".abi3.so"), _libmemif.__file__
built_for = memif.ffi.string(memif.lib.memif_cffi_version()).decode()
assert built_for == expected, built_for

path = os.path.join(tempfile.mkdtemp(), "memif.sock")
frame = bytes(range(256)) * 12  # 3072 bytes: chained over two 2048-byte buffers
with memif.Context("wheel-master") as server, memif.Context("wheel-slave") as client:
    master = server.interface(server.socket(path), role=memif.Role.MASTER, name="m0")
    slave = client.interface(client.socket(path), role=memif.Role.SLAVE, name="s0")
    deadline = time.monotonic() + 10
    def step():
        assert time.monotonic() < deadline, "timed out"
        server.poll(0.01)
        client.poll(0.01)
    while not (master.connected and slave.connected):
        step()
    # A master may find the ring full until the slave has posted its buffers.
    while not master.tx[0].send(frame):
        step()
    received = []
    while not received:
        step()
        received = slave.rx[0].recv_burst(8)
    assert received == [frame], [len(f) for f in received]
    assert slave.details.remote_inst_name == "wheel-master"
print("smoke ok", memif.__version__)
'''


@dataclass
class Dists:
    sdist: Path
    wheel: Path
    work: Path


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    work = tmp_path_factory.mktemp("packaging")
    src = copy_sources(ROOT, work / "src")
    out = work / "dist"
    run([sys.executable, "-m", "build", "--outdir", out, src], cwd=work)
    sdists = list(out.glob("*.tar.gz"))
    wheels = list(out.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(p.name for p in out.iterdir())
    return Dists(sdists[0], wheels[0], work)


def fresh_venv(base: Path, name: str) -> Path:
    """A new environment without pip (the test's pip installs into it)."""
    venv = base / name
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=base)
    return venv / "bin" / "python"


def pip_install(python: Path, target: Path, cwd: Path) -> None:
    run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet",
         "--disable-pip-version-check", target], cwd=cwd)


def check_installed(python: Path, work: Path) -> None:
    """The smoke script, the ``memif`` command and the environment's contents."""
    outside = work / "elsewhere"
    outside.mkdir(exist_ok=True)
    script = outside / "smoke.py"
    script.write_text(SMOKE, encoding="utf-8")
    res = run([python, "-I", script, VERSION], cwd=outside, timeout=60)
    assert f"smoke ok {VERSION}" in res.stdout

    res = run([python.parent / "memif", "version"], cwd=outside, timeout=60)
    assert res.stdout.startswith(f"memif {VERSION} (libmemif 3.1 API"), res.stdout

    res = run([python, "-I", "-c",
               "import importlib.metadata as m; "
               "print(' '.join(sorted(d.metadata['Name'].lower() for d in m.distributions())))"],
              cwd=outside)
    installed = set(res.stdout.split())
    assert {"memif_cffi", "cffi"} <= installed <= {"memif_cffi", "cffi", "pycparser"}, installed

    # scapy is an optional extra: the adapter needs it, the package does not.
    res = run([python, "-I", "-c",
               "try:\n import memif_cffi.contrib.scapy\nexcept ModuleNotFoundError as e:\n"
               " print('missing', e.name)"], cwd=outside)
    assert res.stdout.strip() == "missing scapy"


def test_sdist_has_every_source(dists: Dists) -> None:
    with tarfile.open(dists.sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    wanted = [
        "build_ffi.py", "setup.py", "pyproject.toml", "MANIFEST.in", "README.md",
        "memif_cffi/_support.c", "memif_cffi/_support.h",
        "memif_cffi/_system_libmemif.c", "memif_cffi/_system_libmemif.h",
        "memif_cffi/py.typed", "memif_cffi/_libmemif.pyi",
        "memif_cffi/contrib/scapy.py", "memif_cffi/cli/__init__.py",
    ]
    for pattern in ("libmemif-src/src/*.c", "libmemif-src/src/*.h", "libmemif-src/include/*.h",
                    "memif_cffi/_cdef/*.cdef", "memif_cffi/*.py", "memif_cffi/cli/*.py"):
        found = [p.relative_to(ROOT).as_posix() for p in ROOT.glob(pattern)]
        assert found, pattern
        wanted += found
    missing = sorted(set(wanted) - names)
    assert not missing, f"not in the sdist: {missing}"
    built = [n for n in names if re.search(r"\.(so|o|a)$|(^|/)_libmemif\.c$", n)]
    assert not built, f"build products in the sdist: {built}"
    assert not any(n.startswith("tests/") for n in names), "tests/ belongs to the repository"


def test_wheel_is_abi3(dists: Dists) -> None:
    """cffi emits Py_LIMITED_API code: one cp310-abi3 wheel serves CPython >= 3.10."""
    assert re.fullmatch(rf"memif_cffi-{re.escape(VERSION)}-cp310-abi3-linux_\w+\.whl",
                        dists.wheel.name), dists.wheel.name
    with zipfile.ZipFile(dists.wheel) as whl:
        names = set(whl.namelist())
        wheel_meta = whl.read(f"memif_cffi-{VERSION}.dist-info/WHEEL").decode()
        metadata = whl.read(f"memif_cffi-{VERSION}.dist-info/METADATA").decode()
    assert "Root-Is-Purelib: false" in wheel_meta
    assert re.search(r"^Tag: cp310-abi3-linux_\w+$", wheel_meta, re.MULTILINE), wheel_meta
    modules = [n for n in names if n.startswith("memif_cffi/_libmemif")]
    assert sorted(modules) == ["memif_cffi/_libmemif.abi3.so", "memif_cffi/_libmemif.pyi"]
    for name in ("memif_cffi/py.typed", "memif_cffi/contrib/scapy.py",
                 "memif_cffi/cli/capture.py", "memif_cffi/pcap.py"):
        assert name in names
    assert not [n for n in names if n.endswith((".c", ".h", ".cdef"))]
    assert "Requires-Dist: cffi>=1.15" in metadata
    assert re.search(r"^Requires-Dist: scapy.*extra == .scapy.", metadata, re.MULTILINE)
    assert "Requires-Python: >=3.10" in metadata


def test_wheel_installs_and_runs_outside_the_tree(dists: Dists) -> None:
    python = fresh_venv(dists.work, "venv-wheel")
    pip_install(python, dists.wheel, dists.work)
    check_installed(python, dists.work)


def test_sdist_installs_and_runs_outside_the_tree(dists: Dists) -> None:
    """``pip install`` of the sdist compiles the extension from the bundled sources."""
    python = fresh_venv(dists.work, "venv-sdist")
    pip_install(python, dists.sdist, dists.work)
    check_installed(python, dists.work)
