/*
 * plainring.c - the physical limit for the memif data path on this machine:
 * a single-producer / single-consumer ring in a memfd shared by two processes,
 * with nothing else around it (no protocol, no validation, no API). The
 * producer copies SIZE-byte frames into the ring's buffers in bursts, the
 * consumer copies them out; both publish their index once per burst.
 *
 * The layout is memif-shaped so that the comparison isolates the library's
 * own work: 16-byte descriptors (offset, length, flags), 2048-byte buffers,
 * and the two indices on separate cache lines.
 *
 * usage: plainring [-s SIZE] [-b BURST] [-w SEC] [-t SEC] [-l LOG2] [-c CPU0,CPU1] [-f] [-p]
 *   -s SIZE   frame bytes, 1..2048 (default 64)
 *   -b BURST  frames per burst, 1..1024 (default 32)
 *   -w SEC    warm-up before the window (default 0.3)
 *   -t SEC    measured window (default 1)
 *   -l LOG2   ring slots, log2 (default 10)
 *   -c A,B    CPUs of the producer and of the consumer (default 0,1)
 *   -f        false sharing: both indices on one cache line
 *   -p        publish the producer index after every frame instead of once per burst
 *
 * The consumer prints one key=value line (same keys as memif_bench) when its
 * window ends; then both processes exit.
 */

#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CACHELINE 64
#define BUFFER_SIZE 2048
#define MAX_BURST 1024

typedef struct
{
  uint32_t offset;
  uint32_t length;
  uint16_t flags;
  uint16_t pad[3];
} desc_t;

/* Header: line 0 holds the producer index (and, with -f, the consumer's too),
 * line 1 the consumer index, line 2 the stop flag. */
#define HDR_SIZE (4 * CACHELINE)

static struct
{
  uint32_t size, burst, log2;
  double warmup, window;
  int cpu[2];
  int false_sharing, per_frame;
} opt = { .size = 64, .burst = 32, .log2 = 10, .warmup = 0.3, .window = 1.0, .cpu = { 0, 1 } };

static double
now (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static void
pin (int cpu)
{
  if (cpu < 0)
    return;
  cpu_set_t set;
  CPU_ZERO (&set);
  CPU_SET (cpu, &set);
  if (sched_setaffinity (0, sizeof set, &set) != 0)
    perror ("sched_setaffinity");
}

typedef struct
{
  uint32_t *head, *tail, *stop;
  desc_t *desc;
  uint8_t *buffers;
  uint32_t mask;
} ring_t;

static void
produce (ring_t *r)
{
  static uint8_t frame[BUFFER_SIZE];
  for (uint32_t i = 0; i < BUFFER_SIZE; i++)
    frame[i] = (uint8_t) (i * 7 + 3);
  uint32_t head = 0, tail_seen = 0, slots = r->mask + 1;
  unsigned iter = 0;
  double give_up = now () + opt.warmup + opt.window + 10; /* the consumer died */
  for (;;)
    {
      uint32_t free_slots = slots - (head - tail_seen);
      if (free_slots < opt.burst)
        {
          tail_seen = __atomic_load_n (r->tail, __ATOMIC_ACQUIRE);
          free_slots = slots - (head - tail_seen);
        }
      uint32_t n = free_slots < opt.burst ? free_slots : opt.burst;
      /* The copies first, then the lengths (with -p, the index after each):
       * the order memif's flood keeps, and about 7 % faster at 64 B than
       * writing each length right after its copy. */
      for (uint32_t k = 0; k < n; k++)
        memcpy (r->buffers + r->desc[(head + k) & r->mask].offset, frame, opt.size);
      for (uint32_t k = 0; k < n; k++)
        {
          r->desc[(head + k) & r->mask].length = opt.size;
          if (opt.per_frame)
            __atomic_store_n (r->head, head + k + 1, __ATOMIC_RELEASE);
        }
      head += n;
      if (n && !opt.per_frame)
        __atomic_store_n (r->head, head, __ATOMIC_RELEASE);
      if (++iter % 64 == 0
          && (__atomic_load_n (r->stop, __ATOMIC_RELAXED) || (iter % 65536 == 0 && now () > give_up)))
        return;
    }
}

static int
consume (ring_t *r)
{
  static uint8_t scratch[BUFFER_SIZE];
  uint32_t tail = 0, head_seen = 0;
  uint64_t packets = 0, bytes = 0, bursts = 0, empty = 0, start_packets = 0, start_bytes = 0;
  uint64_t start_bursts = 0;
  unsigned sum = 0, iter = 0;
  double t_first = 0, t_start = 0, t, give_up = now () + 10;
  int phase = 0; /* 0 waiting, 1 warming, 2 measuring */
  for (;;)
    {
      uint32_t avail = head_seen - tail;
      if (avail < opt.burst)
        {
          head_seen = __atomic_load_n (r->head, __ATOMIC_ACQUIRE);
          avail = head_seen - tail;
        }
      uint32_t n = avail < opt.burst ? avail : opt.burst;
      for (uint32_t k = 0; k < n; k++)
        {
          const desc_t *d = &r->desc[(tail + k) & r->mask];
          uint32_t len = d->length;
          memcpy (scratch, r->buffers + d->offset, len);
          sum += scratch[len - 1];
          bytes += len;
        }
      if (n)
        {
          tail += n;
          __atomic_store_n (r->tail, tail, __ATOMIC_RELEASE);
          packets += n;
          bursts++;
        }
      else
        empty++;
      if (++iter % 16)
        continue;
      t = now ();
      if (phase == 0 && packets)
        {
          phase = 1;
          t_first = t;
        }
      else if (phase == 1 && t - t_first >= opt.warmup)
        {
          phase = 2;
          t_start = t;
          start_packets = packets;
          start_bytes = bytes;
          start_bursts = bursts;
        }
      else if (phase == 2 && t - t_start >= opt.window)
        {
          double sec = t - t_start, pps = (double) (packets - start_packets) / sec;
          uint64_t bu = bursts - start_bursts;
          printf ("kind=plainring pps=%.0f mpps=%.4f gbps=%.4f packets=%llu bytes=%llu "
                  "seconds=%.6f bursts=%llu pkts_per_burst=%.2f empty=%llu sum=%u\n",
                  pps, pps / 1e6, (double) (bytes - start_bytes) * 8 / sec / 1e9,
                  (unsigned long long) (packets - start_packets),
                  (unsigned long long) (bytes - start_bytes), sec, (unsigned long long) bu,
                  bu ? (double) (packets - start_packets) / (double) bu : 0,
                  (unsigned long long) empty, sum);
          fflush (stdout);
          __atomic_store_n (r->stop, 1, __ATOMIC_RELAXED);
          return 0;
        }
      if (phase == 0 && t > give_up)
        return 1;
    }
}

static int
parse (int argc, char **argv)
{
  for (int i = 1; i < argc; i++)
    {
      const char *a = argv[i];
      if (strcmp (a, "-f") == 0)
        opt.false_sharing = 1;
      else if (strcmp (a, "-p") == 0)
        opt.per_frame = 1;
      else if (a[0] == '-' && a[1] && !a[2] && i + 1 < argc)
        {
          const char *v = argv[++i];
          switch (a[1])
            {
            case 's':
              opt.size = (uint32_t) atoi (v);
              break;
            case 'b':
              opt.burst = (uint32_t) atoi (v);
              break;
            case 'w':
              opt.warmup = atof (v);
              break;
            case 't':
              opt.window = atof (v);
              break;
            case 'l':
              opt.log2 = (uint32_t) atoi (v);
              break;
            case 'c':
              if (sscanf (v, "%d,%d", &opt.cpu[0], &opt.cpu[1]) != 2)
                return -1;
              break;
            default:
              return -1;
            }
        }
      else
        return -1;
    }
  if (opt.size < 1 || opt.size > BUFFER_SIZE || opt.burst < 1 || opt.burst > MAX_BURST
      || opt.log2 < 1 || opt.log2 > 16 || (1u << opt.log2) < opt.burst || opt.window <= 0)
    return -1;
  return 0;
}

int
main (int argc, char **argv)
{
  if (parse (argc, argv) != 0)
    {
      fprintf (stderr, "usage: %s [-s SIZE] [-b BURST] [-w SEC] [-t SEC] [-l LOG2] [-c A,B] "
                       "[-f] [-p]\n",
               argv[0]);
      return 2;
    }
  uint32_t slots = 1u << opt.log2;
  size_t desc_bytes = (size_t) slots * sizeof (desc_t);
  size_t total = HDR_SIZE + desc_bytes + (size_t) slots * BUFFER_SIZE;
  int fd = memfd_create ("plainring", MFD_CLOEXEC);
  if (fd < 0 || ftruncate (fd, (off_t) total) != 0)
    {
      perror ("memfd");
      return 1;
    }
  uint8_t *base = mmap (NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED)
    {
      perror ("mmap");
      return 1;
    }
  ring_t r = {
    .head = (uint32_t *) base,
    .tail = (uint32_t *) (base + (opt.false_sharing ? 4 : CACHELINE)),
    .stop = (uint32_t *) (base + 2 * CACHELINE),
    .desc = (desc_t *) (base + HDR_SIZE),
    .buffers = base + HDR_SIZE + desc_bytes,
    .mask = slots - 1,
  };
  for (uint32_t i = 0; i < slots; i++)
    r.desc[i].offset = i * BUFFER_SIZE;

  fflush (stdout);
  pid_t child = fork ();
  if (child < 0)
    {
      perror ("fork");
      return 1;
    }
  if (child == 0)
    {
      pin (opt.cpu[1]);
      _exit (consume (&r));
    }
  pin (opt.cpu[0]);
  produce (&r);
  int status = 0;
  waitpid (child, &status, 0);
  munmap (base, total);
  close (fd);
  return WIFEXITED (status) ? WEXITSTATUS (status) : 1;
}
