"""Check the coverage totals of ``make coverage`` (run from the coverage tree).

* Python: memif_cffi line coverage from coverage.py, at least 95 %.
* C: libmemif-src/src line coverage from gcov (through gcovr), at least 90 %,
  and every function never called is listed in :data:`UNCALLED` with the
  reason it is not reached by the suite. A function listed there that the
  suite does call is reported too, so the list stays true.

Prints both reports; exits non-zero when a check fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PYTHON_MIN = 95.0
C_MIN = 90.0

#: C functions the suite never calls, and why.
UNCALLED: dict[str, str] = {}


def python_total() -> float:
    subprocess.run([sys.executable, "-m", "coverage", "report"], check=True)
    subprocess.run([sys.executable, "-m", "coverage", "json", "-q", "-o", "build/py-cov.json"],
                   check=True)
    data = json.loads(Path("build/py-cov.json").read_text())
    return float(data["totals"]["percent_covered"])


def c_report() -> tuple[float, dict[str, int]]:
    """(line coverage in %, calls per function) of libmemif-src/src."""
    subprocess.run([sys.executable, "-m", "gcovr", "--root", ".", "--filter", "libmemif-src/src/",
                    "--json", "build/c-cov.json", "--txt", "-", "build"], check=True)
    data = json.loads(Path("build/c-cov.json").read_text())
    total = covered = 0
    calls: dict[str, int] = {}
    for f in data["files"]:
        for line in f["lines"]:
            if line.get("gcovr/noncode"):
                continue
            total += 1
            covered += line["count"] > 0
        for fn in f.get("functions", []):
            if fn.get("gcovr/excluded"):  # not a function: gcov's name for a static inline
                continue
            name = fn.get("demangled_name") or fn["name"]
            calls[name] = calls.get(name, 0) + int(fn["execution_count"])
    return (100.0 * covered / total if total else 0.0), calls


def main() -> int:
    failures = []
    py = python_total()
    c, calls = c_report()
    print(f"\nmemif_cffi (Python): {py:.1f} % of lines (minimum {PYTHON_MIN} %)")
    print(f"libmemif-src/src (C): {c:.1f} % of lines (minimum {C_MIN} %)")
    if py < PYTHON_MIN:
        failures.append(f"Python line coverage {py:.1f} % < {PYTHON_MIN} %")
    if c < C_MIN:
        failures.append(f"C line coverage {c:.1f} % < {C_MIN} %")
    uncalled = sorted(name for name, n in calls.items() if n == 0)
    print("C functions never called:" if uncalled else "every C function is called")
    for name in uncalled:
        reason = UNCALLED.get(name)
        print(f"  {name}: {reason or 'NOT LISTED'}")
        if reason is None:
            failures.append(f"{name} is never called and not listed in UNCALLED")
    for name in sorted(set(UNCALLED) - set(uncalled)):
        failures.append(f"{name} is listed in UNCALLED but the suite calls it")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
