"""Lifetimes: GC stress with no growth in fds or memory; finalizers in the right place."""

from __future__ import annotations

import gc
import os
import weakref
from pathlib import Path

import pytest
from apihelp import open_fds, pump

import memif_cffi as memif


def sanitized() -> bool:
    return ("asan" in os.environ.get("LD_PRELOAD", "")
            or "sanitize" in os.environ.get("MEMIF_CFFI_CFLAGS", ""))


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_gc_stress_1000_interfaces(tmp_path: Path) -> None:
    """Create, connect and drop 1000 interfaces (and their peers) in varied ways."""
    path = str(tmp_path / "gc.sock")
    mctx = memif.Context("gc-master")
    msock = mctx.socket(path)
    sctx = memif.Context("gc-slave")
    ssock = sctx.socket(path)
    baseline_fds = baseline_rss = 0

    def one_round(i: int) -> None:
        kw = {"ring_size": 64, "buffer_size": 512, "id": i % 7}
        master = mctx.interface(msock, role=memif.Role.MASTER, **kw)  # type: ignore[arg-type]
        if i % 4 == 3:
            # A whole throwaway Context, dropped without close(): the finalizer cleans up.
            tmp = memif.Context("gc-tmp")
            slave = tmp.interface(tmp.socket(path), **kw)  # type: ignore[arg-type]
            pump(mctx, tmp, until=lambda: master.connected and slave.connected)
            slave.tx[0].send(b"x" * 100)
            pump(mctx, until=lambda: master.rx[0].recv_burst() != [])
            del slave, tmp
        else:
            slave = sctx.interface(ssock, **kw)  # type: ignore[arg-type]
            pump(mctx, sctx, until=lambda: master.connected and slave.connected)
            with slave.rx[0].views(1):
                pass
            master.tx[0].send(b"y" * 1000)
            pump(sctx, until=lambda: slave.rx[0].recv_burst() != [])
            if i % 4 == 0:
                slave.close()
            elif i % 4 == 1:
                with slave:
                    pass
            else:
                ssock_slaves = ssock.interfaces
                assert ssock_slaves == (slave,)
                slave.close()
        if i % 2:
            master.close()
        else:
            pump(mctx, until=lambda: not master.connected)
            master.close()

    for i in range(1000):
        one_round(i)
        if i == 99:
            gc.collect()
            baseline_fds, baseline_rss = open_fds(), rss_kib()
    gc.collect()
    assert mctx.interfaces == () and sctx.interfaces == ()
    assert open_fds() == baseline_fds
    growth = rss_kib() - baseline_rss
    if not sanitized():  # AddressSanitizer keeps freed memory in quarantine
        assert growth < 4096, f"RSS grew by {growth} KiB over 900 rounds"
    sctx.close()
    mctx.close()


def test_forgotten_context_is_finalized_in_order(tmp_path: Path) -> None:
    gc.collect()
    fds = open_fds()
    ctx = memif.Context()
    sock = ctx.socket(str(tmp_path / "f.sock"))
    intf = ctx.interface(sock, role=memif.Role.MASTER)
    assert (tmp_path / "f.sock").exists()
    ref = weakref.ref(ctx)
    del ctx, sock, intf  # the objects reference each other: only the cyclic GC frees them
    gc.collect()
    assert ref() is None
    assert open_fds() == fds
    assert not (tmp_path / "f.sock").exists()  # the listener was closed and unlinked


def test_finalizer_never_runs_inside_a_callback(tmp_path: Path) -> None:
    """A Context that becomes garbage during a callback is cleaned up after it."""
    doomed = memif.Context("doomed")
    doomed.interface(doomed.socket(str(tmp_path / "doomed.sock")), role=memif.Role.MASTER)
    ref = weakref.ref(doomed)
    holder = [doomed]
    del doomed
    states: list[tuple[bool, bool]] = []

    def on_connect(intf: memif.Interface) -> None:
        holder.clear()
        gc.collect()  # the doomed Context is collected here, inside a callback...
        states.append((ref() is None, (tmp_path / "doomed.sock").exists()))

    path = str(tmp_path / "main.sock")
    with memif.Context() as mctx, memif.Context() as sctx:
        mctx.interface(mctx.socket(path), role=memif.Role.MASTER, on_connect=on_connect)
        slave = sctx.interface(sctx.socket(path))
        pump(mctx, sctx, until=lambda: bool(states) and slave.connected)
        # ...but its C objects were deleted only once the callback had returned.
        assert states == [(True, True)]
        assert not (tmp_path / "doomed.sock").exists()
