"""The documentation site builds without a warning, and the C-to-Python page is true.

mkdocs and mkdocstrings are installed by the Makefile (VENV_DEPS).
"""

from __future__ import annotations

import importlib
import inspect
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import memif_cffi
from memif_cffi import queues
from memif_cffi.lowlevel import ffi, lib

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "docs" / "mkdocs" / "mkdocs.yml"
FROM_C = ROOT / "docs" / "from-c.md"


def test_site_builds_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    res = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(CONFIG), "-d", str(site)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "WARNING" not in res.stderr, res.stderr
    pages = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    for page in ("index.html", "python-api.html", "from-c.html", "security.html",
                 "benchmarks.html", "examples/index.html", "bench/index.html",
                 "reference/package.html", "reference/errors.html", "reference/aio.html",
                 "reference/lowlevel.html", "reference/tools.html", "reference/scapy.html"):
        assert page in pages, sorted(pages)
    # The home page is the README, its links to docs/*.md now point into the site.
    home = (site / "index.html").read_text(encoding="utf-8")
    assert 'href="python-api.html"' in home and 'href="security.html"' in home
    assert 'href="bench/index.html"' in (site / "benchmarks.html").read_text(encoding="utf-8")
    # Git-host style anchors, as the guide's own table of contents uses them.
    guide = (site / "python-api.html").read_text(encoding="utf-8")
    assert 'id="level-1--per-packet"' in guide and 'href="#level-1--per-packet"' in guide
    # The API reference comes from the docstrings.
    reference = (site / "reference" / "package.html").read_text(encoding="utf-8")
    for name in ("memif_cffi.Context.poll", "memif_cffi.Interface.wait_connected",
                 "memif_cffi.RxQueue.recv_into", "memif_cffi.TxQueue.send_batch",
                 "memif_cffi.queues.RxViews.forward", "memif_cffi.PacketBatch"):
        assert f'id="{name}"' in reference, name
    scapy = (site / "reference" / "scapy.html").read_text(encoding="utf-8")
    assert 'id="memif_cffi.contrib.scapy.MemifSocket.open"' in scapy


# ------------------------------------------------------------ from-c.md


def table_rows() -> Iterator[tuple[str, str]]:
    """(C cell, Python cell) of every table row of the page."""
    for line in FROM_C.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells != ["C", "Python"] and not set(cells[0]) <= {"-"}:
            yield cells[0], cells[1]


def code_spans(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


NAMESPACE: dict[str, Any] = {
    **{name: getattr(memif_cffi, name) for name in memif_cffi.__all__},
    "RxViews": queues.RxViews,
    "lowlevel": importlib.import_module("memif_cffi.lowlevel"),
}


def has_attribute(obj: Any, name: str) -> bool:
    if hasattr(obj, name):
        return True
    # Instance attributes declared in the class body (MemifError.strerror).
    return any(name in getattr(k, "__annotations__", {}) for k in getattr(obj, "__mro__", ()))


def test_from_c_page_names_real_python_api() -> None:
    rows = list(table_rows())
    assert len(rows) >= 40
    interface_params = inspect.signature(memif_cffi.Context.interface).parameters
    checked = 0
    for _c, py in rows:
        for span in code_spans(py):
            for module in re.findall(r"\bmemif_cffi(?:\.\w+)+", span):
                importlib.import_module(module)
                checked += 1
            for owner, attr in re.findall(r"(?<![\w.])([A-Za-z]\w*)\.(\w+)", span):
                if owner in NAMESPACE:
                    assert has_attribute(NAMESPACE[owner], attr), f"{owner}.{attr} ({span})"
                    checked += 1
            call = re.match(r"(\w+(?:\.\w+)?)\(", span)
            keywords = re.findall(r"(\w+)=", span)
            if call and keywords and call.group(1).split(".")[0] in NAMESPACE:
                target: Any = NAMESPACE[call.group(1).split(".")[0]]
                for part in call.group(1).split(".")[1:]:
                    target = getattr(target, part)
                params = inspect.signature(target).parameters
                for kw in keywords:
                    assert kw in params, f"{call.group(1)} has no parameter {kw} ({span})"
                    checked += 1
            elif re.fullmatch(r"\w+=", span):
                assert span[:-1] in interface_params, span
                checked += 1
    assert checked >= 50


def test_from_c_page_names_real_c_api() -> None:
    checked = 0
    for c, _py in table_rows():
        for span in code_spans(c):
            for name in re.findall(r"\bmemif_\w+", span):
                if name.endswith("_t"):
                    ffi.typeof(f"{name} *")  # pointer: also works for function types
                else:
                    assert hasattr(lib, name), name
                checked += 1
            for name in re.findall(r"\bMEMIF_\w*[A-Z]\b", span):
                assert hasattr(lib, name), name
                checked += 1
    assert checked >= 40


def test_from_c_page_c_example_compiles(tmp_path: Path) -> None:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.fail("no C compiler")
    blocks = re.findall(r"```c\n(.*?)```", FROM_C.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) == 1
    src = tmp_path / "example.c"
    src.write_text(blocks[0], encoding="utf-8")
    res = subprocess.run([compiler, "-std=gnu11", "-Wall", "-Werror", "-fsyntax-only",
                          f"-I{ROOT / 'libmemif-src' / 'include'}", str(src)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
