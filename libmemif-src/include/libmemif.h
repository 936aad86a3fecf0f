/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libmemif.h - the libmemif 3.1 programming interface, implemented by
 * memif_cffi's bundled library.
 *
 * A program written for libmemif 3.1 compiles unchanged against this header
 * and links against build/libmemif.so. Names, prototypes, structure layouts,
 * constants and error numbers are those of 3.1; behaviour follows 3.1 except
 * where 3.1 had bugs (see docs). Functions whose name does not appear in 3.1
 * are marked "extension".
 */
#ifndef _LIBMEMIF_H_
#define _LIBMEMIF_H_

#include <inttypes.h>
#include <sys/types.h>
#include <sys/timerfd.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Version of this programming interface. */
#define LIBMEMIF_VERSION "3.1"

/** Application name used when memif_init() is given NULL. */
#define MEMIF_DEFAULT_APP_NAME "libmemif-app"

/** Error codes returned by every function that returns int. */
typedef enum
{
  MEMIF_ERR_SUCCESS = 0,       /**< no error */
  MEMIF_ERR_SYSCALL,           /**< a system call failed (see memif_get_last_errno()) */
  MEMIF_ERR_CONNREFUSED,       /**< nobody accepted the connection */
  MEMIF_ERR_ACCES,             /**< permission denied */
  MEMIF_ERR_NO_FILE,           /**< socket file or its directory does not exist */
  MEMIF_ERR_FILE_LIMIT,        /**< system-wide open-file limit reached */
  MEMIF_ERR_PROC_FILE_LIMIT,   /**< per-process open-file limit reached */
  MEMIF_ERR_ALREADY,           /**< already in progress / address in use */
  MEMIF_ERR_AGAIN,             /**< would block, try again */
  MEMIF_ERR_BAD_FD,            /**< invalid file descriptor */
  MEMIF_ERR_NOMEM,             /**< out of memory */
  MEMIF_ERR_INVAL_ARG,         /**< invalid argument */
  MEMIF_ERR_NOCONN,            /**< handle does not refer to an interface */
  MEMIF_ERR_CONN,              /**< handle already refers to an interface */
  MEMIF_ERR_CB_FDUPDATE,       /**< fd-update callback reported failure */
  MEMIF_ERR_FILE_NOT_SOCK,     /**< path exists but is not a socket */
  MEMIF_ERR_NO_SHMFD,          /**< region arrived without a file descriptor */
  MEMIF_ERR_COOKIE,            /**< ring header without the memif cookie */
  MEMIF_ERR_NOBUF_RING,        /**< not enough free slots in the tx ring */
  MEMIF_ERR_NOBUF,             /**< more packets are waiting, call again */
  MEMIF_ERR_NOBUF_DET,         /**< details buffer too small */
  MEMIF_ERR_INT_WRITE,         /**< signalling the peer failed */
  MEMIF_ERR_MFMSG,             /**< malformed control message */
  MEMIF_ERR_QID,               /**< queue id out of range */
  MEMIF_ERR_PROTO,             /**< incompatible protocol version */
  MEMIF_ERR_ID,                /**< no interface with this id */
  MEMIF_ERR_ACCSLAVE,          /**< a slave cannot accept connections */
  MEMIF_ERR_ALRCONN,           /**< interface already connected */
  MEMIF_ERR_MODE,              /**< interface modes differ */
  MEMIF_ERR_SECRET,            /**< secrets differ */
  MEMIF_ERR_NOSECRET,          /**< a secret is required */
  MEMIF_ERR_MAXREG,            /**< region index out of range */
  MEMIF_ERR_MAXRING,           /**< ring index out of range */
  MEMIF_ERR_NO_INTFD,          /**< ring arrived without an interrupt fd */
  MEMIF_ERR_DISCONNECT,        /**< peer requested disconnect */
  MEMIF_ERR_DISCONNECTED,      /**< interface is not connected */
  MEMIF_ERR_UNKNOWN_MSG,       /**< unknown control message type */
  MEMIF_ERR_POLL_CANCEL,       /**< memif_poll_event() was cancelled */
  MEMIF_ERR_MAX_RING,          /**< log2 ring size larger than 14 */
  MEMIF_ERR_PRIVHDR,           /**< private headers are not supported */
} memif_err_t;

/* Events exchanged through the fd-update callback and memif_control_fd_handler(). */
#define MEMIF_FD_EVENT_READ (1 << 0)  /**< readable / watch for readability */
#define MEMIF_FD_EVENT_WRITE (1 << 1) /**< writable / watch for writability */
#define MEMIF_FD_EVENT_ERROR (1 << 2) /**< error seen on the fd (application to library) */
#define MEMIF_FD_EVENT_DEL (1 << 3)   /**< stop watching: the fd is about to be closed */
#define MEMIF_FD_EVENT_MOD (1 << 4)   /**< change the events of a watched fd */

/** Opaque handle of an interface. */
typedef void *memif_conn_handle_t;
/** Opaque handle of a socket object (one socket path). */
typedef void *memif_socket_handle_t;
/** Opaque handle of a per-thread database. */
typedef void *memif_per_thread_main_handle_t;

typedef void *(memif_alloc_t) (size_t size);
typedef void *(memif_realloc_t) (void *ptr, size_t size);
typedef void (memif_free_t) (void *ptr);

/**
 * Asks the application to watch (events READ/WRITE), re-watch (MOD) or stop
 * watching (DEL) fd. private_ctx is NULL for the global database and the
 * value given to memif_per_thread_init() otherwise. Return < 0 on failure.
 */
typedef int (memif_control_fd_update_t) (int fd, uint8_t events, void *private_ctx);

/** on_connect / on_disconnect; private_ctx is the one given to memif_create(). */
typedef int (memif_connection_update_t) (memif_conn_handle_t conn, void *private_ctx);

/** Called when the eventfd of rx queue qid is readable. */
typedef int (memif_interrupt_t) (memif_conn_handle_t conn, void *private_ctx, uint16_t qid);

/* External regions: buffer memory supplied by the application. */
typedef int (memif_add_external_region_t) (void **addr, uint32_t size, int *fd, void *private_ctx);
typedef void *(memif_get_external_region_addr_t) (uint32_t size, int fd, void *private_ctx);
typedef int (memif_del_external_region_t) (void *addr, uint32_t size, int fd, void *private_ctx);
typedef uint32_t (memif_get_external_buffer_offset_t) (void *private_ctx);

#ifndef MEMIF_INTERFACE_MODE_DEFINED
#define MEMIF_INTERFACE_MODE_DEFINED
typedef enum
{
  MEMIF_INTERFACE_MODE_ETHERNET = 0,
  MEMIF_INTERFACE_MODE_IP = 1,
  MEMIF_INTERFACE_MODE_PUNT_INJECT = 2,
} memif_interface_mode_t;
#endif

typedef enum
{
  MEMIF_RX_MODE_INTERRUPT = 0, /**< the peer signals the queue eventfd */
  MEMIF_RX_MODE_POLLING,       /**< the peer does not signal; the application polls */
} memif_rx_mode_t;

/** Arguments of memif_create(). Zero fields take the defaults noted. */
typedef struct
{
  memif_socket_handle_t socket; /**< NULL: the global default socket */
  uint8_t secret[24];           /**< NUL-padded; all zero = no secret */
  uint8_t num_s2m_rings;        /**< 0 = 1 */
  uint8_t num_m2s_rings;        /**< 0 = 1 */
  uint16_t buffer_size;         /**< 0 = 2048; any value; only the slave's counts */
  uint8_t log2_ring_size;       /**< 0 = 10; at most 14 */
  uint8_t is_master;            /**< non-zero = master, 0 = slave */
  uint32_t interface_id;
  uint8_t interface_name[32]; /**< NUL-padded */
  memif_interface_mode_t mode : 8;
} memif_conn_args_t;

#define MEMIF_BUFFER_FLAG_NEXT (1 << 0) /**< packet continues in the next buffer */
#define MEMIF_BUFFER_FLAG_RX (1 << 1)   /**< buffer came from memif_rx_burst() */

/** One buffer (one descriptor slot) handed between the library and the application. */
typedef struct
{
  uint16_t desc_index; /**< ring counter value of the slot */
  void *ring;          /**< opaque: the queue this buffer belongs to */
  uint32_t len;        /**< bytes received / bytes to send */
  uint8_t flags;       /**< MEMIF_BUFFER_FLAG_* */
  void *data;          /**< start of the data in shared memory */
} memif_buffer_t;

#define MEMIF_QUEUE_FLAG_POLLING 1

typedef struct
{
  uint8_t region;
  uint8_t qid;
  uint32_t ring_size;
  uint16_t flags; /**< MEMIF_QUEUE_FLAG_POLLING */
  uint16_t head;
  uint16_t tail;
  uint16_t buffer_size; /**< slave: negotiated; master: 0 */
} memif_queue_details_t;

typedef struct
{
  uint8_t index;
  void *addr;
  uint32_t size; /**< saturates at UINT32_MAX */
  int fd;
  uint8_t is_external;
} memif_region_details_t;

/** Filled by memif_get_details(); every pointer points into the caller's buffer. */
typedef struct
{
  uint8_t *if_name;
  uint8_t *inst_name;
  uint8_t *remote_if_name;
  uint8_t *remote_inst_name;
  uint32_t id;
  uint8_t *secret; /**< "" when there is none */
  uint8_t role;    /**< 0 = master, 1 = slave */
  uint8_t mode;
  uint8_t *socket_filename;
  uint8_t regions_num;
  memif_region_details_t *regions;
  uint8_t rx_queues_num;
  uint8_t tx_queues_num;
  memif_queue_details_t *rx_queues;
  memif_queue_details_t *tx_queues;
  uint8_t *error;       /**< reason of the last disconnect or failed attempt */
  uint8_t link_up_down; /**< 1 = connected, 0 = not connected */
} memif_details_t;

/* ---- version and errors ---- */

/** Protocol version spoken, MEMIF_VERSION (0x0200). */
uint16_t memif_get_version (void);

/** Text for an error code; thread-local buffer, valid until the next call on this thread. */
char *memif_strerror (int err_code);

/* ---- databases ---- */

/**
 * Initialise the global database. on_control_fd_update NULL selects internal
 * polling (memif_poll_event); app_name NULL selects MEMIF_DEFAULT_APP_NAME;
 * NULL allocators select malloc/realloc/free.
 */
int memif_init (memif_control_fd_update_t *on_control_fd_update, char *app_name,
                memif_alloc_t *memif_alloc, memif_realloc_t *memif_realloc,
                memif_free_t *memif_free);

/** Create an independent database; it has no default socket. */
int memif_per_thread_init (memif_per_thread_main_handle_t *pt_main, void *private_ctx,
                           memif_control_fd_update_t *on_control_fd_update, char *app_name,
                           memif_alloc_t *memif_alloc, memif_realloc_t *memif_realloc,
                           memif_free_t *memif_free);

/** Release the global database (fails with INVAL_ARG while interfaces exist). */
int memif_cleanup (void);

/** Release a per-thread database and set *pt_main to NULL. */
int memif_per_thread_cleanup (memif_per_thread_main_handle_t *pt_main);

/* ---- sockets ---- */

/** Create a socket object for filename ("@name" = Linux abstract address). */
int memif_create_socket (memif_socket_handle_t *sock, const char *filename, void *private_ctx);

int memif_per_thread_create_socket (memif_per_thread_main_handle_t pt_main,
                                    memif_socket_handle_t *sock, const char *filename,
                                    void *private_ctx);

/** Delete an unused socket object and set *sock to NULL. */
int memif_delete_socket (memif_socket_handle_t *sock);

/** The path given at creation, or NULL for a NULL handle. */
const char *memif_get_socket_filename (memif_socket_handle_t sock);

/* ---- interfaces ---- */

/**
 * Create an interface. is_master non-zero makes a master (listens), zero a
 * slave (connects, retrying on the reconnect timer). Defaults are written back
 * into *args. Callbacks may be NULL.
 */
int memif_create (memif_conn_handle_t *conn, memif_conn_args_t *args,
                  memif_connection_update_t *on_connect,
                  memif_connection_update_t *on_disconnect, memif_interrupt_t *on_interrupt,
                  void *private_ctx);

/** Slave only: try to connect now. */
int memif_request_connection (memif_conn_handle_t conn);

/** Disconnect (sending "interface deleted"), free the interface, set *conn to NULL. */
int memif_delete (memif_conn_handle_t *conn);

/* ---- event handling ---- */

/** Report readiness (MEMIF_FD_EVENT_*) of a library fd of the global database. */
int memif_control_fd_handler (int fd, uint8_t events);

int memif_per_thread_control_fd_handler (memif_per_thread_main_handle_t pt_main, int fd,
                                         uint8_t events);

/** Internal polling: wait up to timeout milliseconds (-1 = forever) and handle one event. */
int memif_poll_event (int timeout);

int memif_per_thread_poll_event (memif_per_thread_main_handle_t pt_main, int timeout);

/** Make the current or next memif_poll_event() return MEMIF_ERR_POLL_CANCEL. */
int memif_cancel_poll_event (void);
#define MEMIF_HAVE_CANCEL_POLL_EVENT 1

int memif_per_thread_cancel_poll_event (memif_per_thread_main_handle_t pt_main);

/** Set the reconnect period (all zero disables automatic reconnection). */
int memif_set_connection_request_timer (struct itimerspec timer);

int memif_per_thread_set_connection_request_timer (memif_per_thread_main_handle_t pt_main,
                                                   struct itimerspec timer);

/* ---- interface information ---- */

int memif_get_details (memif_conn_handle_t conn, memif_details_t *md, char *buf, ssize_t buflen);

/** Eventfd of rx queue qid (owned by the library). */
int memif_get_queue_efd (memif_conn_handle_t conn, uint16_t qid, int *fd);

int memif_set_rx_mode (memif_conn_handle_t conn, memif_rx_mode_t rx_mode, uint16_t qid);

/* ---- data path ---- */

/**
 * Reserve tx slots for count packets of size bytes; *count_out receives the
 * number of buffers filled (more than count when packets are chained).
 */
int memif_buffer_alloc (memif_conn_handle_t conn, uint16_t qid, memif_buffer_t *bufs,
                        uint16_t count, uint16_t *count_out, uint16_t size);

/** Hand received buffers to tx queue qid without copying (slave only). */
int memif_buffer_enq_tx (memif_conn_handle_t conn, uint16_t qid, memif_buffer_t *bufs,
                         uint16_t count, uint16_t *count_out);

/** Give count received buffers back to the peer (65535 = all); slave posts with headroom. */
int memif_refill_queue (memif_conn_handle_t conn, uint16_t qid, uint16_t count,
                        uint16_t headroom);

/** Publish count allocated buffers, in slot order. */
int memif_tx_burst (memif_conn_handle_t conn, uint16_t qid, memif_buffer_t *bufs,
                    uint16_t count, uint16_t *tx);

/** Take up to count received buffers; MEMIF_ERR_NOBUF when more are waiting. */
int memif_rx_burst (memif_conn_handle_t conn, uint16_t qid, memif_buffer_t *bufs,
                    uint16_t count, uint16_t *rx);

/* ---- external regions ---- */

void memif_register_external_region (memif_add_external_region_t *ar,
                                     memif_get_external_region_addr_t *gr,
                                     memif_del_external_region_t *dr,
                                     memif_get_external_buffer_offset_t *go);

/* ---- extensions (not in libmemif 3.1) ---- */

/** Extension: the same for a per-thread database. */
void memif_per_thread_register_external_region (memif_per_thread_main_handle_t pt_main,
                                                memif_add_external_region_t *ar,
                                                memif_get_external_region_addr_t *gr,
                                                memif_del_external_region_t *dr,
                                                memif_get_external_buffer_offset_t *go);

/** Extension: errno behind the last MEMIF_ERR_SYSCALL returned on this thread. */
int memif_get_last_errno (void);

/** Extension: protocol version as text, "2.0". */
const char *memif_get_version_str (void);

/** Extension: epoll fd of a database with internal polling (-1 otherwise). */
int memif_per_thread_get_epoll_fd (memif_per_thread_main_handle_t pt_main);

#ifdef __cplusplus
}
#endif

#endif /* _LIBMEMIF_H_ */
