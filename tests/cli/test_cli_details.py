"""memif details: the interface details of a live connection, as a table and as JSON."""

from __future__ import annotations

import json
import re

from clihelp import ApiPeer, one_error_line, run_cli

import memif_cffi as memif


def test_details_table(sock_path: str) -> None:
    with ApiPeer(sock_path, name="peer-m0", app="details-peer-app", rx_queues=2,
                 tx_queues=2):
        res = run_cli("details", "--socket", sock_path, "--queues", "2", "--ring-size", "256",
                      "--buffer-size", "1024", "--name", "cli-s0", "--id", "0")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert re.search(r"^interface\s+cli-s0 \(id 0, slave, ethernet\)$", out, re.M), out
    assert re.search(r"^instance\s+memif_cffi$", out, re.M)
    assert re.search(r"^peer\s+peer-m0 \(details-peer-app\)$", out, re.M)
    assert re.search(rf"^socket\s+{re.escape(sock_path)}$", out, re.M)
    assert re.search(r"^link\s+up$", out, re.M)
    assert re.search(r"^last error\s+-$", out, re.M)
    queues = re.findall(r"^\s+(rx|tx)\s+(\d+)\s+(\d+)\s+256\s+1024\s", out, re.M)
    assert sorted((d, q) for d, q, _ in queues) == [
        ("rx", "0"), ("rx", "1"), ("tx", "0"), ("tx", "1")], out
    regions = re.findall(r"^\s+(\d+)\s+([\d,]+)\s+(-?\d+)\s+(yes|no)$", out, re.M)
    assert len(regions) >= 1 and all(ext == "no" for *_, ext in regions), out
    # the buffers of 4 rings x 256 slots x 1024 bytes live in some region
    assert sum(int(size.replace(",", "")) for _, size, _, _ in regions) >= 4 * 256 * 1024


def test_details_json_as_master(sock_path: str) -> None:
    with ApiPeer(sock_path, role=memif.Role.SLAVE, name="slave-peer", secret="s3cret"):
        res = run_cli("details", "--socket", sock_path, "--role", "master", "--json",
                      "--secret", "s3cret", "--id", "0", "--timeout", "5")
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["remote_if_name"] == "slave-peer"
    assert d["remote_inst_name"] == "cli-test-peer"
    assert d["if_name"] == "memif-details"
    assert (d["role"], d["mode"], d["link_up"], d["error"]) == ("master", "ethernet", True, "")
    assert d["secret"] == "s3cret"
    assert len(d["rx_queues"]) == len(d["tx_queues"]) == 1
    assert d["rx_queues"][0]["ring_size"] == 1024
    assert d["socket_filename"] == sock_path


def test_details_mode_mismatch_is_reported(sock_path: str) -> None:
    """The peer refuses the handshake: the library's reason ends the error line."""
    with ApiPeer(sock_path, mode=memif.Mode.IP):
        res = run_cli("details", "--socket", sock_path, "--timeout", "0.5")
    line = one_error_line(res, "details")
    assert line.startswith(f"memif details: error: not connected to {sock_path} after 0.5 s: ")
    assert "mode" in line.lower()
