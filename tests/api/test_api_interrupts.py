"""Ctrl+C in the middle of a data-path call leaves no queue locked.

Python runs a signal handler between bytecodes; the default SIGINT handler
raises ``KeyboardInterrupt`` there. When that happens right after a queue's
lock was taken, before the call could note it, the lock must still be given
back: otherwise the close that usually follows Ctrl+C waits for it forever.
The lock below plays that moment deterministically.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from apihelp import Pair

import memif_cffi as memif


class InterruptAfterAcquire:
    """Wraps a queue's lock: the next non-blocking acquire succeeds, then raises.

    That is what Python does when a signal arrives while the acquire runs: the
    handler is called as the call returns, and its exception replaces the result.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.armed = True

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = bool(self.inner.acquire(blocking, timeout))
        if got and self.armed and not blocking:
            self.armed = False
            raise KeyboardInterrupt
        return got

    def release(self) -> None:
        self.inner.release()

    def _is_owned(self) -> bool:
        return bool(self.inner._is_owned())

    def __enter__(self) -> bool:
        return bool(self.inner.__enter__())

    def __exit__(self, *exc: object) -> None:
        self.inner.__exit__(*exc)


def _send(p: Pair) -> object:
    return p.slave.tx[0].send(b"\x01" * 60)


def _recv_burst(p: Pair) -> object:
    return p.master.rx[0].recv_burst()


class _Batch(memif.PacketBatch):
    """A subclass takes the checked path of the bulk calls, which locks in Python.

    The unchecked path takes and leaves the lock inside one C call, where no
    signal handler can run.
    """

    __slots__ = ()


def _recv_into(p: Pair) -> object:
    return p.master.rx[0].recv_into(_Batch(8, 2048))


def _send_batch(p: Pair) -> object:
    batch = _Batch(1, 64)
    batch.append(b"\x01" * 60)
    return p.slave.tx[0].send_batch(batch)


def _views(p: Pair) -> object:
    with p.master.rx[0].views(8) as views:
        return len(views)


def _set_mode(p: Pair) -> object:
    p.master.rx[0].mode = memif.RxMode.POLLING
    return None


#: name -> (the call, the queue whose lock it takes, what it returns when it runs)
CALLS: dict[str, tuple[Callable[[Pair], object], Callable[[Pair], Any], object]] = {
    "send": (_send, lambda p: p.slave.tx[0], True),
    "recv_burst": (_recv_burst, lambda p: p.master.rx[0], [b"\x02" * 60]),
    "recv_into": (_recv_into, lambda p: p.master.rx[0], 1),
    "send_batch": (_send_batch, lambda p: p.slave.tx[0], 1),
    "views": (_views, lambda p: p.master.rx[0], 1),
    "rx mode": (_set_mode, lambda p: p.master.rx[0], None),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_interrupt_right_after_the_queue_lock_is_taken(sock_path: str, name: str) -> None:
    call, queue_of, expected = CALLS[name]
    with Pair(sock_path) as p:
        # Traffic first, so the receiving calls have something to take.
        p.slave.tx[0].send(b"\x02" * 60)
        p.poll()
        state = queue_of(p)._q
        wrapper = InterruptAfterAcquire(state.lock)
        state.lock = wrapper
        with pytest.raises(KeyboardInterrupt):
            call(p)
        assert not wrapper.armed, "the call did not take the queue lock"
        assert not wrapper.inner._is_owned()

        # Another thread can use the queue: the lock was given back.
        result: list[object] = []
        worker = threading.Thread(target=lambda: result.append(call(p)))
        worker.start()
        worker.join(5)
        # The packet sent first was not lost by the interrupted receive either.
        assert result == [expected], "the queue stayed locked after the interrupted call"

        # And closing does not wait for a lock nobody will release.
        closer = threading.Thread(target=p.close, daemon=True)
        closer.start()
        closer.join(10)
        assert not closer.is_alive(), "close() hung on the queue lock"
        assert p.master.closed and p.slave.closed
