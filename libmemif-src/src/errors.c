/* SPDX-License-Identifier: Apache-2.0 */
/* errors.c - error texts and the errno to error-code mapping. */

#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>

#include "memif_private.h"

#define MEMIF_ERR_COUNT 40

static const char *const error_text[MEMIF_ERR_COUNT] = {
  [MEMIF_ERR_SUCCESS] = "Success.",
  [MEMIF_ERR_SYSCALL] = "A system call failed (memif_get_last_errno() tells which errno).",
  [MEMIF_ERR_CONNREFUSED] = "Connection refused: nothing is listening on the socket.",
  [MEMIF_ERR_ACCES] = "Permission denied on the socket file or its directory.",
  [MEMIF_ERR_NO_FILE] = "The socket path or its directory does not exist.",
  [MEMIF_ERR_FILE_LIMIT] = "The system-wide limit on open files was reached.",
  [MEMIF_ERR_PROC_FILE_LIMIT] = "This process reached its limit on open files (RLIMIT_NOFILE).",
  [MEMIF_ERR_ALREADY] = "Already in progress, or the address is in use by a live listener.",
  [MEMIF_ERR_AGAIN] = "The operation would block; try again later.",
  [MEMIF_ERR_BAD_FD] = "Bad file descriptor.",
  [MEMIF_ERR_NOMEM] = "Out of memory.",
  [MEMIF_ERR_INVAL_ARG] = "Invalid argument.",
  [MEMIF_ERR_NOCONN] = "The handle does not refer to a memif interface.",
  [MEMIF_ERR_CONN] = "The handle already refers to an interface; pass a NULL handle.",
  [MEMIF_ERR_CB_FDUPDATE] = "The application's fd-update callback reported a failure.",
  [MEMIF_ERR_FILE_NOT_SOCK] = "The socket path exists but is not a socket.",
  [MEMIF_ERR_NO_SHMFD] = "A shared-memory region arrived without a file descriptor.",
  [MEMIF_ERR_COOKIE] = "A ring header does not hold the memif cookie.",
  [MEMIF_ERR_NOBUF_RING] = "The transmit ring has no room for all requested buffers.",
  [MEMIF_ERR_NOBUF] = "More packets are waiting than were asked for; call again.",
  [MEMIF_ERR_NOBUF_DET] = "The buffer for interface details is too small.",
  [MEMIF_ERR_INT_WRITE] = "Signalling the peer through its interrupt eventfd failed.",
  [MEMIF_ERR_MFMSG] = "Received a malformed control message.",
  [MEMIF_ERR_QID] = "Queue id out of range.",
  [MEMIF_ERR_PROTO] = "The peer speaks an incompatible memif protocol version.",
  [MEMIF_ERR_ID] = "No interface with the requested id on this socket.",
  [MEMIF_ERR_ACCSLAVE] = "A slave interface cannot accept connections.",
  [MEMIF_ERR_ALRCONN] = "The interface is already connected or connecting.",
  [MEMIF_ERR_MODE] = "The interface modes of the two peers differ.",
  [MEMIF_ERR_SECRET] = "The secrets of the two peers differ.",
  [MEMIF_ERR_NOSECRET] = "The master requires a secret and none was given.",
  [MEMIF_ERR_MAXREG] = "Region index out of range.",
  [MEMIF_ERR_MAXRING] = "Ring index out of range, or more rings than configured.",
  [MEMIF_ERR_NO_INTFD] = "A ring arrived without an interrupt file descriptor.",
  [MEMIF_ERR_DISCONNECT] = "The peer asked to disconnect.",
  [MEMIF_ERR_DISCONNECTED] = "The interface is not connected.",
  [MEMIF_ERR_UNKNOWN_MSG] = "Received a control message of unknown type.",
  [MEMIF_ERR_POLL_CANCEL] = "Waiting for events was cancelled by memif_cancel_poll_event().",
  [MEMIF_ERR_MAX_RING] = "log2_ring_size is too large: the limit is 14 (16384 slots).",
  [MEMIF_ERR_PRIVHDR] = "The peer asked for private headers, which are not supported.",
};

static const char unknown_text[] = "Unknown memif error code.";

static _Thread_local char strerror_buf[256];
static _Thread_local int last_errno;

MEMIF_EXPORT char *
memif_strerror (int err_code)
{
  const char *text = unknown_text;
  if (err_code >= 0 && err_code < MEMIF_ERR_COUNT && error_text[err_code] != NULL)
    text = error_text[err_code];
  snprintf (strerror_buf, sizeof (strerror_buf), "%s", text);
  return strerror_buf;
}

MEMIF_EXPORT int
memif_get_last_errno (void)
{
  return last_errno;
}

int
memif_syserr (int err)
{
  last_errno = err;
  switch (err)
    {
    case 0:
      return MEMIF_ERR_SUCCESS;
    case EACCES:
    case EPERM:
      return MEMIF_ERR_ACCES;
    case ENFILE:
      return MEMIF_ERR_FILE_LIMIT;
    case EMFILE:
      return MEMIF_ERR_PROC_FILE_LIMIT;
    case ENOMEM:
    case ENOBUFS:
      return MEMIF_ERR_NOMEM;
    case ECONNREFUSED:
      return MEMIF_ERR_CONNREFUSED;
    case EALREADY:
    case EADDRINUSE:
      return MEMIF_ERR_ALREADY;
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
      return MEMIF_ERR_AGAIN;
    case EBADF:
      return MEMIF_ERR_BAD_FD;
    case ENOENT:
    case ENOTDIR:
      return MEMIF_ERR_NO_FILE;
    case ECONNRESET:
    case EPIPE:
    case ENOTCONN:
      return MEMIF_ERR_DISCONNECTED;
    default:
      return MEMIF_ERR_SYSCALL;
    }
}

MEMIF_EXPORT uint16_t
memif_get_version (void)
{
  return MEMIF_VERSION;
}

MEMIF_EXPORT const char *
memif_get_version_str (void)
{
  return "2.0";
}
