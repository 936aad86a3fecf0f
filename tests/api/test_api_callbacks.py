"""Callbacks: Python callables, exceptions re-raised by the poll that ran them."""

from __future__ import annotations

import traceback

import pytest
from apihelp import Pair, drain, pump

import memif_cffi as memif


class CallbackFailureError(Exception):
    pass


def test_on_connect_exception_is_raised_by_poll_with_traceback(
        sock_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[str] = []

    def on_connect(intf: memif.Interface) -> None:
        calls.append(intf.name)
        raise CallbackFailureError("from on_connect")

    with memif.Context() as mctx, memif.Context() as sctx:
        master = mctx.interface(mctx.socket(sock_path), role=memif.Role.MASTER, name="m",
                                on_connect=on_connect)
        slave = sctx.interface(sctx.socket(sock_path), name="s")
        with pytest.raises(CallbackFailureError, match="from on_connect") as info:
            pump(mctx, sctx, until=lambda: False, timeout=5)
        frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
        assert "on_connect" in frames and "poll" in frames
        assert calls == ["m"]
        # The library finished its work before the exception reached us.
        assert master.connected
        pump(mctx, sctx, until=lambda: slave.connected)
        assert slave.tx[0].send(b"still works")
        assert drain(master.rx[0], 1) == [b"still works"]
    out = capsys.readouterr()
    assert "CallbackFailureError" not in out.out + out.err  # never printed and lost


def test_on_disconnect_exception_is_raised_by_close(sock_path: str) -> None:
    def on_disconnect(intf: memif.Interface) -> None:
        raise CallbackFailureError("from on_disconnect")

    with Pair(sock_path, slave_kw={"on_disconnect": on_disconnect}) as p:
        with pytest.raises(CallbackFailureError):
            p.slave.close()
        assert p.slave.closed and p.sctx.interfaces == ()
        pump(p.mctx, p.sctx, until=lambda: not p.master.connected)


def test_on_disconnect_exception_is_raised_by_context_close(sock_path: str) -> None:
    seen: list[str] = []

    def on_disconnect(intf: memif.Interface) -> None:
        seen.append(intf.name)
        raise CallbackFailureError(intf.name)

    p = Pair(sock_path, master_kw={"on_disconnect": on_disconnect})
    extra = p.mctx.interface(p.master.socket, role=memif.Role.MASTER, id=1, name="m1",
                             on_disconnect=on_disconnect)
    slave1 = p.sctx.interface(p.slave.socket, id=1)
    pump(p.mctx, p.sctx, until=lambda: extra.connected and slave1.connected)
    with pytest.raises(CallbackFailureError) as info:
        p.mctx.close()  # both disconnect callbacks run; everything is closed anyway
    assert sorted(seen) == ["m0", "m1"]
    assert p.mctx.closed and p.master.closed and extra.closed
    assert any("also raised" in n for n in getattr(info.value, "__notes__", []))
    p.sctx.close()


def test_on_interrupt_exception_and_queue_state(sock_path: str) -> None:
    def on_interrupt(intf: memif.Interface, qid: int) -> None:
        frames = intf.rx[qid].recv_burst()
        raise CallbackFailureError(f"got {len(frames)}")

    with Pair(sock_path, master_kw={"on_interrupt": on_interrupt}) as p:
        p.slave.tx[0].send_burst([b"a", b"b", b"c"])
        with pytest.raises(CallbackFailureError, match="got 3"):
            pump(p.mctx, until=lambda: False, timeout=5)
        assert p.master.counters.rx_packets == 3
        p.slave.tx[0].send(b"d")
        with pytest.raises(CallbackFailureError, match="got 1"):
            pump(p.mctx, until=lambda: False, timeout=5)


def test_callbacks_get_the_interface_and_run_in_pairs(sock_path: str) -> None:
    log: list[tuple[str, str, bool]] = []
    with Pair(sock_path, connect=False,
              slave_kw={"on_connect": lambda i: log.append(("up", i.name, i.connected)),
                        "on_disconnect": lambda i: log.append(("down", i.name, i.connected))}
              ) as p:
        p.wait()
        p.master.close()
        pump(p.mctx, p.sctx, until=lambda: not p.slave.connected)
        assert log == [("up", "s0", True), ("down", "s0", False)]


def test_closing_from_inside_callbacks_is_deferred(sock_path: str) -> None:
    order: list[str] = []

    def on_connect(intf: memif.Interface) -> None:
        order.append("connect")
        intf.close()  # the library forbids memif_delete here: done after the dispatch
        assert intf.closed
        with pytest.raises(memif.ClosedError):
            intf.tx[0].send(b"x")

    def on_disconnect(intf: memif.Interface) -> None:
        order.append("disconnect")

    with Pair(sock_path, connect=False,
              master_kw={"on_connect": on_connect, "on_disconnect": on_disconnect}) as p:
        pump(p.mctx, p.sctx, until=lambda: p.master.closed and p.mctx.interfaces == ())
        assert order == ["connect", "disconnect"]
        pump(p.mctx, p.sctx, until=lambda: p.slave.connections == 1 and not p.slave.connected)


def test_closing_the_context_from_a_callback(sock_path: str) -> None:
    def on_connect(intf: memif.Interface) -> None:
        intf.context.close()

    p = Pair(sock_path, connect=False, master_kw={"on_connect": on_connect})
    with p:
        pump(p.mctx, p.sctx, until=lambda: p.mctx.closed)
        with pytest.raises(memif.ClosedError):
            p.mctx.poll(0)
        assert p.master.closed


def test_poll_and_wait_are_refused_inside_callbacks(sock_path: str) -> None:
    errors: list[BaseException] = []

    def on_connect(intf: memif.Interface) -> None:
        for call in (lambda: intf.context.poll(0), lambda: intf.wait_connected(0)):
            try:
                call()
            except RuntimeError as exc:
                errors.append(exc)
        _ = intf.details  # control calls that the library allows still work
        intf.rx[0].recv_burst()

    with Pair(sock_path, master_kw={"on_connect": on_connect}):
        pass
    assert len(errors) == 2 and all("callback" in str(e) for e in errors)


def test_exceptions_from_several_events_each_reach_a_poll(sock_path: str) -> None:
    def on_connect(intf: memif.Interface) -> None:
        raise CallbackFailureError(intf.name)

    with memif.Context() as mctx, memif.Context() as sctx:
        msock, ssock = mctx.socket(sock_path), sctx.socket(sock_path)
        for i in range(3):
            mctx.interface(msock, role=memif.Role.MASTER, id=i, name=f"m{i}",
                           on_connect=on_connect)
            sctx.interface(ssock, id=i)
        raised: list[str] = []
        for _ in range(500):
            try:
                mctx.poll(0.005)
                sctx.poll(0.005)
            except CallbackFailureError as exc:
                raised.append(str(exc))
            if len(raised) == 3:
                break
        assert sorted(raised) == ["m0", "m1", "m2"]


def test_closing_the_socket_from_a_callback(sock_path: str) -> None:
    def on_connect(intf: memif.Interface) -> None:
        intf.socket.close()  # its interfaces first, then the socket: all deferred
        assert intf.socket.closed and intf.closed

    p = Pair(sock_path, connect=False, master_kw={"on_connect": on_connect})
    p.sctx.set_reconnect_interval(0.05)
    with p:
        pump(p.mctx, p.sctx, until=lambda: p.master.closed and p.mctx.sockets == ())
        assert p.master.socket._state.closed and p.master.socket._state.handle[0] == memif.ffi.NULL
        # The path is free again: a new master can listen on it.
        again = p.mctx.interface(p.mctx.socket(sock_path), role=memif.Role.MASTER)
        pump(p.mctx, p.sctx, until=lambda: again.connected)


def test_details_readable_in_on_disconnect_run_by_close(sock_path: str) -> None:
    """on_disconnect run by close() can still read the interface's details."""
    seen: list[str] = []

    def on_disconnect(intf: memif.Interface) -> None:
        seen.append(intf.details.if_name)

    with memif.Context("a") as a, memif.Context("b") as b:
        master = a.interface(a.socket(sock_path), role=memif.Role.MASTER, name="m0",
                             on_disconnect=on_disconnect)
        slave = b.interface(b.socket(sock_path), name="s0")
        while not (master.connected and slave.connected):
            a.poll(0.01)
            b.poll(0.01)
        master.close()
        assert seen == ["m0"]
        with pytest.raises(memif.ClosedError):
            master.details  # noqa: B018  (deleted now)
