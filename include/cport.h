/*
 * cport: asynchronous sockets with I/O-completion-port semantics.
 *
 * One API, two modes, every platform:
 *
 *  - completion mode (the default): an operation that cannot finish at once
 *    is handed to the OS (or emulated) and its result later arrives as a
 *    CPORT_TAG_COMPLETION message in the socket's owner queue;
 *  - select mode: an operation that cannot finish at once returns a select
 *    handle; a CPORT_TAG_SELECT message says when to call it again.
 *
 * Every operation call takes a timeout: CPORT_NOWAIT (the asynchronous form
 * described above), CPORT_INFINITY, or a number of milliseconds (a blocking
 * call that never consumes messages meant for the owner queue).
 *
 * A nowait call returns exactly one of:
 *   CPORT_OK          done now; results are in the out-parameters;
 *   CPORT_SELECT      pending in select mode; *handle identifies it;
 *   CPORT_COMPLETION  pending in completion mode; *handle identifies it;
 *   a negative cport_err value.
 * "Done now" means done with what the backend already knows: epoll does
 * not ask the kernel again for a direction it last found empty or full
 * (nor for a new socket's first read) until the poller reports it, so such
 * a call pends although a system call might have found data.
 *
 * Every pending handle ends with exactly one final message in the owner
 * queue: its select or completion message, or a CPORT_TAG_ABORT message
 * whose status is CPORT_ECANCELED (cport_cancel), CPORT_ETIMEDOUT (a
 * deadline passed) or CPORT_ECLOSED (cport_close). The one exception:
 * cport_cancel returning CPORT_OK for a select handle (select operations
 * carry no data, so nothing is lost). A handle that delivers several
 * messages (a repeating timer) flags every one but the last with
 * CPORT_MSG_MORE.
 *
 * Messages that carry data arrive in posting order per direction. An
 * operation that ends by cancel, deadline or close before it moved a byte
 * carries nothing, so its abort arrives at once, even while operations
 * posted before it are still pending.
 *
 * Buffers passed to a pending completion operation belong to the library
 * until that operation's message has been delivered; after that the library
 * never touches them again.
 *
 * All functions are thread-safe. Sockets are integers with a generation
 * count: a stale or forged socket gets CPORT_EBADF, never a crash.
 */
#ifndef CPORT_H
#define CPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(CPORT_SHARED_BUILD)
#define CPORT_API __declspec(dllexport)
#elif defined(_WIN32) && defined(CPORT_SHARED)
#define CPORT_API __declspec(dllimport)
#elif defined(__GNUC__)
#define CPORT_API __attribute__((visibility("default")))
#else
#define CPORT_API
#endif

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/* Results. Non-negative values are successes; errors are negative and the
 * same event gives the same code on every backend. */
typedef enum cport_err {
  CPORT_OK = 0,
  CPORT_SELECT = 1,     /* pending, select mode */
  CPORT_COMPLETION = 2, /* pending, completion mode */

  CPORT_EINVAL = -1,         /* bad argument, or a call that is wrong in this state */
  CPORT_EBADF = -2,          /* not a socket of this library: stale, forged or closed */
  CPORT_ENOMEM = -3,         /* out of memory */
  CPORT_ENOTSUP = -4,        /* not supported on this platform/backend/socket type */
  CPORT_EALREADY = -5,       /* a select or multishot operation is already pending in that
                                direction (or a multishot call finds operations there) */
  CPORT_ENOTCONN = -6,       /* the socket is not connected */
  CPORT_EISCONN = -7,        /* the socket is already connected */
  CPORT_ECONNREFUSED = -8,   /* the peer refused the connection */
  CPORT_ECONNRESET = -9,     /* the peer reset the connection */
  CPORT_ECONNABORTED = -10,  /* the connection was aborted by the local host stack */
  CPORT_ETIMEDOUT = -11,     /* a timeout elapsed */
  CPORT_EPIPE = -12,         /* send after the connection was shut down */
  CPORT_EADDRINUSE = -13,    /* address already in use */
  CPORT_EADDRNOTAVAIL = -14, /* address not available */
  CPORT_EAFNOSUPPORT = -15,  /* address family not supported */
  CPORT_EMFILE = -16,        /* per-process descriptor limit reached */
  CPORT_ENFILE = -17,        /* system descriptor limit reached */
  CPORT_ENOBUFS = -18,       /* no buffer space */
  CPORT_EMSGSIZE = -19,      /* message too long (datagram truncated) */
  CPORT_ENETUNREACH = -20,   /* network unreachable */
  CPORT_EHOSTUNREACH = -21,  /* host unreachable */
  CPORT_EACCES = -22,        /* permission denied */
  CPORT_ECANCELED = -23,     /* abort reason: cport_cancel stopped the operation */
  CPORT_ECLOSED = -24,       /* abort reason: the socket was closed locally */
  CPORT_ENOTFOUND = -25,     /* cport_cancel: no such pending operation (it ended) */
  CPORT_EBUSY = -26,         /* the object is in use (a queue that still owns sockets) */
  CPORT_EOPNOTSUPP = -27,    /* the operation does not apply to this socket (listen on UDP) */
  CPORT_ENETDOWN = -28,      /* the network is down */
  CPORT_EINTR = -29,         /* interrupted */
  CPORT_EUNKNOWN = -30,      /* an OS error with no portable equivalent */
  CPORT_ENONAME = -31,       /* name resolution: no such host or service */
  CPORT_EAGAIN = -32,        /* a temporary failure: try again (no name server answered) */
  CPORT_ETLS = -33           /* TLS failed: cport_tls_error says why */
} cport_err;

/* A static, English description of a cport_err value. Never NULL. */
CPORT_API const char *cport_strerror(int err);

/* The symbolic name of a cport_err value ("CPORT_ECONNRESET"). Never NULL. */
CPORT_API const char *cport_errname(int err);

/* ------------------------------------------------------------------------ */
/* Basic types                                                              */
/* ------------------------------------------------------------------------ */

/* Timeouts, in milliseconds, or one of these two. */
#define CPORT_NOWAIT (-2)
#define CPORT_INFINITY (-1)

/* A socket: an integer with a generation count. 0 is never a valid socket. */
typedef uint64_t cport_socket;
#define CPORT_INVALID_SOCKET ((cport_socket)0)

/* Identifies one pending operation on one socket. 0 is never valid. */
typedef uint64_t cport_handle;

typedef struct cport_ctx cport_ctx;     /* a poller plus its queues */
typedef struct cport_queue cport_queue; /* a user mailbox */

/* Address families and socket types. */
enum { CPORT_AF_INET = 1, CPORT_AF_INET6 = 2, CPORT_AF_UNIX = 3 };
enum { CPORT_SOCK_STREAM = 1, CPORT_SOCK_DGRAM = 2 };

/* A socket address. Plain data: copy it, compare it, zero it. */
#define CPORT_PATH_MAX 108 /* AF_UNIX path, NUL included */
typedef struct cport_addr {
  int family;        /* CPORT_AF_INET, CPORT_AF_INET6 or CPORT_AF_UNIX (0 = none) */
  uint16_t port;     /* host byte order */
  uint32_t scope_id; /* IPv6 scope (interface index) */
  uint32_t flowinfo; /* IPv6 flow information */
  union {
    uint8_t ip[16];            /* network byte order; IPv4 uses the first 4 bytes */
    char path[CPORT_PATH_MAX]; /* AF_UNIX: a filesystem path, NUL-terminated */
  };
} cport_addr;

/* Fill *addr from numeric text and a port: "127.0.0.1", "::1", "0.0.0.0".
 * Returns CPORT_OK or CPORT_EINVAL for text that is not an address (for a
 * host name, see cport_resolve). */
CPORT_API int cport_addr_init(cport_addr *addr, const char *ip, uint16_t port);

/* An AF_UNIX address for a filesystem path. CPORT_EINVAL if the path is
 * empty or does not fit CPORT_PATH_MAX. */
CPORT_API int cport_addr_unix(cport_addr *addr, const char *path);

/* Parse "a.b.c.d:port" or "[v6]:port" (or "[v6%scope]:port").
 * Returns CPORT_OK or CPORT_EINVAL. */
CPORT_API int cport_addr_parse(cport_addr *addr, const char *text);

/* Format as "a.b.c.d:port", "[v6]:port" or "unix:PATH" into buf
 * (NUL-terminated). CPORT_ADDR_STRLEN is always enough for IP addresses;
 * a path needs up to CPORT_PATH_MAX + 5. Returns the length written, or
 * CPORT_EINVAL for a bad address or a buffer too small. */
#define CPORT_ADDR_STRLEN 64
CPORT_API int cport_addr_format(const cport_addr *addr, char *buf, size_t size);

/* ------------------------------------------------------------------------ */
/* Contexts                                                                 */
/* ------------------------------------------------------------------------ */

/* Backends. CPORT_BACKEND_AUTO picks the platform's default (IOCP on
 * Windows, epoll on Linux) and honours the environment variable
 * CPORT_BACKEND ("epoll", "io_uring", "iocp"). */
typedef enum cport_backend_id {
  CPORT_BACKEND_AUTO = 0,
  CPORT_BACKEND_EPOLL = 1,
  CPORT_BACKEND_IO_URING = 2,
  CPORT_BACKEND_IOCP = 3
} cport_backend_id;

typedef struct cport_ctx_options {
  cport_backend_id backend; /* default CPORT_BACKEND_AUTO */
  int accepts_per_listener; /* IOCP: AcceptEx posted ahead per listener; 0 = 32 */
  /* Worker threads for cport_work and cport_resolve, started as work
   * arrives. 0: the environment variable CPORT_THREADPOOL_SIZE if set,
   * else the number of cores, at least 4. At most CPORT_THREADPOOL_MAX. */
  int threadpool_size;
  /* 1: sockets opened in the context start with otp.defer set. */
  int defer;
  /* 1: a promise that one thread, the one that creates the context, makes
   * every call on it and its sockets and queues. The context then skips
   * the locks that only several calling threads need (its sockets',
   * queues' and timers'), and io_uring sets its ring up for a single
   * submitter (SINGLE_ISSUER and DEFER_TASKRUN, Linux 6.1+; older kernels:
   * the ordinary set-up). Still safe from other threads: the context's
   * own workers ending work and lookups, and cport_post (both wait in the
   * context's inbox until its thread next waits). A call on one of its
   * sockets from another thread answers CPORT_EBADF, and
   * cport_which_sockets there does not list them; other calls from
   * another thread (cport_wait, cport_free of its buffers,
   * cport_ctx_destroy, ...) are undefined. */
  int single_thread;
} cport_ctx_options;
#define CPORT_THREADPOOL_MAX 1024

/* Create a context. opts may be NULL for defaults. Returns CPORT_OK,
 * CPORT_ENOTSUP for a backend this build or system lacks, or an OS error. */
CPORT_API int cport_ctx_create(cport_ctx **out, const cport_ctx_options *opts);

/* Destroy a context: closes every socket still open in it (their aborts are
 * discarded with the queues), drops work and lookups not yet started, waits
 * for those running to return, waits a bounded time for the OS to release
 * pending buffers, and frees every queue, destroyed ones included. No
 * thread may still be using it: a context, or any queue of it, used after
 * this call is undefined (socket handles of it answer CPORT_EBADF). */
CPORT_API void cport_ctx_destroy(cport_ctx *ctx);

/* The backend a context runs on, and its name ("epoll", "io_uring",
 * "iocp"). */
CPORT_API cport_backend_id cport_ctx_backend(const cport_ctx *ctx);
CPORT_API const char *cport_backend_name(cport_backend_id id);

/* Whether this build and system can run a backend. */
CPORT_API int cport_backend_available(cport_backend_id id);

/* ------------------------------------------------------------------------ */
/* Memory                                                                   */
/* ------------------------------------------------------------------------ */

/* The allocator the library uses, with the signatures (and the contract)
 * of malloc, realloc, calloc and free. */
typedef void *(*cport_malloc_fn)(size_t size);
typedef void *(*cport_realloc_fn)(void *ptr, size_t size);
typedef void *(*cport_calloc_fn)(size_t count, size_t size);
typedef void (*cport_free_fn)(void *ptr);

/* Replace the allocator behind every allocation the library makes, buffers
 * handed to the caller included (cport_free and cport_addrinfo_free give
 * them back to it), as libuv's uv_replace_allocator. Call it before the
 * first cport_ctx_create, or when no context exists, with no other thread
 * in the library and no buffer of the library still held; passing the C
 * library's malloc, realloc, calloc and free restores the defaults.
 * Returns CPORT_OK, CPORT_EINVAL if any function is NULL, or CPORT_EBUSY
 * while a context exists (the allocator is then unchanged). An allocation
 * that fails makes the call that needed it answer CPORT_ENOMEM, or ends
 * the operation it served with an error; the library stays usable. */
CPORT_API int cport_set_allocator(cport_malloc_fn malloc_fn, cport_realloc_fn realloc_fn,
                                  cport_calloc_fn calloc_fn, cport_free_fn free_fn);

/* ------------------------------------------------------------------------ */
/* Queues and messages                                                      */
/* ------------------------------------------------------------------------ */

typedef enum cport_tag {
  CPORT_TAG_SELECT = 1,     /* a select handle is ready: call the operation again */
  CPORT_TAG_COMPLETION = 2, /* a completion operation ended (status may be an error) */
  CPORT_TAG_ABORT = 3,      /* stopped: status is ECANCELED, ETIMEDOUT (a deadline) or ECLOSED */
  CPORT_TAG_USER = 4        /* posted by cport_post */
} cport_tag;

typedef enum cport_op {
  CPORT_OP_NONE = 0,
  CPORT_OP_ACCEPT = 1,
  CPORT_OP_CONNECT = 2,
  CPORT_OP_SEND = 3,
  CPORT_OP_RECV = 4,
  CPORT_OP_SENDTO = 5,
  CPORT_OP_RECVFROM = 6,
  CPORT_OP_SENDMSG = 7,
  CPORT_OP_RECVMSG = 8,
  CPORT_OP_TIMER = 9,          /* cport_timer_start: msg.user and msg.user_ptr as given */
  CPORT_OP_CLOSE = 10,         /* cport_close_async: the socket's last message */
  CPORT_OP_WORK = 11,          /* cport_work: msg.user_ptr is the arg given */
  CPORT_OP_RESOLVE = 12,       /* cport_resolve: msg.buf is the cport_addrinfo list */
  CPORT_OP_NAMEINFO = 13,      /* cport_nameinfo: msg.buf is the cport_names */
  CPORT_OP_TLS_HANDSHAKE = 14, /* cport_tls_start */
  CPORT_OP_TLS_SHUTDOWN = 15   /* cport_tls_shutdown */
} cport_op;

/* Flags in cport_msg.flags and cport_recv_info.flags. */
#define CPORT_MSG_TRUNC 0x1u /* the datagram was longer than the buffer: the rest is lost */
#define CPORT_MSG_ALLOCATED                                                                        \
  0x2u /* msg.buf was allocated by the library (recv_alloc, resolve...): cport_free it */
#define CPORT_MSG_MORE 0x4u /* the handle goes on: more messages follow for it */

typedef struct cport_msg {
  cport_tag tag;
  cport_op op;
  cport_socket socket;   /* the socket the operation ran on (0 for user messages) */
  cport_handle handle;   /* the handle the call returned (0 for user messages) */
  int status;            /* CPORT_OK or a negative cport_err */
  size_t bytes;          /* bytes sent or received (a partial count on abort) */
  void *buf;             /* the buffer of a send or recv */
  cport_socket accepted; /* accept completion: the new socket */
  uint64_t user;         /* user and timer messages: the value given */
  void *user_ptr;        /* user and timer messages: the pointer given */
  void *meta;            /* the socket's otp.meta when the operation ended (NULL for
                            user messages): find the caller's state without a lookup */
  unsigned flags;        /* CPORT_MSG_TRUNC, CPORT_MSG_ALLOCATED */
  cport_addr addr;       /* recvfrom completion: the sender */
} cport_msg;

/* Create a queue in ctx. */
CPORT_API int cport_queue_create(cport_ctx *ctx, cport_queue **out);

/* Destroy a queue. CPORT_EBUSY while a socket still has it as owner. Its
 * messages, its timers still armed and its work and lookups not yet ended
 * are dropped with it, with no message. From then on every call naming it
 * answers CPORT_EBADF (destroy again, cport_wait, cport_post, timers,
 * work, lookups, cport_open, otp.owner), and a thread blocked in cport_wait
 * on it returns CPORT_EBADF at once: the queue's memory stays, as a
 * tombstone, until cport_ctx_destroy. Using a queue (or anything else of
 * a context) after cport_ctx_destroy is undefined. */
CPORT_API int cport_queue_destroy(cport_queue *q);

/* The context of a queue. */
CPORT_API cport_ctx *cport_queue_ctx(const cport_queue *q);

/* Wait up to timeout (ms, CPORT_NOWAIT = don't wait, CPORT_INFINITY) for
 * messages; store up to max of them in msgs. Returns the number stored
 * (0 on timeout) or a negative error. A waiting thread drives the poller
 * itself when no other thread does, so one queue on one thread pays no
 * thread hop. */
CPORT_API int cport_wait(cport_queue *q, cport_msg *msgs, int max, int timeout);

/* Post a user message (tag CPORT_TAG_USER) from any thread; wakes a waiter.
 * CPORT_ENOMEM if the message cannot be allocated (nothing is posted). */
CPORT_API int cport_post(cport_queue *q, uint64_t value, void *ptr);

/* ------------------------------------------------------------------------ */
/* Timers                                                                   */
/* ------------------------------------------------------------------------ */

/* The largest after_ms and repeat_ms a timer takes (about 34 years). */
#define CPORT_TIMER_MAX_MS ((uint64_t)1 << 40)

/* Start a timer of q: after after_ms milliseconds a CPORT_TAG_COMPLETION
 * message, op CPORT_OP_TIMER, socket 0, status CPORT_OK, carrying user and
 * user_ptr, arrives in q. repeat_ms 0: that message is the timer's only
 * one. repeat_ms > 0: one message per period, each flagged CPORT_MSG_MORE,
 * until cport_queue_cancel ends it with its one final message. A timer
 * never fires early; one that is late (nobody waited on the context) fires
 * once and keeps its period from then, never a burst of missed periods.
 * Timers fire in the thread that drives the poller (any cport_wait on a
 * queue of the context); any thread may start or cancel them. Returns
 * CPORT_OK with *handle set, CPORT_EINVAL for a NULL argument or a value
 * above CPORT_TIMER_MAX_MS, CPORT_ENOMEM. */
CPORT_API int cport_timer_start(cport_queue *q, uint64_t after_ms, uint64_t repeat_ms,
                                uint64_t user, void *user_ptr, cport_handle *handle);

/* Cancel a handle that belongs to the queue itself: a timer, work, a
 * lookup. CPORT_OK: its one final message follows, a CPORT_TAG_ABORT with
 * CPORT_ECANCELED (for a repeating timer, after every CPORT_MSG_MORE
 * message already queued; for work, fn never runs; for a lookup already
 * running, its answer is dropped when it comes). CPORT_EBUSY for work that
 * has started: it runs to its end and its completion follows. Never waits.
 * CPORT_ENOTFOUND when the handle has ended (its final message is, or will
 * be, in the queue) or is not one of q's. CPORT_EINVAL for a NULL queue. */
CPORT_API int cport_queue_cancel(cport_queue *q, cport_handle handle);

/* ------------------------------------------------------------------------ */
/* Work and names                                                           */
/* ------------------------------------------------------------------------ */

/* Run fn(arg) on a worker thread of q's context (see threadpool_size), for
 * work that would block the thread that waits on queues: a file read, a
 * database call, a long computation. When fn returns, one message arrives
 * in q: CPORT_TAG_COMPLETION, op CPORT_OP_WORK, status CPORT_OK, user_ptr
 * arg. Work starts in the order submitted. Cancelled before it starts
 * (cport_queue_cancel), it ends with an abort and fn never runs. Returns
 * CPORT_COMPLETION with *handle set, CPORT_EINVAL for a NULL q, fn or
 * handle, CPORT_ENOMEM, or an OS error when no worker thread can start. */
CPORT_API int cport_work(cport_queue *q, void (*fn)(void *arg), void *arg, cport_handle *handle);

/* Flags for cport_resolve_hints.flags. */
#define CPORT_RESOLVE_NUMERIC_HOST 0x1u /* host must be an address: never ask a name server */
#define CPORT_RESOLVE_NUMERIC_SERV 0x2u /* service must be a port number */
#define CPORT_RESOLVE_PASSIVE 0x4u      /* NULL host: the wildcard address, to bind */
#define CPORT_RESOLVE_ADDRCONFIG 0x8u   /* only families the host has an address of */
#define CPORT_RESOLVE_CANONNAME 0x10u   /* fill the first entry's canonname */

typedef struct cport_resolve_hints {
  int family;     /* 0 = any, CPORT_AF_INET, CPORT_AF_INET6 */
  int type;       /* 0 = any, CPORT_SOCK_STREAM, CPORT_SOCK_DGRAM */
  unsigned flags; /* CPORT_RESOLVE_* */
} cport_resolve_hints;

/* One address of a lookup's answer, in the order the system gave them. */
typedef struct cport_addrinfo {
  struct cport_addrinfo *next;
  cport_addr addr; /* port filled from service */
  int type;        /* CPORT_SOCK_STREAM or CPORT_SOCK_DGRAM */
  int protocol;    /* 6 (TCP) or 17 (UDP) */
  char *canonname; /* NULL unless asked for (first entry only) */
} cport_addrinfo;

/* Resolve host (a name or an address; NULL with CPORT_RESOLVE_PASSIVE for
 * the wildcard) and service (a port number or a service name such as
 * "http"; NULL for port 0) into addresses, with the system's resolver
 * (hosts file, then DNS). hints may be NULL (any family and type). timeout
 * as for every call: CPORT_NOWAIT resolves in the background, a time in
 * ms (or CPORT_INFINITY) waits for the answer.
 * - CPORT_OK: *result holds the list (a numeric host and service answer at
 *   once, with no thread and no message; a blocking call's answer).
 * - CPORT_COMPLETION (CPORT_NOWAIT): *handle set; one message follows in
 *   q, op CPORT_OP_RESOLVE: CPORT_TAG_COMPLETION with status CPORT_OK,
 *   msg.buf the list, msg.bytes its length and CPORT_MSG_ALLOCATED set,
 *   or status an error and buf NULL; or an abort (cport_queue_cancel).
 * - Errors: CPORT_ENONAME (no such name, or no address of the family
 *   asked for), CPORT_EAGAIN (no name server answered: try later),
 *   CPORT_ETIMEDOUT (a blocking call's timeout), CPORT_EAFNOSUPPORT,
 *   CPORT_EINVAL (a bad argument or flag), CPORT_ENOMEM.
 * The list is one allocation: free it with cport_addrinfo_free (or
 * cport_free) on its first entry. */
CPORT_API int cport_resolve(cport_queue *q, const char *host, const char *service,
                            const cport_resolve_hints *hints, int timeout, cport_addrinfo **result,
                            cport_handle *handle);
CPORT_API void cport_addrinfo_free(cport_addrinfo *list);

/* A reverse lookup's answer. */
#define CPORT_NI_MAXHOST 1025
#define CPORT_NI_MAXSERV 32
typedef struct cport_names {
  char host[CPORT_NI_MAXHOST];    /* a host name, or the address as text */
  char service[CPORT_NI_MAXSERV]; /* a service name, or the port as text */
} cport_names;

/* Flags for cport_nameinfo. */
#define CPORT_NAMEINFO_NUMERIC_HOST 0x1u /* the address as text: never ask a name server */
#define CPORT_NAMEINFO_NUMERIC_SERV 0x2u /* the port as text */
#define CPORT_NAMEINFO_NAME_REQUIRED                                                               \
  0x4u                            /* CPORT_ENONAME rather than the address as text                 \
                                    (with NUMERIC_HOST: CPORT_EINVAL) */
#define CPORT_NAMEINFO_DGRAM 0x8u /* the service is a UDP one */

/* Reverse lookup of an IP address: its host and service names. Like
 * cport_resolve: CPORT_OK with *result (numeric flags answer at once), or
 * CPORT_COMPLETION with one message, op CPORT_OP_NAMEINFO, msg.buf the
 * cport_names (CPORT_MSG_ALLOCATED), freed with cport_free. */
CPORT_API int cport_nameinfo(cport_queue *q, const cport_addr *addr, unsigned flags, int timeout,
                             cport_names **result, cport_handle *handle);

/* ------------------------------------------------------------------------ */
/* Sockets                                                                  */
/* ------------------------------------------------------------------------ */

/* Flags for cport_open. */
#define CPORT_OPEN_SELECT 0x1u      /* select mode (default: completion mode) */
#define CPORT_OPEN_REGISTRY 0x2u    /* list in the registry (overrides the default) */
#define CPORT_OPEN_NO_REGISTRY 0x4u /* do not list in the registry */

/* Open a socket in owner's context; its messages go to owner. family is
 * CPORT_AF_INET, CPORT_AF_INET6 or CPORT_AF_UNIX (stream only, where
 * cport_family_supported says so); type CPORT_SOCK_STREAM or
 * CPORT_SOCK_DGRAM. The OS socket is non-blocking and not inherited by
 * child processes. CPORT_EAFNOSUPPORT for a family the system lacks. */
CPORT_API int cport_open(cport_queue *owner, int family, int type, unsigned flags,
                         cport_socket *out);

/* Whether this system can open sockets of a family (1 or 0), probed at run
 * time. AF_UNIX: 1 on Linux; on Windows 1 from Windows 10 1803 on, 0 on
 * older Windows and under Wine 8. */
CPORT_API int cport_family_supported(int family);

/* Close a socket. Each pending operation ends with one message: an abort
 * with status CPORT_ECLOSED, or its completion if that raced ahead. The
 * socket is invalid when this returns. */
CPORT_API int cport_close(cport_socket s);

/* Close a socket as cport_close does, and deliver one more message to its
 * owner after every other message about it (its completions and aborts):
 * a CPORT_TAG_COMPLETION, op CPORT_OP_CLOSE, status CPORT_OK, carrying the
 * socket's otp.meta in msg.meta and *handle in msg.handle. Nothing about
 * the socket arrives after it, so that is where per-connection state is
 * freed (as in libuv's close callback). Returns CPORT_OK (the socket is
 * closed and the message will follow), CPORT_EBADF, CPORT_EINVAL for a
 * NULL handle, or CPORT_ENOMEM (the socket is then left open). */
CPORT_API int cport_close_async(cport_socket s, cport_handle *handle);

/* Bind to a local address. SO_REUSEADDR is set on POSIX listeners (as libuv
 * does), SO_EXCLUSIVEADDRUSE on Windows; neither on AF_UNIX sockets, whose
 * path stays as a file after close (remove it before binding it again, or
 * the bind says CPORT_EADDRINUSE). */
CPORT_API int cport_bind(cport_socket s, const cport_addr *addr);

/* Listen; backlog <= 0 means the system maximum. Calling it again on a
 * listener only changes the backlog. */
CPORT_API int cport_listen(cport_socket s, int backlog);

/* Accept a connection. Done now: *accepted is the new socket, owned by the
 * listener's owner, in the listener's mode. Pending: the completion message
 * carries it in msg.accepted; a select message means "call again".
 * Resets before accept are retried internally and never reported;
 * CPORT_EMFILE/CPORT_ENFILE are reported once per call. */
CPORT_API int cport_accept(cport_socket listener, int timeout, cport_socket *accepted,
                           cport_handle *handle);

/* Connect. In completion mode a pending connect ends with its completion
 * (status OK or the real error). In select mode, after the select message
 * call cport_connect again (addr may be NULL) for the result. Binds an
 * unbound socket to the wildcard address first. A finite timeout cancels
 * the attempt when it elapses and returns CPORT_ETIMEDOUT. */
CPORT_API int cport_connect(cport_socket s, const cport_addr *addr, int timeout,
                            cport_handle *handle);

/* Flags for send and recv. */
#define CPORT_WAITALL 0x1u /* recv: fill the whole buffer (or EOF, or an error) */

/* Send len bytes. Completion mode: done now or pending, always whole; a
 * partial write never reaches the user. Select mode: *sent is what went out
 * now; CPORT_SELECT means "the rest waits, call again with what is left".
 * Blocking: returns when all was sent, or on error/timeout (*sent says how
 * much went). len must be at least 1 and fit in 2^31 - 1. */
CPORT_API int cport_send(cport_socket s, const void *buf, size_t len, unsigned flags, int timeout,
                         size_t *sent, cport_handle *handle);

/* Receive into buf (len 1 .. 2^31 - 1). Done now or completion: at least
 * one byte, or 0 meaning the peer shut down its sending side; with
 * CPORT_WAITALL the whole buffer unless EOF or an error comes first.
 * A blocking call that times out returns CPORT_ETIMEDOUT with *received set
 * to what arrived: data that arrived is never dropped. Select mode with
 * CPORT_WAITALL: CPORT_SELECT may come with *received > 0, the bytes read
 * so far (in buf); call again for the rest. */
CPORT_API int cport_recv(cport_socket s, void *buf, size_t len, unsigned flags, int timeout,
                         size_t *received, cport_handle *handle);

/* Send one datagram to an address (UDP). Whole or an error, in both modes;
 * CPORT_EMSGSIZE if it cannot fit one datagram. len may be 0 (an empty
 * datagram; buf may then be NULL). On a connected TCP socket:
 * CPORT_EISCONN. */
CPORT_API int cport_sendto(cport_socket s, const void *buf, size_t len, unsigned flags,
                           const cport_addr *to, int timeout, size_t *sent, cport_handle *handle);

/* What cport_recvfrom received now (on pending calls: msg.bytes, msg.addr
 * and msg.flags of the completion). */
typedef struct cport_recv_info {
  size_t bytes;    /* bytes stored in the buffer */
  cport_addr from; /* the sender */
  unsigned flags;  /* CPORT_MSG_TRUNC if the datagram did not fit */
} cport_recv_info;

/* Receive one datagram (UDP); a 0-byte datagram is not EOF. A datagram
 * longer than len is truncated and flagged CPORT_MSG_TRUNC on every
 * backend. Flags must be 0. CPORT_EOPNOTSUPP on stream sockets. */
CPORT_API int cport_recvfrom(cport_socket s, void *buf, size_t len, unsigned flags, int timeout,
                             cport_recv_info *info, cport_handle *handle);

/* Scatter/gather with control data. The header, its iovecs and their
 * buffers belong to the library until the operation ends; a pending
 * recvmsg fills the header before its completion message, whose msg.buf
 * points to it. */
typedef struct cport_iovec {
  void *base;
  size_t len;
} cport_iovec;

#define CPORT_IOV_MAX 64

typedef struct cport_msghdr {
  cport_addr addr;  /* sendmsg: destination (family 0: the connected peer);
                       recvmsg: the sender (datagram sockets) */
  cport_iovec *iov; /* 1 .. CPORT_IOV_MAX buffers */
  int iovcnt;
  unsigned flags; /* recvmsg: CPORT_MSG_TRUNC */
  /* Control data in portable form. recvmsg sets has_pktinfo and fills
   * local/ifindex when ip.pktinfo or ipv6.recvpktinfo is on, and tos when
   * ip.recvtos is on (else -1). sendmsg with has_pktinfo sends from
   * local (port ignored) and/or out of ifindex. */
  int has_pktinfo;
  cport_addr local; /* the datagram's destination address (our side) */
  uint32_t ifindex; /* the interface it came in on / goes out of */
  int tos;          /* IPv4 TOS byte received, or -1 */
} cport_msghdr;

/* Send the gathered iovecs. Stream sockets: whole in completion mode, as
 * cport_send. Datagram sockets: one datagram. flags must be 0. */
CPORT_API int cport_sendmsg(cport_socket s, const cport_msghdr *m, unsigned flags, int timeout,
                            size_t *sent, cport_handle *handle);

/* Receive into the iovecs, in order. Stream sockets: at least one byte, or
 * 0 for EOF (CPORT_WAITALL fills them all). Datagram sockets: one
 * datagram, with addr, flags and control data filled in. */
CPORT_API int cport_recvmsg(cport_socket s, cport_msghdr *m, unsigned flags, int timeout,
                            size_t *received, cport_handle *handle);

/* Receive into a buffer the library allocates, otp.rcvbuf bytes (default
 * 16384), so the caller need not own one while it waits. Done now: *buf
 * and *received are set. Pending in completion mode: the message carries
 * the buffer in msg.buf with CPORT_MSG_ALLOCATED in msg.flags, on a
 * completion and on an abort alike. Select mode: the select message
 * carries no buffer; call again. A call that returns no bytes (EOF, a
 * timeout, an error) returns *buf NULL; one that returns bytes returns
 * them in *buf, a CPORT_SELECT with CPORT_WAITALL included (as cport_recv).
 * Every buffer handed out this way is the caller's to release with
 * cport_free. flags: CPORT_WAITALL or 0. */
CPORT_API int cport_recv_alloc(cport_socket s, unsigned flags, int timeout, void **buf,
                               size_t *received, cport_handle *handle);

/* ---- Multishot: one call, a message per result --------------------------- */

/* Accept every connection that comes: one call, one completion message
 * per accepted socket (op CPORT_OP_ACCEPT, msg.accepted), each flagged
 * CPORT_MSG_MORE, until the handle ends with its final message: an abort
 * when cancelled (cport_cancel, a deadline) or closed, or a completion
 * without CPORT_MSG_MORE carrying an error that stopped accepting (out of
 * descriptors, say: post again once there is room) or the connection
 * accepted as a cancel raced it. Answers CPORT_COMPLETION with *handle
 * set, or an error at once for a bad call (not listening: CPORT_EINVAL).
 * Select mode too: the messages are completions (they carry the result,
 * not readiness).
 *
 * While a multishot handle is pending in a direction (accepts and receives
 * are the read direction), no other operation may be posted there, and a
 * multishot call on a direction with operations pending answers
 * CPORT_EALREADY: its messages are the direction's only ones, in order. */
CPORT_API int cport_accept_multi(cport_socket listener, cport_handle *handle);

/* Receive until the stream ends: one completion message (op
 * CPORT_OP_RECV) per chunk read, in order, into a buffer the library
 * allocates (otp.rcvbuf bytes), carried in msg.buf with msg.bytes > 0 and
 * CPORT_MSG_ALLOCATED | CPORT_MSG_MORE; release each with cport_free. The
 * final message: a completion with 0 bytes and no buffer at the peer's
 * end of stream (status CPORT_OK) or an error, or an abort (no buffer) on
 * cancel, deadline or close; a chunk that raced a cancel or close ends the
 * handle as a completion with its bytes and no CPORT_MSG_MORE. Memory
 * stays bounded: while otp.rcv_outstanding chunks (default 16) are queued
 * or with the user, not yet released with cport_free, the socket is not
 * read (the peer sees a full window), and cport_free of one resumes
 * reading. otp.recv_timeout does not apply: a cport_deadline on the handle
 * ends the whole handle. Stream sockets only (datagram: CPORT_EOPNOTSUPP);
 * returns as cport_accept_multi, under the same one-per-direction rule. */
CPORT_API int cport_recv_multi(cport_socket s, cport_handle *handle);

/* ---- TLS ------------------------------------------------------------------- */

/* A TLS configuration: a role, the certificate to present, whom to trust
 * and how to check the peer. Create it once, set it up, use it for any
 * number of sockets from any thread (it is read only once in use), and
 * free it whenever: sockets started with it keep what they need. The
 * certificate checks are cport's own and the same on every engine: the
 * peer's chain must lead to a trusted root, be within its validity
 * dates, and (client) name the server_name given, as a DNS name or an IP
 * address, in its subject alternative names. */
typedef struct cport_tls_config cport_tls_config;

typedef enum cport_tls_role { CPORT_TLS_CLIENT = 1, CPORT_TLS_SERVER = 2 } cport_tls_role;

typedef enum cport_tls_verify {
  CPORT_TLS_VERIFY_PEER = 0,     /* the peer must present a good certificate (client default) */
  CPORT_TLS_VERIFY_OPTIONAL = 1, /* checked if presented (a server asking for one) */
  CPORT_TLS_VERIFY_NONE = 2      /* not asked for, not checked (server default) */
} cport_tls_verify;

typedef enum cport_tls_engine {
  CPORT_TLS_ENGINE_DEFAULT = 0, /* Schannel on Windows builds that have it, else OpenSSL */
  CPORT_TLS_ENGINE_OPENSSL = 1,
  CPORT_TLS_ENGINE_SCHANNEL = 2
} cport_tls_engine;

#define CPORT_TLS_1_2 0x0303
#define CPORT_TLS_1_3 0x0304

/* A configuration for role (cport_tls_role), with the defaults: verify
 * PEER for a client and NONE for a server, trust the system's roots,
 * minimum version TLS 1.2, the default engine. CPORT_EINVAL for a bad
 * role, CPORT_ENOTSUP if this build has no TLS. */
CPORT_API int cport_tls_config_create(cport_tls_config **cfg, int role);
/* NULL is ignored. */
CPORT_API void cport_tls_config_free(cport_tls_config *cfg);
/* The certificate (chain) and private key to present, PEM files or PEM
 * text. A server needs one. */
CPORT_API int cport_tls_config_set_cert_file(cport_tls_config *cfg, const char *cert_path,
                                             const char *key_path);
CPORT_API int cport_tls_config_set_cert_pem(cport_tls_config *cfg, const char *cert,
                                            size_t cert_len, const char *key, size_t key_len);
/* Windows: the certificate to present from a system certificate store,
 * its private key staying with the store's key provider, as a Windows
 * service keeps its own: store "MY" (the current user's personal store),
 * "CurrentUser\\MY" or "LocalMachine\\MY"; find "thumbprint:<SHA-1 in
 * hex>" (spaces or colons between pairs allowed) or "subject:<text the
 * subject contains>". Looked up now: CPORT_ENOTFOUND if it is not there,
 * CPORT_EINVAL for a bad store or find. Only the Schannel engine can use
 * it (an OpenSSL session with it and no PEM certificate fails with
 * CPORT_ETLS). CPORT_ENOTSUP on other systems. */
CPORT_API int cport_tls_config_set_cert_store(cport_tls_config *cfg, const char *store,
                                              const char *find);
/* The roots to trust instead of the system's: a PEM file or PEM text of
 * one or more certificates. */
CPORT_API int cport_tls_config_set_ca_file(cport_tls_config *cfg, const char *path);
CPORT_API int cport_tls_config_set_ca_pem(cport_tls_config *cfg, const char *pem, size_t len);
/* cport_tls_verify. */
CPORT_API int cport_tls_config_set_verify(cport_tls_config *cfg, int mode);
/* Client: the name sent as SNI and checked against the server's
 * certificate (a DNS name, or an IPv4 or IPv6 address in text). A client
 * in CPORT_TLS_VERIFY_PEER needs one: cport_tls_start answers
 * CPORT_EINVAL without it (a chain alone proves nothing of whom). */
CPORT_API int cport_tls_config_set_server_name(cport_tls_config *cfg, const char *name);
/* ALPN: the protocols offered (client) or accepted (server), most wanted
 * first, each 1 to 255 bytes; at most 16. */
CPORT_API int cport_tls_config_set_alpn(cport_tls_config *cfg, const char *const *protocols,
                                        int count);
/* CPORT_TLS_1_2 (default) or CPORT_TLS_1_3. */
CPORT_API int cport_tls_config_set_min_version(cport_tls_config *cfg, int version);
/* cport_tls_engine: CPORT_ENOTSUP for one this build lacks. */
CPORT_API int cport_tls_config_set_engine(cport_tls_config *cfg, int engine);

/* Upgrade a connected stream socket to TLS: the handshake is an operation
 * (op CPORT_OP_TLS_HANDSHAKE): done now (CPORT_OK), pending with one
 * completion message (CPORT_COMPLETION, in select mode too), or blocking
 * with a timeout, and it may be cancelled (the session is then unusable),
 * given a deadline or aborted by close. It fails with CPORT_ETLS and a
 * reason from cport_tls_error. Sends and recvs may be posted at once:
 * they wait for the handshake. From then on the socket's sends and recvs
 * (cport_send, cport_recv, cport_recv_alloc, cport_recv_multi, blocking
 * or not, with deadlines, in both modes) carry plaintext under every rule
 * they keep on a plain socket; a recv ends with 0 bytes at the peer's
 * close_notify or end of stream. A select-mode recv is ready while
 * plaintext is there; a select-mode send goes whole into the library's
 * buffer of records (at most 64 KiB) and waits while it is full. Only a
 * connected stream socket with no operation pending and not yet TLS may
 * start (CPORT_EINVAL otherwise; CPORT_EBUSY with operations pending).
 * In TLS 1.3 the client's handshake ends before the server has read the
 * client's certificate: a server's refusal of it reaches the client as
 * CPORT_ETLS on its next recv. A stream that ends in the middle of a
 * record fails with CPORT_ETLS; one that ends between records without a
 * close_notify reads as the end (0 bytes), as for plain TCP. */
CPORT_API int cport_tls_start(cport_socket s, const cport_tls_config *cfg, int timeout,
                              cport_handle *handle);
/* Send close_notify after every send posted before it; an operation (op
 * CPORT_OP_TLS_SHUTDOWN) that ends once the alert went out. Sends after
 * it answer CPORT_EPIPE; recvs go on until the peer's close_notify. */
CPORT_API int cport_tls_shutdown(cport_socket s, int timeout, cport_handle *handle);

typedef struct cport_tls_session {
  int engine;             /* cport_tls_engine that runs it */
  int version;            /* CPORT_TLS_1_2 or CPORT_TLS_1_3 */
  char cipher[64];        /* the cipher suite's name */
  char alpn[256];         /* the protocol ALPN chose, "" for none */
  char peer_subject[256]; /* the peer's subject, RFC 2253 ("CN=a, O=b"), "" for none */
} cport_tls_session;

/* The session's facts once the handshake is done: CPORT_EINVAL before
 * it or on a socket that is not TLS. */
CPORT_API int cport_tls_info(cport_socket s, cport_tls_session *info);
/* Why the session failed, in words, into buf (always terminated):
 * CPORT_OK, or CPORT_ENOTFOUND if it has not failed. */
CPORT_API int cport_tls_error(cport_socket s, char *buf, size_t len);

/* Release a buffer the library handed out: cport_recv_alloc, a
 * cport_recv_multi chunk, a lookup's answer (NULL is ignored). Any thread. */
CPORT_API void cport_free(void *buf);

/* Shut down one or both directions. */
enum { CPORT_SHUT_RD = 1, CPORT_SHUT_WR = 2, CPORT_SHUT_RDWR = 3 };
CPORT_API int cport_shutdown(cport_socket s, int how);

/* Local and peer addresses. */
CPORT_API int cport_sockname(cport_socket s, cport_addr *addr);
CPORT_API int cport_peername(cport_socket s, cport_addr *addr);

/* Cancel a pending operation. Select handle: CPORT_OK, and no message for
 * it follows. Completion handle: CPORT_OK, and exactly one message follows:
 * its completion if it won the race, else an abort with CPORT_ECANCELED.
 * An operation that had moved no byte aborts at once, whatever is pending
 * before it. CPORT_ENOTFOUND when the handle already ended (its message
 * is, or will be, in the queue), or is being stopped by its deadline. */
CPORT_API int cport_cancel(cport_socket s, cport_handle handle);

/* Give a pending operation of s (any kind, either mode) a deadline ms
 * milliseconds from now, replacing any it had; CPORT_INFINITY removes it.
 * When it passes, the operation is cancelled as by cport_cancel, and its
 * final message is a CPORT_TAG_ABORT with status CPORT_ETIMEDOUT and the
 * bytes that had moved, unless its completion (or select message) won the
 * race. A select handle that times out does get that message. Returns
 * CPORT_OK, CPORT_ENOTFOUND (the handle has ended), CPORT_EBADF, CPORT_EINVAL
 * (ms below CPORT_INFINITY), CPORT_ENOMEM. otp.recv_timeout and
 * otp.send_timeout give every recv or send such a deadline when posted. */
CPORT_API int cport_deadline(cport_socket s, cport_handle handle, int ms);

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

typedef enum cport_level {
  CPORT_LEVEL_OTP = 1, /* the library's own options */
  CPORT_LEVEL_SOCKET = 2,
  CPORT_LEVEL_IP = 3,
  CPORT_LEVEL_IPV6 = 4,
  CPORT_LEVEL_TCP = 5,
  CPORT_LEVEL_UDP = 6
} cport_level;

/* Options, named after their level. The value type each takes is given
 * after it; "get" marks read-only options. */
typedef enum cport_option {
  CPORT_OPT_OTP_OWNER = 100,        /* queue: where future messages go */
  CPORT_OPT_OTP_DEBUG = 101,        /* bool: a line on stderr per operation end */
  CPORT_OPT_OTP_USE_REGISTRY = 102, /* bool: listed by the registry calls */
  CPORT_OPT_OTP_FD = 103,           /* u64, get: the OS socket (fd or SOCKET) */
  CPORT_OPT_OTP_META = 104,         /* ptr: a user value kept with the socket */
  CPORT_OPT_OTP_ZERO_READ = 105,    /* bool, TCP: a pending recv gives its buffer to the OS only
                                       once data is there (IOCP: a zero-byte WSARecv first), so
                                       idle connections pin no buffers; accepted sockets inherit it */
  CPORT_OPT_OTP_RCVBUF = 106,       /* int 1..64 MiB: the size cport_recv_alloc allocates
                                       (default 16384); accepted sockets inherit it */
  CPORT_OPT_OTP_RECV_TIMEOUT = 107, /* int ms, 0 = none (default): every recv, recvfrom, recvmsg
                                       and recv_alloc posted afterwards (pending or blocking) gets
                                       this deadline (cport_deadline): an idle timeout. Accepted
                                       sockets inherit it; a listener's accepts do not use it */
  CPORT_OPT_OTP_SEND_TIMEOUT = 108, /* int ms, 0 = none (default): the same for sends */
  CPORT_OPT_OTP_DEFER = 109,        /* bool, completion mode: every nowait call answers
                                       CPORT_COMPLETION and delivers its result as a message,
                                       even one that could end at once (so a program needs no
                                       done-now path; bad arguments still fail at once).
                                       Default: the context's (cport_ctx_options.defer);
                                       accepted sockets inherit it */
  /* int 1..65536, TCP: the chunks of a cport_recv_multi queued or with the
   * user, not yet released with cport_free, before the socket stops reading
   * (default 16); accepted sockets inherit it */
  CPORT_OPT_OTP_RCV_OUTSTANDING = 110,

  CPORT_OPT_SOCKET_REUSEADDR = 200,        /* bool */
  CPORT_OPT_SOCKET_REUSEPORT = 201,        /* bool (Linux) */
  CPORT_OPT_SOCKET_EXCLUSIVEADDRUSE = 202, /* bool (Windows) */
  CPORT_OPT_SOCKET_KEEPALIVE = 203,        /* bool */
  CPORT_OPT_SOCKET_LINGER = 204,           /* linger; {1, 0} makes close send a reset */
  CPORT_OPT_SOCKET_RCVBUF = 205,           /* int, bytes */
  CPORT_OPT_SOCKET_SNDBUF = 206,           /* int, bytes */
  CPORT_OPT_SOCKET_RCVLOWAT = 207,         /* int, bytes (Linux) */
  CPORT_OPT_SOCKET_BROADCAST = 208,        /* bool */
  CPORT_OPT_SOCKET_TYPE = 209,             /* int, get: CPORT_SOCK_* */
  CPORT_OPT_SOCKET_PROTOCOL = 210,         /* int, get: 6 (TCP), 17 (UDP), 0 (AF_UNIX) */
  CPORT_OPT_SOCKET_DOMAIN = 211,           /* int, get: CPORT_AF_* */
  CPORT_OPT_SOCKET_ACCEPTCONN = 212,       /* bool, get */
  CPORT_OPT_SOCKET_ERROR = 213,            /* int, get: pending error as a cport_err */

  CPORT_OPT_IP_TOS = 300,             /* int 0..255 */
  CPORT_OPT_IP_TTL = 301,             /* int 1..255 */
  CPORT_OPT_IP_MULTICAST_IF = 302,    /* addr: the local interface address */
  CPORT_OPT_IP_MULTICAST_TTL = 303,   /* int 0..255 */
  CPORT_OPT_IP_MULTICAST_LOOP = 304,  /* bool */
  CPORT_OPT_IP_ADD_MEMBERSHIP = 305,  /* mreq */
  CPORT_OPT_IP_DROP_MEMBERSHIP = 306, /* mreq */
  CPORT_OPT_IP_RECVTOS = 307,         /* bool */
  CPORT_OPT_IP_PKTINFO = 308,         /* bool */

  CPORT_OPT_IPV6_V6ONLY = 400,          /* bool; before bind. Default 1 everywhere */
  CPORT_OPT_IPV6_UNICAST_HOPS = 401,    /* int -1..255 */
  CPORT_OPT_IPV6_MULTICAST_HOPS = 402,  /* int -1..255 */
  CPORT_OPT_IPV6_MULTICAST_LOOP = 403,  /* bool */
  CPORT_OPT_IPV6_ADD_MEMBERSHIP = 404,  /* mreq */
  CPORT_OPT_IPV6_DROP_MEMBERSHIP = 405, /* mreq */
  CPORT_OPT_IPV6_RECVPKTINFO = 406,     /* bool */

  CPORT_OPT_TCP_NODELAY = 500,   /* bool */
  CPORT_OPT_TCP_MAXSEG = 501,    /* int, bytes */
  CPORT_OPT_TCP_KEEPIDLE = 502,  /* int, seconds */
  CPORT_OPT_TCP_KEEPINTVL = 503, /* int, seconds */
  CPORT_OPT_TCP_KEEPCNT = 504,   /* int */
  CPORT_OPT_TCP_CORK = 505,      /* bool (Linux) */
  CPORT_OPT_TCP_NOPUSH = 506,    /* bool (BSD) */

  CPORT_OPT_UDP_CORK = 600 /* bool (Linux) */
} cport_option;

typedef enum cport_val_type {
  CPORT_VAL_BOOL = 1,
  CPORT_VAL_INT = 2,
  CPORT_VAL_LINGER = 3,
  CPORT_VAL_ADDR = 4,
  CPORT_VAL_MREQ = 5,
  CPORT_VAL_QUEUE = 6,
  CPORT_VAL_PTR = 7,
  CPORT_VAL_U64 = 8
} cport_val_type;

/* A typed option value. Set .type and the matching member. */
typedef struct cport_optval {
  cport_val_type type;
  union {
    int b; /* CPORT_VAL_BOOL: 0 or 1 */
    int i; /* CPORT_VAL_INT */
    struct {
      int onoff;
      int seconds;
    } linger;        /* CPORT_VAL_LINGER */
    cport_addr addr; /* CPORT_VAL_ADDR (port ignored) */
    struct {
      cport_addr group; /* multicast group */
      cport_addr iface; /* IPv4: local interface address (family 0: any) */
      uint32_t ifindex; /* IPv6: interface index (0: default) */
    } mreq;             /* CPORT_VAL_MREQ */
    cport_queue *queue; /* CPORT_VAL_QUEUE */
    void *ptr;          /* CPORT_VAL_PTR */
    uint64_t u64;       /* CPORT_VAL_U64 */
  } v;
} cport_optval;

/* Set an option. CPORT_ENOTSUP if this platform lacks it, CPORT_EINVAL for
 * a value of the wrong type or range, a read-only option, or a level that
 * does not own the option; CPORT_EOPNOTSUPP for an option that does not
 * apply to this socket (TCP options on UDP, multicast on TCP, IPv6 options
 * on an IPv4 socket). */
CPORT_API int cport_setopt(cport_socket s, cport_level level, cport_option opt,
                           const cport_optval *value);

/* Get an option; *value gets its type and value. Errors as cport_setopt. */
CPORT_API int cport_getopt(cport_socket s, cport_level level, cport_option opt,
                           cport_optval *value);

/* Whether this platform has the option (no socket needed): 1 or 0. */
CPORT_API int cport_is_supported(cport_level level, cport_option opt);

/* The option's name ("socket.reuseaddr"), or NULL for an unknown option. */
CPORT_API const char *cport_option_name(cport_level level, cport_option opt);

/* ------------------------------------------------------------------------ */
/* Registry                                                                 */
/* ------------------------------------------------------------------------ */

/* How many open sockets the registry lists. */
CPORT_API int cport_number_of(void);

typedef struct cport_filter {
  int family;         /* 0 = any */
  int type;           /* 0 = any */
  int protocol;       /* 0 = any; 6 = TCP, 17 = UDP */
  cport_queue *owner; /* NULL = any */
  /* NULL = any; else keeps the sockets for which it returns nonzero. It is
   * called with no lock held, so it may call cport functions. */
  int (*pred)(cport_socket s, void *arg);
  void *arg;
} cport_filter;

/* Store up to max registered sockets that match filter (NULL = all) in out;
 * returns how many match (which may exceed max). */
CPORT_API int cport_which_sockets(const cport_filter *filter, cport_socket *out, int max);

/* Print a table of every registered socket to f, like Erlang's socket:i(). */
CPORT_API void cport_print_sockets(FILE *f);

/* Basic facts about a socket. */
typedef struct cport_info {
  int family;
  int type;
  int protocol;    /* 6 (TCP) or 17 (UDP); 0 for AF_UNIX */
  int select_mode; /* 1 if opened with CPORT_OPEN_SELECT */
  cport_queue *owner;
  int listening;
  int connected;
  int bound;
  int pending_reads;            /* accept and recv operations pending */
  int pending_writes;           /* connect and send operations pending */
  uint64_t bytes_in, bytes_out; /* bytes received and sent */
  uint64_t reads, writes;       /* receive and send operations that ended well */
} cport_info;

CPORT_API int cport_info_get(cport_socket s, cport_info *info);

#ifdef __cplusplus
}
#endif
#endif /* CPORT_H */
