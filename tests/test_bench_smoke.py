"""Smoke test of the benchmark harness (bench/, ``make bench``).

Builds the C bench programs and runs every measurement kind once, as briefly
as the harness allows, then renders the report. It checks that each kind
produces a positive number and that the report comes out — never how large
the numbers are: timing is ``make bench``'s business, not the test suite's.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from cprog import SANITIZE_FLAGS, sanitizing
from peers import require_dpdk

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import report, runner  # noqa: E402  (needs the repository root on sys.path)


def _cflags() -> list[str]:
    """Under ``make sanitize`` the programs link the instrumented library: instrument them too."""
    return list(SANITIZE_FLAGS) if sanitizing() else []


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench-bin")
    programs = runner.build(out, _cflags())
    assert set(programs) == {"memif_bench", "plainring", "rawrtt"}
    return out


def _check(res: dict[str, Any], expected: set[str]) -> None:
    seen = set()
    for group in res["groups"]:
        for run in group["runs"]:
            assert run["error"] is None, f"{group['name']} {run['kind']}: {run['error']}"
            assert run["value"] is not None and run["value"] > 0, (group["name"], run)
            seen.add(run["kind"])
    assert seen == expected


def test_every_kind_without_dpdk(build_dir: Path, tmp_path: Path) -> None:
    res = runner.run("smoke", with_dpdk=False, build_dir=build_dir, cflags=_cflags())
    _check(res, {
        "c-c", "plainring", *runner.python_kinds(), *runner.LATENCY_KINDS,
        *runner.DESIGN_KINDS,
    })
    # The C end points report what the data path cost during their window.
    design = next(g for g in res["groups"] if g["name"] == "design")
    polled = next(r for r in design["runs"] if r["kind"] == "c-c")
    assert polled["extra"]["rx"]["packets"] > 0
    assert {"syscr", "syscw", "allocs"} <= set(polled["extra"]["tx"])

    # Each synchronous Python worker probes its allocations before its window.
    python = next(g for g in res["groups"] if g["name"] == "python")
    for run in python["runs"]:
        if run["kind"] in ("py-bulk-tx", "py-bulk-rx", "py-packet-tx", "py-packet-rx"):
            side = run["kind"][-2:]
            assert run["extra"][side]["alloc_peak_bpp"] >= 0, run

    written = report.write(res, tmp_path)
    text = (tmp_path / "benchmarks.md").read_text()
    assert "## Targets" in text and "smoke run" in text
    assert "TODO" not in text.split("## Data-path design checks", 1)[1].split("## Plot")[0]
    assert tmp_path / "benchmarks.md" in written
    assert len(report.targets(res)) >= 5


def test_dpdk_kinds(build_dir: Path) -> None:
    require_dpdk()
    res = runner.run("smoke", with_dpdk=True, build_dir=build_dir, cflags=_cflags(),
                     only={"core"})
    _check(res, set(runner.CORE_KINDS))
