/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_msg.c - libFuzzer target for control-message decoding (src/msg.c).
 *
 * Any input must decode without reading outside it, every decoded string
 * must be terminated within its field, and a decoded message re-encoded and
 * decoded again must give the same fields.
 */

#include <stdlib.h>
#include <string.h>

#include "memif_private.h"

static void
check_str (const char *s, size_t cap)
{
  if (memchr (s, 0, cap) == NULL)
    abort ();
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  memif_msg_info_t m, again;
  uint8_t out[MEMIF_MSG_SIZE];
  if (memif_msg_decode (data, size, &m) != MEMIF_ERR_SUCCESS)
    return 0;
  switch (m.type)
    {
    case MEMIF_MSG_TYPE_ACK:
      memif_msg_enc_ack (out);
      break;
    case MEMIF_MSG_TYPE_HELLO:
      check_str (m.hello.name, sizeof (m.hello.name));
      memif_msg_enc_hello (out, m.hello.name);
      if (memif_msg_decode (out, sizeof (out), &again) || strcmp (again.hello.name, m.hello.name))
        abort ();
      return 0;
    case MEMIF_MSG_TYPE_INIT:
      check_str (m.init.name, sizeof (m.init.name));
      memif_msg_enc_init (out, m.init.id, m.init.mode, m.init.secret, m.init.name);
      if (memif_msg_decode (out, sizeof (out), &again) || again.init.id != m.init.id
          || again.init.mode != m.init.mode || !memif_secret_equal (again.init.secret, m.init.secret)
          || strcmp (again.init.name, m.init.name))
        abort ();
      return 0;
    case MEMIF_MSG_TYPE_ADD_REGION:
      memif_msg_enc_add_region (out, m.add_region.index, m.add_region.size);
      break;
    case MEMIF_MSG_TYPE_ADD_RING:
      if (m.add_ring.private_hdr_size != 0 || (m.add_ring.flags & ~MEMIF_MSG_ADD_RING_FLAG_S2M))
        return 0; /* our encoder never produces these */
      memif_msg_enc_add_ring (out, m.add_ring.flags & MEMIF_MSG_ADD_RING_FLAG_S2M,
                              m.add_ring.index, m.add_ring.region, m.add_ring.offset,
                              m.add_ring.log2_ring_size);
      break;
    case MEMIF_MSG_TYPE_CONNECT:
    case MEMIF_MSG_TYPE_CONNECTED:
      check_str (m.connect.if_name, sizeof (m.connect.if_name));
      memif_msg_enc_connect (out, m.type == MEMIF_MSG_TYPE_CONNECTED, m.connect.if_name);
      break;
    case MEMIF_MSG_TYPE_DISCONNECT:
      check_str (m.disconnect.string, sizeof (m.disconnect.string));
      memif_msg_enc_disconnect (out, m.disconnect.code, m.disconnect.string);
      break;
    default:
      abort (); /* decode accepted an unknown type */
    }
  if (memif_msg_decode (out, sizeof (out), &again) != MEMIF_ERR_SUCCESS
      || memcmp (&again, &m, sizeof (m)) != 0)
    abort ();
  return 0;
}
