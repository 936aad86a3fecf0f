"""Helpers for the packaging tests: copies of the source tree, clean environments."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Never part of a copy: version control, environments, caches, build products.
_SKIP_DIRS = {".git", ".venv", "build", "dist", "__pycache__", ".mypy_cache", ".ruff_cache",
              ".pytest_cache", ".hypothesis"}
_SKIP_FILE = re.compile(r".*\.(so|o|a|pyc)$|_libmemif\.c$")


def package_version() -> str:
    text = (ROOT / "memif_cffi" / "_version.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.MULTILINE)
    assert match is not None
    return match.group(1)


def _ignore(_dir: str, names: list[str]) -> set[str]:
    return {n for n in names
            if n in _SKIP_DIRS or n.endswith(".egg-info") or _SKIP_FILE.match(n)}


def copy_sources(src: Path, dest: Path) -> Path:
    """``src`` without build products, into ``dest`` (created)."""
    shutil.copytree(src, dest, ignore=_ignore)
    return dest


def clean_env() -> dict[str, str]:
    """The environment without what the test run adds (sanitizer preloads,
    extension flags, coverage, import paths): a user's plain shell."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MEMIF_", "COVERAGE", "ASAN_", "UBSAN_", "LSAN_", "PYTHON"))
           and k not in ("LD_PRELOAD", "LD_LIBRARY_PATH", "VIRTUAL_ENV")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run(cmd: Sequence[str | Path], *, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run to completion; fail the test with the output when it does not succeed."""
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=clean_env() if env is None else env,
                         capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n"
        f"--- stdout\n{res.stdout[-4000:]}\n--- stderr\n{res.stderr[-4000:]}")
    return res
