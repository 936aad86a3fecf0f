"""Every error class is part of the API; the ones the library can raise are raised for real."""

from __future__ import annotations

import errno
import os
import pickle
import socket
import stat
from pathlib import Path

import pytest
from apihelp import Pair, pump

import memif_cffi as memif
from memif_cffi import errors

BUILTIN_OF = {
    "MEMIF_ERR_NO_FILE": FileNotFoundError,
    "MEMIF_ERR_ACCES": PermissionError,
    "MEMIF_ERR_CONNREFUSED": ConnectionRefusedError,
    "MEMIF_ERR_DISCONNECTED": ConnectionError,
    "MEMIF_ERR_DISCONNECT": ConnectionError,
    "MEMIF_ERR_INVAL_ARG": ValueError,
    "MEMIF_ERR_NOMEM": MemoryError,
    "MEMIF_ERR_AGAIN": BlockingIOError,
    "MEMIF_ERR_MAX_RING": ValueError,
    "MEMIF_ERR_QID": ValueError,
    "MEMIF_ERR_SYSCALL": OSError,
}


@pytest.mark.parametrize("code", sorted(errors.BY_CODE))
def test_every_error_class_is_reachable_from_the_api(code: int) -> None:
    cls = errors.BY_CODE[code]
    # Importable from the package top level and from memif_cffi.errors...
    assert getattr(memif, cls.__name__) is cls
    assert getattr(errors, cls.__name__) is cls
    assert cls.__name__ in memif.__all__
    # ...one class per code, with the library's name and text...
    exc = memif.error_for(code, "context")
    assert type(exc) is cls and exc.code == code
    assert exc.name.startswith("MEMIF_ERR_") and exc.strerror
    assert isinstance(exc, memif.MemifError)
    assert str(exc).startswith(f"{exc.name} ({code}): ") and str(exc).endswith(" - context")
    # ...catchable as the fitting builtin, and picklable (for multiprocessing).
    builtin = BUILTIN_OF.get(exc.name)
    if builtin is not None:
        assert isinstance(exc, builtin)
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is cls and again.code == code


def test_raised_for_real_by_the_api(tmp_path: Path) -> None:
    """Errors the library reports, reached through the Pythonic API only."""
    seen: set[type[BaseException]] = set()

    def expect(exc: type[BaseException], func: object, *args: object) -> BaseException:
        with pytest.raises(exc) as info:
            func(*args)  # type: ignore[operator]
        seen.add(exc)
        return info.value

    path = str(tmp_path / "s.sock")
    with memif.Context() as ctx, memif.Context() as other:
        # A master in a missing directory: NoFileError (a FileNotFoundError).
        missing = ctx.socket(str(tmp_path / "nope" / "s.sock"))
        e = expect(memif.NoFileError, lambda: ctx.interface(missing, role=memif.Role.MASTER))
        assert isinstance(e, FileNotFoundError) and e.errno == errno.ENOENT
        # The path is a regular file: NotSocketError.
        (tmp_path / "file").write_text("x")
        expect(memif.NotSocketError, lambda: ctx.interface(
            ctx.socket(str(tmp_path / "file")), role=memif.Role.MASTER))
        # Another live listener owns the path: AlreadyError.
        master = ctx.interface(ctx.socket(path), role=memif.Role.MASTER)
        expect(memif.AlreadyError, lambda: other.interface(
            other.socket(path), role=memif.Role.MASTER))
        # A second socket on a path this context listens on: InvalidArgError.
        e = expect(memif.InvalidArgError, ctx.socket, path)
        assert "already listens" in str(e)
        # Two masters with one id on one socket: InvalidArgError (a ValueError).
        e = expect(ValueError, lambda: ctx.interface(master.socket, role=memif.Role.MASTER))
        assert "id 0 already exists" in str(e)
        # A slave on a listening socket: InvalidArgError.
        e = expect(memif.InvalidArgError, lambda: ctx.interface(master.socket))
        assert "one socket serves one role" in str(e)
        # Data path before a connection: DisconnectedError (a ConnectionError).
        expect(memif.DisconnectedError, master.tx[0].send, b"x")
        expect(memif.DisconnectedError, master.rx[0].fileno)
        # A master does not connect.
        expect(ValueError, master.connect)
        # Nobody listens on a bound socket file: ConnRefusedError.
        dead = str(tmp_path / "dead.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
            s.bind(dead)
            slave = other.interface(other.socket(dead))
            expect(memif.ConnRefusedError, slave.connect)
        # No socket file at all: NoFileError from connect().
        slave2 = other.interface(other.socket(str(tmp_path / "none.sock")))
        expect(FileNotFoundError, slave2.connect)
        # Connected already: AlreadyConnectedError.
        slave3 = other.interface(other.socket(path))
        pump(ctx, other, until=lambda: slave3.connected)
        expect(memif.AlreadyConnectedError, slave3.connect)
        # Ring size over 2**14, before any C call: RingSizeError.
        expect(memif.RingSizeError, lambda: ctx.interface(master.socket, ring_size=2**15))
        # Closed objects: ClosedError (a NoConnError).
        slave3.close()
        expect(memif.NoConnError, slave3.tx[0].send, b"x")
    expect(memif.ClosedError, ctx.fileno)
    assert len(seen) >= 10


def test_permission_denied(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR)
    try:
        with memif.Context() as ctx, pytest.raises(PermissionError):
            ctx.interface(ctx.socket(str(locked / "s.sock")), role=memif.Role.MASTER)
    finally:
        locked.chmod(stat.S_IRWXU)


def test_fd_update_refusal_is_fd_update_callback_error(tmp_path: Path) -> None:
    refuse = {"on": False}

    def on_fd_update(fd: int, events: memif.FdEvent) -> int:
        return -1 if refuse["on"] and events & memif.FdEvent.READ else 0

    with memif.Context(on_fd_update=on_fd_update) as ctx:
        refuse["on"] = True
        with pytest.raises(memif.FdUpdateCallbackError):
            ctx.interface(ctx.socket(str(tmp_path / "s")), role=memif.Role.MASTER)


def test_fd_update_exception_is_raised_with_the_library_code(tmp_path: Path) -> None:
    class BoomError(Exception):
        pass

    def on_fd_update(fd: int, events: memif.FdEvent) -> None:
        raise BoomError("no fds today")

    with pytest.raises(BoomError) as info:
        memif.Context(on_fd_update=on_fd_update)
    notes = getattr(info.value, "__notes__", [])
    assert any("MEMIF_ERR_CB_FDUPDATE" in n for n in notes)


def test_mismatched_peers_time_out_with_the_reason(sock_path: str) -> None:
    p = Pair(sock_path, connect=False, master_kw={"secret": "right"},
             slave_kw={"secret": "wrong"})
    with p:
        with pytest.raises(TimeoutError):
            pump(p.mctx, p.sctx, until=lambda: p.slave.connected, timeout=0.3)
        assert p.slave.details.error  # the master's reason, recorded by the library
        assert not p.master.connected
