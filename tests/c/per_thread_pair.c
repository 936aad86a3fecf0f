/*
 * per_thread_pair.c - a libmemif 3.1 program with the per-thread API: two
 * threads, each with its own database, talk to each other over one socket.
 *
 * - the master thread uses external polling: an fd-update callback that
 *   feeds its own epoll set, memif_per_thread_control_fd_handler() for the
 *   events, and on_interrupt to learn which rx queue has packets;
 * - the slave thread uses internal polling (memif_per_thread_poll_event) and
 *   puts its rx queues in polling mode before it connects.
 *
 * Both send COUNT packets on each of QUEUES queues and verify every byte they
 * receive. Before that, two threads check that memif_strerror() keeps one
 * buffer per thread.
 *
 * usage: per_thread_pair SOCKET COUNT QUEUES
 * Prints "per_thread_pair: PASS" and exits 0 on success.
 */

#include <libmemif.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define MAX_QUEUES 8
#define MAX_PACKET 3000
#define BURST 64

struct peer
{
  const char *name;
  int is_master;
  memif_per_thread_main_handle_t pt;
  memif_socket_handle_t sock;
  memif_conn_handle_t conn;
  int epfd; /* external polling only */
  int connected, connects;
  uint32_t sent[MAX_QUEUES], got[MAX_QUEUES], offset[MAX_QUEUES];
  int pending[MAX_QUEUES]; /* on_interrupt seen for this queue */
  int interrupts;
  int failed;
};

static const char *sock_path;
static uint32_t count;
static uint16_t queues;

static double
now (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static uint32_t
pkt_len (uint32_t seq, uint16_t q, int from_master)
{
  return 1 + (seq * 40503u + q * 131u + (uint32_t) from_master * 7u) % MAX_PACKET;
}

static uint8_t
pkt_byte (uint32_t seq, uint16_t q, uint32_t i, int from_master)
{
  return (uint8_t) (seq + q * 17u + i * 3u + (uint32_t) from_master * 59u);
}

/* ---------------------------------------------------------------- callbacks */

static int
fd_update (int fd, uint8_t events, void *private_ctx)
{
  struct peer *p = private_ctx;
  struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
  if (events & MEMIF_FD_EVENT_DEL)
    return epoll_ctl (p->epfd, EPOLL_CTL_DEL, fd, NULL);
  if (events & MEMIF_FD_EVENT_WRITE)
    ev.events |= EPOLLOUT;
  if (events & MEMIF_FD_EVENT_MOD)
    return epoll_ctl (p->epfd, EPOLL_CTL_MOD, fd, &ev);
  return epoll_ctl (p->epfd, EPOLL_CTL_ADD, fd, &ev);
}

static int
on_connect (memif_conn_handle_t conn, void *private_ctx)
{
  struct peer *p = private_ctx;
  if (conn != p->conn)
    p->failed = 1;
  p->connected = 1;
  p->connects++;
  if (!p->is_master)
    for (uint16_t q = 0; q < queues; q++)
      if (memif_refill_queue (conn, q, -1, 0) != MEMIF_ERR_SUCCESS)
        p->failed = 1;
  return 0;
}

static int
on_disconnect (memif_conn_handle_t conn, void *private_ctx)
{
  struct peer *p = private_ctx;
  (void) conn;
  p->connected = 0;
  return 0;
}

static int
on_interrupt (memif_conn_handle_t conn, void *private_ctx, uint16_t qid)
{
  struct peer *p = private_ctx;
  (void) conn;
  if (qid >= queues)
    p->failed = 1;
  else
    p->pending[qid] = 1;
  p->interrupts++;
  return 0;
}

/* -------------------------------------------------------------- data path */

static int
send_queue (struct peer *p, uint16_t q)
{
  memif_buffer_t bufs[BURST];
  for (int k = 0; k < 16 && p->sent[q] < count; k++)
    {
      uint32_t seq = p->sent[q], len = pkt_len (seq, q, p->is_master), pos = 0;
      uint16_t n = 0, tx = 0;
      int rc = memif_buffer_alloc (p->conn, q, bufs, 1, &n, (uint16_t) len);
      if (rc == MEMIF_ERR_NOBUF_RING)
        return 0;
      if (rc != MEMIF_ERR_SUCCESS)
        {
          fprintf (stderr, "%s: alloc q%u: %s\n", p->name, q, memif_strerror (rc));
          return -1;
        }
      for (uint16_t b = 0; b < n; b++)
        {
          uint8_t *d = bufs[b].data;
          for (uint32_t i = 0; i < bufs[b].len; i++)
            d[i] = pkt_byte (seq, q, pos + i, p->is_master);
          pos += bufs[b].len;
        }
      rc = memif_tx_burst (p->conn, q, bufs, n, &tx);
      if (rc != MEMIF_ERR_SUCCESS || tx != n || pos != len)
        {
          fprintf (stderr, "%s: tx q%u: %s\n", p->name, q, memif_strerror (rc));
          return -1;
        }
      p->sent[q]++;
    }
  return 0;
}

static int
recv_queue (struct peer *p, uint16_t q)
{
  memif_buffer_t bufs[BURST];
  int rc;
  do
    {
      uint16_t rx = 0;
      rc = memif_rx_burst (p->conn, q, bufs, BURST, &rx);
      if (rc != MEMIF_ERR_SUCCESS && rc != MEMIF_ERR_NOBUF)
        {
          fprintf (stderr, "%s: rx q%u: %s\n", p->name, q, memif_strerror (rc));
          return -1;
        }
      for (uint16_t b = 0; b < rx; b++)
        {
          const uint8_t *d = bufs[b].data;
          uint32_t seq = p->got[q];
          for (uint32_t i = 0; i < bufs[b].len; i++)
            if (d[i] != pkt_byte (seq, q, p->offset[q] + i, !p->is_master))
              {
                fprintf (stderr, "%s: q%u packet %u differs\n", p->name, q, seq);
                return -1;
              }
          p->offset[q] += bufs[b].len;
          if (!(bufs[b].flags & MEMIF_BUFFER_FLAG_NEXT))
            {
              if (p->offset[q] != pkt_len (seq, q, !p->is_master))
                {
                  fprintf (stderr, "%s: q%u packet %u wrong length\n", p->name, q, seq);
                  return -1;
                }
              p->got[q]++;
              p->offset[q] = 0;
            }
        }
      if (rx && memif_refill_queue (p->conn, q, rx, 0) != MEMIF_ERR_SUCCESS)
        return -1;
    }
  while (rc == MEMIF_ERR_NOBUF);
  return 0;
}

static int
all_done (const struct peer *p)
{
  for (uint16_t q = 0; q < queues; q++)
    if (p->sent[q] < count || p->got[q] < count)
      return 0;
  return 1;
}

/* One round of event handling; returns a memif error code. */
static int
handle_events (struct peer *p, int timeout_ms)
{
  if (p->is_master)
    {
      struct epoll_event evs[16];
      int n = epoll_wait (p->epfd, evs, 16, timeout_ms);
      for (int i = 0; i < n; i++)
        {
          uint8_t events = 0;
          if (evs[i].events & (EPOLLIN | EPOLLHUP))
            events |= MEMIF_FD_EVENT_READ;
          if (evs[i].events & EPOLLOUT)
            events |= MEMIF_FD_EVENT_WRITE;
          if (evs[i].events & EPOLLERR)
            events |= MEMIF_FD_EVENT_ERROR;
          int rc = memif_per_thread_control_fd_handler (p->pt, evs[i].data.fd, events);
          if (rc != MEMIF_ERR_SUCCESS)
            return rc;
        }
      return MEMIF_ERR_SUCCESS;
    }
  return memif_per_thread_poll_event (p->pt, timeout_ms);
}

static void *
peer_main (void *arg)
{
  struct peer *p = arg;
  memif_conn_args_t args;
  double deadline;
  int rc;

  if (p->is_master)
    {
      p->epfd = epoll_create1 (EPOLL_CLOEXEC);
      rc = memif_per_thread_init (&p->pt, p, fd_update, (char *) p->name, NULL, NULL, NULL);
    }
  else
    rc = memif_per_thread_init (&p->pt, NULL, NULL, (char *) p->name, NULL, NULL, NULL);
  if (rc != MEMIF_ERR_SUCCESS)
    goto fail;
  if (!p->is_master)
    {
      struct itimerspec t = { .it_value = { 0, 50000000 }, .it_interval = { 0, 50000000 } };
      if (memif_per_thread_set_connection_request_timer (p->pt, t) != MEMIF_ERR_SUCCESS)
        goto fail;
    }
  rc = memif_per_thread_create_socket (p->pt, &p->sock, sock_path, NULL);
  if (rc != MEMIF_ERR_SUCCESS)
    goto fail;
  memset (&args, 0, sizeof args);
  args.socket = p->sock;
  args.is_master = (uint8_t) p->is_master;
  args.num_s2m_rings = (uint8_t) queues;
  args.num_m2s_rings = (uint8_t) queues;
  args.log2_ring_size = 8;
  args.buffer_size = 1024;
  snprintf ((char *) args.interface_name, sizeof args.interface_name, "%s-if", p->name);
  rc = memif_create (&p->conn, &args, on_connect, on_disconnect,
                     p->is_master ? on_interrupt : NULL, p);
  if (rc != MEMIF_ERR_SUCCESS)
    goto fail;
  if (!p->is_master)
    for (uint16_t q = 0; q < queues; q++)
      if (memif_set_rx_mode (p->conn, MEMIF_RX_MODE_POLLING, q) != MEMIF_ERR_SUCCESS)
        goto fail;

  deadline = now () + 10;
  while (!p->connected && now () < deadline)
    if ((rc = handle_events (p, 10)) != MEMIF_ERR_SUCCESS)
      goto fail;
  if (!p->connected)
    {
      fprintf (stderr, "%s: not connected\n", p->name);
      goto fail;
    }
  if (!p->is_master)
    {
      /* Polling mode set before connecting is applied at connect. */
      memif_details_t md;
      char buf[4096];
      if (memif_get_details (p->conn, &md, buf, sizeof buf) != MEMIF_ERR_SUCCESS
          || md.rx_queues_num != queues)
        goto fail;
      for (uint16_t q = 0; q < queues; q++)
        if (!(md.rx_queues[q].flags & MEMIF_QUEUE_FLAG_POLLING))
          {
            fprintf (stderr, "%s: rx queue %u not in polling mode\n", p->name, q);
            goto fail;
          }
    }

  deadline = now () + 30;
  while (!all_done (p))
    {
      for (uint16_t q = 0; q < queues; q++)
        {
          if (send_queue (p, q) != 0)
            goto fail;
          /* The master receives when told so by on_interrupt (its events are
           * handled below); the slave polls. */
          if (!p->is_master || p->pending[q])
            {
              p->pending[q] = 0;
              if (recv_queue (p, q) != 0)
                goto fail;
            }
        }
      if ((rc = handle_events (p, p->is_master ? 1 : 0)) != MEMIF_ERR_SUCCESS || !p->connected
          || p->failed || now () > deadline)
        {
          fprintf (stderr, "%s: stopped (%s, connected %d, failed %d)\n", p->name,
                   memif_strerror (rc), p->connected, p->failed);
          goto fail;
        }
    }
  if (p->is_master && p->interrupts == 0)
    {
      fprintf (stderr, "%s: no on_interrupt call\n", p->name);
      goto fail;
    }
  return NULL;

fail:
  p->failed = 1;
  return NULL;
}

/* ---------------------------------------------------------- strerror check */

struct strerror_job
{
  int code;
  char expected[256];
  int bad;
  pthread_barrier_t *barrier;
};

static void *
strerror_main (void *arg)
{
  struct strerror_job *j = arg;
  pthread_barrier_wait (j->barrier);
  for (int i = 0; i < 200000; i++)
    if (strcmp (memif_strerror (j->code), j->expected) != 0)
      {
        j->bad = 1;
        break;
      }
  return NULL;
}

static int
check_strerror_threads (void)
{
  pthread_barrier_t barrier;
  struct strerror_job jobs[2] = { { .code = MEMIF_ERR_NOCONN }, { .code = MEMIF_ERR_QID } };
  pthread_t th[2];
  pthread_barrier_init (&barrier, NULL, 2);
  for (int i = 0; i < 2; i++)
    {
      snprintf (jobs[i].expected, sizeof jobs[i].expected, "%s", memif_strerror (jobs[i].code));
      jobs[i].barrier = &barrier;
    }
  for (int i = 0; i < 2; i++)
    pthread_create (&th[i], NULL, strerror_main, &jobs[i]);
  for (int i = 0; i < 2; i++)
    pthread_join (th[i], NULL);
  pthread_barrier_destroy (&barrier);
  return jobs[0].bad || jobs[1].bad ? -1 : 0;
}

int
main (int argc, char **argv)
{
  struct peer master = { .name = "pt-master", .is_master = 1, .epfd = -1 };
  struct peer slave = { .name = "pt-slave", .is_master = 0, .epfd = -1 };
  pthread_t tm, ts;
  int ok = 1;

  if (argc < 4)
    {
      fprintf (stderr, "usage: %s SOCKET COUNT QUEUES\n", argv[0]);
      return 2;
    }
  sock_path = argv[1];
  count = (uint32_t) strtoul (argv[2], NULL, 10);
  queues = (uint16_t) strtoul (argv[3], NULL, 10);
  if (queues == 0 || queues > MAX_QUEUES)
    return 2;

  if (check_strerror_threads () != 0)
    {
      fprintf (stderr, "memif_strerror: a thread read another thread's text\n");
      return 1;
    }
  printf ("strerror: thread-local\n");

  pthread_create (&tm, NULL, peer_main, &master);
  pthread_create (&ts, NULL, peer_main, &slave);
  pthread_join (tm, NULL);
  pthread_join (ts, NULL);

  for (struct peer *p = &master; p; p = p == &master ? &slave : NULL)
    {
      uint32_t sent = 0, got = 0;
      for (uint16_t q = 0; q < queues; q++)
        {
          sent += p->sent[q];
          got += p->got[q];
        }
      printf ("%s: sent %u received %u on %u queues%s\n", p->name, sent, got, queues,
              p->failed ? " FAILED" : "");
      ok &= !p->failed;
    }
  /* Tear down from the main thread: slave first, then the master. */
  for (struct peer *p = &slave; p; p = p == &slave ? &master : NULL)
    {
      if (p->conn && memif_delete (&p->conn) != MEMIF_ERR_SUCCESS)
        ok = 0;
      if (p->sock && memif_delete_socket (&p->sock) != MEMIF_ERR_SUCCESS)
        ok = 0;
      if (p->pt && memif_per_thread_cleanup (&p->pt) != MEMIF_ERR_SUCCESS)
        ok = 0;
      if (p->pt != NULL)
        ok = 0;
      if (p->epfd >= 0)
        close (p->epfd);
    }
  if (!ok)
    {
      printf ("per_thread_pair: FAIL\n");
      return 1;
    }
  printf ("per_thread_pair: PASS\n");
  return 0;
}
