"""examples/icmp_responder.py: library-managed polling, optional transmit queue id."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from exhelp import Example, Peer, assert_clean_exit, exercise_responder, run_to_end

import memif_cffi as memif

NAME = "icmp_responder"


@pytest.mark.parametrize("mode", ["ethernet", "ip"])
def test_answers_arp_and_pings(start_example: Callable[..., Example], sock_path: str,
                               mode: str) -> None:
    with Peer(sock_path, ip_mode=mode == "ip") as peer:
        example = start_example(NAME, "--socket", sock_path, "--mode", mode)
        peer.wait(example)
        ignored = exercise_responder(peer)
        rc, out, err = example.finish()
    assert_clean_exit(rc, out, err)
    arp = 0 if mode == "ip" else 1
    assert "connected to app 'test-peer', interface 'peer0'" in out
    assert f"answered 3 pings and {arp} ARP requests, ignored {ignored}" in out
    assert "disconnected" in out


def test_transmit_queue_argument(start_example: Callable[..., Example], sock_path: str) -> None:
    """``icmp_responder.py 1``: requests on queue 0, replies on queue 1."""
    with Peer(sock_path, queues=2) as peer:
        example = start_example(NAME, "1", "--socket", sock_path)
        peer.wait(example)
        assert len(peer.intf.rx) == 2  # the responder asked for 2 queues by itself
        exercise_responder(peer, tx_qid=0, rx_qid=1)
        assert peer.quiet(0) == []
        rc, out, err = example.finish()
    assert_clean_exit(rc, out, err)
    assert "replies on tx queue 1" in out


def test_transmit_queue_needs_enough_queues() -> None:
    rc, out, err = run_to_end(NAME, "2", "--queues", "2")
    assert rc == 2
    assert out == ""
    assert "transmit queue 2 needs --queues 3 or more" in err
    assert "Traceback" not in err


def test_master_role_and_count(start_example: Callable[..., Example], sock_path: str) -> None:
    """As a master with --count 3, it exits by itself after answering 3 pings."""
    example = start_example(NAME, "--role", "master", "--socket", sock_path, "--count", "3")
    with Peer(sock_path, role=memif.Role.SLAVE) as peer:
        peer.wait(example)
        exercise_responder(peer)
        rc, out, err = example.finish(sig=None)
    assert_clean_exit(rc, out, err)
    assert "master on" in out and "answered 3 pings" in out


def test_ctrl_c_while_waiting(start_example: Callable[..., Example], abstract_sock: str) -> None:
    """SIGINT with no peer at all: clean exit, counters printed."""
    example = start_example(NAME, "--socket", abstract_sock)
    example.wait_for("waiting for the peer")  # the signal handlers are installed by then
    rc, out, err = example.finish()
    assert_clean_exit(rc, out, err)
    assert "received 0 packets, answered 0 pings" in out
