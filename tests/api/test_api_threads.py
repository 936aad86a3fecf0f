"""Threads: contexts in several threads, one thread per queue, busy queues, close races."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from apihelp import Pair, drain

import memif_cffi as memif


def test_contexts_in_several_threads(tmp_path: Path) -> None:
    results: dict[int, list[bytes]] = {}
    failures: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with Pair(str(tmp_path / f"t{n}.sock")) as p:
                frames = [bytes([n]) * (10 + i) for i in range(200)]
                sent = 0
                got: list[bytes] = []
                while len(got) < len(frames):
                    sent += p.slave.tx[0].send_burst(frames[sent:sent + 32])
                    got += p.master.rx[0].recv_burst()
                    p.poll()
                results[n] = got
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not failures, failures
    assert {n: len(v) for n, v in results.items()} == {n: 200 for n in range(4)}
    assert all(v == [bytes([n]) * (10 + i) for i in range(200)] for n, v in results.items())


def test_one_thread_per_queue(sock_path: str) -> None:
    """Four data threads (two queues each way) while the main thread polls."""
    nq, count = 2, 20000
    with Pair(sock_path, rx_queues=nq, tx_queues=nq) as p:
        stop = threading.Event()
        failures: list[BaseException] = []
        received: dict[int, list[int]] = {q: [] for q in range(nq)}

        def sender(q: int) -> None:
            try:
                batch = memif.PacketBatch(64, 64)
                i = 0
                while i < count:
                    batch.clear()
                    for k in range(min(64, count - i)):
                        batch.append((q << 24 | (i + k)).to_bytes(4, "little") * 16)
                    start = 0
                    while start < batch.count:
                        start += p.slave.tx[q].send_batch(batch, start)
                    i += batch.count
            except BaseException as exc:
                failures.append(exc)

        def receiver(q: int) -> None:
            try:
                batch = memif.PacketBatch(256, 64)
                while len(received[q]) < count and not stop.is_set():
                    if p.master.rx[q].recv_into(batch) == 0:
                        time.sleep(0)
                    received[q] += [int.from_bytes(f[:4], "little") for f in batch]
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=f, args=(q,)) for q in range(nq)
                   for f in (sender, receiver)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            p.poll()  # the control path keeps running in this thread
            time.sleep(0.001)
        stop.set()
        for t in threads:
            t.join(5)
        assert not failures, failures
        for q in range(nq):
            assert received[q] == [q << 24 | i for i in range(count)]


def test_two_threads_on_one_queue_get_an_exception(pair: Pair) -> None:
    """Deterministic: a views() block holds the queue while another thread receives."""
    pair.slave.tx[0].send(b"x")
    rxq = pair.master.rx[0]
    errors: list[BaseException] = []
    with rxq.views(4) as views:
        assert len(views) == 1

        def other_thread() -> None:
            try:
                rxq.recv_burst()
            except memif.QueueBusyError as exc:
                errors.append(exc)

        t = threading.Thread(target=other_thread)
        t.start()
        t.join(5)
    assert len(errors) == 1 and "views() block is open" in str(errors[0])
    assert rxq.recv_burst() == []  # free again once the block is over


def test_two_threads_hammering_one_queue(sock_path: str) -> None:
    """The non-blocking lock: concurrent senders on one queue collide, data stays intact."""
    with Pair(sock_path) as p:
        tx = p.slave.tx[0]
        busy = [0]
        sent: list[list[int]] = [[], []]
        stop = threading.Event()
        frames = [[(t << 24 | i).to_bytes(4, "little") * 64 for i in range(64)] for t in (0, 1)]

        def sender(t: int) -> None:
            n = 0
            while not stop.is_set():
                try:
                    k = tx.send_burst(frames[t])
                    sent[t] += [t << 24 | i for i in range(k)]
                    n += k
                except memif.QueueBusyError:
                    busy[0] += 1

        threads = [threading.Thread(target=sender, args=(t,)) for t in (0, 1)]
        for t in threads:
            t.start()
        got: list[bytes] = []
        deadline = time.monotonic() + 10
        while (busy[0] < 5 or len(got) < 20000) and time.monotonic() < deadline:
            got += p.master.rx[0].recv_burst()
        stop.set()
        for t in threads:
            t.join(5)
        got += drain(p.master.rx[0], len(sent[0]) + len(sent[1]) - len(got))
        assert busy[0] >= 5  # the second thread was turned away, not let in
        for f in got:
            assert f == f[:4] * 64  # never a torn or mixed buffer
        ids = [int.from_bytes(f[:4], "little") for f in got]
        assert [i for i in ids if i >> 24 == 0] == sent[0]
        assert [i for i in ids if i >> 24 == 1] == sent[1]


def _bytes_level(p: Pair) -> None:
    p.slave.tx[0].send_burst([b"x" * 1000] * 32)
    p.master.rx[0].recv_burst()


def _batch_level(p: Pair, out: memif.PacketBatch, into: memif.PacketBatch) -> None:
    # The unchecked bulk calls: the queue lock is taken inside C.
    p.slave.tx[0].send_batch(out)
    p.master.rx[0].recv_into(into)


def test_two_threads_hammering_one_queue_in_bulk(sock_path: str) -> None:
    """The lock taken inside the C bulk calls turns the second thread away, too."""
    with Pair(sock_path) as p:
        tx = p.slave.tx[0]
        busy = [0]
        sent: list[list[int]] = [[], []]
        stop = threading.Event()
        batches = []
        for k in (0, 1):
            b = memif.PacketBatch(64, 256)
            b.extend((k << 24 | i).to_bytes(4, "little") * 64 for i in range(64))
            batches.append(b)

        def sender(t: int) -> None:
            while not stop.is_set():
                try:
                    k = tx.send_batch(batches[t])
                    sent[t] += [t << 24 | i for i in range(k)]
                except memif.QueueBusyError:
                    busy[0] += 1

        threads = [threading.Thread(target=sender, args=(t,)) for t in (0, 1)]
        for t in threads:
            t.start()
        got: list[bytes] = []
        into = memif.PacketBatch(256, 256)
        deadline = time.monotonic() + 10
        while (busy[0] < 5 or len(got) < 20000) and time.monotonic() < deadline:
            p.master.rx[0].recv_into(into)
            got += into.tolist()
        stop.set()
        for t in threads:
            t.join(5)
        got += drain(p.master.rx[0], len(sent[0]) + len(sent[1]) - len(got))
        assert busy[0] >= 5
        for f in got:
            assert f == f[:4] * 64
        ids = [int.from_bytes(f[:4], "little") for f in got]
        assert [i for i in ids if i >> 24 == 0] == sent[0]
        assert [i for i in ids if i >> 24 == 1] == sent[1]


@pytest.mark.parametrize("level", ["per packet", "PacketBatch"])
def test_close_while_another_thread_sends(sock_path: str, level: str) -> None:
    """Closing quiesces the queues: a call running in another thread ends before the unmap."""
    out = memif.PacketBatch(32, 1000)
    out.fill(b"x" * 1000)
    into = memif.PacketBatch(32, 1000)
    for _ in range(5):
        p = Pair(sock_path)
        outcome: list[BaseException | None] = []

        def sender(p: Pair, outcome: list[BaseException | None]) -> None:
            try:
                while True:
                    if level == "per packet":
                        _bytes_level(p)
                    else:
                        _batch_level(p, out, into)
            except BaseException as exc:
                outcome.append(exc)

        t = threading.Thread(target=sender, args=(p, outcome))
        t.start()
        time.sleep(0.02)
        p.sctx.close()  # quiesces the queues, then unmaps
        t.join(5)
        p.mctx.close()
        assert len(outcome) == 1
        assert isinstance(outcome[0], (memif.ClosedError, memif.DisconnectedError)), outcome


def test_c_calls_release_the_gil(pair: Pair) -> None:
    """cffi releases the GIL around every C call: other threads run meanwhile."""
    from memif_cffi.lowlevel import lib

    counter = [0]
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            counter[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    time.sleep(0.01)
    before = counter[0]
    lib.memif_per_thread_poll_event(pair.mctx._state.pt[0], 200)  # 200 ms inside C
    during = counter[0] - before
    stop.set()
    t.join(5)
    assert during > 10000
