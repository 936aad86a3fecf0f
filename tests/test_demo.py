"""The loopback demo as its own module (``python -m memif_cffi.demo``)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from memif_cffi import demo


def test_demo_module_runs_and_checks_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--count", "5000", "--size", "200", "--queues", "2", "--first",
                      "slave", "--buffer-size", "128"]) == 0
    out = capsys.readouterr().out
    assert "verified 5000/5000 packets slave->master (200 B)" in out
    assert "verified 5000/5000 packets master->slave (200 B)" in out
    for bad in (["--size", "4"], ["--burst", "0"], ["--count", "-1"], ["--queues", "0"],
                ["--ring-log2", "15"], ["--buffer-size", "0"],
                ["--size", "9000", "--buffer-size", "64", "--ring-log2", "4"]):
        with pytest.raises(SystemExit) as exc:
            demo.main(bad)
        assert exc.value.code == 2, bad
        assert "error:" in capsys.readouterr().err


def test_demo_as_a_script() -> None:
    res = subprocess.run([sys.executable, "-m", "memif_cffi.demo", "--count", "1000"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("verified 1000/1000") == 2
