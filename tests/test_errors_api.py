"""Version, error texts, databases, event loop and every reachable error path of the API.

References: libmemif-api §3.1 (codes), §6 (callbacks), §8 (functions), §10
(strerror), §11 (deliberate differences).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lowpair import (
    ALL,
    Database,
    Interface,
    alloc,
    assert_rc,
    connected_pair,
    details_of,
    get_details,
    itimerspec,
    open_fds,
    poll_until,
    rx_burst,
    send_packets,
    sock_path,
    tx_burst,
)

from memif_cffi.lowlevel import ffi, lib, new_conn_args, set_global_fd_update

NULL = ffi.NULL


# --------------------------------------------------------------------------
# Version and strerror
# --------------------------------------------------------------------------


def test_version() -> None:
    assert lib.memif_get_version() == 0x0200 == lib.MEMIF_VERSION == 512
    assert ffi.string(lib.memif_get_version_str()) == b"2.0"
    assert ffi.string(lib.LIBMEMIF_VERSION) == b"3.1"


def _text(code: int) -> str:
    p = lib.memif_strerror(code)
    assert p != NULL
    return ffi.string(p).decode()


def test_strerror_texts_distinct_and_unknown() -> None:
    texts = [_text(code) for code in range(40)]
    assert all(t.strip() for t in texts), "empty text"
    assert len(set(texts)) == 40, "texts are not pairwise distinct"
    unknown = {_text(c) for c in (40, 41, 1000, -1, -40, 2**31 - 1, -(2**31))}
    assert len(unknown) == 1, unknown
    assert unknown.isdisjoint(texts)
    # MAX_RING states the real limit (X16).
    assert "14" in texts[lib.MEMIF_ERR_MAX_RING]
    assert "15" not in texts[lib.MEMIF_ERR_MAX_RING]


def test_strerror_is_thread_local() -> None:
    """Each thread has its own buffer (O6): distinct addresses, never another thread's text."""
    expected = {c: _text(c) for c in (lib.MEMIF_ERR_NOCONN, lib.MEMIF_ERR_QID)}
    barrier = threading.Barrier(2)
    addrs: dict[int, int] = {}
    bad: list[str] = []

    def worker(code: int) -> None:
        barrier.wait()
        for _ in range(20000):
            p = lib.memif_strerror(code)
            text = ffi.string(p).decode()
            if text != expected[code]:
                bad.append(text)
                break
        addrs[code] = int(ffi.cast("uintptr_t", lib.memif_strerror(code)))
        barrier.wait()  # both threads alive while the addresses are taken

    threads = [threading.Thread(target=worker, args=(c,)) for c in expected]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not bad, f"a thread read another thread's text: {bad[:1]}"
    assert len(set(addrs.values())) == 2, "both threads got the same buffer"
    # The buffer is the caller's copy (char *, writable): writing into it does
    # not change the text a later call returns.
    text0 = _text(0)
    p = lib.memif_strerror(0)
    p[0] = b"X"
    assert _text(0) == text0


# --------------------------------------------------------------------------
# Per-thread databases
# --------------------------------------------------------------------------


def test_per_thread_init_and_cleanup_null() -> None:
    assert_rc(lib.memif_per_thread_init(NULL, NULL, NULL, b"x", NULL, NULL, NULL),
              "MEMIF_ERR_INVAL_ARG", "init(NULL)")
    assert_rc(lib.memif_per_thread_cleanup(NULL), "MEMIF_ERR_INVAL_ARG", "cleanup(NULL)")
    p = ffi.new("memif_per_thread_main_handle_t *")
    assert_rc(lib.memif_per_thread_cleanup(p), "MEMIF_ERR_INVAL_ARG", "cleanup(&NULL)")
    assert_rc(lib.memif_per_thread_init(p, NULL, NULL, NULL, NULL, NULL, NULL),
              "MEMIF_ERR_SUCCESS", "init")
    assert p[0] != NULL
    assert lib.memif_per_thread_get_epoll_fd(p[0]) > 2
    assert_rc(lib.memif_per_thread_cleanup(p), "MEMIF_ERR_SUCCESS", "cleanup")
    assert p[0] == NULL


@pytest.mark.parametrize("external", [False, True], ids=["internal", "external"])
def test_per_thread_cleanup_closes_every_fd(tmp_path: Path, external: bool) -> None:
    before = open_fds()
    with connected_pair(tmp_path, external=external, interrupts=True):
        pass
    assert open_fds() == before


def test_per_thread_fd_update_private_ctx_and_timerfd() -> None:
    seen: list[tuple[int, int, Any]] = []
    from memif_cffi.lowlevel import FdUpdate

    marker = object()
    upd = FdUpdate(lambda fd, ev, ctx: seen.append((fd, ev, ctx)) and 0, ctx=marker)
    p = ffi.new("memif_per_thread_main_handle_t *")
    try:
        assert_rc(lib.memif_per_thread_init(p, upd.private_ctx, upd.callback, b"app", NULL,
                                            NULL, NULL), "MEMIF_ERR_SUCCESS", "init")
        assert len(seen) == 1
        fd, ev, ctx = seen[0]
        assert fd > 2 and ev == lib.MEMIF_FD_EVENT_READ and ctx is marker
        assert lib.memif_per_thread_get_epoll_fd(p[0]) == -1
        # The timerfd is a real timerfd: the handler accepts it, and an unknown fd too.
        assert_rc(lib.memif_per_thread_control_fd_handler(p[0], fd, lib.MEMIF_FD_EVENT_READ),
                  "MEMIF_ERR_SUCCESS", "timerfd handler")
        assert_rc(lib.memif_per_thread_control_fd_handler(p[0], 1000, lib.MEMIF_FD_EVENT_READ),
                  "MEMIF_ERR_SUCCESS", "unknown fd")
        # Internal polling functions refuse an external-polling database.
        assert_rc(lib.memif_per_thread_poll_event(p[0], 0), "MEMIF_ERR_INVAL_ARG", "poll")
        assert_rc(lib.memif_per_thread_cancel_poll_event(p[0]), "MEMIF_ERR_SUCCESS", "cancel")
        assert_rc(lib.memif_per_thread_cleanup(p), "MEMIF_ERR_SUCCESS", "cleanup")
        assert seen[-1] == (fd, lib.MEMIF_FD_EVENT_DEL, marker)
    finally:
        upd.release()


def test_fd_update_failure_fails_init() -> None:
    with pytest.raises(Exception) as info:
        Database(external=True, fd_update_result=-1)
    assert getattr(info.value, "code", None) == lib.MEMIF_ERR_CB_FDUPDATE


def test_fd_update_failure_fails_master_create(tmp_path: Path) -> None:
    with Database(external=True) as db:
        sock = db.socket(sock_path(tmp_path))
        db.fd_update_result = -1
        args = new_conn_args(socket=sock.handle, is_master=True)
        conn = ffi.new("memif_conn_handle_t *")
        assert_rc(lib.memif_create(conn, args, NULL, NULL, NULL, NULL),
                  "MEMIF_ERR_CB_FDUPDATE", "create")
        assert conn[0] == NULL
        db.fd_update_result = 0


def test_per_thread_null_handles() -> None:
    sock = ffi.new("memif_socket_handle_t *")
    assert_rc(lib.memif_per_thread_create_socket(NULL, sock, b"/x", NULL),
              "MEMIF_ERR_INVAL_ARG", "create_socket")
    assert_rc(lib.memif_per_thread_control_fd_handler(NULL, 3, 1), "MEMIF_ERR_INVAL_ARG",
              "fd_handler")
    assert_rc(lib.memif_per_thread_poll_event(NULL, 0), "MEMIF_ERR_INVAL_ARG", "poll")
    assert_rc(lib.memif_per_thread_cancel_poll_event(NULL), "MEMIF_ERR_INVAL_ARG", "cancel")
    assert_rc(lib.memif_per_thread_set_connection_request_timer(NULL, itimerspec(1)),
              "MEMIF_ERR_INVAL_ARG", "timer")


def test_set_timer_rejects_bad_nsec() -> None:
    with Database() as db:
        ts = ffi.new("struct itimerspec *")
        ts.it_value.tv_nsec = 1_000_000_000
        assert_rc(lib.memif_per_thread_set_connection_request_timer(db.handle, ts[0]),
                  "MEMIF_ERR_INVAL_ARG", "tv_nsec 1e9")
        ts.it_value.tv_nsec = -1
        assert_rc(lib.memif_per_thread_set_connection_request_timer(db.handle, ts[0]),
                  "MEMIF_ERR_INVAL_ARG", "tv_nsec -1")
        assert_rc(lib.memif_per_thread_set_connection_request_timer(db.handle, itimerspec(0.5)),
                  "MEMIF_ERR_SUCCESS", "0.5 s")


def test_poll_event_timeout_is_milliseconds() -> None:
    with Database() as db:
        t0 = time.monotonic()
        assert_rc(lib.memif_per_thread_poll_event(db.handle, 0), "MEMIF_ERR_SUCCESS", "poll 0")
        assert time.monotonic() - t0 < 0.1
        t0 = time.monotonic()
        assert_rc(lib.memif_per_thread_poll_event(db.handle, 200), "MEMIF_ERR_SUCCESS",
                  "poll 200")
        took = time.monotonic() - t0
        assert 0.15 <= took < 2.0, took


def test_cancel_poll_event() -> None:
    with Database() as db:
        # Several cancels before a poll produce one POLL_CANCEL.
        for _ in range(3):
            assert_rc(lib.memif_per_thread_cancel_poll_event(db.handle), "MEMIF_ERR_SUCCESS",
                      "cancel")
        t0 = time.monotonic()
        assert_rc(lib.memif_per_thread_poll_event(db.handle, -1), "MEMIF_ERR_POLL_CANCEL",
                  "poll after cancel")
        assert time.monotonic() - t0 < 1.0
        assert_rc(lib.memif_per_thread_poll_event(db.handle, 0), "MEMIF_ERR_SUCCESS",
                  "second poll")

        # A cancel from another thread wakes a poll blocked without a time limit.
        result: list[int] = []
        waiter = threading.Thread(
            target=lambda: result.append(lib.memif_per_thread_poll_event(db.handle, -1)))
        waiter.start()
        time.sleep(0.2)
        assert not result, "poll_event(-1) returned without an event"
        assert_rc(lib.memif_per_thread_cancel_poll_event(db.handle), "MEMIF_ERR_SUCCESS",
                  "cancel")
        waiter.join(5)
        assert not waiter.is_alive()
        assert_rc(result[0], "MEMIF_ERR_POLL_CANCEL", "blocked poll")


def test_cleanup_with_interface_refused(tmp_path: Path) -> None:
    with connected_pair(tmp_path) as pair:
        assert_rc(lib.memif_per_thread_cleanup(pair.sdb.handle_ptr), "MEMIF_ERR_INVAL_ARG",
                  "cleanup with an interface")
        assert pair.sdb.handle != NULL
        # Still usable.
        assert send_packets(pair.slave, 0, [b"after refused cleanup"]) == 1
        pair.poll_until(lambda: True)
        assert get_details(pair.slave.conn).link_up_down == 1


# --------------------------------------------------------------------------
# Global database
# --------------------------------------------------------------------------


@pytest.fixture
def global_db() -> Iterator[None]:
    """Make sure the global database is torn down whatever the test does."""
    assert_rc(lib.memif_cleanup(), "MEMIF_ERR_SUCCESS", "cleanup before")
    try:
        yield
    finally:
        lib.memif_cleanup()
        set_global_fd_update(None)


def test_global_not_initialised(global_db: None) -> None:
    assert_rc(lib.memif_cancel_poll_event(), "MEMIF_ERR_INVAL_ARG", "cancel before init")
    assert_rc(lib.memif_set_connection_request_timer(itimerspec(1)), "MEMIF_ERR_INVAL_ARG",
              "timer before init")
    sock = ffi.new("memif_socket_handle_t *")
    assert_rc(lib.memif_create_socket(sock, b"/tmp/x.sock", NULL), "MEMIF_ERR_INVAL_ARG",
              "create_socket before init")
    args = new_conn_args(is_master=False)
    conn = ffi.new("memif_conn_handle_t *")
    assert_rc(lib.memif_create(conn, args, NULL, NULL, NULL, NULL), "MEMIF_ERR_INVAL_ARG",
              "create with the default socket before init")
    assert conn[0] == NULL
    assert_rc(lib.memif_cleanup(), "MEMIF_ERR_SUCCESS", "cleanup when not initialised")


def test_global_internal_polling(global_db: None) -> None:
    before = open_fds()
    assert_rc(lib.memif_init(NULL, b"unit_test_app", NULL, NULL, NULL), "MEMIF_ERR_SUCCESS",
              "init")
    assert_rc(lib.memif_poll_event(0), "MEMIF_ERR_SUCCESS", "poll 0")
    assert_rc(lib.memif_cancel_poll_event(), "MEMIF_ERR_SUCCESS", "cancel")
    assert_rc(lib.memif_poll_event(-1), "MEMIF_ERR_POLL_CANCEL", "poll after cancel")
    assert_rc(lib.memif_set_connection_request_timer(itimerspec(0.1)), "MEMIF_ERR_SUCCESS",
              "timer")
    # Initialising again while empty: implicit cleanup, no fd leak (X9).
    assert_rc(lib.memif_init(NULL, b"again", NULL, NULL, NULL), "MEMIF_ERR_SUCCESS",
              "init again")
    assert_rc(lib.memif_cleanup(), "MEMIF_ERR_SUCCESS", "cleanup")
    assert open_fds() == before, "memif_cleanup left fds open (X2)"


def test_global_external_polling_and_reinit(global_db: None, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    cb = set_global_fd_update(lambda fd, ev, ctx: calls.append((fd, ev)) and 0)
    assert_rc(lib.memif_init(cb, b"unit_test_app", NULL, NULL, NULL), "MEMIF_ERR_SUCCESS",
              "init")
    assert len(calls) == 1
    timerfd, ev = calls[0]
    assert timerfd > 2 and ev == lib.MEMIF_FD_EVENT_READ
    assert_rc(lib.memif_poll_event(0), "MEMIF_ERR_INVAL_ARG", "poll with external polling")
    assert_rc(lib.memif_cancel_poll_event(), "MEMIF_ERR_SUCCESS", "cancel (no-op)")
    assert_rc(lib.memif_control_fd_handler(timerfd, lib.MEMIF_FD_EVENT_READ),
              "MEMIF_ERR_SUCCESS", "timerfd")

    # A second init with no interface: the first timerfd is announced DEL first (X9).
    calls.clear()
    assert_rc(lib.memif_init(cb, b"second", NULL, NULL, NULL), "MEMIF_ERR_SUCCESS", "re-init")
    assert calls[0] == (timerfd, lib.MEMIF_FD_EVENT_DEL)
    new_timer = calls[1]
    assert new_timer[1] == lib.MEMIF_FD_EVENT_READ

    # With an interface alive: ALREADY, nothing changes; cleanup refused too.
    sock = ffi.new("memif_socket_handle_t *")
    assert_rc(lib.memif_create_socket(sock, sock_path(tmp_path).encode(), NULL),
              "MEMIF_ERR_SUCCESS", "create_socket")
    conn = ffi.new("memif_conn_handle_t *")
    args = new_conn_args(socket=sock[0], is_master=True, interface_name=b"unit_test_if")
    assert_rc(lib.memif_create(conn, args, NULL, NULL, NULL, NULL), "MEMIF_ERR_SUCCESS",
              "create")
    calls.clear()
    assert_rc(lib.memif_init(cb, b"third", NULL, NULL, NULL), "MEMIF_ERR_ALREADY",
              "init with an interface")
    assert_rc(lib.memif_cleanup(), "MEMIF_ERR_INVAL_ARG", "cleanup with an interface")
    assert not calls, "refused init/cleanup touched fds"
    d = get_details(conn[0])
    assert d.inst_name == "second" and d.if_name == "unit_test_if"
    assert_rc(lib.memif_delete(conn), "MEMIF_ERR_SUCCESS", "delete")
    assert_rc(lib.memif_cleanup(), "MEMIF_ERR_SUCCESS", "cleanup")
    assert (new_timer[0], lib.MEMIF_FD_EVENT_DEL) in calls


def test_global_long_app_name_truncated(global_db: None, tmp_path: Path) -> None:
    name = b"n" * 100
    assert_rc(lib.memif_init(NULL, name, NULL, NULL, NULL), "MEMIF_ERR_SUCCESS", "init")
    sock = ffi.new("memif_socket_handle_t *")
    assert_rc(lib.memif_create_socket(sock, sock_path(tmp_path).encode(), NULL),
              "MEMIF_ERR_SUCCESS", "create_socket")
    conn = ffi.new("memif_conn_handle_t *")
    args = new_conn_args(socket=sock[0], is_master=False)
    assert_rc(lib.memif_create(conn, args, NULL, NULL, NULL, NULL), "MEMIF_ERR_SUCCESS",
              "create")
    inst = get_details(conn[0]).inst_name
    assert inst == "n" * 32
    assert_rc(lib.memif_delete(conn), "MEMIF_ERR_SUCCESS", "delete")
    assert_rc(lib.memif_delete_socket(sock), "MEMIF_ERR_SUCCESS", "delete socket")


def test_global_default_app_name(global_db: None, tmp_path: Path) -> None:
    assert_rc(lib.memif_init(NULL, NULL, NULL, NULL, NULL), "MEMIF_ERR_SUCCESS", "init")
    sock = ffi.new("memif_socket_handle_t *")
    assert_rc(lib.memif_create_socket(sock, sock_path(tmp_path).encode(), NULL),
              "MEMIF_ERR_SUCCESS", "create_socket")
    conn = ffi.new("memif_conn_handle_t *")
    args = new_conn_args(socket=sock[0], is_master=True)
    assert_rc(lib.memif_create(conn, args, NULL, NULL, NULL, NULL), "MEMIF_ERR_SUCCESS",
              "create")
    assert get_details(conn[0]).inst_name == "libmemif-app"
    assert_rc(lib.memif_delete(conn), "MEMIF_ERR_SUCCESS", "delete")


# --------------------------------------------------------------------------
# memif_create arguments
# --------------------------------------------------------------------------


def _create(db: Database, sock: Any, **kw: Any) -> tuple[int, Any]:
    args = new_conn_args(socket=sock.handle, **kw)
    conn = ffi.new("memif_conn_handle_t *")
    rc = lib.memif_create(conn, args, NULL, NULL, NULL, NULL)
    if rc == 0:
        lib.memif_delete(conn)
    else:
        assert conn[0] == NULL, "failed create set *conn"
    return int(rc), args


def test_create_defaults_written_back(tmp_path: Path) -> None:
    with Database(b"unit_test_app") as db:
        sock = db.socket(sock_path(tmp_path))
        for is_master in (False, True):
            rc, args = _create(db, sock, is_master=is_master)
            assert_rc(rc, "MEMIF_ERR_SUCCESS", "create")
            assert (args.num_s2m_rings, args.num_m2s_rings, args.buffer_size,
                    args.log2_ring_size) == (1, 1, 2048, 10)


def test_create_slave_without_listener(tmp_path: Path) -> None:
    with Database(b"unit_test_app") as db:
        sock = db.socket(sock_path(tmp_path))
        intf = Interface(db, sock, master=False, name=b"unit_test_if", secret=b"psst")
        d = intf.details()
        assert d.if_name == "unit_test_if" and d.inst_name == "unit_test_app"
        assert (d.role, d.mode, d.id, d.link_up_down) == (1, 0, 0, 0)
        assert d.secret == "psst"
        assert d.socket_filename == sock_path(tmp_path)
        assert d.error, "a failed connect records its reason"
        assert (d.regions_num, d.rx_queues_num, d.tx_queues_num) == (0, 0, 0)
        assert_rc(lib.memif_request_connection(intf.conn), "MEMIF_ERR_NO_FILE",
                  "connect to a missing path")
        intf.delete()
        assert intf.conn == NULL
        assert_rc(lib.memif_delete(intf.conn_ptr), "MEMIF_ERR_NOCONN", "delete twice")


def test_create_argument_errors(tmp_path: Path) -> None:
    with Database() as db:
        sock = db.socket(sock_path(tmp_path))
        args = new_conn_args(socket=sock.handle, is_master=True)
        conn = ffi.new("memif_conn_handle_t *")
        assert_rc(lib.memif_create(NULL, args, NULL, NULL, NULL, NULL), "MEMIF_ERR_INVAL_ARG",
                  "conn NULL")
        assert_rc(lib.memif_create(conn, NULL, NULL, NULL, NULL, NULL), "MEMIF_ERR_INVAL_ARG",
                  "args NULL")
        conn[0] = ffi.cast("void *", 1)
        assert_rc(lib.memif_create(conn, args, NULL, NULL, NULL, NULL), "MEMIF_ERR_CONN",
                  "*conn != NULL")
        assert conn[0] == ffi.cast("void *", 1)

        for is_master in (True, False):
            assert_rc(_create(db, sock, is_master=is_master, log2_ring_size=15)[0],
                      "MEMIF_ERR_MAX_RING", "log2 15")
            assert_rc(_create(db, sock, is_master=is_master, log2_ring_size=255)[0],
                      "MEMIF_ERR_MAX_RING", "log2 255")
            assert_rc(_create(db, sock, is_master=is_master, mode=3)[0],
                      "MEMIF_ERR_INVAL_ARG", "mode 3")
            # 255 + 255 rings of 2^14 buffers of 2048 bytes: 17 GB of buffers.
            assert_rc(_create(db, sock, is_master=is_master, num_s2m_rings=255,
                              num_m2s_rings=255, log2_ring_size=14)[0],
                      "MEMIF_ERR_INVAL_ARG", "buffer region over 4 GiB")
            # 5 * 65535 * 2^14 > UINT32_MAX, 4 * 65535 * 2^14 <= UINT32_MAX.
            assert_rc(_create(db, sock, is_master=is_master, num_s2m_rings=3, num_m2s_rings=2,
                              buffer_size=65535, log2_ring_size=14)[0],
                      "MEMIF_ERR_INVAL_ARG", "5 rings of 2^14 x 65535")
        # The accepted limits (slave: the socket has no listener yet).
        assert_rc(_create(db, sock, is_master=False, log2_ring_size=14)[0],
                  "MEMIF_ERR_SUCCESS", "log2 14")
        assert_rc(_create(db, sock, is_master=False, num_s2m_rings=2, num_m2s_rings=2,
                          buffer_size=65535, log2_ring_size=14)[0],
                  "MEMIF_ERR_SUCCESS", "4 rings of 2^14 x 65535")
        assert_rc(_create(db, sock, is_master=False, mode=2)[0], "MEMIF_ERR_SUCCESS",
                  "mode 2")


def test_create_role_conflicts_on_one_socket(tmp_path: Path) -> None:
    with Database() as db:
        slave_sock = db.socket(sock_path(tmp_path, "a.sock"))
        Interface(db, slave_sock, master=False)
        assert_rc(_create(db, slave_sock, is_master=True)[0], "MEMIF_ERR_INVAL_ARG",
                  "master on a slave socket")
        master_sock = db.socket(sock_path(tmp_path, "b.sock"))
        Interface(db, master_sock, master=True, id=3)
        assert_rc(_create(db, master_sock, is_master=False)[0], "MEMIF_ERR_INVAL_ARG",
                  "slave on a listening socket")
        assert_rc(_create(db, master_sock, is_master=True, interface_id=3)[0],
                  "MEMIF_ERR_INVAL_ARG", "duplicate master id")
        assert_rc(_create(db, master_sock, is_master=True, interface_id=4)[0],
                  "MEMIF_ERR_SUCCESS", "another master id")
        # Several slaves may share an id.
        Interface(db, slave_sock, master=False)


def test_delete_socket_rules(tmp_path: Path) -> None:
    with Database() as db:
        sock = db.socket(sock_path(tmp_path))
        intf = Interface(db, sock, master=True)
        assert_rc(lib.memif_delete_socket(sock._p), "MEMIF_ERR_INVAL_ARG", "socket in use")
        assert sock.handle != NULL
        intf.delete()
        assert_rc(lib.memif_delete_socket(sock._p), "MEMIF_ERR_SUCCESS", "unused socket")
        assert sock.handle == NULL
        db.sockets.remove(sock)
        assert_rc(lib.memif_delete_socket(sock._p), "MEMIF_ERR_INVAL_ARG", "*sock NULL")
        assert_rc(lib.memif_delete_socket(NULL), "MEMIF_ERR_INVAL_ARG", "sock NULL")
        assert lib.memif_get_socket_filename(NULL) == NULL


# --------------------------------------------------------------------------
# NULL handles and unconnected interfaces
# --------------------------------------------------------------------------


def _data_path_calls(conn: Any, qid: int) -> dict[str, int]:
    bufs = ffi.new("memif_buffer_t[4]")
    n = ffi.new("uint16_t *")
    return {
        "buffer_alloc": lib.memif_buffer_alloc(conn, qid, bufs, 1, n, 64),
        "tx_burst": lib.memif_tx_burst(conn, qid, bufs, 0, n),
        "rx_burst": lib.memif_rx_burst(conn, qid, bufs, 4, n),
        "refill_queue": lib.memif_refill_queue(conn, qid, 1, 0),
        "buffer_enq_tx": lib.memif_buffer_enq_tx(conn, qid, bufs, 0, n),
    }


def test_null_connection_handle() -> None:
    for name, rc in _data_path_calls(NULL, 0).items():
        assert_rc(rc, "MEMIF_ERR_NOCONN", name)
    fd = ffi.new("int *", 7)
    assert_rc(lib.memif_get_queue_efd(NULL, 0, fd), "MEMIF_ERR_NOCONN", "queue_efd")
    assert fd[0] == -1
    assert_rc(lib.memif_set_rx_mode(NULL, 0, 0), "MEMIF_ERR_NOCONN", "set_rx_mode")
    assert_rc(lib.memif_request_connection(NULL), "MEMIF_ERR_NOCONN", "request_connection")
    md = ffi.new("memif_details_t *")
    buf = ffi.new("char[]", 256)
    assert_rc(lib.memif_get_details(NULL, md, buf, 256), "MEMIF_ERR_NOCONN", "get_details")
    assert_rc(lib.memif_delete(NULL), "MEMIF_ERR_NOCONN", "delete(NULL)")
    p = ffi.new("memif_conn_handle_t *")
    assert_rc(lib.memif_delete(p), "MEMIF_ERR_NOCONN", "delete(&NULL)")


def test_unconnected_interface(tmp_path: Path) -> None:
    with Database() as db:
        sock = db.socket(sock_path(tmp_path))
        slave = Interface(db, sock, master=False, s2m=2, m2s=3)
        master = Interface(db, db.socket(sock_path(tmp_path, "m.sock")), master=True)
        for intf in (slave, master):
            for name, rc in _data_path_calls(intf.conn, 0).items():
                assert_rc(rc, "MEMIF_ERR_DISCONNECTED", name)
            fd = ffi.new("int *", 7)
            assert_rc(lib.memif_get_queue_efd(intf.conn, 0, fd), "MEMIF_ERR_DISCONNECTED",
                      "queue_efd")
            assert fd[0] == -1
            assert_rc(lib.memif_get_queue_efd(intf.conn, 0, NULL), "MEMIF_ERR_INVAL_ARG",
                      "queue_efd fd NULL")
        # rx mode before connect: any configured rx queue (slave rx = M2S: 3).
        for q in range(3):
            assert_rc(lib.memif_set_rx_mode(slave.conn, lib.MEMIF_RX_MODE_POLLING, q),
                      "MEMIF_ERR_SUCCESS", f"set_rx_mode qid {q}")
        assert_rc(lib.memif_set_rx_mode(slave.conn, 1, 3), "MEMIF_ERR_QID", "qid 3")
        assert_rc(lib.memif_set_rx_mode(slave.conn, 2, 0), "MEMIF_ERR_INVAL_ARG", "mode 2")
        assert_rc(lib.memif_request_connection(master.conn), "MEMIF_ERR_INVAL_ARG",
                  "request_connection on a master")


@pytest.mark.parametrize("queues", [1, 3])
def test_connected_argument_errors(tmp_path: Path, queues: int) -> None:
    with connected_pair(tmp_path, s2m=queues, m2s=queues) as pair:
        for intf in (pair.master, pair.slave):
            for name, rc in _data_path_calls(intf.conn, queues).items():
                assert_rc(rc, "MEMIF_ERR_QID", f"{name} qid {queues}")
            for name, rc in _data_path_calls(intf.conn, 0xFFFF).items():
                assert_rc(rc, "MEMIF_ERR_QID", f"{name} qid 65535")
            fd = ffi.new("int *")
            assert_rc(lib.memif_get_queue_efd(intf.conn, queues, fd), "MEMIF_ERR_QID",
                      "queue_efd")
            assert_rc(lib.memif_set_rx_mode(intf.conn, 0, queues), "MEMIF_ERR_QID",
                      "set_rx_mode")
            assert_rc(lib.memif_set_rx_mode(intf.conn, 2, 0), "MEMIF_ERR_INVAL_ARG",
                      "set_rx_mode 2")
            bufs = ffi.new("memif_buffer_t[2]")
            n = ffi.new("uint16_t *")
            assert_rc(lib.memif_buffer_alloc(intf.conn, 0, bufs, 1, NULL, 64),
                      "MEMIF_ERR_INVAL_ARG", "alloc count_out NULL")
            assert_rc(lib.memif_buffer_alloc(intf.conn, 0, NULL, 1, n, 64),
                      "MEMIF_ERR_INVAL_ARG", "alloc bufs NULL")
            assert_rc(lib.memif_tx_burst(intf.conn, 0, bufs, 0, NULL), "MEMIF_ERR_INVAL_ARG",
                      "tx_burst tx NULL")
            assert_rc(lib.memif_tx_burst(intf.conn, 0, NULL, 1, n), "MEMIF_ERR_INVAL_ARG",
                      "tx_burst bufs NULL")
            assert_rc(lib.memif_rx_burst(intf.conn, 0, bufs, 2, NULL), "MEMIF_ERR_INVAL_ARG",
                      "rx_burst rx NULL")
            assert_rc(lib.memif_rx_burst(intf.conn, 0, NULL, 2, n), "MEMIF_ERR_INVAL_ARG",
                      "rx_burst bufs NULL")
            assert_rc(lib.memif_tx_burst(intf.conn, 0, bufs, 0, n), "MEMIF_ERR_SUCCESS",
                      "tx_burst count 0")
            assert n[0] == 0
        # enq_tx is slave-only; request_connection on a connected slave.
        n = ffi.new("uint16_t *")
        bufs = ffi.new("memif_buffer_t[1]")
        assert_rc(lib.memif_buffer_enq_tx(pair.master.conn, 0, bufs, 1, n),
                  "MEMIF_ERR_INVAL_ARG", "enq_tx on a master")
        assert_rc(lib.memif_request_connection(pair.slave.conn), "MEMIF_ERR_ALRCONN",
                  "request_connection while connected")
        # Slave refill: headroom larger than the buffer.
        assert_rc(lib.memif_refill_queue(pair.slave.conn, 0, ALL, 2049), "MEMIF_ERR_INVAL_ARG",
                  "headroom > buffer_size")
        # Everything still works.
        assert send_packets(pair.slave, queues - 1, [b"ok"]) == 1
        assert send_packets(pair.master, queues - 1, [b"ok"]) == 1


def test_enq_tx_needs_rx_buffers(tmp_path: Path) -> None:
    with connected_pair(tmp_path) as pair:
        rc, bufs, n = alloc(pair.slave.conn, 0, 2, 64)
        assert_rc(rc, "MEMIF_ERR_SUCCESS", "alloc")
        out = ffi.new("uint16_t *")
        assert_rc(lib.memif_buffer_enq_tx(pair.slave.conn, 0, bufs, n, out),
                  "MEMIF_ERR_INVAL_ARG", "enq_tx of buffers without the RX flag")
        assert out[0] == 0


# --------------------------------------------------------------------------
# memif_get_details
# --------------------------------------------------------------------------


def test_details_argument_errors(tmp_path: Path) -> None:
    with Database() as db:
        intf = Interface(db, db.socket(sock_path(tmp_path)), master=True)
        md = ffi.new("memif_details_t *")
        buf = ffi.new("char[]", 64)
        assert_rc(lib.memif_get_details(intf.conn, NULL, buf, 64), "MEMIF_ERR_INVAL_ARG",
                  "md NULL")
        assert_rc(lib.memif_get_details(intf.conn, md, buf, -1), "MEMIF_ERR_INVAL_ARG",
                  "buflen < 0")
        assert_rc(lib.memif_get_details(intf.conn, md, NULL, 10), "MEMIF_ERR_INVAL_ARG",
                  "buf NULL, buflen > 0")


@pytest.mark.parametrize("buflen", [0, 1, 10, 100])
def test_details_small_buffer(tmp_path: Path, buflen: int) -> None:
    with connected_pair(tmp_path) as pair:
        full = get_details(pair.slave.conn)
        guard = 64
        raw = ffi.new("char[]", buflen + guard)
        ffi.memmove(raw, b"\xa5" * (buflen + guard), buflen + guard)
        md = ffi.new("memif_details_t *")
        # Poison every pointer so an unset one is visible.
        ffi.memmove(md, b"\xff" * ffi.sizeof("memif_details_t"), ffi.sizeof("memif_details_t"))
        rc = lib.memif_get_details(pair.slave.conn, md, raw if buflen else NULL, buflen)
        assert_rc(rc, "MEMIF_ERR_NOBUF_DET", f"buflen {buflen}")
        assert ffi.buffer(raw + buflen, guard)[:] == b"\xa5" * guard, "wrote past buflen"
        lo = int(ffi.cast("uintptr_t", raw))
        for name in ("if_name", "inst_name", "remote_if_name", "remote_inst_name", "secret",
                     "socket_filename", "error", "regions", "rx_queues", "tx_queues"):
            p = getattr(md, name)
            if p != NULL:
                addr = int(ffi.cast("uintptr_t", p))
                assert lo <= addr <= lo + buflen, f"{name} points outside buf"
        # Scalars are filled whatever the buffer size.
        assert (md.id, md.role, md.mode, md.link_up_down) == (0, 1, 0, 1)
        assert (md.regions_num, md.rx_queues_num, md.tx_queues_num) == (
            full.regions_num, full.rx_queues_num, full.tx_queues_num)
        if buflen <= 10:
            # Nothing of 11 bytes or more fits: the interface name and the arrays.
            assert md.if_name == NULL
            assert md.regions == NULL and md.rx_queues == NULL and md.tx_queues == NULL
        if buflen == 0:
            assert md.secret == NULL and md.error == NULL


def test_details_arrays_aligned(tmp_path: Path) -> None:
    """X6 / upstream-tests §7 test_details_alignment: array addresses are multiples of 8,
    also when buf itself starts at an odd address."""
    with connected_pair(tmp_path, s2m=2, m2s=3) as pair:
        for start in range(8):
            raw = ffi.new("char[]", 8192)
            md = ffi.new("memif_details_t *")
            assert_rc(lib.memif_get_details(pair.master.conn, md, raw + start, 8192 - start),
                      "MEMIF_ERR_SUCCESS", "details")
            for name in ("regions", "rx_queues", "tx_queues"):
                addr = int(ffi.cast("uintptr_t", getattr(md, name)))
                assert addr % 8 == 0, f"{name} not 8-byte aligned (buf + {start})"
            d = details_of(md)
            assert d.rx_queues_num == 2 and d.tx_queues_num == 3


def test_details_space_needed(tmp_path: Path) -> None:
    """§8.6: strings + 7 terminators + arrays, plus at most 7 bytes of padding per array."""
    with connected_pair(tmp_path, s2m=2, m2s=3) as pair:
        md = ffi.new("memif_details_t *")
        need = None
        for size in range(1, 1024):
            raw = ffi.new("char[]", size)
            if lib.memif_get_details(pair.master.conn, md, raw, size) == 0:
                need = size
                break
        d = get_details(pair.master.conn)
        strings = sum(len((s or "").encode()) + 1 for s in (
            d.if_name, d.inst_name, d.remote_if_name, d.remote_inst_name, d.secret,
            d.socket_filename, d.error))
        arrays = 32 * 2 + 16 * 5
        assert need is not None and strings + arrays <= need <= strings + arrays + 21


def test_details_secret_empty_string(tmp_path: Path) -> None:
    with Database() as db:
        intf = Interface(db, db.socket(sock_path(tmp_path)), master=True, id=11)
        d = intf.details()
        assert d.secret == "" and d.error == "" and d.remote_if_name == ""
        assert d.remote_inst_name == "" and d.id == 11 and d.role == 0
        assert (d.regions_num, d.rx_queues_num, d.tx_queues_num) == (0, 0, 0)
        # Not connected: the arrays are empty spots inside buf, NULL only when buflen is 0.
        md = ffi.new("memif_details_t *")
        buf = ffi.new("char[]", 4096)
        assert lib.memif_get_details(intf.conn, md, buf, 4096) == 0
        lo = int(ffi.cast("uintptr_t", buf))
        for name in ("regions", "rx_queues", "tx_queues"):
            addr = int(ffi.cast("uintptr_t", getattr(md, name)))
            assert lo <= addr <= lo + 4096, name


# --------------------------------------------------------------------------
# Calls from inside callbacks
# --------------------------------------------------------------------------


def test_delete_and_cleanup_inside_callback_refused(tmp_path: Path) -> None:
    rcs: dict[str, int] = {}

    def in_connect(intf: Interface) -> None:
        rcs["delete"] = int(lib.memif_delete(intf.conn_ptr))
        rcs["cleanup"] = int(lib.memif_per_thread_cleanup(intf.db.handle_ptr))
        # Data path and details are allowed in callbacks.
        rcs["details"] = int(lib.memif_get_details(
            intf.conn, ffi.new("memif_details_t *"), ffi.new("char[]", 4096), 4096))

    with Database(b"m") as mdb, Database(b"s") as sdb:
        path = sock_path(tmp_path)
        master = Interface(mdb, mdb.socket(path), master=True, on_connect=in_connect)
        slave = Interface(sdb, sdb.socket(path), master=False)
        poll_until([mdb, sdb], lambda: master.connected and slave.connected)
        assert_rc(rcs["delete"], "MEMIF_ERR_INVAL_ARG", "delete inside on_connect")
        assert_rc(rcs["cleanup"], "MEMIF_ERR_INVAL_ARG", "cleanup inside on_connect")
        assert_rc(rcs["details"], "MEMIF_ERR_SUCCESS", "details inside on_connect")
        assert master.conn != NULL and mdb.handle != NULL
        slave.tx_capacity = 2048
        assert send_packets(slave, 0, [b"still alive"]) == 1
        rc, _bufs, n = rx_burst(master.conn, 0, 4)
        assert_rc(rc, "MEMIF_ERR_SUCCESS", "rx after refused delete")
        assert n == 1


def test_delete_inside_disconnect_callback_refused(tmp_path: Path) -> None:
    rcs: list[int] = []
    with Database(b"m") as mdb, Database(b"s") as sdb:
        path = sock_path(tmp_path)
        master = Interface(mdb, mdb.socket(path), master=True,
                           on_disconnect=lambda i: rcs.append(int(lib.memif_delete(i.conn_ptr))))
        slave = Interface(sdb, sdb.socket(path), master=False)
        poll_until([mdb, sdb], lambda: master.connected and slave.connected)
        slave.delete()
        poll_until([mdb], lambda: master.disconnects == 1)
        assert rcs == [lib.MEMIF_ERR_INVAL_ARG]
        assert master.conn != NULL
        assert get_details(master.conn).link_up_down == 0


def test_tx_burst_count_zero_and_empty_alloc(tmp_path: Path) -> None:
    with connected_pair(tmp_path) as pair:
        # size 0: one buffer per packet with len 0 (ours).
        rc, bufs, n = alloc(pair.slave.conn, 0, 3, 0)
        assert_rc(rc, "MEMIF_ERR_SUCCESS", "alloc size 0")
        assert n == 3 and all(bufs[i].len == 0 and bufs[i].data != NULL for i in range(3))
        rc, tx = tx_burst(pair.slave.conn, 0, bufs, n)
        assert_rc(rc, "MEMIF_ERR_SUCCESS", "tx")
        assert tx == 3
        rc, rbufs, rn = rx_burst(pair.master.conn, 0, 8)
        assert rn == 3 and all(rbufs[i].len == 0 for i in range(3))


def test_fd_update_failure_for_control_fd(tmp_path: Path) -> None:
    """libmemif-api §4.3: a failed registration of a new control fd closes that connection."""
    path = sock_path(tmp_path)
    with Database(b"m") as mdb, Database(b"s", external=True) as sdb:
        master = Interface(mdb, mdb.socket(path), master=True)
        sdb.fd_update_result = -1
        slave = Interface(sdb, sdb.socket(path), master=False)
        assert slave.details().error == "event registration failed"
        assert not slave.connected
        sdb.fd_update_result = 0
        assert_rc(lib.memif_request_connection(slave.conn), "MEMIF_ERR_SUCCESS", "retry")
        poll_until([mdb, sdb], lambda: master.connected and slave.connected)


def test_fd_update_failure_for_interrupt_fd(tmp_path: Path) -> None:
    path = sock_path(tmp_path)
    adds: list[int] = []

    def fail_second_add(fd: int, events: int) -> int:
        if events & lib.MEMIF_FD_EVENT_DEL:
            return 0
        adds.append(fd)
        return -1 if len(adds) == 2 else 0  # the control fd, then the rx eventfd

    with Database(b"m") as mdb, Database(b"s", external=True) as sdb:
        master = Interface(mdb, mdb.socket(path), master=True)
        sdb.fd_update_result = fail_second_add
        slave = Interface(sdb, sdb.socket(path), master=False, interrupts=True)
        poll_until([mdb, sdb], lambda: slave.details().error == "event registration failed",
                   3, "the failed registration")
        assert slave.connects == 0
        poll_until([mdb, sdb], lambda: master.connects == master.disconnects)
        assert get_details(slave.conn).link_up_down == 0
