"""The memif command as a whole: help, version, entry point, demo, and the error contract."""

from __future__ import annotations

import importlib
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from clihelp import ROOT, one_error_line, run_cli

import memif_cffi
from memif_cffi import cli
from memif_cffi.cli import common

CONNECTING = ["responder", "ping", "bench", "capture", "details"]
ALL = [*CONNECTING, "demo", "version"]


def extra_args(command: str, tmp_path: Path) -> list[str]:
    """What a command needs besides the interface options to get as far as connecting."""
    if command == "capture":
        return ["-w", str(tmp_path / "out.pcap")]
    if command == "bench":
        return ["--external-peer"]
    return []


def test_help_lists_every_command() -> None:
    res = run_cli("--help")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: memif ")
    for command in ALL:
        assert re.search(rf"^\s+{command}\s", res.stdout, re.M), command
    assert "bench-peer" not in res.stdout  # internal


@pytest.mark.parametrize("command", ALL)
def test_help_of_each_command(command: str) -> None:
    res = run_cli(command, "--help")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"usage: memif {command} ")
    if command in CONNECTING:
        for option in ("--socket", "--role", "--id", "--secret", "--mode", "--queues",
                       "--ring-size", "--buffer-size", "--timeout"):
            assert option in res.stdout, (command, option)


def test_no_command_prints_usage() -> None:
    res = run_cli()
    assert res.returncode == 2
    assert "usage: memif" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("args", [["--version"], ["version"]])
def test_version(args: list[str]) -> None:
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == (
        f"memif {memif_cffi.__version__} (libmemif 3.1 API, memif protocol 2.0)")


def test_console_script_entry_point(capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "pyproject.toml").read_text()
    m = re.search(r'^\[project\.scripts\]\s*\nmemif\s*=\s*"([\w.]+):(\w+)"', text, re.M)
    assert m, "pyproject.toml declares no memif console script"
    func = getattr(importlib.import_module(m.group(1)), m.group(2))
    assert func is cli.main
    assert func(["version"]) == 0
    assert memif_cffi.__version__ in capsys.readouterr().out
    assert func(["--version"]) == 0
    assert func([]) == 2
    assert func(["details", "--ring-size", "3"]) == 2
    err = capsys.readouterr().err
    assert err.strip().endswith("(see 'memif details --help')")
    assert "memif details: error: argument --ring-size:" in err


def test_demo_with_a_small_count() -> None:
    res = run_cli("demo", "--count", "3000", "--size", "100", "--burst", "32",
                  "--ring-size", "256")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "connected: master and slave" in res.stdout
    for direction in ("slave->master", "master->slave"):
        assert f"verified 3000/3000 packets {direction} (100 B)" in res.stdout


def test_demo_rejects_bad_options() -> None:
    one_error_line(run_cli("demo", "--size", "4"), "demo")
    one_error_line(run_cli("demo", "--ring-size", "3"), "demo")
    # A 9000-byte frame in 64-byte buffers needs 141 slots; the ring has 16.
    one_error_line(run_cli("demo", "--size", "9000", "--buffer-size", "64",
                           "--ring-size", "16"), "demo")


def test_demo_takes_the_interface_options() -> None:
    """Both sides use them; --role picks the side created first (a slave first retries)."""
    sock = f"@memif-cli-demo-{uuid.uuid4().hex[:10]}"
    res = run_cli("demo", "--count", "3000", "--size", "1500", "--buffer-size", "512",
                  "--queues", "3", "--role", "slave", "--mode", "ip", "--secret", "s3cr3t",
                  "--id", "9", "--socket", sock)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"connected: master and slave on {sock}" in res.stdout
    for direction in ("slave->master", "master->slave"):
        assert f"verified 3000/3000 packets {direction} (1500 B)" in res.stdout


# ---------------------------------------------------------------- the error contract


@pytest.mark.parametrize("command", CONNECTING)
def test_missing_socket_directory(command: str, tmp_path: Path) -> None:
    sock = str(tmp_path / "no-such-dir" / "memif.sock")
    for role in ("slave", "master"):
        res = run_cli(command, "--socket", sock, "--role", role, "--timeout", "2",
                      *extra_args(command, tmp_path))
        line = one_error_line(res, command)
        assert res.returncode == 1
        assert f"socket directory {tmp_path / 'no-such-dir'} does not exist" in line


@pytest.mark.parametrize("command", CONNECTING)
def test_bad_ring_size(command: str, tmp_path: Path) -> None:
    res = run_cli(command, "--ring-size", "3", *extra_args(command, tmp_path))
    line = one_error_line(res, command)
    assert res.returncode == 2
    assert "--ring-size" in line and "power of two" in line


@pytest.mark.parametrize("command", CONNECTING)
def test_bad_mode(command: str, tmp_path: Path) -> None:
    res = run_cli(command, "--mode", "token-ring", *extra_args(command, tmp_path))
    line = one_error_line(res, command)
    assert res.returncode == 2
    assert "invalid choice: 'token-ring'" in line


@pytest.mark.parametrize("command", CONNECTING)
def test_connect_timeout_against_nobody(command: str, sock_path: str, tmp_path: Path) -> None:
    res = run_cli(command, "--socket", sock_path, "--timeout", "0.3",
                  *extra_args(command, tmp_path))
    line = one_error_line(res, command)
    assert res.returncode == 1
    assert f"not connected to {sock_path} after 0.3 s" in line


def test_master_timeout_says_no_slave(sock_path: str) -> None:
    res = run_cli("details", "--socket", sock_path, "--role", "master", "--timeout", "0.3")
    assert "no slave connected" in one_error_line(res, "details")


@pytest.mark.parametrize(("args", "text"), [
    (["--id", "-1"], "the interface id must be in 0..4294967295"),
    (["--queues", "0"], "the number of queues must be in 1..255"),
    (["--buffer-size", "70000"], "the buffer size must be in 1..65535"),
    (["--secret", "x" * 25], "the secret is 25 bytes long; the limit is 24"),
    (["--name", "n" * 33], "the interface name is 33 bytes long; the limit is 32"),
    (["--timeout", "0"], "the timeout must be > 0"),
    (["--socket", "/" + "s" * 120], "the socket path is 121 bytes long"),
    (["--dst", "300.1.1.1"], "not an IPv4 address"),
    (["--src-mac", "02:fe:00"], "not a MAC address"),
    (["-c", "many"], "the count must be an integer"),
    (["-s", "65494"], "--size 65494 makes frames of 65536 bytes; the limit is 65535"),
])
def test_bad_values_are_usage_errors(args: list[str], text: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """In process (no subprocess start-up): main() returns the status, prints one line."""
    status = cli.main(["ping", *args])
    out, err = capsys.readouterr()
    res = subprocess.CompletedProcess(args, status, out, err)
    line = one_error_line(res, "ping")
    assert status == 2
    assert text in line


def test_socket_in_use_by_another_master(sock_path: str) -> None:
    """A second master on a busy socket fails at once with the library's reason."""
    from clihelp import ApiPeer

    with ApiPeer(sock_path):
        res = run_cli("details", "--socket", sock_path, "--role", "master", "--timeout", "1")
    line = one_error_line(res, "details")
    assert f"cannot listen on {sock_path}:" in line


@pytest.mark.parametrize(("exc", "status", "text"), [
    (KeyboardInterrupt(), 130, "interrupted"),
    (OSError(5, "Input/output error"), 1, "Input/output error"),
    (RuntimeError("boom"), 1, "unexpected RuntimeError: boom"),
    (BrokenPipeError(), 1, None),
])
def test_main_turns_exceptions_into_one_line_and_a_status(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        exc: BaseException, status: int, text: str | None) -> None:
    """Whatever a subcommand raises, main() prints at most one line and returns a status."""
    from memif_cffi.cli import misc

    def failing(opts: object) -> int:
        raise exc

    monkeypatch.delenv("MEMIF_CLI_DEBUG", raising=False)
    monkeypatch.setattr(misc, "cmd_version", failing)
    assert cli.main(["version"]) == status
    err = capsys.readouterr().err
    if text is None:
        assert err == ""  # a closed pipe ends the command quietly
    else:
        assert err.count("\n") == 1 and err.startswith("memif version: error: ") and text in err


def _deliver(sig: int) -> None:
    """Send ``sig`` to this process and give Python the chance to run its handler."""
    os.kill(os.getpid(), sig)
    for _ in range(100):  # the handler runs between bytecodes, soon after the signal
        time.sleep(0.001)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_is_raised_where_the_command_checks(sig: int) -> None:
    """Ctrl+C or SIGTERM only sets a flag: KeyboardInterrupt comes from check_interrupt().

    Raised at an arbitrary bytecode, it could leave a lock held (ours, or a tracing
    tool's) and the close that follows would wait for it forever.
    """
    before = signal.getsignal(sig)
    with common.Interrupts():
        _deliver(sig)  # nothing raised here
        with pytest.raises(KeyboardInterrupt):
            common.check_interrupt()
        # A second signal does not wait for a check: a stuck command still stops.
        with pytest.raises(KeyboardInterrupt):
            _deliver(sig)
    assert signal.getsignal(sig) is before
    common.check_interrupt()  # a new command starts without the old request
    with common.Interrupts():
        common.check_interrupt()


def test_ignored_signal_stays_ignored() -> None:
    """A command started with SIGINT ignored (a background job) keeps ignoring it."""
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with common.Interrupts():
            _deliver(signal.SIGINT)
            common.check_interrupt()
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, old)


def test_session_poll_stops_on_the_flag(tmp_path: Path) -> None:
    """A command loop blocked in Session.poll() stops at the next poll once the flag is set."""
    opts = cli.build_parser().parse_args(
        ["responder", "--socket", str(tmp_path / "s.sock"), "--role", "master"])
    with common.Interrupts(), common.Session(opts, "responder") as session:
        session.poll(0)
        _deliver(signal.SIGINT)
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            for _ in range(100):
                session.poll(common.POLL_STEP)
        assert time.monotonic() - start < 1.0
        assert not session.intf.closed  # the close is left to the command's own exit
