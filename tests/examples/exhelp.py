"""Helpers for the example-program tests: run an example, and a peer to talk to it."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import memif_cffi as memif
from memif_cffi import packets

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ALL_EXAMPLES = ["icmp_responder", "icmp_responder_epoll", "icmp_responder_mt",
                "icmp_responder_zero_copy", "loopback", "test_app"]
PEER_IP = "192.168.1.1"
OTHER_IP = "192.168.1.77"
IDENT = 0x4D31


class Example:
    """An example program running in a child process (stdout/stderr captured)."""

    def __init__(self, name: str, *args: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / f"{name}.py"), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
        )
        self.early = b""  # stdout read by wait_for()

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_for(self, text: str, timeout: float = 10.0) -> None:
        """Read stdout until ``text`` appears (it stays part of finish()'s output)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while text.encode() not in self.early:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name} did not print {text!r}: {self.early!r}")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    rc, out, err = self.finish(None)
                    raise AssertionError(f"{self.name} exited ({rc}):\n{out}\n{err}")
                self.early += chunk

    def finish(self, sig: int | None = signal.SIGINT,
               timeout: float = 10.0) -> tuple[int, str, str]:
        """Send ``sig`` (None: just wait), then collect exit status and output."""
        if sig is not None and self.running():
            self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=timeout)
        early, self.early = self.early, b""
        return self.proc.returncode, (early + out).decode(), err.decode()

    def kill(self) -> None:
        if self.running():
            self.proc.kill()
        self.proc.communicate(timeout=10)


def run_to_end(name: str, *args: str, timeout: float = 20.0,
               cwd: str | None = None) -> tuple[int, str, str]:
    """Run an example that ends by itself."""
    proc = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), *args],
                          capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd)
    return proc.returncode, proc.stdout, proc.stderr


def assert_clean_exit(rc: int, out: str, err: str) -> None:
    assert rc == 0, f"exit status {rc}\nstdout:\n{out}\nstderr:\n{err}"
    assert "Traceback" not in err, err
    assert err == "", err


class Peer:
    """The test's end of the link: one interface in its own Context."""

    def __init__(self, path: str, *, role: memif.Role = memif.Role.MASTER, ip_mode: bool = False,
                 queues: int = 1, buffer_size: int = 2048) -> None:
        self.ip_mode = ip_mode
        self.ctx = memif.Context("test-peer", reconnect_interval=0.05)
        self.intf = self.ctx.interface(
            self.ctx.socket(path), role=role, name="peer0",
            mode=memif.Mode.IP if ip_mode else memif.Mode.ETHERNET,
            rx_queues=queues, tx_queues=queues, buffer_size=buffer_size,
        )

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.ctx.close()

    def wait(self, example: Example | None = None, timeout: float = 10.0) -> None:
        """Until connected; fails early with the example's output if it died."""
        deadline = time.monotonic() + timeout
        while not self.intf.connected:
            if example is not None and not example.running():
                rc, out, err = example.finish(None)
                raise AssertionError(f"{example.name} exited ({rc}):\n{out}\n{err}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"not connected: {self.intf.details.error}")
            self.ctx.poll(0.02)

    def send(self, frame: bytes, qid: int = 0, timeout: float = 5.0) -> None:
        """Send one frame, waiting while the ring has no room (e.g. right after connect)."""
        deadline = time.monotonic() + timeout
        while not self.intf.tx[qid].send(frame):
            if time.monotonic() > deadline:
                raise TimeoutError(f"tx queue {qid} stayed full")
            self.ctx.poll(0.005)

    def collect(self, qid: int, want: int, timeout: float = 5.0) -> list[bytes]:
        """Receive ``want`` frames on rx queue ``qid``."""
        got: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(got) < want:
            if time.monotonic() > deadline:
                raise TimeoutError(f"received {len(got)} of {want} frames on rx queue {qid}")
            got += self.intf.rx[qid].recv_burst()
            self.ctx.poll(0.005)
        return got

    def quiet(self, qid: int, seconds: float = 0.15) -> list[bytes]:
        """Whatever else arrives on rx queue ``qid`` within ``seconds``."""
        got: list[bytes] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            got += self.intf.rx[qid].recv_burst()
            self.ctx.poll(0.01)
        return got

    def ping(self, seq: int, payload: bytes, *, dst_ip: str = packets.DEFAULT_IP) -> bytes:
        return packets.echo_request(src_ip=PEER_IP, dst_ip=dst_ip, ident=IDENT, seq=seq,
                                    payload=payload, dst_mac=packets.DEFAULT_MAC, ttl=5,
                                    ip_mode=self.ip_mode)


def payload_for(seq: int, size: int) -> bytes:
    return bytes((seq * 7 + i) & 0xFF for i in range(size))


def exercise_responder(peer: Peer, *, tx_qid: int = 0, rx_qid: int = 0,
                       sizes: tuple[int, ...] = (0, 56, 1400)) -> int:
    """ARP (Ethernet mode), pings of ``sizes``, and frames that must stay unanswered.

    Sends on ``tx_qid``, expects every reply on ``rx_qid``, checks each reply.
    Returns how many frames were sent that must be ignored.
    """
    ignored = 0
    if not peer.ip_mode:
        peer.send(packets.arp_request(src_mac=packets.DEFAULT_PEER_MAC, src_ip=PEER_IP,
                                      dst_ip=packets.DEFAULT_IP), tx_qid)
        (arp,) = peer.collect(rx_qid, 1)
        assert packets.parse_arp_reply(arp) == (packets.DEFAULT_IP, packets.DEFAULT_MAC)
        assert arp[:6] == packets.mac_bytes(packets.DEFAULT_PEER_MAC)
    # Not for the responder: another address, and noise.
    peer.send(peer.ping(999, b"nobody", dst_ip=OTHER_IP), tx_qid)
    peer.send(b"\x45\x00garbage", tx_qid)
    ignored += 2
    for seq, size in enumerate(sizes):
        peer.send(peer.ping(seq, payload_for(seq, size)), tx_qid)
    replies = peer.collect(rx_qid, len(sizes))
    for seq, (size, frame) in enumerate(zip(sizes, replies, strict=True)):
        reply = packets.parse_echo_reply(frame, ip_mode=peer.ip_mode)  # checks both checksums
        assert reply is not None, frame.hex()
        assert reply == packets.EchoReply(src_ip=packets.DEFAULT_IP, dst_ip=PEER_IP,
                                          ident=IDENT, seq=seq, payload=payload_for(seq, size),
                                          ttl=64)
        if not peer.ip_mode:
            assert frame[:6] == packets.mac_bytes(packets.DEFAULT_PEER_MAC)
            assert frame[6:12] == packets.mac_bytes(packets.DEFAULT_MAC)
    assert peer.quiet(rx_qid) == []  # nothing for the ignored frames
    return ignored
