/*
 * two_peers.c - a libmemif 3.1 program with the global database: the process
 * forks, the parent becomes the master and the child the slave; both exchange
 * COUNT packets of 1..MAX_PACKET bytes in both directions (chained when larger
 * than a buffer) and verify every byte. The slave starts retrying on a 100 ms
 * reconnect timer, so it does not matter which side is ready first.
 *
 * With EXTERNAL = "external", both sides register external-region callbacks
 * (memif_register_external_region): the slave creates buffer region 1 itself
 * (a memfd), the master maps the received region itself; both check that the
 * region is reported external and that every callback ran.
 *
 * usage: two_peers SOCKET COUNT [BUFFER_SIZE [HEADROOM [EXTERNAL]]]
 * Prints one line per side and "two_peers: PASS"; exit code 0 on success.
 */

#define _GNU_SOURCE
#include <libmemif.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PACKET 5000
#define BURST 32
#define MAX_CHAIN 128

static memif_conn_handle_t conn;
static int is_master;
static int connected, connects, disconnects;
static uint16_t headroom;
static int use_external;
static int ext_adds, ext_gets, ext_dels;

/* ------------------------------------------------- external-region callbacks */

static int
ext_add (void **addr, uint32_t size, int *fd, void *private_ctx)
{
  (void) private_ctx;
  int f = memfd_create ("two_peers external", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (f < 0 || ftruncate (f, size) != 0)
    return -1;
  void *p = mmap (NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
  if (p == MAP_FAILED)
    return -1;
  *addr = p;
  *fd = f;
  ext_adds++;
  return 0;
}

static void *
ext_get (uint32_t size, int fd, void *private_ctx)
{
  (void) private_ctx;
  void *p = mmap (NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ext_gets++;
  return p == MAP_FAILED ? NULL : p;
}

static int
ext_del (void *addr, uint32_t size, int fd, void *private_ctx)
{
  (void) fd;
  (void) private_ctx;
  ext_dels++;
  return munmap (addr, size);
}

static int
on_connect (memif_conn_handle_t c, void *ctx)
{
  (void) ctx;
  connected = 1;
  connects++;
  if (!is_master)
    return memif_refill_queue (c, 0, -1, headroom);
  return 0;
}

static int
on_disconnect (memif_conn_handle_t c, void *ctx)
{
  (void) c;
  (void) ctx;
  connected = 0;
  disconnects++;
  return 0;
}

static double
now (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* Packet seq of direction dir (0 = master to slave, 1 = slave to master). */
static uint32_t
pkt_len (uint32_t seq, int dir)
{
  return 1 + (seq * 2654435761u + (uint32_t) dir * 977u) % MAX_PACKET;
}

static uint8_t
pkt_byte (uint32_t seq, uint32_t i, int dir)
{
  return (uint8_t) (seq * 31u + i * 7u + (uint32_t) dir * 101u + (i >> 8));
}

static const char *
who (void)
{
  return is_master ? "master" : "slave";
}

/* Send up to BURST packets; 0 when the ring is full, -1 on error. */
static int
send_some (uint32_t *next, uint32_t count, int dir)
{
  memif_buffer_t bufs[MAX_CHAIN];
  for (int k = 0; k < BURST && *next < count; k++)
    {
      uint32_t len = pkt_len (*next, dir), pos = 0;
      uint16_t n = 0, tx = 0;
      int rc = memif_buffer_alloc (conn, 0, bufs, 1, &n, (uint16_t) len);
      if (rc == MEMIF_ERR_NOBUF_RING)
        return 0;
      if (rc != MEMIF_ERR_SUCCESS || n == 0 || n > MAX_CHAIN)
        {
          fprintf (stderr, "%s: memif_buffer_alloc: %s (n %u)\n", who (), memif_strerror (rc), n);
          return -1;
        }
      for (uint16_t b = 0; b < n; b++)
        {
          uint8_t *d = bufs[b].data;
          for (uint32_t i = 0; i < bufs[b].len; i++)
            d[i] = pkt_byte (*next, pos + i, dir);
          pos += bufs[b].len;
        }
      if (pos != len)
        {
          fprintf (stderr, "%s: alloc gave %u bytes for %u\n", who (), pos, len);
          return -1;
        }
      rc = memif_tx_burst (conn, 0, bufs, n, &tx);
      if (rc != MEMIF_ERR_SUCCESS || tx != n)
        {
          fprintf (stderr, "%s: memif_tx_burst: %s (%u of %u)\n", who (), memif_strerror (rc),
                   tx, n);
          return -1;
        }
      (*next)++;
    }
  return 0;
}

/* Receive and verify what is waiting; -1 on a wrong byte or an error. */
static int
recv_some (uint32_t *got, int dir)
{
  static uint32_t offset; /* bytes of the current (chained) packet seen so far */
  memif_buffer_t bufs[BURST];
  int rc;
  do
    {
      uint16_t rx = 0;
      rc = memif_rx_burst (conn, 0, bufs, BURST, &rx);
      if (rc != MEMIF_ERR_SUCCESS && rc != MEMIF_ERR_NOBUF)
        {
          fprintf (stderr, "%s: memif_rx_burst: %s\n", who (), memif_strerror (rc));
          return -1;
        }
      for (uint16_t b = 0; b < rx; b++)
        {
          const uint8_t *d = bufs[b].data;
          if (!(bufs[b].flags & MEMIF_BUFFER_FLAG_RX))
            {
              fprintf (stderr, "%s: buffer without the RX flag\n", who ());
              return -1;
            }
          for (uint32_t i = 0; i < bufs[b].len; i++)
            if (d[i] != pkt_byte (*got, offset + i, dir))
              {
                fprintf (stderr, "%s: packet %u byte %u differs\n", who (), *got, offset + i);
                return -1;
              }
          offset += bufs[b].len;
          if (!(bufs[b].flags & MEMIF_BUFFER_FLAG_NEXT))
            {
              if (offset != pkt_len (*got, dir))
                {
                  fprintf (stderr, "%s: packet %u has %u bytes, expected %u\n", who (), *got,
                           offset, pkt_len (*got, dir));
                  return -1;
                }
              (*got)++;
              offset = 0;
            }
        }
      if (rx > 0 && memif_refill_queue (conn, 0, rx, headroom) != MEMIF_ERR_SUCCESS)
        {
          fprintf (stderr, "%s: memif_refill_queue failed\n", who ());
          return -1;
        }
    }
  while (rc == MEMIF_ERR_NOBUF);
  return 0;
}

static int
check_details (const char *remote_if)
{
  memif_details_t md;
  char buf[2048];
  int rc = memif_get_details (conn, &md, buf, sizeof buf);
  if (rc != MEMIF_ERR_SUCCESS)
    {
      fprintf (stderr, "%s: memif_get_details: %s\n", who (), memif_strerror (rc));
      return -1;
    }
  if (md.link_up_down != 1 || md.role != (is_master ? 0 : 1)
      || strcmp ((char *) md.remote_if_name, remote_if) != 0 || md.rx_queues_num != 1
      || md.tx_queues_num != 1 || md.regions_num != 2 || md.regions == NULL
      || md.regions[0].is_external != 0 || md.regions[1].is_external != (use_external ? 1 : 0))
    {
      fprintf (stderr, "%s: unexpected details (remote %s, link %u)\n", who (),
               (char *) md.remote_if_name, md.link_up_down);
      return -1;
    }
  return 0;
}

/* The slave's own packets have all been released by the master. */
static int
tx_drained (void)
{
  memif_details_t md;
  char buf[2048];
  if (memif_get_details (conn, &md, buf, sizeof buf) != MEMIF_ERR_SUCCESS || md.tx_queues == NULL)
    return 0;
  return md.tx_queues[0].head == md.tx_queues[0].tail;
}

static int
run (const char *path, uint32_t count, uint16_t buffer_size)
{
  memif_socket_handle_t sock = NULL;
  memif_conn_args_t args;
  uint32_t sent = 0, got = 0;
  int rx_dir = is_master ? 1 : 0, tx_dir = is_master ? 0 : 1;
  double deadline;
  int rc;

  rc = memif_init (NULL, is_master ? "two-peers-master" : "two-peers-slave", NULL, NULL, NULL);
  if (rc != MEMIF_ERR_SUCCESS)
    {
      fprintf (stderr, "%s: memif_init: %s\n", who (), memif_strerror (rc));
      return 1;
    }
  if (use_external)
    memif_register_external_region (ext_add, ext_get, ext_del, NULL);
  if (!is_master)
    {
      struct itimerspec t = { .it_value = { 0, 100000000 }, .it_interval = { 0, 100000000 } };
      rc = memif_set_connection_request_timer (t);
      if (rc != MEMIF_ERR_SUCCESS)
        return 1;
    }
  rc = memif_create_socket (&sock, path, NULL);
  if (rc != MEMIF_ERR_SUCCESS)
    {
      fprintf (stderr, "%s: memif_create_socket: %s\n", who (), memif_strerror (rc));
      return 1;
    }
  memset (&args, 0, sizeof args);
  args.socket = sock;
  args.is_master = (uint8_t) is_master;
  args.interface_id = 42;
  args.buffer_size = buffer_size;
  args.mode = MEMIF_INTERFACE_MODE_ETHERNET;
  strcpy ((char *) args.interface_name, is_master ? "master-if" : "slave-if");
  strcpy ((char *) args.secret, "two-peers");
  rc = memif_create (&conn, &args, on_connect, on_disconnect, NULL, NULL);
  if (rc != MEMIF_ERR_SUCCESS)
    {
      fprintf (stderr, "%s: memif_create: %s\n", who (), memif_strerror (rc));
      return 1;
    }

  deadline = now () + 10;
  while (!connected)
    {
      if (now () > deadline)
        {
          fprintf (stderr, "%s: not connected after 10 s\n", who ());
          return 1;
        }
      rc = memif_poll_event (10);
      if (rc != MEMIF_ERR_SUCCESS)
        {
          fprintf (stderr, "%s: memif_poll_event: %s\n", who (), memif_strerror (rc));
          return 1;
        }
    }
  if (check_details (is_master ? "slave-if" : "master-if") != 0)
    return 1;

  deadline = now () + 30;
  while (sent < count || got < count)
    {
      if (send_some (&sent, count, tx_dir) != 0 || recv_some (&got, rx_dir) != 0)
        return 1;
      rc = memif_poll_event (0);
      if (rc != MEMIF_ERR_SUCCESS || !connected || now () > deadline)
        {
          fprintf (stderr, "%s: stopped at sent %u received %u (%s, connected %d)\n", who (),
                   sent, got, memif_strerror (rc), connected);
          return 1;
        }
    }

  deadline = now () + 10;
  if (is_master)
    {
      /* The slave hangs up once everything it sent has been consumed. */
      while (disconnects == 0 && now () < deadline)
        memif_poll_event (10);
    }
  else
    {
      while (!tx_drained () && now () < deadline)
        memif_poll_event (1);
    }
  if (now () >= deadline)
    {
      fprintf (stderr, "%s: did not finish\n", who ());
      return 1;
    }
  rc = memif_delete (&conn);
  if (rc != MEMIF_ERR_SUCCESS || conn != NULL)
    return 1;
  if (memif_delete_socket (&sock) != MEMIF_ERR_SUCCESS || memif_cleanup () != MEMIF_ERR_SUCCESS)
    return 1;
  printf ("%s: sent %u received %u verified, connects %d disconnects %d\n", who (), sent, got,
          connects, disconnects);
  if (use_external)
    {
      printf ("%s: external adds %d gets %d dels %d\n", who (), ext_adds, ext_gets, ext_dels);
      if (ext_dels != 1 || ext_adds != (is_master ? 0 : 1) || ext_gets != (is_master ? 1 : 0))
        return 1;
    }
  fflush (stdout);
  return connects == 1 && disconnects == 1 ? 0 : 1;
}

int
main (int argc, char **argv)
{
  uint32_t count;
  uint16_t buffer_size = 0;
  pid_t child;
  int status = 0, rc;

  if (argc < 3)
    {
      fprintf (stderr, "usage: %s SOCKET COUNT [BUFFER_SIZE [HEADROOM [EXTERNAL]]]\n", argv[0]);
      return 2;
    }
  count = (uint32_t) strtoul (argv[2], NULL, 10);
  if (argc > 3)
    buffer_size = (uint16_t) strtoul (argv[3], NULL, 10);
  if (argc > 4)
    headroom = (uint16_t) strtoul (argv[4], NULL, 10);
  if (argc > 5)
    use_external = strcmp (argv[5], "external") == 0;

  fflush (stdout);
  child = fork ();
  if (child < 0)
    {
      perror ("fork");
      return 1;
    }
  if (child == 0)
    {
      is_master = 0;
      _exit (run (argv[1], count, buffer_size));
    }
  is_master = 1;
  rc = run (argv[1], count, buffer_size);
  if (rc != 0)
    kill (child, SIGTERM); /* the slave would wait for a master that is gone */
  if (waitpid (child, &status, 0) != child)
    return 1;
  if (rc != 0 || !WIFEXITED (status) || WEXITSTATUS (status) != 0)
    {
      fprintf (stderr, "two_peers: FAIL (master %d, slave status %d)\n", rc, status);
      return 1;
    }
  printf ("two_peers: PASS\n");
  return 0;
}
