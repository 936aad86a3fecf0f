"""examples/icmp_responder_epoll.py: the application's own epoll loop (on_fd_update)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from exhelp import Example, Peer, assert_clean_exit, exercise_responder

import memif_cffi as memif

NAME = "icmp_responder_epoll"


@pytest.mark.parametrize("mode", ["ethernet", "ip"])
def test_answers_arp_and_pings(start_example: Callable[..., Example], sock_path: str,
                               mode: str) -> None:
    with Peer(sock_path, ip_mode=mode == "ip") as peer:
        example = start_example(NAME, "--socket", sock_path, "--mode", mode)
        peer.wait(example)
        ignored = exercise_responder(peer, sizes=(0, 56, 1400, 3000))  # 3000: chained
        rc, out, err = example.finish()
    assert_clean_exit(rc, out, err)
    arp = 0 if mode == "ip" else 1
    assert f"answered 4 pings and {arp} ARP requests, ignored {ignored}" in out


def test_master_reconnects(start_example: Callable[..., Example], sock_path: str) -> None:
    """As a master: the listener and each new connection go through our epoll."""
    example = start_example(NAME, "--role", "master", "--socket", sock_path, "--queues", "2")
    for _ in range(2):
        with Peer(sock_path, role=memif.Role.SLAVE, queues=2) as peer:
            peer.wait(example)
            exercise_responder(peer, tx_qid=1, rx_qid=1)  # replies on the request's queue
    rc, out, err = example.finish()
    assert_clean_exit(rc, out, err)
    assert out.count("connected to app 'test-peer'") == 2
    assert out.count("disconnected") == 2
    assert "answered 6 pings and 2 ARP requests" in out
