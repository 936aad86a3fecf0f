/*
 * rawrtt.c - the floor for a memif round trip: two processes bounce a token
 * with nothing else around it.
 *
 *   eventfd  each side sleeps in read() on its own eventfd and wakes the other
 *            with write() on the other's: the kernel wake-up path that a memif
 *            queue in interrupt mode uses, without the ring or the epoll
 *   spin     each side busy-waits on a counter in shared memory and answers by
 *            storing to another cache line: the floor for polling mode
 *
 * usage: rawrtt eventfd|spin [-n COUNT] [-c CPU0,CPU1]
 *   -n COUNT  measured round trips (default 10000, after COUNT/10 warm-up ones)
 *   -c A,B    CPUs of the initiating and of the answering process (default 0,1)
 *
 * Prints one key=value line with the same keys as memif_bench's ping.
 */

#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CACHELINE 64
#define STOP_VALUE 1000000 /* an eventfd value that tells the answering side to exit */

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause ()
#else
#define cpu_relax() __asm__ volatile ("" ::: "memory")
#endif

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
  cpu_set_t set;
  CPU_ZERO (&set);
  CPU_SET (cpu, &set);
  if (sched_setaffinity (0, sizeof set, &set) != 0)
    perror ("sched_setaffinity");
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

static int
efd_wait (int fd, uint64_t *v)
{
  return read (fd, v, sizeof *v) == (ssize_t) sizeof *v ? 0 : -1;
}

static int
efd_post (int fd, uint64_t v)
{
  return write (fd, &v, sizeof v) == (ssize_t) sizeof v ? 0 : -1;
}

int
main (int argc, char **argv)
{
  int spin = 0, cpu[2] = { 0, 1 };
  uint32_t count = 10000;
  if (argc < 2 || (strcmp (argv[1], "eventfd") != 0 && strcmp (argv[1], "spin") != 0))
    goto usage;
  spin = strcmp (argv[1], "spin") == 0;
  for (int i = 2; i < argc; i++)
    {
      if (strcmp (argv[i], "-n") == 0 && i + 1 < argc)
        count = (uint32_t) atoi (argv[++i]);
      else if (strcmp (argv[i], "-c") == 0 && i + 1 < argc)
        {
          if (sscanf (argv[++i], "%d,%d", &cpu[0], &cpu[1]) != 2)
            goto usage;
        }
      else
        goto usage;
    }
  if (count < 1)
    goto usage;

  uint32_t warm = count / 10, total = warm + count;
  int ping_fd = eventfd (0, EFD_CLOEXEC), pong_fd = eventfd (0, EFD_CLOEXEC);
  /* spin: ping counter on line 0, pong counter on line 1 */
  uint32_t *shm = mmap (NULL, 2 * CACHELINE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                        -1, 0);
  double *rtt = malloc (count * sizeof *rtt);
  if (ping_fd < 0 || pong_fd < 0 || shm == MAP_FAILED || rtt == NULL)
    {
      perror ("setup");
      return 1;
    }
  uint32_t *ping = shm, *pong = shm + CACHELINE / sizeof *shm;

  fflush (stdout);
  pid_t child = fork ();
  if (child < 0)
    {
      perror ("fork");
      return 1;
    }
  if (child == 0)
    {
      pin (cpu[1]);
      if (spin)
        {
          for (uint32_t i = 1; i <= total; i++)
            {
              while (__atomic_load_n (ping, __ATOMIC_ACQUIRE) != i)
                cpu_relax ();
              __atomic_store_n (pong, i, __ATOMIC_RELEASE);
            }
          _exit (0);
        }
      for (;;)
        {
          uint64_t v;
          if (efd_wait (ping_fd, &v) != 0)
            _exit (1);
          if (v >= STOP_VALUE)
            _exit (0);
          if (efd_post (pong_fd, 1) != 0)
            _exit (1);
        }
    }

  pin (cpu[0]);
  int rc = 0;
  for (uint32_t i = 1; i <= total; i++)
    {
      double t0 = now ();
      if (spin)
        {
          __atomic_store_n (ping, i, __ATOMIC_RELEASE);
          while (__atomic_load_n (pong, __ATOMIC_ACQUIRE) != i)
            cpu_relax ();
        }
      else
        {
          uint64_t v;
          if (efd_post (ping_fd, 1) != 0 || efd_wait (pong_fd, &v) != 0)
            {
              rc = 1;
              break;
            }
        }
      if (i > warm)
        rtt[i - warm - 1] = now () - t0;
    }
  if (!spin)
    efd_post (ping_fd, STOP_VALUE);
  int status = 0;
  waitpid (child, &status, 0);
  if (rc == 0 && WIFEXITED (status) && WEXITSTATUS (status) == 0)
    {
      double sum = 0;
      for (uint32_t i = 0; i < count; i++)
        sum += rtt[i];
      qsort (rtt, count, sizeof *rtt, cmp_double);
      printf ("kind=%s rtt_median_us=%.3f rtt_p99_us=%.3f rtt_min_us=%.3f rtt_mean_us=%.3f "
              "count=%u\n",
              argv[1], rtt[count / 2] * 1e6, rtt[(size_t) (count * 0.99)] * 1e6, rtt[0] * 1e6,
              sum / count * 1e6, count);
    }
  else
    rc = 1;
  free (rtt);
  return rc;

usage:
  fprintf (stderr, "usage: %s eventfd|spin [-n COUNT] [-c CPU0,CPU1]\n", argv[0]);
  return 2;
}
