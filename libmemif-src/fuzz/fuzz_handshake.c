/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_handshake.c - libFuzzer target for the whole control path: a scripted
 * fake peer drives our master or our slave over a real SEQPACKET socket, with
 * real fds (memfds, eventfds), then pokes the shared memory and runs the data
 * path against whatever state results.
 *
 * Input: byte 0 selects the configuration (bit 0: our side is the master;
 * bit 1: on_interrupt registered; bit 2: secret "fz"); then a list of
 * operations, each one opcode byte followed by its operands:
 *   0 MSG   fdkind(1) message(128)    send a message; fdkind 0 none, 1 memfd,
 *                                     2 eventfd, 3 both (a malformed pair)
 *   1 POKE  offset(4) value(2)        write into the first region we can see
 *   2 DATA  qid(1) count(1) size(2)   run alloc/tx/rx/refill on our side
 *   3 POLL                            let our side handle pending events
 * After the run our interface is deleted, and every fd must be closed again.
 */

#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "libmemif.h"
#include "memif.h"

#define MSG 128
#define MAX_MAP (4u << 20)

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

typedef struct
{
  int fd;            /* the fake peer's end of the control connection */
  uint8_t *map;      /* a region the fake peer can write (its own or ours) */
  size_t map_size;
} peer_t;

static int
count_fds (void)
{
  int n = 0;
  DIR *d = opendir ("/proc/self/fd");
  if (d == NULL)
    return -1;
  while (readdir (d))
    n++;
  closedir (d);
  return n;
}

static void
peer_map (peer_t *p, int fd, size_t size)
{
  if (p->map || size == 0 || size > MAX_MAP)
    return;
  void *m = mmap (NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m != MAP_FAILED)
    {
      p->map = m;
      p->map_size = size;
    }
}

/* Read whatever our side sent; map the first region it shares with us. */
static void
peer_drain (peer_t *p)
{
  for (;;)
    {
      uint8_t buf[MSG];
      char ctl[CMSG_SPACE (sizeof (int) * 4)];
      struct iovec iov = { buf, sizeof (buf) };
      struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                           .msg_controllen = sizeof (ctl) };
      ssize_t n = recvmsg (p->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
      if (n <= 0)
        return;
      for (struct cmsghdr *c = CMSG_FIRSTHDR (&mh); c; c = CMSG_NXTHDR (&mh, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
          {
            int fd;
            memcpy (&fd, CMSG_DATA (c), sizeof (fd));
            if (n == MSG && buf[0] == MEMIF_MSG_TYPE_ADD_REGION)
              {
                uint64_t sz;
                memcpy (&sz, buf + 4, sizeof (sz));
                peer_map (p, fd, (size_t) sz);
              }
            close (fd);
          }
    }
}

static int
make_memfd (size_t size)
{
  int fd = memfd_create ("fuzz", MFD_CLOEXEC);
  if (fd < 0)
    return -1;
  if (ftruncate (fd, (off_t) size) < 0)
    {
      close (fd);
      return -1;
    }
  /* Fill with the cookie so that any 4-aligned ring offset looks valid. */
  uint32_t *m = mmap (NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m != MAP_FAILED)
    {
      for (size_t i = 0; i < size / 4; i++)
        m[i] = MEMIF_COOKIE;
      munmap (m, size);
    }
  return fd;
}

static void
peer_send (peer_t *p, const uint8_t *msg, uint8_t fdkind)
{
  int fds[2], nfds = 0;
  if (fdkind & 1)
    {
      uint64_t sz = 4096;
      if (msg[0] == MEMIF_MSG_TYPE_ADD_REGION)
        memcpy (&sz, msg + 4, sizeof (sz));
      if (sz == 0 || sz > MAX_MAP)
        sz = 4096;
      fds[nfds] = make_memfd ((size_t) sz);
      if (fds[nfds] >= 0)
        {
          peer_map (p, fds[nfds], (size_t) sz);
          nfds++;
        }
    }
  if (fdkind & 2)
    {
      fds[nfds] = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
      if (fds[nfds] >= 0)
        nfds++;
    }
  char ctl[CMSG_SPACE (sizeof (int) * 2)];
  memset (ctl, 0, sizeof (ctl));
  struct iovec iov = { (void *) msg, MSG };
  struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
  if (nfds)
    {
      mh.msg_control = ctl;
      mh.msg_controllen = CMSG_SPACE (sizeof (int) * (size_t) nfds);
      struct cmsghdr *c = CMSG_FIRSTHDR (&mh);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN (sizeof (int) * (size_t) nfds);
      memcpy (CMSG_DATA (c), fds, sizeof (int) * (size_t) nfds);
    }
  (void) sendmsg (p->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
  for (int i = 0; i < nfds; i++)
    close (fds[i]);
}

static int
on_connect (memif_conn_handle_t conn, void *ctx)
{
  (void) ctx;
#ifdef FUZZ_VERBOSE
  fprintf (stderr, "connected\n");
#endif
  memif_refill_queue (conn, 0, 0xffff, 0);
  return 0;
}

static int
on_interrupt (memif_conn_handle_t conn, void *ctx, uint16_t qid)
{
  (void) ctx;
  memif_buffer_t b[8];
  uint16_t n;
  memif_rx_burst (conn, qid, b, 8, &n);
  memif_refill_queue (conn, qid, n, 0);
  return 0;
}

static void
run_data (memif_conn_handle_t conn, uint8_t qid, uint8_t count, uint16_t size)
{
  memif_buffer_t b[256];
  uint16_t n = 0, done = 0;
  count %= 8;
  size %= 9000;
  memif_buffer_alloc (conn, qid % 3, b, count, &n, size);
  for (uint16_t i = 0; i < n; i++)
    memset (b[i].data, 0xab, b[i].len);
  memif_tx_burst (conn, qid % 3, b, n, &done);
  memif_rx_burst (conn, qid % 3, b, 64, &n);
  for (uint16_t i = 0; i < n; i++)
    {
      volatile uint8_t sink = 0;
      for (uint32_t j = 0; j < b[i].len; j += 512)
        sink ^= ((uint8_t *) b[i].data)[j];
      (void) sink;
    }
  memif_refill_queue (conn, qid % 3, n, (uint16_t) (qid & 0x7f));
  memif_details_t md;
  char buf[4096];
  memif_get_details (conn, &md, buf, sizeof (buf));
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static unsigned counter;
  if (size < 1)
    return 0;
  int before = count_fds ();
  const uint8_t cfg = data[0];
  const int we_are_master = cfg & 1;
  char path[64];
  snprintf (path, sizeof (path), "@memif-fuzz-%d-%u", (int) getpid (), counter++);

  memif_per_thread_main_handle_t db = NULL;
  memif_socket_handle_t sock = NULL;
  memif_conn_handle_t conn = NULL;
  if (memif_per_thread_init (&db, NULL, NULL, "fuzz", NULL, NULL, NULL))
    abort ();
  if (memif_per_thread_create_socket (db, &sock, path, NULL))
    abort ();
  memif_conn_args_t args;
  memset (&args, 0, sizeof (args));
  args.socket = sock;
  args.is_master = (uint8_t) we_are_master;
  args.num_s2m_rings = 2;
  args.num_m2s_rings = 2;
  args.log2_ring_size = 3;
  args.buffer_size = 1000;
  if (cfg & 4)
    memcpy (args.secret, "fz", 2);

  peer_t p = { .fd = -1 };
  int listener = -1;
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  memcpy (sa.sun_path + 1, path + 1, strlen (path) - 1);
  socklen_t salen = (socklen_t) (offsetof (struct sockaddr_un, sun_path) + strlen (path));
  if (!we_are_master)
    {
      listener = socket (AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
      if (bind (listener, (struct sockaddr *) &sa, salen) < 0 || listen (listener, 4) < 0)
        abort ();
    }
  if (memif_create (&conn, &args, on_connect, NULL, (cfg & 2) ? on_interrupt : NULL, NULL))
    abort ();
  if (we_are_master)
    {
      p.fd = socket (AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
      if (connect (p.fd, (struct sockaddr *) &sa, salen) < 0)
        abort ();
    }
  else
    p.fd = accept4 (listener, NULL, NULL, SOCK_CLOEXEC);
  for (int i = 0; i < 4; i++)
    memif_per_thread_poll_event (db, 0);
  peer_drain (&p);

  size_t i = 1;
  while (i < size)
    {
      uint8_t op = data[i++] % 4;
      if (op == 0)
        {
          uint8_t msg[MSG] = { 0 };
          uint8_t fdkind = i < size ? data[i++] : 0;
          size_t n = size - i < MSG ? size - i : MSG;
          memcpy (msg, data + i, n);
          i += n;
          peer_send (&p, msg, fdkind);
        }
      else if (op == 1 && i + 6 <= size)
        {
          uint32_t off;
          uint16_t v;
          memcpy (&off, data + i, 4);
          memcpy (&v, data + i + 4, 2);
          i += 6;
          if (p.map)
            {
              off = (uint32_t) ((off % p.map_size) & ~1u);
              __atomic_store_n ((uint16_t *) (p.map + off), v, __ATOMIC_RELAXED);
            }
        }
      else if (op == 2 && i + 4 <= size)
        {
          uint16_t sz;
          memcpy (&sz, data + i + 2, 2);
          run_data (conn, data[i], data[i + 1], sz);
          i += 4;
        }
      for (int k = 0; k < 4; k++)
        memif_per_thread_poll_event (db, 0);
      peer_drain (&p);
    }

  close (p.fd);
  for (int k = 0; k < 4; k++)
    memif_per_thread_poll_event (db, 0);
  if (p.map)
    munmap (p.map, p.map_size);
  if (memif_delete (&conn) || memif_delete_socket (&sock) || memif_per_thread_cleanup (&db))
    abort ();
  if (listener >= 0)
    close (listener);
  if (before >= 0 && count_fds () != before)
    abort (); /* an fd leaked */
  return 0;
}
