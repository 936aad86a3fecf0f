"""Event loops: Context.poll, Context.fileno, external selectors, on_fd_update, asyncio."""

from __future__ import annotations

import asyncio
import select
import selectors
import threading
import time

import pytest
from apihelp import Pair, drain, pump

import memif_cffi as memif
from memif_cffi import aio


def test_poll_returns_the_number_of_events(pair: Pair) -> None:
    assert pair.mctx.poll(0) == 0
    assert pair.mctx.poll(0.01) == 0
    pair.slave.close()  # one DISCONNECT message for the master
    assert pair.mctx.poll(1) >= 1
    assert not pair.master.connected


def test_fileno_watches_a_whole_context(sock_path: str) -> None:
    with memif.Context() as mctx, memif.Context() as sctx:
        master = mctx.interface(mctx.socket(sock_path), role=memif.Role.MASTER)
        slave = sctx.interface(sctx.socket(sock_path))
        fds = {mctx.fileno(): mctx, sctx.fileno(): sctx}
        deadline = time.monotonic() + 5
        while not (master.connected and slave.connected) and time.monotonic() < deadline:
            ready, _, _ = select.select(list(fds), [], [], 1)
            for fd in ready:
                fds[fd].poll(0)
        assert master.connected and slave.connected
        assert select.select(list(fds), [], [], 0)[0] == []  # nothing left pending


def test_cancel_poll_from_another_thread(pair: Pair) -> None:
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(pair.mctx.poll(None)))
    t.start()
    time.sleep(0.05)
    pair.mctx.cancel_poll()
    t.join(5)
    assert not t.is_alive() and result == [1]


def test_close_from_another_thread_wakes_poll(pair: Pair) -> None:
    done = threading.Event()

    def poller() -> None:
        pair.mctx.poll(None)
        done.set()

    t = threading.Thread(target=poller)
    t.start()
    time.sleep(0.05)
    pair.mctx.close()
    t.join(5)
    assert done.is_set() and pair.master.closed


def test_external_selector_mode(sock_path: str) -> None:
    sel = selectors.DefaultSelector()
    received: list[bytes] = []

    def on_interrupt(intf: memif.Interface, qid: int) -> None:
        received.extend(intf.rx[qid].recv_burst())

    with memif.Context("ext-m", selector=sel) as mctx, memif.Context("ext-s", selector=sel) as sctx:
        assert len(sel.get_map()) == 2  # the two reconnect timerfds
        with pytest.raises(RuntimeError, match="external"):
            mctx.fileno()
        master = mctx.interface(mctx.socket(sock_path), role=memif.Role.MASTER,
                                on_interrupt=on_interrupt)
        slave = sctx.interface(sctx.socket(sock_path))
        deadline = time.monotonic() + 5
        # The canonical selectors loop: the key's data dispatches the event.
        while len(received) < 3 and time.monotonic() < deadline:
            for key, mask in sel.select(0.1):
                key.data(key.fileobj, mask)
            if slave.connected and not received and slave.counters.tx_packets == 0:
                assert slave.tx[0].send_burst([b"one", b"two", b"three"]) == 3
        assert received == [b"one", b"two", b"three"]
        # Context.poll() drives the same selector for the keys of its context.
        slave.close()
        pump(mctx, until=lambda: not master.connected)
    assert len(sel.get_map()) == 0  # every fd was announced DEL
    sel.close()


class Watcher:
    """An application's own fd table, fed by on_fd_update."""

    def __init__(self) -> None:
        self.fds: set[int] = set()
        self.log: list[memif.FdEvent] = []

    def __call__(self, fd: int, events: memif.FdEvent) -> None:
        self.log.append(events)
        if events & memif.FdEvent.DEL:
            self.fds.discard(fd)
        else:
            self.fds.add(fd)


def test_on_fd_update_and_handle_event(sock_path: str) -> None:
    mw, sw = Watcher(), Watcher()
    with memif.Context(on_fd_update=mw) as mctx, memif.Context(on_fd_update=sw) as sctx:
        assert len(mw.fds) == 1  # the reconnect timerfd
        with pytest.raises(RuntimeError, match="handle_event"):
            mctx.poll(0)
        master = mctx.interface(mctx.socket(sock_path), role=memif.Role.MASTER)
        slave = sctx.interface(sctx.socket(sock_path))
        deadline = time.monotonic() + 5
        while not (master.connected and slave.connected) and time.monotonic() < deadline:
            ready, _, _ = select.select(list(mw.fds | sw.fds), [], [], 0.1)
            for fd in ready:
                (mctx if fd in mw.fds else sctx).handle_event(fd, memif.FdEvent.READ)
        assert master.connected and slave.connected
        assert all(ev in (memif.FdEvent.READ, memif.FdEvent.DEL) for ev in mw.log + sw.log)
    assert mw.fds == set() and sw.fds == set()


def test_interrupt_receive_drains_without_a_second_signal(sock_path: str) -> None:
    got: list[bytes] = []
    calls = [0]

    def on_interrupt(intf: memif.Interface, qid: int) -> None:
        calls[0] += 1
        got.extend(intf.rx[qid].recv_burst(32))  # small bursts: the queue stays signalled

    with Pair(sock_path, master_kw={"on_interrupt": on_interrupt}) as p:
        batch = memif.PacketBatch(1000, 64)
        for i in range(1000):
            batch.append(i.to_bytes(4, "little"))
        assert p.slave.tx[0].send_batch(batch) == 1000  # one burst: one signal
        handled = p.mctx.poll(1)  # a single poll() call receives everything
        assert len(got) == 1000 and handled == calls[0] >= 1000 // 32
        assert [int.from_bytes(f, "little") for f in got] == list(range(1000))


def test_interrupt_callback_that_does_not_receive_does_not_spin(sock_path: str) -> None:
    calls = [0]

    def on_interrupt(intf: memif.Interface, qid: int) -> None:
        calls[0] += 1

    with Pair(sock_path, master_kw={"on_interrupt": on_interrupt}) as p:
        p.slave.tx[0].send(b"x")
        p.mctx.poll(1)
        assert calls[0] == 1
        assert p.mctx.poll(0.05) == 0  # the signal was consumed: no busy loop
        assert drain(p.master.rx[0], 1) == [b"x"]  # the packet waited in the ring


# ------------------------------------------------------------------ asyncio


def test_aio_echo_with_backpressure(sock_path: str) -> None:
    count = 3000

    async def main() -> None:
        async with aio.Context("aio-m") as mctx, aio.Context("aio-s") as sctx:
            master = mctx.interface(mctx.socket(sock_path), role=memif.Role.MASTER,
                                    ring_size=16)
            slave = sctx.interface(sctx.socket(sock_path), ring_size=16)
            await asyncio.gather(master.wait_connected(5), slave.wait_connected(5))

            async def echo() -> None:
                async for frame in master.rx[0]:
                    await master.tx[0].send(frame)

            async def produce() -> None:
                for i in range(count):  # 3000 frames through 16-slot rings: must wait
                    await slave.tx[0].send(i.to_bytes(4, "little") * (1 + i % 300))

            echo_task = asyncio.create_task(echo())
            producer = asyncio.create_task(produce())
            got: list[bytes] = []
            while len(got) < count:
                got += await asyncio.wait_for(slave.rx[0].recv_burst(64), 5)
            await producer
            assert [int.from_bytes(f[:4], "little") for f in got] == list(range(count))
            assert all(len(f) == 4 * (1 + i % 300) for i, f in enumerate(got))
            assert slave.tx[0].counters.drops > 0  # the ring was full at times
            assert master.counters.rx_packets == count
            master.close()
            await asyncio.wait_for(echo_task, 5)  # iteration ends when closed

    asyncio.run(main())


def test_aio_single_signal_burst_is_drained(sock_path: str) -> None:
    async def main() -> None:
        async with aio.Context() as mctx, aio.Context() as sctx:
            master = mctx.interface(mctx.socket(sock_path), role=memif.Role.MASTER)
            slave = sctx.interface(sctx.socket(sock_path))
            await asyncio.gather(master.wait_connected(5), slave.wait_connected(5))
            batch = memif.PacketBatch(1000, 16)
            batch.fill(b"x" * 16)
            assert slave.tx[0].sync.send_batch(batch) == 1000  # one signal
            got = 0
            async for _frame in master.rx[0]:
                got += 1
                if got == 1000:
                    break
            assert got == 1000

    asyncio.run(main())


def test_aio_callback_exception_reaches_the_waiter(sock_path: str) -> None:
    class FailureError(Exception):
        pass

    def on_connect(intf: aio.Interface) -> None:
        raise FailureError("in aio on_connect")

    async def main() -> None:
        async with aio.Context() as mctx, aio.Context() as sctx:
            master = mctx.interface(mctx.socket(sock_path), role=memif.Role.MASTER,
                                    on_connect=on_connect)
            slave = sctx.interface(sctx.socket(sock_path))
            await slave.wait_connected(5)
            with pytest.raises(FailureError):
                await master.wait_connected(5)
            assert master.connected

    asyncio.run(main())


def test_aio_wait_connected_timeout(sock_path: str) -> None:
    async def main() -> None:
        async with aio.Context() as ctx:
            slave = ctx.interface(ctx.socket(sock_path))
            with pytest.raises(TimeoutError, match="does not exist"):
                await slave.wait_connected(0.05)

    asyncio.run(main())


def test_external_mode_edge_cases() -> None:
    """An event for an fd the library does not know is ignored (a stale entry of a poll batch)."""
    fds: dict[int, int] = {}
    ctx = memif.Context(on_fd_update=lambda fd, events: fds.__setitem__(fd, events))
    ctx.handle_event(999_999, memif.FdEvent.READ | memif.FdEvent.WRITE)
    ctx.set_reconnect_interval(0.9999999999)  # rounds up to whole seconds, not 1e9 ns
    with pytest.raises(ValueError):
        ctx.set_reconnect_interval(-1)
    ctx.close()
    with pytest.raises(memif.ClosedError):
        ctx.handle_event(3, memif.FdEvent.READ)
