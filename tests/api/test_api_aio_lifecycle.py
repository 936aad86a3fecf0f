"""memif_cffi.aio: life cycle, callbacks, bulk sends and misuse."""

from __future__ import annotations

import asyncio

import pytest

import memif_cffi as memif
from memif_cffi import aio


def test_aio_callbacks_bulk_send_and_close(sock_path: str) -> None:
    events: list[str] = []

    async def main() -> None:
        async with aio.Context("m") as mctx, aio.Context("s") as sctx:
            assert not mctx.closed
            master = mctx.interface(
                mctx.socket(sock_path), role=memif.Role.MASTER, ring_size=16,
                on_disconnect=lambda i: events.append(f"down {i.name}"),
                on_interrupt=lambda i, q: events.append(f"irq {q}"))
            slave = sctx.interface(sctx.socket(sock_path), name="s0", ring_size=16)
            assert repr(master).startswith("<aio <memif Interface")
            await asyncio.gather(master.wait_connected(5), slave.wait_connected(5))
            assert master.details.remote_if_name == "s0"
            batch = memif.PacketBatch(100, 64)
            for i in range(100):
                batch.append(i.to_bytes(2, "little") * 8)
            # 100 packets through 16 slots: send_batch waits for room.
            sender = asyncio.create_task(slave.tx[0].send_batch(batch))
            got: list[bytes] = []
            while len(got) < 100:
                got += await asyncio.wait_for(master.rx[0].recv_burst(8), 5)
            assert await sender == 100
            assert got == [bytes(p) for p in batch]
            assert master.rx[0].counters.packets == 100
            assert "irq 0" in events
            slave.close()
            for _ in range(100):
                if not master.connected:
                    break
                await asyncio.sleep(0.01)
            assert "down " in events[-1]
            master.close()
            with pytest.raises(memif.ClosedError):
                await master.wait_connected(1)
        assert mctx.closed

    asyncio.run(main())


def test_aio_misuse_raises() -> None:
    ctx = aio.Context()
    with pytest.raises(ValueError, match="max_pending"):
        ctx.interface(ctx.socket("@memif-aio-misuse"), max_pending=1)
    ctx.close()

    async def attach_closed() -> None:
        with pytest.raises(memif.ClosedError):
            async with ctx:
                pass

    asyncio.run(attach_closed())

    shared = aio.Context()
    intf = shared.interface(shared.socket("@memif-aio-two-loops"))

    async def first() -> None:
        with pytest.raises(TimeoutError):
            await intf.wait_connected(0.01)

    async def second() -> None:
        with pytest.raises(RuntimeError, match="bound to the event loop"):
            await intf.wait_connected(0.01)

    asyncio.run(first())
    asyncio.run(second())  # another loop: refused instead of mixing loops
    shared.close()


def test_aio_error_in_a_callback_with_nobody_waiting_comes_later(sock_path: str) -> None:
    class BoomError(Exception):
        pass

    def on_interrupt(intf: aio.Interface, qid: int) -> None:
        raise BoomError("in on_interrupt")

    async def main() -> None:
        async with aio.Context() as mctx, aio.Context() as sctx:
            master = mctx.interface(mctx.socket(sock_path), role=memif.Role.MASTER,
                                    on_interrupt=on_interrupt)
            slave = sctx.interface(sctx.socket(sock_path))
            await asyncio.gather(master.wait_connected(5), slave.wait_connected(5))
            await slave.tx[0].send(b"ping")
            await asyncio.sleep(0.2)  # the interrupt runs with no coroutine waiting
            with pytest.raises(BoomError):
                await master.rx[0].recv()  # delivered to the next one that awaits

    asyncio.run(main())
