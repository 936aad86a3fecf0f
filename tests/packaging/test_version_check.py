"""The package version is compiled into the extension and checked at import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from pkghelp import ROOT, package_version

VERSION = package_version()


def test_version_mismatch_is_a_clear_import_error(tmp_path: Path) -> None:
    """A module built for another version refuses to load, and says how to fix it."""
    pkg = tmp_path / "memif_cffi"
    shutil.copytree(ROOT / "memif_cffi", pkg,
                    ignore=shutil.ignore_patterns("__pycache__", "_libmemif.c"))
    assert list(pkg.glob("_libmemif*.so")), "the extension is not built (make)"
    (pkg / "_version.py").write_text('__version__ = "0.0.0+other"\n', encoding="utf-8")
    code = (f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import memif_cffi")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert last == (
        f"ImportError: memif_cffi._libmemif was built for memif_cffi {VERSION}, but the "
        "package is 0.0.0+other: rebuild the extension (make, or pip install .)"), res.stderr
