"""Fd exhaustion checks, run as a script by test_faults.py (argument: a scratch directory).

It lowers RLIMIT_NOFILE (the soft limit only) to just above the lowest free
fd, so the next few fds the library asks for are refused with EMFILE, and
checks phase by phase that every failure is a clear exception or a recorded
reason, that nothing leaks, and that everything works once the limit is
lifted. One line per phase on stdout; the last is "all phases passed". Any
failed check raises (exit status 1). Lowering RLIMIT_NOFILE is harmless
under AddressSanitizer (unlike RLIMIT_AS).
"""

from __future__ import annotations

import errno
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import memif_cffi as memif

SOFT, HARD = resource.getrlimit(resource.RLIMIT_NOFILE)
LIMIT_TEXT = "RLIMIT_NOFILE"


def nfds() -> int:
    return len(os.listdir("/proc/self/fd"))


def lowest_free_fd() -> int:
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    return fd


@contextmanager
def fd_limit(extra: int) -> Iterator[None]:
    """Only ``extra`` more fds can be opened (fds are allocated lowest first)."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free_fd() + extra, HARD))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT, HARD))


def check_limit_error(exc: BaseException) -> None:
    assert isinstance(exc, memif.ProcFileLimitError), repr(exc)
    assert isinstance(exc, memif.MemifError) and isinstance(exc, OSError)
    assert exc.errno == errno.EMFILE, exc.errno
    assert LIMIT_TEXT in str(exc), str(exc)


def raises_limit(fn: Callable[[], Any]) -> BaseException:
    try:
        fn()
    except BaseException as exc:
        check_limit_error(exc)
        return exc
    raise AssertionError("no exception at the fd limit")


def pump(ctxs: list[memif.Context], until: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out"
        for c in ctxs:
            c.poll(0.002)


def exchange(a: memif.Interface, b: memif.Interface, ctxs: list[memif.Context]) -> None:
    assert a.tx[0].send(b"through")
    got: list[bytes] = []
    deadline = time.monotonic() + 5
    while not got:
        assert time.monotonic() < deadline, "timed out"
        got += b.rx[0].recv_burst()
        for c in ctxs:
            c.poll(0.002)
    assert got == [b"through"]


def phase_context() -> None:
    for extra in range(3):  # a Context needs an epoll fd, an eventfd and a timerfd
        before = nfds()
        with fd_limit(extra):
            exc = raises_limit(lambda: memif.Context("starved"))
        assert nfds() == before, f"leak after a failed Context ({extra} fds left)"
    with memif.Context("fed") as ctx:
        assert ctx.fileno() >= 0
    print(f"context: {type(exc).__name__}: {exc}")


def phase_master(tmp: Path) -> None:
    with memif.Context("m") as ctx:
        sock = ctx.socket(str(tmp / "m.sock"))
        before = nfds()
        with fd_limit(0):
            exc = raises_limit(lambda: ctx.interface(sock, role=memif.Role.MASTER))
        assert nfds() == before
        assert not os.path.exists(tmp / "m.sock")
        master = ctx.interface(sock, role=memif.Role.MASTER)
        assert os.path.exists(tmp / "m.sock")
        master.close()
    print(f"master: {type(exc).__name__}: {exc}")


def phase_slave(tmp: Path) -> None:
    path = str(tmp / "s.sock")
    with memif.Context("m") as mctx, memif.Context("s") as sctx:
        sctx.set_reconnect_interval(0)
        mctx.interface(mctx.socket(path), role=memif.Role.MASTER)
        sock = sctx.socket(path)
        before = nfds()
        with fd_limit(0):
            # Creating a slave tries to connect; a failure there is recorded, not raised.
            slave = sctx.interface(sock, role=memif.Role.SLAVE)
            recorded = slave.details.error
            assert LIMIT_TEXT in recorded, recorded
            exc = raises_limit(slave.connect)
        assert nfds() == before
        assert not slave.connected
        slave.connect()
        pump([mctx, sctx], lambda: slave.connected)
    print(f"slave: {type(exc).__name__}: {exc}; details.error {recorded!r}")


def phase_handshake(tmp: Path) -> None:
    """Fds run out somewhere in the handshake (accept, the slave's memfds and
    eventfds, the master receiving them): the attempt fails with a reason on one
    side or both, nothing leaks, and the same interfaces connect afterwards."""
    path = str(tmp / "h.sock")
    reasons: set[str] = set()
    with memif.Context("m") as mctx, memif.Context("s") as sctx:
        sctx.set_reconnect_interval(0)
        master = mctx.interface(mctx.socket(path), role=memif.Role.MASTER)
        slave = sctx.interface(sctx.socket(path), role=memif.Role.SLAVE)
        pump([mctx, sctx], lambda: slave.connected and master.connected)
        slave.close()
        pump([mctx], lambda: not master.connected)
        sock = sctx.socket(path)
        baseline = nfds()
        for extra in range(10):
            master_before = master.details.error
            accept_failed = False
            slave = sctx.interface(sock, role=memif.Role.SLAVE)
            with fd_limit(extra):
                deadline = time.monotonic() + 0.3
                while time.monotonic() < deadline and not slave.connected:
                    for c in (mctx, sctx):
                        try:
                            c.poll(0.002)
                        except memif.ProcFileLimitError as exc:  # the listener's accept
                            check_limit_error(exc)
                            accept_failed = True
            if accept_failed:
                reasons.add("accept: poll() raised ProcFileLimitError")
            if not slave.connected:
                mine = slave.details.error
                theirs = master.details.error
                assert mine or accept_failed or theirs != master_before, \
                    f"no reason recorded with {extra} spare fds"
                reasons.update(r for r in (mine, theirs if theirs != master_before else "") if r)
            slave.close()
            pump([mctx, sctx], lambda: not master.connected)
            for _ in range(5):
                mctx.poll(0.002)
                sctx.poll(0.002)
            assert nfds() == baseline, f"leak with {extra} spare fds: {baseline} -> {nfds()}"
        slave = sctx.interface(sock, role=memif.Role.SLAVE)
        pump([mctx, sctx], lambda: slave.connected and master.connected)
        exchange(slave, master, [mctx, sctx])
        exchange(master, slave, [mctx, sctx])
    assert any(LIMIT_TEXT in r for r in reasons), reasons
    print(f"handshake: reasons seen {sorted(reasons)}")


def phase_accept(tmp: Path) -> None:
    """A slave waits in the listener's backlog while the master has no fd for accept():
    poll() raises ProcFileLimitError (the connection stays queued, nothing is lost),
    and the connection completes once an fd is available."""
    path = str(tmp / "a.sock")
    with memif.Context("m") as mctx, memif.Context("s") as sctx:
        sctx.set_reconnect_interval(0)
        master = mctx.interface(mctx.socket(path), role=memif.Role.MASTER)
        slave = sctx.interface(sctx.socket(path), role=memif.Role.SLAVE)  # connects now
        raised = 0
        with fd_limit(0):
            for _ in range(5):
                try:
                    mctx.poll(0.01)
                except memif.ProcFileLimitError as exc:
                    check_limit_error(exc)
                    raised += 1
        assert raised == 5, raised
        assert not master.connected
        pump([mctx, sctx], lambda: slave.connected and master.connected)
        exchange(slave, master, [mctx, sctx])
    print(f"accept: poll() raised ProcFileLimitError {raised} times, then connected")


def main() -> None:
    tmp = Path(sys.argv[1])
    phase_context()
    phase_master(tmp)
    phase_slave(tmp)
    phase_handshake(tmp)
    phase_accept(tmp)
    print("all phases passed")


if __name__ == "__main__":
    main()
