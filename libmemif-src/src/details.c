/* SPDX-License-Identifier: Apache-2.0 */
/* details.c - memif_get_details: a snapshot of an interface in the caller's buffer. */

#define _GNU_SOURCE
#include <string.h>

#include "memif_private.h"

typedef struct
{
  char *buf;
  size_t len;
  size_t used;
  int short_of_space;
} filler_t;

static uint8_t *
put_string (filler_t *f, const char *s)
{
  size_t n = strlen (s) + 1;
  if (f->len - f->used < n)
    {
      f->short_of_space = 1;
      return NULL;
    }
  char *dst = f->buf + f->used;
  memcpy (dst, s, n);
  f->used += n;
  return (uint8_t *) dst;
}

/* Reserve size bytes aligned to 8 from the start of buf. */
static void *
put_array (filler_t *f, size_t size)
{
  /* Align the address (the caller's buffer need not be aligned itself). */
  size_t pad = (size_t) ((8 - ((uintptr_t) (f->buf + f->used) & 7)) & 7);
  size_t start = f->used + pad;
  if (start > f->len || f->len - start < size)
    {
      f->short_of_space = 1;
      return NULL;
    }
  f->used = start + size;
  return f->buf + start;
}

static void
queue_details (const memif_conn_t *c, const memif_queue_t *q, memif_queue_details_t *d)
{
  d->region = (uint8_t) q->region;
  d->qid = (uint8_t) q->qid;
  d->ring_size = q->size;
  d->flags = __atomic_load_n (&q->ring->flags, __ATOMIC_RELAXED);
  d->head = __atomic_load_n (&q->ring->head, __ATOMIC_RELAXED);
  d->tail = __atomic_load_n (&q->ring->tail, __ATOMIC_RELAXED);
  d->buffer_size = c->is_master ? 0 : c->buffer_size;
}

MEMIF_EXPORT int
memif_get_details (memif_conn_handle_t conn, memif_details_t *md, char *buf, ssize_t buflen)
{
  memif_conn_t *c = memif_conn_check (conn);
  if (c == NULL)
    return MEMIF_ERR_NOCONN;
  if (md == NULL || buflen < 0 || (buf == NULL && buflen > 0))
    return MEMIF_ERR_INVAL_ARG;
  memset (md, 0, sizeof (*md));
  filler_t f = { .buf = buf, .len = (size_t) buflen };

  md->if_name = put_string (&f, c->if_name);
  md->inst_name = put_string (&f, c->db->app_name);
  md->remote_if_name = put_string (&f, c->remote_if_name);
  md->remote_inst_name = put_string (&f, c->remote_app_name);
  md->id = c->id;
  md->secret = put_string (&f, c->secret_str);
  md->role = c->is_master ? 0 : 1;
  md->mode = c->mode;
  md->socket_filename = put_string (&f, c->sock->path);
  md->error = put_string (&f, c->error);

  int connected = c->state == MEMIF_STATE_CONNECTED;
  md->link_up_down = connected ? 1 : 0;
  md->regions_num = connected ? (uint8_t) (c->n_regions > 255 ? 255 : c->n_regions) : 0;
  md->rx_queues_num = connected ? (uint8_t) memif_conn_nrx (c) : 0;
  md->tx_queues_num = connected ? (uint8_t) memif_conn_ntx (c) : 0;
  if (buflen == 0)
    return f.short_of_space ? MEMIF_ERR_NOBUF_DET : MEMIF_ERR_SUCCESS;

  md->regions = put_array (&f, md->regions_num * sizeof (memif_region_details_t));
  for (uint8_t i = 0; md->regions && i < md->regions_num; i++)
    {
      const memif_region_t *r = &c->regions[i];
      md->regions[i] = (memif_region_details_t){
        .index = i,
        .addr = r->addr,
        .size = r->size > UINT32_MAX ? UINT32_MAX : (uint32_t) r->size,
        .fd = r->fd,
        .is_external = r->is_external,
      };
    }
  md->rx_queues = put_array (&f, md->rx_queues_num * sizeof (memif_queue_details_t));
  for (uint8_t i = 0; md->rx_queues && i < md->rx_queues_num; i++)
    queue_details (c, &memif_conn_rxq (c)[i], &md->rx_queues[i]);
  md->tx_queues = put_array (&f, md->tx_queues_num * sizeof (memif_queue_details_t));
  for (uint8_t i = 0; md->tx_queues && i < md->tx_queues_num; i++)
    queue_details (c, &memif_conn_txq (c)[i], &md->tx_queues[i]);
  return f.short_of_space ? MEMIF_ERR_NOBUF_DET : MEMIF_ERR_SUCCESS;
}
