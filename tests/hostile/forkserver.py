"""Fork server for the SIGKILL fault test (run as a script, not collected by pytest).

It imports memif_cffi once, then forks one child per ``spawn`` command, so a
child costs a fork of this small process instead of a Python start-up. Each
child runs one side of a memif connection with the Pythonic API and floods
packets until it is killed.

Commands on stdin, one per line; answers on stdout, one per line:

``spawn <role> <path> <seed>``
    fork a child playing ``role`` (``master`` listens on ``path``,
    ``slave`` connects to it); once its interface exists the child
    prints ``ready <pid>``.
``reap <pid>``
    wait for that child; prints ``reaped <pid> <wait status>``.

End of input: the server kills its remaining children and exits.
"""

from __future__ import annotations

import os
import random
import signal
import sys

import memif_cffi as memif

RING_SIZE = 256


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())  # one write: lines of several processes never mix


def child(role: str, path: str, seed: int) -> None:
    rng = random.Random(seed)
    ctx = memif.Context(f"flood-{role}")
    ctx.set_reconnect_interval(0.05)
    intf = ctx.interface(
        ctx.socket(path), role=memif.Role.MASTER if role == "master" else memif.Role.SLAVE,
        name=f"flood-{role}", ring_size=RING_SIZE)
    say(f"ready {os.getpid()}")
    batch = memif.PacketBatch(64, 2048)
    for i in range(batch.capacity):
        batch.append(bytes([i]) * rng.choice((60, 64, 128, 1500, 2048)))
    buf = batch.buffer
    seq = 0
    while True:  # until SIGKILL
        ctx.poll(0 if intf.connected else 0.005)
        if not intf.connected:
            continue
        try:
            for i in range(batch.count):
                buf[i * batch.stride] = seq & 0xFF
                seq += 1
            intf.tx[0].send_batch(batch)
            intf.rx[0].recv_burst(256)  # whatever the other side sends back
        except memif.MemifError:
            pass  # disconnected between two calls


def main() -> None:
    children: set[int] = set()
    try:
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == "spawn":
                role, path, seed = words[1], words[2], int(words[3])
                pid = os.fork()
                if pid == 0:
                    try:
                        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
                        child(role, path, seed)
                    finally:
                        os._exit(3)
                children.add(pid)
            elif words[0] == "reap":
                pid = int(words[1])
                _, status = os.waitpid(pid, 0)
                children.discard(pid)
                say(f"reaped {pid} {status}")
            else:
                say(f"error unknown command {words[0]!r}")
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass


if __name__ == "__main__":
    main()
