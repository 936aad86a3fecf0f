/* SPDX-License-Identifier: Apache-2.0 */
/*
 * _system_libmemif.h - what memif_cffi._libmemif needs beyond the libmemif 3.1
 * API when it is linked with an installed libmemif instead of the bundled
 * sources (MEMIF_CFFI_SYSTEM_LIBMEMIF=1, see build_ffi.py).
 *
 * The bundled library has four extensions (marked in libmemif.h) that the
 * module declares and the Python package uses. A stock libmemif 3.1 does not
 * export them, so _system_libmemif.c provides them on top of the 3.1 calls
 * alone, and the module's code is redirected to those versions by the macros
 * at the end of this header:
 *
 *  memif_per_thread_get_epoll_fd   a database created without an fd-update
 *                                  callback gets its own epoll set (see below)
 *  memif_get_last_errno            always 0: the errno of a failed system call
 *                                  is not known (SyscallError.errno is None)
 *  memif_get_version_str           formatted from memif_get_version ()
 *  memif_per_thread_register_external_region
 *                                  does nothing: external regions need the
 *                                  bundled library (or the global database)
 *
 * The Python Context waits on a database's epoll fd and then calls
 * memif_per_thread_poll_event with timeout 0. 3.1 keeps that fd private, so a
 * database made without an fd-update callback is made here with one: its fds
 * go into an epoll set this file owns, memif_per_thread_poll_event waits on
 * that set and hands each event to memif_per_thread_control_fd_handler, and
 * memif_per_thread_cancel_poll_event wakes it through an eventfd. The
 * private_ctx argument of such a database is unused (3.1 passes it only to
 * the fd-update callback).
 */
#ifndef MEMIF_CFFI_SYSTEM_LIBMEMIF_H
#define MEMIF_CFFI_SYSTEM_LIBMEMIF_H

#include "memif.h"
#include "libmemif.h"

int memif_cffi_sys_per_thread_init (memif_per_thread_main_handle_t *pt_main, void *private_ctx,
                                    memif_control_fd_update_t *on_control_fd_update,
                                    char *app_name, memif_alloc_t *memif_alloc,
                                    memif_realloc_t *memif_realloc, memif_free_t *memif_free);
int memif_cffi_sys_per_thread_cleanup (memif_per_thread_main_handle_t *pt_main);
int memif_cffi_sys_per_thread_poll_event (memif_per_thread_main_handle_t pt_main, int timeout);
int memif_cffi_sys_per_thread_cancel_poll_event (memif_per_thread_main_handle_t pt_main);
int memif_cffi_sys_per_thread_get_epoll_fd (memif_per_thread_main_handle_t pt_main);
int memif_cffi_sys_get_last_errno (void);
const char *memif_cffi_sys_get_version_str (void);
void memif_cffi_sys_per_thread_register_external_region (
  memif_per_thread_main_handle_t pt_main, memif_add_external_region_t *ar,
  memif_get_external_region_addr_t *gr, memif_del_external_region_t *dr,
  memif_get_external_buffer_offset_t *go);

/* The module's code (not _system_libmemif.c itself) calls the versions above. */
#ifndef MEMIF_CFFI_SYSTEM_LIBMEMIF_IMPL
#define memif_per_thread_init memif_cffi_sys_per_thread_init
#define memif_per_thread_cleanup memif_cffi_sys_per_thread_cleanup
#define memif_per_thread_poll_event memif_cffi_sys_per_thread_poll_event
#define memif_per_thread_cancel_poll_event memif_cffi_sys_per_thread_cancel_poll_event
#define memif_per_thread_get_epoll_fd memif_cffi_sys_per_thread_get_epoll_fd
#define memif_get_last_errno memif_cffi_sys_get_last_errno
#define memif_get_version_str memif_cffi_sys_get_version_str
#define memif_per_thread_register_external_region \
  memif_cffi_sys_per_thread_register_external_region
#endif

#endif /* MEMIF_CFFI_SYSTEM_LIBMEMIF_H */
