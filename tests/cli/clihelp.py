"""Helpers for the command-line tests: run ``python -m memif_cffi`` and make peers for it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import memif_cffi as memif

ROOT = Path(__file__).resolve().parents[2]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.pop("MEMIF_CLI_DEBUG", None)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "memif_cffi", *args]


def run_cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run the command to completion; stdout and stderr captured as text."""
    return subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=cli_env())


def abstract_name() -> str:
    return f"@memif-cffi-test-{uuid.uuid4().hex[:12]}"


def _default_sigint() -> None:
    """In the child: take Ctrl+C even when the tests run as a background job.

    A shell starts background jobs with SIGINT ignored, and Python then keeps
    it ignored; the tests send SIGINT to check the Ctrl+C behaviour.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class CliProcess:
    """A running ``memif`` command; its output lines are collected by threads."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(cli_command(*args), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=ROOT, env=cli_env(),
                                     preexec_fn=_default_sigint)
        self.out: list[str] = []
        self.err: list[str] = []
        self._cond = threading.Condition()
        self._threads = [threading.Thread(target=self._read, args=(s, lines), daemon=True)
                         for s, lines in ((self.proc.stdout, self.out),
                                          (self.proc.stderr, self.err))]
        for t in self._threads:
            t.start()

    def _read(self, stream: Any, lines: list[str]) -> None:
        for line in stream:
            with self._cond:
                lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, text: str, timeout: float = 10.0, *, stderr: bool = False,
                  nth: int = 1) -> str:
        """Wait for the ``nth`` output line containing ``text``."""
        lines = self.err if stderr else self.out
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [line for line in lines if text in line]
                if len(found) >= nth:
                    return found[nth - 1]
                if self.proc.poll() is not None and not any(t.is_alive() for t in self._threads):
                    raise AssertionError(f"process ended before {text!r}:\n{self.dump()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{text!r} not printed within {timeout} s:\n{self.dump()}")
                self._cond.wait(min(remaining, 0.1))

    def wait(self, timeout: float = 15.0) -> int:
        rc = self.proc.wait(timeout)
        for t in self._threads:
            t.join(5)
        return rc

    def interrupt(self, sig: int = signal.SIGINT) -> int:
        """Send ``sig`` and wait for the exit status."""
        self.proc.send_signal(sig)
        return self.wait()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for t in self._threads:
            t.join(5)

    @property
    def stdout(self) -> str:
        with self._cond:
            return "\n".join(self.out)

    @property
    def stderr(self) -> str:
        with self._cond:
            return "\n".join(self.err)

    def dump(self) -> str:
        return f"--- stdout\n{chr(10).join(self.out)}\n--- stderr\n{chr(10).join(self.err)}"


@contextmanager
def cli_process(*args: str) -> Iterator[CliProcess]:
    """Start the command; it is always ended (killed if still running) afterwards."""
    proc = CliProcess(*args)
    try:
        yield proc
    finally:
        proc.kill()


class ApiPeer:
    """A memif interface made with the Pythonic API and served by a thread.

    Every frame received is recorded in :attr:`frames` as ``(qid, bytes)``;
    ``on_frame(qid, frame)`` may return a frame to send back on the same queue.
    Frames queued with :meth:`send` go out from the thread (one thread per
    queue), retried until the ring takes them.
    """

    def __init__(self, path: str, *, role: memif.Role = memif.Role.MASTER,
                 name: str = "peer0", app: str = "cli-test-peer",
                 on_frame: Callable[[int, bytes], bytes | None] | None = None,
                 **kwargs: Any) -> None:
        self.frames: list[tuple[int, bytes]] = []
        self.connects = 0
        self._on_frame = on_frame
        self._outbox: list[tuple[int, bytes]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self.error: BaseException | None = None
        self.ctx = memif.Context(app, reconnect_interval=0.1)
        self.intf = self.ctx.interface(self.ctx.socket(path), role=role, name=name, **kwargs)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.ctx.poll(0.005)
                intf = self.intf
                if not intf.connected:
                    self._connected.clear()
                    continue
                if not self._connected.is_set():
                    self.connects += 1
                    self._connected.set()
                for rxq in intf.rx:
                    for frame in rxq.recv_burst(256):
                        with self._lock:
                            self.frames.append((rxq.qid, frame))
                        if self._on_frame is not None:
                            reply = self._on_frame(rxq.qid, frame)
                            if reply is not None:
                                with self._lock:
                                    self._outbox.append((rxq.qid, reply))
                with self._lock:
                    pending, self._outbox = self._outbox, []
                for i, (qid, frame) in enumerate(pending):
                    if not intf.tx[qid].send(frame):
                        with self._lock:
                            self._outbox[:0] = pending[i:]
                        break
        except BaseException as exc:
            self.error = exc

    def wait_connected(self, timeout: float = 10.0) -> None:
        if not self._connected.wait(timeout):
            raise AssertionError(f"the test peer did not connect: {self.intf.details.error}")

    def send(self, frames: list[bytes], qid: int = 0) -> None:
        with self._lock:
            self._outbox.extend((qid, f) for f in frames)

    def received(self) -> list[tuple[int, bytes]]:
        with self._lock:
            return list(self.frames)

    def wait_frames(self, count: int, timeout: float = 10.0) -> list[tuple[int, bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.frames) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.frames)} of {count} frames received")
            time.sleep(0.01)
        return self.received()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.ctx.close()
        if self.error is not None:
            raise self.error

    def __enter__(self) -> ApiPeer:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def one_error_line(res: subprocess.CompletedProcess[str], command: str) -> str:
    """The failure contract: one ``memif <command>: error: ...`` line on stderr, no traceback.

    Commands that report their progress on stderr (capture, bench) may have
    printed status lines before it: the error line is the last line.
    """
    assert res.returncode != 0, res
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout, res.stderr
    lines = res.stderr.strip().splitlines()
    errors = [line for line in lines if "error" in line]
    assert len(errors) == 1 and errors[0] == lines[-1], res.stderr
    assert lines[-1].startswith(f"memif {command}: error: "), lines[-1]
    return lines[-1]
