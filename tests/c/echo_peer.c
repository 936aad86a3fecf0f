/*
 * echo_peer.c - a memif peer that sends every received frame back unchanged
 * on the queue it came from (whole frames, chains included), written against
 * the libmemif 3.1 API with an external event loop (fd-update callback and
 * epoll owned by the application).
 *
 * usage: echo_peer master|slave SOCKET QUEUES SECONDS [-b BUFSIZE] [-h HEADROOM] [-l LOG2]
 * Exits 0 after SECONDS, or when the peer disconnects after having connected.
 */

#include <libmemif.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define BURST 64
#define MAX_FRAME 65535

static int epfd;
static int connected, was_connected;
static uint16_t headroom;

static int
fd_update (int fd, uint8_t events, void *ctx)
{
  (void) ctx;
  struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
  if (events & MEMIF_FD_EVENT_DEL)
    return epoll_ctl (epfd, EPOLL_CTL_DEL, fd, NULL);
  if (events & MEMIF_FD_EVENT_MOD)
    return epoll_ctl (epfd, EPOLL_CTL_MOD, fd, &ev);
  return epoll_ctl (epfd, EPOLL_CTL_ADD, fd, &ev);
}

static int
on_connect (memif_conn_handle_t conn, void *ctx)
{
  (void) ctx;
  memif_details_t md;
  char buf[2048];
  memif_get_details (conn, &md, buf, sizeof (buf));
  for (uint16_t q = 0; q < md.rx_queues_num; q++)
    memif_refill_queue (conn, q, 0xffff, headroom);
  connected = was_connected = 1;
  return 0;
}

static int
on_disconnect (memif_conn_handle_t conn, void *ctx)
{
  (void) conn;
  (void) ctx;
  connected = 0;
  return 0;
}

static uint8_t frame[MAX_FRAME];
static uint32_t frame_len;

/* Echo whole frames: reassemble, then send as one (possibly chained) packet. */
static int
on_interrupt (memif_conn_handle_t conn, void *ctx, uint16_t qid)
{
  (void) ctx;
  memif_buffer_t rx[BURST], tx[1024];
  uint16_t n, got = 0, sent;
  int err;
  static int in_chain;
  do
    {
      err = memif_rx_burst (conn, qid, rx, BURST, &got);
      for (uint16_t i = 0; i < got; i++)
        {
          if (!in_chain)
            frame_len = 0;
          if (frame_len + rx[i].len <= MAX_FRAME)
            {
              memcpy (frame + frame_len, rx[i].data, rx[i].len);
              frame_len += rx[i].len;
            }
          in_chain = (rx[i].flags & MEMIF_BUFFER_FLAG_NEXT) != 0;
          if (in_chain)
            continue;
          int tries = 0;
          while (memif_buffer_alloc (conn, qid, tx, 1, &n, (uint16_t) frame_len)
                   == MEMIF_ERR_NOBUF_RING
                 && tries++ < 1000000)
            ;
          uint32_t off = 0;
          for (uint16_t j = 0; j < n; j++)
            {
              memcpy (tx[j].data, frame + off, tx[j].len);
              off += tx[j].len;
            }
          memif_tx_burst (conn, qid, tx, n, &sent);
        }
      if (got)
        memif_refill_queue (conn, qid, got, headroom);
    }
  while (err == MEMIF_ERR_NOBUF);
  return 0;
}

int
main (int argc, char **argv)
{
  if (argc < 5)
    {
      fprintf (stderr, "usage: %s master|slave SOCKET QUEUES SECONDS [options]\n", argv[0]);
      return 2;
    }
  memif_conn_args_t args;
  memset (&args, 0, sizeof (args));
  for (int i = 5; i + 1 < argc; i += 2)
    {
      int v = atoi (argv[i + 1]);
      if (strcmp (argv[i], "-b") == 0)
        args.buffer_size = (uint16_t) v;
      else if (strcmp (argv[i], "-h") == 0)
        headroom = (uint16_t) v;
      else if (strcmp (argv[i], "-l") == 0)
        args.log2_ring_size = (uint8_t) v;
    }
  epfd = epoll_create1 (0);
  int err = memif_init (fd_update, "echo-peer", NULL, NULL, NULL);
  if (err)
    {
      fprintf (stderr, "memif_init: %s\n", memif_strerror (err));
      return 1;
    }
  struct itimerspec timer = { { 0, 100000000 }, { 0, 100000000 } };
  memif_set_connection_request_timer (timer);
  memif_socket_handle_t sock = NULL;
  if ((err = memif_create_socket (&sock, argv[2], NULL)))
    {
      fprintf (stderr, "memif_create_socket: %s\n", memif_strerror (err));
      return 1;
    }
  args.socket = sock;
  args.is_master = strcmp (argv[1], "master") == 0;
  args.num_s2m_rings = args.num_m2s_rings = (uint8_t) atoi (argv[3]);
  snprintf ((char *) args.interface_name, sizeof (args.interface_name), "echo-peer");
  memif_conn_handle_t conn = NULL;
  if ((err = memif_create (&conn, &args, on_connect, on_disconnect, on_interrupt, NULL)))
    {
      fprintf (stderr, "memif_create: %s\n", memif_strerror (err));
      return 1;
    }
  printf ("ready\n");
  fflush (stdout);
  time_t end = time (NULL) + atoi (argv[4]);
  while (time (NULL) < end && !(was_connected && !connected))
    {
      struct epoll_event ev;
      int n = epoll_wait (epfd, &ev, 1, 100);
      if (n == 1)
        {
          uint8_t e = 0;
          if (ev.events & (EPOLLIN | EPOLLHUP))
            e |= MEMIF_FD_EVENT_READ;
          if (ev.events & EPOLLERR)
            e |= MEMIF_FD_EVENT_ERROR;
          memif_control_fd_handler (ev.data.fd, e);
        }
    }
  memif_delete (&conn);
  memif_delete_socket (&sock);
  memif_cleanup ();
  close (epfd);
  return 0;
}
