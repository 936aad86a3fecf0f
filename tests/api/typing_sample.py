"""Typing sample: checked by mypy (``make test``), never run.

Correct uses must type-check; each wrong use carries a ``type: ignore`` with
its error code, and mypy's strict mode fails on an *unused* ignore, so a type
hint that became too loose (accepting the wrong use) breaks the check too.
"""

from __future__ import annotations

import asyncio
import selectors

import memif_cffi as memif
from memif_cffi import aio


def on_connect(intf: memif.Interface) -> None:
    print(intf.name, intf.details.remote_if_name)


def on_interrupt(intf: memif.Interface, qid: int) -> None:
    frames: list[bytes] = intf.rx[qid].recv_burst(64)
    print(len(frames))


def per_packet(path: str) -> None:
    with memif.Context("typing") as ctx:
        sock: memif.Socket = ctx.socket(path)
        intf: memif.Interface = ctx.interface(
            sock, role=memif.Role.MASTER, id=1, name="t0", secret=b"k",
            mode=memif.Mode.IP, rx_queues=2, tx_queues=2, ring_size=256,
            buffer_size=1500, on_connect=on_connect, on_disconnect=on_connect,
            on_interrupt=on_interrupt,
        )
        handled: int = ctx.poll(0.1)
        intf.wait_connected(timeout=5)
        ok: bool = intf.tx[0].send(b"frame")
        queued: int = intf.tx[0].send_burst([b"a", bytearray(b"b"), memoryview(b"c")])
        frames: list[bytes] = intf.rx[0].recv_burst(256)
        details: memif.InterfaceDetails = intf.details
        role: memif.Role = details.role
        queue: memif.QueueDetails = details.rx_queues[0]
        counters: memif.InterfaceCounters = intf.counters
        qc: memif.QueueCounters = intf.rx[0].counters
        connected: bool = intf.connected
        intf.rx[0].mode = memif.RxMode.POLLING
        mode: memif.RxMode = intf.rx[0].mode
        fd: int = intf.rx[0].fileno() + ctx.fileno()
        print(handled, ok, queued, frames, role, queue, counters, qc, connected, mode, fd)

        intf.tx[0].send("text")  # type: ignore[arg-type]
        intf.rx[0].recv_burst("many")  # type: ignore[arg-type]
        ctx.interface(sock, ring_size="big")  # type: ignore[arg-type]
        ctx.interface(sock, on_connect=on_interrupt)  # type: ignore[arg-type]
        bad: str = intf.connected  # type: ignore[assignment]
        print(bad)


def bulk_and_zero_copy(intf: memif.Interface) -> None:
    batch = memif.PacketBatch(256, 2048)
    batch.append(b"x" * 60)
    n: int = intf.rx[0].recv_into(batch)
    sent: int = intf.tx[0].send_batch(batch, start=0, count=n)
    lengths: memoryview = batch.lengths
    view: memoryview = batch[0]
    with intf.rx[0].views(32) as views:
        first: memoryview = views[0]
        print(first.nbytes)
    print(sent, lengths, view)
    intf.tx[0].send_batch([b"x"])  # type: ignore[arg-type]


def external(path: str) -> None:
    sel = selectors.DefaultSelector()
    ctx = memif.Context(selector=sel)
    for key, mask in sel.select(0):
        key.data(key.fileobj, mask)

    def watch(fd: int, events: memif.FdEvent) -> None:
        print(fd, events & memif.FdEvent.DEL)

    other = memif.Context(on_fd_update=watch)
    other.handle_event(3, memif.FdEvent.READ)
    ctx.close()
    other.close()
    memif.Context(on_fd_update=3)  # type: ignore[arg-type]


async def with_asyncio(path: str) -> None:
    async with aio.Context("typing") as ctx:
        intf: aio.Interface = ctx.interface(ctx.socket(path), role=memif.Role.SLAVE)
        await intf.wait_connected(timeout=1.5)
        async for frame in intf.rx[0]:
            await intf.tx[0].send(frame)
        burst: list[bytes] = await intf.rx[0].recv_burst(8)
        total: int = await intf.tx[0].send_burst(burst)
        print(total)
        await intf.tx[0].send(1)  # type: ignore[arg-type]


def errors() -> None:
    try:
        per_packet("/run/x.sock")
    except memif.NoFileError as exc:
        code: int = exc.code
        name: str = exc.name
        text: str | None = exc.strerror
        print(code, name, text)
    except memif.MemifError:
        pass
    cls: type[memif.MemifError] = memif.errors.BY_CODE[4]
    print(cls)


if __name__ == "__main__":  # pragma: no cover
    asyncio.run(with_asyncio("@typing"))
