/* SPDX-License-Identifier: Apache-2.0 */
/*
 * _system_libmemif.c - the module's extensions on top of an installed
 * libmemif 3.1 (compiled only with MEMIF_CFFI_SYSTEM_LIBMEMIF=1). Uses nothing
 * but the 3.1 API; _system_libmemif.h explains what each function does.
 */
#define MEMIF_CFFI_SYSTEM_LIBMEMIF_IMPL 1

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "_system_libmemif.h"

/* A database created here with an fd-update callback of its own. */
typedef struct sys_db
{
  memif_per_thread_main_handle_t pt; /* NULL until memif_per_thread_init returns */
  int epfd;                          /* every fd the library asked to watch */
  int cancel_fd;                     /* eventfd in epfd: cancels a wait */
  struct sys_db *next;
} sys_db_t;

static pthread_mutex_t sys_lock = PTHREAD_MUTEX_INITIALIZER;
static sys_db_t *sys_dbs;

/* The record of pt, or NULL (caller holds sys_lock). */
static sys_db_t *
sys_find_locked (memif_per_thread_main_handle_t pt)
{
  if (pt == NULL)
    return NULL;
  for (sys_db_t *d = sys_dbs; d != NULL; d = d->next)
    if (d->pt == pt)
      return d;
  return NULL;
}

static sys_db_t *
sys_find (memif_per_thread_main_handle_t pt)
{
  pthread_mutex_lock (&sys_lock);
  sys_db_t *d = sys_find_locked (pt);
  pthread_mutex_unlock (&sys_lock);
  return d;
}

static void
sys_close_fds (sys_db_t *d)
{
  if (d->cancel_fd >= 0)
    close (d->cancel_fd);
  if (d->epfd >= 0)
    close (d->epfd);
}

/* The fd-update callback given to the library: keeps d->epfd in step. */
static int
sys_fd_update (int fd, uint8_t events, void *private_ctx)
{
  sys_db_t *d = private_ctx;
  if (d == NULL || fd < 0)
    return -1;
  if (events & MEMIF_FD_EVENT_DEL)
    {
      /* The fd may already be gone from the set: nothing left to do then. */
      if (epoll_ctl (d->epfd, EPOLL_CTL_DEL, fd, NULL) < 0 && errno != ENOENT && errno != EBADF)
        return -1;
      return 0;
    }
  struct epoll_event ev = { 0 };
  ev.data.fd = fd;
  if (events & MEMIF_FD_EVENT_READ)
    ev.events |= EPOLLIN;
  if (events & MEMIF_FD_EVENT_WRITE)
    ev.events |= EPOLLOUT;
  if (ev.events == 0)
    ev.events = EPOLLIN;
  int op = (events & MEMIF_FD_EVENT_MOD) ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  if (epoll_ctl (d->epfd, op, fd, &ev) == 0)
    return 0;
  /* Tolerate an add of a watched fd and a change of an unwatched one. */
  if (op == EPOLL_CTL_ADD && errno == EEXIST)
    return epoll_ctl (d->epfd, EPOLL_CTL_MOD, fd, &ev) == 0 ? 0 : -1;
  if (op == EPOLL_CTL_MOD && errno == ENOENT)
    return epoll_ctl (d->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -1;
  return -1;
}

int
memif_cffi_sys_per_thread_init (memif_per_thread_main_handle_t *pt_main, void *private_ctx,
                                memif_control_fd_update_t *on_control_fd_update, char *app_name,
                                memif_alloc_t *memif_alloc, memif_realloc_t *memif_realloc,
                                memif_free_t *memif_free)
{
  if (on_control_fd_update != NULL || pt_main == NULL)
    return memif_per_thread_init (pt_main, private_ctx, on_control_fd_update, app_name,
                                  memif_alloc, memif_realloc, memif_free);

  sys_db_t *d = calloc (1, sizeof (*d));
  if (d == NULL)
    return MEMIF_ERR_NOMEM;
  d->epfd = epoll_create1 (EPOLL_CLOEXEC);
  d->cancel_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
  struct epoll_event ev = { 0 };
  ev.events = EPOLLIN;
  ev.data.fd = d->cancel_fd;
  if (d->epfd < 0 || d->cancel_fd < 0 || epoll_ctl (d->epfd, EPOLL_CTL_ADD, d->cancel_fd, &ev) < 0)
    {
      int err = errno == EMFILE   ? MEMIF_ERR_PROC_FILE_LIMIT
                : errno == ENFILE ? MEMIF_ERR_FILE_LIMIT
                                  : MEMIF_ERR_SYSCALL;
      sys_close_fds (d);
      free (d);
      return err;
    }
  int err = memif_per_thread_init (pt_main, d, sys_fd_update, app_name, memif_alloc,
                                   memif_realloc, memif_free);
  if (err != MEMIF_ERR_SUCCESS)
    {
      sys_close_fds (d);
      free (d);
      return err;
    }
  pthread_mutex_lock (&sys_lock);
  d->pt = *pt_main;
  d->next = sys_dbs;
  sys_dbs = d;
  pthread_mutex_unlock (&sys_lock);
  return MEMIF_ERR_SUCCESS;
}

int
memif_cffi_sys_per_thread_cleanup (memif_per_thread_main_handle_t *pt_main)
{
  memif_per_thread_main_handle_t pt = pt_main != NULL ? *pt_main : NULL;
  /* The library may still report fds (DEL) to sys_fd_update while cleaning up. */
  int err = memif_per_thread_cleanup (pt_main);
  if (err != MEMIF_ERR_SUCCESS || pt == NULL)
    return err;
  pthread_mutex_lock (&sys_lock);
  sys_db_t *found = NULL;
  for (sys_db_t **link = &sys_dbs; *link != NULL; link = &(*link)->next)
    if ((*link)->pt == pt)
      {
        found = *link;
        *link = found->next;
        break;
      }
  pthread_mutex_unlock (&sys_lock);
  if (found != NULL)
    {
      sys_close_fds (found);
      free (found);
    }
  return err;
}

static uint8_t
sys_events (uint32_t epoll_events)
{
  uint8_t events = 0;
  if (epoll_events & EPOLLIN)
    events |= MEMIF_FD_EVENT_READ;
  if (epoll_events & EPOLLOUT)
    events |= MEMIF_FD_EVENT_WRITE;
  if (epoll_events & (EPOLLERR | EPOLLHUP))
    events |= MEMIF_FD_EVENT_ERROR;
  return events;
}

int
memif_cffi_sys_per_thread_poll_event (memif_per_thread_main_handle_t pt_main, int timeout)
{
  sys_db_t *d = sys_find (pt_main);
  if (d == NULL)
    return memif_per_thread_poll_event (pt_main, timeout);
  struct epoll_event ev;
  int n = epoll_wait (d->epfd, &ev, 1, timeout);
  if (n < 0)
    return errno == EINTR ? MEMIF_ERR_SUCCESS : MEMIF_ERR_SYSCALL;
  if (n == 0)
    return MEMIF_ERR_SUCCESS;
  if (ev.data.fd == d->cancel_fd)
    {
      uint64_t count;
      if (read (d->cancel_fd, &count, sizeof (count)) == (ssize_t) sizeof (count))
        return MEMIF_ERR_POLL_CANCEL;
      return MEMIF_ERR_SUCCESS;
    }
  return memif_per_thread_control_fd_handler (pt_main, ev.data.fd, sys_events (ev.events));
}

int
memif_cffi_sys_per_thread_cancel_poll_event (memif_per_thread_main_handle_t pt_main)
{
  pthread_mutex_lock (&sys_lock);
  sys_db_t *d = sys_find_locked (pt_main);
  if (d == NULL)
    {
      pthread_mutex_unlock (&sys_lock);
      return memif_per_thread_cancel_poll_event (pt_main);
    }
  uint64_t one = 1;
  ssize_t written = write (d->cancel_fd, &one, sizeof (one));
  pthread_mutex_unlock (&sys_lock);
  return written == (ssize_t) sizeof (one) ? MEMIF_ERR_SUCCESS : MEMIF_ERR_SYSCALL;
}

int
memif_cffi_sys_per_thread_get_epoll_fd (memif_per_thread_main_handle_t pt_main)
{
  pthread_mutex_lock (&sys_lock);
  sys_db_t *d = sys_find_locked (pt_main);
  int fd = d != NULL ? d->epfd : -1;
  pthread_mutex_unlock (&sys_lock);
  return fd;
}

int
memif_cffi_sys_get_last_errno (void)
{
  return 0;
}

static char sys_version_str[16];
static pthread_once_t sys_version_once = PTHREAD_ONCE_INIT;

static void
sys_format_version (void)
{
  uint16_t v = memif_get_version ();
  snprintf (sys_version_str, sizeof (sys_version_str), "%u.%u", (unsigned) (v >> 8),
            (unsigned) (v & 0xff));
}

const char *
memif_cffi_sys_get_version_str (void)
{
  pthread_once (&sys_version_once, sys_format_version);
  return sys_version_str;
}

void
memif_cffi_sys_per_thread_register_external_region (memif_per_thread_main_handle_t pt_main,
                                                    memif_add_external_region_t *ar,
                                                    memif_get_external_region_addr_t *gr,
                                                    memif_del_external_region_t *dr,
                                                    memif_get_external_buffer_offset_t *go)
{
  (void) pt_main;
  (void) ar;
  (void) gr;
  (void) dr;
  (void) go;
}
