"""Every command and Python example in README.md runs, so the README cannot rot.

How the README is read:

* each ``sh`` block is a list of commands (a trailing ``# comment`` is
  dropped). Under ``# terminal 1`` are servers that run until Ctrl+C: they
  are started first and stopped with SIGINT at the end of the block, and must
  then exit cleanly; the commands under ``# terminal 2`` (or in a block
  without terminals) must exit 0;
* ``python`` is this interpreter; paths a test must not touch are swapped
  for private ones (:data:`SWAPS`), abstract socket names made unique;
* a command that needs a peer the README assumes (VPP on
  ``/run/vpp/memif.sock``) gets a stand-in from this package: a master that
  pings it, like VPP's ``ping 192.168.1.2``;
* ``make test`` is this suite itself;
* ``python`` blocks run against a responder standing in for VPP; the second
  one runs inside the first one's ``with`` block, whose names it uses.

A command added to the README without a way to run it here fails
:func:`test_every_command_is_known`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from peers import require_dpdk

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

#: README path -> name of the private replacement (under the test's tmp_path).
SWAPS = {
    "/run/vpp/memif.sock": "vpp.sock",
    "/tmp/memif-dpdk.sock": "dpdk.sock",
    "/tmp/memif-tour.pcap": "tour.pcap",
    "/tmp/two_peers": "two_peers",
}


def sh_blocks() -> list[list[tuple[str, str]]]:
    """Each sh block as [(role, command)], role "server" or "client"."""
    blocks = []
    for body in re.findall(r"```sh\n(.*?)```", README.read_text(), re.S):
        role = "client"
        cmds = []
        for raw in body.splitlines():
            line = raw.strip()
            if line.startswith("# terminal"):
                role = "server" if line.startswith("# terminal 1") else "client"
                continue
            line = re.sub(r"\s+#.*$", "", line)
            if line and not line.startswith("#"):
                cmds.append((role, line))
        blocks.append(cmds)
    return blocks


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


KNOWN_PREFIXES = ("make run", "make test", "make lib", "cc ", "dpdk-testpmd ",
                  "python -m memif_cffi ", "python examples/")


def test_every_command_is_known() -> None:
    commands = [cmd for block in sh_blocks() for _, cmd in block]
    assert len(commands) >= 15
    for cmd in commands:
        assert cmd.startswith(KNOWN_PREFIXES), f"README command with no runner here: {cmd}"
    assert commands[:2] == ["make run", "make test"]  # the two commands come first


def localize(cmd: str, tmp: Path, tag: str) -> list[str]:
    for path, name in SWAPS.items():
        cmd = cmd.replace(path, str(tmp / name))
    cmd = re.sub(r"(?<=\s)@([\w-]+)", lambda m: f"@{m.group(1)}-{tag}", cmd)
    if cmd.startswith("dpdk-testpmd "):
        cmd = cmd.replace("dpdk-testpmd ", f"dpdk-testpmd --file-prefix=readme-{tag} ", 1)
    args = cmd.split()
    if args[0] == "python":
        args[0] = sys.executable
    return args


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.pop("LD_PRELOAD", None)  # testpmd is not ours (make sanitize)
    if sys.executable.startswith(str(ROOT)):
        e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e['PATH']}"
    return e


def start(args: list[str]) -> subprocess.Popen[str]:
    env_ = env()
    if args[0] != "dpdk-testpmd":
        env_ = dict(os.environ)  # our own processes keep a sanitizer preload, if any
    return subprocess.Popen(args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env_,
                            start_new_session=True)


def stop(proc: subprocess.Popen[str], what: str) -> str:
    """SIGINT a server; returns its output; asserts it exited cleanly."""
    if proc.poll() is None:
        if what.startswith("dpdk-testpmd"):
            assert proc.stdin is not None
            proc.stdin.write("\n")  # testpmd stops on Enter
            proc.stdin.flush()
        else:
            proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"{what} did not stop:\n{out}") from None
    assert proc.returncode == 0, f"{what} exited {proc.returncode}:\n{out}"
    return out


def run(args: list[str], timeout: float = 120) -> str:
    res = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                         env=dict(os.environ), stdin=subprocess.DEVNULL)
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{' '.join(args)} exited {res.returncode}:\n{out}"
    return out


def wait_for_socket(args: list[str], timeout: float = 30) -> None:
    paths = [a.split("socket=")[1].split(",")[0] for a in args if "socket=" in a]
    paths += [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--socket"]
    deadline = time.monotonic() + timeout
    for path in paths:
        if path.startswith("@"):
            continue
        while not os.path.exists(path):
            assert time.monotonic() < deadline, f"{path} never appeared"
            time.sleep(0.1)


def vpp_stand_in(tmp: Path, tag: str) -> list[str]:
    """A master on the swapped VPP socket that pings 192.168.1.2 three times, like VPP."""
    return [sys.executable, "-m", "memif_cffi", "ping", "--role", "master",
            "--socket", str(tmp / SWAPS["/run/vpp/memif.sock"]), "--src-ip", "192.168.1.1",
            "--dst", "192.168.1.2", "-c", "3", "-i", "0.2", "--timeout", "30"]


BLOCKS = sh_blocks()


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_commands_run(index: int, tmp_path: Path) -> None:
    block = BLOCKS[index]
    tag = uuid.uuid4().hex[:8]
    if any(cmd.startswith("dpdk-testpmd") for _, cmd in block):
        require_dpdk()
    servers: list[tuple[subprocess.Popen[str], str]] = []
    try:
        for role, cmd in block:
            args = localize(cmd, tmp_path, tag)
            if cmd == "make test":
                continue  # this suite is make test
            if role == "server":
                servers.append((start(args), cmd))
                wait_for_socket(args)
                continue
            if "/run/vpp/memif.sock" in cmd:
                # A slave of VPP's: run it against the stand-in, then Ctrl+C it.
                proc = start(args)
                try:
                    out = run(vpp_stand_in(tmp_path, tag), timeout=60)
                finally:
                    stop(proc, cmd)
                assert "3 packets transmitted, 3 received" in out, out
                continue
            out = run(args)
            check_output(cmd, out, tmp_path)
    finally:
        for proc, cmd in reversed(servers):
            if proc.poll() is None:
                stop(proc, cmd)


def check_output(cmd: str, out: str, tmp: Path) -> None:
    """What each kind of command must have printed (beyond exiting 0)."""
    if " ping " in cmd:
        assert re.search(r"3 packets transmitted, 3 received, 0% packet loss", out), out
    elif cmd.startswith("make run") or " demo" in cmd:
        assert out.count("verified") == 2, out
    elif "test_app.py" in cmd:
        assert re.search(r"\b1000 .*replies|replies\D+1000\b", out), out
    elif "capture" in cmd:
        assert (tmp / SWAPS["/tmp/memif-tour.pcap"]).stat().st_size >= 24
    elif cmd.startswith("cc "):
        assert os.access(tmp / SWAPS["/tmp/two_peers"], os.X_OK)


@pytest.fixture
def vpp_like_responder(tmp_path: Path) -> Iterator[str]:
    """A master responder standing in for VPP; yields its socket path."""
    path = str(tmp_path / "vpp.sock")
    proc = start([sys.executable, "-m", "memif_cffi", "responder", "--role", "master",
                  "--socket", path, "--name", "vpp-stand-in"])
    try:
        wait_for_socket(["--socket", path])
        yield path
    finally:
        stop(proc, "responder")


def test_readme_python_examples_run(vpp_like_responder: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    first, levels = python_blocks()
    first = first.replace("/run/vpp/memif.sock", vpp_like_responder)
    # The second block runs inside the first one's with-block, with a frame to send.
    body = "\n".join("    " + line for line in levels.splitlines())
    code = first + "    from memif_cffi.packets import echo_request\n" \
        "    frame = echo_request(src_ip='192.168.1.1', dst_ip='192.168.1.2', ident=1, seq=1)\n" \
        + body + "\n    result = (n, headers)\n"
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    # The peer's application name: the memif tool's.
    assert capsys.readouterr().out.strip() == "memif_cffi"
    n, headers = namespace["result"]  # type: ignore[misc]
    assert isinstance(n, int) and isinstance(headers, list)
