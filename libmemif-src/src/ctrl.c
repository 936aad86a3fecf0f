/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ctrl.c - the control channel: sending and receiving messages, the slave
 * and master handshake state machines (memif-protocol §9), and disconnect.
 *
 * Replies are sent synchronously while handling the message they answer
 * (lock-step), so control fds are only ever watched for readability.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "memif_private.h"

/* Room for a few fds (to detect peers sending more than one) and credentials. */
#define CTRL_CMSG_SPACE (CMSG_SPACE (sizeof (int) * 4) + CMSG_SPACE (sizeof (struct ucred)))

void
memif_set_error (memif_conn_t *c, const char *reason)
{
  memif_strlcpy (c->error, reason ? reason : "", sizeof (c->error));
}

int
memif_ctrl_send (int fd, const uint8_t *msg, int pass_fd)
{
  struct iovec iov = { .iov_base = (void *) msg, .iov_len = MEMIF_MSG_SIZE };
  struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
  union
  {
    struct cmsghdr align;
    char buf[CMSG_SPACE (sizeof (int))];
  } ctl;
  if (pass_fd >= 0)
    {
      memset (&ctl, 0, sizeof (ctl));
      mh.msg_control = ctl.buf;
      mh.msg_controllen = sizeof (ctl.buf);
      struct cmsghdr *cm = CMSG_FIRSTHDR (&mh);
      cm->cmsg_level = SOL_SOCKET;
      cm->cmsg_type = SCM_RIGHTS;
      cm->cmsg_len = CMSG_LEN (sizeof (int));
      memcpy (CMSG_DATA (cm), &pass_fd, sizeof (int));
    }
  ssize_t n = sendmsg (fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n < 0)
    return memif_syserr (errno);
  return n == MEMIF_MSG_SIZE ? MEMIF_ERR_SUCCESS : MEMIF_ERR_SYSCALL;
}

enum recv_result
{
  RECV_NOTHING = 0,
  RECV_MESSAGE,
  RECV_GONE,     /* EOF or socket error: nothing can be sent back */
  RECV_MALFORMED /* answer with DISCONNECT <reason> */
};

/* Receive one message. On RECV_MESSAGE *rfd holds the fd that came with it
 * (or -1) and belongs to the caller; in every other case no fd is left open. */
static enum recv_result
ctrl_recv (int fd, memif_msg_info_t *m, int *rfd, const char **reason)
{
  uint8_t buf[MEMIF_MSG_SIZE];
  union
  {
    struct cmsghdr align;
    char buf[CTRL_CMSG_SPACE];
  } ctl;
  struct iovec iov = { .iov_base = buf, .iov_len = sizeof (buf) };
  struct msghdr mh = { .msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = ctl.buf,
                       .msg_controllen = sizeof (ctl.buf) };
  *rfd = -1;
  ssize_t n = recvmsg (fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  if (n < 0)
    {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return RECV_NOTHING;
      *reason = "control channel error";
      return RECV_GONE;
    }
  int nfds = 0, first = -1;
  for (struct cmsghdr *cm = CMSG_FIRSTHDR (&mh); cm; cm = CMSG_NXTHDR (&mh, cm))
    {
      if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
        continue;
      size_t cnt = (cm->cmsg_len - CMSG_LEN (0)) / sizeof (int);
      for (size_t i = 0; i < cnt; i++)
        {
          int f;
          memcpy (&f, CMSG_DATA (cm) + i * sizeof (int), sizeof (int));
          if (nfds++ == 0)
            first = f;
          else
            close (f);
        }
    }
  if (n == 0)
    {
      if (first >= 0)
        close (first);
      *reason = "connection closed by peer";
      return RECV_GONE;
    }
  if (n != MEMIF_MSG_SIZE || nfds > 1 || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
    {
      if (first >= 0)
        close (first);
      *reason = "malformed message";
      return RECV_MALFORMED;
    }
  int err = memif_msg_decode (buf, (size_t) n, m);
  if (err)
    {
      if (first >= 0)
        close (first);
      *reason = err == MEMIF_ERR_UNKNOWN_MSG ? "unknown message type" : "malformed message";
      return RECV_MALFORMED;
    }
  *rfd = first;
  return RECV_MESSAGE;
}

static void
send_disconnect (int fd, const char *reason)
{
  uint8_t msg[MEMIF_MSG_SIZE];
  memif_msg_enc_disconnect (msg, 0, reason);
  (void) memif_ctrl_send (fd, msg, -1);
}

void
memif_disconnect (memif_conn_t *c, const char *send_reason, const char *record)
{
  memif_db_t *db = c->db;
  int was_connected = c->state == MEMIF_STATE_CONNECTED;
  /* Link down first: from here on the data path returns DISCONNECTED. */
  c->state = MEMIF_STATE_IDLE;
  if (was_connected && c->on_disconnect)
    MEMIF_CALLBACK (db, c->on_disconnect (c, c->private_ctx));
  if (c->fd >= 0)
    {
      if (send_reason && !c->broken)
        send_disconnect (c->fd, send_reason);
      memif_fd_del (db, c->fd);
      memif_close_fd (&c->fd);
    }
  memif_shm_teardown (c);
  c->hs_step = 0;
  c->log2 = 0;
  c->buffer_size = 0;
  c->deadline_ms = 0;
  c->remote_if_name[0] = '\0';
  c->remote_app_name[0] = '\0';
  c->broken = 0;
  c->broken_reason = NULL;
  memif_set_error (c, record);
  memif_db_update_timer (db);
}

int
memif_slave_connect (memif_conn_t *c)
{
  memif_db_t *db = c->db;
  if (c->fd >= 0)
    return MEMIF_ERR_ALRCONN;
  int fd;
  int err = memif_sock_connect (c->sock, &fd);
  if (err)
    {
      memif_set_error (c, memif_strerror (err));
      return err;
    }
  if (memif_fd_add (db, fd, MEMIF_FD_CONTROL, c, 0) < 0)
    {
      err = db->fd_update ? MEMIF_ERR_CB_FDUPDATE : memif_syserr (errno);
      close (fd);
      memif_set_error (c, "event registration failed");
      return err;
    }
  c->fd = fd;
  c->state = MEMIF_STATE_WAIT_HELLO;
  c->deadline_ms = memif_now_ms () + MEMIF_HANDSHAKE_TIMEOUT_MS;
  memif_db_update_timer (db);
  return MEMIF_ERR_SUCCESS;
}

MEMIF_EXPORT int
memif_request_connection (memif_conn_handle_t conn)
{
  memif_conn_t *c = memif_conn_check (conn);
  if (c == NULL)
    return MEMIF_ERR_NOCONN;
  if (c->is_master)
    return MEMIF_ERR_INVAL_ARG;
  int err = memif_slave_connect (c);
  memif_db_update_timer (c->db);
  return err;
}

/* Both sides, once the last handshake message is in: go live. */
static void
complete_connect (memif_conn_t *c, const char *remote_if_name)
{
  memif_db_t *db = c->db;
  const char *reason = NULL;
  if (memif_shm_connect (c, &reason) != MEMIF_ERR_SUCCESS)
    {
      memif_disconnect (c, reason, reason);
      return;
    }
  if (c->on_interrupt)
    {
      memif_queue_t *rxq = memif_conn_rxq (c);
      for (uint16_t qid = 0; qid < memif_conn_nrx (c); qid++)
        if (memif_fd_add (db, rxq[qid].int_fd, MEMIF_FD_INTERRUPT, c, qid) < 0)
          {
            memif_disconnect (c, "event registration failed", "event registration failed");
            return;
          }
    }
  memif_strlcpy (c->remote_if_name, remote_if_name, sizeof (c->remote_if_name));
  if (c->is_master)
    {
      uint8_t msg[MEMIF_MSG_SIZE];
      memif_msg_enc_connect (msg, 1, c->if_name);
      if (memif_ctrl_send (c->fd, msg, -1) != MEMIF_ERR_SUCCESS)
        {
          memif_disconnect (c, NULL, "control channel error");
          return;
        }
    }
  c->error[0] = '\0';
  c->deadline_ms = 0;
  c->state = MEMIF_STATE_CONNECTED;
  memif_db_update_timer (db);
  if (c->on_connect)
    MEMIF_CALLBACK (db, c->on_connect (c, c->private_ctx));
}

/* ------------------------------------------------------------------ slave */

static void
slave_on_hello (memif_conn_t *c, const memif_msg_info_t *m)
{
  if (m->hello.min_version > MEMIF_VERSION || m->hello.max_version < MEMIF_VERSION)
    {
      memif_disconnect (c, "incompatible version", "incompatible version");
      return;
    }
  memif_strlcpy (c->remote_app_name, m->hello.name, sizeof (c->remote_app_name));
  /* HELLO carries the largest ring index accepted: the count is one more. */
  uint32_t s2m = (uint32_t) m->hello.max_s2m_ring + 1;
  uint32_t m2s = (uint32_t) m->hello.max_m2s_ring + 1;
  c->n_s2m = (uint16_t) (s2m < c->cfg_s2m ? s2m : c->cfg_s2m);
  c->n_m2s = (uint16_t) (m2s < c->cfg_m2s ? m2s : c->cfg_m2s);
  c->log2 = m->hello.max_log2_ring_size < c->cfg_log2 ? m->hello.max_log2_ring_size
                                                       : c->cfg_log2;
  c->buffer_size = c->cfg_buffer_size;
  int err = memif_shm_slave_create (c);
  if (err)
    {
      memif_disconnect (c, "shared memory setup failed", memif_strerror (err));
      return;
    }
  uint8_t msg[MEMIF_MSG_SIZE];
  memif_msg_enc_init (msg, c->id, c->mode, c->secret, c->db->app_name);
  if (memif_ctrl_send (c->fd, msg, -1) != MEMIF_ERR_SUCCESS)
    {
      memif_disconnect (c, NULL, "control channel error");
      return;
    }
  c->state = MEMIF_STATE_SENDING;
  c->hs_step = 0;
}

/* Send the message that follows an ACK: regions, S2M rings, M2S rings, CONNECT. */
static void
slave_send_next (memif_conn_t *c)
{
  uint8_t msg[MEMIF_MSG_SIZE];
  int fd = -1;
  uint32_t step = c->hs_step;
  uint32_t nreg = c->n_regions, ns = c->n_s2m, nm = c->n_m2s;
  if (step < nreg)
    {
      memif_msg_enc_add_region (msg, (uint16_t) step, c->regions[step].size);
      fd = c->regions[step].fd;
    }
  else if (step < nreg + ns + nm)
    {
      uint32_t k = step - nreg;
      int s2m = k < ns;
      memif_queue_t *q = s2m ? &c->s2m[k] : &c->m2s[k - ns];
      memif_msg_enc_add_ring (msg, s2m, q->qid, q->region, q->offset, q->log2);
      fd = q->int_fd;
    }
  else
    {
      memif_msg_enc_connect (msg, 0, c->if_name);
      c->state = MEMIF_STATE_WAIT_CONNECTED;
    }
  c->hs_step++;
  if (memif_ctrl_send (c->fd, msg, fd) != MEMIF_ERR_SUCCESS)
    memif_disconnect (c, NULL, "control channel error");
}

static void
slave_handle (memif_conn_t *c, const memif_msg_info_t *m)
{
  if (c->state == MEMIF_STATE_WAIT_HELLO && m->type == MEMIF_MSG_TYPE_HELLO)
    slave_on_hello (c, m);
  else if (c->state == MEMIF_STATE_SENDING && m->type == MEMIF_MSG_TYPE_ACK)
    slave_send_next (c);
  else if (c->state == MEMIF_STATE_WAIT_CONNECTED && m->type == MEMIF_MSG_TYPE_CONNECTED)
    complete_connect (c, m->connect.if_name);
  else
    memif_disconnect (c, "unexpected message", "unexpected message");
}

/* ----------------------------------------------------------------- master */

static int
ring_set_count (const memif_queue_t *qs, uint16_t cfg, uint16_t *count)
{
  uint16_t n = 0;
  while (n < cfg && qs[n].present)
    n++;
  for (uint16_t i = n; i < cfg; i++)
    if (qs[i].present)
      return -1;
  *count = n;
  return n > 0 ? 0 : -1;
}

static void
master_handle (memif_conn_t *c, const memif_msg_info_t *m, int rfd)
{
  const char *reason = NULL;
  int is_add = m->type == MEMIF_MSG_TYPE_ADD_REGION || m->type == MEMIF_MSG_TYPE_ADD_RING;
  if (!is_add && rfd >= 0)
    close (rfd); /* only ADD_REGION and ADD_RING carry an fd */
  if (c->state != MEMIF_STATE_BOUND || (!is_add && m->type != MEMIF_MSG_TYPE_CONNECT))
    {
      if (is_add && rfd >= 0)
        close (rfd);
      memif_disconnect (c, "unexpected message", "unexpected message");
      return;
    }
  if (m->type == MEMIF_MSG_TYPE_CONNECT)
    {
      if (ring_set_count (c->s2m, c->cfg_s2m, &c->n_s2m) < 0
          || ring_set_count (c->m2s, c->cfg_m2s, &c->n_m2s) < 0)
        {
          c->n_s2m = c->n_m2s = 0;
          memif_disconnect (c, "incomplete ring set", "incomplete ring set");
          return;
        }
      c->log2 = c->s2m[0].log2;
      complete_connect (c, m->connect.if_name);
      return;
    }
  int err = m->type == MEMIF_MSG_TYPE_ADD_REGION
              ? memif_shm_master_add_region (c, m->add_region.index, m->add_region.size, rfd,
                                             &reason)
              : memif_shm_master_add_ring (c, m, rfd, &reason);
  if (err)
    {
      memif_disconnect (c, reason, reason);
      return;
    }
  uint8_t ack[MEMIF_MSG_SIZE];
  memif_msg_enc_ack (ack);
  if (memif_ctrl_send (c->fd, ack, -1) != MEMIF_ERR_SUCCESS)
    memif_disconnect (c, NULL, "control channel error");
}

void
memif_ctrl_handle (memif_conn_t *c, uint8_t events)
{
  if (c->broken)
    {
      memif_disconnect (c, NULL, c->broken_reason ? c->broken_reason : "protocol violation");
      return;
    }
  if (!(events & MEMIF_FD_EVENT_READ))
    {
      if (events & MEMIF_FD_EVENT_ERROR)
        memif_disconnect (c, NULL, "control channel error");
      return;
    }
  memif_msg_info_t m;
  int rfd;
  const char *reason = NULL;
  switch (ctrl_recv (c->fd, &m, &rfd, &reason))
    {
    case RECV_NOTHING:
      return;
    case RECV_GONE:
      memif_disconnect (c, NULL, c->broken_reason ? c->broken_reason : reason);
      return;
    case RECV_MALFORMED:
      memif_disconnect (c, reason, reason);
      return;
    case RECV_MESSAGE:
      break;
    }
  if (m.type == MEMIF_MSG_TYPE_DISCONNECT)
    {
      if (rfd >= 0)
        close (rfd);
      /* Not answered: the peer has already closed its end. */
      memif_disconnect (c, NULL, m.disconnect.string[0] ? m.disconnect.string
                                                           : "peer disconnected");
      return;
    }
  if (c->is_master)
    {
      master_handle (c, &m, rfd);
      return;
    }
  if (rfd >= 0)
    close (rfd); /* nothing a master sends carries an fd */
  slave_handle (c, &m);
}

/* A connection accepted by a listener, before INIT names its interface. */
void
memif_pending_handle (memif_pending_t *p, uint8_t events)
{
  if (!(events & MEMIF_FD_EVENT_READ))
    {
      if (events & MEMIF_FD_EVENT_ERROR)
        memif_pending_close (p);
      return;
    }
  memif_msg_info_t m;
  int rfd;
  const char *reason = NULL;
  switch (ctrl_recv (p->fd, &m, &rfd, &reason))
    {
    case RECV_NOTHING:
      return;
    case RECV_GONE:
      memif_pending_close (p);
      return;
    case RECV_MALFORMED:
      send_disconnect (p->fd, reason);
      memif_pending_close (p);
      return;
    case RECV_MESSAGE:
      break;
    }
  if (rfd >= 0)
    close (rfd);
  if (m.type == MEMIF_MSG_TYPE_DISCONNECT)
    {
      memif_pending_close (p);
      return;
    }
  memif_conn_t *c = NULL;
  if (m.type != MEMIF_MSG_TYPE_INIT)
    reason = "unexpected message";
  else if (m.init.version != MEMIF_VERSION)
    reason = "incompatible version";
  else
    {
      for (c = p->sock->conns; c; c = c->next)
        if (c->is_master && c->id == m.init.id)
          break;
      if (c == NULL)
        reason = "unmatched interface id";
      else if (c->fd >= 0)
        {
          reason = "already connected";
          c = NULL; /* do not disturb the interface that is in use */
        }
      else if (m.init.mode != c->mode)
        reason = "mode mismatch";
      else if (memif_secret_present (c->secret) && !memif_secret_present (m.init.secret))
        reason = "secret required";
      else if (memif_secret_present (c->secret) && !memif_secret_equal (c->secret, m.init.secret))
        reason = "incorrect secret";
    }
  if (reason)
    {
      /* Reject without touching the interface: the next slave may connect. */
      send_disconnect (p->fd, reason);
      memif_pending_close (p);
      if (c)
        memif_set_error (c, reason);
      return;
    }

  /* Every check passed: the connection now belongs to interface c. */
  memif_db_t *db = c->db;
  c->fd = p->fd;
  c->deadline_ms = p->deadline_ms;
  p->fd = -1;
  db->fds[c->fd] = (memif_fd_entry_t){ .kind = MEMIF_FD_CONTROL, .obj = c };
  memif_pending_close (p);
  c->state = MEMIF_STATE_BOUND;
  memif_strlcpy (c->remote_app_name, m.init.name, sizeof (c->remote_app_name));
  if (memif_shm_master_prepare (c) != MEMIF_ERR_SUCCESS)
    {
      memif_disconnect (c, "out of memory", "out of memory");
      return;
    }
  uint8_t ack[MEMIF_MSG_SIZE];
  memif_msg_enc_ack (ack);
  if (memif_ctrl_send (c->fd, ack, -1) != MEMIF_ERR_SUCCESS)
    memif_disconnect (c, NULL, "control channel error");
  memif_db_update_timer (db);
}

void
memif_ctrl_check_deadlines (memif_db_t *db, uint64_t now)
{
  for (memif_socket_t *s = db->sockets; s; s = s->next)
    {
      memif_pending_t *p = s->pending;
      while (p)
        {
          memif_pending_t *next = p->next;
          if (now >= p->deadline_ms)
            {
              send_disconnect (p->fd, "handshake timeout");
              memif_pending_close (p);
            }
          p = next;
        }
      for (memif_conn_t *c = s->conns; c; c = c->next)
        if (c->state != MEMIF_STATE_IDLE && c->state != MEMIF_STATE_CONNECTED
            && c->deadline_ms && now >= c->deadline_ms)
          memif_disconnect (c, "handshake timeout", "handshake timeout");
    }
}
