"""Exceptions for libmemif error codes.

Every ``MEMIF_ERR_*`` code has its own class, derived from :class:`MemifError`
and, where one fits, from the matching builtin exception, so both
``except memif_cffi.MemifError`` and ``except OSError`` (or ``ValueError``...)
catch it::

    try:
        check(lib.memif_create(...))
    except FileNotFoundError:        # MEMIF_ERR_NO_FILE
        ...

:data:`BY_CODE` maps each code (0-39) to its class; :func:`error_for` builds
the exception for a code, including unknown ones.
"""

from __future__ import annotations

import errno as _errno
from typing import Any, ClassVar

from memif_cffi._libmemif import ffi as _ffi
from memif_cffi._libmemif import lib as _lib

__all__ = [
    "BY_CODE",
    "AcceptSlaveError",
    "AccessDeniedError",
    "AgainError",
    "AlreadyConnectedError",
    "AlreadyError",
    "BadFdError",
    "ConnExistsError",
    "ConnRefusedError",
    "CookieError",
    "DetailsBufferError",
    "DisconnectedError",
    "FdUpdateCallbackError",
    "FileLimitError",
    "IdError",
    "IntWriteError",
    "InvalidArgError",
    "MalformedMessageError",
    "MemifError",
    "ModeError",
    "NoBufError",
    "NoBufRingError",
    "NoConnError",
    "NoError",
    "NoFileError",
    "NoIntFdError",
    "NoMemError",
    "NoSecretError",
    "NoShmFdError",
    "NotSocketError",
    "PeerDisconnectError",
    "PollCancelError",
    "PrivateHeaderError",
    "ProcFileLimitError",
    "ProtocolError",
    "QidError",
    "RegionIndexError",
    "RingIndexError",
    "RingSizeError",
    "SecretError",
    "SyscallError",
    "UnknownMessageError",
    "error_for",
]


def strerror(code: int) -> str:
    """The library's text for ``code`` (any int; unknown codes get a generic text)."""
    return str(_ffi.string(_lib.memif_strerror(code)).decode("utf-8", "replace"))


class MemifError(Exception):
    """A libmemif call failed.

    Attributes:
        code: the ``MEMIF_ERR_*`` number.
        name: the code's C name, e.g. ``"MEMIF_ERR_NOCONN"``.
        strerror: the library's description of the code.
        message: optional context added by the caller (may be ``None``).

    Subclasses that also derive from :class:`OSError` carry ``errno`` too.
    """

    code: int = -1
    name: str = "MEMIF_ERR_UNKNOWN"
    # Always a str here; typed like OSError.strerror so both bases agree.
    strerror: str | None
    #: errno given to the OSError part when the caller supplies none.
    default_errno: ClassVar[int | None] = None

    def __init__(
        self,
        message: str | None = None,
        *,
        code: int | None = None,
        errno: int | None = None,
    ) -> None:
        if code is not None:
            self.code = code
            cls = BY_CODE.get(code)
            if cls is not None:
                self.name = cls.name
        text = strerror(self.code)
        self.message = message
        if isinstance(self, OSError):
            err = errno if errno is not None else self.default_errno
            # OSError.__init__ sets .errno, .strerror and .args from these.
            super().__init__(err, text)
        else:
            super().__init__(message or text)
            self.strerror = text

    def __str__(self) -> str:
        text = f"{self.name} ({self.code}): {self.strerror}"
        errno_value = getattr(self, "errno", None)
        if self.code == _lib.MEMIF_ERR_SYSCALL and errno_value:
            text += f" [errno {errno_value}: {_errno.errorcode.get(errno_value, '?')}]"
        if self.message:
            text += f" - {self.message}"
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        errno_value = getattr(self, "errno", None)
        return (_rebuild, (type(self), self.message, self.code, errno_value))


def _rebuild(
    cls: type[MemifError], message: str | None, code: int, errno: int | None
) -> MemifError:
    """Unpickle helper: recreate an exception from its essentials."""
    if cls is MemifError:
        return MemifError(message, code=code, errno=errno)
    return cls(message, errno=errno)


class NoError(MemifError):
    """Code 0, MEMIF_ERR_SUCCESS: not an error; never raised by ``check()``."""

    code = 0
    name = "MEMIF_ERR_SUCCESS"


class SyscallError(MemifError, OSError):
    """A system call failed; ``errno`` holds its errno (memif_get_last_errno)."""

    code = 1
    name = "MEMIF_ERR_SYSCALL"


class ConnRefusedError(MemifError, ConnectionRefusedError):
    """Nobody accepted the connection on the socket."""

    code = 2
    name = "MEMIF_ERR_CONNREFUSED"
    default_errno = _errno.ECONNREFUSED


class AccessDeniedError(MemifError, PermissionError):
    """Permission denied on the socket file or its directory."""

    code = 3
    name = "MEMIF_ERR_ACCES"
    default_errno = _errno.EACCES


class NoFileError(MemifError, FileNotFoundError):
    """The socket file or its directory does not exist."""

    code = 4
    name = "MEMIF_ERR_NO_FILE"
    default_errno = _errno.ENOENT


class FileLimitError(MemifError, OSError):
    """The system-wide open-file limit was reached."""

    code = 5
    name = "MEMIF_ERR_FILE_LIMIT"
    default_errno = _errno.ENFILE


class ProcFileLimitError(MemifError, OSError):
    """The per-process open-file limit was reached."""

    code = 6
    name = "MEMIF_ERR_PROC_FILE_LIMIT"
    default_errno = _errno.EMFILE


class AlreadyError(MemifError, OSError):
    """Already in progress, or the address is in use by a live listener."""

    code = 7
    name = "MEMIF_ERR_ALREADY"
    default_errno = _errno.EALREADY


class AgainError(MemifError, BlockingIOError):
    """The operation would block; try again."""

    code = 8
    name = "MEMIF_ERR_AGAIN"
    default_errno = _errno.EAGAIN


class BadFdError(MemifError, OSError):
    """Invalid file descriptor."""

    code = 9
    name = "MEMIF_ERR_BAD_FD"
    default_errno = _errno.EBADF


class NoMemError(MemifError, MemoryError):
    """Out of memory."""

    code = 10
    name = "MEMIF_ERR_NOMEM"


class InvalidArgError(MemifError, ValueError):
    """An argument is invalid."""

    code = 11
    name = "MEMIF_ERR_INVAL_ARG"


class NoConnError(MemifError, ValueError):
    """The handle does not refer to an interface."""

    code = 12
    name = "MEMIF_ERR_NOCONN"


class ConnExistsError(MemifError, ValueError):
    """The handle already refers to an interface."""

    code = 13
    name = "MEMIF_ERR_CONN"


class FdUpdateCallbackError(MemifError):
    """The application's fd-update callback reported failure."""

    code = 14
    name = "MEMIF_ERR_CB_FDUPDATE"


class NotSocketError(MemifError, OSError):
    """The socket path exists but is not a socket."""

    code = 15
    name = "MEMIF_ERR_FILE_NOT_SOCK"
    default_errno = _errno.ENOTSOCK


class NoShmFdError(MemifError):
    """A shared-memory region arrived without a file descriptor."""

    code = 16
    name = "MEMIF_ERR_NO_SHMFD"


class CookieError(MemifError):
    """A ring header does not carry the memif cookie."""

    code = 17
    name = "MEMIF_ERR_COOKIE"


class NoBufRingError(MemifError, BlockingIOError):
    """The tx ring has no room for all requested buffers."""

    code = 18
    name = "MEMIF_ERR_NOBUF_RING"
    default_errno = _errno.ENOBUFS


class NoBufError(MemifError):
    """More packets are waiting than were asked for; call again."""

    code = 19
    name = "MEMIF_ERR_NOBUF"


class DetailsBufferError(MemifError, ValueError):
    """The buffer given to memif_get_details is too small."""

    code = 20
    name = "MEMIF_ERR_NOBUF_DET"


class IntWriteError(MemifError, OSError):
    """Signalling the peer (eventfd write) failed."""

    code = 21
    name = "MEMIF_ERR_INT_WRITE"


class MalformedMessageError(MemifError):
    """A malformed control message was received."""

    code = 22
    name = "MEMIF_ERR_MFMSG"


class QidError(MemifError, ValueError):
    """Queue id out of range."""

    code = 23
    name = "MEMIF_ERR_QID"


class ProtocolError(MemifError):
    """The peer speaks an incompatible protocol version."""

    code = 24
    name = "MEMIF_ERR_PROTO"


class IdError(MemifError):
    """No interface with the requested id."""

    code = 25
    name = "MEMIF_ERR_ID"


class AcceptSlaveError(MemifError):
    """A slave interface cannot accept connections."""

    code = 26
    name = "MEMIF_ERR_ACCSLAVE"


class AlreadyConnectedError(MemifError):
    """The interface is already connected (or connecting)."""

    code = 27
    name = "MEMIF_ERR_ALRCONN"


class ModeError(MemifError):
    """The interface modes of the two sides differ."""

    code = 28
    name = "MEMIF_ERR_MODE"


class SecretError(MemifError):
    """The secrets of the two sides differ."""

    code = 29
    name = "MEMIF_ERR_SECRET"


class NoSecretError(MemifError):
    """The master requires a secret and none was given."""

    code = 30
    name = "MEMIF_ERR_NOSECRET"


class RegionIndexError(MemifError):
    """Region index out of range."""

    code = 31
    name = "MEMIF_ERR_MAXREG"


class RingIndexError(MemifError):
    """Ring index out of range, or more rings than configured."""

    code = 32
    name = "MEMIF_ERR_MAXRING"


class NoIntFdError(MemifError):
    """A ring arrived without an interrupt file descriptor."""

    code = 33
    name = "MEMIF_ERR_NO_INTFD"


class PeerDisconnectError(MemifError, ConnectionError):
    """The peer sent a disconnect request."""

    code = 34
    name = "MEMIF_ERR_DISCONNECT"


class DisconnectedError(MemifError, ConnectionError):
    """The interface is not connected, or the peer went away."""

    code = 35
    name = "MEMIF_ERR_DISCONNECTED"
    default_errno = _errno.ENOTCONN


class UnknownMessageError(MemifError):
    """A control message of unknown type was received."""

    code = 36
    name = "MEMIF_ERR_UNKNOWN_MSG"


class PollCancelError(MemifError):
    """memif_poll_event was cancelled by memif_cancel_poll_event."""

    code = 37
    name = "MEMIF_ERR_POLL_CANCEL"


class RingSizeError(MemifError, ValueError):
    """log2_ring_size is larger than 14."""

    code = 38
    name = "MEMIF_ERR_MAX_RING"


class PrivateHeaderError(MemifError):
    """The peer asked for private headers, which are not supported."""

    code = 39
    name = "MEMIF_ERR_PRIVHDR"


#: Every error code (0-39) mapped to its exception class.
BY_CODE: dict[int, type[MemifError]] = {
    cls.code: cls
    for cls in (
        NoError,
        SyscallError,
        ConnRefusedError,
        AccessDeniedError,
        NoFileError,
        FileLimitError,
        ProcFileLimitError,
        AlreadyError,
        AgainError,
        BadFdError,
        NoMemError,
        InvalidArgError,
        NoConnError,
        ConnExistsError,
        FdUpdateCallbackError,
        NotSocketError,
        NoShmFdError,
        CookieError,
        NoBufRingError,
        NoBufError,
        DetailsBufferError,
        IntWriteError,
        MalformedMessageError,
        QidError,
        ProtocolError,
        IdError,
        AcceptSlaveError,
        AlreadyConnectedError,
        ModeError,
        SecretError,
        NoSecretError,
        RegionIndexError,
        RingIndexError,
        NoIntFdError,
        PeerDisconnectError,
        DisconnectedError,
        UnknownMessageError,
        PollCancelError,
        RingSizeError,
        PrivateHeaderError,
    )
}


def error_for(code: int, message: str | None = None, *, errno: int | None = None) -> MemifError:
    """Build the exception for ``code``.

    For ``MEMIF_ERR_SYSCALL`` without an explicit ``errno``, the errno the
    library recorded for this thread (``memif_get_last_errno``) is used.
    Codes without a class give a plain :class:`MemifError`.
    """
    cls = BY_CODE.get(code)
    if cls is None:
        return MemifError(message, code=code, errno=errno)
    if cls is SyscallError and errno is None:
        errno = int(_lib.memif_get_last_errno()) or None
    return cls(message, errno=errno)
