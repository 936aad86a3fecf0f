"""The fuzz targets, run over their seed corpora and every saved crash input.

Each target is compiled with gcc, AddressSanitizer and UndefinedBehaviorSanitizer
against a small driver that feeds it files, so every input that once crashed
the library (``libmemif-src/fuzz/regressions``) is replayed by ``make test``.
The seed corpora (valid handshakes from both roles) come from ``make_seeds.py``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FUZZ = ROOT / "libmemif-src" / "fuzz"
SRCS = sorted((ROOT / "libmemif-src" / "src").glob("*.c"))

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")


def build(target: str, out: Path) -> Path:
    exe = out / target
    subprocess.run(
        ["gcc", "-std=gnu11", "-g", "-O1", "-fsanitize=address,undefined",
         "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer",
         "-Wall", "-Wextra", "-Werror",
         f"-I{ROOT / 'libmemif-src' / 'include'}", f"-I{ROOT / 'libmemif-src' / 'src'}",
         *map(str, SRCS), str(FUZZ / f"{target}.c"), str(FUZZ / "standalone.c"), "-o", str(exe)],
        check=True,
    )
    return exe


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("seeds")
    subprocess.run([sys.executable, str(FUZZ / "make_seeds.py"), str(out)], check=True)
    return out


@pytest.mark.parametrize(
    ("target", "corpus"), [("fuzz_msg", "msg"), ("fuzz_handshake", "handshake")]
)
def test_fuzz_target_replays_corpus(target: str, corpus: str, seeds: Path, tmp_path: Path) -> None:
    exe = build(target, tmp_path)
    inputs = sorted((seeds / corpus).iterdir())
    if target == "fuzz_handshake":
        inputs += sorted((FUZZ / "regressions").iterdir())
    assert inputs
    res = subprocess.run([str(exe), *map(str, inputs)], capture_output=True, text=True, timeout=300,
                         env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
                              "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"})
    assert res.returncode == 0, res.stderr[-4000:]
    assert f"ran {len(inputs)} inputs" in res.stdout
