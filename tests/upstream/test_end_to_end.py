"""Upstream-tests spec §10: end-to-end behaviours upstream never tested.

Only the behaviours that no other test in tests/ covers (fully) live here; the
map from every §10 behaviour to the test that covers it is in README.md in this
directory. References: protocol spec §7, §8, §10-§12; libmemif-api §8.7.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cprog import build_program, program_env
from lowpair import (
    BulkReceiver,
    Database,
    Interface,
    connected_pair,
    fd_readable,
    open_fds,
    poll_for,
    poll_until,
    recv_packets,
    send_packets,
)
from peers import dpdk_peer, require_dpdk
from rawpeer import DESC_FLAG_NEXT, Descriptor, Direction, RawSlave
from uphelpers import raw_slave_handshake

from memif_cffi.lowlevel import lib

ROUNDS = 10  # restarts per role (20 in all)
RESTART_DELAY = 0.12  # more than one reconnect-timer period


def _memfd_mappings() -> set[int]:
    with open("/proc/self/maps") as f:
        return {int(line.split("-", 1)[0], 16) for line in f if "/memfd:" in line}


@pytest.fixture(scope="module")
def echo_peer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_program("echo_peer", tmp_path_factory.mktemp("echo-peer"))


@contextmanager
def _echo_process(exe: Path, role: str, path: str) -> Iterator[subprocess.Popen[str]]:
    """Our echo program (tests/c/echo_peer.c) in ``role`` on ``path``; killed on exit."""
    proc = subprocess.Popen([str(exe), role, path, "1", "30"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=program_env())
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def _echo_round(ours: Interface, dbs: list[Database], tag: int) -> None:
    """Frames out, the same frames back (chains included)."""
    frames = [random.Random(tag * 100 + i).randbytes(100 + 1500 * i) for i in range(6)]
    poll_until(dbs, lambda: send_packets(ours, 0, frames[:1]) == 1, 3, "room to send")
    assert send_packets(ours, 0, frames[1:]) == len(frames) - 1
    got: list[bytes] = []
    poll_until(dbs, lambda: bool(got.extend(recv_packets(ours, 0))) or len(got) >= 6, 3,
               "the echoes")
    assert got == frames


@pytest.mark.parametrize("killed", ["master", "slave"])
def test_e2e_reconnect_after_peer_restart(tmp_path: Path, echo_peer: Path,
                                          killed: str) -> None:
    """§10: SIGKILL the peer process mid-traffic, restart it: clean teardown, fast reconnect.

    The peer is our C echo program (tests/c/echo_peer.c) in a child process. It is
    restarted after a little more than one timer period rather than the 0.5 s of
    the spec, to keep the suite fast; 10 restarts per role (20 in all), not the 500 of the
    robustness bar.
    """
    path = str(tmp_path / "restart.sock")
    period = 0.1
    with Database(b"survivor") as db:
        db.set_timer(period)
        ours = Interface(db, db.socket(path), master=killed == "slave")
        ours.tx_capacity = 2048
        fds_before = open_fds()
        maps_before = _memfd_mappings()
        for rnd in range(ROUNDS):
            with _echo_process(echo_peer, killed, path) as proc:
                took = poll_until([db], lambda r=rnd: ours.connects == r + 1, period + 1.0,
                                  f"reconnect in round {rnd}")
                assert took <= period + 1.0
                _echo_round(ours, [db], rnd)
                # Kill it while a burst is in flight.
                send_packets(ours, 0, [b"in flight %d" % i for i in range(32)])
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
            poll_until([db], lambda r=rnd: ours.disconnects == r + 1, 3, "on_disconnect")
            poll_for([db], 0.02)
            assert ours.disconnects == rnd + 1 and ours.connects == rnd + 1
            assert ours.details().error == "connection closed by peer"
            assert _memfd_mappings() == maps_before, f"round {rnd}: shared memory still mapped"
            poll_for([db], RESTART_DELAY)  # the survivor retries meanwhile (if a slave)
            assert open_fds() == fds_before, f"round {rnd}: fds leaked"
        if killed == "master":
            assert os.path.exists(path), "a killed master leaves its socket file behind"


def test_e2e_interrupt_vs_polling(tmp_path: Path) -> None:
    """§10: the same traffic in interrupt and polling mode; polling never signals."""
    total = 2000
    with connected_pair(tmp_path, s2m=2, m2s=2, interrupts=True) as pair:
        for mode in (lib.MEMIF_RX_MODE_INTERRUPT, lib.MEMIF_RX_MODE_POLLING):
            for q in range(2):
                pair.master.set_rx_mode(mode, q)
                pair.slave.set_rx_mode(mode, q)
            for tx, rx in ((pair.slave, pair.master), (pair.master, pair.slave)):
                for q in range(2):
                    efd = rx.queue_efd(q)
                    rx.interrupts.clear()
                    sent = [random.Random(q * 7 + i).randbytes(1 + i % 3000)
                            for i in range(total)]
                    got: list[bytes] = []
                    for start in range(0, total, 64):
                        assert send_packets(tx, q, sent[start:start + 64]) == len(
                            sent[start:start + 64])
                        if mode == lib.MEMIF_RX_MODE_POLLING:
                            assert not fd_readable(efd), "eventfd signalled in polling mode"
                        else:
                            assert fd_readable(efd, 1.0), "no signal in interrupt mode"
                            pair.poll_until(lambda rx=rx: bool(rx.interrupts), 2,
                                            "on_interrupt")
                        got += recv_packets(rx, q)
                    assert got == sent
                    if mode == lib.MEMIF_RX_MODE_POLLING:
                        poll_for(pair.dbs, 0.02)
                        assert rx.interrupts == []
                    else:
                        assert set(rx.interrupts) == {q}


def test_e2e_many_interfaces_one_socket(tmp_path: Path) -> None:
    """§10: one master socket with ids 0..7, eight slaves; traffic stays with its id."""
    path = str(tmp_path / "many.sock")
    ids = list(range(8))
    with Database(b"m") as mdb, Database(b"s") as sdb:
        msock, ssock = mdb.socket(path), sdb.socket(path)
        masters = {i: Interface(mdb, msock, master=True, id=i, name=b"m%d" % i) for i in ids}
        order = ids[:]
        random.Random(8).shuffle(order)
        slaves = {i: Interface(sdb, ssock, master=False, id=i, name=b"s%d" % i) for i in order}
        poll_until([mdb, sdb], lambda: all(x.connected for x in [*masters.values(),
                                                                 *slaves.values()]), 5)
        for i in ids:
            masters[i].tx_capacity = slaves[i].tx_capacity = 2048
            assert masters[i].details().remote_if_name == f"s{i}"
            assert send_packets(slaves[i], 0, [b"to master %d" % i]) == 1
            assert send_packets(masters[i], 0, [b"to slave %d" % i]) == 1
        for i in ids:
            assert recv_packets(masters[i], 0) == [b"to master %d" % i]
            assert recv_packets(slaves[i], 0) == [b"to slave %d" % i]


def test_e2e_hostile_next_forever(tmp_path: Path) -> None:
    """§10 (hostile peer): a slave setting NEXT on every descriptor for megabytes.

    Our master hands the buffers out without crashing; the bounded reassembly of
    the bulk receiver (memif_cffi_rx_copy, protocol spec §7) drops the endless
    chain as one packet, and the next normal frame arrives intact.
    """
    path = str(tmp_path / "next.sock")
    with Database(b"m") as db, RawSlave(path, log2_ring_size=8) as raw:
        master = Interface(db, db.socket(path), master=True, log2=8)
        raw_slave_handshake([db], raw)
        ring = raw.s2m[0]
        receiver = BulkReceiver(master, 0, stride=9216, max_packets=64)
        got: list[bytes] = []

        def publish(descs: list[Descriptor]) -> None:
            head = ring.head
            for i, d in enumerate(descs):
                ring.set_desc(head + i, d)
            ring.head = (head + len(descs)) & 0xFFFF
            raw._signal(ring)

        def drain() -> None:
            deadline = time.monotonic() + 3
            while ring.tail != ring.head:
                got.extend(bytes(p) for p in receiver.step())
                poll_for([db], 0)
                assert time.monotonic() < deadline, "the master stopped consuming"

        n = ring.size
        for rnd in range(20):  # 20 x 256 slots x 2048 bytes: a 10 MB "packet"
            publish([Descriptor(DESC_FLAG_NEXT, 1, 2048,
                                raw.buffer_offset(Direction.S2M, 0, ring.head + i))
                     for i in range(n)])
            drain()
            assert master.connected, f"disconnected in round {rnd}"
        assert got == []
        good = b"after the endless chain"
        slot = ring.head
        off = raw.buffer_offset(Direction.S2M, 0, slot + 1)
        raw.regions[1].write(off, good)
        publish([Descriptor(0, 1, 10, raw.buffer_offset(Direction.S2M, 0, slot)),
                 Descriptor(0, 1, len(good), off)])
        drain()
        assert got == [good]
        assert receiver.dropped == 1
        assert master.connected


def _dpdk_frame(seq: int, size: int) -> bytes:
    body = bytes((seq * 13 + k) & 0xFF for k in range(size))
    # A broadcast Ethernet header and the sequence number; testpmd echoes it unchanged.
    return (b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x02" + b"\x88\xb5" + seq.to_bytes(4, "big")
            + body)[:size]


def test_e2e_dpdk_reasons_and_traffic(tmp_path: Path) -> None:
    """§10 (DPDK interop): DPDK's rejection reasons reach our details; then traffic.

    A DPDK net_memif server (testpmd, io forwarding echoes every frame) with a
    secret rejects our slave for a wrong or missing secret, an unknown id and IP
    mode; a correct slave with log2 12 and 1500-byte buffers then exchanges
    64..9000-byte frames, every echo intact.
    """
    require_dpdk()
    path = str(tmp_path / "dpdk.sock")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"secret": b"wrong"}, "Incorrect secret"),
        ({}, "Secret required"),
        ({"secret": b"s3cret", "id": 5}, "ID not found"),
        ({"secret": b"s3cret", "mode": 1}, "Only ethernet mode supported"),
    ]
    with dpdk_peer("server", path, forward="io", secret="s3cret"), Database(b"ours") as db:
        ssock = db.socket(path)
        for kw, reason in cases:
            bad = Interface(db, ssock, master=False, **kw)
            poll_until([db], lambda b=bad, r=reason: b.details().error == r, 5,
                       f"reason {reason!r} (now {bad.details().error!r})")
            assert bad.connects == 0
            bad.delete()
        slave = Interface(db, ssock, master=False, secret=b"s3cret", log2=12, buffer_size=1500)
        slave.tx_capacity = 1500
        poll_until([db], lambda: slave.connected, 10, "connect to DPDK")
        d = slave.details()
        assert {q.ring_size for q in d.rx_queues + d.tx_queues} == {4096}
        assert d.remote_inst_name, "DPDK's HELLO name"
        sent = {seq: _dpdk_frame(seq, size) for seq, size in
                enumerate(s for s in (64, 1500, 9000) for _ in range(100))}
        order = list(sent.values())
        got: list[bytes] = []
        done = 0
        idle_since = time.monotonic()
        while done < len(order) or len(got) < len(order):
            if done < len(order):
                done += send_packets(slave, 0, order[done:done + 8])
            new = recv_packets(slave, 0)
            if new:
                got += new
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > 2:
                break
        seen: set[int] = set()
        for f in got:
            seq = int.from_bytes(f[14:18], "big")
            assert f == sent.get(seq), f"corrupted echo of frame {seq} ({len(f)} bytes)"
            assert seq not in seen, f"duplicate frame {seq}"
            seen.add(seq)
        assert done == len(order)
        assert len(seen) >= len(order) - 30, f"{len(seen)} of {len(order)} echoed"
