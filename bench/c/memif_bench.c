/*
 * memif_bench.c - throughput and latency end points over the libmemif 3.1 API
 * (build/libmemif.so), driven by bench/runner.py.
 *
 * usage: memif_bench MODE ROLE SOCKET [options]
 *   MODE  flood  send SIZE-byte frames in bursts, as fast as the ring allows
 *         sink   receive bursts, copy every frame out, measure the receive rate
 *         ping   send one frame, wait until it comes back; measure round trips
 *         pong   send back every frame received
 *   ROLE  master (listens on SOCKET) or slave (connects to it)
 * options:
 *   -s SIZE   frame bytes, 1..2048 (default 64)
 *   -b BURST  frames per burst, 1..256 (default 32)
 *   -w SEC    flood, sink: warm-up after the first frame, not measured (default 0.3)
 *   -t SEC    flood, sink: measured window (default 1)
 *   -d SEC    give up after this long (default 60)
 *   -n COUNT  ping: measured round trips (default 10000, after COUNT/10 warm-up ones)
 *   -i        receive in interrupt mode: sleep in memif_poll_event until the
 *             queue's eventfd fires (default: polling mode, busy loop)
 *   -l LOG2   ring size, log2 (default 10)
 *   -c CPU    pin the process to CPU
 *   -T SEC    connect timeout (default 10)
 *
 * Output: one line of key=value pairs on stdout. The sink prints it when its
 * window ends and exits; the flood prints it when its own window ends and
 * keeps sending until the peer goes away or SIGTERM; the ping prints it after
 * COUNT round trips. Exit status 0 on success.
 *
 * Besides rates, the line reports what the data path cost during the window:
 * read()/write() system calls (syscr/syscw from /proc/self/io: the eventfd
 * signals), calls to the allocator given to memif_init (allocs), and the
 * control-socket polls this program made itself (ctl_polls, every 10 ms).
 */

#define _GNU_SOURCE
#include <libmemif.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_BURST 256
#define BUFFER_SIZE 2048
#define CTL_PERIOD 0.01 /* seconds between control-socket polls in polling mode */
#define CHECK_EVERY 16  /* loop iterations between clock reads */

enum mode
{
  FLOOD,
  SINK,
  PING,
  PONG
};

static struct
{
  enum mode mode;
  int is_master;
  const char *socket;
  uint32_t size;
  uint16_t burst;
  double warmup, window, duration, connect_timeout;
  uint32_t count;
  int interrupt;
  uint8_t log2_ring;
  int cpu;
} opt = { .size = 64, .burst = 32, .warmup = 0.3, .window = 1.0, .duration = 60,
          .connect_timeout = 10, .count = 10000, .log2_ring = 10, .cpu = -1 };

static memif_conn_handle_t conn;
static volatile int connected, ever_connected;
static volatile sig_atomic_t stop;
static int signalled; /* on_interrupt ran for our queue */
static unsigned long allocs;
static unsigned long ctl_polls;

static uint8_t frame[BUFFER_SIZE];
/* The sink copies every frame here with a plain memcpy() call, as the plain
 * ring does. Its size matters: with a 2048-byte scratch the compiler knew the
 * copy's upper bound and expanded it inline as `rep movsq`, which made the
 * 64-byte sink about twice as slow as the same copy through glibc's memcpy
 * (see bench/README.md); a bound this large keeps the library call. */
static uint8_t scratch[65536];
static unsigned sink_sum; /* printed, so the copies out cannot be optimised away */

/* ------------------------------------------------------------------ helpers */

static double
now (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static void *
counting_alloc (size_t size)
{
  allocs++;
  return malloc (size);
}

static void *
counting_realloc (void *p, size_t size)
{
  allocs++;
  return realloc (p, size);
}

static void
on_signal (int sig)
{
  (void) sig;
  stop = 1;
}

/* read()/write() calls of this process so far. */
static void
io_calls (uint64_t *syscr, uint64_t *syscw)
{
  char buf[512];
  *syscr = *syscw = 0;
  int fd = open ("/proc/self/io", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  ssize_t n = read (fd, buf, sizeof buf - 1);
  close (fd);
  if (n <= 0)
    return;
  buf[n] = 0;
  const char *r = strstr (buf, "syscr:"), *w = strstr (buf, "syscw:");
  if (r)
    *syscr = strtoull (r + 6, NULL, 10);
  if (w)
    *syscw = strtoull (w + 6, NULL, 10);
}

/* ----------------------------------------------------------- window meter */

typedef struct
{
  double t;
  uint64_t packets, bytes, bursts, empty, syscr, syscw, allocs, ctl_polls;
} snap_t;

typedef struct
{
  enum
  {
    WAITING,
    WARMING,
    MEASURING,
    DONE
  } phase;
  double t_first;
  uint64_t packets, bytes, bursts, empty, bad;
  snap_t start, end;
} meter_t;

static void
take (const meter_t *m, snap_t *s, double t)
{
  s->t = t;
  s->packets = m->packets;
  s->bytes = m->bytes;
  s->bursts = m->bursts;
  s->empty = m->empty;
  s->allocs = allocs;
  s->ctl_polls = ctl_polls;
  io_calls (&s->syscr, &s->syscw);
}

/* Advance the warm-up / window state machine; returns 1 when the window just ended. */
static int
meter_tick (meter_t *m, double t)
{
  if (m->phase == WAITING && m->packets > 0)
    {
      m->phase = WARMING;
      m->t_first = t;
    }
  if (m->phase == WARMING && t - m->t_first >= opt.warmup)
    {
      take (m, &m->start, t);
      m->phase = MEASURING;
    }
  else if (m->phase == MEASURING && t - m->start.t >= opt.window)
    {
      take (m, &m->end, t);
      m->phase = DONE;
      return 1;
    }
  return 0;
}

static void
meter_print (const meter_t *m, const char *what)
{
  const snap_t *a = &m->start, *b = &m->end;
  double sec = b->t - a->t;
  uint64_t pk = b->packets - a->packets, by = b->bytes - a->bytes, bu = b->bursts - a->bursts;
  /* The first snapshot's own read() of /proc/self/io lands in the window. */
  uint64_t syscr = b->syscr - a->syscr, syscw = b->syscw - a->syscw;
  syscr = syscr > 0 ? syscr - 1 : 0;
  double pps = sec > 0 ? (double) pk / sec : 0;
  printf ("kind=%s pps=%.0f mpps=%.4f gbps=%.4f packets=%llu bytes=%llu seconds=%.6f "
          "bursts=%llu pkts_per_burst=%.2f empty=%llu syscr=%llu syscw=%llu allocs=%llu "
          "ctl_polls=%llu bad=%llu sum=%u\n",
          what, pps, pps / 1e6, sec > 0 ? (double) by * 8 / sec / 1e9 : 0,
          (unsigned long long) pk, (unsigned long long) by, sec, (unsigned long long) bu,
          bu ? (double) pk / (double) bu : 0, (unsigned long long) (b->empty - a->empty),
          (unsigned long long) syscr, (unsigned long long) syscw,
          (unsigned long long) (b->allocs - a->allocs),
          (unsigned long long) (b->ctl_polls - a->ctl_polls), (unsigned long long) m->bad,
          sink_sum);
  fflush (stdout);
}

/* -------------------------------------------------------------- callbacks */

static int
on_connect (memif_conn_handle_t c, void *ctx)
{
  (void) ctx;
  memif_set_rx_mode (c, opt.interrupt ? MEMIF_RX_MODE_INTERRUPT : MEMIF_RX_MODE_POLLING, 0);
  if (!opt.is_master)
    memif_refill_queue (c, 0, 0xffff, 0);
  connected = 1;
  ever_connected = 1;
  return 0;
}

static int
on_disconnect (memif_conn_handle_t c, void *ctx)
{
  (void) c;
  (void) ctx;
  connected = 0;
  return 0;
}

static int
on_interrupt (memif_conn_handle_t c, void *ctx, uint16_t qid)
{
  (void) c;
  (void) ctx;
  (void) qid;
  signalled = 1;
  return 0;
}

/* ------------------------------------------------------------- data path */

/* One transmit burst of copies of `frame`; MEMIF_ERR_SUCCESS also when the ring is full. */
static int
flood_burst (meter_t *m)
{
  memif_buffer_t bufs[MAX_BURST];
  uint16_t n = 0, tx = 0;
  int err = memif_buffer_alloc (conn, 0, bufs, opt.burst, &n, (uint16_t) opt.size);
  if (err != MEMIF_ERR_SUCCESS && err != MEMIF_ERR_NOBUF_RING)
    return err;
  if (n == 0)
    {
      m->empty++;
      return MEMIF_ERR_SUCCESS;
    }
  for (uint16_t i = 0; i < n; i++)
    memcpy (bufs[i].data, frame, opt.size);
  err = memif_tx_burst (conn, 0, bufs, n, &tx);
  m->packets += tx;
  m->bytes += (uint64_t) tx * opt.size;
  m->bursts++;
  return err == MEMIF_ERR_INT_WRITE ? MEMIF_ERR_SUCCESS : err;
}

/* One receive burst, every frame copied out; *more is set when the ring holds more. */
static int
sink_burst (meter_t *m, int *more)
{
  memif_buffer_t bufs[MAX_BURST];
  uint16_t rx = 0;
  int err = memif_rx_burst (conn, 0, bufs, opt.burst, &rx);
  *more = err == MEMIF_ERR_NOBUF;
  if (err != MEMIF_ERR_SUCCESS && err != MEMIF_ERR_NOBUF)
    return err;
  if (rx == 0)
    {
      m->empty++;
      return MEMIF_ERR_SUCCESS;
    }
  for (uint16_t i = 0; i < rx; i++)
    {
      uint32_t len = bufs[i].len;
      if (len != opt.size || (bufs[i].flags & MEMIF_BUFFER_FLAG_NEXT))
        m->bad++;
      if (len > sizeof scratch)
        len = sizeof scratch;
      memcpy (scratch, bufs[i].data, len);
      sink_sum += scratch[len ? len - 1 : 0];
      m->bytes += bufs[i].len;
    }
  m->packets += rx;
  m->bursts++;
  return memif_refill_queue (conn, 0, rx, 0);
}

/* Send back what arrived; returns the number of frames echoed, -1 on an
 * error, -2 once the peer has gone. */
static int
pong_burst (int *more)
{
  memif_buffer_t rb[MAX_BURST], tb[MAX_BURST];
  uint16_t rx = 0, k = 0, tx = 0;
  int err = memif_rx_burst (conn, 0, rb, opt.burst, &rx);
  *more = err == MEMIF_ERR_NOBUF;
  if (err == MEMIF_ERR_DISCONNECTED)
    return -2;
  if (err != MEMIF_ERR_SUCCESS && err != MEMIF_ERR_NOBUF)
    return -1;
  for (uint16_t i = 0; i < rx; i++)
    {
      uint16_t n = 0;
      if (memif_buffer_alloc (conn, 0, &tb[k], 1, &n, (uint16_t) rb[i].len) != MEMIF_ERR_SUCCESS
          || n != 1)
        break;
      memcpy (tb[k].data, rb[i].data, rb[i].len);
      k++;
    }
  if (k)
    memif_tx_burst (conn, 0, tb, k, &tx);
  if (rx)
    memif_refill_queue (conn, 0, rx, 0);
  return tx;
}

/* ----------------------------------------------------------------- modes */

static int
run_flood (void)
{
  meter_t m = { 0 };
  double t = now (), begin = t, deadline = t + opt.duration, next_ctl = t + CTL_PERIOD;
  unsigned iter = 0;
  while (!stop && connected)
    {
      if (flood_burst (&m) != MEMIF_ERR_SUCCESS)
        break;
      if (++iter % CHECK_EVERY)
        continue;
      t = now ();
      if (meter_tick (&m, t))
        meter_print (&m, "flood");
      if (t >= next_ctl)
        {
          memif_poll_event (0);
          ctl_polls++;
          next_ctl = t + CTL_PERIOD;
        }
      if (t > deadline)
        break;
    }
  if (m.phase != DONE)
    {
      /* Stopped before the window ended: report what was sent overall. */
      m.start = (snap_t){ .t = m.phase == WAITING ? begin : m.t_first };
      take (&m, &m.end, now ());
      m.end.syscr = m.end.syscw = 0;
      meter_print (&m, "flood-partial");
    }
  return 0;
}

static int
run_sink (void)
{
  meter_t m = { 0 };
  double t = now (), deadline = t + opt.duration, next_ctl = t + CTL_PERIOD;
  unsigned iter = 0;
  int more = 0;
  while (!stop && connected && m.phase != DONE)
    {
      if (opt.interrupt)
        {
          /* Sleep until the peer signals, then drain until a burst comes back short. */
          memif_poll_event (100);
          if (signalled)
            {
              signalled = 0;
              do
                if (sink_burst (&m, &more) != MEMIF_ERR_SUCCESS)
                  return 1;
              while (more);
            }
          t = now ();
        }
      else
        {
          if (sink_burst (&m, &more) != MEMIF_ERR_SUCCESS)
            return 1;
          if (++iter % CHECK_EVERY)
            continue;
          t = now ();
          if (t >= next_ctl)
            {
              memif_poll_event (0);
              ctl_polls++;
              next_ctl = t + CTL_PERIOD;
            }
        }
      meter_tick (&m, t);
      if (t > deadline)
        break;
    }
  if (m.phase != DONE)
    {
      fprintf (stderr, "sink: window not completed (%llu packets, %s)\n",
               (unsigned long long) m.packets, connected ? "timeout" : "disconnected");
      return 1;
    }
  meter_print (&m, "sink");
  return m.bad ? 1 : 0;
}

static int
run_pong (void)
{
  double t = now (), deadline = t + opt.duration, next_ctl = t + CTL_PERIOD;
  unsigned iter = 0;
  int more = 0;
  while (!stop && connected && t < deadline)
    {
      if (opt.interrupt)
        {
          memif_poll_event (100);
          if (signalled)
            {
              signalled = 0;
              do
                {
                  int n = pong_burst (&more);
                  if (n < 0)
                    return n == -2 ? 0 : 1;
                }
              while (more);
            }
          t = now ();
          continue;
        }
      int n = pong_burst (&more);
      if (n < 0)
        return n == -2 ? 0 : 1;
      if (++iter % CHECK_EVERY)
        continue;
      t = now ();
      if (t >= next_ctl)
        {
          memif_poll_event (0);
          next_ctl = t + CTL_PERIOD;
        }
    }
  return 0;
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

/* Wait for our frame to come back; 0 when it did. */
static int
ping_wait (uint32_t seq, double give_up)
{
  memif_buffer_t bufs[MAX_BURST];
  for (;;)
    {
      if (opt.interrupt)
        {
          memif_poll_event (1000);
          if (!signalled)
            {
              if (stop || !connected || now () > give_up)
                return -1;
              continue;
            }
          signalled = 0;
        }
      uint16_t rx = 0;
      int err = memif_rx_burst (conn, 0, bufs, MAX_BURST, &rx);
      if (err != MEMIF_ERR_SUCCESS && err != MEMIF_ERR_NOBUF)
        return -1;
      int found = 0;
      for (uint16_t i = 0; i < rx; i++)
        {
          uint32_t got;
          memcpy (&got, (uint8_t *) bufs[i].data + 14, sizeof got);
          found |= got == seq;
        }
      if (rx)
        memif_refill_queue (conn, 0, rx, 0);
      if (found)
        return 0;
      if (!opt.interrupt && (stop || !connected || now () > give_up))
        return -1;
    }
}

static int
run_ping (void)
{
  uint32_t warm = opt.count / 10, total = warm + opt.count;
  double *rtt = malloc (opt.count * sizeof *rtt);
  if (rtt == NULL)
    return 1;
  for (uint32_t i = 0; i < total; i++)
    {
      memif_buffer_t b;
      uint16_t n = 0, tx = 0;
      double t0 = now ();
      if (memif_buffer_alloc (conn, 0, &b, 1, &n, (uint16_t) opt.size) != MEMIF_ERR_SUCCESS
          || n != 1)
        {
          fprintf (stderr, "ping: no tx buffer\n");
          free (rtt);
          return 1;
        }
      memcpy (b.data, frame, opt.size);
      memcpy ((uint8_t *) b.data + 14, &i, sizeof i);
      int err = memif_tx_burst (conn, 0, &b, 1, &tx);
      if ((err != MEMIF_ERR_SUCCESS && err != MEMIF_ERR_INT_WRITE) || tx != 1
          || ping_wait (i, t0 + 2) != 0)
        {
          fprintf (stderr, "ping: round trip %u failed\n", i);
          free (rtt);
          return 1;
        }
      if (i >= warm)
        rtt[i - warm] = now () - t0;
    }
  double sum = 0;
  for (uint32_t i = 0; i < opt.count; i++)
    sum += rtt[i];
  qsort (rtt, opt.count, sizeof *rtt, cmp_double);
  printf ("kind=ping rtt_median_us=%.3f rtt_p99_us=%.3f rtt_min_us=%.3f rtt_mean_us=%.3f "
          "count=%u\n",
          rtt[opt.count / 2] * 1e6, rtt[(size_t) (opt.count * 0.99)] * 1e6, rtt[0] * 1e6,
          sum / opt.count * 1e6, opt.count);
  fflush (stdout);
  free (rtt);
  return 0;
}

/* ------------------------------------------------------------------ main */

static void
usage (const char *prog)
{
  fprintf (stderr,
           "usage: %s flood|sink|ping|pong master|slave SOCKET [-s SIZE] [-b BURST] [-w SEC] "
           "[-t SEC] [-d SEC] [-n COUNT] [-i] [-l LOG2] [-c CPU] [-T SEC]\n",
           prog);
}

static int
parse (int argc, char **argv)
{
  if (argc < 4)
    return -1;
  const char *modes[] = { "flood", "sink", "ping", "pong" };
  int found = 0;
  for (int i = 0; i < 4; i++)
    if (strcmp (argv[1], modes[i]) == 0)
      {
        opt.mode = (enum mode) i;
        found = 1;
      }
  if (!found || (strcmp (argv[2], "master") != 0 && strcmp (argv[2], "slave") != 0))
    return -1;
  opt.is_master = strcmp (argv[2], "master") == 0;
  opt.socket = argv[3];
  for (int i = 4; i < argc; i++)
    {
      const char *a = argv[i];
      if (strcmp (a, "-i") == 0)
        {
          opt.interrupt = 1;
          continue;
        }
      if (a[0] != '-' || a[1] == 0 || a[2] != 0 || i + 1 >= argc)
        return -1;
      const char *v = argv[++i];
      switch (a[1])
        {
        case 's':
          opt.size = (uint32_t) atoi (v);
          break;
        case 'b':
          opt.burst = (uint16_t) atoi (v);
          break;
        case 'w':
          opt.warmup = atof (v);
          break;
        case 't':
          opt.window = atof (v);
          break;
        case 'd':
          opt.duration = atof (v);
          break;
        case 'n':
          opt.count = (uint32_t) atoi (v);
          break;
        case 'l':
          opt.log2_ring = (uint8_t) atoi (v);
          break;
        case 'c':
          opt.cpu = atoi (v);
          break;
        case 'T':
          opt.connect_timeout = atof (v);
          break;
        default:
          return -1;
        }
    }
  if (opt.size < 24 || opt.size > BUFFER_SIZE || opt.burst < 1 || opt.burst > MAX_BURST
      || opt.count < 1 || opt.window <= 0)
    return -1;
  return 0;
}

static void
build_frame (void)
{
  /* Ethernet header (broadcast, locally administered source, experimental
   * ethertype), then a byte pattern. */
  for (uint32_t i = 0; i < BUFFER_SIZE; i++)
    frame[i] = (uint8_t) (i * 7 + 3);
  memset (frame, 0xff, 6);
  memcpy (frame + 6, "\x02\x00\x00\x00\x00\x01", 6);
  frame[12] = 0x88;
  frame[13] = 0xb5;
}

int
main (int argc, char **argv)
{
  if (parse (argc, argv) != 0)
    {
      usage (argv[0]);
      return 2;
    }
  if (opt.cpu >= 0)
    {
      cpu_set_t set;
      CPU_ZERO (&set);
      CPU_SET (opt.cpu, &set);
      if (sched_setaffinity (0, sizeof set, &set) != 0)
        perror ("sched_setaffinity");
    }
  struct sigaction sa = { 0 };
  sa.sa_handler = on_signal; /* no SA_RESTART: a signal ends a sleeping poll */
  sigaction (SIGTERM, &sa, NULL);
  sigaction (SIGINT, &sa, NULL);
  signal (SIGPIPE, SIG_IGN);
  build_frame ();

  char app[] = "memif-bench";
  int err = memif_init (NULL, app, counting_alloc, counting_realloc, free);
  if (err != MEMIF_ERR_SUCCESS)
    {
      fprintf (stderr, "memif_init: %s\n", memif_strerror (err));
      return 1;
    }
  if (!opt.is_master)
    {
      struct itimerspec retry = { { 0, 50000000 }, { 0, 50000000 } };
      memif_set_connection_request_timer (retry);
    }
  memif_socket_handle_t sock = NULL;
  err = memif_create_socket (&sock, opt.socket, NULL);
  if (err != MEMIF_ERR_SUCCESS)
    {
      fprintf (stderr, "memif_create_socket: %s\n", memif_strerror (err));
      return 1;
    }
  memif_conn_args_t args;
  memset (&args, 0, sizeof args);
  args.socket = sock;
  args.is_master = (uint8_t) opt.is_master;
  args.log2_ring_size = opt.log2_ring;
  args.buffer_size = BUFFER_SIZE;
  args.mode = MEMIF_INTERFACE_MODE_ETHERNET;
  snprintf ((char *) args.interface_name, sizeof args.interface_name, "bench-%s",
            opt.is_master ? "master" : "slave");
  err = memif_create (&conn, &args, on_connect, on_disconnect, on_interrupt, NULL);
  if (err != MEMIF_ERR_SUCCESS)
    {
      fprintf (stderr, "memif_create: %s\n", memif_strerror (err));
      return 1;
    }

  int rc = 1;
  double give_up = now () + opt.connect_timeout;
  while (!connected && !stop && now () < give_up)
    memif_poll_event (10);
  if (!connected)
    fprintf (stderr, "%s: not connected\n", argv[1]);
  else
    switch (opt.mode)
      {
      case FLOOD:
        rc = run_flood ();
        break;
      case SINK:
        rc = run_sink ();
        break;
      case PING:
        rc = run_ping ();
        break;
      case PONG:
        rc = run_pong ();
        break;
      }
  memif_delete (&conn);
  memif_delete_socket (&sock);
  memif_cleanup ();
  return rc;
}
