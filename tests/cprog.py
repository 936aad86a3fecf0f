"""Build the C test programs of tests/c/ against libmemif-src/include and build/libmemif.so.

Under ``make sanitize`` (``MEMIF_SANITIZE=1``) the programs are built with
AddressSanitizer and UBSan like the library, and :func:`program_env` runs them
with leak checking on; any report makes them exit non-zero.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INCLUDE = ROOT / "libmemif-src" / "include"
BUILD = ROOT / "build"
LIBRARY = BUILD / "libmemif.so"
C_DIR = Path(__file__).resolve().parent / "c"

_lock = threading.Lock()

#: Compiler flags of a sanitized build (the Makefile's SAN_FLAGS).
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                  "-fno-omit-frame-pointer", "-g"]


def sanitizing() -> bool:
    """True under ``make sanitize``."""
    return os.environ.get("MEMIF_SANITIZE") == "1"


def program_env() -> dict[str, str]:
    """Environment for running a C test program (leak checking on when sanitized)."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)  # the programs link their sanitizer runtime themselves
    if sanitizing():
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=1"
    return env


def _library_inputs() -> list[Path]:
    src = ROOT / "libmemif-src"
    return [*src.glob("src/*.c"), *src.glob("src/*.h"), *src.glob("include/*.h")]


def ensure_library() -> Path:
    """``make lib`` when build/libmemif.so is missing or older than its sources."""
    with _lock:
        newest = max(p.stat().st_mtime for p in _library_inputs())
        if not LIBRARY.exists() or LIBRARY.stat().st_mtime < newest:
            res = subprocess.run(["make", "-s", "lib"], cwd=ROOT, capture_output=True, text=True)
            assert res.returncode == 0, res.stdout + res.stderr
        assert LIBRARY.exists()
    return LIBRARY


def build_program(name: str, out_dir: Path) -> Path:
    """Compile tests/c/<name>.c the way a libmemif 3.1 user would; returns the executable."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is required for the C test programs")
    ensure_library()
    exe = out_dir / name
    cmd = ["gcc", "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{INCLUDE}",
           str(C_DIR / f"{name}.c"), "-o", str(exe), f"-L{BUILD}", f"-Wl,-rpath,{BUILD}",
           "-lmemif", "-pthread", *(SANITIZE_FLAGS if sanitizing() else [])]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stderr}"
    return exe
