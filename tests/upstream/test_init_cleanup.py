"""Upstream-tests spec §1: initialisation and cleanup of databases.

Mirrors the Check cases C#1 (test_init) and C#2 (test_init_epoll) and the
behaviours upstream never tested (per-thread databases, re-initialisation,
long names, fd hygiene). References: libmemif-api §8.2, §11 (O5, X2, X9).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from lowpair import Database, Interface, get_details, open_fds
from uphelpers import APP, IF_NAME, NULL, GlobalInterface, expect, fd_open, poll_global_and

from memif_cffi.lowlevel import ffi, lib

READ = lib.MEMIF_FD_EVENT_READ
DEL = lib.MEMIF_FD_EVENT_DEL


class FdRecorder:
    """A C fd-update callback (plain ``ffi.callback``) recording (fd, events, ctx)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int]] = []
        self.callback = ffi.callback("int(*)(int, uint8_t, void *)", self._record)

    def _record(self, fd: int, events: int, ctx: Any) -> int:
        self.calls.append((fd, events, int(ffi.cast("uintptr_t", ctx))))
        return 0


def _global_socket(path: str) -> Any:
    sock = ffi.new("memif_socket_handle_t *")
    expect(lib.memif_create_socket(sock, path.encode(), NULL), "SUCCESS", "create_socket")
    return sock


def test_init_external_polling(global_db: None) -> None:
    """Mirrors C#1 test_init: memif_init with an fd-update callback announces the timerfd."""
    rec = FdRecorder()
    expect(lib.memif_init(rec.callback, APP, NULL, NULL, NULL), "SUCCESS", "memif_init")
    assert len(rec.calls) == 1, rec.calls
    timerfd, events, ctx = rec.calls[0]
    assert timerfd > 2 and events == READ and ctx == 0
    assert fd_open(timerfd)
    expect(lib.memif_cleanup(), "SUCCESS", "memif_cleanup")
    assert rec.calls[1:] == [(timerfd, DEL, 0)]
    assert not fd_open(timerfd), "the timerfd stayed open after cleanup"


def test_init_internal_polling(global_db: None) -> None:
    """Mirrors C#2 test_init_epoll: internal polling; poll_event(0) returns at once."""
    expect(lib.memif_init(NULL, APP, NULL, NULL, NULL), "SUCCESS", "memif_init")
    start = time.monotonic()
    expect(lib.memif_poll_event(0), "SUCCESS", "memif_poll_event(0)")
    assert time.monotonic() - start < 0.1
    expect(lib.memif_cleanup(), "SUCCESS", "memif_cleanup")


def test_per_thread_init_and_cleanup() -> None:
    """New (per-thread twins of C#1): private_ctx reaches the fd-update callback; handle NULLed."""
    rec = FdRecorder()
    ctx = ffi.new("int *")
    ctx_addr = int(ffi.cast("uintptr_t", ctx))
    pt = ffi.new("memif_per_thread_main_handle_t *")
    expect(lib.memif_per_thread_init(pt, ctx, rec.callback, APP, NULL, NULL, NULL), "SUCCESS",
           "memif_per_thread_init")
    assert pt[0] != NULL
    assert len(rec.calls) == 1
    timerfd, events, got_ctx = rec.calls[0]
    assert timerfd > 2 and events == READ and got_ctx == ctx_addr
    expect(lib.memif_per_thread_cleanup(pt), "SUCCESS", "memif_per_thread_cleanup")
    assert pt[0] == NULL
    assert rec.calls[1:] == [(timerfd, DEL, ctx_addr)]
    expect(lib.memif_per_thread_cleanup(NULL), "INVAL_ARG", "cleanup(NULL)")
    expect(lib.memif_per_thread_cleanup(pt), "INVAL_ARG", "cleanup of a NULL handle")
    expect(lib.memif_per_thread_init(NULL, NULL, NULL, APP, NULL, NULL, NULL), "INVAL_ARG",
           "init(NULL)")


def test_init_twice(global_db: None, sock: str) -> None:
    """New (X9): a second memif_init cleans up an empty database first; ALREADY when in use."""
    rec = FdRecorder()
    expect(lib.memif_init(rec.callback, APP, NULL, NULL, NULL), "SUCCESS", "first init")
    first_timer = rec.calls[0][0]
    rec.calls.clear()
    expect(lib.memif_init(rec.callback, b"second_app", NULL, NULL, NULL), "SUCCESS",
           "second init")
    assert len(rec.calls) == 2, rec.calls
    assert rec.calls[0] == (first_timer, DEL, 0), "old timerfd not removed first"
    second_timer, events, _ = rec.calls[1]
    assert events == READ

    s = _global_socket(sock)
    intf = GlobalInterface(s[0], is_master=True, interface_name=IF_NAME)
    try:
        rec.calls.clear()
        expect(lib.memif_init(rec.callback, b"third_app", NULL, NULL, NULL), "ALREADY",
               "init with an interface alive")
        assert rec.calls == [], "a refused init touched the fds"
        d = get_details(intf.conn)
        assert d.inst_name == "second_app" and d.if_name == IF_NAME.decode()
    finally:
        intf.delete()
    expect(lib.memif_cleanup(), "SUCCESS", "cleanup")
    assert (second_timer, DEL, 0) in rec.calls


def test_init_long_app_name(global_db: None, sock: str) -> None:
    """New (O5): a 100-character app name is truncated to its first 32 characters."""
    name = ("0123456789" * 10).encode()
    expect(lib.memif_init(NULL, name, NULL, NULL, NULL), "SUCCESS", "memif_init")
    s = _global_socket(sock)
    intf = GlobalInterface(s[0], is_master=False)
    try:
        assert get_details(intf.conn).inst_name == name[:32].decode()
    finally:
        intf.delete()
    expect(lib.memif_delete_socket(s), "SUCCESS", "delete_socket")


@pytest.mark.parametrize("external", [False, True], ids=["internal", "external"])
def test_cleanup_closes_all_fds(global_db: None, sock: str, external: bool) -> None:
    """New (X2): memif_cleanup closes every fd the database opened, in both polling modes."""
    rec = FdRecorder()
    before = open_fds()
    expect(lib.memif_init(rec.callback if external else NULL, APP, NULL, NULL, NULL),
           "SUCCESS", "memif_init")
    opened = open_fds() - before
    # timerfd; internal polling adds the epoll fd and the cancel eventfd.
    assert len(opened) == (1 if external else 3), opened
    s = _global_socket(sock)
    intf = GlobalInterface(s[0], is_master=True)
    assert len(open_fds() - before) == len(opened) + 1  # the listener
    intf.delete()
    expect(lib.memif_cleanup(), "SUCCESS", "memif_cleanup")
    assert open_fds() == before


def test_cleanup_with_interface(global_db: None, tmp_path: Path) -> None:
    """New: cleanup with an interface alive is refused and changes nothing."""
    path = str(tmp_path / "cleanup.sock")
    expect(lib.memif_init(NULL, APP, NULL, NULL, NULL), "SUCCESS", "memif_init")
    expect(lib.memif_set_connection_request_timer(_timer(0.05)), "SUCCESS", "timer")
    s = _global_socket(path)
    slave = GlobalInterface(s[0], is_master=False, interface_name=IF_NAME)
    try:
        expect(lib.memif_cleanup(), "INVAL_ARG", "cleanup with an interface")
        # Still usable: it connects to a master that appears afterwards.
        with Database(b"master_app") as mdb:
            master = Interface(mdb, mdb.socket(path), master=True)
            poll_global_and([mdb], lambda: slave.connects == 1 and master.connected, 3,
                            "the global slave to connect")
            assert get_details(slave.conn).remote_inst_name == "master_app"
            master.delete()
            poll_global_and([], lambda: slave.disconnects == 1, 3, "slave on_disconnect")
    finally:
        slave.delete()
    expect(lib.memif_cleanup(), "SUCCESS", "cleanup after delete")


def _timer(seconds: float) -> Any:
    ts = ffi.new("struct itimerspec *")
    ts.it_value.tv_nsec = ts.it_interval.tv_nsec = int(seconds * 1e9)
    return ts[0]

