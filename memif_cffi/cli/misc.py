"""``memif demo`` (the loopback demo of :mod:`memif_cffi.demo`) and ``memif version``."""

from __future__ import annotations

import argparse

from memif_cffi.cli.common import (
    PROG,
    CliError,
    Commands,
    add_command,
    int_type,
    ring_size,
    say,
    version_text,
)

__all__ = ["cmd_demo", "cmd_version", "register"]


def register(commands: Commands) -> None:
    """Add the ``demo`` and ``version`` subcommands."""
    p = add_command(
        commands, "demo", "run the loopback demo (master and slave in this process)",
        "Run the loopback demo: a master and a slave in one process, on a socket in a "
        "temporary directory, send --count frames each way, check every one and print "
        "the rates. It connects to nothing else, so it takes no interface options.")
    p.add_argument("--count", type=int_type(0, 2**63, "the count"), default=1_000_000,
                   metavar="N", help="frames per direction (default 1000000)")
    p.add_argument("--size", type=int_type(8, 65535, "the size"), default=64,
                   metavar="BYTES", help="frame size in bytes, 8..65535 (default 64)")
    p.add_argument("--burst", type=int_type(1, 4096, "the burst"), default=64, metavar="N",
                   help="frames per call, 1..4096 (default 64)")
    p.add_argument("--ring-size", type=ring_size, default=1024, metavar="SLOTS",
                   help="slots per ring, a power of two 2..16384 (default 1024)")
    p.set_defaults(func=cmd_demo)

    p = add_command(commands, "version", "print the version",
                    "Print the package version and the library's.")
    p.set_defaults(func=cmd_version)


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
    say(f"{PROG} {version_text()}")
    return 0
