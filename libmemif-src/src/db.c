/* SPDX-License-Identifier: Apache-2.0 */
/*
 * db.c - databases (global and per-thread), the fd registry, the event loop
 * (external fd-update callback or internal epoll), the reconnect timer, and
 * the life cycle of interfaces.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "memif_private.h"

static memif_db_t *global_db;

/* ------------------------------------------------------------ helpers */

void *
memif_db_alloc (memif_db_t *db, size_t size)
{
  void *p = db->alloc (size);
  if (p)
    memset (p, 0, size);
  return p;
}

void
memif_db_free (memif_db_t *db, void *ptr)
{
  if (ptr)
    db->free (ptr);
}

void
memif_close_fd (int *fd)
{
  if (*fd >= 0)
    close (*fd);
  *fd = -1;
}

uint64_t
memif_now_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

memif_db_t *
memif_db_check (memif_per_thread_main_handle_t h)
{
  memif_db_t *db = h;
  if (db == NULL || db->magic != MEMIF_MAGIC_DB)
    return NULL;
  return db;
}

memif_db_t *
memif_global_db (void)
{
  return global_db;
}

memif_conn_t *
memif_conn_check (memif_conn_handle_t h)
{
  memif_conn_t *c = h;
  if (c == NULL || c->magic != MEMIF_MAGIC_CONN)
    return NULL;
  return c;
}

/* ------------------------------------------------------- fd registry */

int
memif_fd_add (memif_db_t *db, int fd, enum memif_fd_kind kind, void *obj, uint16_t qid)
{
  if (fd < 0)
    return -1;
  if (fd >= db->fds_len)
    {
      int len = db->fds_len ? db->fds_len : 64;
      while (len <= fd)
        len *= 2;
      memif_fd_entry_t *n = db->realloc (db->fds, (size_t) len * sizeof (*n));
      if (n == NULL)
        return -1;
      memset (n + db->fds_len, 0, (size_t) (len - db->fds_len) * sizeof (*n));
      db->fds = n;
      db->fds_len = len;
    }
  if (db->fd_update)
    {
      if (db->fd_update (fd, MEMIF_FD_EVENT_READ, db->private_ctx) < 0)
        return -1;
    }
  else
    {
      struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
      if (epoll_ctl (db->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -1;
    }
  db->fds[fd] = (memif_fd_entry_t){ .kind = (uint8_t) kind, .obj = obj, .qid = qid };
  return 0;
}

void
memif_fd_del (memif_db_t *db, int fd)
{
  if (fd < 0 || fd >= db->fds_len || db->fds[fd].kind == MEMIF_FD_NONE)
    return;
  db->fds[fd] = (memif_fd_entry_t){ 0 };
  if (db->fd_update)
    (void) db->fd_update (fd, MEMIF_FD_EVENT_DEL, db->private_ctx);
  else
    (void) epoll_ctl (db->epfd, EPOLL_CTL_DEL, fd, NULL);
}

/* ------------------------------------------------------------- timer */

enum
{
  TIMER_OFF = 0,
  TIMER_RECONNECT, /* period of the reconnect timer */
  TIMER_TICK,      /* one-second tick watching handshake deadlines */
};

static int
timer_period_zero (const memif_db_t *db)
{
  return db->timer.it_value.tv_sec == 0 && db->timer.it_value.tv_nsec == 0;
}

void
memif_db_update_timer (memif_db_t *db)
{
  int idle_slave = 0, handshaking = 0;
  for (memif_socket_t *s = db->sockets; s; s = s->next)
    {
      if (s->pending)
        handshaking = 1;
      for (memif_conn_t *c = s->conns; c; c = c->next)
        {
          if (!c->is_master && c->state == MEMIF_STATE_IDLE)
            idle_slave = 1;
          else if (c->state != MEMIF_STATE_IDLE && c->state != MEMIF_STATE_CONNECTED)
            handshaking = 1;
        }
    }
  int want = TIMER_OFF;
  if (idle_slave && !timer_period_zero (db))
    want = TIMER_RECONNECT;
  else if (handshaking)
    want = TIMER_TICK;
  if (want == db->timer_armed)
    return;
  struct itimerspec its = { 0 };
  if (want == TIMER_RECONNECT)
    its = db->timer;
  else if (want == TIMER_TICK)
    its.it_value.tv_sec = its.it_interval.tv_sec = 1;
  if (timerfd_settime (db->timer_fd, 0, &its, NULL) == 0)
    db->timer_armed = want;
}

static void
handle_timer (memif_db_t *db)
{
  uint64_t expirations;
  /* Always read: an expired timerfd left unread keeps the loop spinning. */
  if (read (db->timer_fd, &expirations, sizeof (expirations)) < 0 && errno == EAGAIN)
    return; /* stale event */
  memif_ctrl_check_deadlines (db, memif_now_ms ());
  if (db->timer_armed == TIMER_RECONNECT)
    for (memif_socket_t *s = db->sockets; s; s = s->next)
      for (memif_conn_t *c = s->conns; c; c = c->next)
        if (!c->is_master && c->state == MEMIF_STATE_IDLE)
          (void) memif_slave_connect (c);
  memif_db_update_timer (db);
}

static int
set_timer (memif_db_t *db, struct itimerspec timer)
{
  if (timer.it_value.tv_nsec < 0 || timer.it_value.tv_nsec > 999999999
      || timer.it_interval.tv_nsec < 0 || timer.it_interval.tv_nsec > 999999999
      || timer.it_value.tv_sec < 0 || timer.it_interval.tv_sec < 0)
    return MEMIF_ERR_INVAL_ARG;
  db->timer = timer;
  db->timer_armed = -1; /* force re-arming with the new value */
  struct itimerspec off = { 0 };
  if (timerfd_settime (db->timer_fd, 0, &off, NULL) < 0)
    return memif_syserr (errno);
  db->timer_armed = TIMER_OFF;
  memif_db_update_timer (db);
  return MEMIF_ERR_SUCCESS;
}

/* ---------------------------------------------------------- databases */

static void db_destroy (memif_db_t *db);

static int
db_create (memif_db_t **out, int is_global, void *private_ctx,
           memif_control_fd_update_t *fd_update, const char *app_name, memif_alloc_t *a,
           memif_realloc_t *r, memif_free_t *f)
{
  a = a ? a : malloc;
  r = r ? r : realloc;
  f = f ? f : free;
  memif_db_t *db = a (sizeof (*db));
  if (db == NULL)
    return MEMIF_ERR_NOMEM;
  memset (db, 0, sizeof (*db));
  db->magic = MEMIF_MAGIC_DB;
  db->is_global = is_global;
  db->alloc = a;
  db->realloc = r;
  db->free = f;
  db->fd_update = fd_update;
  db->private_ctx = private_ctx;
  db->epfd = db->cancel_fd = db->timer_fd = -1;
  memif_strlcpy (db->app_name, app_name ? app_name : MEMIF_DEFAULT_APP_NAME,
                 sizeof (db->app_name));
  db->timer.it_value.tv_sec = MEMIF_DEFAULT_RECONNECT_SEC;
  db->timer.it_interval.tv_sec = MEMIF_DEFAULT_RECONNECT_SEC;

  int err = MEMIF_ERR_SUCCESS;
  if (fd_update == NULL)
    {
      db->epfd = epoll_create1 (EPOLL_CLOEXEC);
      if (db->epfd < 0)
        {
          err = memif_syserr (errno);
          goto fail;
        }
      db->cancel_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
      if (db->cancel_fd < 0)
        {
          err = memif_syserr (errno);
          goto fail;
        }
      if (memif_fd_add (db, db->cancel_fd, MEMIF_FD_CANCEL, db, 0) < 0)
        {
          err = errno == ENOMEM ? MEMIF_ERR_NOMEM : memif_syserr (errno);
          goto fail;
        }
    }
  db->timer_fd = timerfd_create (CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (db->timer_fd < 0)
    {
      err = memif_syserr (errno);
      goto fail;
    }
  if (memif_fd_add (db, db->timer_fd, MEMIF_FD_TIMER, db, 0) < 0)
    {
      err = fd_update ? MEMIF_ERR_CB_FDUPDATE : memif_syserr (errno);
      goto fail;
    }
  *out = db;
  return MEMIF_ERR_SUCCESS;
fail:
  db_destroy (db);
  return err;
}

static int
db_has_interfaces (const memif_db_t *db)
{
  for (memif_socket_t *s = db->sockets; s; s = s->next)
    if (s->conns)
      return 1;
  return 0;
}

static void
db_destroy (memif_db_t *db)
{
  while (db->sockets)
    memif_sock_free (db->sockets);
  db->default_socket = NULL;
  if (db->timer_fd >= 0)
    memif_fd_del (db, db->timer_fd);
  if (db->cancel_fd >= 0)
    memif_fd_del (db, db->cancel_fd);
  memif_close_fd (&db->timer_fd);
  memif_close_fd (&db->cancel_fd);
  memif_close_fd (&db->epfd);
  memif_db_free (db, db->fds);
  db->fds = NULL;
  db->magic = MEMIF_MAGIC_DEAD;
  db->free (db);
}

MEMIF_EXPORT int
memif_init (memif_control_fd_update_t *on_control_fd_update, char *app_name,
            memif_alloc_t *memif_alloc, memif_realloc_t *memif_realloc, memif_free_t *memif_free)
{
  if (global_db)
    {
      if (db_has_interfaces (global_db))
        return MEMIF_ERR_ALREADY;
      if (global_db->in_callback)
        return MEMIF_ERR_INVAL_ARG;
      db_destroy (global_db);
      global_db = NULL;
    }
  memif_db_t *db = NULL;
  int err = db_create (&db, 1, NULL, on_control_fd_update, app_name, memif_alloc,
                       memif_realloc, memif_free);
  if (err)
    return err;
  err = memif_sock_new (db, &db->default_socket, MEMIF_DEFAULT_SOCKET_PATH);
  if (err)
    {
      db_destroy (db);
      return err;
    }
  global_db = db;
  return MEMIF_ERR_SUCCESS;
}

MEMIF_EXPORT int
memif_per_thread_init (memif_per_thread_main_handle_t *pt_main, void *private_ctx,
                       memif_control_fd_update_t *on_control_fd_update, char *app_name,
                       memif_alloc_t *memif_alloc, memif_realloc_t *memif_realloc,
                       memif_free_t *memif_free)
{
  if (pt_main == NULL)
    return MEMIF_ERR_INVAL_ARG;
  memif_db_t *db = NULL;
  int err = db_create (&db, 0, private_ctx, on_control_fd_update, app_name, memif_alloc,
                       memif_realloc, memif_free);
  if (err)
    return err;
  *pt_main = db;
  return MEMIF_ERR_SUCCESS;
}

static int
db_cleanup (memif_db_t *db)
{
  if (db->in_callback || db_has_interfaces (db))
    return MEMIF_ERR_INVAL_ARG;
  db_destroy (db);
  return MEMIF_ERR_SUCCESS;
}

MEMIF_EXPORT int
memif_cleanup (void)
{
  if (global_db == NULL)
    return MEMIF_ERR_SUCCESS;
  int err = db_cleanup (global_db);
  if (err == MEMIF_ERR_SUCCESS)
    global_db = NULL;
  return err;
}

MEMIF_EXPORT int
memif_per_thread_cleanup (memif_per_thread_main_handle_t *pt_main)
{
  if (pt_main == NULL)
    return MEMIF_ERR_INVAL_ARG;
  memif_db_t *db = memif_db_check (*pt_main);
  if (db == NULL || db->is_global)
    return MEMIF_ERR_INVAL_ARG;
  int err = db_cleanup (db);
  if (err == MEMIF_ERR_SUCCESS)
    *pt_main = NULL;
  return err;
}

MEMIF_EXPORT int
memif_per_thread_get_epoll_fd (memif_per_thread_main_handle_t pt_main)
{
  memif_db_t *db = memif_db_check (pt_main);
  return db ? db->epfd : -1;
}

/* ------------------------------------------------------- event loop */

static int
db_handle_fd (memif_db_t *db, int fd, uint8_t events)
{
  if (fd < 0 || fd >= db->fds_len)
    return MEMIF_ERR_SUCCESS;
  memif_fd_entry_t e = db->fds[fd];
  switch (e.kind)
    {
    case MEMIF_FD_TIMER:
      handle_timer (db);
      return MEMIF_ERR_SUCCESS;
    case MEMIF_FD_CANCEL:
      {
        uint64_t v;
        if (read (db->cancel_fd, &v, sizeof (v)) == (ssize_t) sizeof (v))
          return MEMIF_ERR_POLL_CANCEL;
        return MEMIF_ERR_SUCCESS;
      }
    case MEMIF_FD_LISTENER:
      if (!(events & (MEMIF_FD_EVENT_READ | MEMIF_FD_EVENT_ERROR)))
        return MEMIF_ERR_SUCCESS;
      return memif_sock_accept (e.obj);
    case MEMIF_FD_PENDING:
      memif_pending_handle (e.obj, events);
      return MEMIF_ERR_SUCCESS;
    case MEMIF_FD_CONTROL:
      memif_ctrl_handle (e.obj, events);
      return MEMIF_ERR_SUCCESS;
    case MEMIF_FD_INTERRUPT:
      {
        memif_conn_t *c = e.obj;
        if (!(events & MEMIF_FD_EVENT_READ) || c->state != MEMIF_STATE_CONNECTED)
          return MEMIF_ERR_SUCCESS;
        if (c->rx_mode[e.qid] == MEMIF_RX_MODE_POLLING)
          {
            /* memif_rx_burst does not read the eventfd of a polled queue:
             * drain it here so a peer that ignores MASK_INT cannot make the
             * loop spin. */
            uint64_t v;
            (void) !read (fd, &v, sizeof (v));
          }
        if (c->on_interrupt)
          MEMIF_CALLBACK (db, c->on_interrupt (c, c->private_ctx, e.qid));
        return MEMIF_ERR_SUCCESS;
      }
    default:
      return MEMIF_ERR_SUCCESS;
    }
}

MEMIF_EXPORT int
memif_control_fd_handler (int fd, uint8_t events)
{
  if (global_db == NULL)
    return MEMIF_ERR_INVAL_ARG;
  return db_handle_fd (global_db, fd, events);
}

MEMIF_EXPORT int
memif_per_thread_control_fd_handler (memif_per_thread_main_handle_t pt_main, int fd,
                                     uint8_t events)
{
  memif_db_t *db = memif_db_check (pt_main);
  if (db == NULL)
    return MEMIF_ERR_INVAL_ARG;
  return db_handle_fd (db, fd, events);
}

static int
db_poll (memif_db_t *db, int timeout)
{
  if (db->fd_update != NULL || db->epfd < 0)
    return MEMIF_ERR_INVAL_ARG;
  struct epoll_event ev;
  int n = epoll_wait (db->epfd, &ev, 1, timeout);
  if (n < 0)
    return errno == EINTR ? MEMIF_ERR_SUCCESS : memif_syserr (errno);
  if (n == 0)
    return MEMIF_ERR_SUCCESS;
  uint8_t events = 0;
  if (ev.events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
    events |= MEMIF_FD_EVENT_READ;
  if (ev.events & EPOLLERR)
    events |= MEMIF_FD_EVENT_ERROR;
  if (ev.events & EPOLLOUT)
    events |= MEMIF_FD_EVENT_WRITE;
  return db_handle_fd (db, ev.data.fd, events);
}

MEMIF_EXPORT int
memif_poll_event (int timeout)
{
  if (global_db == NULL)
    return MEMIF_ERR_INVAL_ARG;
  return db_poll (global_db, timeout);
}

MEMIF_EXPORT int
memif_per_thread_poll_event (memif_per_thread_main_handle_t pt_main, int timeout)
{
  memif_db_t *db = memif_db_check (pt_main);
  if (db == NULL)
    return MEMIF_ERR_INVAL_ARG;
  return db_poll (db, timeout);
}

static int
db_cancel (memif_db_t *db)
{
  if (db->fd_update != NULL)
    return MEMIF_ERR_SUCCESS;
  uint64_t one = 1;
  if (write (db->cancel_fd, &one, sizeof (one)) != (ssize_t) sizeof (one))
    return MEMIF_ERR_INT_WRITE;
  return MEMIF_ERR_SUCCESS;
}

MEMIF_EXPORT int
memif_cancel_poll_event (void)
{
  memif_db_t *db = global_db;
  if (db == NULL)
    return MEMIF_ERR_INVAL_ARG;
  return db_cancel (db);
}

MEMIF_EXPORT int
memif_per_thread_cancel_poll_event (memif_per_thread_main_handle_t pt_main)
{
  memif_db_t *db = memif_db_check (pt_main);
  if (db == NULL)
    return MEMIF_ERR_INVAL_ARG;
  return db_cancel (db);
}

MEMIF_EXPORT int
memif_set_connection_request_timer (struct itimerspec timer)
{
  if (global_db == NULL)
    return MEMIF_ERR_INVAL_ARG;
  return set_timer (global_db, timer);
}

MEMIF_EXPORT int
memif_per_thread_set_connection_request_timer (memif_per_thread_main_handle_t pt_main,
                                               struct itimerspec timer)
{
  memif_db_t *db = memif_db_check (pt_main);
  if (db == NULL)
    return MEMIF_ERR_INVAL_ARG;
  return set_timer (db, timer);
}

static void
db_register_external (memif_db_t *db, memif_add_external_region_t *ar,
                      memif_get_external_region_addr_t *gr, memif_del_external_region_t *dr,
                      memif_get_external_buffer_offset_t *go)
{
  db->add_ext = ar;
  db->get_ext_addr = gr;
  db->del_ext = dr;
  db->get_ext_offset = go;
}

MEMIF_EXPORT void
memif_register_external_region (memif_add_external_region_t *ar,
                                memif_get_external_region_addr_t *gr,
                                memif_del_external_region_t *dr,
                                memif_get_external_buffer_offset_t *go)
{
  if (global_db)
    db_register_external (global_db, ar, gr, dr, go);
}

MEMIF_EXPORT void
memif_per_thread_register_external_region (memif_per_thread_main_handle_t pt_main,
                                           memif_add_external_region_t *ar,
                                           memif_get_external_region_addr_t *gr,
                                           memif_del_external_region_t *dr,
                                           memif_get_external_buffer_offset_t *go)
{
  memif_db_t *db = memif_db_check (pt_main);
  if (db)
    db_register_external (db, ar, gr, dr, go);
}

/* ---------------------------------------------------------- interfaces */

static int
validate_args (memif_conn_args_t *args)
{
  if (args->num_s2m_rings == 0)
    args->num_s2m_rings = 1;
  if (args->num_m2s_rings == 0)
    args->num_m2s_rings = 1;
  if (args->buffer_size == 0)
    args->buffer_size = MEMIF_DEFAULT_BUFFER_SIZE;
  if (args->log2_ring_size == 0)
    args->log2_ring_size = MEMIF_DEFAULT_LOG2_RING_SIZE;
  if (args->log2_ring_size > MEMIF_MAX_LOG2_RING_SIZE)
    return MEMIF_ERR_MAX_RING;
  if ((unsigned) args->mode > MEMIF_INTERFACE_MODE_PUNT_INJECT)
    return MEMIF_ERR_INVAL_ARG;
  uint64_t region = (uint64_t) args->buffer_size << args->log2_ring_size;
  region *= (uint64_t) args->num_s2m_rings + args->num_m2s_rings;
  if (region > UINT32_MAX)
    return MEMIF_ERR_INVAL_ARG;
  return MEMIF_ERR_SUCCESS;
}

MEMIF_EXPORT int
memif_create (memif_conn_handle_t *conn, memif_conn_args_t *args,
              memif_connection_update_t *on_connect, memif_connection_update_t *on_disconnect,
              memif_interrupt_t *on_interrupt, void *private_ctx)
{
  if (conn == NULL || args == NULL)
    return MEMIF_ERR_INVAL_ARG;
  if (*conn != NULL)
    return MEMIF_ERR_CONN;
  memif_socket_t *s;
  if (args->socket)
    {
      s = memif_sock_check (args->socket);
      if (s == NULL)
        return MEMIF_ERR_INVAL_ARG;
    }
  else
    {
      if (global_db == NULL || global_db->default_socket == NULL)
        return MEMIF_ERR_INVAL_ARG;
      s = global_db->default_socket;
    }
  memif_db_t *db = s->db;
  int err = validate_args (args);
  if (err)
    return err;
  int is_master = args->is_master != 0;
  enum memif_sock_role role = memif_sock_role (s);
  if ((role == MEMIF_SOCK_MASTER && !is_master) || (role == MEMIF_SOCK_SLAVE && is_master))
    return MEMIF_ERR_INVAL_ARG;
  if (is_master)
    for (memif_conn_t *o = s->conns; o; o = o->next)
      if (o->id == args->interface_id)
        return MEMIF_ERR_INVAL_ARG;

  memif_conn_t *c = memif_db_alloc (db, sizeof (*c));
  if (c == NULL)
    return MEMIF_ERR_NOMEM;
  c->magic = MEMIF_MAGIC_CONN;
  c->db = db;
  c->sock = s;
  c->is_master = (uint8_t) is_master;
  c->mode = (uint8_t) args->mode;
  c->id = args->interface_id;
  memif_copy_field (c->if_name, args->interface_name, MEMIF_NAME_LEN);
  memif_copy_field (c->secret_str, args->secret, MEMIF_SECRET_LEN);
  memcpy (c->secret, c->secret_str, strlen (c->secret_str));
  c->cfg_s2m = args->num_s2m_rings;
  c->cfg_m2s = args->num_m2s_rings;
  c->cfg_log2 = args->log2_ring_size;
  c->cfg_buffer_size = args->buffer_size;
  c->on_connect = on_connect;
  c->on_disconnect = on_disconnect;
  c->on_interrupt = on_interrupt;
  c->private_ctx = private_ctx;
  c->fd = -1;
  c->state = MEMIF_STATE_IDLE;

  c->next = s->conns;
  if (s->conns)
    s->conns->prev = c;
  s->conns = c;

  if (is_master)
    {
      if (s->listen_fd < 0)
        {
          err = memif_sock_listen (s);
          if (err)
            {
              s->conns = c->next;
              if (s->conns)
                s->conns->prev = NULL;
              c->magic = MEMIF_MAGIC_DEAD;
              memif_db_free (db, c);
              return err;
            }
        }
    }
  else
    (void) memif_slave_connect (c);
  memif_db_update_timer (db);
  *conn = c;
  return MEMIF_ERR_SUCCESS;
}

MEMIF_EXPORT int
memif_delete (memif_conn_handle_t *conn)
{
  if (conn == NULL)
    return MEMIF_ERR_NOCONN;
  memif_conn_t *c = memif_conn_check (*conn);
  if (c == NULL)
    return MEMIF_ERR_NOCONN;
  memif_db_t *db = c->db;
  if (db->in_callback)
    return MEMIF_ERR_INVAL_ARG;
  if (c->fd >= 0)
    memif_disconnect (c, "interface deleted", "interface deleted");

  memif_socket_t *s = c->sock;
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  if (c->is_master && memif_sock_role (s) != MEMIF_SOCK_MASTER)
    memif_sock_unlisten (s);

  c->magic = MEMIF_MAGIC_DEAD;
  memif_db_free (db, c);
  *conn = NULL;
  memif_db_update_timer (db);
  return MEMIF_ERR_SUCCESS;
}
