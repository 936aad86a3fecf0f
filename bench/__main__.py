"""``python -m bench``: measure, then write the report.

Full run (``make bench``): docs/benchmarks.md, docs/benchmarks.png and
docs/benchmarks.json. ``BENCH_QUICK=1`` (or ``--quick``): every measurement
once and shorter, written to build/bench/quick/ unless ``--out`` says
otherwise, so a smoke run never replaces the published figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from bench import report, runner


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1",
                   help="every measurement once, shorter (also BENCH_QUICK=1)")
    p.add_argument("--out", type=Path, default=None,
                   help="directory for benchmarks.{md,json,png} (default: docs/, or "
                        "build/bench/quick/ with --quick)")
    p.add_argument("--only", default=None,
                   help="comma-separated groups to run: core, python, latency, design")
    p.add_argument("--no-dpdk", action="store_true", help="skip the testpmd measurements")
    p.add_argument("--report-only", type=Path, default=None, metavar="JSON",
                   help="rebuild the report from saved results instead of measuring")
    args = p.parse_args(argv)

    mode = "quick" if args.quick else "full"
    out = args.out or (runner.DEFAULT_BUILD / "quick" if args.quick else runner.ROOT / "docs")

    if args.report_only is not None:
        res = json.loads(args.report_only.read_text())
        out = args.out or args.report_only.parent
    else:
        only = set(args.only.split(",")) if args.only else None
        t0 = time.monotonic()
        res = runner.run(mode, with_dpdk=False if args.no_dpdk else None, only=only,
                         log=lambda msg: print(msg, file=sys.stderr, flush=True))
        print(f"measured in {time.monotonic() - t0:.0f} s", file=sys.stderr)
        out.mkdir(parents=True, exist_ok=True)
        (out / "benchmarks.json").write_text(json.dumps(res, indent=1) + "\n")
    written = report.write(res, out)
    for path in [out / "benchmarks.json", *written]:
        print(path)
    for t in report.targets(res):
        result = {True: "pass", False: "FAIL", None: "TODO"}[t.passed]
        print(f"{result:4}  {t.name}: {t.measured}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
