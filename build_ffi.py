"""API-mode cffi builder for ``memif_cffi._libmemif``.

The extension compiles the bundled libmemif sources (``libmemif-src/src``)
and the Python-support helpers (``memif_cffi/_support.c``) into one module.
The declarations cffi sees live in ``memif_cffi/_cdef/*.cdef``.

Used two ways:

* by setuptools, through ``cffi_modules = ["build_ffi.py:ffi"]`` in setup.py
  (``pip install .``), with paths relative to the project root;
* directly, ``python build_ffi.py``, which compiles in ``build/cffi`` and
  places the module next to the package sources (what ``make`` does).

Extra compiler/linker flags (for example ``-fsanitize=address``) can be added
with the environment variable ``MEMIF_CFFI_CFLAGS``; they are passed both to
the compiler and to the linker.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys

from cffi import FFI

MODULE_NAME = "memif_cffi._libmemif"

# The bundled C library, listed explicitly (one concern per file).
LIBMEMIF_SOURCES = [
    "errors.c",
    "msg.c",
    "ctrl.c",
    "sock.c",
    "shm.c",
    "datapath.c",
    "db.c",
    "details.c",
]

# cffi declarations, read in this order (memif.h's types come first).
CDEF_FILES = [
    "memif.h.cdef",
    "libmemif.h.cdef",
    "support.cdef",
    "callbacks.cdef",
]

BASE_CFLAGS = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror"]


def package_version(root: str) -> str:
    """Return ``__version__`` from ``memif_cffi/_version.py`` without importing it."""
    path = os.path.join(root, "memif_cffi", "_version.py")
    with open(path, encoding="utf-8") as f:
        match = re.search(r'^__version__\s*=\s*"([^"]+)"', f.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no __version__ in {path}")
    return match.group(1)


def read_cdef(root: str) -> str:
    """Concatenate the cdef files."""
    parts = []
    for name in CDEF_FILES:
        with open(os.path.join(root, "memif_cffi", "_cdef", name), encoding="utf-8") as f:
            parts.append(f.read())
    return "\n".join(parts)


def extra_flags() -> list[str]:
    """Flags from ``MEMIF_CFFI_CFLAGS`` (shell-quoted, may be empty)."""
    return shlex.split(os.environ.get("MEMIF_CFFI_CFLAGS", ""))


def make_ffi(root: str = "") -> FFI:
    """Build the FFI object; ``root`` prefixes every path ("" = current directory)."""
    builder = FFI()
    builder.cdef(read_cdef(root or "."))
    version = package_version(root or ".")
    sources = [os.path.join(root, "libmemif-src", "src", name) for name in LIBMEMIF_SOURCES]
    sources.append(os.path.join(root, "memif_cffi", "_support.c"))
    builder.set_source(
        MODULE_NAME,
        '#include "_support.h"\n',
        sources=sources,
        include_dirs=[
            os.path.join(root, "libmemif-src", "include"),
            os.path.join(root, "libmemif-src", "src"),
            os.path.join(root, "memif_cffi"),
        ],
        define_macros=[("MEMIF_CFFI_VERSION", f'"{version}"')],
        extra_compile_args=BASE_CFLAGS + extra_flags(),
        extra_link_args=["-pthread", *extra_flags()],
        depends=[
            os.path.join(root, "libmemif-src", "include", "libmemif.h"),
            os.path.join(root, "libmemif-src", "include", "memif.h"),
            os.path.join(root, "libmemif-src", "src", "memif_private.h"),
            os.path.join(root, "memif_cffi", "_support.h"),
        ],
    )
    return builder


if __name__ != "__main__":
    # setuptools (cffi_modules) runs this file from the project root.
    ffi = make_ffi()


def main() -> int:
    """Compile in build/cffi and copy the module into the package directory."""
    root = os.path.dirname(os.path.abspath(__file__))
    tmpdir = os.path.join(root, "build", "cffi")
    os.makedirs(tmpdir, exist_ok=True)
    built = make_ffi(root).compile(tmpdir=tmpdir, verbose="-v" in sys.argv)
    target = os.path.join(root, "memif_cffi", os.path.basename(built))
    shutil.copyfile(built, target + ".tmp")
    os.replace(target + ".tmp", target)
    print(f"built {os.path.relpath(target, root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
