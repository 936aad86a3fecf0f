/* SPDX-License-Identifier: Apache-2.0 */
/*
 * datapath.c - buffer_alloc, tx_burst, rx_burst, refill_queue, enq_tx,
 * rx mode and queue eventfds.
 *
 * Every counter and descriptor read from shared memory comes from a peer we
 * do not trust: it is read once into a local, validated, and only then used.
 * A violation marks the connection broken (the control loop then tears it
 * down with the reason); the data path hands out nothing further.
 *
 * Counters (memif-protocol §6), all modulo 65536, kept privately per queue:
 *   own        our shared counter (head on a slave, tail on a master)
 *   last       consumer: how far we have consumed
 *   peer_seen  last validated value of the peer's counter
 *   alloc      producer: slots reserved by memif_buffer_alloc, unpublished
 */

#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "memif_private.h"

void
memif_mark_broken (memif_conn_t *c, const char *reason)
{
  if (__atomic_exchange_n (&c->broken, 1, __ATOMIC_ACQ_REL))
    return;
  c->broken_reason = reason;
  /* The control loop sees EOF and runs the normal teardown. */
  if (c->fd >= 0)
    (void) shutdown (c->fd, SHUT_RDWR);
}

static inline uint16_t
load_peer (const memif_conn_t *c, const memif_queue_t *q)
{
  return c->is_master ? __atomic_load_n (&q->ring->head, __ATOMIC_ACQUIRE)
                      : __atomic_load_n (&q->ring->tail, __ATOMIC_ACQUIRE);
}

static inline void
store_own (const memif_conn_t *c, memif_queue_t *q)
{
  if (c->is_master)
    __atomic_store_n (&q->ring->tail, q->own, __ATOMIC_RELEASE);
  else
    __atomic_store_n (&q->ring->head, q->own, __ATOMIC_RELEASE);
}

/* Read and validate the peer's counter. The peer may only move it forward,
 * and never past what the protocol allows: a slave's peer (the master) moves
 * tail up to our head; a master's peer (the slave) moves head up to N ahead
 * of our tail. */
static inline int
refresh_peer (memif_conn_t *c, memif_queue_t *q)
{
  uint16_t p = load_peer (c, q);
  uint16_t seen = q->peer_seen;
  uint16_t limit = c->is_master ? (uint16_t) (q->size - (uint16_t) (seen - q->own))
                                 : (uint16_t) (q->own - seen);
  if ((uint16_t) (p - seen) > limit)
    {
      memif_mark_broken (c, "ring counter out of range");
      return -1;
    }
  q->peer_seen = p;
  return 0;
}

/* Copy a descriptor out of shared memory exactly once: each field is one
 * volatile load, so the compiler can neither read it twice nor reload it
 * later, and (unlike a full compiler barrier) private state stays in
 * registers across the loop. The metadata word is not used. */
static inline memif_desc_t
read_desc (const memif_desc_t *d)
{
  const volatile memif_desc_t *v = d;
  return (memif_desc_t){ .flags = v->flags, .region = v->region, .length = v->length,
                         .offset = v->offset };
}

/* The regions of a connection, read once per call: a store into the
 * caller's buffer array could otherwise force the compiler to reload them. */
typedef struct
{
  const memif_region_t *r;
  uint16_t n;
} region_view_t;

static inline region_view_t
region_view (const memif_conn_t *c)
{
  return (region_view_t){ .r = c->regions, .n = c->n_regions };
}

static inline int
desc_in_region (region_view_t rv, uint16_t region, uint32_t offset, uint32_t length)
{
  return region < rv.n && rv.r[region].addr != NULL
         && (uint64_t) offset + length <= rv.r[region].size;
}

/* The last region a burst used, in locals: a store through the caller's
 * buffer array (a void * field) could alias the region table, so the
 * compiler would otherwise reload the table entry for every packet. */
typedef struct
{
  uint32_t id; /* UINT32_MAX: none yet */
  uint8_t *addr;
  uint64_t size;
} region_cache_t;

#define REGION_CACHE_EMPTY ((region_cache_t){ .id = UINT32_MAX })

/* As desc_in_region, through the cache. */
static inline int
desc_in_cached_region (region_cache_t *rc, region_view_t rv, uint16_t region, uint32_t offset,
                       uint32_t length)
{
  if (region != rc->id)
    {
      if (region >= rv.n || rv.r[region].addr == NULL)
        return 0;
      *rc = (region_cache_t){ .id = region, .addr = rv.r[region].addr,
                              .size = rv.r[region].size };
    }
  return (uint64_t) offset + length <= rc->size;
}

/* Slave: what a burst needs to find its own buffers again, read once per call. */
typedef struct
{
  memif_conn_t *c;
  uint32_t (*ext) (void *); /* the application's get_ext_offset, or NULL */
  uint32_t b;               /* buffer size */
  uint32_t mask;            /* b - 1 when b is a power of two, else 0 */
  uint64_t limit;           /* size of the buffer region */
  /* The common case: no hook, power-of-two buffers, a region that holds at
   * least one; a slot's buffer is then its posted offset masked, and valid
   * when it starts no later than top. The fast loops need it. */
  int masked;
  uint64_t top;
} slave_bufs_t;

static inline slave_bufs_t
slave_bufs (memif_conn_t *c)
{
  uint32_t b = c->buffer_size;
  slave_bufs_t sb = { .c = c, .ext = c->db->get_ext_offset, .b = b,
                      .mask = (b & (b - 1)) == 0 ? b - 1 : 0, .limit = c->regions[1].size };
  sb.masked = sb.ext == NULL && sb.mask != 0 && sb.limit >= b;
  sb.top = sb.masked ? sb.limit - b : 0;
  return sb;
}

/* Slave, the masked case: the buffer an offset points into; 0 when it would
 * end past the region. */
static inline int
slave_masked_base (const slave_bufs_t *sb, uint32_t offset, uint32_t *base)
{
  *base = offset & ~sb->mask;
  return *base <= sb->top;
}

/* Slave: base offset of the buffer a descriptor points into, validated. */
static inline int
slave_buffer_base (const slave_bufs_t *sb, const memif_desc_t *d, uint32_t *base)
{
  uint32_t off;
  if (sb->ext)
    off = sb->ext (sb->c->private_ctx);
  else
    {
      off = ((const volatile memif_desc_t *) d)->offset;
      /* a mask when b is a power of two, else the modulo */
      off = sb->mask ? off & ~sb->mask : off - off % sb->b;
    }
  if ((uint64_t) off + sb->b > sb->limit)
    {
      memif_mark_broken (sb->c, "invalid descriptor");
      return -1;
    }
  *base = off;
  return 0;
}

static inline int
guard (memif_conn_handle_t h, uint16_t qid, int rx, memif_conn_t **cp, memif_queue_t **qp)
{
  memif_conn_t *c = memif_conn_check (h);
  if (c == NULL)
    return MEMIF_ERR_NOCONN;
  if (c->state != MEMIF_STATE_CONNECTED || c->broken)
    return MEMIF_ERR_DISCONNECTED;
  if (qid >= (rx ? memif_conn_nrx (c) : memif_conn_ntx (c)))
    return MEMIF_ERR_QID;
  *cp = c;
  *qp = &(rx ? memif_conn_rxq (c) : memif_conn_txq (c))[qid];
  return MEMIF_ERR_SUCCESS;
}

static inline void
signal_peer_if_wanted (memif_queue_t *q, int *err)
{
  if (__atomic_load_n (&q->ring->flags, __ATOMIC_RELAXED) & MEMIF_RING_FLAG_MASK_INT)
    return;
  uint64_t one = 1;
  if (write (q->int_fd, &one, sizeof (one)) < 0 && errno != EAGAIN)
    *err = MEMIF_ERR_INT_WRITE;
}

/* Free tx slots, after refreshing the peer's counter. */
static inline int
tx_free (memif_conn_t *c, memif_queue_t *q, uint32_t *free_slots)
{
  if (refresh_peer (c, q) < 0)
    return MEMIF_ERR_DISCONNECTED;
  if (c->is_master) /* posted by the slave, not yet filled */
    *free_slots = (uint16_t) (q->peer_seen - q->own) - (uint32_t) q->alloc;
  else
    *free_slots = q->size - (uint16_t) (q->own - q->peer_seen) - (uint32_t) q->alloc;
  return MEMIF_ERR_SUCCESS;
}

/* Master, memif_buffer_alloc's single-buffer loop: reserve up to n slots
 * from counter start, one packet of size (> 0) bytes each, and stop at the
 * first posted buffer that is too small or fails a check. Returns the
 * packets reserved. A function of its own, so that its few values stay in
 * registers; the loop walks a pointer and a counter. */
__attribute__ ((noinline)) static uint16_t
alloc_master_fast (memif_queue_t *q, region_view_t rv, memif_buffer_t *bufs, uint32_t start,
                   uint32_t n, uint16_t size)
{
  const volatile memif_desc_t *desc = q->ring->desc;
  memif_slot_t *slots = q->slots;
  const uint32_t mask = q->mask;
  region_cache_t rc = REGION_CACHE_EMPTY;
  memif_buffer_t *b = bufs;
  memif_buffer_t *const end = bufs + n;
  for (uint32_t ctr = start; b < end; b++, ctr++)
    {
      const uint32_t idx = ctr & mask;
      /* each field read once; flags and metadata are not needed */
      const uint32_t length = desc[idx].length;
      const uint32_t offset = desc[idx].offset;
      if (length < size || !desc_in_cached_region (&rc, rv, desc[idx].region, offset, length))
        break;
      uint8_t *data = rc.addr + offset;
      slots[idx] = (memif_slot_t){ .data = data, .capacity = length };
      b->desc_index = (uint16_t) ctr;
      b->ring = q;
      b->data = data;
      b->len = size;
      b->flags = 0;
    }
  return (uint16_t) (b - bufs);
}

/* Slave, the same, in the masked case (sb->masked), size fitting one
 * buffer: each slot's buffer is found again from the offset last posted in
 * it. A buffer that would end past the region stops the loop; the general
 * loop then reports it. */
__attribute__ ((noinline)) static uint16_t
alloc_slave_fast (memif_queue_t *q, const slave_bufs_t *sb, uint8_t *own_buffers,
                  memif_buffer_t *bufs, uint32_t start, uint32_t n, uint16_t size)
{
  const volatile memif_desc_t *desc = q->ring->desc;
  const uint32_t mask = q->mask;
  memif_buffer_t *b = bufs;
  memif_buffer_t *const end = bufs + n;
  for (uint32_t ctr = start; b < end; b++, ctr++)
    {
      uint32_t base;
      if (!slave_masked_base (sb, desc[ctr & mask].offset, &base))
        break;
      b->desc_index = (uint16_t) ctr;
      b->ring = q;
      b->data = own_buffers + base;
      b->len = size;
      b->flags = 0;
    }
  return (uint16_t) (b - bufs);
}

MEMIF_EXPORT int
memif_buffer_alloc (memif_conn_handle_t conn, uint16_t qid, memif_buffer_t *bufs,
                    uint16_t count, uint16_t *count_out, uint16_t size)
{
  memif_conn_t *c;
  memif_queue_t *q;
  int err = guard (conn, qid, 0, &c, &q);
  if (err)
    return err;
  if (count_out == NULL || (bufs == NULL && count > 0))
    return MEMIF_ERR_INVAL_ARG;
  *count_out = 0;
  uint32_t free_slots;
  if ((err = tx_free (c, q, &free_slots)) != MEMIF_ERR_SUCCESS)
    return err;

  memif_ring_t *ring = q->ring;
  const uint32_t mask = q->mask;
  const uint32_t start = (uint16_t) (q->own + q->alloc); /* counter of the first free slot */
  const int master = c->is_master;
  const region_view_t rv = region_view (c);
  memif_slot_t *slots = q->slots;
  slave_bufs_t sb = { 0 };
  uint8_t *own_buffers = NULL;
  if (!master)
    {
      sb = slave_bufs (c);
      own_buffers = c->regions[1].addr;
    }
  uint16_t nbufs = 0;
  /* Reserving writes nothing into the ring: memif_tx_burst writes each
   * descriptor once, from the buffers the application hands back (stores
   * here cost up to a third of the 64-byte rate: bench/README.md).
   * The common case first: each packet fits one buffer, so packets, buffers
   * and slots advance together. The first packet that needs a chain, a
   * descriptor that fails a check, or an application buffer callback sends
   * the rest to the general loop below, which checks everything again. */
  const uint32_t nfast = count < free_slots ? count : free_slots;
  if (master && size > 0)
    nbufs = alloc_master_fast (q, rv, bufs, start, nfast, size);
  else if (!master && sb.masked && size <= sb.b)
    nbufs = alloc_slave_fast (q, &sb, own_buffers, bufs, start, nfast, size);
  uint32_t used = nbufs;     /* slots taken, the current packet's chain included */
  uint32_t reserved = nbufs; /* slots of complete packets */
  for (uint16_t pkt = nbufs; pkt < count; pkt++)
    {
      uint32_t remaining = size;
      const uint16_t first = nbufs;
      for (;;)
        {
          if (used == free_slots)
            {
              /* Roll back the partial chain: only whole packets are reserved. */
              memset (&bufs[first], 0, (size_t) (nbufs - first) * sizeof (*bufs));
              nbufs = first;
              err = MEMIF_ERR_NOBUF_RING;
              goto done;
            }
          const uint32_t ctr = start + used;
          const uint32_t idx = ctr & mask;
          memif_desc_t *d = &ring->desc[idx];
          uint32_t cap;
          void *data;
          if (master)
            {
              memif_desc_t posted = read_desc (d);
              if (posted.length == 0
                  || !desc_in_region (rv, posted.region, posted.offset, posted.length))
                {
                  memif_mark_broken (c, "invalid descriptor");
                  err = MEMIF_ERR_DISCONNECTED;
                  memset (&bufs[first], 0, (size_t) (nbufs - first) * sizeof (*bufs));
                  nbufs = first;
                  goto done;
                }
              cap = posted.length;
              data = (uint8_t *) rv.r[posted.region].addr + posted.offset;
              slots[idx] = (memif_slot_t){ .data = data, .capacity = cap };
            }
          else
            {
              uint32_t base;
              if (slave_buffer_base (&sb, d, &base) < 0)
                {
                  err = MEMIF_ERR_DISCONNECTED;
                  memset (&bufs[first], 0, (size_t) (nbufs - first) * sizeof (*bufs));
                  nbufs = first;
                  goto done;
                }
              cap = sb.b;
              data = own_buffers + base;
            }
          const uint32_t len = remaining < cap ? remaining : cap;
          remaining -= len;
          used++;
          memif_buffer_t *b = &bufs[nbufs++];
          b->desc_index = (uint16_t) ctr;
          b->ring = q;
          b->data = data;
          b->len = len;
          b->flags = remaining ? MEMIF_BUFFER_FLAG_NEXT : 0;
          if (remaining == 0)
            break;
        }
      reserved = used;
    }
done:
  q->alloc = (uint16_t) (q->alloc + reserved);
  *count_out = nbufs;
  return err;
}

/* The descriptor flags of a buffer's flags (both use bit 0 for "next"). */
_Static_assert (MEMIF_BUFFER_FLAG_NEXT == MEMIF_DESC_FLAG_NEXT, "NEXT flags differ");
#define DESC_FLAGS_OF(b) ((uint16_t) ((b)->flags & MEMIF_BUFFER_FLAG_NEXT))

/* Master, memif_tx_burst's loop: each buffer must be the next reserved slot
 * and still the buffer reserved there (no more bytes than it holds); its
 * length and flags go into the descriptor. Returns the buffers that passed,
 * in order. */
static inline uint32_t
tx_master (memif_queue_t *q, const memif_buffer_t *bufs, uint32_t n)
{
  memif_desc_t *desc = q->ring->desc;
  const memif_slot_t *slots = q->slots;
  const uint32_t mask = q->mask;
  const uint32_t own = q->own;
  uint32_t i = 0;
  for (; i < n; i++)
    {
      const memif_buffer_t *b = &bufs[i];
      const uint16_t ctr = (uint16_t) (own + i);
      const uint32_t idx = ctr & mask;
      if (b->desc_index != ctr || b->data != slots[idx].data || b->len > slots[idx].capacity)
        break;
      desc[idx].length = b->len;
      desc[idx].flags = DESC_FLAGS_OF (b);
    }
  return i;
}

/* Slave, the same: the application may have moved the data inside its
 * buffer, so each buffer is checked against the buffer region and its
 * buffer's end, and the whole descriptor is written. pow2 (a constant at
 * each call) selects a mask over a modulo for the offset in the buffer. */
static inline __attribute__ ((always_inline)) uint32_t
tx_slave (memif_queue_t *q, const slave_bufs_t *sb, uintptr_t own_start,
          const memif_buffer_t *bufs, uint32_t n, const int pow2)
{
  memif_desc_t *desc = q->ring->desc;
  const uint32_t mask = q->mask;
  const uint32_t own = q->own;
  const uint64_t limit = sb->limit;
  const uint32_t bsize = sb->b, bmask = sb->mask;
  uint32_t i = 0;
  for (; i < n; i++)
    {
      const memif_buffer_t *b = &bufs[i];
      const uint16_t ctr = (uint16_t) (own + i);
      const uintptr_t rel = (uintptr_t) b->data - own_start; /* wraps when below */
      if (b->desc_index != ctr || rel >= limit)
        break;
      const uint32_t off = (uint32_t) rel;
      const uint32_t in_buf = pow2 ? off & bmask : off % bsize;
      if ((uint64_t) in_buf + b->len > bsize)
        break;
      memif_desc_t *d = &desc[ctr & mask];
      d->region = 1;
      d->offset = off;
      d->length = b->len;
      d->flags = DESC_FLAGS_OF (b);
    }
  return i;
}

MEMIF_EXPORT int
memif_tx_burst (memif_conn_handle_t conn, uint16_t qid, memif_buffer_t *bufs, uint16_t count,
                uint16_t *tx)
{
  memif_conn_t *c;
  memif_queue_t *q;
  int err = guard (conn, qid, 0, &c, &q);
  if (err)
    return err;
  if (tx == NULL || (bufs == NULL && count > 0))
    return MEMIF_ERR_INVAL_ARG;
  *tx = 0;
  if (count == 0)
    return MEMIF_ERR_SUCCESS;
  const uint32_t n = count < q->alloc ? count : q->alloc;
  uint32_t sent;
  if (c->is_master)
    sent = tx_master (q, bufs, n);
  else
    {
      const slave_bufs_t sb = slave_bufs (c);
      const uintptr_t own_start = (uintptr_t) c->regions[1].addr;
      sent = sb.mask ? tx_slave (q, &sb, own_start, bufs, n, 1)
                     : tx_slave (q, &sb, own_start, bufs, n, 0);
    }
  if (sent < n)
    err = MEMIF_ERR_INVAL_ARG;
  if (sent == 0)
    return err;
  q->own = (uint16_t) (q->own + sent);
  q->alloc = (uint16_t) (q->alloc - sent);
  store_own (c, q);
  *tx = (uint16_t) sent;
  signal_peer_if_wanted (q, &err);
  return err;
}

int
memif_tx_copy_simple (memif_conn_handle_t conn, uint16_t qid, const uint8_t *data,
                      const uint32_t *offsets, const uint32_t *lens, uint16_t count,
                      uint16_t *sent, int *general)
{
  memif_conn_t *c;
  memif_queue_t *q;
  *sent = 0;
  *general = 0;
  int err = guard (conn, qid, 0, &c, &q);
  if (err)
    return err;
  if (count == 0)
    return MEMIF_ERR_SUCCESS;
  const int master = c->is_master;
  slave_bufs_t sb = { 0 };
  if (!master)
    sb = slave_bufs (c);
  if (q->alloc != 0 || (!master && !sb.masked))
    {
      *general = 1;
      return MEMIF_ERR_SUCCESS;
    }
  uint32_t free_slots;
  if ((err = tx_free (c, q, &free_slots)) != MEMIF_ERR_SUCCESS)
    return err;
  const uint32_t n = count < free_slots ? count : free_slots;
  memif_desc_t *desc = q->ring->desc;
  const uint32_t mask = q->mask;
  const uint16_t own = q->own;
  uint32_t i = 0;
  if (master)
    {
      const region_view_t rv = region_view (c);
      region_cache_t rc = REGION_CACHE_EMPTY;
      for (; i < n; i++)
        {
          memif_desc_t *d = &desc[(uint16_t) (own + i) & mask];
          const memif_desc_t posted = read_desc (d);
          const uint32_t len = lens[i];
          if (posted.length == 0
              || !desc_in_cached_region (&rc, rv, posted.region, posted.offset, posted.length))
            {
              memif_mark_broken (c, "invalid descriptor");
              err = MEMIF_ERR_DISCONNECTED;
              break;
            }
          if (len > posted.length)
            {
              *general = 1; /* needs a chain */
              break;
            }
          memcpy (rc.addr + posted.offset, data + offsets[i], len);
          d->length = len;
          d->flags = 0;
        }
    }
  else
    {
      uint8_t *const own_buffers = c->regions[1].addr;
      for (; i < n; i++)
        {
          memif_desc_t *d = &desc[(uint16_t) (own + i) & mask];
          const uint32_t len = lens[i];
          uint32_t base;
          if (len > sb.b)
            {
              *general = 1; /* needs a chain */
              break;
            }
          if (!slave_masked_base (&sb, ((const volatile memif_desc_t *) d)->offset, &base))
            {
              memif_mark_broken (c, "invalid descriptor");
              err = MEMIF_ERR_DISCONNECTED;
              break;
            }
          /* The descriptor first (the peer sees none of it before the
           * counter is published), so that less lives across the call. */
          d->flags = 0;
          d->region = 1;
          d->length = len;
          d->offset = base;
          memcpy (own_buffers + base, data + offsets[i], len);
        }
    }
  if (i == 0)
    return err;
  q->own = (uint16_t) (own + i);
  store_own (c, q);
  *sent = (uint16_t) i;
  signal_peer_if_wanted (q, &err);
  return err;
}

/* Start of a receive: in interrupt mode drain the queue's eventfd first, so
 * that a signal for packets published after this point is not lost, then
 * read and check the peer's counter. Returns the packets available, or -1
 * when the counter broke the connection. */
static inline int
rx_start (memif_conn_t *c, memif_queue_t *q, int interrupt)
{
  if (interrupt)
    {
      uint64_t v;
      (void) !read (q->int_fd, &v, sizeof (v));
    }
  if (refresh_peer (c, q) < 0)
    return -1;
  return (uint16_t) (q->peer_seen - q->last);
}

/* Interrupt mode, packets left in the ring after a receive: keep the
 * eventfd readable for level-triggered loops. */
static inline void
rx_signal_more (memif_queue_t *q)
{
  uint64_t one = 1;
  (void) !write (q->int_fd, &one, sizeof (one));
}

MEMIF_EXPORT int
memif_rx_burst (memif_conn_handle_t conn, uint16_t qid, memif_buffer_t *bufs, uint16_t count,
                uint16_t *rx)
{
  memif_conn_t *c;
  memif_queue_t *q;
  int err = guard (conn, qid, 1, &c, &q);
  if (err)
    return err;
  if (rx == NULL || (bufs == NULL && count > 0))
    return MEMIF_ERR_INVAL_ARG;
  *rx = 0;
  const int interrupt = c->rx_mode[qid] != MEMIF_RX_MODE_POLLING;
  const int ready = rx_start (c, q, interrupt);
  if (ready < 0)
    return MEMIF_ERR_DISCONNECTED;
  const uint16_t avail = (uint16_t) ready;
  uint16_t n = avail < count ? avail : count;
  memif_ring_t *ring = q->ring;
  const uint32_t mask = q->mask;
  const uint16_t last = q->last;
  const region_view_t rv = region_view (c);
  region_cache_t rc = REGION_CACHE_EMPTY;
  uint16_t got = 0;
  for (; got < n; got++)
    {
      uint16_t ctr = (uint16_t) (last + got);
      memif_desc_t *sd = &ring->desc[ctr & mask];
      memif_desc_t d = read_desc (sd);
      if (!desc_in_cached_region (&rc, rv, d.region, d.offset, d.length))
        {
          memif_mark_broken (c, "invalid descriptor");
          break;
        }
      memif_buffer_t *b = &bufs[got];
      b->desc_index = ctr;
      b->ring = q;
      b->data = rc.addr + d.offset;
      b->len = d.length;
      b->flags = MEMIF_BUFFER_FLAG_RX;
      if (d.flags & MEMIF_DESC_FLAG_NEXT)
        {
          b->flags |= MEMIF_BUFFER_FLAG_NEXT;
          sd->flags = (uint16_t) (d.flags & ~MEMIF_DESC_FLAG_NEXT);
        }
    }
  q->last = (uint16_t) (last + got);
  *rx = got;
  if (got < n)
    return MEMIF_ERR_DISCONNECTED;
  if (avail > count)
    {
      if (interrupt)
        rx_signal_more (q);
      return MEMIF_ERR_NOBUF;
    }
  return MEMIF_ERR_SUCCESS;
}

int
memif_rx_copy_simple (memif_conn_handle_t conn, uint16_t qid, uint8_t *dst, uint32_t stride,
                      uint32_t limit, uint32_t *lens, uint16_t max, uint16_t headroom,
                      uint16_t *got, int *general)
{
  memif_conn_t *c;
  memif_queue_t *q;
  *got = 0;
  *general = 0;
  int err = guard (conn, qid, 1, &c, &q);
  if (err)
    return err;
  const int master = c->is_master;
  const uint32_t b = c->buffer_size;
  /* The slots given back are the slots read: a master's tail follows what
   * it read, a slave's head stays a whole ring ahead of it. */
  if ((uint16_t) (q->own - q->last) != (master ? 0 : q->size) || (!master && headroom >= b))
    {
      *general = 1;
      return MEMIF_ERR_SUCCESS;
    }
  const int interrupt = c->rx_mode[qid] != MEMIF_RX_MODE_POLLING;
  const int ready = rx_start (c, q, interrupt);
  if (ready < 0)
    return MEMIF_ERR_DISCONNECTED;
  const uint16_t avail = (uint16_t) ready;
  const uint16_t n = avail < max ? avail : max;
  memif_desc_t *desc = q->ring->desc;
  const uint32_t mask = q->mask;
  const uint16_t last = q->last;
  const region_view_t rv = region_view (c);
  region_cache_t rc = REGION_CACHE_EMPTY;
  slave_bufs_t sb = { 0 };
  if (!master)
    {
      sb = slave_bufs (c);
      if (!sb.masked)
        {
          *general = 1;
          return MEMIF_ERR_SUCCESS;
        }
    }
  uint16_t i = 0;
  for (; i < n; i++)
    {
      memif_desc_t *d = &desc[(uint16_t) (last + i) & mask];
      const memif_desc_t seen = read_desc (d);
      if ((seen.flags & MEMIF_DESC_FLAG_NEXT) || seen.length > limit)
        {
          *general = 1;
          break;
        }
      if (!desc_in_cached_region (&rc, rv, seen.region, seen.offset, seen.length))
        {
          memif_mark_broken (c, "invalid descriptor");
          err = MEMIF_ERR_DISCONNECTED;
          break;
        }
      uint32_t base = 0;
      if (!master)
        {
          /* The buffer to post again, found from the offset just read. */
          if (!slave_masked_base (&sb, seen.offset, &base))
            {
              memif_mark_broken (c, "invalid descriptor");
              err = MEMIF_ERR_DISCONNECTED;
              break;
            }
        }
      memcpy (dst + (size_t) i * stride, rc.addr + seen.offset, seen.length);
      lens[i] = seen.length;
      if (!master)
        {
          d->region = 1;
          d->offset = base + headroom;
          d->length = b - headroom;
          d->flags = 0;
        }
    }
  if (i > 0)
    {
      q->last = (uint16_t) (last + i);
      q->own = (uint16_t) (q->own + i);
      store_own (c, q);
    }
  *got = i;
  if (err == MEMIF_ERR_SUCCESS && interrupt && avail > i && !*general)
    rx_signal_more (q);
  return err;
}

MEMIF_EXPORT int
memif_refill_queue (memif_conn_handle_t conn, uint16_t qid, uint16_t count, uint16_t headroom)
{
  memif_conn_t *c;
  memif_queue_t *q;
  int err = guard (conn, qid, 1, &c, &q);
  if (err)
    return err;
  if (c->is_master)
    {
      /* Release consumed slots: tail follows last_head. */
      uint16_t consumed = (uint16_t) (q->last - q->own);
      uint16_t k = count < consumed ? count : consumed;
      q->own = (uint16_t) (q->own + k);
      store_own (c, q);
      return MEMIF_ERR_SUCCESS;
    }
  uint32_t b = c->buffer_size;
  if (headroom >= b)
    return MEMIF_ERR_INVAL_ARG;
  uint32_t can = q->size - (uint16_t) (q->own - q->last);
  uint32_t k = count < can ? count : can;
  memif_ring_t *ring = q->ring;
  const uint32_t mask = q->mask;
  const uint16_t own = q->own;
  const slave_bufs_t sb = slave_bufs (c);
  uint32_t i = 0;
  if (sb.masked)
    {
      /* The common case, without the per-packet choices of slave_buffer_base. */
      const uint32_t len = b - headroom;
      for (; i < k; i++)
        {
          memif_desc_t *d = &ring->desc[(uint16_t) (own + i) & mask];
          uint32_t base;
          if (!slave_masked_base (&sb, ((const volatile memif_desc_t *) d)->offset, &base))
            break; /* the general loop below reports it */
          d->region = 1;
          d->offset = base + headroom;
          d->length = len;
          d->flags = 0;
        }
    }
  for (; i < k; i++)
    {
      memif_desc_t *d = &ring->desc[(uint16_t) (own + i) & mask];
      uint32_t base;
      if (slave_buffer_base (&sb, d, &base) < 0)
        {
          k = i;
          err = MEMIF_ERR_DISCONNECTED;
          break;
        }
      d->region = 1;
      d->offset = base + headroom;
      d->length = b - headroom;
      d->flags = 0;
    }
  q->own = (uint16_t) (own + k);
  store_own (c, q);
  return err;
}

MEMIF_EXPORT int
memif_buffer_enq_tx (memif_conn_handle_t conn, uint16_t qid, memif_buffer_t *bufs,
                     uint16_t count, uint16_t *count_out)
{
  memif_conn_t *c;
  memif_queue_t *q;
  int err = guard (conn, qid, 0, &c, &q);
  if (err)
    return err;
  if (count_out == NULL || (bufs == NULL && count > 0) || c->is_master)
    return MEMIF_ERR_INVAL_ARG;
  *count_out = 0;
  uint32_t free_slots;
  if ((err = tx_free (c, q, &free_slots)) != MEMIF_ERR_SUCCESS)
    return err;
  const memif_region_t *r = &c->regions[1];
  const slave_bufs_t sb = slave_bufs (c);
  memif_queue_t *rxq = memif_conn_rxq (c);
  uint16_t done = 0;
  for (; done < count; done++)
    {
      memif_buffer_t *b = &bufs[done];
      memif_queue_t *from = b->ring;
      uintptr_t start = (uintptr_t) r->addr, p = (uintptr_t) b->data;
      if (!(b->flags & MEMIF_BUFFER_FLAG_RX) || from < rxq || from >= rxq + memif_conn_nrx (c)
          || p < start || p - start + b->len > r->size)
        {
          err = MEMIF_ERR_INVAL_ARG;
          break;
        }
      if (free_slots == 0)
        {
          err = MEMIF_ERR_NOBUF_RING;
          break;
        }
      uint16_t ctr = (uint16_t) (q->own + q->alloc);
      memif_desc_t *td = &q->ring->desc[ctr & q->mask];
      memif_desc_t *rd = &from->ring->desc[b->desc_index & from->mask];
      uint32_t tx_base;
      if (slave_buffer_base (&sb, td, &tx_base) < 0)
        {
          err = MEMIF_ERR_DISCONNECTED;
          break;
        }
      /* Swap: the rx slot takes the tx slot's free buffer, the tx slot
       * carries the received data. */
      rd->region = 1;
      rd->offset = tx_base;
      td->region = 1;
      td->offset = (uint32_t) (p - start);
      td->length = b->len;
      td->flags = (b->flags & MEMIF_BUFFER_FLAG_NEXT) ? MEMIF_DESC_FLAG_NEXT : 0;
      b->desc_index = ctr;
      b->ring = q;
      b->flags = (uint8_t) (b->flags & ~MEMIF_BUFFER_FLAG_RX);
      q->alloc++;
      free_slots--;
    }
  *count_out = done;
  return err;
}

MEMIF_EXPORT int
memif_set_rx_mode (memif_conn_handle_t conn, memif_rx_mode_t rx_mode, uint16_t qid)
{
  memif_conn_t *c = memif_conn_check (conn);
  if (c == NULL)
    return MEMIF_ERR_NOCONN;
  if ((unsigned) rx_mode > MEMIF_RX_MODE_POLLING)
    return MEMIF_ERR_INVAL_ARG;
  int connected = c->state == MEMIF_STATE_CONNECTED;
  uint16_t n = connected ? memif_conn_nrx (c) : (c->is_master ? c->cfg_s2m : c->cfg_m2s);
  if (qid >= n)
    return MEMIF_ERR_QID;
  c->rx_mode[qid] = (uint8_t) rx_mode;
  if (connected)
    memif_shm_apply_rx_mode (c, qid);
  return MEMIF_ERR_SUCCESS;
}

MEMIF_EXPORT int
memif_get_queue_efd (memif_conn_handle_t conn, uint16_t qid, int *fd)
{
  if (fd == NULL)
    return MEMIF_ERR_INVAL_ARG;
  *fd = -1;
  memif_conn_t *c = memif_conn_check (conn);
  if (c == NULL)
    return MEMIF_ERR_NOCONN;
  if (c->state != MEMIF_STATE_CONNECTED)
    return MEMIF_ERR_DISCONNECTED;
  if (qid >= memif_conn_nrx (c))
    return MEMIF_ERR_QID;
  *fd = memif_conn_rxq (c)[qid].int_fd;
  return MEMIF_ERR_SUCCESS;
}
