"""Plumbing shared by the example programs: options, interface set-up, stopping, errors.

The examples are run as scripts (``python examples/icmp_responder.py``), so
this module sits next to them and is imported as ``_common``.
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

if importlib.util.find_spec("memif_cffi") is None:
    # Run from a source checkout without installing: use the package beside us.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import memif_cffi as memif
from memif_cffi import packets

#: VPP's default memif socket, used by the C examples too.
DEFAULT_SOCKET = "/run/vpp/memif.sock"

ROLES = {"slave": memif.Role.SLAVE, "master": memif.Role.MASTER}
MODES = {"ethernet": memif.Mode.ETHERNET, "ip": memif.Mode.IP}


class ExampleError(Exception):
    """A failure worth one line on stderr (no traceback)."""


def positive(text: str) -> int:
    """argparse type: an int >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def power_of_two(text: str) -> int:
    """argparse type: a power of two from 2 to 16384 (a ring size)."""
    value = int(text)
    if not 2 <= value <= 16384 or value & (value - 1):
        raise argparse.ArgumentTypeError(f"must be a power of two from 2 to 16384, not {value}")
    return value


def not_negative(text: str) -> float:
    """argparse type: a number >= 0."""
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def make_parser(description: str | None, *, role: bool = True, queues: int | str = 1,
                socket: str = DEFAULT_SOCKET) -> argparse.ArgumentParser:
    """A parser with the interface options every example takes.

    ``queues`` is the default queue count, or a text describing how the
    program picks it (the option then defaults to None).
    """
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_argument_group("memif interface")
    group.add_argument("--socket", default=socket, metavar="PATH",
                       help=f"control socket: a path, or @name for an abstract one "
                            f"(default {socket})")
    if role:
        group.add_argument("--role", choices=sorted(ROLES), default="slave",
                           help="slave connects to the socket, master listens on it "
                                "(default slave)")
    group.add_argument("--id", type=int, default=0, help="interface id (default 0)")
    group.add_argument("--secret", default=None, help="shared secret (default none)")
    group.add_argument("--mode", choices=sorted(MODES), default="ethernet",
                       help="ethernet frames, or bare IP packets (default ethernet)")
    group.add_argument("--queues", type=positive,
                       default=queues if isinstance(queues, int) else None,
                       help=f"rx and tx queues (default {queues})")
    group.add_argument("--ring-size", type=power_of_two, default=1024,
                       help="slots per ring, a power of two (default 1024)")
    group.add_argument("--buffer-size", type=positive, default=2048,
                       help="bytes per buffer (default 2048)")
    return parser


def add_responder_options(parser: argparse.ArgumentParser) -> None:
    """--ip, --mac, and the options that make a responder stop by itself."""
    group = parser.add_argument_group("responder")
    group.add_argument("--ip", default=packets.DEFAULT_IP,
                       help=f"our IPv4 address (default {packets.DEFAULT_IP})")
    group.add_argument("--mac", default=packets.DEFAULT_MAC,
                       help=f"our MAC address (default {packets.DEFAULT_MAC})")
    group.add_argument("--count", type=int, default=0, metavar="N",
                       help="exit after answering N pings (default 0: run until Ctrl+C)")
    group.add_argument("--duration", type=not_negative, default=0.0, metavar="SECONDS",
                       help="exit after this many seconds (default 0: run until Ctrl+C)")


def make_responder(parser: argparse.ArgumentParser, args: argparse.Namespace) -> packets.Responder:
    """The Responder for --ip/--mac/--mode (a bad address is a usage error)."""
    try:
        return packets.Responder(args.ip, args.mac, ip_mode=args.mode == "ip")
    except ValueError as exc:
        parser.error(str(exc))


def open_interface(ctx: memif.Context, args: argparse.Namespace, *, name: str,
                   role: memif.Role | None = None, **callbacks: Any) -> memif.Interface:
    """A socket and an interface configured from the common options."""
    role = role if role is not None else ROLES[args.role]
    try:
        sock = ctx.socket(args.socket)
        return ctx.interface(
            sock, role=role, id=args.id, name=name, secret=args.secret, mode=MODES[args.mode],
            rx_queues=args.queues, tx_queues=args.queues, ring_size=args.ring_size,
            buffer_size=args.buffer_size, **callbacks,
        )
    except memif.MemifError as exc:
        raise ExampleError(f"cannot create the {role.name.lower()} interface on "
                           f"{args.socket!r}: {error_text(exc)}") from None
    except ValueError as exc:
        raise ExampleError(str(exc)) from None


def error_text(exc: memif.MemifError) -> str:
    """The library's description of ``exc``, with the caller's detail if any."""
    if exc.message:
        return f"{exc.message} ({exc.strerror})"
    return str(exc.strerror)


def describe_peer(intf: memif.Interface) -> str:
    """``app 'vpp', interface 'memif0', 1 rx / 1 tx queues`` for the status lines."""
    try:
        d = intf.details
    except memif.MemifError:
        return "the peer"
    return (f"app {d.remote_inst_name!r}, interface {d.remote_if_name!r}, "
            f"{len(intf.rx)} rx / {len(intf.tx)} tx queues")


def summary(responder: packets.Responder, received: int, dropped: int) -> str:
    """The counters a responder prints when it exits."""
    return (f"received {received} packets, answered {responder.icmp_replies} pings and "
            f"{responder.arp_replies} ARP requests, ignored {responder.ignored}, "
            f"dropped {dropped} replies (tx ring full)")


class ConnectionWatch:
    """Says why an interface does not connect (``details.error``), once per new reason."""

    def __init__(self, prog: str, intf: memif.Interface) -> None:
        self.prog = prog
        self.intf = intf
        self.last = ""

    def check(self) -> None:
        """Call from the main loop: prints a line when the reason changes."""
        if self.intf.connected or self.intf.closed:
            self.last = ""
            return
        reason = self.intf.details.error
        if reason and reason != self.last:
            say(self.prog, f"not connected: {reason}")
        self.last = reason


def say(prog: str, text: str) -> None:
    """One status line on stdout (flushed: the examples often run under pipes)."""
    print(f"{prog}: {text}", flush=True)


class Stopper:
    """Turns SIGINT/SIGTERM (and --count/--duration) into a flag the loops look at.

    The handler only sets an event: loops wake up within their poll timeout
    and then close everything normally.
    """

    def __init__(self, duration: float = 0.0) -> None:
        self.event = threading.Event()
        self.deadline = time.monotonic() + duration if duration > 0 else None
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()

    def set(self) -> None:
        """Ask every loop to stop."""
        self.event.set()

    def is_set(self) -> bool:
        """True once stopping was asked for or the --duration is over."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.event.set()
        return self.event.is_set()

    def stop_soon(self, delay: float) -> None:
        """Stop ``delay`` seconds from now (time for the peer to take the last replies)."""
        when = time.monotonic() + delay
        if self.deadline is None or when < self.deadline:
            self.deadline = when

    def timeout(self, step: float) -> float:
        """``step``, shortened so a loop waiting that long does not overrun the deadline."""
        if self.deadline is None:
            return step
        return max(0.0, min(step, self.deadline - time.monotonic()))


def run(prog: str, main: Callable[[], int]) -> NoReturn:
    """Run ``main`` and exit with its status; failures become one line on stderr."""
    try:
        status = main()
    except ExampleError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        status = 1
    except memif.MemifError as exc:
        print(f"{prog}: error: {error_text(exc)}", file=sys.stderr)
        status = 1
    except (OSError, TimeoutError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:  # before the handlers were installed
        status = 0
    sys.exit(status)
