"""examples/icmp_responder_zero_copy.py: replies rewritten in place and forwarded."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from exhelp import (
    IDENT,
    Example,
    Peer,
    assert_clean_exit,
    exercise_responder,
    payload_for,
    run_to_end,
)

from memif_cffi import packets

NAME = "icmp_responder_zero_copy"


@pytest.mark.parametrize("mode", ["ethernet", "ip"])
def test_answers_in_place(start_example: Callable[..., Example], sock_path: str,
                          mode: str) -> None:
    with Peer(sock_path, ip_mode=mode == "ip") as peer:
        example = start_example(NAME, "--socket", sock_path, "--mode", mode)
        peer.wait(example)
        # 3000 bytes do not fit one 2048-byte buffer: that one is chained, answered by copy.
        ignored = exercise_responder(peer, sizes=(0, 56, 1400, 3000))
        rc, out, err = example.finish()
    assert_clean_exit(rc, out, err)
    arp = 0 if mode == "ip" else 1
    assert f"answered 4 pings and {arp} ARP requests, ignored {ignored}" in out
    assert f"{3 + arp} replies sent in the request's own buffer, 1 copied" in out


def test_many_bursts_through_small_rings(start_example: Callable[..., Example],
                                         sock_path: str) -> None:
    """Buffers swapped between rx and tx rings keep working over many ring turns."""
    total = 1500
    with Peer(sock_path, ip_mode=True) as peer:
        example = start_example(NAME, "--socket", sock_path, "--mode", "ip",
                                "--ring-size", "64", "--buffer-size", "256")
        peer.wait(example)
        replies: list[bytes] = []
        for start in range(0, total, 32):
            for seq in range(start, min(start + 32, total)):
                peer.send(peer.ping(seq, payload_for(seq, 100)))
            replies += peer.collect(0, min(start + 32, total) - len(replies))
        for seq, frame in enumerate(replies):
            reply = packets.parse_echo_reply(frame, ip_mode=True)
            assert reply is not None and (reply.ident, reply.seq) == (IDENT, seq)
            assert reply.payload == payload_for(seq, 100)
        rc, out, err = example.finish()
    assert_clean_exit(rc, out, err)
    assert f"{total} replies sent in the request's own buffer, 0 copied" in out


def test_master_role_is_refused() -> None:
    rc, out, err = run_to_end(NAME, "--role", "master", "--socket", "@unused")
    assert rc == 2
    assert out == ""
    assert err.strip().splitlines()[-1].endswith("zero-copy replies need --role slave: "
                                                 "a master's buffers belong to its peer")
    assert "Traceback" not in err
