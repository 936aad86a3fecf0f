/* SPDX-License-Identifier: Apache-2.0 */
/*
 * memif.h - memif wire protocol 2.0: control messages and shared-memory layout.
 *
 * Every integer on the wire and in shared memory is little-endian. The
 * structures below describe the bytes exactly; the library itself encodes and
 * decodes control messages field by field (see src/msg.c) and uses these
 * declarations only for the shared-memory rings.
 */
#ifndef _MEMIF_H_
#define _MEMIF_H_

#include <stdint.h>

#ifndef MEMIF_CACHELINE_SIZE
#define MEMIF_CACHELINE_SIZE 64
#endif

#define MEMIF_COOKIE 0x3E31F20
#define MEMIF_VERSION_MAJOR 2
#define MEMIF_VERSION_MINOR 0
#define MEMIF_VERSION ((MEMIF_VERSION_MAJOR << 8) | MEMIF_VERSION_MINOR)

/* A zero-size member that starts a new cache line inside a structure. */
#define MEMIF_CACHELINE_ALIGN_MARK(mark) \
  uint8_t mark[0] __attribute__ ((aligned (MEMIF_CACHELINE_SIZE)))

typedef enum memif_msg_type
{
  MEMIF_MSG_TYPE_NONE = 0,
  MEMIF_MSG_TYPE_ACK = 1,
  MEMIF_MSG_TYPE_HELLO = 2,
  MEMIF_MSG_TYPE_INIT = 3,
  MEMIF_MSG_TYPE_ADD_REGION = 4,
  MEMIF_MSG_TYPE_ADD_RING = 5,
  MEMIF_MSG_TYPE_CONNECT = 6,
  MEMIF_MSG_TYPE_CONNECTED = 7,
  MEMIF_MSG_TYPE_DISCONNECT = 8,
} memif_msg_type_t;

typedef enum
{
  MEMIF_RING_S2M = 0,
  MEMIF_RING_M2S = 1,
} memif_ring_type_t;

/* Shared with libmemif.h: whichever header comes first defines it. */
#ifndef MEMIF_INTERFACE_MODE_DEFINED
#define MEMIF_INTERFACE_MODE_DEFINED
typedef enum
{
  MEMIF_INTERFACE_MODE_ETHERNET = 0,
  MEMIF_INTERFACE_MODE_IP = 1,
  MEMIF_INTERFACE_MODE_PUNT_INJECT = 2,
} memif_interface_mode_t;
#endif

typedef uint16_t memif_region_index_t;
typedef uint32_t memif_region_offset_t;
typedef uint64_t memif_region_size_t;
typedef uint16_t memif_ring_index_t;
typedef uint32_t memif_interface_id_t;
typedef uint16_t memif_version_t;
typedef uint8_t memif_log2_ring_size_t;

/* Control messages: 128 bytes each, type first, payload packed. */

typedef struct __attribute__ ((packed))
{
  uint8_t name[32];
  memif_version_t min_version;
  memif_version_t max_version;
  memif_region_index_t max_region;
  memif_ring_index_t max_m2s_ring;
  memif_ring_index_t max_s2m_ring;
  memif_log2_ring_size_t max_log2_ring_size;
} memif_msg_hello_t;

typedef struct __attribute__ ((packed))
{
  memif_version_t version;
  memif_interface_id_t id;
  memif_interface_mode_t mode : 8;
  uint8_t secret[24];
  uint8_t name[32];
} memif_msg_init_t;

#define MEMIF_MSG_ADD_RING_FLAG_S2M (1 << 0)

typedef struct __attribute__ ((packed))
{
  memif_region_index_t index;
  memif_region_size_t size;
} memif_msg_add_region_t;

typedef struct __attribute__ ((packed))
{
  uint16_t flags;
  memif_ring_index_t index;
  memif_region_index_t region;
  memif_region_offset_t offset;
  memif_log2_ring_size_t log2_ring_size;
  uint16_t private_hdr_size;
} memif_msg_add_ring_t;

typedef struct __attribute__ ((packed))
{
  uint8_t if_name[32];
} memif_msg_connect_t;

typedef struct __attribute__ ((packed))
{
  uint8_t if_name[32];
} memif_msg_connected_t;

typedef struct __attribute__ ((packed))
{
  uint32_t code;
  uint8_t string[96];
} memif_msg_disconnect_t;

typedef struct __attribute__ ((packed, aligned (128)))
{
  memif_msg_type_t type : 16;
  union __attribute__ ((packed))
  {
    memif_msg_hello_t hello;
    memif_msg_init_t init;
    memif_msg_add_region_t add_region;
    memif_msg_add_ring_t add_ring;
    memif_msg_connect_t connect;
    memif_msg_connected_t connected;
    memif_msg_disconnect_t disconnect;
  };
} memif_msg_t;

/* Shared memory: descriptors and ring headers. */

#define MEMIF_DESC_FLAG_NEXT (1 << 0)

typedef struct __attribute__ ((packed))
{
  uint16_t flags;
  memif_region_index_t region;
  uint32_t length;
  memif_region_offset_t offset;
  uint32_t metadata;
} memif_desc_t;

#define MEMIF_RING_FLAG_MASK_INT 1

/* head is written only by the slave, tail only by the master, whatever the
 * direction of the ring; they live on separate cache lines. Explicit padding
 * rather than an alignment attribute: rings sit at any 8-byte aligned offset
 * (with 1 or 2 slots a ring is not a multiple of the cache line long). */
typedef struct
{
  uint32_t cookie;
  uint16_t flags;
  volatile uint16_t head;
  uint8_t pad_head[MEMIF_CACHELINE_SIZE - 8];
  volatile uint16_t tail;
  uint8_t pad_tail[MEMIF_CACHELINE_SIZE - 2];
  memif_desc_t desc[];
} memif_ring_t;

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#include <stddef.h>
_Static_assert (sizeof (memif_msg_hello_t) == 43, "HELLO payload");
_Static_assert (offsetof (memif_msg_hello_t, min_version) == 32, "HELLO min_version");
_Static_assert (offsetof (memif_msg_hello_t, max_log2_ring_size) == 42, "HELLO log2");
_Static_assert (sizeof (memif_msg_init_t) == 63, "INIT payload");
_Static_assert (offsetof (memif_msg_init_t, id) == 2, "INIT id");
_Static_assert (offsetof (memif_msg_init_t, secret) == 7, "INIT secret");
_Static_assert (offsetof (memif_msg_init_t, name) == 31, "INIT name");
_Static_assert (sizeof (memif_msg_add_region_t) == 10, "ADD_REGION payload");
_Static_assert (offsetof (memif_msg_add_region_t, size) == 2, "ADD_REGION size");
_Static_assert (sizeof (memif_msg_add_ring_t) == 13, "ADD_RING payload");
_Static_assert (offsetof (memif_msg_add_ring_t, offset) == 6, "ADD_RING offset");
_Static_assert (offsetof (memif_msg_add_ring_t, log2_ring_size) == 10, "ADD_RING log2");
_Static_assert (offsetof (memif_msg_add_ring_t, private_hdr_size) == 11, "ADD_RING privhdr");
_Static_assert (sizeof (memif_msg_connect_t) == 32, "CONNECT payload");
_Static_assert (sizeof (memif_msg_connected_t) == 32, "CONNECTED payload");
_Static_assert (sizeof (memif_msg_disconnect_t) == 100, "DISCONNECT payload");
_Static_assert (offsetof (memif_msg_disconnect_t, string) == 4, "DISCONNECT string");
_Static_assert (sizeof (memif_msg_t) == 128, "message size");
_Static_assert (offsetof (memif_msg_t, hello) == 2, "message payload");
_Static_assert (sizeof (memif_desc_t) == 16, "descriptor size");
_Static_assert (offsetof (memif_desc_t, region) == 2, "descriptor region");
_Static_assert (offsetof (memif_desc_t, length) == 4, "descriptor length");
_Static_assert (offsetof (memif_desc_t, offset) == 8, "descriptor offset");
_Static_assert (offsetof (memif_desc_t, metadata) == 12, "descriptor metadata");
_Static_assert (offsetof (memif_ring_t, flags) == 4, "ring flags");
_Static_assert (offsetof (memif_ring_t, head) == 6, "ring head");
_Static_assert (offsetof (memif_ring_t, tail) == MEMIF_CACHELINE_SIZE, "ring tail");
_Static_assert (offsetof (memif_ring_t, desc) == 2 * MEMIF_CACHELINE_SIZE, "ring descriptors");
_Static_assert (sizeof (memif_ring_t) == 2 * MEMIF_CACHELINE_SIZE, "ring header size");
#endif

#endif /* _MEMIF_H_ */
