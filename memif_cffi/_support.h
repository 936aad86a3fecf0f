/* SPDX-License-Identifier: Apache-2.0 */
/*
 * _support.h - C helpers compiled into memif_cffi._libmemif next to the
 * bundled libmemif. They keep per-packet loops out of Python: one call copies
 * a whole burst of packets into or out of shared memory.
 *
 * The functions return a memif error code (MEMIF_ERR_*) and pass counts
 * through out parameters, except the two batch helpers of the Pythonic API,
 * which return a count or a negated error code. Either way a full ring is a
 * short count, not an error.
 */
#ifndef MEMIF_CFFI_SUPPORT_H
#define MEMIF_CFFI_SUPPORT_H

#include <stdatomic.h>
#include <stdint.h>

/* memif.h first: it supplies the scalar types libmemif.h's structs use. */
#include "memif.h"
#include "libmemif.h"

/* Largest packet the helpers copy (memif_buffer_alloc takes a 16-bit size). */
#define MEMIF_CFFI_MAX_PACKET 65535

/* Version of the Python package this module was built for. */
const char *memif_cffi_version (void);

/* memif_conn_args_t.mode is an 8-bit enum bit-field, out of cffi's reach. */
void memif_cffi_args_set_mode (memif_conn_args_t *a, uint8_t mode);
uint8_t memif_cffi_args_get_mode (const memif_conn_args_t *a);

/*
 * Copy count packets into tx queue qid and publish them.
 *
 * Packet i is lens[i] bytes at data + offsets[i]. Packets larger than one
 * slot are chained over several buffers. *sent receives the number of whole
 * packets published, in order: when the ring fills up, the call publishes
 * what fits and returns MEMIF_ERR_SUCCESS with *sent < count.
 *
 * Errors: MEMIF_ERR_INVAL_ARG for a NULL pointer or a length over
 * MEMIF_CFFI_MAX_PACKET (checked before anything is sent), MEMIF_ERR_NOMEM,
 * and the codes of memif_buffer_alloc / memif_tx_burst (*sent still counts
 * what was published before the failure).
 *
 * Built with the bundled library, single-buffer packets go through its
 * one-pass memif_tx_copy_simple (memif_private.h) instead of those two calls;
 * what reaches the ring and the result are the same.
 */
int memif_cffi_tx_copy (memif_conn_handle_t conn, uint16_t qid, const uint8_t *data,
                        const uint32_t *offsets, const uint32_t *lens, uint16_t count,
                        uint16_t *sent);

/*
 * Reassembly state of one rx queue, carried from one memif_cffi_rx_copy call
 * to the next: a chained packet can be cut by the end of a call. Allocate it
 * zeroed (one per queue, used by one thread at a time) and zero it again
 * after a reconnect.
 */
typedef struct
{
  uint32_t len;     /* bytes of the unfinished packet in data */
  uint8_t in_chain; /* an unfinished packet is pending */
  uint8_t dropping; /* the pending packet is too long and is being dropped */
  uint8_t data[MEMIF_CFFI_MAX_PACKET];
} memif_cffi_rx_state_t;

/*
 * Receive up to max_packets whole packets from rx queue qid.
 *
 * Chained buffers are joined; packet i is copied to data + i * stride and its
 * length stored in lens[i]; *received gets the number of packets. A packet
 * longer than stride (or than MEMIF_CFFI_MAX_PACKET) is dropped whole and
 * counted in *dropped (which may be NULL). A chain whose end has not been
 * received yet is kept in *state and completed by the next call.
 *
 * Every buffer taken from the ring is given back before returning
 * (memif_refill_queue with headroom; a master ignores headroom). Do not mix
 * this helper with buffers of the same queue that are still held elsewhere.
 *
 * Errors: MEMIF_ERR_INVAL_ARG for NULL pointers or stride 0, and the codes of
 * memif_rx_burst / memif_refill_queue (*received still counts the packets
 * copied before the failure). With the bundled library, single-buffer
 * packets go through its one-pass memif_rx_copy_simple, with the same result.
 */
int memif_cffi_rx_copy (memif_conn_handle_t conn, uint16_t qid, uint8_t *data, uint32_t stride,
                        uint32_t *lens, uint16_t max_packets, uint16_t *received,
                        uint16_t headroom, memif_cffi_rx_state_t *state, uint32_t *dropped);

/* ------------------------------------------------ Pythonic-API helpers */

/* Start of the reassembly buffer of a state (state->len bytes are valid). */
uint8_t *memif_cffi_rx_state_data (memif_cffi_rx_state_t *state);

/* Sum of n 32-bit values (byte counters). */
uint64_t memif_cffi_sum_u32 (const uint32_t *values, uint32_t n);

/*
 * Traffic counters of one queue, kept by the helpers below so that a burst
 * needs no out parameter: packets and payload bytes moved, drops (rx: packets
 * too long or cut; tx: packets refused because the ring was full), calls
 * made (ops) and the count of the last call (last, also set on error).
 */
typedef struct
{
  uint64_t packets;
  uint64_t bytes;
  uint64_t drops;
  uint64_t ops;
  uint32_t last;
} memif_cffi_qstats_t;

/*
 * memif_cffi_tx_copy for a batch whose packet lengths the caller wrote
 * itself: every lens[i] is checked against max_len first (-MEMIF_ERR_INVAL_ARG,
 * nothing sent), so a wrong length can never make the copy read outside the
 * caller's slot. Returns the packets sent (>= 0) or -(error code);
 * MEMIF_ERR_INT_WRITE (the peer's eventfd could not be written) is not an
 * error: the packets are in the ring. *stats is updated either way.
 */
int memif_cffi_send_batch (memif_conn_handle_t conn, uint16_t qid, const uint8_t *data,
                           const uint32_t *offsets, const uint32_t *lens, uint16_t count,
                           uint32_t max_len, memif_cffi_qstats_t *stats);

/*
 * memif_cffi_rx_copy returning the packets received (>= 0) or -(error code);
 * on an error, stats->last still counts the packets copied before it.
 */
int memif_cffi_recv_batch (memif_conn_handle_t conn, uint16_t qid, uint8_t *data, uint32_t stride,
                           uint32_t *lens, uint16_t max_packets, uint16_t headroom,
                           memif_cffi_rx_state_t *state, memif_cffi_qstats_t *stats);

/*
 * The bulk calls of the Python API (TxQueue.send_batch, RxQueue.recv_into)
 * with their arguments gathered in two structs that live as long as the queue
 * and the batch, so that one burst costs a two- or four-argument call: each
 * argument cffi converts costs about as much as copying a 64-byte packet.
 *
 * A queue: the connection, the queue id, the receive headroom and the
 * chain-reassembly state (rx; set before the first receive), and its counters.
 */
typedef struct
{
  memif_conn_handle_t conn;
  memif_cffi_rx_state_t *state;
  memif_cffi_qstats_t stats;
  uint16_t qid;
  uint16_t headroom;
  /* The queue's gate (see below); only the gate functions touch these. */
  _Atomic uintptr_t owner; /* thread holding the gate (pthread_self), 0 when free */
  uint32_t depth;          /* times the owner entered; written by the owner only */
  _Atomic uint8_t ready;   /* the unchecked bulk calls may run */
} memif_cffi_queue_t;

/*
 * A PacketBatch: capacity slots of stride bytes in data, packet i at
 * data + offsets[i] (= i * stride) and lens[i] bytes long; slot_size is the
 * longest packet a slot holds. count is the number of valid packets: what
 * memif_cffi_batch_send sends, what a receive into the batch leaves there.
 */
typedef struct
{
  uint8_t *data;
  uint32_t *offsets;
  uint32_t *lens;
  uint32_t stride;
  uint32_t slot_size;
  uint32_t capacity;
  uint32_t count;
} memif_cffi_batch_t;

/*
 * One queue paired with one batch: the single argument of the unchecked bulk
 * calls. A call with one pointer argument is the cheapest one cffi makes
 * (no argument tuple, one conversion), and the pair is built once per batch
 * and queue, not per burst.
 */
typedef struct
{
  memif_cffi_queue_t *q;
  memif_cffi_batch_t *b;
} memif_cffi_bulk_t;

/*
 * memif_cffi_send_batch of packets start .. start+count-1 of batch b on
 * queue q (count at most 65535, start + count at most b->capacity).
 */
int memif_cffi_queue_send (memif_cffi_queue_t *q, const memif_cffi_batch_t *b, uint32_t start,
                           uint32_t count);

/*
 * memif_cffi_recv_batch of up to b->capacity packets into batch b from queue
 * q; b->count is set to the number received (also when an error ends the
 * burst: the packets before it are in the batch).
 */
int memif_cffi_queue_recv (memif_cffi_queue_t *q, memif_cffi_batch_t *b);

/*
 * The gate: the lock of one queue, kept here so that the bulk calls below can
 * take it without a round trip through Python. It is re-entrant for the
 * thread that holds it and never blocks: a caller that does not get it is
 * told so and decides itself whether to wait. The Python layer takes it
 * around every data-path call it checks itself (memif_cffi_gate_enter /
 * _leave) and waits on it before the queue's memory goes away.
 *
 * "ready" is the Python layer's verdict that nothing needs checking: the
 * interface is connected and, for an rx queue, its reassembly state exists
 * and no zero-copy views are open or held. It is cleared before the
 * memory goes away and only ever changed with a sequentially consistent
 * store, so a bulk call that saw it set holds the gate until it is done.
 */

/* 1 when the calling thread now holds the gate (again), 0 when another does. */
int memif_cffi_gate_enter (memif_cffi_queue_t *q);

/* Leave once; 0, or -1 when the calling thread does not hold the gate. */
int memif_cffi_gate_leave (memif_cffi_queue_t *q);

/* 1 when the calling thread holds the gate. */
int memif_cffi_gate_owned (memif_cffi_queue_t *q);

/* Set or clear the ready verdict. */
void memif_cffi_gate_set_ready (memif_cffi_queue_t *q, int ready);

/*
 * Returned by the two calls below when they did nothing because the gate is
 * held (by any thread) or the queue is not ready: the caller takes the
 * checked path, which says what is wrong. Distinct from every -MEMIF_ERR_*.
 */
#define MEMIF_CFFI_NOT_READY (-1000)

/*
 * The unchecked bulk calls on the pair p = (q, b): the whole of batch b (its
 * first b->count packets) is sent on q, or up to b->capacity packets received
 * into it, with the gate taken and left inside the call. Same results as
 * memif_cffi_queue_send / memif_cffi_queue_recv, or MEMIF_CFFI_NOT_READY;
 * sending 0 packets returns 0 without looking at the queue.
 */
int memif_cffi_batch_send (const memif_cffi_bulk_t *p);
int memif_cffi_batch_recv (const memif_cffi_bulk_t *p);

/*
 * Zero-copy receive: one memif_rx_burst of up to max_bufs buffers into bufs
 * (*nbufs of them), then the packet boundaries, without copying payload.
 *
 * Packet k (k < *npkts) is made of nsegs[k] buffers starting at
 * bufs[firsts[k]] and is lens[k] bytes long. ptrs[k] is the address of its
 * data in shared memory when it is a single buffer, 0 when it is chained (the
 * caller joins the segments). Addresses are integers so that the caller can
 * turn them into offsets in a region without one object per packet. When *resumed is 1, packet 0 continues the chain that
 * was pending in *state before the call: lens[0] includes that prefix, which
 * the caller must have read (memif_cffi_rx_state_data) before calling,
 * because the call may overwrite the state.
 *
 * A chain that does not end in this burst is copied into *state (shared with
 * memif_cffi_rx_copy, so both helpers may be used on one queue); packets
 * longer than MEMIF_CFFI_MAX_PACKET are dropped whole and counted in
 * *dropped. *bytes is the sum of lens[0..*npkts).
 *
 * All *nbufs buffers are still owned by the caller, who gives them back with
 * memif_refill_queue (conn, qid, *nbufs, headroom) once it no longer reads
 * them; the state copy makes that safe for a pending chain too.
 *
 * Returns MEMIF_ERR_SUCCESS (also when more packets are waiting) or the code
 * of memif_rx_burst; on an error after buffers were taken, the packets found
 * are still reported and a pending chain is dropped.
 */
int memif_cffi_rx_scan (memif_conn_handle_t conn, uint16_t qid, memif_buffer_t *bufs,
                        uint16_t max_bufs, uint16_t *nbufs, uintptr_t *ptrs, uint32_t *lens,
                        uint32_t *firsts, uint16_t *nsegs, uint16_t *npkts, uint8_t *resumed,
                        uint64_t *bytes, uint32_t *dropped, memif_cffi_rx_state_t *state);

#endif /* MEMIF_CFFI_SUPPORT_H */
