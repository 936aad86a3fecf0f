"""The ``memif`` command (``python -m memif_cffi``): memif tools for the shell.

Subcommands:

* ``responder`` answers ARP requests and ICMP echo requests (ping) for an
  address, on every queue;
* ``ping`` sends ICMP echo requests over memif and prints the replies like
  ping(8);
* ``bench`` measures throughput against a peer process it starts itself, or
  against a running peer (another ``memif bench``, VPP, DPDK testpmd);
* ``capture`` writes the frames the peer sends to a pcap file;
* ``details`` connects and prints what the library knows about the link;
* ``demo`` runs the loopback demo (:mod:`memif_cffi.demo`);
* ``version`` prints the package version.

Every subcommand that connects takes the same interface options
(``--socket``, ``--role``, ``--id``, ``--secret``, ``--mode``, ``--queues``,
``--ring-size``, ``--buffer-size``, ``--name``, ``--timeout``). Errors are
reported as one line, ``memif <command>: error: ...``, on stderr: exit status
2 for usage errors, 1 for failures, 130 when interrupted before any work was
done.

:func:`main` takes an argument list, so the command can be run from Python::

    from memif_cffi.cli import main
    status = main(["details", "--socket", "/run/vpp/memif.sock"])
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import enum
import ipaddress
import json
import math
import os
import queue
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from types import FrameType, TracebackType
from typing import IO, Any, BinaryIO, NoReturn

from memif_cffi import packets, pcap
from memif_cffi._version import __version__
from memif_cffi.batch import MAX_PACKET, PacketBatch
from memif_cffi.context import Context
from memif_cffi.enums import Mode, Role, RxMode
from memif_cffi.errors import DisconnectedError, MemifError
from memif_cffi.info import InterfaceDetails
from memif_cffi.interface import Interface
from memif_cffi.lowlevel import ffi, lib

__all__ = ["CliError", "build_parser", "main"]

PROG = "memif"
DEFAULT_SOCKET = "/run/vpp/memif.sock"
#: Instance name this tool announces to peers.
APP_NAME = "memif_cffi"
#: Seconds between a disconnected slave's connection attempts.
RECONNECT_INTERVAL = 0.25
#: Longest a single ``Context.poll`` waits, so that Ctrl+C, --duration and
#: --count are noticed promptly.
POLL_STEP = 0.05

ETH_HEADER = 14
IPV4_HEADER = 20
ICMP_HEADER = 8
UDP_HEADER = 8


class CliError(Exception):
    """A failure reported as one line on stderr (exit status :attr:`status`)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line: ``memif <cmd>: error: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# ------------------------------------------------------------------ argument types


def _int_type(low: int, high: int, what: str = "value") -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, not {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be in {low}..{high}, not {value}")
        return value

    parse.__name__ = what
    return parse


def _float_type(low: float, what: str = "value", *, inclusive: bool = True
                ) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, not {text!r}") from None
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            relation = ">=" if inclusive else ">"
            raise argparse.ArgumentTypeError(f"{what} must be {relation} {low:g}, not {text}")
        return value

    parse.__name__ = what
    return parse


def _ring_size(text: str) -> int:
    value = _int_type(2, 16384, "the ring size")(text)
    if value & (value - 1):
        raise argparse.ArgumentTypeError(
            f"the ring size must be a power of two from 2 to 16384, not {value}")
    return value


def _limited_text(limit: int, what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        size = len(os.fsencode(text))
        if size > limit:
            raise argparse.ArgumentTypeError(f"{what} is {size} bytes long; the limit is {limit}")
        if "\0" in text:
            raise argparse.ArgumentTypeError(f"{what} must not contain NUL characters")
        return text

    parse.__name__ = what
    return parse


def _ipv4(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IPv4 address: {text!r}") from None


_MAC_RE = re.compile(r"^[0-9a-fA-F]{1,2}([:-][0-9a-fA-F]{1,2}){5}$")


def _mac(text: str) -> str:
    if not _MAC_RE.match(text):
        raise argparse.ArgumentTypeError(f"not a MAC address (aa:bb:cc:dd:ee:ff): {text!r}")
    return ":".join(f"{int(part, 16):02x}" for part in re.split("[:-]", text))


def _socket_path(text: str) -> str:
    if text in ("", "@"):
        raise argparse.ArgumentTypeError("the socket path must not be empty")
    return _limited_text(107, "the socket path")(text)


# ------------------------------------------------------------------ the parser


def _add_interface_options(parser: argparse.ArgumentParser, command: str,
                           timeout_help: str | None) -> None:
    """The options every connecting subcommand shares."""
    group = parser.add_argument_group("interface")
    group.add_argument("--socket", type=_socket_path, default=DEFAULT_SOCKET, metavar="PATH",
                       help='control socket: a path, or "@name" for an abstract socket '
                            f"(default {DEFAULT_SOCKET})")
    group.add_argument("--role", choices=("slave", "master"), default="slave",
                       help="slave connects to the socket, master listens on it "
                            "(default slave)")
    group.add_argument("--id", type=_int_type(0, 2**32 - 1, "the interface id"), default=0,
                       help="interface id, must match the peer's (default 0)")
    group.add_argument("--secret", type=_limited_text(24, "the secret"), default=None,
                       help="shared secret, must match the peer's (at most 24 bytes)")
    group.add_argument("--mode", choices=("ethernet", "ip"), default="ethernet",
                       help="interface mode, must match the peer's (default ethernet)")
    group.add_argument("--queues", type=_int_type(1, 255, "the number of queues"), default=1,
                       metavar="N",
                       help="rx and tx queues (default 1; a master uses the slave's numbers)")
    group.add_argument("--ring-size", type=_ring_size, default=1024, metavar="SLOTS",
                       help="slots per ring, a power of two 2..16384 (default 1024)")
    group.add_argument("--buffer-size", type=_int_type(1, 65535, "the buffer size"),
                       default=2048, metavar="BYTES",
                       help="bytes per buffer; larger frames are chained (default 2048)")
    group.add_argument("--name", type=_limited_text(32, "the interface name"), default=None,
                       help=f"interface name sent to the peer (default memif-{command})")
    if timeout_help is not None:
        group.add_argument("--timeout", type=_float_type(0, "the timeout", inclusive=False),
                           default=None, metavar="SECONDS", help=timeout_help)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``memif`` command."""
    parser = _Parser(
        prog=PROG,
        description="memif tools: answer pings, ping, benchmark, capture and inspect memif "
                    "links (VPP, DPDK net_memif, libmemif applications).",
        epilog=f"'{PROG} <command> --help' describes each command.",
    )
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {_version_text()}")
    sub = parser.add_subparsers(dest="command", metavar="<command>", title="commands",
                                parser_class=_Parser)

    def add(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text,
                                                    description=description)
        return p

    # responder ------------------------------------------------------------
    p = add("responder", "answer ARP and ICMP echo requests (ping) on every queue",
            "Answer ARP requests and ICMP echo requests for --ip on every queue of the "
            "interface, until Ctrl+C, --count echo replies or --duration seconds. A status "
            "line is printed on each connect and disconnect, the counters at exit.")
    _add_interface_options(p, "responder",
                           "give up when not connected within SECONDS (default: wait)")
    p.add_argument("--ip", type=_ipv4, default="192.168.1.2", metavar="IP",
                   help="address to answer for (default 192.168.1.2)")
    p.add_argument("--mac", type=_mac, default="02:fe:00:00:00:02", metavar="MAC",
                   help="MAC address to answer with (default 02:fe:00:00:00:02)")
    p.add_argument("-c", "--count", type=_int_type(0, 2**63, "the count"), default=0, metavar="N",
                   help="exit after this many ICMP echo replies (default 0: no limit)")
    p.add_argument("--duration", type=_float_type(0, "the duration"), default=0,
                   metavar="SECONDS", help="exit after SECONDS (default 0: no limit)")
    p.set_defaults(func=cmd_responder)

    # ping -----------------------------------------------------------------
    p = add("ping", "send ICMP echo requests and print the replies, like ping(8)",
            "Send ICMP echo requests over the interface and print each reply and a summary "
            "like ping(8). In ethernet mode the peer's MAC address is first resolved with ARP "
            "(unless --dst-mac is given). ARP and echo requests for --src-ip are answered. "
            "Exit status 0 when at least one reply arrived, 1 otherwise.")
    _add_interface_options(p, "ping", "seconds to wait for the connection (default 5)")
    p.add_argument("--dst", type=_ipv4, default="192.168.1.2", metavar="IP",
                   help="address to ping (default 192.168.1.2)")
    p.add_argument("--src-ip", type=_ipv4, default="192.168.1.1", metavar="IP",
                   help="our address (default 192.168.1.1)")
    p.add_argument("--src-mac", type=_mac, default="02:fe:00:00:00:01", metavar="MAC",
                   help="our MAC address (default 02:fe:00:00:00:01)")
    p.add_argument("--dst-mac", type=_mac, default=None, metavar="MAC",
                   help="the peer's MAC address (default: ask with ARP)")
    p.add_argument("-c", "--count", type=_int_type(0, 2**31, "the count"), default=4, metavar="N",
                   help="requests to send (default 4; 0: until Ctrl+C)")
    p.add_argument("-i", "--interval", type=_float_type(0, "the interval"), default=1.0,
                   metavar="SECONDS", help="seconds between requests (default 1)")
    p.add_argument("-s", "--size", type=_int_type(0, MAX_PACKET, "the size"), default=56,
                   metavar="BYTES", help="ICMP payload bytes (default 56)")
    p.add_argument("-W", "--wait", type=_float_type(0, "the wait", inclusive=False),
                   default=1.0, metavar="SECONDS",
                   help="seconds to wait for each reply (default 1)")
    p.set_defaults(func=cmd_ping)

    # bench ----------------------------------------------------------------
    p = add("bench", "measure throughput against a spawned or a running peer",
            "Measure throughput with the bulk API. Without --external-peer a peer process is "
            "started on a private socket (--socket is ignored) and both ends are counted, so "
            "the loss is exact. With --external-peer, connect to a peer already running on "
            "--socket: another 'memif bench --sink' or '--flood', VPP, DPDK testpmd "
            "(--forward rxonly / txonly). A full tx ring makes the sender wait: that is "
            "counted as 'ring full', not as loss.")
    _add_interface_options(p, "bench", "seconds to wait for the connection "
                                       "(default 10; with an external peer: wait)")
    p.add_argument("--direction", choices=("tx", "rx"), default="tx",
                   help="tx: we send, the peer receives; rx: the peer sends, we receive "
                        "(default tx)")
    peer = p.add_mutually_exclusive_group()
    peer.add_argument("--external-peer", action="store_true",
                      help="use the peer running on --socket instead of starting one")
    peer.add_argument("--sink", action="store_true",
                      help="receive and count what a running peer sends (the same as "
                           "--direction rx with an external peer)")
    peer.add_argument("--flood", action="store_true",
                      help="send to a running peer (the same as --direction tx with an "
                           "external peer)")
    p.add_argument("--size", type=_int_type(1, MAX_PACKET, "the frame size"), default=64,
                   metavar="BYTES", help="frame size in bytes (default 64)")
    p.add_argument("--burst", type=_int_type(1, 4096, "the burst"), default=256, metavar="N",
                   help="frames per call (default 256)")
    p.add_argument("--duration", type=_float_type(0, "the duration"), default=5.0,
                   metavar="SECONDS",
                   help="seconds to measure (default 5). Receiving from an external peer, "
                        "the clock starts at its first frame; 0 there means until Ctrl+C "
                        "or the peer leaves")
    p.add_argument("--progress", action="store_true",
                   help="print a live rate line on stderr even when it is not a terminal")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=cmd_bench)

    # the peer process started by bench (not listed in the help)
    p = sub.add_parser("bench-peer", description="internal: the peer process of 'memif bench'")
    _add_interface_options(p, "bench-peer", "seconds to wait for the connection")
    p.add_argument("--action", choices=("sink", "flood"), required=True)
    p.add_argument("--size", type=_int_type(1, MAX_PACKET, "the frame size"), default=64)
    p.add_argument("--burst", type=_int_type(1, 4096, "the burst"), default=256)
    p.set_defaults(func=cmd_bench_peer)

    # capture --------------------------------------------------------------
    p = add("capture", "write the frames the peer sends to a pcap file",
            "Receive frames on every queue and write them to a classic pcap file that "
            "tcpdump, tshark and Wireshark read (link type ETHERNET in ethernet mode, RAW IP "
            "in ip mode). Stops at Ctrl+C, after --count frames or --duration seconds.")
    _add_interface_options(p, "capture",
                           "give up when not connected within SECONDS (default: wait)")
    p.add_argument("-w", "--write", required=True, metavar="FILE",
                   help='pcap file to write ("-": standard output)')
    p.add_argument("-c", "--count", type=_int_type(0, 2**63, "the count"), default=0, metavar="N",
                   help="stop after this many frames (default 0: no limit)")
    p.add_argument("--duration", type=_float_type(0, "the duration"), default=0,
                   metavar="SECONDS", help="stop after SECONDS (default 0: no limit)")
    p.add_argument("--snaplen", type=_int_type(1, pcap.MAX_SNAPLEN, "the snaplen"),
                   default=65535, metavar="BYTES",
                   help="keep at most this many bytes of each frame (default 65535)")
    p.add_argument("--nanosecond", action="store_true",
                   help="nanosecond timestamps (pcap magic 0xa1b23c4d) instead of microseconds")
    p.set_defaults(func=cmd_capture)

    # details --------------------------------------------------------------
    p = add("details", "connect and print the interface details",
            "Connect, then print what the library reports about the interface: names, role, "
            "peer, link state, shared-memory regions and queues.")
    _add_interface_options(p, "details", "seconds to wait for the connection (default 5)")
    p.add_argument("--json", action="store_true", help="print the details as JSON")
    p.set_defaults(func=cmd_details)

    # demo -----------------------------------------------------------------
    p = add("demo", "run the loopback demo (master and slave in this process)",
            "Run the loopback demo: a master and a slave in one process, on a socket in a "
            "temporary directory, send --count frames each way, check every one and print "
            "the rates. It connects to nothing else, so it takes no interface options.")
    p.add_argument("--count", type=_int_type(0, 2**63, "the count"), default=1_000_000,
                   metavar="N", help="frames per direction (default 1000000)")
    p.add_argument("--size", type=_int_type(8, 65535, "the size"), default=64,
                   metavar="BYTES", help="frame size in bytes, 8..65535 (default 64)")
    p.add_argument("--burst", type=_int_type(1, 4096, "the burst"), default=64, metavar="N",
                   help="frames per call, 1..4096 (default 64)")
    p.add_argument("--ring-size", type=_ring_size, default=1024, metavar="SLOTS",
                   help="slots per ring, a power of two 2..16384 (default 1024)")
    p.set_defaults(func=cmd_demo)

    # version --------------------------------------------------------------
    p = add("version", "print the version", "Print the package version and the library's.")
    p.set_defaults(func=cmd_version)
    return parser


def _version_text() -> str:
    api = ffi.string(lib.LIBMEMIF_VERSION).decode()
    proto = f"{lib.MEMIF_VERSION_MAJOR}.{lib.MEMIF_VERSION_MINOR}"
    return f"{__version__} (libmemif {api} API, memif protocol {proto})"


# ------------------------------------------------------------------ errors, signals


def _describe(exc: BaseException) -> str:
    """One line saying what went wrong, without the exception machinery."""
    if isinstance(exc, MemifError):
        text = (exc.strerror or exc.name).rstrip(".")
        return f"{exc.message}: {text}" if exc.message else text
    if isinstance(exc, OSError) and exc.strerror:
        if exc.filename is not None:
            return f"{exc.filename}: {exc.strerror}"
        return exc.strerror
    return str(exc) or type(exc).__name__


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class _Signals:
    """SIGTERM behaves like Ctrl+C while a command runs (results are still printed)."""

    def __enter__(self) -> _Signals:
        self._old: Any = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, _on_sigterm)
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``memif`` command with ``argv`` (default ``sys.argv[1:]``); returns the status."""
    parser = build_parser()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        opts = parser.parse_args(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if opts.command is None:
        parser.print_help(sys.stderr)
        return 2
    prog = f"{PROG} {opts.command}"
    func: Callable[[argparse.Namespace], int] = opts.func
    try:
        with _Signals():
            return func(opts)
    except CliError as exc:
        _error(prog, str(exc))
        return exc.status
    except BrokenPipeError:
        # The reader of our output went away (``memif ... | head``): stop quietly,
        # and keep the interpreter from complaining while it flushes at exit.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        _error(prog, "interrupted")
        return 130
    except (MemifError, OSError, ValueError, TimeoutError) as exc:
        _error(prog, _describe(exc))
        return 1
    except Exception as exc:
        if os.environ.get("MEMIF_CLI_DEBUG"):
            raise
        _error(prog, f"unexpected {type(exc).__name__}: {_describe(exc)} "
                     "(set MEMIF_CLI_DEBUG=1 for a traceback)")
        return 1


def _error(prog: str, message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)


def _say(text: str, stream: IO[str] | None = None) -> None:
    """Print a status line now (stdout is often a pipe)."""
    print(text, file=stream or sys.stdout, flush=True)


# ------------------------------------------------------------------ connecting


class Session:
    """One Context with one interface made from the common options."""

    def __init__(
        self,
        opts: argparse.Namespace,
        command: str,
        *,
        on_connect: Callable[[Interface], object] | None = None,
        on_disconnect: Callable[[Interface], object] | None = None,
        on_interrupt: Callable[[Interface, int], object] | None = None,
        socket_path: str | None = None,
    ) -> None:
        self.path: str = socket_path or opts.socket
        self.role = Role.MASTER if opts.role == "master" else Role.SLAVE
        self.mode = Mode.IP if opts.mode == "ip" else Mode.ETHERNET
        if not self.path.startswith("@"):
            directory = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(directory):
                raise CliError(f"socket directory {directory} does not exist")
        self.ctx = Context(APP_NAME, reconnect_interval=RECONNECT_INTERVAL)
        try:
            sock = self.ctx.socket(self.path)
            self.intf = self.ctx.interface(
                sock, role=self.role, id=opts.id, name=opts.name or f"memif-{command}",
                secret=opts.secret, mode=self.mode, rx_queues=opts.queues,
                tx_queues=opts.queues, ring_size=opts.ring_size, buffer_size=opts.buffer_size,
                on_connect=on_connect, on_disconnect=on_disconnect, on_interrupt=on_interrupt)
        except MemifError as exc:
            self.ctx.close()
            verb = "listen on" if self.role is Role.MASTER else "connect to"
            raise CliError(f"cannot {verb} {self.path}: {_describe(exc)}") from None
        except BaseException:
            self.ctx.close()
            raise

    def describe(self) -> str:
        """``listening on PATH as master`` / ``connecting to PATH as slave``."""
        if self.role is Role.MASTER:
            return f"listening on {self.path} as master"
        return f"connecting to {self.path} as slave"

    def wait_connected(self, timeout: float | None,
                       check: Callable[[], None] | None = None) -> None:
        """Poll until connected; CliError after ``timeout`` seconds (None: no limit).

        ``check()`` runs between polls and may raise to give up early.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.intf.connected:
            step = 0.1
            if deadline is not None:
                step = min(step, deadline - time.monotonic())
                if step <= 0:
                    reason = self.intf.details.error.rstrip(".")
                    if not reason:
                        reason = ("no slave connected" if self.role is Role.MASTER
                                  else "no answer from a master")
                    raise CliError(f"not connected to {self.path} after {timeout:g} s: {reason}")
            self.ctx.poll(step)
            if check is not None:
                check()

    def peer_text(self) -> str:
        """``peer IF (APP)`` for status lines."""
        d = self.intf.details
        return f"peer {d.remote_if_name or '?'} ({d.remote_inst_name or '?'})"

    def close(self) -> None:
        self.ctx.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _reason(intf: Interface) -> str:
    """``": <why the link went down>"``, or "" when unknown or we are closing it."""
    if intf.closed:
        return ""
    reason = intf.details.error.rstrip(".")
    return f": {reason}" if reason else ""


def _queue_text(intf: Interface) -> str:
    rx, tx = len(intf.rx), len(intf.tx)
    return f"{rx} queue{'s' if rx != 1 else ''}" if rx == tx else f"{rx} rx / {tx} tx queues"


def _send_all(intf: Interface, qid: int, frames: list[bytes], patience: float = 0.05) -> int:
    """Send ``frames`` on tx queue ``qid`` (modulo the queues), retrying a full ring briefly.

    Returns how many could not be sent.
    """
    if not frames:
        return 0
    txq = intf.tx[qid % len(intf.tx)]
    done = txq.send_burst(frames)
    deadline = time.monotonic() + patience
    while done < len(frames) and time.monotonic() < deadline:
        time.sleep(0.0005)
        done += txq.send_burst(frames[done:])
    return len(frames) - done


# ------------------------------------------------------------------ responder


def cmd_responder(opts: argparse.Namespace) -> int:
    """``memif responder``: answer ARP and ICMP echo requests."""
    ip_mode = opts.mode == "ip"
    responder = packets.Responder(opts.ip, opts.mac, ip_mode=ip_mode)
    unsent = 0

    def on_connect(intf: Interface) -> None:
        _say(f"connected: {session.peer_text()}, {_queue_text(intf)}")

    def on_disconnect(intf: Interface) -> None:
        _say(f"disconnected{_reason(intf)}")

    def serve(intf: Interface, qid: int) -> None:
        nonlocal unsent
        replies: list[bytes] = []
        for frame in intf.rx[qid].recv_burst(256):
            reply = responder.reply(frame)
            if reply is not None:
                replies.append(reply)
        unsent += _send_all(intf, qid, replies)

    session = Session(opts, "responder", on_connect=on_connect, on_disconnect=on_disconnect,
                      on_interrupt=serve)
    with session:
        what = f"{opts.ip}" if ip_mode else f"{opts.ip} at {opts.mac}"
        _say(f"{session.describe()}, answering for {what} ({opts.mode} mode)")
        start = time.monotonic()
        try:
            if opts.timeout is not None:
                session.wait_connected(opts.timeout)
            end = start + opts.duration if opts.duration else math.inf
            while not (opts.count and responder.icmp_replies >= opts.count):
                now = time.monotonic()
                if now >= end:
                    break
                session.ctx.poll(min(POLL_STEP, end - now))
        except KeyboardInterrupt:
            pass
        counters = session.intf.counters
        _say(f"echo replies {responder.icmp_replies}, ARP replies {responder.arp_replies}, "
             f"ignored {responder.ignored}, not sent (ring full) {unsent}; "
             f"frames rx {counters.rx_packets} tx {counters.tx_packets} "
             f"in {time.monotonic() - start:.1f} s")
    return 0


# ------------------------------------------------------------------ ping


@dataclasses.dataclass
class _PingStats:
    transmitted: int = 0
    received: int = 0
    rtts: list[float] = dataclasses.field(default_factory=list)

    def summary(self, dst: str, elapsed: float) -> list[str]:
        lines = [f"--- {dst} memif ping statistics ---"]
        loss = 0.0
        if self.transmitted:
            loss = 100.0 * (self.transmitted - self.received) / self.transmitted
        lines.append(f"{self.transmitted} packets transmitted, {self.received} received, "
                     f"{loss:g}% packet loss, time {elapsed * 1000:.0f}ms")
        if self.rtts:
            ms = [r * 1000 for r in self.rtts]
            mean = sum(ms) / len(ms)
            mdev = math.sqrt(max(0.0, sum(x * x for x in ms) / len(ms) - mean * mean))
            lines.append(f"rtt min/avg/max/mdev = {min(ms):.3f}/{mean:.3f}/{max(ms):.3f}/"
                         f"{mdev:.3f} ms")
        return lines


class _Pinger:
    """ICMP echo over one interface; answers ARP and pings for its own address."""

    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.ip_mode = opts.mode == "ip"
        self.ident = os.getpid() & 0xFFFF
        self.inbox: deque[tuple[float, int, bytes]] = deque()
        self.own = packets.Responder(opts.src_ip, opts.src_mac, ip_mode=self.ip_mode)
        self.session = Session(opts, "ping", on_interrupt=self._collect)
        self.dst_mac: str | None = opts.dst_mac
        self.sent_at: dict[int, float] = {}
        self.answered: set[int] = set()
        self.payloads: dict[int, bytes] = {}
        self.stats = _PingStats()
        self.sent_mono = 0.0

    def _collect(self, intf: Interface, qid: int) -> None:
        frames = intf.rx[qid].recv_burst(256)
        now = time.perf_counter()
        self.inbox.extend((now, qid, f) for f in frames)

    def _sweep(self) -> None:
        """Receive what the peer queued without signalling us."""
        intf = self.session.intf
        if intf.connected:
            for rxq in intf.rx:
                self._collect(intf, rxq.qid)

    def pump(self, until: float, done: Callable[[], bool] = lambda: False) -> None:
        """Handle events and incoming frames until ``until`` (monotonic) or ``done()``."""
        while True:
            self._process()
            if done():
                return
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            self.session.ctx.poll(min(POLL_STEP, remaining))
            self._sweep()

    def _process(self) -> None:
        intf = self.session.intf
        while self.inbox:
            when, qid, frame = self.inbox.popleft()
            if not self.ip_mode and self.dst_mac is None:
                arp = packets.parse_arp_reply(frame)
                if arp is not None and arp[0] == self.opts.dst:
                    self.dst_mac = arp[1]
                    continue
            reply = packets.parse_echo_reply(frame, ip_mode=self.ip_mode)
            if reply is not None and reply.ident == self.ident and reply.src_ip == self.opts.dst:
                self._on_reply(when, reply)
                continue
            answer = self.own.reply(frame)
            if answer is not None and intf.connected:
                _send_all(intf, qid, [answer])

    def _on_reply(self, when: float, reply: packets.EchoReply) -> None:
        seq = reply.seq
        sent = self.sent_at.get(seq)
        if sent is None or seq in self.answered:
            return
        self.answered.add(seq)
        rtt = when - sent
        self.stats.received += 1
        self.stats.rtts.append(rtt)
        note = "" if reply.payload == self.payloads.pop(seq, b"") else " (wrong data)"
        _say(f"{ICMP_HEADER + len(reply.payload)} bytes from {reply.src_ip}: icmp_seq={seq} "
             f"ttl={reply.ttl} time={rtt * 1000:.3f} ms{note}")

    def resolve(self) -> None:
        """Ask for the peer's MAC address with ARP (three tries of --wait seconds)."""
        opts = self.opts
        request = packets.arp_request(src_mac=opts.src_mac, src_ip=opts.src_ip, dst_ip=opts.dst)
        for _ in range(3):
            self._transmit(request)
            self.pump(time.monotonic() + opts.wait, lambda: self.dst_mac is not None)
            if self.dst_mac is not None:
                return
        raise CliError(f"no ARP reply for {opts.dst} from the peer")

    def _transmit(self, frame: bytes) -> None:
        intf = self.session.intf
        if not intf.connected:
            raise CliError("the peer disconnected")
        if _send_all(intf, 0, [frame], patience=self.opts.wait):
            raise CliError("cannot send: the tx ring stays full")

    def run(self) -> int:
        opts = self.opts
        with self.session:
            self.session.wait_connected(5.0 if opts.timeout is None else opts.timeout)
            ip_size = opts.size + IPV4_HEADER + ICMP_HEADER
            _say(f"PING {opts.dst} ({opts.dst}) {opts.size}({ip_size}) bytes of data "
                 f"over memif {self.session.path}")
            start = time.monotonic()
            try:
                if not self.ip_mode and self.dst_mac is None:
                    self.resolve()
                sent = 0
                while not opts.count or sent < opts.count:
                    sent += 1
                    seq = sent & 0xFFFF
                    self.sent_mono = time.monotonic()
                    if not self.session.intf.connected:
                        # Like ping(8) on a network that went away: say so, keep going
                        # (a slave reconnects by itself).
                        _say(f"icmp_seq={seq} not sent: the link is down")
                    else:
                        self._send_request(seq)
                        self.pump(time.monotonic() + opts.wait, self._answered(seq))
                        if seq not in self.answered:
                            _say(f"no reply for icmp_seq={seq} within {opts.wait:g} s")
                    if not opts.count or sent < opts.count:
                        self.pump(self.sent_mono + opts.interval)
            except KeyboardInterrupt:
                pass
            for line in self.stats.summary(opts.dst, time.monotonic() - start):
                _say(line)
        return 0 if self.stats.received else 1

    def _answered(self, seq: int) -> Callable[[], bool]:
        return lambda: seq in self.answered

    def _send_request(self, seq: int) -> None:
        opts = self.opts
        payload = bytes((seq + i) & 0xFF for i in range(opts.size))
        kwargs: dict[str, Any] = {}
        if not self.ip_mode:
            kwargs = {"src_mac": opts.src_mac, "dst_mac": self.dst_mac}
        frame = packets.echo_request(src_ip=opts.src_ip, dst_ip=opts.dst, ident=self.ident,
                                     seq=seq, payload=payload, ip_mode=self.ip_mode, **kwargs)
        self.payloads[seq] = payload
        self.sent_at[seq] = time.perf_counter()
        self.answered.discard(seq)
        self._transmit(frame)
        self.stats.transmitted += 1


def cmd_ping(opts: argparse.Namespace) -> int:
    """``memif ping``: ICMP echo over memif."""
    overhead = IPV4_HEADER + ICMP_HEADER + (0 if opts.mode == "ip" else ETH_HEADER)
    if opts.size + overhead > MAX_PACKET:
        raise CliError(f"--size {opts.size} makes frames of {opts.size + overhead} bytes; "
                       f"the limit is {MAX_PACKET}", status=2)
    return _Pinger(opts).run()


# ------------------------------------------------------------------ bench

#: Slot size of a receiving batch: any frame up to a jumbo frame fits.
SINK_SLOT = 9216
#: Seconds between two ``Context.poll(0)`` calls of a data loop (disconnects, control).
CONTROL_EVERY = 0.02
PROGRESS_EVERY = 0.5


def _ipv4_checksum(header: bytes) -> int:
    total = sum(int.from_bytes(header[i:i + 2], "big") for i in range(0, len(header), 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def bench_frame(size: int, ip_mode: bool) -> bytes:
    """A frame of exactly ``size`` bytes: IPv4/UDP to the discard port, zero payload.

    In ethernet mode it goes from 02:fe:00:00:00:01 to 02:fe:00:00:00:02.
    Sizes too small for the headers give the headers cut short.
    """
    link = b"" if ip_mode else bytes.fromhex("02fe00000002" "02fe00000001" "0800")
    ip_len = max(IPV4_HEADER + UDP_HEADER, size - len(link))
    header = bytearray(
        bytes([0x45, 0]) + ip_len.to_bytes(2, "big") + bytes(4) + bytes([64, 17]) + bytes(2)
        + bytes([192, 168, 1, 1]) + bytes([192, 168, 1, 2]))
    header[10:12] = _ipv4_checksum(bytes(header)).to_bytes(2, "big")
    udp = (9).to_bytes(2, "big") * 2 + (ip_len - IPV4_HEADER).to_bytes(2, "big") + bytes(2)
    frame = link + bytes(header) + udp
    return (frame + bytes(max(0, size - len(frame))))[:size]


class _Progress:
    """A live rate line on stderr, rewritten in place."""

    def __init__(self, enabled: bool, label: str) -> None:
        self.enabled = enabled
        self.label = label
        self.shown = False
        self._last_t = time.perf_counter()
        self._last_n = 0

    def update(self, elapsed: float, packets: int, size: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        rate = (packets - self._last_n) / max(now - self._last_t, 1e-9)
        self._last_t, self._last_n = now, packets
        sys.stderr.write(f"\r{self.label} {elapsed:6.1f} s {rate:>14,.0f} pps "
                         f"{rate * size * 8 / 1e9:8.3f} Gbit/s {packets:>15,} packets")
        sys.stderr.flush()
        self.shown = True

    def finish(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.shown = False


class _Pump:
    """The data loop of one bench end: flood every tx queue or drain every rx queue."""

    def __init__(self, session: Session, action: str, size: int, burst: int) -> None:
        self.session = session
        self.intf = session.intf
        self.action = action
        self.size = size
        self.packets = 0
        self.ring_full = 0
        self.elapsed = 0.0
        self.start_bytes = 0
        self.start_drops = 0
        if action == "flood":
            self.batch = PacketBatch(burst, size)
            self.batch.fill(bench_frame(size, session.mode is Mode.IP))
        else:
            self.batch = PacketBatch(burst, max(size, SINK_SLOT))
            # A polling receiver asks the sender not to signal every burst.
            for rxq in self.intf.rx:
                rxq.mode = RxMode.POLLING

    def mark(self) -> None:
        """Start counting from now."""
        self.packets = 0
        self.ring_full = 0
        c = self.intf.counters
        self.start_bytes = c.tx_bytes if self.action == "flood" else c.rx_bytes
        self.start_drops = c.rx_drops

    @property
    def bytes(self) -> int:
        c = self.intf.counters
        return (c.tx_bytes if self.action == "flood" else c.rx_bytes) - self.start_bytes

    @property
    def drops(self) -> int:
        """Frames the receiver itself dropped (too long for its batch, cut chains)."""
        return self.intf.counters.rx_drops - self.start_drops

    def step(self) -> int:
        """One burst on every queue; returns the packets moved."""
        moved = 0
        batch = self.batch
        if self.action == "flood":
            for txq in self.intf.tx:
                sent = txq.send_batch(batch)
                if sent < batch.count:
                    self.ring_full += 1
                moved += sent
        else:
            for rxq in self.intf.rx:
                moved += rxq.recv_into(batch)
        self.packets += moved
        return moved

    def run(self, duration: float, progress: _Progress | None = None,
            stop: Callable[[], bool] | None = None, wait_first: bool = False) -> str:
        """Move packets for ``duration`` seconds (0: no limit); returns why it stopped.

        ``"time"``, ``"stopped"`` (``stop()`` became true), ``"peer disconnected"`` or
        ``"interrupted"``. With ``wait_first`` the clock starts at the first packet.
        """
        ctx = self.session.ctx
        self.mark()
        begin = now = time.perf_counter()
        next_control = now + CONTROL_EVERY
        next_progress = now + PROGRESS_EVERY
        waiting = wait_first
        reason = "time"
        try:
            while True:
                moved = self.step()
                now = time.perf_counter()
                if waiting and moved:
                    waiting = False
                    begin = now
                    next_progress = now + PROGRESS_EVERY
                if not waiting and duration and now - begin >= duration:
                    break
                if now >= next_control:
                    next_control = now + CONTROL_EVERY
                    ctx.poll(0)
                    if not self.intf.connected:
                        reason = "peer disconnected"
                        break
                    if stop is not None and stop():
                        reason = "stopped"
                        break
                if progress is not None and not waiting and now >= next_progress:
                    next_progress = now + PROGRESS_EVERY
                    progress.update(now - begin, self.packets, self.size)
        except KeyboardInterrupt:
            reason = "interrupted"
            now = time.perf_counter()
        except DisconnectedError:
            reason = "peer disconnected"
            now = time.perf_counter()
        if progress is not None:
            progress.finish()
        self.elapsed = 0.0 if waiting else now - begin
        return reason

    def drain(self, quiet: float = 0.01, limit: float = 5.0) -> None:
        """Receive until nothing arrived for ``quiet`` seconds (the sender has stopped)."""
        deadline = time.perf_counter() + limit
        last = time.perf_counter()
        while time.perf_counter() - last < quiet and time.perf_counter() < deadline:
            try:
                if self.step():
                    last = time.perf_counter()
            except DisconnectedError:
                return


@dataclasses.dataclass
class BenchResult:
    """What ``memif bench`` measured (``--json`` prints it with the rates added)."""

    direction: str
    peer: str
    mode: str
    size: int
    burst: int
    queues: int
    ring_size: int
    buffer_size: int
    duration: float
    stopped: str
    sent: int | None
    sent_bytes: int | None
    received: int | None
    received_bytes: int | None
    dropped: int | None
    ring_full: int | None

    def rate(self, packets: int | None) -> float | None:
        if packets is None:
            return None
        return packets / self.duration if self.duration > 0 else 0.0

    def gbps(self, nbytes: int | None) -> float | None:
        if nbytes is None:
            return None
        return nbytes * 8 / self.duration / 1e9 if self.duration > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["sent_pps"] = self.rate(self.sent)
        out["sent_gbps"] = self.gbps(self.sent_bytes)
        out["received_pps"] = self.rate(self.received)
        out["received_gbps"] = self.gbps(self.received_bytes)
        main_count, main_bytes = ((self.received, self.received_bytes)
                                  if self.received is not None else (self.sent, self.sent_bytes))
        out["pps"] = self.rate(main_count)
        out["gbps"] = self.gbps(main_bytes)
        return out

    def table(self) -> list[str]:
        queues = f"{self.queues} queue{'s' if self.queues != 1 else ''}"
        lines = [
            f"memif bench: {self.direction}, {self.size}-byte frames, burst {self.burst}, "
            f"{queues}, ring {self.ring_size}, buffers {self.buffer_size} B, {self.mode}",
            f"peer: {self.peer}",
            "",
            f"{'':<10} {'packets':>15} {'pps':>15} {'Gbit/s':>9}",
        ]

        def row(name: str, packets: int | None, nbytes: int | None) -> str:
            if packets is None:
                return f"{name:<10} {'n/a':>15}"
            rate = self.rate(packets) or 0.0
            gbps = self.gbps(nbytes) or 0.0
            return f"{name:<10} {packets:>15,} {rate:>15,.0f} {gbps:>9.3f}"

        lines.append(row("sent", self.sent, self.sent_bytes))
        lines.append(row("received", self.received, self.received_bytes))
        dropped = "n/a" if self.dropped is None else f"{self.dropped:,}"
        lines.append(f"{'dropped':<10} {dropped:>15}")
        if self.ring_full is not None:
            lines.append(f"{'ring full':<10} {self.ring_full:>15,}   "
                         "(sender retries on a full ring; not drops)")
        lines.append(f"{'duration':<10} {self.duration:>15.3f} s"
                     + ("" if self.stopped == "time" else f"   ({self.stopped})"))
        return lines


class _PeerProcess:
    """The ``memif bench-peer`` child: commands on its stdin, reports on its stdout."""

    def __init__(self, argv: list[str]) -> None:
        env = dict(os.environ)
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "memif_cffi", "bench-peer", *argv],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, start_new_session=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.errors: list[str | None] = []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines.put),
                         daemon=True).start()
        self._stderr = threading.Thread(target=self._read,
                                        args=(self.proc.stderr, self.errors.append), daemon=True)
        self._stderr.start()

    @staticmethod
    def _read(stream: IO[bytes] | None, put: Callable[[Any], None]) -> None:
        if stream is None:
            return
        for raw in stream:
            put(raw.decode("utf-8", "replace").rstrip("\n"))
        put(None)

    def failure(self) -> str:
        self._stderr.join(1.0)
        messages = [e for e in self.errors if e]
        detail = messages[-1] if messages else f"exit status {self.proc.poll()}"
        return f"the peer process failed: {detail}"

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise CliError(self.failure())

    def expect(self, timeout: float) -> str:
        """The next line from the peer (CliError when it ends or stays silent)."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise CliError(f"the peer process did not answer within {timeout:g} s") from None
        if line is None:
            self.proc.wait(1.0)
            raise CliError(self.failure())
        return line

    def send(self, command: str) -> None:
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.write(command.encode() + b"\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                raise CliError(self.failure()) from None

    def finish(self) -> None:
        """Let the peer exit (closes its stdin) and wait for it."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        try:
            self.proc.wait(5.0)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _bench_common(opts: argparse.Namespace) -> dict[str, Any]:
    return {"mode": opts.mode, "size": opts.size, "burst": opts.burst, "queues": opts.queues,
            "ring_size": opts.ring_size, "buffer_size": opts.buffer_size}


def _bench_spawned(opts: argparse.Namespace, progress: _Progress) -> BenchResult:
    """Both ends are ours: a peer process on a private socket."""
    timeout = 10.0 if opts.timeout is None else opts.timeout
    peer_role = "master" if opts.role == "slave" else "slave"
    action = "flood" if opts.direction == "tx" else "sink"
    peer_action = "sink" if action == "flood" else "flood"
    with tempfile.TemporaryDirectory(prefix="memif-bench-") as tmp:
        path = os.path.join(tmp, "bench.sock")
        argv = ["--socket", path, "--role", peer_role, "--id", str(opts.id), "--mode", opts.mode,
                "--queues", str(opts.queues), "--ring-size", str(opts.ring_size),
                "--buffer-size", str(opts.buffer_size), "--size", str(opts.size),
                "--burst", str(opts.burst), "--action", peer_action,
                "--timeout", str(timeout)]
        if opts.secret is not None:
            argv += ["--secret", opts.secret]
        session: Session | None = None
        peer: _PeerProcess | None = None
        try:
            if peer_role == "slave":
                session = Session(opts, "bench", socket_path=path)
            peer = _PeerProcess(argv)
            if peer.expect(timeout) != "ready":
                raise CliError("the peer process said something unexpected")
            if session is None:
                session = Session(opts, "bench", socket_path=path)
            session.wait_connected(timeout, check=peer.check_alive)
            pump = _Pump(session, action, opts.size, opts.burst)
            stopped = pump.run(opts.duration, progress)
            if stopped == "peer disconnected":
                raise CliError(peer.failure() if peer.proc.poll() is not None
                               else "the peer process disconnected")
            window = pump.elapsed
            peer.send("stop")
            try:
                report = json.loads(peer.expect(timeout))
            except ValueError:
                raise CliError("the peer process sent a malformed report") from None
            if action == "sink":
                pump.drain()
            if action == "flood":
                sent, sent_bytes = pump.packets, pump.bytes
                received, received_bytes = int(report["packets"]), int(report["bytes"])
                ring_full = pump.ring_full
            else:
                sent, sent_bytes = int(report["packets"]), int(report["bytes"])
                received, received_bytes = pump.packets, pump.bytes
                ring_full = int(report["ring_full"])
            peer.finish()
        finally:
            if session is not None:
                session.close()
            if peer is not None:
                peer.kill()
    return BenchResult(
        direction=opts.direction, peer=f"spawned process ({peer_role}) on a private socket",
        duration=window, stopped=stopped, sent=sent, sent_bytes=sent_bytes, received=received,
        received_bytes=received_bytes, dropped=sent - received, ring_full=ring_full,
        **_bench_common(opts))


def _bench_external(opts: argparse.Namespace, progress: _Progress) -> BenchResult:
    """Only our end is ours: the peer runs on --socket."""
    action = "flood" if opts.direction == "tx" else "sink"
    with Session(opts, "bench") as session:
        _say(session.describe(), sys.stderr)
        session.wait_connected(opts.timeout)
        peer = f"external, {session.peer_text()} on {session.path}"
        _say(f"connected: {session.peer_text()}, {_queue_text(session.intf)}; "
             + ("sending" if action == "flood" else "receiving")
             + (f" for {opts.duration:g} s" if opts.duration else " until Ctrl+C"),
             sys.stderr)
        pump = _Pump(session, action, opts.size, opts.burst)
        stopped = pump.run(opts.duration, progress, wait_first=action == "sink")
        if action == "flood":
            return BenchResult(
                direction=opts.direction, peer=peer, duration=pump.elapsed, stopped=stopped,
                sent=pump.packets, sent_bytes=pump.bytes, received=None, received_bytes=None,
                dropped=None, ring_full=pump.ring_full, **_bench_common(opts))
        return BenchResult(
            direction=opts.direction, peer=peer, duration=pump.elapsed, stopped=stopped,
            sent=None, sent_bytes=None, received=pump.packets, received_bytes=pump.bytes,
            dropped=pump.drops, ring_full=None, **_bench_common(opts))


def cmd_bench(opts: argparse.Namespace) -> int:
    """``memif bench``: throughput."""
    if opts.sink or opts.flood:
        opts.external_peer = True
        opts.direction = "rx" if opts.sink else "tx"
    if not opts.external_peer and opts.duration <= 0:
        raise CliError("--duration must be > 0 with a spawned peer", status=2)
    label = "sending" if opts.direction == "tx" else "receiving"
    progress = _Progress(opts.progress or sys.stderr.isatty(), label)
    if opts.external_peer:
        result = _bench_external(opts, progress)
    else:
        result = _bench_spawned(opts, progress)
    if opts.json:
        _say(json.dumps(result.as_json()))
    else:
        for line in result.table():
            _say(line)
    return 0


def _stdin_says_stop() -> bool:
    """True when the parent wrote a command or closed our stdin."""
    ready, _, _ = select.select([0], [], [], 0)
    if not ready:
        return False
    os.read(0, 4096)
    return True


def cmd_bench_peer(opts: argparse.Namespace) -> int:
    """``memif bench-peer`` (internal): the far end of ``memif bench``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with Session(opts, "bench-peer") as session:
        _say("ready")
        session.wait_connected(10.0 if opts.timeout is None else opts.timeout)
        pump = _Pump(session, opts.action, opts.size, opts.burst)
        pump.run(0, stop=_stdin_says_stop)
        if opts.action == "sink":
            pump.drain()
        _say(json.dumps({"packets": pump.packets, "bytes": pump.bytes,
                         "ring_full": pump.ring_full, "drops": pump.drops}))
        # Stay connected until the parent has drained what we sent.
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            ready, _, _ = select.select([0], [], [], 0.05)
            if ready and not os.read(0, 4096):
                break
            session.ctx.poll(0)
    return 0


# ------------------------------------------------------------------ capture


def cmd_capture(opts: argparse.Namespace) -> int:
    """``memif capture``: received frames to a pcap file."""
    linktype = pcap.LINKTYPE_RAW if opts.mode == "ip" else pcap.LINKTYPE_ETHERNET
    to_stdout = opts.write == "-"
    out: BinaryIO = sys.stdout.buffer if to_stdout else open(opts.write, "wb")  # noqa: SIM115
    writer = pcap.PcapWriter(out, linktype, snaplen=opts.snaplen, nanosecond=opts.nanosecond)
    captured = 0
    done = False

    def collect(intf: Interface, qid: int) -> None:
        nonlocal captured, done
        frames = intf.rx[qid].recv_burst(256)
        stamp = time.time_ns()
        for frame in frames:
            if opts.count and captured >= opts.count:
                done = True
                break
            writer.write(frame, stamp)
            captured += 1
        if opts.count and captured >= opts.count:
            done = True

    def on_connect(intf: Interface) -> None:
        _say(f"connected: {session.peer_text()}, {_queue_text(intf)}", sys.stderr)

    def on_disconnect(intf: Interface) -> None:
        _say(f"disconnected{_reason(intf)}", sys.stderr)

    start = time.monotonic()
    try:
        session = Session(opts, "capture", on_connect=on_connect, on_disconnect=on_disconnect,
                          on_interrupt=collect)
        with session:
            kind = "RAW IP" if linktype == pcap.LINKTYPE_RAW else "ETHERNET"
            _say(f"{session.describe()}; writing {kind} frames to "
                 f"{'standard output' if to_stdout else opts.write}", sys.stderr)
            try:
                if opts.timeout is not None:
                    session.wait_connected(opts.timeout)
                end = start + opts.duration if opts.duration else math.inf
                while not done:
                    now = time.monotonic()
                    if now >= end:
                        break
                    before = captured
                    session.ctx.poll(min(POLL_STEP, end - now))
                    if session.intf.connected and not done:
                        for rxq in session.intf.rx:
                            collect(session.intf, rxq.qid)
                    if captured != before:
                        writer.flush()
            except KeyboardInterrupt:
                pass
    finally:
        try:
            writer.flush()
        finally:
            if not to_stdout:
                out.close()
    _say(f"{captured} frames captured", sys.stderr)
    return 0


# ------------------------------------------------------------------ details


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _details_lines(d: InterfaceDetails) -> Iterator[str]:
    yield f"interface    {d.if_name} (id {d.id}, {d.role.name.lower()}, {d.mode.name.lower()})"
    yield f"instance     {d.inst_name}"
    yield f"peer         {d.remote_if_name or '-'} ({d.remote_inst_name or '-'})"
    yield f"socket       {d.socket_filename}"
    yield f"link         {'up' if d.link_up else 'down'}"
    yield f"secret       {'set' if d.secret else '-'}"
    yield f"last error   {d.error or '-'}"
    yield ""
    yield f"regions      {'index':>5} {'size':>12} {'fd':>5}  external"
    for r in d.regions:
        external = "yes" if r.is_external else "no"
        yield f"             {r.index:>5} {r.size:>12,} {r.fd:>5}  {external}"
    yield ""
    yield (f"queues       {'dir':<3} {'qid':>3} {'region':>6} {'ring':>6} {'buffer':>6} "
           f"{'head':>8} {'tail':>8} {'flags':>5}")
    for name, queues in (("rx", d.rx_queues), ("tx", d.tx_queues)):
        for q in queues:
            yield (f"             {name:<3} {q.qid:>3} {q.region:>6} {q.ring_size:>6} "
                   f"{q.buffer_size:>6} {q.head:>8} {q.tail:>8} {q.flags:>#5x}")


def cmd_details(opts: argparse.Namespace) -> int:
    """``memif details``: connect and show the interface details."""
    with Session(opts, "details") as session:
        session.wait_connected(5.0 if opts.timeout is None else opts.timeout)
        details = session.intf.details
    if opts.json:
        _say(json.dumps(_plain(dataclasses.asdict(details)), indent=2))
    else:
        for line in _details_lines(details):
            _say(line)
    return 0


# ------------------------------------------------------------------ demo, version


def cmd_demo(opts: argparse.Namespace) -> int:
    """``memif demo``: the loopback demo of :mod:`memif_cffi.demo`."""
    from memif_cffi import demo

    argv = ["--count", str(opts.count), "--size", str(opts.size), "--burst", str(opts.burst),
            "--ring-log2", str(opts.ring_size.bit_length() - 1)]
    try:
        return demo.main(argv)
    except SystemExit as exc:
        if isinstance(exc.code, int) or exc.code is None:
            return exc.code or 0
        raise CliError(str(exc.code)) from None


def cmd_version(opts: argparse.Namespace) -> int:
    """``memif version``."""
    _say(f"{PROG} {_version_text()}")
    return 0
