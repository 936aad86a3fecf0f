/* SPDX-License-Identifier: Apache-2.0 */
/*
 * memif_private.h - internal types shared by the library's source files.
 *
 * Ownership: a database owns its sockets; a socket owns the interfaces
 * created on it and the accepted connections that have not yet sent INIT; an
 * interface owns its control fd, its regions and its queues' eventfds.
 */
#ifndef MEMIF_PRIVATE_H
#define MEMIF_PRIVATE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "libmemif.h"
#include "memif.h"

#define MEMIF_NAME_LEN 32
#define MEMIF_SECRET_LEN 24
#define MEMIF_REASON_LEN 96
#define MEMIF_PATH_MAX 107 /* sun_path minus its terminator */
#define MEMIF_MSG_SIZE 128
#define MEMIF_MAX_LOG2_RING_SIZE 14
#define MEMIF_MAX_RINGS 255
#define MEMIF_MAX_REGIONS 256
#define MEMIF_DEFAULT_SOCKET_PATH "/run/vpp/memif.sock"
#define MEMIF_DEFAULT_LOG2_RING_SIZE 10
#define MEMIF_DEFAULT_BUFFER_SIZE 2048
#define MEMIF_DEFAULT_RECONNECT_SEC 2
#define MEMIF_HANDSHAKE_TIMEOUT_MS 10000

#define MEMIF_MAGIC_DB 0x6d644231u   /* "mdB1" */
#define MEMIF_MAGIC_SOCK 0x6d735331u /* "msS1" */
#define MEMIF_MAGIC_CONN 0x6d634331u /* "mcC1" */
#define MEMIF_MAGIC_DEAD 0xdeadbeefu

#define MEMIF_EXPORT __attribute__ ((visibility ("default")))

typedef struct memif_db memif_db_t;
typedef struct memif_socket memif_socket_t;
typedef struct memif_conn memif_conn_t;
typedef struct memif_pending memif_pending_t;

/* ---------------------------------------------------------------- msg.c */

/* A decoded control message: every string is bounded and NUL-terminated. */
typedef struct
{
  uint16_t type;
  union
  {
    struct
    {
      char name[MEMIF_NAME_LEN + 1];
      uint16_t min_version, max_version;
      uint16_t max_region, max_m2s_ring, max_s2m_ring;
      uint8_t max_log2_ring_size;
    } hello;
    struct
    {
      uint16_t version;
      uint32_t id;
      uint8_t mode;
      uint8_t secret[MEMIF_SECRET_LEN];
      char name[MEMIF_NAME_LEN + 1];
    } init;
    struct
    {
      uint16_t index;
      uint64_t size;
    } add_region;
    struct
    {
      uint16_t flags, index, region;
      uint32_t offset;
      uint8_t log2_ring_size;
      uint16_t private_hdr_size;
    } add_ring;
    struct
    {
      char if_name[MEMIF_NAME_LEN + 1];
    } connect; /* CONNECT and CONNECTED */
    struct
    {
      uint32_t code;
      char string[MEMIF_REASON_LEN + 1];
    } disconnect;
  };
} memif_msg_info_t;

/* Decode len bytes; MEMIF_ERR_MFMSG for a wrong size, MEMIF_ERR_UNKNOWN_MSG
 * for an unknown type (NONE included), otherwise SUCCESS. Pure. */
int memif_msg_decode (const uint8_t *buf, size_t len, memif_msg_info_t *out);

/* Encoders write exactly MEMIF_MSG_SIZE bytes (zero padded). Pure. */
void memif_msg_enc_ack (uint8_t *out);
void memif_msg_enc_hello (uint8_t *out, const char *app_name);
void memif_msg_enc_init (uint8_t *out, uint32_t id, uint8_t mode, const uint8_t *secret,
                         const char *app_name);
void memif_msg_enc_add_region (uint8_t *out, uint16_t index, uint64_t size);
void memif_msg_enc_add_ring (uint8_t *out, int s2m, uint16_t index, uint16_t region,
                             uint32_t offset, uint8_t log2_ring_size);
void memif_msg_enc_connect (uint8_t *out, int connected, const char *if_name);
void memif_msg_enc_disconnect (uint8_t *out, uint32_t code, const char *reason);

/* Copy a NUL-padded field of n bytes into dst[n + 1], terminated. */
void memif_copy_field (char *dst, const uint8_t *src, size_t n);
/* Copy src into dst (capacity cap, cap >= 1), truncating, always terminated. */
void memif_strlcpy (char *dst, const char *src, size_t cap);
/* Constant-time comparison of two 24-byte NUL-padded secrets. */
int memif_secret_equal (const uint8_t *a, const uint8_t *b);
/* Non-zero if the 24-byte field holds at least one non-NUL byte. */
int memif_secret_present (const uint8_t *s);

/* ------------------------------------------------------------- errors.c */

/* Map an errno to an error code; remember it for memif_get_last_errno(). */
int memif_syserr (int err);

/* ----------------------------------------------------------------- db.c */

enum memif_fd_kind
{
  MEMIF_FD_NONE = 0,
  MEMIF_FD_TIMER,
  MEMIF_FD_CANCEL,
  MEMIF_FD_LISTENER,
  MEMIF_FD_PENDING,
  MEMIF_FD_CONTROL,
  MEMIF_FD_INTERRUPT,
};

typedef struct
{
  uint8_t kind;
  uint16_t qid;
  void *obj;
} memif_fd_entry_t;

struct memif_db
{
  uint32_t magic;
  int is_global;
  memif_alloc_t *alloc;
  memif_realloc_t *realloc;
  memif_free_t *free;
  memif_control_fd_update_t *fd_update; /* NULL = internal polling */
  void *private_ctx;
  char app_name[MEMIF_NAME_LEN + 1];
  int epfd;
  int cancel_fd;
  int timer_fd;
  struct itimerspec timer; /* reconnect period */
  int timer_armed;         /* what timerfd currently holds: 0 off, 1 armed */
  memif_socket_t *sockets; /* list */
  memif_socket_t *default_socket;
  memif_fd_entry_t *fds; /* indexed by fd number */
  int fds_len;
  int in_callback;
  memif_add_external_region_t *add_ext;
  memif_get_external_region_addr_t *get_ext_addr;
  memif_del_external_region_t *del_ext;
  memif_get_external_buffer_offset_t *get_ext_offset;
};

void *memif_db_alloc (memif_db_t *db, size_t size); /* zeroed */
void memif_db_free (memif_db_t *db, void *ptr);

/* Register fd for READ with the event loop; returns 0 or -1 (CB_FDUPDATE /
 * epoll error: the caller decides what failure means). */
int memif_fd_add (memif_db_t *db, int fd, enum memif_fd_kind kind, void *obj, uint16_t qid);
/* Forget fd (announced DEL); does not close it. */
void memif_fd_del (memif_db_t *db, int fd);
/* Close fd if >= 0 and set it to -1. */
void memif_close_fd (int *fd);

/* Re-evaluate whether the reconnect/handshake timer must run. */
void memif_db_update_timer (memif_db_t *db);
uint64_t memif_now_ms (void);

/* Run a user callback with the database marked busy. */
#define MEMIF_CALLBACK(db, call) \
  do                             \
    {                            \
      (db)->in_callback++;       \
      (void) (call);             \
      (db)->in_callback--;       \
    }                            \
  while (0)

memif_db_t *memif_db_check (memif_per_thread_main_handle_t h);
memif_db_t *memif_global_db (void);

/* --------------------------------------------------------------- sock.c */

enum memif_sock_role
{
  MEMIF_SOCK_UNUSED = 0,
  MEMIF_SOCK_MASTER,
  MEMIF_SOCK_SLAVE,
};

struct memif_pending
{
  memif_pending_t *next, *prev;
  memif_socket_t *sock;
  int fd;
  uint64_t deadline_ms;
};

struct memif_socket
{
  uint32_t magic;
  memif_db_t *db;
  memif_socket_t *next, *prev;
  char path[MEMIF_PATH_MAX + 2]; /* as given, abstract names keep their '@' */
  int is_abstract;
  int listen_fd;
  int have_file; /* we created the socket file: unlink it when closing */
  dev_t file_dev;
  ino_t file_ino;
  memif_conn_t *conns; /* list of interfaces on this socket */
  memif_pending_t *pending;
};

memif_socket_t *memif_sock_check (memif_socket_handle_t h);
int memif_sock_new (memif_db_t *db, memif_socket_t **out, const char *path);
void memif_sock_free (memif_socket_t *s);
enum memif_sock_role memif_sock_role (const memif_socket_t *s);
/* Start listening (first master interface); error code on failure. */
int memif_sock_listen (memif_socket_t *s);
/* Stop listening, unlink our socket file, drop pending connections. */
void memif_sock_unlisten (memif_socket_t *s);
/* Non-blocking connect to the socket's address; *fd on success. */
int memif_sock_connect (memif_socket_t *s, int *fd);
/* Accept one connection on a listener and start its handshake. */
int memif_sock_accept (memif_socket_t *s);
void memif_pending_close (memif_pending_t *p);

/* ----------------------------------------------------------------- shm.c */

typedef struct
{
  void *addr;
  uint64_t size;
  int fd;
  uint8_t is_external;
} memif_region_t;

/* Master's private record of the buffer the slave posted in one M2S slot,
 * checked when it was reserved: where it is mapped here and how many bytes
 * it holds. memif_tx_burst compares the application's buffers with it. */
typedef struct
{
  uint8_t *data;
  uint32_t capacity;
} memif_slot_t;

typedef struct
{
  memif_ring_t *ring;
  memif_conn_t *conn;
  uint16_t qid;
  uint8_t log2;
  uint8_t present; /* master: ADD_RING received */
  uint32_t size;   /* N */
  uint32_t mask;
  uint16_t region;
  uint32_t offset;
  int int_fd;
  /* private counters, see memif-protocol §6: never read back from shared memory */
  uint16_t own;       /* our shared counter: head (slave) or tail (master) */
  uint16_t last;      /* consumer: last consumed (last_head / last_tail) */
  uint16_t peer_seen; /* last validated value of the peer's counter */
  uint16_t alloc;     /* producer: slots reserved, not yet published */
  memif_slot_t *slots; /* master tx only: posted slots, indexed by slot */
} memif_queue_t;

/* Master, at INIT: allocate room for the configured rings. */
int memif_shm_master_prepare (memif_conn_t *c);
/* Slave: create regions, rings and eventfds for the negotiated config. */
int memif_shm_slave_create (memif_conn_t *c);
/* Master: validate and map one region received in ADD_REGION. Returns 0 or
 * an error code; *reason receives the DISCONNECT text. Takes fd. */
int memif_shm_master_add_region (memif_conn_t *c, uint16_t index, uint64_t size, int fd,
                                 const char **reason);
/* Master: validate ADD_RING against the regions received. Takes fd. */
int memif_shm_master_add_ring (memif_conn_t *c, const memif_msg_info_t *m, int fd,
                               const char **reason);
/* Both: check cookies, reset counters, apply rx modes. */
int memif_shm_connect (memif_conn_t *c, const char **reason);
/* Both: unmap regions, close eventfds, free queue arrays. */
void memif_shm_teardown (memif_conn_t *c);
/* Write the rx-mode flag of rx queue qid into its ring (connected only). */
void memif_shm_apply_rx_mode (memif_conn_t *c, uint16_t qid);

/* ---------------------------------------------------------------- ctrl.c */

enum memif_conn_state
{
  MEMIF_STATE_IDLE = 0,       /* no control connection */
  MEMIF_STATE_WAIT_HELLO,     /* slave: connected, HELLO not yet received */
  MEMIF_STATE_SENDING,        /* slave: INIT sent, sending regions/rings per ACK */
  MEMIF_STATE_WAIT_CONNECTED, /* slave: CONNECT sent */
  MEMIF_STATE_BOUND,          /* master: INIT accepted */
  MEMIF_STATE_CONNECTED,
};

struct memif_conn
{
  uint32_t magic;
  memif_db_t *db;
  memif_socket_t *sock;
  memif_conn_t *next, *prev;
  /* configuration */
  uint8_t is_master;
  uint8_t mode;
  uint32_t id;
  char if_name[MEMIF_NAME_LEN + 1];
  uint8_t secret[MEMIF_SECRET_LEN];
  char secret_str[MEMIF_SECRET_LEN + 1];
  uint8_t cfg_s2m, cfg_m2s, cfg_log2;
  uint16_t cfg_buffer_size;
  uint8_t rx_mode[MEMIF_MAX_RINGS + 1]; /* stored per rx queue id */
  memif_connection_update_t *on_connect;
  memif_connection_update_t *on_disconnect;
  memif_interrupt_t *on_interrupt;
  void *private_ctx;
  /* control connection */
  int fd;
  uint8_t state;
  uint16_t hs_step; /* slave: next message to send after an ACK */
  uint64_t deadline_ms;
  char remote_if_name[MEMIF_NAME_LEN + 1];
  char remote_app_name[MEMIF_NAME_LEN + 1];
  char error[MEMIF_REASON_LEN + 1];
  /* negotiated */
  uint16_t n_s2m, n_m2s;
  uint8_t log2;
  uint16_t buffer_size;
  uint16_t n_regions;
  memif_region_t *regions; /* MEMIF_MAX_REGIONS entries while a connection exists */
  memif_queue_t *s2m, *m2s;
  /* set by the data path when the peer broke the protocol */
  volatile int broken;
  const char *broken_reason;
};

memif_conn_t *memif_conn_check (memif_conn_handle_t h);
static inline memif_queue_t *
memif_conn_rxq (memif_conn_t *c)
{
  return c->is_master ? c->s2m : c->m2s;
}
static inline memif_queue_t *
memif_conn_txq (memif_conn_t *c)
{
  return c->is_master ? c->m2s : c->s2m;
}
static inline uint16_t
memif_conn_nrx (const memif_conn_t *c)
{
  return c->is_master ? c->n_s2m : c->n_m2s;
}
static inline uint16_t
memif_conn_ntx (const memif_conn_t *c)
{
  return c->is_master ? c->n_m2s : c->n_s2m;
}

void memif_set_error (memif_conn_t *c, const char *reason);
/* Send one message with an optional fd; 0 or error code. */
int memif_ctrl_send (int fd, const uint8_t *msg, int pass_fd);
/* Handle readiness on an interface's control fd. */
void memif_ctrl_handle (memif_conn_t *c, uint8_t events);
/* Handle readiness on a not-yet-bound accepted connection. */
void memif_pending_handle (memif_pending_t *p, uint8_t events);
/* Tear the connection down (memif-protocol §10.2). send_reason NULL = do
 * not send DISCONNECT; record is the reason stored for details. */
void memif_disconnect (memif_conn_t *c, const char *send_reason, const char *record);
/* Slave: attempt a connection; error code (also recorded). */
int memif_slave_connect (memif_conn_t *c);
/* Abort handshakes whose deadline passed. */
void memif_ctrl_check_deadlines (memif_db_t *db, uint64_t now);

/* ------------------------------------------------------------ datapath.c */

/* Mark the connection broken from the data path: the control loop sees EOF. */
void memif_mark_broken (memif_conn_t *c, const char *reason);

/*
 * Send by copying, for the bundled Python helpers: packet i is lens[i] bytes at
 * data + offsets[i]; each is copied straight into the buffer of its slot and
 * the descriptor written, one pass, publishing (and signalling) once. Sends
 * up to count packets, fewer when the ring fills (*sent, MEMIF_ERR_SUCCESS).
 * It stops early with *general set before a packet that needs a chain, or at
 * once when buffers are allocated and not yet sent or the slave's buffers are
 * found through an application callback.
 */
int memif_tx_copy_simple (memif_conn_handle_t conn, uint16_t qid, const uint8_t *data,
                          const uint32_t *offsets, const uint32_t *lens, uint16_t count,
                          uint16_t *sent, int *general);

/*
 * Receive by copying, the other direction: copy whole
 * single-buffer packets from rx queue qid into dst (packet i at i * stride,
 * its length in lens[i], at most max packets) and give each slot back as it
 * is read (a slave re-posts its buffer with headroom), publishing once at
 * the end. One pass over each descriptor instead of the three of
 * memif_rx_burst, a copy and memif_refill_queue. It stops early, with
 * *general set, before anything it leaves to those calls: a chained or a
 * longer-than-limit packet, a slave whose ring is not fully posted, a
 * headroom that memif_refill_queue would refuse. *got is the packets
 * copied. Returns MEMIF_ERR_*; an invalid descriptor marks the connection
 * broken, as memif_rx_burst does.
 */
int memif_rx_copy_simple (memif_conn_handle_t conn, uint16_t qid, uint8_t *dst, uint32_t stride,
                          uint32_t limit, uint32_t *lens, uint16_t max, uint16_t headroom,
                          uint16_t *got, int *general);

#endif /* MEMIF_PRIVATE_H */
