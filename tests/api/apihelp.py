"""Helpers for the Pythonic-API tests: connected master/slave pairs in two Contexts."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import memif_cffi as memif


def pump(*ctxs: memif.Context, until: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll every context in turn until ``until()`` is true (TimeoutError otherwise)."""
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached while pumping the contexts")
        for ctx in ctxs:
            ctx.poll(0.002)


class Pair:
    """A master in one Context and a slave in another, connected over ``path``."""

    def __init__(self, path: str, *, master_kw: dict[str, Any] | None = None,
                 slave_kw: dict[str, Any] | None = None, connect: bool = True,
                 **common: Any) -> None:
        self.path = path
        self.mctx = memif.Context("master-app")
        self.sctx = memif.Context("slave-app")
        self.master = self.mctx.interface(self.mctx.socket(path), role=memif.Role.MASTER,
                                          name="m0", **{**common, **(master_kw or {})})
        self.slave = self.sctx.interface(self.sctx.socket(path), role=memif.Role.SLAVE,
                                         name="s0", **{**common, **(slave_kw or {})})
        if connect:
            self.wait()

    def wait(self, timeout: float = 5.0) -> None:
        pump(self.mctx, self.sctx, until=lambda: self.master.connected and self.slave.connected,
             timeout=timeout)

    def poll(self) -> None:
        self.mctx.poll(0)
        self.sctx.poll(0)

    def close(self) -> None:
        self.sctx.close()
        self.mctx.close()

    def __enter__(self) -> Pair:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def drain(q: memif.RxQueue, want: int, *ctxs: memif.Context, timeout: float = 5.0,
          burst: int = 256) -> list[bytes]:
    """Receive until ``want`` frames arrived (polling the contexts meanwhile)."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < want:
        got += q.recv_burst(burst)
        for ctx in ctxs:
            ctx.poll(0)
        if time.monotonic() > deadline:
            raise TimeoutError(f"received {len(got)} of {want} frames")
    return got
