"""Faults around a connection: the peer process killed, the socket file pulled away,
file descriptors running out.

* SIGKILL mid-burst, 500 times in a row per role: children forked by a small
  fork server (forkserver.py) connect to our interface, flood packets and are
  killed at a random moment. Our side must see every disconnect, reconnect to
  the next child, and end with the fds and mappings it started with.
* The socket file deleted or replaced while our master listens.
* RLIMIT_NOFILE set tiny in a subprocess (fd_exhaustion.py).
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile import (
    Usage,
    assert_no_handle_growth,
    assert_rss_growth_below,
    child_env,
    collect,
    pump,
    settle,
    usage,
)

import memif_cffi as memif

HERE = Path(__file__).resolve().parent
KILLS = 500


class ForkServer:
    """Client side of forkserver.py."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "forkserver.py")], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=child_env(), start_new_session=True)
        self._buf = b""

    def _line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError(f"no answer from the fork server within {timeout} s")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise AssertionError(f"the fork server exited ({self.proc.poll()})")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def spawn(self, role: str, path: str, seed: int) -> int:
        self._send(f"spawn {role} {path} {seed}")
        word, pid = self._line(20).split()
        assert word == "ready", word
        return int(pid)

    def reap(self, pid: int) -> int:
        self._send(f"reap {pid}")
        word, got, status = self._line(10).split()
        assert (word, int(got)) == ("reaped", pid)
        return int(status)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            # The server's children are in its session: none may outlive the test.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.mark.parametrize("our_role", ["master", "slave"])
def test_peer_killed_mid_burst_500_times(tmp_path: Path, our_role: str) -> None:
    """500 children in a row connect, flood, and die of SIGKILL at a random moment.

    Every time: the connection came up, packets arrived, our side saw the
    disconnect (``on_disconnect`` once, reason "connection closed by peer"),
    the child really died of SIGKILL (not of a crash of its own), and our side
    reconnects to the next child. Our slave reconnects at once (``connect()``);
    each new child master finds the socket file its killed predecessor left and
    replaces it. Fds and memfd mappings after the 500 kills are no more than
    after the first 10; RSS grows by less than 8 MiB (not checked under
    AddressSanitizer, whose allocator keeps freed memory).
    """
    path = str(tmp_path / "kill.sock")
    rng = random.Random(0x5EED + (our_role == "slave"))
    counts = {"up": 0, "down": 0}
    started = time.monotonic()
    with memif.Context("ours") as ctx:
        role = memif.Role.MASTER if our_role == "master" else memif.Role.SLAVE
        if role is memif.Role.SLAVE:
            ctx.set_reconnect_interval(0)
        intf = ctx.interface(
            ctx.socket(path), role=role, name=f"our-{our_role}", ring_size=256,
            on_connect=lambda i: counts.__setitem__("up", counts["up"] + 1),
            on_disconnect=lambda i: counts.__setitem__("down", counts["down"] + 1))
        server = ForkServer()
        child = 0
        received = 0
        warm: Usage | None = None
        batch = memif.PacketBatch(256, 2048)
        back = memif.PacketBatch(16, 64)
        back.fill(b"\x55" * 64)

        def drain() -> int:
            nonlocal received
            try:
                n = intf.rx[0].recv_into(batch)
                if n and intf.connected:
                    intf.tx[0].send_batch(back)
            except memif.DisconnectedError:
                return 0
            received += n
            return n

        try:
            for i in range(KILLS):
                child = server.spawn("slave" if our_role == "master" else "master", path, i)
                if role is memif.Role.SLAVE:
                    intf.connect()
                pump(ctx, lambda: intf.connected, 10, f"child {i} to connect")
                pump(ctx, lambda: drain() > 0, 10, f"packets of child {i}")
                until = time.monotonic() + rng.uniform(0, 0.004)
                while time.monotonic() < until:
                    drain()
                    ctx.poll(0)
                os.kill(child, signal.SIGKILL)
                pump(ctx, lambda: (drain(), not intf.connected)[1], 10,
                     f"our side to see child {i} die")
                status = server.reap(child)
                child = 0
                assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, \
                    f"child {i} ended with status {status:#x}, not by our SIGKILL"
                assert counts == {"up": i + 1, "down": i + 1}
                assert intf.details.error == "connection closed by peer"
                if i == 9:
                    settle(ctx, 0.01)
                    warm = usage()
            settle(ctx, 0.01)
            assert warm is not None
            final = assert_no_handle_growth(warm, f"between kill 10 and kill {KILLS}")
        finally:
            if child:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
            server.close()
    elapsed = time.monotonic() - started
    print(f"\n{KILLS} kills, our side {our_role}: {elapsed:.1f} s, {received} packets received; "
          f"after 10: {warm}; after {KILLS}: {final}")
    assert warm is not None
    assert_rss_growth_below(warm, final, 8 * 1024, f"between kill 10 and kill {KILLS}")
    assert received >= KILLS


# --------------------------------------------------------------------------
# The socket file
# --------------------------------------------------------------------------


def _pair_up(mctx: memif.Context, sctx: memif.Context, master: memif.Interface,
             slave: memif.Interface) -> None:
    def up() -> bool:
        sctx.poll(0.002)
        return master.connected and slave.connected
    pump(mctx, up, 5, "master and slave to connect")


def _exchange(mctx: memif.Context, sctx: memif.Context, master: memif.Interface,
              slave: memif.Interface, frame: bytes) -> None:
    assert slave.tx[0].send(frame)
    assert collect(mctx, master.rx[0]) == [frame]
    assert master.tx[0].send(frame[::-1])
    assert collect(sctx, slave.rx[0]) == [frame[::-1]]


def test_socket_file_deleted_while_listening(tmp_path: Path) -> None:
    """The socket file is unlinked while our master listens.

    What happens (and is checked): the connected slave is not affected at all
    (its connection does not use the file); the master keeps listening on a
    socket nobody can reach, so a new slave's ``connect()`` fails with
    NoFileError (a FileNotFoundError) and the reason is recorded; a second
    master can be created on the same path at once (a fresh bind) and serves
    new slaves; closing the first master later leaves the second master's
    file alone (it removes the path only if it is still the socket it bound,
    spec §12.3). Nothing crashes, hangs or leaks.
    """
    path = str(tmp_path / "gone.sock")
    before = usage()
    with memif.Context("m1") as m1, memif.Context("m2") as m2, memif.Context("s") as sctx:
        sctx.set_reconnect_interval(0)
        old = m1.interface(m1.socket(path), role=memif.Role.MASTER, id=1)
        s1 = sctx.interface(sctx.socket(path), id=1)
        _pair_up(m1, sctx, old, s1)
        os.unlink(path)
        _exchange(m1, sctx, old, s1, b"the file is gone, the connection is not")
        s2 = sctx.interface(sctx.socket(path), id=2)
        with pytest.raises(memif.NoFileError) as info:
            s2.connect()
        assert isinstance(info.value, FileNotFoundError)
        assert s2.details.error == info.value.strerror
        settle(m1, 0.01)
        assert old.connected and not s2.connected
        new = m2.interface(m2.socket(path), role=memif.Role.MASTER, id=2)
        assert os.path.exists(path)
        s2.connect()
        _pair_up(m2, sctx, new, s2)
        _exchange(m2, sctx, new, s2, b"to the new master")
        inode = os.stat(path).st_ino
        old.close()
        pump(sctx, lambda: not s1.connected, 2, "the first slave to see its master go")
        assert os.stat(path).st_ino == inode, "closing the old master removed the new file"
        _exchange(m2, sctx, new, s2, b"unaffected")
        s1.close()
        s2.close()
        new.close()
        assert not os.path.exists(path)
        settle(m2, 0.01)
        settle(m1, 0.01)
    assert_no_handle_growth(before, "after the socket file was deleted")


def test_socket_file_replaced_while_listening(tmp_path: Path) -> None:
    """The socket file is replaced while our master listens, by a regular file and then
    by another process's listening socket.

    What happens (and is checked): a regular file at the path makes slaves fail
    with ConnRefusedError and a new master fail with NotSocketError; nothing is
    removed. A foreign listener at the path gets the slaves that connect (they
    do not reach our master; our slave records the foreign side's behaviour —
    here it closes at once); a new master refuses the path with AlreadyError
    and does not touch the live socket. Closing our original master removes
    neither file, since neither is the socket it bound. The connected slave
    keeps working throughout.
    """
    path = str(tmp_path / "swap.sock")
    before = usage()
    with memif.Context("m") as mctx, memif.Context("s") as sctx, memif.Context("x") as xctx:
        sctx.set_reconnect_interval(0)
        master = mctx.interface(mctx.socket(path), role=memif.Role.MASTER, id=1)
        slave = sctx.interface(sctx.socket(path), id=1)
        _pair_up(mctx, sctx, master, slave)

        os.unlink(path)
        Path(path).write_bytes(b"not a socket")
        late = sctx.interface(sctx.socket(path), id=2)
        with pytest.raises(memif.ConnRefusedError):
            late.connect()
        with pytest.raises(memif.NotSocketError):
            xctx.interface(xctx.socket(path), role=memif.Role.MASTER, id=2)
        assert Path(path).read_bytes() == b"not a socket"
        _exchange(mctx, sctx, master, slave, b"regular file in the way")

        os.unlink(path)
        foreign = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            foreign.bind(path)
            foreign.listen(4)
            with pytest.raises(memif.AlreadyError):
                xctx.interface(xctx.socket(path), role=memif.Role.MASTER, id=3)
            # That master's probe (spec §12.2) was a throw-away connection, closed at once.
            probe, _ = foreign.accept()
            with probe:
                probe.settimeout(2)
                assert probe.recv(128) == b""
            late.connect()  # reaches the foreign listener, not our master
            conn, _ = foreign.accept()
            conn.close()  # it hangs up without a word
            pump(sctx, lambda: late.details.error == "connection closed by peer", 2,
                 "our slave to see the foreign socket hang up")
            settle(mctx, 0.01)
            assert master.connected and not late.connected
            _exchange(mctx, sctx, master, slave, b"foreign listener in the way")
            inode = os.stat(path).st_ino
            master.close()
            assert os.stat(path).st_ino == inode, "our master removed a socket it did not bind"
        finally:
            foreign.close()
        os.unlink(path)
        pump(sctx, lambda: not slave.connected, 2)
        slave.close()
        late.close()
        settle(sctx, 0.01)
    assert_no_handle_growth(before, "after the socket file was replaced")


# --------------------------------------------------------------------------
# File descriptors running out
# --------------------------------------------------------------------------


def test_fd_exhaustion(tmp_path: Path) -> None:
    """RLIMIT_NOFILE set just above the fds in use, in a subprocess (fd_exhaustion.py).

    Every operation that needs an fd fails with ProcFileLimitError (a MemifError and
    an OSError, errno EMFILE, message naming RLIMIT_NOFILE) or, where the failure
    happens inside the event loop, leaves the interface disconnected with that
    reason; nothing leaks; once the limit is lifted the same objects connect and
    exchange packets. The script checks everything and prints one line per phase.
    """
    res = subprocess.run([sys.executable, str(HERE / "fd_exhaustion.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=60, env=child_env())
    assert res.returncode == 0, f"exit {res.returncode}\n{res.stdout}\n{res.stderr[-4000:]}"
    lines = res.stdout.splitlines()
    assert lines[-1] == "all phases passed", res.stdout
    for phase in ("context", "master", "slave", "handshake", "accept"):
        assert any(line.startswith(f"{phase}:") for line in lines), (phase, res.stdout)
