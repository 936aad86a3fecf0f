"""The contrib tests use the command-line tests' peer helpers (tests/cli/clihelp.py)."""

from __future__ import annotations

import sys
from pathlib import Path

CLI_TESTS = str(Path(__file__).resolve().parents[1] / "cli")
if CLI_TESTS not in sys.path:
    sys.path.insert(0, CLI_TESTS)
