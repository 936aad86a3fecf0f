"""Sizes, offsets and constants of every public and wire structure.

Two independent views are compared with the tables of the specs
(libmemif-api §2, §3, §5; memif-protocol §2, §4.2, §5.3, §5.4):

* what the cffi module was compiled with (``ffi.sizeof`` / ``ffi.offsetof``
  where cffi can see the field);
* a small C program compiled with gcc against ``libmemif-src/include`` that
  prints ``sizeof`` / ``offsetof`` / ``_Alignof`` of everything, including the
  enum bit-fields cffi cannot reach (``memif_conn_args_t.mode``,
  ``memif_msg_t.type``, ``memif_msg_init_t.mode``), and every macro value.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from lowpair import ERROR_NAMES

from memif_cffi.lowlevel import ffi, lib

ROOT = Path(__file__).resolve().parent.parent
INCLUDE = ROOT / "libmemif-src" / "include"

# (struct, field) -> offset, from the spec tables.
PUBLIC_OFFSETS = {
    "memif_conn_args_t": {
        "socket": 0, "secret": 8, "num_s2m_rings": 32, "num_m2s_rings": 33,
        "buffer_size": 34, "log2_ring_size": 36, "is_master": 37, "interface_id": 40,
        "interface_name": 44,
    },
    "memif_buffer_t": {"desc_index": 0, "ring": 8, "len": 16, "flags": 20, "data": 24},
    "memif_queue_details_t": {
        "region": 0, "qid": 1, "ring_size": 4, "flags": 8, "head": 10, "tail": 12,
        "buffer_size": 14,
    },
    "memif_region_details_t": {"index": 0, "addr": 8, "size": 16, "fd": 20, "is_external": 24},
    "memif_details_t": {
        "if_name": 0, "inst_name": 8, "remote_if_name": 16, "remote_inst_name": 24, "id": 32,
        "secret": 40, "role": 48, "mode": 49, "socket_filename": 56, "regions_num": 64,
        "regions": 72, "rx_queues_num": 80, "tx_queues_num": 81, "rx_queues": 88,
        "tx_queues": 96, "error": 104, "link_up_down": 112,
    },
}
PUBLIC_SIZES = {
    "memif_conn_args_t": (80, 8),
    "memif_buffer_t": (32, 8),
    "memif_queue_details_t": (16, 4),
    "memif_region_details_t": (32, 8),
    "memif_details_t": (120, 8),
}

WIRE_OFFSETS = {
    "memif_msg_hello_t": {
        "name": 0, "min_version": 32, "max_version": 34, "max_region": 36,
        "max_m2s_ring": 38, "max_s2m_ring": 40, "max_log2_ring_size": 42,
    },
    "memif_msg_init_t": {"version": 0, "id": 2, "secret": 7, "name": 31},
    "memif_msg_add_region_t": {"index": 0, "size": 2},
    "memif_msg_add_ring_t": {
        "flags": 0, "index": 2, "region": 4, "offset": 6, "log2_ring_size": 10,
        "private_hdr_size": 11,
    },
    "memif_msg_connect_t": {"if_name": 0},
    "memif_msg_connected_t": {"if_name": 0},
    "memif_msg_disconnect_t": {"code": 0, "string": 4},
    "memif_msg_t": {
        "hello": 2, "init": 2, "add_region": 2, "add_ring": 2, "connect": 2, "connected": 2,
        "disconnect": 2,
    },
    "memif_desc_t": {"flags": 0, "region": 2, "length": 4, "offset": 8, "metadata": 12},
    "memif_ring_t": {"cookie": 0, "flags": 4, "head": 6, "tail": 64, "desc": 128},
}
WIRE_SIZES = {
    "memif_msg_hello_t": 43,
    "memif_msg_init_t": 63,
    "memif_msg_add_region_t": 10,
    "memif_msg_add_ring_t": 13,
    "memif_msg_connect_t": 32,
    "memif_msg_connected_t": 32,
    "memif_msg_disconnect_t": 100,
    "memif_msg_t": 128,
    "memif_desc_t": 16,
    "memif_ring_t": 128,
}

# Bit-fields: (struct, field) -> (byte offset, width in bytes).
BITFIELDS = {
    ("memif_conn_args_t", "mode"): (76, 1),
    ("memif_msg_init_t", "mode"): (6, 1),
    ("memif_msg_t", "type"): (0, 2),
}

MACROS = {
    # libmemif.h (libmemif-api §2, §3)
    "MEMIF_FD_EVENT_READ": 1, "MEMIF_FD_EVENT_WRITE": 2, "MEMIF_FD_EVENT_ERROR": 4,
    "MEMIF_FD_EVENT_DEL": 8, "MEMIF_FD_EVENT_MOD": 16,
    "MEMIF_BUFFER_FLAG_NEXT": 1, "MEMIF_BUFFER_FLAG_RX": 2,
    "MEMIF_QUEUE_FLAG_POLLING": 1, "MEMIF_HAVE_CANCEL_POLL_EVENT": 1,
    "MEMIF_RX_MODE_INTERRUPT": 0, "MEMIF_RX_MODE_POLLING": 1,
    "MEMIF_INTERFACE_MODE_ETHERNET": 0, "MEMIF_INTERFACE_MODE_IP": 1,
    "MEMIF_INTERFACE_MODE_PUNT_INJECT": 2,
    # memif.h (memif-protocol §2, §4.1)
    "MEMIF_CACHELINE_SIZE": 64, "MEMIF_COOKIE": 0x3E31F20, "MEMIF_VERSION_MAJOR": 2,
    "MEMIF_VERSION_MINOR": 0, "MEMIF_VERSION": 0x0200, "MEMIF_MSG_ADD_RING_FLAG_S2M": 1,
    "MEMIF_DESC_FLAG_NEXT": 1, "MEMIF_RING_FLAG_MASK_INT": 1,
    "MEMIF_MSG_TYPE_NONE": 0, "MEMIF_MSG_TYPE_ACK": 1, "MEMIF_MSG_TYPE_HELLO": 2,
    "MEMIF_MSG_TYPE_INIT": 3, "MEMIF_MSG_TYPE_ADD_REGION": 4, "MEMIF_MSG_TYPE_ADD_RING": 5,
    "MEMIF_MSG_TYPE_CONNECT": 6, "MEMIF_MSG_TYPE_CONNECTED": 7,
    "MEMIF_MSG_TYPE_DISCONNECT": 8, "MEMIF_RING_S2M": 0, "MEMIF_RING_M2S": 1,
}
MACROS.update({name: code for code, name in enumerate(ERROR_NAMES)})

SCALAR_TYPEDEFS = {
    "memif_region_index_t": 2, "memif_region_offset_t": 4, "memif_region_size_t": 8,
    "memif_ring_index_t": 2, "memif_interface_id_t": 4, "memif_version_t": 2,
    "memif_log2_ring_size_t": 1,
}


def _layout_program() -> str:
    lines = [
        "#include <stddef.h>",
        "#include <stdio.h>",
        "#include <string.h>",
        '#include "memif.h"',
        '#include "libmemif.h"',
        "",
        "/* Byte range touched by a bit-field: the first and the last non-zero byte. */",
        "static void span (const char *name, const void *p, size_t n)",
        "{",
        "  const unsigned char *b = p;",
        "  long first = -1, last = -1;",
        "  for (size_t i = 0; i < n; i++)",
        "    if (b[i]) { if (first < 0) first = (long) i; last = (long) i; }",
        '  printf ("bitfield %s %ld %ld\\n", name, first, last - first + 1);',
        "}",
        "",
        "int main (void)",
        "{",
    ]
    for struct, fields in {**PUBLIC_OFFSETS, **WIRE_OFFSETS}.items():
        lines.append(f'  printf ("sizeof {struct} %zu\\n", sizeof ({struct}));')
        lines.append(f'  printf ("alignof {struct} %zu\\n", _Alignof ({struct}));')
        for name in fields:
            lines.append(
                f'  printf ("offsetof {struct}.{name} %zu\\n", offsetof ({struct}, {name}));')
    for name in SCALAR_TYPEDEFS:
        lines.append(f'  printf ("sizeof {name} %zu\\n", sizeof ({name}));')
    for name in MACROS:
        lines.append(f'  printf ("value {name} %lld\\n", (long long) ({name}));')
    lines += [
        '  printf ("string LIBMEMIF_VERSION %s\\n", LIBMEMIF_VERSION);',
        '  printf ("string MEMIF_DEFAULT_APP_NAME %s\\n", MEMIF_DEFAULT_APP_NAME);',
        "  {",
        "    memif_conn_args_t a;",
        "    memset (&a, 0, sizeof a);",
        "    a.mode = MEMIF_INTERFACE_MODE_PUNT_INJECT;",
        '    span ("memif_conn_args_t.mode", &a, sizeof a);',
        "  }",
        "  {",
        "    memif_msg_init_t m;",
        "    memset (&m, 0, sizeof m);",
        "    m.mode = MEMIF_INTERFACE_MODE_IP;",
        '    span ("memif_msg_init_t.mode", &m, sizeof m);',
        "  }",
        "  {",
        "    memif_msg_t m;",
        "    memset (&m, 0, sizeof m);",
        "    m.type = (memif_msg_type_t) 0x0808;",
        '    span ("memif_msg_t.type", &m, sizeof m);',
        "  }",
        "  return 0;",
        "}",
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What gcc says about the headers: 'kind name' -> value text."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is required to check the C layouts")
    tmp = tmp_path_factory.mktemp("layout")
    src = tmp / "layout.c"
    src.write_text(_layout_program())
    exe = tmp / "layout"
    build = subprocess.run(
        ["gcc", "-std=gnu11", "-Wall", "-Wextra", "-Werror", f"-I{INCLUDE}", str(src), "-o",
         str(exe)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30, check=True)
    result: dict[str, str] = {}
    for line in run.stdout.splitlines():
        kind, name, value = line.split(" ", 2)
        result[f"{kind} {name}"] = value
    return result


@pytest.mark.parametrize("struct", sorted({**PUBLIC_OFFSETS, **WIRE_OFFSETS}))
def test_c_struct_layout(c_layout: dict[str, str], struct: str) -> None:
    fields = {**PUBLIC_OFFSETS, **WIRE_OFFSETS}[struct]
    got = {name: int(c_layout[f"offsetof {struct}.{name}"]) for name in fields}
    assert got == fields
    if struct in PUBLIC_SIZES:
        size, align = PUBLIC_SIZES[struct]
        assert int(c_layout[f"sizeof {struct}"]) == size
        assert int(c_layout[f"alignof {struct}"]) == align
    else:
        assert int(c_layout[f"sizeof {struct}"]) == WIRE_SIZES[struct]
    if struct == "memif_msg_t":
        assert int(c_layout["alignof memif_msg_t"]) == 128


def test_c_bitfields(c_layout: dict[str, str]) -> None:
    for (struct, name), (offset, width) in BITFIELDS.items():
        first, n = (int(v) for v in c_layout[f"bitfield {struct}.{name}"].split())
        assert (first, n) == (offset, width), f"{struct}.{name}"


def test_c_scalar_typedefs(c_layout: dict[str, str]) -> None:
    for name, size in SCALAR_TYPEDEFS.items():
        assert int(c_layout[f"sizeof {name}"]) == size, name


def test_c_macros_and_enums(c_layout: dict[str, str]) -> None:
    got = {name: int(c_layout[f"value {name}"]) for name in MACROS}
    assert got == MACROS
    assert c_layout["string LIBMEMIF_VERSION"] == "3.1"
    assert c_layout["string MEMIF_DEFAULT_APP_NAME"] == "libmemif-app"


@pytest.mark.parametrize("struct", sorted(PUBLIC_OFFSETS))
def test_cffi_public_struct_layout(struct: str) -> None:
    size, align = PUBLIC_SIZES[struct]
    assert ffi.sizeof(struct) == size
    assert ffi.alignof(struct) == align
    for name, offset in PUBLIC_OFFSETS[struct].items():
        assert ffi.offsetof(struct, name) == offset, f"{struct}.{name}"


def test_cffi_shared_memory_layout() -> None:
    assert ffi.sizeof("memif_desc_t") == 16
    for name, offset in WIRE_OFFSETS["memif_desc_t"].items():
        assert ffi.offsetof("memif_desc_t", name) == offset, name
    assert ffi.sizeof("memif_ring_t") == 128
    for name in ("cookie", "flags", "head", "tail", "desc"):
        assert ffi.offsetof("memif_ring_t", name) == WIRE_OFFSETS["memif_ring_t"][name], name
    for name, size in SCALAR_TYPEDEFS.items():
        assert ffi.sizeof(name) == size, name


def test_cffi_mode_bitfield_is_byte_76() -> None:
    args = ffi.new("memif_conn_args_t *")
    for mode in (1, 2, 0):
        lib.memif_cffi_args_set_mode(args, mode)
        raw = bytes(ffi.buffer(args))
        assert raw[76] == mode
        assert raw[:76] == bytes(76) and raw[77:] == bytes(3)
        assert lib.memif_cffi_args_get_mode(args) == mode


def test_cffi_constants() -> None:
    for name, value in MACROS.items():
        assert getattr(lib, name) == value, name
    assert ffi.string(lib.LIBMEMIF_VERSION) == b"3.1"
    assert ffi.string(lib.MEMIF_DEFAULT_APP_NAME) == b"libmemif-app"


def test_error_enum_is_exactly_0_to_39() -> None:
    names = sorted(n for n in dir(lib) if n.startswith("MEMIF_ERR_"))
    assert names == sorted(ERROR_NAMES)
    assert [getattr(lib, n) for n in ERROR_NAMES] == list(range(40))
