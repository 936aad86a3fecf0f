"""Docstrings on every public name; the package exports what architecture.md lists."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import memif_cffi as memif
from memif_cffi import aio

DOC = Path(__file__).resolve().parents[2] / "docs" / "python-api.md"


def public_members(obj: object) -> list[tuple[str, object]]:
    return [(name, value) for name, value in vars(obj).items()
            if not name.startswith("_") or name in ("__init__", "__enter__", "__aiter__")]


def targets() -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for module in (memif, aio):
        for name in module.__all__:
            value = getattr(module, name)
            if name in ("ffi", "lib", "__version__", "BY_CODE", "MAX_PACKET"):
                continue
            out.append((f"{module.__name__}.{name}", value))
            if inspect.isclass(value) and value.__module__.startswith("memif_cffi"):
                for member, attr in public_members(value):
                    if isinstance(attr, (property, staticmethod, classmethod)) or callable(attr):
                        out.append((f"{module.__name__}.{name}.{member}", attr))
    return out


@pytest.mark.parametrize(("name", "obj"), targets(), ids=[t[0] for t in targets()])
def test_public_names_have_docstrings(name: str, obj: object) -> None:
    if name.endswith("__init__") or name.endswith("__enter__") or name.endswith("__aiter__"):
        return  # documented by their class
    doc = obj.__doc__ if not isinstance(obj, property) else (obj.fget.__doc__ if obj.fget else None)
    assert doc and doc.strip(), f"{name} has no docstring"


def test_contract_names_exist() -> None:
    for path in ("Context.socket", "Context.interface", "Context.poll", "Context.close",
                 "Context.fileno", "Interface.wait_connected", "Interface.tx", "Interface.rx",
                 "Interface.details", "Interface.counters", "Interface.connected",
                 "Interface.close", "TxQueue.send", "TxQueue.send_burst", "TxQueue.send_batch",
                 "RxQueue.recv_burst", "RxQueue.recv_into", "RxQueue.views", "RxQueue.fileno",
                 "RxQueue.mode"):
        cls, attr = path.split(".")
        assert hasattr(getattr(memif, cls), attr), path
    for name in ("PacketBatch", "Role", "Mode", "RxMode", "MemifError", "aio"):
        assert name in memif.__all__
    assert (Path(memif.__file__).parent / "py.typed").exists()


def test_docs_have_an_example_per_level() -> None:
    text = DOC.read_text()
    for needle in ("recv_burst", "send_burst", "PacketBatch", "recv_into", "send_batch",
                   ".views(", "aio.Context", "selector", "fileno()"):
        assert needle in text, needle


def runnable_examples() -> list[str]:
    blocks = DOC.read_text().split("```python\n")[1:]
    return [b.split("```")[0] for b in blocks if b.startswith("# runnable")]


@pytest.mark.parametrize("index", range(len(runnable_examples())))
def test_doc_examples_run(index: int, capsys: pytest.CaptureFixture[str]) -> None:
    code = runnable_examples()[index]
    exec(compile(code, f"{DOC.name}[example {index}]", "exec"), {"__name__": "__doc_example__"})
    # A print whose line ends in a comment shows its output there: check it.
    shown = [line.split("#", 1)[1].strip() for line in code.splitlines()
             if line.strip().startswith("print(") and "#" in line]
    printed = capsys.readouterr().out.splitlines()
    for expected in shown:
        # "..." ends the part of a long output that the comment shows.
        head = expected.split("...")[0]
        assert any(line == expected or ("..." in expected and line.startswith(head))
                   for line in printed), (expected, printed)
