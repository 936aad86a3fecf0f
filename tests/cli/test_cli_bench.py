"""memif bench: with its own peer process, between two CLI processes, against DPDK testpmd."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from clihelp import cli_process, one_error_line, run_cli

TABLE_ROW = re.compile(r"^(sent|received)\s+([\d,]+)\s+([\d,]+)\s+(\d+\.\d{3})$")


def number(text: str) -> int:
    return int(text.replace(",", ""))


def check_consistent(d: dict[str, object], direction: str, size: int) -> None:
    """The JSON report of a bench whose two ends were both ours."""
    assert d["direction"] == direction and d["size"] == size
    assert d["stopped"] == "time"
    sent, received = d["sent"], d["received"]
    assert isinstance(sent, int) and isinstance(received, int)
    assert received > 0
    assert d["dropped"] == sent - received == 0
    assert d["sent_bytes"] == sent * size and d["received_bytes"] == received * size
    duration = d["duration"]
    assert isinstance(duration, float) and 0.4 <= duration < 2.0
    assert d["pps"] == pytest.approx(received / duration)
    assert d["gbps"] == pytest.approx(received * size * 8 / duration / 1e9)
    assert isinstance(d["ring_full"], int) and d["ring_full"] >= 0


def test_spawned_peer_tx_json() -> None:
    res = run_cli("bench", "--duration", "0.5", "--size", "100", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    d = json.loads(res.stdout)
    check_consistent(d, "tx", 100)
    assert d["peer"] == "spawned process (master) on a private socket"
    assert res.stderr == ""  # no progress line when stderr is not a terminal


def test_spawned_peer_rx_table_chained_frames_two_queues() -> None:
    """The peer floods 3000-byte frames (two 2048-byte buffers each) on two queues."""
    res = run_cli("bench", "--direction", "rx", "--duration", "0.8", "--size", "3000",
                  "--queues", "2", "--role", "master", "--burst", "64", "--progress")
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == ("memif bench: rx, 3000-byte frames, burst 64, 2 queues, ring 1024, "
                        "buffers 2048 B, ethernet")
    assert lines[1] == "peer: spawned process (slave) on a private socket"
    rows = {m.group(1): m for m in map(TABLE_ROW.match, lines) if m}
    assert set(rows) == {"sent", "received"}, res.stdout
    sent, received = number(rows["sent"].group(2)), number(rows["received"].group(2))
    assert sent == received > 0
    m = re.search(r"^duration\s+(\d+\.\d+) s$", res.stdout, re.M)
    assert m, res.stdout
    duration = float(m.group(1))
    assert 0.7 <= duration < 2.0
    pps = number(rows["received"].group(3))
    assert pps == pytest.approx(received / duration, rel=0.005)
    assert float(rows["received"].group(4)) == pytest.approx(
        received * 3000 * 8 / duration / 1e9, rel=0.005, abs=0.002)  # duration is rounded
    assert re.search(r"^dropped\s+0$", res.stdout, re.M)
    assert re.search(r"^ring full\s+[\d,]+\s+\(sender retries", res.stdout, re.M)
    # --progress: the live line on stderr (its carriage returns read as newlines here)
    assert re.search(r"^receiving\s+0\.5 s\s+[\d,]+ pps\s+[\d.]+ Gbit/s\s+[\d,]+ packets$",
                     res.stderr, re.M), res.stderr


def test_sink_and_flood_processes(sock_path: str) -> None:
    with cli_process("bench", "--sink", "--role", "master", "--socket", sock_path,
                     "--duration", "0", "--json") as sink:
        sink.wait_line("listening on", stderr=True)
        res = run_cli("bench", "--flood", "--socket", sock_path, "--duration", "0.5",
                      "--json", "--size", "200", "--ring-size", "256")
        assert res.returncode == 0, res.stdout + res.stderr
        assert sink.wait() == 0, sink.dump()
        sunk = json.loads(sink.stdout)
    flood = json.loads(res.stdout)
    assert flood["direction"] == "tx" and flood["received"] is None
    assert flood["peer"].startswith("external, peer memif-bench (memif_cffi) on ")
    assert sunk["direction"] == "rx" and sunk["sent"] is None
    assert sunk["stopped"] == "peer disconnected"
    assert sunk["dropped"] == 0
    assert sunk["received_bytes"] == sunk["received"] * 200
    # What was still in the ring when the flooder left may be lost, nothing else.
    assert flood["sent"] - 256 <= sunk["received"] <= flood["sent"]
    assert flood["sent"] > 0


def test_spawned_peer_needs_a_duration() -> None:
    res = run_cli("bench", "--duration", "0")
    assert "--duration must be > 0 with a spawned peer" in one_error_line(res, "bench")
    assert res.returncode == 2


def test_spawned_peer_too_slow_is_one_error_line() -> None:
    """Neither side can connect within 1 ms: the child is ended, the failure is one line."""
    res = run_cli("bench", "--timeout", "0.001", "--duration", "0.5")
    line = one_error_line(res, "bench")
    assert res.returncode == 1
    assert "within 0.001 s" in line or "after 0.001 s" in line, line


def test_external_peer_wrong_secret_times_out(sock_path: str) -> None:
    with cli_process("bench", "--sink", "--role", "master", "--socket", sock_path,
                     "--secret", "right") as sink:
        sink.wait_line("listening on", stderr=True)
        res = run_cli("bench", "--flood", "--socket", sock_path, "--secret", "wrong",
                      "--timeout", "0.5")
    line = one_error_line(res, "bench")
    assert "not connected to" in line and "secret" in line.lower()


def dpdk_socket(tmp_path: Path) -> str:
    return str(tmp_path / "dpdk.sock")


def test_against_dpdk_testpmd(tmp_path: Path) -> None:
    """testpmd as the sink (rxonly) and as the source (txonly) of an external-peer bench.

    (testpmd's own counters cannot be compared: they read 0 once the peer has
    gone, and its stats lines are starved while it forwards.)
    """
    from peers import dpdk_peer

    sock = dpdk_socket(tmp_path)
    with dpdk_peer("server", sock, forward="rxonly") as peer:
        res = run_cli("bench", "--external-peer", "--socket", sock, "--duration", "0.5",
                      "--json")
        assert res.returncode == 0, res.stdout + res.stderr
        peer.wait_for("Remote interface memif-bench connected", 5)
    d = json.loads(res.stdout)
    assert d["sent"] > 0 and d["stopped"] == "time"
    assert d["sent_bytes"] == d["sent"] * 64
    assert d["peer"].startswith("external, peer net_memif0 (DPDK ")
    with dpdk_peer("server", sock, forward="txonly", pkt_len=128):
        res = run_cli("bench", "--external-peer", "--direction", "rx", "--socket", sock,
                      "--duration", "0.5", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    d = json.loads(res.stdout)
    assert d["received"] > 0 and d["dropped"] == 0
    assert d["received_bytes"] == d["received"] * 128  # testpmd's frames, whole
    assert d["stopped"] == "time"
