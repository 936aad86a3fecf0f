"""examples/icmp_responder_mt.py: one thread per queue, queue 0 polled, queue 1 interrupt driven."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from exhelp import Example, Peer, assert_clean_exit, exercise_responder

NAME = "icmp_responder_mt"
RING_FLAG_MASK_INT = 1  # ring flag: "do not signal me", set by a receiver in polling mode


@pytest.mark.parametrize("mode", ["ethernet", "ip"])
def test_both_queues_answer(start_example: Callable[..., Example], sock_path: str,
                            mode: str) -> None:
    with Peer(sock_path, ip_mode=mode == "ip", queues=2) as peer:
        example = start_example(NAME, "--socket", sock_path, "--mode", mode)
        peer.wait(example)
        assert (len(peer.intf.rx), len(peer.intf.tx)) == (2, 2)
        ignored = [exercise_responder(peer, tx_qid=q, rx_qid=q) for q in (0, 1)]
        # The responder's rx queue 0 (our tx queue 0) polls: it asked not to be signalled.
        flags = [q.flags & RING_FLAG_MASK_INT for q in peer.intf.details.tx_queues]
        assert flags == [RING_FLAG_MASK_INT, 0]
        rc, out, err = example.finish()
    assert_clean_exit(rc, out, err)
    assert "2 worker threads (queue 0: polling, queue 1: interrupt)" in out
    arp = 0 if mode == "ip" else 1
    for q in (0, 1):
        assert f"queue {q}: received {3 + arp + ignored[q]} packets, answered 3 pings and " \
               f"{arp} ARP requests, ignored {ignored[q]}" in out


def test_workers_restart_after_reconnect(start_example: Callable[..., Example],
                                         sock_path: str) -> None:
    example = start_example(NAME, "--socket", sock_path, "--mode", "ip")
    for _ in range(2):
        with Peer(sock_path, ip_mode=True, queues=2) as peer:
            peer.wait(example)
            for q in (0, 1):
                exercise_responder(peer, tx_qid=q, rx_qid=q, sizes=(10,))
    rc, out, err = example.finish()
    assert_clean_exit(rc, out, err)
    assert out.count("2 worker threads") == 2
    assert "queue 0: received 6 packets, answered 2 pings" in out
    assert "queue 1: received 6 packets, answered 2 pings" in out
