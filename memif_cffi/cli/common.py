"""What the subcommands of the ``memif`` command share.

* :class:`CliError`, the failure reported as one line, and :class:`CliParser`,
  whose usage errors are one line too;
* the argument types (:func:`int_type`, :func:`float_type`, :func:`ring_size`,
  :func:`limited_text`, :func:`ipv4`, :func:`mac`, :func:`socket_path`);
* :func:`add_interface_options`, the options of every connecting subcommand,
  and :class:`Session`, the Context and interface made from them;
* :class:`Interrupts`, which turns Ctrl+C and SIGTERM into a flag that the
  command loops check between polls (:func:`check_interrupt`);
* the output helpers (:func:`say`, :func:`print_error`) and the texts of
  status lines (:func:`queue_text`, :func:`link_down_reason`,
  :func:`describe_error`, :func:`version_text`).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import IO, Any, NoReturn, TypeAlias

from memif_cffi import packets
from memif_cffi._version import __version__
from memif_cffi.context import Context
from memif_cffi.enums import Mode, Role
from memif_cffi.errors import MemifError
from memif_cffi.interface import Interface
from memif_cffi.lowlevel import ffi, lib

__all__ = [
    "APP_NAME",
    "DEFAULT_SOCKET",
    "IPV4_HEADER",
    "POLL_STEP",
    "PROG",
    "RECONNECT_INTERVAL",
    "CliError",
    "CliParser",
    "Commands",
    "Interrupts",
    "Session",
    "add_command",
    "add_interface_options",
    "check_interrupt",
    "describe_error",
    "float_type",
    "int_type",
    "ipv4",
    "limited_text",
    "link_down_reason",
    "mac",
    "print_error",
    "queue_text",
    "ring_size",
    "say",
    "send_all",
    "socket_path",
    "version_text",
]

#: The command's name, the first word of its usage and error lines.
PROG = "memif"
#: The control socket used when ``--socket`` is not given (VPP's default).
DEFAULT_SOCKET = "/run/vpp/memif.sock"
#: Instance name this tool announces to peers.
APP_NAME = "memif_cffi"
#: Seconds between a disconnected slave's connection attempts.
RECONNECT_INTERVAL = 0.25
#: Longest a single ``Context.poll`` waits, so that Ctrl+C, --duration and
#: --count are noticed promptly.
POLL_STEP = 0.05
#: Bytes of an IPv4 header without options.
IPV4_HEADER = 20

#: What ``ArgumentParser.add_subparsers`` returns; each subcommand module adds
#: its parsers to it.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CliError(Exception):
    """A failure reported as one line on stderr (exit status :attr:`status`)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class Interrupts:
    """Ctrl+C and SIGTERM while a command runs, raised where it is safe to stop.

    Python raises ``KeyboardInterrupt`` at whatever bytecode runs when the
    signal arrives; inside a lock-protected section (of this package, of the
    interpreter's tracing tools) that leaves the lock held and the exit that
    follows waits for it forever. So the first signal only sets a flag, and
    :func:`check_interrupt`, called by the command loops after each poll
    (at most :data:`POLL_STEP` apart), raises ``KeyboardInterrupt`` there. A
    second signal raises at once, for a command that stopped checking.

    Only the main thread can install signal handlers; elsewhere (``main()``
    run from a worker thread) signals keep their present handling. A signal
    ignored when the command starts (SIGINT in a background job) stays ignored.
    """

    requested = False

    def __init__(self) -> None:
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        Interrupts.requested = False
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._old[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
        Interrupts.requested = False

    @staticmethod
    def _on_signal(signum: int, frame: FrameType | None) -> None:
        if Interrupts.requested:
            raise KeyboardInterrupt
        Interrupts.requested = True


def check_interrupt() -> None:
    """Raise ``KeyboardInterrupt`` when Ctrl+C or SIGTERM arrived (see :class:`Interrupts`)."""
    if Interrupts.requested:
        raise KeyboardInterrupt


class CliParser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line: ``memif <cmd>: error: ...``."""

    def error(self, message: str) -> NoReturn:
        """Exit with status 2 after one line naming the problem and the help option."""
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def add_command(commands: Commands, name: str, help_text: str,
                description: str) -> argparse.ArgumentParser:
    """Add the parser of the subcommand ``name``, listed in the help with ``help_text``."""
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text,
                                                          description=description)
    return parser


# ------------------------------------------------------------------ argument types


def int_type(low: int, high: int, what: str = "value") -> Callable[[str], int]:
    """An argument type: an integer (decimal, or with a 0x/0o/0b prefix) in ``low..high``."""
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


def float_type(low: float, what: str = "value", *, inclusive: bool = True
               ) -> Callable[[str], float]:
    """An argument type: a finite number ``>= low`` (``> low`` unless ``inclusive``)."""
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


def ring_size(text: str) -> int:
    """The argument type of ``--ring-size``: a power of two from 2 to 16384."""
    value = int_type(2, 16384, "the ring size")(text)
    if value & (value - 1):
        raise argparse.ArgumentTypeError(
            f"the ring size must be a power of two from 2 to 16384, not {value}")
    return value


def limited_text(limit: int, what: str) -> Callable[[str], str]:
    """An argument type: text of at most ``limit`` bytes (file system encoding), no NUL."""
    def parse(text: str) -> str:
        size = len(os.fsencode(text))
        if size > limit:
            raise argparse.ArgumentTypeError(f"{what} is {size} bytes long; the limit is {limit}")
        if "\0" in text:
            raise argparse.ArgumentTypeError(f"{what} must not contain NUL characters")
        return text

    parse.__name__ = what
    return parse


def ipv4(text: str) -> str:
    """The argument type of an IPv4 address; returns it as a dotted quad."""
    try:
        return packets.ip_str(packets.ip_bytes(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IPv4 address: {text!r}") from None


def mac(text: str) -> str:
    """The argument type of a MAC address; returns it as ``aa:bb:cc:dd:ee:ff``."""
    try:
        return packets.mac_str(packets.mac_bytes(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a MAC address (aa:bb:cc:dd:ee:ff): {text!r}") from None


def socket_path(text: str) -> str:
    """The argument type of ``--socket``: a path or ``@name``, at most 107 bytes."""
    if text in ("", "@"):
        raise argparse.ArgumentTypeError("the socket path must not be empty")
    return limited_text(107, "the socket path")(text)


# ------------------------------------------------------------------ interface options


def add_interface_options(parser: argparse.ArgumentParser, command: str,
                          timeout_help: str | None, *,
                          default_socket: str | None = DEFAULT_SOCKET) -> None:
    """Add the options every subcommand shares (``--timeout`` with its help, if given)."""
    group = parser.add_argument_group("interface")
    where = default_socket or "one in a temporary directory"
    group.add_argument("--socket", type=socket_path, default=default_socket, metavar="PATH",
                       help=f'control socket: a path, or "@name" for an abstract socket '
                            f"(default {where})")
    group.add_argument("--role", choices=("slave", "master"), default="slave",
                       help="slave connects to the socket, master listens on it "
                            "(default slave)")
    group.add_argument("--id", type=int_type(0, 2**32 - 1, "the interface id"), default=0,
                       help="interface id, must match the peer's (default 0)")
    group.add_argument("--secret", type=limited_text(24, "the secret"), default=None,
                       help="shared secret, must match the peer's (at most 24 bytes)")
    group.add_argument("--mode", choices=("ethernet", "ip"), default="ethernet",
                       help="interface mode, must match the peer's (default ethernet)")
    group.add_argument("--queues", type=int_type(1, 255, "the number of queues"), default=1,
                       metavar="N",
                       help="rx and tx queues (default 1; a master uses the slave's numbers)")
    group.add_argument("--ring-size", type=ring_size, default=1024, metavar="SLOTS",
                       help="slots per ring, a power of two 2..16384 (default 1024)")
    group.add_argument("--buffer-size", type=int_type(1, 65535, "the buffer size"),
                       default=2048, metavar="BYTES",
                       help="bytes per buffer; larger frames are chained (default 2048)")
    group.add_argument("--name", type=limited_text(32, "the interface name"), default=None,
                       help=f"interface name sent to the peer (default memif-{command})")
    if timeout_help is not None:
        group.add_argument("--timeout", type=float_type(0, "the timeout", inclusive=False),
                           default=None, metavar="SECONDS", help=timeout_help)


# ------------------------------------------------------------------ connecting


class Session:
    """One Context with one interface made from the interface options."""

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
            raise CliError(f"cannot {verb} {self.path}: {describe_error(exc)}") from None
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
            self.poll(step)
            if check is not None:
                check()

    def poll(self, timeout: float) -> None:
        """``Context.poll(timeout)``, then :func:`check_interrupt`."""
        self.ctx.poll(timeout)
        check_interrupt()

    def peer_text(self) -> str:
        """``peer IF (APP)`` for status lines."""
        d = self.intf.details
        return f"peer {d.remote_if_name or '?'} ({d.remote_inst_name or '?'})"

    def close(self) -> None:
        """Close the interface and its Context."""
        self.ctx.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def send_all(intf: Interface, qid: int, frames: list[bytes], patience: float = 0.05) -> int:
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


# ------------------------------------------------------------------ output


def say(text: str, stream: IO[str] | None = None) -> None:
    """Print a status line now (stdout is often a pipe)."""
    print(text, file=stream or sys.stdout, flush=True)


def print_error(prog: str, message: str) -> None:
    """Print ``PROG: error: MESSAGE`` on stderr, after what stdout still holds."""
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)


def describe_error(exc: BaseException) -> str:
    """One line saying what went wrong, without the exception machinery."""
    if isinstance(exc, MemifError):
        text = (exc.strerror or exc.name).rstrip(".")
        return f"{exc.message}: {text}" if exc.message else text
    if isinstance(exc, OSError) and exc.strerror:
        if exc.filename is not None:
            return f"{exc.filename}: {exc.strerror}"
        return exc.strerror
    return str(exc) or type(exc).__name__


def link_down_reason(intf: Interface) -> str:
    """``": <why the link went down>"``, or "" when unknown or we are closing it."""
    if intf.closed:
        return ""
    reason = intf.details.error.rstrip(".")
    return f": {reason}" if reason else ""


def queue_text(intf: Interface) -> str:
    """``N queue(s)``, or ``R rx / T tx queues`` when the counts differ."""
    rx, tx = len(intf.rx), len(intf.tx)
    return f"{rx} queue{'s' if rx != 1 else ''}" if rx == tx else f"{rx} rx / {tx} tx queues"


def version_text() -> str:
    """The package version with the library's API and protocol versions."""
    api = ffi.string(lib.LIBMEMIF_VERSION).decode()
    proto = f"{lib.MEMIF_VERSION_MAJOR}.{lib.MEMIF_VERSION_MINOR}"
    return f"{__version__} (libmemif {api} API, memif protocol {proto})"
