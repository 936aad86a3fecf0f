/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sock.c - socket objects: addresses (filesystem and "@abstract"),
 * listening with stale-file handling, connecting, accepting.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "memif_private.h"

#define LISTEN_BACKLOG 16

memif_socket_t *
memif_sock_check (memif_socket_handle_t h)
{
  memif_socket_t *s = h;
  if (s == NULL || s->magic != MEMIF_MAGIC_SOCK)
    return NULL;
  return s;
}

static socklen_t
sock_addr (const memif_socket_t *s, struct sockaddr_un *sa)
{
  size_t n = strlen (s->path);
  memset (sa, 0, sizeof (*sa));
  sa->sun_family = AF_UNIX;
  if (s->is_abstract)
    {
      /* Abstract addresses compare all addrlen bytes: pass the exact length. */
      memcpy (sa->sun_path + 1, s->path + 1, n - 1);
      return (socklen_t) (offsetof (struct sockaddr_un, sun_path) + n);
    }
  memcpy (sa->sun_path, s->path, n);
  return (socklen_t) sizeof (*sa);
}

static int
path_valid (const char *path)
{
  if (path == NULL || path[0] == '\0')
    return 0;
  size_t n = strnlen (path, MEMIF_PATH_MAX + 1);
  if (n > MEMIF_PATH_MAX)
    return 0;
  if (path[0] == '@' && n == 1)
    return 0;
  return 1;
}

int
memif_sock_new (memif_db_t *db, memif_socket_t **out, const char *path)
{
  if (!path_valid (path))
    return MEMIF_ERR_INVAL_ARG;
  memif_socket_t *s = memif_db_alloc (db, sizeof (*s));
  if (s == NULL)
    return MEMIF_ERR_NOMEM;
  s->magic = MEMIF_MAGIC_SOCK;
  s->db = db;
  memif_strlcpy (s->path, path, sizeof (s->path));
  s->is_abstract = path[0] == '@';
  s->listen_fd = -1;
  s->next = db->sockets;
  if (db->sockets)
    db->sockets->prev = s;
  db->sockets = s;
  *out = s;
  return MEMIF_ERR_SUCCESS;
}

void
memif_sock_free (memif_socket_t *s)
{
  memif_db_t *db = s->db;
  memif_sock_unlisten (s);
  if (s->prev)
    s->prev->next = s->next;
  else
    db->sockets = s->next;
  if (s->next)
    s->next->prev = s->prev;
  s->magic = MEMIF_MAGIC_DEAD;
  memif_db_free (db, s);
}

enum memif_sock_role
memif_sock_role (const memif_socket_t *s)
{
  if (s->conns == NULL)
    return MEMIF_SOCK_UNUSED;
  return s->conns->is_master ? MEMIF_SOCK_MASTER : MEMIF_SOCK_SLAVE;
}

static int
create_socket (memif_db_t *db, memif_socket_handle_t *sock, const char *filename)
{
  if (sock == NULL || !path_valid (filename))
    return MEMIF_ERR_INVAL_ARG;
  for (memif_socket_t *o = db->sockets; o; o = o->next)
    if (o->listen_fd >= 0 && strcmp (o->path, filename) == 0)
      return MEMIF_ERR_INVAL_ARG;
  memif_socket_t *s;
  int err = memif_sock_new (db, &s, filename);
  if (err == MEMIF_ERR_SUCCESS)
    *sock = s;
  return err;
}

MEMIF_EXPORT int
memif_create_socket (memif_socket_handle_t *sock, const char *filename, void *private_ctx)
{
  (void) private_ctx;
  memif_db_t *db = memif_global_db ();
  if (db == NULL)
    return MEMIF_ERR_INVAL_ARG;
  return create_socket (db, sock, filename);
}

MEMIF_EXPORT int
memif_per_thread_create_socket (memif_per_thread_main_handle_t pt_main,
                                memif_socket_handle_t *sock, const char *filename,
                                void *private_ctx)
{
  (void) private_ctx;
  memif_db_t *db = memif_db_check (pt_main);
  if (db == NULL)
    return MEMIF_ERR_INVAL_ARG;
  return create_socket (db, sock, filename);
}

MEMIF_EXPORT int
memif_delete_socket (memif_socket_handle_t *sock)
{
  if (sock == NULL)
    return MEMIF_ERR_INVAL_ARG;
  memif_socket_t *s = memif_sock_check (*sock);
  if (s == NULL || s->conns != NULL || s == s->db->default_socket || s->db->in_callback)
    return MEMIF_ERR_INVAL_ARG;
  memif_sock_free (s);
  *sock = NULL;
  return MEMIF_ERR_SUCCESS;
}

MEMIF_EXPORT const char *
memif_get_socket_filename (memif_socket_handle_t sock)
{
  memif_socket_t *s = memif_sock_check (sock);
  return s ? s->path : NULL;
}

/* A socket file exists at the path: is somebody listening on it? */
static int
probe_existing (memif_socket_t *s)
{
  struct stat st;
  if (lstat (s->path, &st) < 0)
    return errno == ENOENT ? MEMIF_ERR_SUCCESS : memif_syserr (errno);
  if (!S_ISSOCK (st.st_mode))
    return MEMIF_ERR_FILE_NOT_SOCK;
  int fd = socket (AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return memif_syserr (errno);
  struct sockaddr_un sa;
  socklen_t len = sock_addr (s, &sa);
  int rc = connect (fd, (struct sockaddr *) &sa, len);
  int e = errno;
  close (fd);
  if (rc == 0 || e == EAGAIN || e == EINPROGRESS)
    return MEMIF_ERR_ALREADY; /* a live listener owns the path */
  if (e == ECONNREFUSED || e == EPROTOTYPE)
    {
      /* Stale file left by a listener that went away. */
      if (unlink (s->path) < 0 && errno != ENOENT)
        return memif_syserr (errno);
      return MEMIF_ERR_SUCCESS;
    }
  return memif_syserr (e);
}

int
memif_sock_listen (memif_socket_t *s)
{
  memif_db_t *db = s->db;
  int err;
  if (!s->is_abstract && (err = probe_existing (s)) != MEMIF_ERR_SUCCESS)
    return err;
  int fd = socket (AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return memif_syserr (errno);
  struct sockaddr_un sa;
  socklen_t len = sock_addr (s, &sa);
  if (bind (fd, (struct sockaddr *) &sa, len) < 0)
    {
      err = memif_syserr (errno);
      close (fd);
      return err;
    }
  if (!s->is_abstract)
    {
      struct stat st;
      if (stat (s->path, &st) == 0)
        {
          s->have_file = 1;
          s->file_dev = st.st_dev;
          s->file_ino = st.st_ino;
        }
    }
  int on = 1;
  if (setsockopt (fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof (on)) < 0
      || listen (fd, LISTEN_BACKLOG) < 0)
    {
      err = memif_syserr (errno);
      goto fail;
    }
  s->listen_fd = fd;
  if (memif_fd_add (db, fd, MEMIF_FD_LISTENER, s, 0) < 0)
    {
      err = db->fd_update ? MEMIF_ERR_CB_FDUPDATE : memif_syserr (errno);
      s->listen_fd = -1;
      goto fail;
    }
  return MEMIF_ERR_SUCCESS;
fail:
  close (fd);
  if (s->have_file)
    unlink (s->path);
  s->have_file = 0;
  return err;
}

void
memif_sock_unlisten (memif_socket_t *s)
{
  while (s->pending)
    memif_pending_close (s->pending);
  if (s->listen_fd < 0)
    return;
  memif_fd_del (s->db, s->listen_fd);
  memif_close_fd (&s->listen_fd);
  if (s->have_file)
    {
      /* Remove the file only if it is still the socket we created. */
      struct stat st;
      if (lstat (s->path, &st) == 0 && S_ISSOCK (st.st_mode) && st.st_dev == s->file_dev
          && st.st_ino == s->file_ino)
        unlink (s->path);
      s->have_file = 0;
    }
  memif_db_update_timer (s->db);
}

int
memif_sock_connect (memif_socket_t *s, int *fd_out)
{
  int fd = socket (AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return memif_syserr (errno);
  struct sockaddr_un sa;
  socklen_t len = sock_addr (s, &sa);
  if (connect (fd, (struct sockaddr *) &sa, len) < 0)
    {
      int err = memif_syserr (errno);
      close (fd);
      return err;
    }
  *fd_out = fd;
  return MEMIF_ERR_SUCCESS;
}

int
memif_sock_accept (memif_socket_t *s)
{
  memif_db_t *db = s->db;
  int fd = accept4 (s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0)
    {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED || errno == EINTR)
        return MEMIF_ERR_SUCCESS;
      return memif_syserr (errno);
    }
  memif_pending_t *p = memif_db_alloc (db, sizeof (*p));
  if (p == NULL)
    {
      close (fd);
      return MEMIF_ERR_NOMEM;
    }
  p->sock = s;
  p->fd = fd;
  p->deadline_ms = memif_now_ms () + MEMIF_HANDSHAKE_TIMEOUT_MS;
  if (memif_fd_add (db, fd, MEMIF_FD_PENDING, p, 0) < 0)
    {
      close (fd);
      memif_db_free (db, p);
      return MEMIF_ERR_SUCCESS; /* the connection is dropped, the listener lives on */
    }
  p->next = s->pending;
  if (s->pending)
    s->pending->prev = p;
  s->pending = p;

  uint8_t msg[MEMIF_MSG_SIZE];
  memif_msg_enc_hello (msg, db->app_name);
  if (memif_ctrl_send (fd, msg, -1) != MEMIF_ERR_SUCCESS)
    memif_pending_close (p);
  memif_db_update_timer (db);
  return MEMIF_ERR_SUCCESS;
}

void
memif_pending_close (memif_pending_t *p)
{
  memif_socket_t *s = p->sock;
  memif_db_t *db = s->db;
  if (p->fd >= 0)
    {
      memif_fd_del (db, p->fd);
      memif_close_fd (&p->fd);
    }
  if (p->prev)
    p->prev->next = p->next;
  else
    s->pending = p->next;
  if (p->next)
    p->next->prev = p->prev;
  memif_db_free (db, p);
}
