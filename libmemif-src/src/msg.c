/* SPDX-License-Identifier: Apache-2.0 */
/*
 * msg.c - encoding and decoding of the 128-byte control messages.
 *
 * Pure functions over byte buffers: no I/O, no allocation, no global state,
 * so they can be fuzzed on their own. Fields are read and written one by one
 * in little-endian order at the offsets of memif-protocol §4.2.
 */

#define _GNU_SOURCE
#include <string.h>

#include "memif_private.h"

static uint16_t
get16 (const uint8_t *p)
{
  return (uint16_t) (p[0] | (p[1] << 8));
}

static uint32_t
get32 (const uint8_t *p)
{
  return (uint32_t) p[0] | ((uint32_t) p[1] << 8) | ((uint32_t) p[2] << 16)
         | ((uint32_t) p[3] << 24);
}

static uint64_t
get64 (const uint8_t *p)
{
  return (uint64_t) get32 (p) | ((uint64_t) get32 (p + 4) << 32);
}

static void
put16 (uint8_t *p, uint16_t v)
{
  p[0] = (uint8_t) v;
  p[1] = (uint8_t) (v >> 8);
}

static void
put32 (uint8_t *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t) (v >> (8 * i));
}

static void
put64 (uint8_t *p, uint64_t v)
{
  put32 (p, (uint32_t) v);
  put32 (p + 4, (uint32_t) (v >> 32));
}

/* Write a string into a NUL-padded field of n bytes (no terminator needed). */
static void
put_field (uint8_t *p, const char *s, size_t n)
{
  size_t len = s ? strnlen (s, n) : 0;
  memcpy (p, s ? s : "", len);
  memset (p + len, 0, n - len);
}

void
memif_copy_field (char *dst, const uint8_t *src, size_t n)
{
  size_t len = strnlen ((const char *) src, n);
  memcpy (dst, src, len);
  dst[len] = '\0';
}

void
memif_strlcpy (char *dst, const char *src, size_t cap)
{
  size_t len = src ? strnlen (src, cap - 1) : 0;
  if (len)
    memcpy (dst, src, len);
  dst[len] = '\0';
}

int
memif_secret_equal (const uint8_t *a, const uint8_t *b)
{
  uint8_t diff = 0;
  for (int i = 0; i < MEMIF_SECRET_LEN; i++)
    diff |= (uint8_t) (a[i] ^ b[i]);
  return diff == 0;
}

int
memif_secret_present (const uint8_t *s)
{
  return s[0] != 0;
}

int
memif_msg_decode (const uint8_t *buf, size_t len, memif_msg_info_t *out)
{
  memset (out, 0, sizeof (*out));
  if (buf == NULL || len != MEMIF_MSG_SIZE)
    return MEMIF_ERR_MFMSG;
  const uint8_t *p = buf + 2;
  out->type = get16 (buf);
  switch (out->type)
    {
    case MEMIF_MSG_TYPE_ACK:
      return MEMIF_ERR_SUCCESS;
    case MEMIF_MSG_TYPE_HELLO:
      memif_copy_field (out->hello.name, p, MEMIF_NAME_LEN);
      out->hello.min_version = get16 (p + 32);
      out->hello.max_version = get16 (p + 34);
      out->hello.max_region = get16 (p + 36);
      out->hello.max_m2s_ring = get16 (p + 38);
      out->hello.max_s2m_ring = get16 (p + 40);
      out->hello.max_log2_ring_size = p[42];
      return MEMIF_ERR_SUCCESS;
    case MEMIF_MSG_TYPE_INIT:
      out->init.version = get16 (p);
      out->init.id = get32 (p + 2);
      out->init.mode = p[6];
      memcpy (out->init.secret, p + 7, MEMIF_SECRET_LEN);
      /* Anything after the first NUL of the secret is padding: ignore it. */
      {
        size_t sl = strnlen ((const char *) out->init.secret, MEMIF_SECRET_LEN);
        memset (out->init.secret + sl, 0, MEMIF_SECRET_LEN - sl);
      }
      memif_copy_field (out->init.name, p + 31, MEMIF_NAME_LEN);
      return MEMIF_ERR_SUCCESS;
    case MEMIF_MSG_TYPE_ADD_REGION:
      out->add_region.index = get16 (p);
      out->add_region.size = get64 (p + 2);
      return MEMIF_ERR_SUCCESS;
    case MEMIF_MSG_TYPE_ADD_RING:
      out->add_ring.flags = get16 (p);
      out->add_ring.index = get16 (p + 2);
      out->add_ring.region = get16 (p + 4);
      out->add_ring.offset = get32 (p + 6);
      out->add_ring.log2_ring_size = p[10];
      out->add_ring.private_hdr_size = get16 (p + 11);
      return MEMIF_ERR_SUCCESS;
    case MEMIF_MSG_TYPE_CONNECT:
    case MEMIF_MSG_TYPE_CONNECTED:
      memif_copy_field (out->connect.if_name, p, MEMIF_NAME_LEN);
      return MEMIF_ERR_SUCCESS;
    case MEMIF_MSG_TYPE_DISCONNECT:
      out->disconnect.code = get32 (p);
      memif_copy_field (out->disconnect.string, p + 4, MEMIF_REASON_LEN);
      return MEMIF_ERR_SUCCESS;
    default:
      return MEMIF_ERR_UNKNOWN_MSG;
    }
}

static uint8_t *
start (uint8_t *out, uint16_t type)
{
  memset (out, 0, MEMIF_MSG_SIZE);
  put16 (out, type);
  return out + 2;
}

void
memif_msg_enc_ack (uint8_t *out)
{
  start (out, MEMIF_MSG_TYPE_ACK);
}

void
memif_msg_enc_hello (uint8_t *out, const char *app_name)
{
  uint8_t *p = start (out, MEMIF_MSG_TYPE_HELLO);
  put_field (p, app_name, MEMIF_NAME_LEN);
  put16 (p + 32, MEMIF_VERSION);
  put16 (p + 34, MEMIF_VERSION);
  put16 (p + 36, MEMIF_MAX_REGIONS - 1);
  put16 (p + 38, MEMIF_MAX_RINGS);
  put16 (p + 40, MEMIF_MAX_RINGS);
  p[42] = MEMIF_MAX_LOG2_RING_SIZE;
}

void
memif_msg_enc_init (uint8_t *out, uint32_t id, uint8_t mode, const uint8_t *secret,
                    const char *app_name)
{
  uint8_t *p = start (out, MEMIF_MSG_TYPE_INIT);
  put16 (p, MEMIF_VERSION);
  put32 (p + 2, id);
  p[6] = mode;
  if (secret)
    put_field (p + 7, (const char *) secret, MEMIF_SECRET_LEN);
  put_field (p + 31, app_name, MEMIF_NAME_LEN);
}

void
memif_msg_enc_add_region (uint8_t *out, uint16_t index, uint64_t size)
{
  uint8_t *p = start (out, MEMIF_MSG_TYPE_ADD_REGION);
  put16 (p, index);
  put64 (p + 2, size);
}

void
memif_msg_enc_add_ring (uint8_t *out, int s2m, uint16_t index, uint16_t region,
                        uint32_t offset, uint8_t log2_ring_size)
{
  uint8_t *p = start (out, MEMIF_MSG_TYPE_ADD_RING);
  put16 (p, s2m ? MEMIF_MSG_ADD_RING_FLAG_S2M : 0);
  put16 (p + 2, index);
  put16 (p + 4, region);
  put32 (p + 6, offset);
  p[10] = log2_ring_size;
  put16 (p + 11, 0);
}

void
memif_msg_enc_connect (uint8_t *out, int connected, const char *if_name)
{
  uint8_t *p = start (out, connected ? MEMIF_MSG_TYPE_CONNECTED : MEMIF_MSG_TYPE_CONNECT);
  put_field (p, if_name, MEMIF_NAME_LEN);
}

void
memif_msg_enc_disconnect (uint8_t *out, uint32_t code, const char *reason)
{
  uint8_t *p = start (out, MEMIF_MSG_TYPE_DISCONNECT);
  put32 (p, code);
  put_field (p + 4, reason, MEMIF_REASON_LEN);
}
