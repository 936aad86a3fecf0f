"""memif_cffi.lowlevel's own helpers: poll_event, callback errors, argument checks."""

from __future__ import annotations

import threading

import pytest

from memif_cffi import lowlevel
from memif_cffi.lowlevel import ConnCallbacks, check, ffi, lib, new_conn_args, poll_event


def test_poll_event_on_the_global_database_and_cancel() -> None:
    check(lib.memif_init(ffi.NULL, b"lowlevel-global", ffi.NULL, ffi.NULL, ffi.NULL))
    try:
        assert poll_event(None, 0) is True  # nothing to do: a timeout is not an error
        canceller = threading.Timer(0.05, lambda: check(lib.memif_cancel_poll_event()))
        canceller.start()
        try:
            assert poll_event(None, 5000) is False  # cancelled, not timed out
        finally:
            canceller.join()
    finally:
        check(lib.memif_cleanup())


def test_several_callback_errors_are_raised_one_by_one() -> None:
    """Errors stashed by callbacks come out oldest first, none lost."""
    cbs = ConnCallbacks(on_connect=lambda conn, ctx: 1 / 0,
                        on_disconnect=lambda conn, ctx: [][1])
    try:
        assert cbs.on_connect(ffi.NULL, cbs.private_ctx) == -1
        assert cbs.on_disconnect(ffi.NULL, cbs.private_ctx) == -1
        with pytest.raises(ZeroDivisionError):
            lowlevel.raise_pending()
        with pytest.raises(IndexError):
            check(0)
        lowlevel.raise_pending()  # nothing left
    finally:
        cbs.release()


def test_new_conn_args_checks_lengths() -> None:
    with pytest.raises(ValueError, match="secret"):
        new_conn_args(secret=b"s" * 25)
    with pytest.raises(ValueError, match="interface_name"):
        new_conn_args(interface_name=b"n" * 33)
    args = new_conn_args(secret=b"s" * 24, interface_name=b"n" * 32, mode=1)
    assert ffi.string(args.secret, 24) == b"s" * 24
    assert lowlevel.get_args_mode(args) == 1
