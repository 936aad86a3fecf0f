/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shm.c - shared memory: the slave creates regions, rings and eventfds; the
 * master validates and maps what it receives; both reset the rings at
 * connect and release everything at disconnect.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "memif_private.h"

#define RING_HDR_SIZE ((uint64_t) sizeof (memif_ring_t))

static uint64_t
ring_stride (uint8_t log2)
{
  return RING_HDR_SIZE + ((uint64_t) sizeof (memif_desc_t) << log2);
}

static int
alloc_queues (memif_conn_t *c, uint16_t n_s2m, uint16_t n_m2s)
{
  memif_db_t *db = c->db;
  c->regions = memif_db_alloc (db, MEMIF_MAX_REGIONS * sizeof (memif_region_t));
  c->s2m = memif_db_alloc (db, n_s2m * sizeof (memif_queue_t));
  c->m2s = memif_db_alloc (db, n_m2s * sizeof (memif_queue_t));
  if (c->regions == NULL || c->s2m == NULL || c->m2s == NULL)
    return MEMIF_ERR_NOMEM;
  for (int i = 0; i < MEMIF_MAX_REGIONS; i++)
    c->regions[i].fd = -1;
  for (uint16_t i = 0; i < n_s2m; i++)
    c->s2m[i] = (memif_queue_t){ .conn = c, .qid = i, .int_fd = -1 };
  for (uint16_t i = 0; i < n_m2s; i++)
    c->m2s[i] = (memif_queue_t){ .conn = c, .qid = i, .int_fd = -1 };
  return MEMIF_ERR_SUCCESS;
}

/* Master, at INIT: room for every ring the interface was configured with. */
int
memif_shm_master_prepare (memif_conn_t *c)
{
  c->n_s2m = c->n_m2s = 0;
  c->n_regions = 0;
  return alloc_queues (c, c->cfg_s2m, c->cfg_m2s);
}

static int
memfd_region (memif_region_t *r, uint64_t size)
{
  r->fd = memfd_create ("memif region", MFD_ALLOW_SEALING | MFD_CLOEXEC);
  if (r->fd < 0)
    return memif_syserr (errno);
  if (fcntl (r->fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0 || ftruncate (r->fd, (off_t) size) < 0)
    return memif_syserr (errno);
  void *addr = mmap (NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
  if (addr == MAP_FAILED)
    return memif_syserr (errno);
  r->addr = addr;
  r->size = size;
  return MEMIF_ERR_SUCCESS;
}

int
memif_shm_slave_create (memif_conn_t *c)
{
  memif_db_t *db = c->db;
  const uint16_t S = c->n_s2m, M = c->n_m2s;
  const uint32_t N = 1u << c->log2;
  const uint64_t B = c->buffer_size;
  const uint64_t stride = ring_stride (c->log2);
  int err = alloc_queues (c, S, M);
  if (err)
    return err;

  c->n_regions = 2;
  err = memfd_region (&c->regions[0], stride * (S + M));
  if (err)
    return err;
  uint64_t bsize = B * N * (uint64_t) (S + M);
  if (db->add_ext)
    {
      memif_region_t *r = &c->regions[1];
      void *addr = NULL;
      int fd = -1;
      if (db->add_ext (&addr, (uint32_t) bsize, &fd, c->private_ctx) < 0 || addr == NULL)
        return MEMIF_ERR_NOMEM;
      r->addr = addr;
      r->fd = fd;
      r->size = bsize;
      r->is_external = 1;
    }
  else if ((err = memfd_region (&c->regions[1], bsize)) != MEMIF_ERR_SUCCESS)
    return err;

  for (uint32_t k = 0; k < (uint32_t) S + M; k++)
    {
      memif_queue_t *q = k < S ? &c->s2m[k] : &c->m2s[k - S];
      q->region = 0;
      q->offset = (uint32_t) (k * stride);
      q->ring = (memif_ring_t *) ((uint8_t *) c->regions[0].addr + q->offset);
      q->log2 = c->log2;
      q->size = N;
      q->mask = N - 1;
      q->present = 1;
      q->int_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
      if (q->int_fd < 0)
        return memif_syserr (errno);
      memif_ring_t *ring = q->ring;
      ring->cookie = MEMIF_COOKIE;
      ring->flags = 0;
      ring->head = 0;
      ring->tail = 0;
      for (uint32_t j = 0; j < N; j++)
        {
          memif_desc_t *d = &ring->desc[j];
          d->flags = 0;
          d->region = 1;
          d->length = (uint32_t) B;
          d->offset = (uint32_t) (((uint64_t) k * N + j) * B);
          d->metadata = 0;
        }
    }
  return MEMIF_ERR_SUCCESS;
}

int
memif_shm_master_add_region (memif_conn_t *c, uint16_t index, uint64_t size, int fd,
                             const char **reason)
{
  memif_db_t *db = c->db;
  if (fd < 0)
    {
      *reason = "missing region fd";
      return MEMIF_ERR_NO_SHMFD;
    }
  if (index != c->n_regions || index >= MEMIF_MAX_REGIONS)
    {
      *reason = "invalid region index";
      close (fd);
      return MEMIF_ERR_MAXREG;
    }
  /* A file that can still shrink would make our next access to the mapping
   * fault (SIGBUS). The protocol lets a slave leave its memory unsealed, but
   * a memfd made with MFD_ALLOW_SEALING can be sealed by us as well: seals
   * belong to the file, not to the descriptor. Seal first, then check the
   * size, so the size checked is a size the file keeps. Files that refuse
   * the seal (no MFD_ALLOW_SEALING, not a memfd) are still accepted. */
  int seals = fcntl (fd, F_GET_SEALS);
  if (seals >= 0 && !(seals & F_SEAL_SHRINK))
    (void) fcntl (fd, F_ADD_SEALS, F_SEAL_SHRINK);
  struct stat st;
  *reason = "invalid region size";
  if (size == 0 || size > (uint64_t) SIZE_MAX || size > (uint64_t) INT64_MAX
      || fstat (fd, &st) < 0 || st.st_size < 0 || (uint64_t) st.st_size < size)
    {
      close (fd);
      return MEMIF_ERR_MFMSG;
    }
  memif_region_t *r = &c->regions[index];
  if (index >= 1 && db->get_ext_addr)
    {
      if (size > UINT32_MAX)
        {
          close (fd);
          return MEMIF_ERR_MFMSG;
        }
      r->addr = db->get_ext_addr ((uint32_t) size, fd, c->private_ctx);
      if (r->addr == NULL)
        {
          close (fd);
          return MEMIF_ERR_MFMSG;
        }
      r->is_external = 1;
    }
  else
    {
      void *addr = mmap (NULL, (size_t) size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (addr == MAP_FAILED)
        {
          close (fd);
          return MEMIF_ERR_MFMSG;
        }
      r->addr = addr;
    }
  r->fd = fd;
  r->size = size;
  c->n_regions++;
  *reason = NULL;
  return MEMIF_ERR_SUCCESS;
}

int
memif_shm_master_add_ring (memif_conn_t *c, const memif_msg_info_t *m, int fd,
                           const char **reason)
{
  int err;
  if (fd < 0)
    {
      *reason = "missing interrupt fd";
      return MEMIF_ERR_NO_INTFD;
    }
  const int s2m = m->add_ring.flags & MEMIF_MSG_ADD_RING_FLAG_S2M;
  const uint16_t idx = m->add_ring.index;
  const uint8_t log2 = m->add_ring.log2_ring_size;
  memif_queue_t *q = NULL;
  if (m->add_ring.private_hdr_size != 0)
    {
      *reason = "private headers not supported";
      err = MEMIF_ERR_PRIVHDR;
      goto fail;
    }
  if (idx >= (s2m ? c->cfg_s2m : c->cfg_m2s) || (s2m ? c->s2m : c->m2s)[idx].present)
    {
      *reason = "too many rings";
      err = MEMIF_ERR_MAXRING;
      goto fail;
    }
  q = &(s2m ? c->s2m : c->m2s)[idx];
  if (log2 > MEMIF_MAX_LOG2_RING_SIZE)
    {
      *reason = "ring size too large";
      err = MEMIF_ERR_MAX_RING;
      goto fail;
    }
  const uint16_t region = m->add_ring.region;
  const uint64_t offset = m->add_ring.offset;
  if (region >= c->n_regions || offset % 8 != 0
      || offset + ring_stride (log2) > c->regions[region].size)
    {
      *reason = "invalid ring";
      err = MEMIF_ERR_MFMSG;
      goto fail;
    }
  /* The eventfd is shared with the peer, which only writes it. */
  int fl = fcntl (fd, F_GETFL);
  if (fl >= 0)
    (void) fcntl (fd, F_SETFL, fl | O_NONBLOCK);
  q->ring = (memif_ring_t *) ((uint8_t *) c->regions[region].addr + offset);
  q->region = region;
  q->offset = (uint32_t) offset;
  q->log2 = log2;
  q->size = 1u << log2;
  q->mask = q->size - 1;
  q->int_fd = fd;
  q->present = 1;
  *reason = NULL;
  return MEMIF_ERR_SUCCESS;
fail:
  close (fd);
  return err;
}

void
memif_shm_apply_rx_mode (memif_conn_t *c, uint16_t qid)
{
  memif_queue_t *q = &memif_conn_rxq (c)[qid];
  uint16_t flags = __atomic_load_n (&q->ring->flags, __ATOMIC_RELAXED);
  if (c->rx_mode[qid] == MEMIF_RX_MODE_POLLING)
    flags |= MEMIF_RING_FLAG_MASK_INT;
  else
    flags &= (uint16_t) ~MEMIF_RING_FLAG_MASK_INT;
  __atomic_store_n (&q->ring->flags, flags, __ATOMIC_RELAXED);
}

int
memif_shm_connect (memif_conn_t *c, const char **reason)
{
  memif_db_t *db = c->db;
  for (uint32_t k = 0; k < (uint32_t) c->n_s2m + c->n_m2s; k++)
    {
      memif_queue_t *q = k < c->n_s2m ? &c->s2m[k] : &c->m2s[k - c->n_s2m];
      if (__atomic_load_n (&q->ring->cookie, __ATOMIC_RELAXED) != MEMIF_COOKIE)
        {
          *reason = "invalid ring cookie";
          return MEMIF_ERR_COOKIE;
        }
    }
  for (uint32_t k = 0; k < (uint32_t) c->n_s2m + c->n_m2s; k++)
    {
      memif_queue_t *q = k < c->n_s2m ? &c->s2m[k] : &c->m2s[k - c->n_s2m];
      __atomic_store_n (&q->ring->head, 0, __ATOMIC_RELAXED);
      __atomic_store_n (&q->ring->tail, 0, __ATOMIC_RELAXED);
      q->own = q->last = q->peer_seen = q->alloc = 0;
      if (c->is_master && k >= c->n_s2m)
        {
          q->slots = memif_db_alloc (db, q->size * sizeof (memif_slot_t));
          if (q->slots == NULL)
            {
              *reason = "out of memory";
              return MEMIF_ERR_NOMEM;
            }
        }
    }
  for (uint16_t qid = 0; qid < memif_conn_nrx (c); qid++)
    memif_shm_apply_rx_mode (c, qid);
  __atomic_thread_fence (__ATOMIC_SEQ_CST);
  return MEMIF_ERR_SUCCESS;
}

static void
teardown_queues (memif_conn_t *c, memif_queue_t *qs, uint16_t n)
{
  if (qs == NULL)
    return;
  for (uint16_t i = 0; i < n; i++)
    {
      memif_fd_del (c->db, qs[i].int_fd);
      memif_close_fd (&qs[i].int_fd);
      memif_db_free (c->db, qs[i].slots);
    }
  memif_db_free (c->db, qs);
}

void
memif_shm_teardown (memif_conn_t *c)
{
  memif_db_t *db = c->db;
  /* The master allocated arrays for its configured counts and some rings
   * may be missing; the slave allocated exactly the negotiated counts. */
  uint16_t ns = c->is_master ? c->cfg_s2m : c->n_s2m;
  uint16_t nm = c->is_master ? c->cfg_m2s : c->n_m2s;
  teardown_queues (c, c->s2m, ns);
  teardown_queues (c, c->m2s, nm);
  c->s2m = c->m2s = NULL;
  c->n_s2m = c->n_m2s = 0;
  if (c->regions)
    {
      for (int i = 0; i < MEMIF_MAX_REGIONS; i++)
        {
          memif_region_t *r = &c->regions[i];
          if (r->addr == NULL)
            {
              memif_close_fd (&r->fd);
              continue;
            }
          if (r->is_external)
            {
              if (db->del_ext)
                (void) db->del_ext (r->addr, (uint32_t) (r->size > UINT32_MAX ? UINT32_MAX : r->size),
                                    r->fd, c->private_ctx);
              /* A slave's external fd belongs to the application. */
              if (c->is_master)
                memif_close_fd (&r->fd);
            }
          else
            {
              munmap (r->addr, (size_t) r->size);
              memif_close_fd (&r->fd);
            }
          r->addr = NULL;
        }
      memif_db_free (db, c->regions);
      c->regions = NULL;
    }
  c->n_regions = 0;
}
