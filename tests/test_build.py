"""Build checks: public headers, the shared library's exports, the extension module."""

from __future__ import annotations

import pickle
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INCLUDE = ROOT / "libmemif-src" / "include"

# The 30 functions of the libmemif 3.1 API.
API_FUNCTIONS = [
    "memif_get_version",
    "memif_strerror",
    "memif_init",
    "memif_per_thread_init",
    "memif_cleanup",
    "memif_per_thread_cleanup",
    "memif_create_socket",
    "memif_per_thread_create_socket",
    "memif_delete_socket",
    "memif_get_socket_filename",
    "memif_create",
    "memif_request_connection",
    "memif_delete",
    "memif_control_fd_handler",
    "memif_per_thread_control_fd_handler",
    "memif_poll_event",
    "memif_per_thread_poll_event",
    "memif_cancel_poll_event",
    "memif_per_thread_cancel_poll_event",
    "memif_set_connection_request_timer",
    "memif_per_thread_set_connection_request_timer",
    "memif_get_details",
    "memif_get_queue_efd",
    "memif_set_rx_mode",
    "memif_buffer_alloc",
    "memif_buffer_enq_tx",
    "memif_refill_queue",
    "memif_tx_burst",
    "memif_rx_burst",
    "memif_register_external_region",
]

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")

# Uses declarations of whichever headers were included.
PROGRAM = """
#ifdef _LIBMEMIF_H_
static int use_api (void)
{
  memif_conn_args_t args = { 0 };
  memif_buffer_t buf = { 0 };
  args.mode = MEMIF_INTERFACE_MODE_IP;
  return (int) sizeof (args) + (int) sizeof (buf) + (int) args.mode + MEMIF_ERR_PRIVHDR;
}
#else
static int use_api (void) { return 0; }
#endif
#ifdef _MEMIF_H_
static int use_wire (void)
{
  memif_desc_t desc = { 0 };
  return (int) sizeof (desc) + MEMIF_MSG_TYPE_DISCONNECT + MEMIF_INTERFACE_MODE_ETHERNET;
}
#else
static int use_wire (void) { return 0; }
#endif
int main (void) { return use_api () + use_wire () > 0 ? 0 : 1; }
"""


@needs_gcc
@pytest.mark.parametrize(
    "headers",
    [
        ["libmemif.h", "memif.h"],
        ["memif.h", "libmemif.h"],
        ["libmemif.h"],
        ["memif.h"],
    ],
    ids=lambda h: "+".join(h),
)
def test_headers_compile_in_any_order(tmp_path: Path, headers: list[str]) -> None:
    src = tmp_path / "headers.c"
    src.write_text("".join(f'#include "{h}"\n' for h in headers) + PROGRAM)
    result = subprocess.run(
        [
            "gcc",
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wstrict-prototypes",
            f"-I{INCLUDE}",
            str(src),
            "-o",
            str(tmp_path / "headers"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


@needs_gcc
@pytest.mark.skipif(shutil.which("nm") is None, reason="nm not installed")
def test_shared_library_exports_the_api() -> None:
    build = subprocess.run(["make", "-s", "lib"], cwd=ROOT, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    so = ROOT / "build" / "libmemif.so"
    assert (ROOT / "build" / "libmemif.a").is_file()
    nm = subprocess.run(
        ["nm", "-D", "--defined-only", str(so)], capture_output=True, text=True, check=True
    )
    exported = {
        fields[2]
        for fields in (line.split() for line in nm.stdout.splitlines())
        if len(fields) == 3 and fields[1] in "TW"
    }
    missing = [name for name in API_FUNCTIONS if name not in exported]
    assert not missing, f"not exported: {missing}"


def test_extension_built_for_this_version() -> None:
    import memif_cffi
    from memif_cffi._libmemif import ffi, lib

    built = ffi.string(lib.memif_cffi_version()).decode()
    assert built == memif_cffi.__version__


def test_struct_layouts_match_libmemif_31() -> None:
    from memif_cffi.lowlevel import ffi

    assert ffi.sizeof("memif_conn_args_t") == 80
    assert ffi.offsetof("memif_conn_args_t", "interface_id") == 40
    assert ffi.offsetof("memif_conn_args_t", "interface_name") == 44
    assert ffi.sizeof("memif_buffer_t") == 32
    assert ffi.offsetof("memif_buffer_t", "data") == 24
    assert ffi.sizeof("memif_queue_details_t") == 16
    assert ffi.sizeof("memif_region_details_t") == 32
    assert ffi.sizeof("memif_details_t") == 120
    assert ffi.offsetof("memif_details_t", "link_up_down") == 112


def test_args_mode_helper_writes_byte_76() -> None:
    from memif_cffi.lowlevel import ffi, get_args_mode, lib, set_args_mode

    args = ffi.new("memif_conn_args_t *")
    set_args_mode(args, lib.MEMIF_INTERFACE_MODE_PUNT_INJECT)
    assert get_args_mode(args) == 2
    raw = bytes(ffi.buffer(args))
    assert raw[76] == 2
    assert raw.count(0) == len(raw) - 1


def test_every_error_class_instantiates_and_pickles() -> None:
    from memif_cffi import errors

    assert sorted(errors.BY_CODE) == list(range(40))
    for code, cls in errors.BY_CODE.items():
        exc = cls("context")
        assert isinstance(exc, errors.MemifError)
        assert exc.code == code
        assert exc.name.startswith("MEMIF_ERR_")
        assert exc.strerror
        assert "context" in str(exc)
        again = pickle.loads(pickle.dumps(exc))
        assert type(again) is cls
        assert again.code == code
        assert str(again) == str(exc)
        with pytest.raises(errors.MemifError):
            raise exc

    assert isinstance(errors.NoFileError(), FileNotFoundError)
    assert errors.NoFileError().errno == 2
    assert isinstance(errors.DisconnectedError(), ConnectionError)
    assert isinstance(errors.InvalidArgError(), ValueError)
    syscall = errors.error_for(errors.SyscallError.code, errno=13)
    assert isinstance(syscall, OSError)
    assert syscall.errno == 13
    unknown = errors.error_for(1000)
    assert type(unknown) is errors.MemifError
    assert unknown.code == 1000


def test_sanitized_run_uses_sanitized_builds() -> None:
    """Under make sanitize, the extension and libmemif.so really carry ASan and UBSan.

    (A run that silently loaded an uninstrumented build would report nothing.)
    Outside make sanitize, the normal builds must not depend on the runtimes.
    """
    from cprog import ensure_library, sanitizing

    import memif_cffi.lowlevel

    ext = Path(memif_cffi.lowlevel.__file__).parent
    module = next(ext.glob("_libmemif*.so"))
    for binary in (module, ensure_library()):
        symbols = subprocess.run(["nm", "-D", str(binary)], capture_output=True, text=True,
                                 check=True).stdout
        instrumented = "__asan_report" in symbols and "__ubsan_handle" in symbols
        assert instrumented == sanitizing(), binary
