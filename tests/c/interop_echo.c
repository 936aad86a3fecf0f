/*
 * interop_echo.c - send frames to a memif peer that echoes them (for example
 * DPDK testpmd in "io" forwarding mode) and check every echo byte for byte.
 *
 * Written against the libmemif 3.1 API only (global database, internal
 * polling), as a libmemif user would.
 *
 * usage: interop_echo master|slave SOCKET QUEUES COUNT SIZE... [-b BUFSIZE] [-h HEADROOM]
 *                     [-l LOG2] [-i ID] [-s SECRET] [-d MAX_DROPS]
 * Prints one summary line; exit status 0 when nothing was corrupted and at
 * most MAX_DROPS frames went missing.
 */

#include <libmemif.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_QUEUES 16
#define MAX_FRAME 65535
#define BURST 32
#define WINDOW 64

static int connected;
static uint16_t headroom;

static int
on_connect (memif_conn_handle_t conn, void *ctx)
{
  (void) ctx;
  memif_details_t md;
  char buf[2048];
  memif_get_details (conn, &md, buf, sizeof (buf));
  for (uint16_t q = 0; q < md.rx_queues_num; q++)
    {
      memif_set_rx_mode (conn, MEMIF_RX_MODE_POLLING, q);
      memif_refill_queue (conn, q, 0xffff, headroom);
    }
  connected = 1;
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

static double
now_s (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* Frame content is a function of (queue, seq, size): header then a pattern. */
static void
fill_frame (uint8_t *p, uint32_t size, uint16_t queue, uint32_t seq)
{
  uint32_t x = seq * 2654435761u + queue * 40503u + size;
  for (uint32_t i = 0; i < size; i++)
    {
      x = x * 1103515245u + 12345u;
      p[i] = (uint8_t) (x >> 16);
    }
  /* Ethernet-like header: broadcast destination, then our identification. */
  memset (p, 0xff, 6);
  memcpy (p + 6, "\x02memif", 6);
  p[12] = 0x88;
  p[13] = 0xb5; /* local experimental ethertype */
  memcpy (p + 14, &queue, 2);
  memcpy (p + 16, &seq, 4);
  memcpy (p + 20, &size, 4);
}

typedef struct
{
  memif_conn_handle_t conn;
  uint32_t sent, received, corrupted, duplicates;
  uint8_t *seen;
  uint32_t total;
  uint8_t frame[MAX_FRAME];
  uint8_t expect[MAX_FRAME];
  uint32_t frame_len;
  int in_chain;
} echo_t;

static int
send_frame (echo_t *e, uint16_t q, uint32_t seq, uint32_t size)
{
  memif_buffer_t bufs[256];
  uint16_t n = 0, tx = 0;
  fill_frame (e->expect, size, q, seq);
  int err = memif_buffer_alloc (e->conn, q, bufs, 1, &n, (uint16_t) size);
  if (err != MEMIF_ERR_SUCCESS || n == 0)
    return err ? err : MEMIF_ERR_NOBUF_RING;
  uint32_t off = 0;
  for (uint16_t i = 0; i < n; i++)
    {
      memcpy (bufs[i].data, e->expect + off, bufs[i].len);
      off += bufs[i].len;
    }
  err = memif_tx_burst (e->conn, q, bufs, n, &tx);
  return err;
}

static void
check_frame (echo_t *e, uint32_t nsizes)
{
  (void) nsizes;
  uint16_t q;
  uint32_t seq, size;
  if (e->frame_len < 24)
    {
      e->corrupted++;
      return;
    }
  memcpy (&q, e->frame + 14, 2);
  memcpy (&seq, e->frame + 16, 4);
  memcpy (&size, e->frame + 20, 4);
  if (size != e->frame_len || size > MAX_FRAME || seq >= e->total)
    {
      e->corrupted++;
      return;
    }
  fill_frame (e->expect, size, q, seq);
  if (memcmp (e->expect, e->frame, size) != 0)
    {
      e->corrupted++;
      return;
    }
  if (e->seen[seq])
    e->duplicates++;
  e->seen[seq] = 1;
  e->received++;
}

static void
receive (echo_t *e, uint16_t nq, uint32_t nsizes)
{
  memif_buffer_t bufs[BURST];
  for (uint16_t q = 0; q < nq; q++)
    {
      uint16_t rx = 0;
      int err;
      do
        {
          err = memif_rx_burst (e->conn, q, bufs, BURST, &rx);
          for (uint16_t i = 0; i < rx; i++)
            {
              if (!e->in_chain)
                e->frame_len = 0;
              if (e->frame_len + bufs[i].len <= MAX_FRAME)
                memcpy (e->frame + e->frame_len, bufs[i].data, bufs[i].len);
              e->frame_len += bufs[i].len;
              e->in_chain = (bufs[i].flags & MEMIF_BUFFER_FLAG_NEXT) != 0;
              if (!e->in_chain)
                check_frame (e, nsizes);
            }
          if (rx)
            memif_refill_queue (e->conn, q, rx, headroom);
        }
      while (err == MEMIF_ERR_NOBUF);
    }
}

int
main (int argc, char **argv)
{
  if (argc < 6)
    {
      fprintf (stderr, "usage: %s master|slave SOCKET QUEUES COUNT SIZE... [options]\n", argv[0]);
      return 2;
    }
  int is_master = strcmp (argv[1], "master") == 0;
  const char *path = argv[2];
  uint16_t nq = (uint16_t) atoi (argv[3]);
  uint32_t count = (uint32_t) atoi (argv[4]);
  uint32_t sizes[64], nsizes = 0, max_drops = 0;
  memif_conn_args_t args;
  memset (&args, 0, sizeof (args));
  for (int i = 5; i < argc; i++)
    {
      if (argv[i][0] == '-' && i + 1 < argc)
        {
          const char *v = argv[++i];
          switch (argv[i - 1][1])
            {
            case 'b':
              args.buffer_size = (uint16_t) atoi (v);
              break;
            case 'h':
              headroom = (uint16_t) atoi (v);
              break;
            case 'l':
              args.log2_ring_size = (uint8_t) atoi (v);
              break;
            case 'i':
              args.interface_id = (uint32_t) atoi (v);
              break;
            case 's':
              snprintf ((char *) args.secret, sizeof (args.secret), "%s", v);
              break;
            case 'd':
              max_drops = (uint32_t) atoi (v);
              break;
            default:
              fprintf (stderr, "unknown option %s\n", argv[i - 1]);
              return 2;
            }
        }
      else if (nsizes < 64)
        sizes[nsizes++] = (uint32_t) atoi (argv[i]);
    }
  if (nq == 0 || nq > MAX_QUEUES || nsizes == 0)
    return 2;

  int err = memif_init (NULL, "interop-echo", NULL, NULL, NULL);
  if (err)
    {
      fprintf (stderr, "memif_init: %s\n", memif_strerror (err));
      return 1;
    }
  memif_socket_handle_t sock = NULL;
  err = memif_create_socket (&sock, path, NULL);
  if (err)
    {
      fprintf (stderr, "memif_create_socket: %s\n", memif_strerror (err));
      return 1;
    }
  struct itimerspec timer = { { 0, 100000000 }, { 0, 100000000 } };
  memif_set_connection_request_timer (timer);
  static echo_t e;
  args.socket = sock;
  args.is_master = (uint8_t) is_master;
  args.num_s2m_rings = (uint8_t) nq;
  args.num_m2s_rings = (uint8_t) nq;
  snprintf ((char *) args.interface_name, sizeof (args.interface_name), "echo0");
  err = memif_create (&e.conn, &args, on_connect, on_disconnect, NULL, NULL);
  if (err)
    {
      fprintf (stderr, "memif_create: %s\n", memif_strerror (err));
      return 1;
    }
  double deadline = now_s () + 15;
  while (!connected && now_s () < deadline)
    memif_poll_event (10);
  if (!connected)
    {
      memif_details_t md;
      char buf[2048];
      memif_get_details (e.conn, &md, buf, sizeof (buf));
      fprintf (stderr, "not connected: %s\n", md.error);
      return 1;
    }
  /* Let the peer finish its own start-up before the first frames. */
  double settle = now_s () + 0.3;
  while (now_s () < settle)
    memif_poll_event (10);

  e.total = count * nsizes * nq;
  e.seen = calloc (e.total, 1);
  uint32_t seq = 0;
  deadline = now_s () + 30;
  for (uint32_t s = 0; s < nsizes; s++)
    for (uint32_t i = 0; i < count; i++)
      for (uint16_t q = 0; q < nq; q++, seq++)
        {
          while (connected && e.sent - e.received - e.corrupted >= WINDOW && now_s () < deadline)
            {
              receive (&e, nq, nsizes);
              /* give up on frames the peer dropped, but keep checking */
              if (e.sent - e.received - e.corrupted >= WINDOW)
                memif_poll_event (0);
              if (now_s () > deadline - 25 && e.sent - e.received - e.corrupted >= WINDOW)
                break;
            }
          while (connected && send_frame (&e, q, seq, sizes[s]) == MEMIF_ERR_NOBUF_RING
                 && now_s () < deadline)
            receive (&e, nq, nsizes);
          e.sent++;
          if ((e.sent % WINDOW) == 0)
            receive (&e, nq, nsizes);
        }
  double tail = now_s () + 2;
  while (connected && e.received + e.corrupted < e.sent && now_s () < tail)
    {
      receive (&e, nq, nsizes);
      memif_poll_event (1);
    }
  printf ("sent %u received %u corrupted %u duplicates %u\n", e.sent, e.received, e.corrupted,
          e.duplicates);
  int ok = e.corrupted == 0 && e.duplicates == 0 && e.sent - e.received <= max_drops && connected;
  memif_delete (&e.conn);
  memif_delete_socket (&sock);
  memif_cleanup ();
  free (e.seen);
  return ok ? 0 : 1;
}
