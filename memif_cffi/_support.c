/* SPDX-License-Identifier: Apache-2.0 */
/*
 * _support.c - burst copy helpers for the Python bindings (see _support.h).
 *
 * They use only the public libmemif API, so they behave exactly like a C
 * application calling memif_buffer_alloc / memif_tx_burst / memif_rx_burst /
 * memif_refill_queue itself.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "_support.h"
#ifndef MEMIF_CFFI_SYSTEM_LIBMEMIF
#include "memif_private.h"
#endif

#ifndef MEMIF_CFFI_VERSION
#error "MEMIF_CFFI_VERSION must be defined by the build (build_ffi.py)"
#endif

/* Buffers handed to memif_rx_burst per call. */
#define RX_BURST 256

/*
 * memif_buffer_alloc fills one entry per slot it reserves, and a packet of
 * len bytes takes at most max(len, 1) slots (a slot holds at least one byte).
 * Asking for packets whose worst cases add up to at most TX_SCRATCH entries
 * therefore never overruns the array, whatever the slot size and ring size
 * the peer chose. 65536 entries cover one packet of any length.
 */
#define TX_SCRATCH 65536u

const char *
memif_cffi_version (void)
{
  return MEMIF_CFFI_VERSION;
}

void
memif_cffi_args_set_mode (memif_conn_args_t *a, uint8_t mode)
{
  a->mode = (memif_interface_mode_t) mode;
}

uint8_t
memif_cffi_args_get_mode (const memif_conn_args_t *a)
{
  return (uint8_t) a->mode;
}

/* ------------------------------------------------------------------- tx */

/*
 * The tx array is 2 MiB: too big for the stack, so each thread gets its own
 * on the heap, allocated on first use (only the entries written are ever
 * touched) and freed when the thread exits.
 */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int scratch_key_ok;

static void
scratch_key_init (void)
{
  scratch_key_ok = pthread_key_create (&scratch_key, free) == 0;
}

static memif_buffer_t *
tx_scratch (void)
{
  memif_buffer_t *bufs;

  pthread_once (&scratch_once, scratch_key_init);
  if (!scratch_key_ok)
    return NULL;
  bufs = pthread_getspecific (scratch_key);
  if (bufs == NULL)
    {
      bufs = malloc (TX_SCRATCH * sizeof (*bufs));
      if (bufs == NULL)
        return NULL;
      if (pthread_setspecific (scratch_key, bufs) != 0)
        {
          free (bufs);
          return NULL;
        }
    }
  return bufs;
}

/* Number of whole packets (chains ending without NEXT) in bufs[0..n). */
static uint16_t
count_packets (const memif_buffer_t *bufs, uint32_t n)
{
  uint16_t pkts = 0;
  for (uint32_t i = 0; i < n; i++)
    if (!(bufs[i].flags & MEMIF_BUFFER_FLAG_NEXT))
      pkts++;
  return pkts;
}

/*
 * Copy packet p (source src_base + offsets[p], lens[p] bytes) into the p-th
 * chain described by bufs[0..nbufs). Never reads more than lens[p] bytes of a
 * source packet, whatever lengths the buffers carry.
 */
static void
fill_chains (memif_buffer_t *bufs, uint32_t nbufs, const uint8_t *src_base,
             const uint32_t *offsets, const uint32_t *lens)
{
  uint32_t b = 0;
  for (uint32_t p = 0; b < nbufs; p++)
    {
      const uint8_t *src = src_base + offsets[p];
      uint32_t len = lens[p], off = 0;
      for (;;)
        {
          memif_buffer_t *mb = &bufs[b++];
          uint32_t n = mb->len;
          if (n > len - off)
            n = len - off;
          if (n > 0)
            memcpy (mb->data, src + off, n);
          mb->len = n;
          off += n;
          if (!(mb->flags & MEMIF_BUFFER_FLAG_NEXT) || b >= nbufs)
            break;
        }
    }
}

/*
 * Reserve slots for as many of the packets as fit (memif_buffer_alloc takes
 * one size per call, so it is called once per run of equal lengths), fill
 * them, and publish them all with a single memif_tx_burst: one counter store
 * and at most one eventfd write per burst, whatever the mix of sizes.
 */
/*
 * Copy packet i of the burst into bufs[i], when every buffer holds a whole
 * packet: memif_buffer_alloc sized each one to its packet, so this is just the
 * copies (the bound by both lengths costs nothing and keeps it safe alone).
 */
static void
fill_singles (memif_buffer_t *bufs, uint32_t n, const uint8_t *src_base, const uint32_t *offsets,
              const uint32_t *lens)
{
  for (uint32_t i = 0; i < n; i++)
    {
      uint32_t len = bufs[i].len < lens[i] ? bufs[i].len : lens[i];
      memcpy (bufs[i].data, src_base + offsets[i], len);
      bufs[i].len = len;
    }
}

/* memif_cffi_tx_copy once every lens[i] is known to be at most MEMIF_CFFI_MAX_PACKET. */
static int
tx_copy_checked (memif_conn_handle_t conn, uint16_t qid, const uint8_t *data,
                 const uint32_t *offsets, const uint32_t *lens, uint16_t count, uint16_t *sent)
{
  memif_buffer_t *bufs;
  uint32_t done = 0;

#ifndef MEMIF_CFFI_SYSTEM_LIBMEMIF
  /* The bundled library copies single-buffer packets in one pass; the rest
   * (a packet that needs a chain, an unusual queue) goes on below. */
  {
    uint16_t fast = 0;
    int general = 0;
    int rc = memif_tx_copy_simple (conn, qid, data, offsets, lens, count, &fast, &general);
    *sent = (uint16_t) (*sent + fast);
    if (rc != MEMIF_ERR_SUCCESS || !general)
      return rc;
    offsets += fast;
    lens += fast;
    count = (uint16_t) (count - fast);
  }
#endif
  bufs = tx_scratch ();
  if (bufs == NULL)
    return MEMIF_ERR_NOMEM;

  while (done < count)
    {
      uint32_t nbufs = 0, reserved = 0;
      int rc = MEMIF_ERR_SUCCESS, full = 0;
      int single = 1; /* every buffer so far is a whole packet: no chain */
      uint16_t tx = 0, pkts;

      while (done + reserved < count)
        {
          /* A run of equal lengths whose worst case (one byte per slot)
           * still fits the rest of the scratch array. */
          uint32_t len = lens[done + reserved];
          uint32_t room = (TX_SCRATCH - nbufs) / (len > 0 ? len : 1);
          uint32_t k = 0;
          uint16_t got = 0, whole;
          while (done + reserved + k < count && k < room && lens[done + reserved + k] == len)
            k++;
          if (k == 0)
            break; /* scratch full: publish what we have */
          rc = memif_buffer_alloc (conn, qid, bufs + nbufs, (uint16_t) k, &got, (uint16_t) len);
          /* k packets in k buffers, all reserved: one buffer each. */
          if (rc == MEMIF_ERR_SUCCESS && got == k)
            whole = got;
          else
            {
              whole = count_packets (bufs + nbufs, got);
              single = single && whole == got;
            }
          nbufs += got;
          reserved += whole;
          if (rc != MEMIF_ERR_SUCCESS || whole < k)
            {
              full = 1;
              break;
            }
        }
      if (nbufs == 0)
        return rc == MEMIF_ERR_NOBUF_RING ? MEMIF_ERR_SUCCESS : rc;

      if (single)
        fill_singles (bufs, nbufs, data, offsets + done, lens + done);
      else
        fill_chains (bufs, nbufs, data, offsets + done, lens + done);
      int trc = memif_tx_burst (conn, qid, bufs, (uint16_t) nbufs, &tx);
      pkts = single ? tx : count_packets (bufs, tx);
      *sent = (uint16_t) (*sent + pkts);
      done += pkts;
      if (trc != MEMIF_ERR_SUCCESS)
        return trc;
      if (full)
        return rc == MEMIF_ERR_NOBUF_RING ? MEMIF_ERR_SUCCESS : rc;
    }
  return MEMIF_ERR_SUCCESS;
}

int
memif_cffi_tx_copy (memif_conn_handle_t conn, uint16_t qid, const uint8_t *data,
                    const uint32_t *offsets, const uint32_t *lens, uint16_t count,
                    uint16_t *sent)
{
  if (sent == NULL)
    return MEMIF_ERR_INVAL_ARG;
  *sent = 0;
  if (count == 0)
    return MEMIF_ERR_SUCCESS;
  if (data == NULL || offsets == NULL || lens == NULL)
    return MEMIF_ERR_INVAL_ARG;
  for (uint32_t i = 0; i < count; i++)
    if (lens[i] > MEMIF_CFFI_MAX_PACKET)
      return MEMIF_ERR_INVAL_ARG;
  return tx_copy_checked (conn, qid, data, offsets, lens, count, sent);
}

/* ------------------------------------------------------------------- rx */

int
memif_cffi_rx_copy (memif_conn_handle_t conn, uint16_t qid, uint8_t *data, uint32_t stride,
                    uint32_t *lens, uint16_t max_packets, uint16_t *received,
                    uint16_t headroom, memif_cffi_rx_state_t *state, uint32_t *dropped)
{
  memif_buffer_t bufs[RX_BURST];
  uint32_t limit, got = 0, ndrop = 0, taken = 0, cur = 0;
  int in_chain, dropping, rc = MEMIF_ERR_SUCCESS;

  if (received == NULL)
    return MEMIF_ERR_INVAL_ARG;
  *received = 0;
  if (dropped != NULL)
    *dropped = 0;
  if (state == NULL)
    return MEMIF_ERR_INVAL_ARG;
  if (max_packets == 0)
    return MEMIF_ERR_SUCCESS;
  if (data == NULL || lens == NULL || stride == 0)
    return MEMIF_ERR_INVAL_ARG;
  limit = stride < MEMIF_CFFI_MAX_PACKET ? stride : MEMIF_CFFI_MAX_PACKET;

  /* Resume the packet an earlier call could not finish. */
  in_chain = state->in_chain != 0;
  dropping = state->dropping != 0;
  if (in_chain && !dropping)
    {
      if (state->len > limit)
        dropping = 1;
      else
        {
          memcpy (data, state->data, state->len);
          cur = state->len;
        }
    }
  state->in_chain = 0;
  state->dropping = 0;
  state->len = 0;

#ifndef MEMIF_CFFI_SYSTEM_LIBMEMIF
  /* The bundled library copies single-buffer packets in one pass; what it
   * leaves (a chain, an oversized packet, an unusual ring) goes on below. */
  if (!in_chain)
    {
      uint16_t fast = 0;
      int general = 0;
      rc = memif_rx_copy_simple (conn, qid, data, stride, limit, lens, max_packets, headroom,
                                 &fast, &general);
      got = fast;
      if (rc != MEMIF_ERR_SUCCESS || !general)
        goto finish;
    }
#endif

  for (;;)
    {
      /* Each buffer either continues the current packet or starts a new
       * one, so taking at most (max_packets - got) buffers can never yield
       * more packets than the caller has room for. The total stays below
       * 65535 so that one refill call can return everything. */
      uint32_t want = max_packets - got;
      uint16_t rx = 0;
      int brc;

      if (want > RX_BURST)
        want = RX_BURST;
      if (want > 65534u - taken)
        want = 65534u - taken;
      if (want == 0)
        break;

      brc = memif_rx_burst (conn, qid, bufs, (uint16_t) want, &rx);
      if (brc != MEMIF_ERR_SUCCESS && brc != MEMIF_ERR_NOBUF)
        {
          /* A chain cannot continue past a failure (e.g. a disconnect). */
          if (in_chain)
            ndrop++;
          in_chain = 0;
          rc = brc;
          break;
        }
      if (rx > want)
        rx = (uint16_t) want;
      taken += rx;

      for (uint32_t j = 0; j < rx; j++)
        {
          const memif_buffer_t *mb = &bufs[j];
          if (!in_chain)
            {
              in_chain = 1;
              dropping = 0;
              cur = 0;
            }
          if (!dropping)
            {
              if (mb->len > limit - cur)
                dropping = 1;
              else
                {
                  if (mb->len > 0)
                    memcpy (data + (size_t) got * stride + cur, mb->data, mb->len);
                  cur += mb->len;
                }
            }
          if (!(mb->flags & MEMIF_BUFFER_FLAG_NEXT))
            {
              if (dropping)
                ndrop++;
              else
                lens[got++] = cur;
              in_chain = 0;
            }
        }
      if (rx < want)
        break; /* ring drained */
    }

#ifndef MEMIF_CFFI_SYSTEM_LIBMEMIF
finish:
#endif
  if (in_chain)
    {
      state->in_chain = 1;
      state->dropping = (uint8_t) dropping;
      if (!dropping)
        {
          memcpy (state->data, data + (size_t) got * stride, cur);
          state->len = cur;
        }
    }

  if (taken > 0)
    {
      int frc = memif_refill_queue (conn, qid, (uint16_t) taken, headroom);
      if (rc == MEMIF_ERR_SUCCESS)
        rc = frc;
    }

  *received = (uint16_t) got;
  if (dropped != NULL)
    *dropped = ndrop;
  return rc;
}

/* ------------------------------------------------ Pythonic-API helpers */

uint8_t *
memif_cffi_rx_state_data (memif_cffi_rx_state_t *state)
{
  return state ? state->data : NULL;
}

uint64_t
memif_cffi_sum_u32 (const uint32_t *values, uint32_t n)
{
  uint64_t sum = 0;
  if (values == NULL)
    return 0;
  for (uint32_t i = 0; i < n; i++)
    sum += values[i];
  return sum;
}

int
memif_cffi_send_batch (memif_conn_handle_t conn, uint16_t qid, const uint8_t *data,
                       const uint32_t *offsets, const uint32_t *lens, uint16_t count,
                       uint32_t max_len, memif_cffi_qstats_t *stats)
{
  uint16_t sent = 0;
  int rc;

  if (stats == NULL || (count > 0 && lens == NULL))
    return -MEMIF_ERR_INVAL_ARG;
  stats->last = 0;
  if (max_len > MEMIF_CFFI_MAX_PACKET)
    max_len = MEMIF_CFFI_MAX_PACKET;
  uint64_t total = 0;
  for (uint32_t i = 0; i < count; i++)
    {
      if (lens[i] > max_len)
        return -MEMIF_ERR_INVAL_ARG;
      total += lens[i];
    }
  /* The lengths are checked: skip memif_cffi_tx_copy's own pass over them. */
  if (count > 0 && data != NULL && offsets != NULL)
    rc = tx_copy_checked (conn, qid, data, offsets, lens, count, &sent);
  else
    rc = memif_cffi_tx_copy (conn, qid, data, offsets, lens, count, &sent);
  stats->ops++;
  stats->last = sent;
  stats->packets += sent;
  stats->bytes += sent == count ? total : memif_cffi_sum_u32 (lens, sent);
  /* The packets are in the ring even when the peer's eventfd could not be
   * written: a polling peer gets them, so that counts as sent. */
  if (rc == MEMIF_ERR_INT_WRITE)
    rc = MEMIF_ERR_SUCCESS;
  if (rc != MEMIF_ERR_SUCCESS)
    return -rc;
  stats->drops += (uint64_t) (count - sent);
  return sent;
}

int
memif_cffi_recv_batch (memif_conn_handle_t conn, uint16_t qid, uint8_t *data, uint32_t stride,
                       uint32_t *lens, uint16_t max_packets, uint16_t headroom,
                       memif_cffi_rx_state_t *state, memif_cffi_qstats_t *stats)
{
  uint16_t received = 0;
  uint32_t dropped = 0;
  int rc;

  if (stats == NULL)
    return -MEMIF_ERR_INVAL_ARG;
  rc = memif_cffi_rx_copy (conn, qid, data, stride, lens, max_packets, &received, headroom,
                           state, &dropped);
  stats->ops++;
  stats->last = received;
  stats->packets += received;
  stats->drops += dropped;
  if (lens != NULL)
    stats->bytes += memif_cffi_sum_u32 (lens, received);
  return rc != MEMIF_ERR_SUCCESS ? -rc : received;
}

int
memif_cffi_queue_send (memif_cffi_queue_t *q, const memif_cffi_batch_t *b, uint32_t start,
                       uint32_t count)
{
  if (q == NULL || b == NULL || b->data == NULL || b->offsets == NULL || b->lens == NULL
      || count > UINT16_MAX || start > b->capacity || count > b->capacity - start)
    return -MEMIF_ERR_INVAL_ARG;
  return memif_cffi_send_batch (q->conn, q->qid, b->data, b->offsets + start, b->lens + start,
                                (uint16_t) count, b->slot_size, &q->stats);
}

int
memif_cffi_queue_recv (memif_cffi_queue_t *q, memif_cffi_batch_t *b)
{
  int rc;

  if (q == NULL || b == NULL || q->state == NULL || b->capacity > UINT16_MAX)
    return -MEMIF_ERR_INVAL_ARG;
  rc = memif_cffi_recv_batch (q->conn, q->qid, b->data, b->stride, b->lens,
                              (uint16_t) b->capacity, q->headroom, q->state, &q->stats);
  b->count = q->stats.last;
  return rc;
}

/* ------------------------------------------------------------ the gate */

/* What the gate records as its owner: the calling thread, never 0. */
static inline uintptr_t
gate_self (void)
{
  return (uintptr_t) pthread_self ();
}

int
memif_cffi_gate_enter (memif_cffi_queue_t *q)
{
  uintptr_t seen = 0;
  uintptr_t me = gate_self ();

  if (q == NULL)
    return 0;
  if (atomic_compare_exchange_strong (&q->owner, &seen, me))
    {
      q->depth = 1;
      return 1;
    }
  if (seen != me || q->depth == UINT32_MAX)
    return 0;
  q->depth++;
  return 1;
}

int
memif_cffi_gate_leave (memif_cffi_queue_t *q)
{
  /* Only this thread can have stored its own id, so a relaxed load is enough. */
  if (q == NULL || atomic_load_explicit (&q->owner, memory_order_relaxed) != gate_self ()
      || q->depth == 0)
    return -1;
  if (--q->depth == 0)
    atomic_store_explicit (&q->owner, 0, memory_order_release);
  return 0;
}

int
memif_cffi_gate_owned (memif_cffi_queue_t *q)
{
  return q != NULL && atomic_load_explicit (&q->owner, memory_order_relaxed) == gate_self ();
}

void
memif_cffi_gate_set_ready (memif_cffi_queue_t *q, int ready)
{
  if (q != NULL)
    atomic_store (&q->ready, ready ? 1 : 0);
}

/*
 * Take the free gate of a ready queue for one unchecked call, or nothing.
 * The owner exchange comes before the ready load (both sequentially
 * consistent): whoever clears ready and then waits for the gate either finds
 * this call holding it or makes it see ready cleared.
 */
static inline int
gate_take (memif_cffi_queue_t *q)
{
  uintptr_t seen = 0;

  if (!atomic_compare_exchange_strong (&q->owner, &seen, gate_self ()))
    return 0;
  if (!atomic_load (&q->ready))
    {
      atomic_store_explicit (&q->owner, 0, memory_order_release);
      return 0;
    }
  return 1;
}

int
memif_cffi_batch_send (const memif_cffi_bulk_t *p)
{
  memif_cffi_queue_t *q;
  uint32_t count;
  int rc;

  if (p == NULL || p->q == NULL || p->b == NULL)
    return -MEMIF_ERR_INVAL_ARG;
  q = p->q;
  count = p->b->count;
  if (count == 0)
    return 0; /* nothing to send, connected or not (as the checked path) */
  if (!gate_take (q))
    return MEMIF_CFFI_NOT_READY;
  rc = memif_cffi_queue_send (q, p->b, 0, count);
  atomic_store_explicit (&q->owner, 0, memory_order_release);
  return rc;
}

int
memif_cffi_batch_recv (const memif_cffi_bulk_t *p)
{
  memif_cffi_queue_t *q;
  int rc;

  if (p == NULL || p->q == NULL || p->b == NULL)
    return -MEMIF_ERR_INVAL_ARG;
  q = p->q;
  if (!gate_take (q))
    return MEMIF_CFFI_NOT_READY;
  rc = memif_cffi_queue_recv (q, p->b);
  atomic_store_explicit (&q->owner, 0, memory_order_release);
  return rc;
}

/* Append bufs[first..end) to the pending chain of state (bounded). */
static void
stash_segments (memif_cffi_rx_state_t *state, const memif_buffer_t *bufs, uint32_t first,
                uint32_t end)
{
  for (uint32_t j = first; j < end && !state->dropping; j++)
    {
      uint32_t n = bufs[j].len;
      if (n > MEMIF_CFFI_MAX_PACKET - state->len)
        {
          state->dropping = 1;
          state->len = 0;
          break;
        }
      if (n > 0)
        memcpy (state->data + state->len, bufs[j].data, n);
      state->len += n;
    }
}

int
memif_cffi_rx_scan (memif_conn_handle_t conn, uint16_t qid, memif_buffer_t *bufs,
                    uint16_t max_bufs, uint16_t *nbufs, uintptr_t *ptrs, uint32_t *lens,
                    uint32_t *firsts, uint16_t *nsegs, uint16_t *npkts, uint8_t *resumed,
                    uint64_t *bytes, uint32_t *dropped, memif_cffi_rx_state_t *state)
{
  uint16_t rx = 0, got = 0, nseg = 0;
  uint32_t start = 0, cur, ndrop = 0;
  uint64_t total = 0;
  int rc, in_chain, dropping, cont;

  if (nbufs == NULL || npkts == NULL || resumed == NULL || bytes == NULL || dropped == NULL)
    return MEMIF_ERR_INVAL_ARG;
  *nbufs = 0;
  *npkts = 0;
  *resumed = 0;
  *bytes = 0;
  *dropped = 0;
  if (state == NULL)
    return MEMIF_ERR_INVAL_ARG;
  if (max_bufs == 0)
    return MEMIF_ERR_SUCCESS;
  if (bufs == NULL || ptrs == NULL || lens == NULL || firsts == NULL || nsegs == NULL)
    return MEMIF_ERR_INVAL_ARG;

  rc = memif_rx_burst (conn, qid, bufs, max_bufs, &rx);
  if (rc == MEMIF_ERR_NOBUF)
    rc = MEMIF_ERR_SUCCESS;
  if (rx > max_bufs)
    rx = max_bufs;
  if (rx == 0)
    return rc; /* nothing taken: the state stays as it was */
  *nbufs = rx;

  in_chain = state->in_chain != 0;
  dropping = state->dropping != 0;
  cont = in_chain; /* the current packet continues the state's chain */
  cur = in_chain && !dropping ? state->len : 0;

  for (uint32_t j = 0; j < rx; j++)
    {
      const memif_buffer_t *mb = &bufs[j];
      if (!in_chain)
        {
          in_chain = 1;
          dropping = 0;
          cont = 0;
          cur = 0;
          start = j;
          nseg = 0;
        }
      nseg++;
      if (!dropping)
        {
          if (mb->len > MEMIF_CFFI_MAX_PACKET - cur)
            dropping = 1;
          else
            cur += mb->len;
        }
      if (!(mb->flags & MEMIF_BUFFER_FLAG_NEXT))
        {
          if (dropping)
            ndrop++;
          else
            {
              ptrs[got] = (nseg == 1 && !cont) ? (uintptr_t) mb->data : 0;
              lens[got] = cur;
              firsts[got] = start;
              nsegs[got] = nseg;
              if (cont)
                *resumed = 1;
              total += cur;
              got++;
            }
          in_chain = 0;
          cont = 0;
        }
    }

  if (in_chain && rc == MEMIF_ERR_SUCCESS)
    {
      if (!cont)
        {
          /* A new chain starts at bufs[start]: the state's old content was
           * handed out as packet 0 or there was none. */
          state->len = 0;
          state->dropping = (uint8_t) dropping;
        }
      else
        state->dropping = (uint8_t) (state->dropping || dropping);
      state->in_chain = 1;
      if (!state->dropping)
        stash_segments (state, bufs, cont ? 0 : start, rx);
    }
  else
    {
      /* No chain pending; after an error a started chain cannot continue. */
      if (in_chain)
        ndrop++;
      state->in_chain = 0;
      state->dropping = 0;
      state->len = 0;
    }

  *npkts = got;
  *bytes = total;
  *dropped = ndrop;
  return rc;
}
