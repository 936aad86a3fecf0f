"""``memif demo`` (the loopback demo of :mod:`memif_cffi.demo`) and ``memif version``."""

from __future__ import annotations

import argparse

from memif_cffi.cli.common import (
    PROG,
    CliError,
    Commands,
    add_command,
    add_interface_options,
    int_type,
    say,
    version_text,
)

__all__ = ["cmd_demo", "cmd_version", "register"]


def register(commands: Commands) -> None:
    """Add the ``demo`` and ``version`` subcommands."""
    p = add_command(
        commands, "demo", "run the loopback demo (master and slave in this process)",
        "Run the loopback demo: a master and a slave in one process send --count frames "
        "each way (spread over --queues queues), check every one and print the rates. "
        "The interface options apply to both sides; --role says which side is created "
        "first (a slave created first retries until its master appears).")
    add_interface_options(p, "demo", None, default_socket=None)
    p.add_argument("--count", type=int_type(0, 2**63, "the count"), default=1_000_000,
                   metavar="N", help="frames per direction (default 1000000)")
    p.add_argument("--size", type=int_type(8, 65535, "the size"), default=64,
                   metavar="BYTES", help="frame size in bytes, 8..65535 (default 64)")
    p.add_argument("--burst", type=int_type(1, 4096, "the burst"), default=64, metavar="N",
                   help="frames per call, 1..4096 (default 64)")
    p.set_defaults(func=cmd_demo)

    p = add_command(commands, "version", "print the version",
                    "Print the package version and the library's.")
    p.set_defaults(func=cmd_version)


def cmd_demo(opts: argparse.Namespace) -> int:
    """``memif demo``: the loopback demo of :mod:`memif_cffi.demo`."""
    from memif_cffi import demo

    args = argparse.Namespace(
        count=opts.count, size=opts.size, burst=opts.burst,
        ring_log2=opts.ring_size.bit_length() - 1, socket=opts.socket, first=opts.role,
        id=opts.id, secret=opts.secret or "", mode=opts.mode, queues=opts.queues,
        buffer_size=opts.buffer_size)
    problem = demo.check_options(args)
    if problem is not None:
        raise CliError(problem)
    try:
        return demo.run(args)
    except SystemExit as exc:
        if isinstance(exc.code, int) or exc.code is None:
            return exc.code or 0
        raise CliError(str(exc.code)) from None


def cmd_version(opts: argparse.Namespace) -> int:
    """``memif version``."""
    say(f"{PROG} {version_text()}")
    return 0
