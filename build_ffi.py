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

``MEMIF_CFFI_SYSTEM_LIBMEMIF=1`` builds against an installed libmemif 3.1
instead of the bundled sources, to compare the two (differential testing): the
module links with ``-lmemif``, compiles against the installed ``libmemif.h`` and
``memif.h``, and keeps its own helpers (``_support.c``). Headers and library
come from the compiler's default paths, or from the prefix named by
``MEMIF_CFFI_SYSTEM_LIBMEMIF_PREFIX`` (``PREFIX/include`` or
``PREFIX/include/libmemif``, ``PREFIX/lib``; the module then records that
library directory as its run path). Such a module calls nothing outside the
3.1 API: the four extensions of the bundled library that the package uses are
supplied by ``memif_cffi/_system_libmemif.c`` (see its header for what differs).
"""

from __future__ import annotations

import argparse
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

# Build against an installed libmemif (see the module docstring).
SYSTEM_ENV = "MEMIF_CFFI_SYSTEM_LIBMEMIF"
PREFIX_ENV = "MEMIF_CFFI_SYSTEM_LIBMEMIF_PREFIX"

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


def system_libmemif() -> bool:
    """True when ``MEMIF_CFFI_SYSTEM_LIBMEMIF`` asks for an installed libmemif."""
    return os.environ.get(SYSTEM_ENV, "").strip() not in ("", "0")


def system_dirs() -> tuple[list[str], list[str]]:
    """Include and library directories of an installed libmemif (may be empty)."""
    prefix = os.environ.get(PREFIX_ENV, "")
    if not prefix:
        # Compiler defaults, plus the include/libmemif layout some installs use.
        includes = [d for d in ("/usr/local/include/libmemif", "/usr/include/libmemif")
                    if os.path.isdir(d)]
        return includes, []
    includes = [d for d in (os.path.join(prefix, "include", "libmemif"),
                            os.path.join(prefix, "include"))
                if os.path.isfile(os.path.join(d, "libmemif.h"))]
    if not includes:
        raise RuntimeError(f"{PREFIX_ENV}={prefix}: no libmemif.h in PREFIX/include")
    libdirs = [d for d in (os.path.join(prefix, "lib"), os.path.join(prefix, "lib64"))
               if os.path.isdir(d)]
    return includes, libdirs


def make_ffi(root: str = "") -> FFI:
    """Build the FFI object; ``root`` prefixes every path ("" = current directory)."""
    builder = FFI()
    builder.cdef(read_cdef(root or "."))
    version = package_version(root or ".")
    package_dir = os.path.join(root, "memif_cffi")
    support_depends = [os.path.join(package_dir, "_support.h")]
    if system_libmemif():
        includes, libdirs = system_dirs()
        builder.set_source(
            MODULE_NAME,
            '#include "_support.h"\n#include "_system_libmemif.h"\n',
            sources=[
                os.path.join(package_dir, "_support.c"),
                os.path.join(package_dir, "_system_libmemif.c"),
            ],
            include_dirs=[*includes, package_dir],
            library_dirs=libdirs,
            runtime_library_dirs=libdirs,
            libraries=["memif"],
            define_macros=[
                ("MEMIF_CFFI_VERSION", f'"{version}"'),
                ("MEMIF_CFFI_SYSTEM_LIBMEMIF", "1"),
            ],
            extra_compile_args=BASE_CFLAGS + extra_flags(),
            extra_link_args=["-pthread", *extra_flags()],
            depends=[*support_depends, os.path.join(package_dir, "_system_libmemif.h")],
        )
        return builder
    sources = [os.path.join(root, "libmemif-src", "src", name) for name in LIBMEMIF_SOURCES]
    sources.append(os.path.join(package_dir, "_support.c"))
    builder.set_source(
        MODULE_NAME,
        '#include "_support.h"\n',
        sources=sources,
        include_dirs=[
            os.path.join(root, "libmemif-src", "include"),
            os.path.join(root, "libmemif-src", "src"),
            package_dir,
        ],
        define_macros=[("MEMIF_CFFI_VERSION", f'"{version}"')],
        extra_compile_args=BASE_CFLAGS + extra_flags(),
        extra_link_args=["-pthread", *extra_flags()],
        depends=[
            os.path.join(root, "libmemif-src", "include", "libmemif.h"),
            os.path.join(root, "libmemif-src", "include", "memif.h"),
            os.path.join(root, "libmemif-src", "src", "memif_private.h"),
            *support_depends,
        ],
    )
    return builder


if __name__ != "__main__":
    # setuptools (cffi_modules) runs this file from the project root.
    ffi = make_ffi()


def main(argv: list[str] | None = None) -> int:
    """Compile the module and copy it into the package directory (or ``--out-dir``)."""
    root = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description="Build memif_cffi._libmemif in place.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the compiler commands")
    parser.add_argument("--tmpdir", default=os.path.join(root, "build", "cffi"),
                        help="where to compile (default: build/cffi)")
    parser.add_argument("--out-dir", default=os.path.join(root, "memif_cffi"),
                        help="where to put the module (default: the package directory)")
    opts = parser.parse_args(argv)
    os.makedirs(opts.tmpdir, exist_ok=True)
    os.makedirs(opts.out_dir, exist_ok=True)
    built = make_ffi(root).compile(tmpdir=opts.tmpdir, verbose=opts.verbose)
    target = os.path.join(opts.out_dir, os.path.basename(built))
    shutil.copyfile(built, target + ".tmp")
    os.replace(target + ".tmp", target)
    shown = os.path.relpath(target)
    if shown.startswith(os.pardir):
        shown = target
    kind = " against the installed libmemif" if system_libmemif() else ""
    print(f"built {shown}{kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
