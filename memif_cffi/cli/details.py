"""``memif details``: connect and print what the library knows about the link."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
from collections.abc import Iterator
from typing import Any

from memif_cffi.cli.common import Commands, Session, add_command, add_interface_options, say
from memif_cffi.info import InterfaceDetails

__all__ = ["cmd_details", "register"]


def register(commands: Commands) -> None:
    """Add the ``details`` subcommand."""
    p = add_command(
        commands, "details", "connect and print the interface details",
        "Connect, then print what the library reports about the interface: names, role, "
        "peer, link state, shared-memory regions and queues.")
    add_interface_options(p, "details", "seconds to wait for the connection (default 5)")
    p.add_argument("--json", action="store_true", help="print the details as JSON")
    p.set_defaults(func=cmd_details)


def _plain(value: Any) -> Any:
    """``value`` for JSON: enum members as their lower-case names, tuples as lists."""
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _details_lines(d: InterfaceDetails) -> Iterator[str]:
    """The details as text: the interface, then its regions and queues as tables."""
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
        say(json.dumps(_plain(dataclasses.asdict(details)), indent=2))
    else:
        for line in _details_lines(details):
            say(line)
    return 0
