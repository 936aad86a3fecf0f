"""After all of it: nothing grew.

This file runs last in its directory (pytest collects files in name order).
The first test compares the process with the snapshot the session fixture
``hostile_baseline`` took before the first hostile test: the same open fds,
the same memfd mappings, RSS within a slack that covers pytest's own
bookkeeping. The second repeats a mix of hostile cases against both roles
many times and bounds RSS growth tightly, so a small leak per connection
would show even when this file runs alone. (RSS is not bounded under
AddressSanitizer, whose allocator keeps freed memory in quarantine; fds and
mappings are.)
"""

from __future__ import annotations

import contextlib
import gc
from pathlib import Path

from hostile import (
    Descriptor,
    Side,
    Usage,
    assert_no_handle_growth,
    assert_rss_growth_below,
    publish,
    pump,
    settle,
    side_for,
    usage,
)
from rawpeer import encode_raw

import memif_cffi as memif

MIB = 1024


def test_nothing_grew_after_all_hostile_tests(hostile_baseline: Usage) -> None:
    gc.collect()
    now = assert_no_handle_growth(hostile_baseline, "over the whole hostile suite")
    assert_rss_growth_below(hostile_baseline, now, 64 * MIB, "over the whole hostile suite")


def _one_round(side: Side, n: int) -> None:
    # A data-path violation.
    peer = side.connect_peer()
    publish(peer.our_rx, peer.producer_counter, [Descriptor(0, 1, 0xFFFFFFFF, 0)])
    with contextlib.suppress(memif.DisconnectedError):
        assert side.intf.rx[0].recv_burst() == []
    side.wait_disconnected()
    assert side.error == "invalid descriptor"
    side.close_peers()
    # A control-channel violation in the middle of a handshake.
    peer = side.peer()
    peer.start()
    peer.send_raw(encode_raw(0x4242))
    assert peer.rejection() == "unknown message type"
    side.close_peers()
    # A good peer, traffic, a clean goodbye.
    peer = side.connect_peer()
    side.roundtrip(peer, n.to_bytes(4, "little") * 100)
    peer.close("round over")
    side.peers.remove(peer)
    side.wait_disconnected()


def test_repeated_hostile_cases_keep_memory_flat(tmp_path: Path) -> None:
    rounds, warmup = 1000, 20
    for role in ("master", "slave"):
        with side_for(role, tmp_path) as side:
            for n in range(warmup):
                _one_round(side, n)
            settle(side.ctx, 0.01)
            gc.collect()
            before = usage()
            for n in range(rounds):
                _one_round(side, n)
            settle(side.ctx, 0.01)
            gc.collect()
            after = assert_no_handle_growth(before, f"over {rounds} rounds, our side {role}")
            assert_rss_growth_below(before, after, 2 * MIB, f"over {rounds} rounds, {role}")
            pump(side.ctx, lambda: not side.intf.connected)
