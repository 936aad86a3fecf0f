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

This module builds the parser and runs a subcommand with the error and
signal handling; :mod:`~memif_cffi.cli.common` holds what the subcommands
share, and each subcommand lives in its own module (:mod:`~memif_cffi.cli.responder`,
:mod:`~memif_cffi.cli.ping`, :mod:`~memif_cffi.cli.bench`, :mod:`~memif_cffi.cli.capture`,
:mod:`~memif_cffi.cli.details`, :mod:`~memif_cffi.cli.misc`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence

from memif_cffi.cli import bench, capture, details, misc, ping, responder
from memif_cffi.cli.common import (
    PROG,
    CliError,
    CliParser,
    Interrupts,
    describe_error,
    print_error,
    version_text,
)
from memif_cffi.errors import MemifError

__all__ = ["CliError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``memif`` command."""
    parser = CliParser(
        prog=PROG,
        description="memif tools: answer pings, ping, benchmark, capture and inspect memif "
                    "links (VPP, DPDK net_memif, libmemif applications).",
        epilog=f"'{PROG} <command> --help' describes each command.",
    )
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {version_text()}")
    commands = parser.add_subparsers(dest="command", metavar="<command>", title="commands",
                                     parser_class=CliParser)
    for module in (responder, ping, bench, capture, details, misc):
        module.register(commands)
    return parser


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
        with Interrupts():
            return func(opts)
    except CliError as exc:
        print_error(prog, str(exc))
        return exc.status
    except BrokenPipeError:
        # The reader of our output went away (``memif ... | head``): stop quietly,
        # and keep the interpreter from complaining while it flushes at exit.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print_error(prog, "interrupted")
        return 130
    except (MemifError, OSError, ValueError, TimeoutError) as exc:
        print_error(prog, describe_error(exc))
        return 1
    except Exception as exc:
        if os.environ.get("MEMIF_CLI_DEBUG"):
            raise
        print_error(prog, f"unexpected {type(exc).__name__}: {describe_error(exc)} "
                          "(set MEMIF_CLI_DEBUG=1 for a traceback)")
        return 1
