"""Contexts, sockets, interfaces: creation, arguments, details, closing in any order."""

from __future__ import annotations

import gc
import uuid
from pathlib import Path

import pytest
from apihelp import Pair, drain, open_fds, pump

import memif_cffi as memif
from memif_cffi.lowlevel import lib


def test_enums_come_from_the_library() -> None:
    assert memif.Mode.ETHERNET == lib.MEMIF_INTERFACE_MODE_ETHERNET
    assert memif.Mode.IP == lib.MEMIF_INTERFACE_MODE_IP
    assert memif.Mode.PUNT_INJECT == lib.MEMIF_INTERFACE_MODE_PUNT_INJECT
    assert memif.RxMode.INTERRUPT == lib.MEMIF_RX_MODE_INTERRUPT
    assert memif.RxMode.POLLING == lib.MEMIF_RX_MODE_POLLING
    assert memif.FdEvent.READ == lib.MEMIF_FD_EVENT_READ
    assert memif.FdEvent.DEL == lib.MEMIF_FD_EVENT_DEL
    assert [r.name for r in memif.Role] == ["MASTER", "SLAVE"]


def test_two_contexts_in_one_process_talk(pair: Pair) -> None:
    assert pair.master.connected and pair.slave.connected
    assert pair.slave.tx[0].send(b"ping")
    assert drain(pair.master.rx[0], 1) == [b"ping"]
    assert pair.master.tx[0].send(b"pong" * 100)
    assert drain(pair.slave.rx[0], 1) == [b"pong" * 100]
    md, sd = pair.master.details, pair.slave.details
    assert (md.if_name, md.remote_if_name, md.inst_name, md.remote_inst_name) == (
        "m0", "s0", "master-app", "slave-app")
    assert md.role is memif.Role.MASTER and sd.role is memif.Role.SLAVE
    assert md.link_up and sd.link_up and md.error == ""
    assert len(sd.rx_queues) == len(sd.tx_queues) == 1
    assert sd.rx_queues[0].ring_size == 1024 and sd.tx_queues[0].buffer_size == 2048
    assert md.socket_filename == pair.path
    c = pair.slave.counters
    assert (c.tx_packets, c.tx_bytes, c.rx_packets, c.rx_bytes) == (1, 4, 1, 400)
    assert pair.master.rx[0].counters == memif.QueueCounters(packets=1, bytes=4, drops=0)


def test_abstract_socket_and_options(tmp_path: Path) -> None:
    name = f"@memif-cffi-api-{uuid.uuid4().hex[:12]}"
    with Pair(name, id=7, secret="s3cret", mode=memif.Mode.IP, ring_size=64,
              buffer_size=1500) as p:
        d = p.slave.details
        assert d.id == 7 and d.secret == "s3cret" and d.mode is memif.Mode.IP
        assert d.socket_filename == name
        assert d.rx_queues[0].ring_size == 64 and d.rx_queues[0].buffer_size == 1500
        assert p.master.socket.abstract and p.master.socket.path == name
        assert not (tmp_path / name).exists()


def test_queue_counts_by_role(sock_path: str) -> None:
    with Pair(sock_path, master_kw={"rx_queues": 3, "tx_queues": 2},
              slave_kw={"rx_queues": 2, "tx_queues": 3}) as p:
        assert len(p.master.rx) == 3 and len(p.master.tx) == 2
        assert len(p.slave.rx) == 2 and len(p.slave.tx) == 3
        for q in range(3):
            assert p.slave.tx[q].send(bytes([q]) * 10)
        for q in range(3):
            assert drain(p.master.rx[q], 1) == [bytes([q]) * 10]


def test_master_offers_more_queues_than_the_slave_uses(sock_path: str) -> None:
    with Pair(sock_path, master_kw={"rx_queues": 2, "tx_queues": 2}) as p:
        assert len(p.master.rx) == 1 and len(p.master.tx) == 1  # negotiated
        assert len(p.master._rx) == 2
        with pytest.raises(memif.QidError):
            p.master._tx[1].send(b"x")
        with pytest.raises(memif.QidError):
            p.master._rx[1].mode = memif.RxMode.POLLING  # checked by the C library


def test_wait_connected_timeout_reports_the_reason(sock_path: str) -> None:
    with memif.Context() as ctx:
        assert ctx.app_name == "libmemif-app"
        slave = ctx.interface(ctx.socket(sock_path))
        with pytest.raises(TimeoutError, match=r"not connected after 0\.05 s: .*does not exist"):
            slave.wait_connected(timeout=0.05)
        assert slave.details.error == memif.NoFileError().strerror


def test_wait_connected_drives_the_poll(sock_path: str) -> None:
    with memif.Context() as mctx, memif.Context() as sctx:
        mctx.interface(mctx.socket(sock_path), role=memif.Role.MASTER)
        slave = sctx.interface(sctx.socket(sock_path))
        # The master's context must run too: poll it while the slave waits.
        pump(mctx, sctx, until=lambda: slave.connected)
        slave.wait_connected(timeout=1)  # already connected: returns at once
        assert slave.connections == 1


def test_rx_mode_and_fileno(pair: Pair) -> None:
    rxq = pair.master.rx[0]
    assert rxq.mode is memif.RxMode.INTERRUPT
    rxq.mode = memif.RxMode.POLLING
    assert rxq.mode is memif.RxMode.POLLING
    assert pair.master.details.rx_queues[0].flags & 1  # MASK_INT set in the ring
    fd = rxq.fileno()
    assert fd >= 0
    rxq.mode = memif.RxMode.INTERRUPT
    pair.slave.tx[0].send(b"x")
    import select

    assert select.select([fd], [], [], 1)[0] == [fd]  # the eventfd fired
    assert rxq.recv_burst() == [b"x"]
    assert select.select([fd], [], [], 0)[0] == []  # receiving drained it


def test_reconnect_pairs_callbacks(sock_path: str) -> None:
    events: list[str] = []
    with memif.Context("m") as mctx, memif.Context("s", reconnect_interval=0.05) as sctx:
        master = mctx.interface(mctx.socket(sock_path), role=memif.Role.MASTER,
                                on_connect=lambda i: events.append("up"),
                                on_disconnect=lambda i: events.append("down"))
        sock = sctx.socket(sock_path)
        for _ in range(3):
            slave = sctx.interface(sock)

            def both_up(s: memif.Interface = slave) -> bool:
                return master.connected and s.connected

            pump(mctx, sctx, until=both_up)
            slave.tx[0].send(b"hi")
            assert drain(master.rx[0], 1) == [b"hi"]
            slave.close()
            pump(mctx, sctx, until=lambda: not master.connected)
        assert events == ["up", "down"] * 3
        assert master.connections == 3
        with pytest.raises(memif.DisconnectedError):
            master.tx[0].send(b"nobody")


def test_contexts_and_everything_are_context_managers(sock_path: str) -> None:
    with memif.Context() as ctx, ctx.socket(sock_path) as sock, \
            ctx.interface(sock, role=memif.Role.MASTER) as intf:
        assert not intf.closed and not sock.closed and not ctx.closed
        assert ctx.interfaces == (intf,) and sock.interfaces == (intf,)
    assert intf.closed and sock.closed and ctx.closed
    for obj in (intf, sock, ctx):
        obj.close()  # idempotent
    assert ctx.interfaces == () and ctx.sockets == ()


@pytest.mark.parametrize("order", ["ctx", "socket", "intf", "slave-ctx", "reverse"])
def test_closing_in_any_order(sock_path: str, order: str) -> None:
    p = Pair(sock_path)
    p.slave.tx[0].send(b"data")
    if order == "ctx":
        p.mctx.close()
    elif order == "socket":
        p.master.socket.close()
        assert p.master.closed
    elif order == "intf":
        p.master.close()
        p.master.close()
    elif order == "slave-ctx":
        p.sctx.close()
    else:
        p.slave.close()
        p.slave.socket.close()
        p.master.close()
        p.master.socket.close()
    for _ in range(5):
        p.poll() if not p.mctx.closed and not p.sctx.closed else None
    p.close()
    for obj in (p.master, p.slave):
        with pytest.raises(memif.ClosedError):
            obj.tx[0].send(b"late")
        with pytest.raises(memif.NoConnError):  # ClosedError is a NoConnError...
            obj.rx[0].recv_burst()
        with pytest.raises(ValueError):  # ...and so a ValueError
            _ = obj.details
        with pytest.raises(memif.ClosedError):
            obj.wait_connected(0)
    with pytest.raises(memif.ClosedError):
        p.mctx.poll(0)
    with pytest.raises(memif.ClosedError):
        p.mctx.socket(sock_path)


def test_dropping_unclosed_objects_cleans_up(sock_path: str) -> None:
    gc.collect()
    before = open_fds()
    p = Pair(sock_path)
    p.slave.tx[0].send(b"x")
    rxq = p.master.rx[0]
    views = rxq.views(8)
    got = views.__enter__()  # a views() block left open, then everything dropped
    assert bytes(got[0]) == b"x"
    del p, rxq, views, got
    gc.collect()
    assert open_fds() == before


def test_socket_argument_checks(tmp_path: Path) -> None:
    with memif.Context() as ctx, memif.Context() as other:
        with pytest.raises(ValueError, match="empty"):
            ctx.socket("")
        with pytest.raises(ValueError, match="limit is 107"):
            ctx.socket("/" + "x" * 107)
        with pytest.raises(ValueError, match="NUL"):
            ctx.socket("a\0b")
        sock = other.socket(str(tmp_path / "s"))
        with pytest.raises(ValueError, match="created by this Context"):
            ctx.interface(sock)
        assert ctx.socket(tmp_path / "path-like").path == str(tmp_path / "path-like")
        ok = ctx.socket("@" + "a" * 106)
        assert ok.abstract


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"ring_size": 2**20}, memif.RingSizeError, "16384"),
        ({"ring_size": 1000}, memif.RingSizeError, "power of two"),
        ({"ring_size": 1}, memif.RingSizeError, "power of two"),
        ({"name": "n" * 40}, ValueError, "40 bytes long; the limit is 32"),
        ({"secret": "s" * 25}, ValueError, "limit is 24"),
        ({"id": -1}, ValueError, r"id must be in 0\.\.4294967295"),
        ({"id": 2**32}, ValueError, "id must be"),
        ({"id": "0"}, TypeError, "id must be an int"),
        ({"rx_queues": 0}, ValueError, "rx_queues"),
        ({"tx_queues": 256}, ValueError, "tx_queues"),
        ({"buffer_size": 0}, ValueError, "buffer_size"),
        ({"buffer_size": 65536}, ValueError, "buffer_size"),
        ({"role": 5}, ValueError, "Role"),
        ({"mode": 9}, ValueError, "Mode"),
        ({"on_connect": 3}, TypeError, "callable"),
        ({"buffer_size": 65535, "ring_size": 16384, "rx_queues": 4}, memif.InvalidArgError,
         "4 GiB"),
    ],
)
def test_interface_argument_checks_before_c(sock_path: str, kwargs: dict[str, object],
                                            exc: type[BaseException], match: str) -> None:
    with memif.Context() as ctx:
        sock = ctx.socket(sock_path)
        with pytest.raises(exc, match=match):
            ctx.interface(sock, **kwargs)  # type: ignore[arg-type]
        assert ctx.interfaces == ()
        assert not Path(sock_path).exists()  # nothing reached the library


def test_context_argument_checks() -> None:
    with pytest.raises(ValueError, match="limit is 32"):
        memif.Context("a" * 33)
    with pytest.raises(ValueError, match="either"):
        import selectors

        memif.Context(selector=selectors.DefaultSelector(), on_fd_update=lambda fd, ev: None)
    with pytest.raises(ValueError, match="reconnect_interval"):
        memif.Context(reconnect_interval=-1)
    with memif.Context() as ctx:
        with pytest.raises(ValueError, match="timeout"):
            ctx.poll(-1)
        with pytest.raises(RuntimeError, match="handle_event"):
            ctx.handle_event(0, memif.FdEvent.READ)


def test_reprs(pair: Pair) -> None:
    assert "connected" in repr(pair.master) and "master" in repr(pair.master)
    assert "RxQueue 0" in repr(pair.master.rx[0])
    assert "master-app" in repr(pair.mctx)
    assert pair.path in repr(pair.master.socket)
