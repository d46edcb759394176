/* Internal types shared by the core and the backends. Not installed. */
#ifndef CPORT_INTERNAL_H
#define CPORT_INTERNAL_H

#include "cp_platform.h" /* src/posix or src/win: mutex, cond, clock */
#include "cport.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The platform layer (src/posix/platform.c, src/win/platform.c) provides
 * these on the types its cp_platform.h defines. */
int cp_mutex_init(cp_mutex *m);
void cp_mutex_destroy(cp_mutex *m);
/* cp_mutex_lock and cp_mutex_unlock are inline in cp_platform.h: the core
 * takes a socket's mutex several times per message. */

int cp_cond_init(cp_cond *c);
void cp_cond_destroy(cp_cond *c);
void cp_cond_signal(cp_cond *c);
void cp_cond_broadcast(cp_cond *c);
/* Wait until signalled or until the monotonic clock reaches deadline_ms
 * (UINT64_MAX: no deadline). Spurious wake-ups are allowed. */
void cp_cond_wait_until(cp_cond *c, cp_mutex *m, uint64_t deadline_ms);

/* Milliseconds, and nanoseconds (timers: never early), on one monotonic
 * clock. */
uint64_t cp_now_ms(void);
uint64_t cp_now_ns(void);

/* Every allocation of the library, on every platform, goes through these
 * (alloc.c): the allocator cport_set_allocator installed, called through a
 * pointer with no check added. Memory the OS allocates (getaddrinfo's) is
 * freed with the OS's own function. */
typedef struct cp_allocator {
  cport_malloc_fn malloc_fn;
  cport_realloc_fn realloc_fn;
  cport_calloc_fn calloc_fn;
  cport_free_fn free_fn;
} cp_allocator;
extern cp_allocator cp_mem;
static inline void *cp_malloc(size_t size) { return cp_mem.malloc_fn(size); }
static inline void *cp_realloc(void *ptr, size_t size) { return cp_mem.realloc_fn(ptr, size); }
static inline void *cp_calloc(size_t count, size_t size) { return cp_mem.calloc_fn(count, size); }
static inline void cp_free(void *ptr) { cp_mem.free_fn(ptr); }

/* The value of an environment variable, or NULL. */
const char *cp_getenv(const char *name);

/* Processors this process may run on (at least 1). */
unsigned cp_cpu_count(void);

/* Worker threads (src/posix/pool.c; src/win/pool.c on the system thread
 * pool). Each cp_pool_submit makes one call of run(arg) on a worker; up to
 * max_threads run at once, started as submits need them. destroy drops the
 * calls not yet started and waits for those running to return. */
typedef struct cp_pool cp_pool;
int cp_pool_create(cp_pool **out, unsigned max_threads, void (*run)(void *arg), void *arg);
int cp_pool_submit(cp_pool *p);
void cp_pool_destroy(cp_pool *p);

/* The system's resolver (src/posix/resolve.c, src/win/resolve.c): blocking
 * calls, for a worker thread. Errors are portable codes: CPORT_ENONAME,
 * CPORT_EAGAIN, CPORT_EAFNOSUPPORT, CPORT_ENOMEM, CPORT_EINVAL... */
/* One address of an answer; cp_addrinfo_build makes the one-allocation
 * list users get (resolve.c). CPORT_ENONAME for n == 0. */
typedef struct cp_ai_item {
  cport_addr addr;
  int type; /* CPORT_SOCK_* */
} cp_ai_item;
int cp_addrinfo_build(const cp_ai_item *items, size_t n, const char *canon, cport_addrinfo **out);
int cp_os_getaddrinfo(const char *host, const char *service, const cport_resolve_hints *hints,
                      cport_addrinfo **out, size_t *count);
int cp_os_getnameinfo(const cport_addr *addr, unsigned flags, cport_names *out);

/* A lookup the OS runs asynchronously, where it can (Windows 8 and later:
 * GetAddrInfoExW with a completion routine). CP_PENDING: it ends with
 * cp_job_finish, from any thread; CPORT_ENOTSUP: no such form, a worker
 * runs cp_os_getaddrinfo instead; else the OS answered at once (*out,
 * *count as for cp_os_getaddrinfo). */
typedef struct cp_job cp_job;
int cp_os_resolve_start(cp_job *job, const char *host, const char *service,
                        const cport_resolve_hints *hints, cport_addrinfo **out, size_t *count);
void cp_job_finish(cp_job *job, int status, void *result, size_t count);

/* Internal result: the backend took the operation and will report its end
 * through cp_op_done(). Never returned to users. */
#define CP_PENDING 100

/* otp.rcvbuf: its default and its largest value. */
#define CP_DEFAULT_RCVBUF 16384u
#define CP_MAX_RCVBUF (64 * 1024 * 1024)
#define cp_rcvbuf(s) ((s)->rcvbuf ? (s)->rcvbuf : CP_DEFAULT_RCVBUF)

/* otp.rcv_outstanding: its default and its largest value. */
#define CP_DEFAULT_RCV_OUTSTANDING 16u
#define CP_MAX_RCV_OUTSTANDING 65536
#define cp_rcv_outstanding(s) ((s)->rcv_max ? (s)->rcv_max : CP_DEFAULT_RCV_OUTSTANDING)

/* Largest single send or recv, so that every OS accepts the length. */
#define CP_MAX_IO_LEN 0x7fffffffu

enum cp_dir { CP_RD = 0, CP_WR = 1 };
enum cp_op_state { CP_OP_PENDING = 0, CP_OP_DONE = 1 };
enum cp_sock_state { CP_SOCK_FREE = 0, CP_SOCK_OPEN = 1, CP_SOCK_ZOMBIE = 2 };

/* Room for a backend's per-operation state (CP_BACKEND_OP_SIZE; IOCP: a
 * pointer to its OVERLAPPED record, which lives in its own allocation
 * because the OS may hold it after the op ended) and per-socket state
 * (CP_BACKEND_SOCK_SIZE) are the platform's (cp_platform.h): IOCP keeps far
 * more than epoll, and every byte is paid per connection. */

typedef struct cp_sock cp_sock;
typedef struct cp_bufs cp_bufs;         /* a multishot recv's chunks (multi.c) */
typedef struct cp_filtered cp_filtered; /* a socket's filter (TLS), below */

typedef struct cp_op {
  /* In its socket's list for dir while it runs; once it ends, next links it
   * in its queue, where it waits as a message until cport_wait copies it out
   * and frees it (no ring, no copy of a cport_msg, no growth to fail). */
  struct cp_op *next, *prev;
  union {
    cp_sock *sock;       /* until delivered */
    cport_socket socket; /* once delivered: its slot may be reused */
  };
  cport_handle handle;
  uint8_t kind;       /* cport_op */
  uint8_t dir;        /* cp_dir */
  uint8_t select;     /* a readiness wait: ends with a select message */
  uint8_t state;      /* cp_op_state */
  uint8_t cancelled;  /* cport_cancel (or its deadline) asked to stop it */
  uint8_t timed_out;  /* its deadline stopped it: the abort says ETIMEDOUT */
  uint8_t closed;     /* cport_close asked to stop it */
  uint8_t started;    /* the backend has begun it (io_uring: in the kernel) */
  uint8_t tried;      /* try_now found that it must wait: start must not try again */
  uint8_t owns_buf;   /* buf came from cport_recv_alloc: it goes to the user */
  uint8_t has_addr;   /* allocated with room for addr (cp_op_record) */
  uint8_t tag;        /* once delivered: the message's cport_tag */
  uint8_t multi;      /* a multishot op: each result a message, until the last (multi.c) */
  uint8_t paused;     /* a multishot recv waits for its chunks to be released */
  uint8_t kbuf;       /* a multishot recv whose chunks' buffers the OS picks (multi.c) */
  uint8_t os_multi;   /* the OS holds a multishot request for it: started stays set */
  uint8_t raw;        /* a filter's own op (cp_raw_post): its end goes to the filter */
  unsigned flags;     /* CPORT_WAITALL */
  unsigned msg_flags; /* result: CPORT_MSG_TRUNC */
  char *buf;          /* user messages: the pointer posted */
  size_t len;
  size_t done; /* bytes transferred so far */
  int status;  /* result, once state == CP_OP_DONE */
  union {
    cport_socket accepted; /* accept */
    uint64_t user;         /* user and timer messages: the value given */
  };
  cport_handle deadline; /* its deadline's timer (timer.c), 0 = none */
  cp_bufs *bufs;         /* a multishot recv: the accounting of its chunks */
  union {
    cport_queue *dest; /* until delivered: where the message goes (NULL: the owner) */
    void *meta;        /* once delivered: the socket's otp.meta */
  };
  _Alignas(8) unsigned char be[CP_BACKEND_OP_SIZE]; /* not zeroed by cp_op_record */
  /* Connects and datagram ops only (the others are allocated without it,
   * see has_addr): connect, sendto: the target; recvfrom: the sender. Set
   * only by the kinds that use it. */
  cport_addr addr;
} cp_op;

typedef struct cp_list {
  cp_op *head, *tail;
  int count;
} cp_list;

/* A socket slot. Slots live in chunks that are never freed, so a lookup by
 * a stale handle reads valid memory and fails the generation check. */
struct cp_sock {
  /* These survive reuse of the slot; cp_table_alloc clears the rest. */
  cp_mutex mu;
  /* A single-thread context's slot: the token (cp_thread_token) of the
   * thread that uses it without mu; every other thread treats the slot as
   * absent (table.c). 0 otherwise. A token, not the context: a thread
   * that reads it never follows a pointer a destroy may free meanwhile. */
  _Atomic(uintptr_t) solo;
  uint32_t index;
  uint32_t gen;   /* the handle is valid iff state == OPEN and gen matches */
  uint8_t state;  /* cp_sock_state */
  uint8_t family; /* CPORT_AF_* */
  uint8_t type;   /* CPORT_SOCK_* */
  uint8_t select_mode;
  uint8_t registered;
  uint8_t bound, listening, connecting, connected;
  uint8_t shut_rd, shut_wr;
  uint8_t debug;     /* otp.debug: trace each message to stderr */
  uint8_t zero_read; /* otp.zero_read: receive buffers go to the OS only when readable */
  uint8_t defer;     /* otp.defer: every nowait call ends with a message */
  uint8_t multi[2];  /* per cp_dir: a multishot op is pending there (multi.c) */
  uint32_t rcvbuf;   /* otp.rcvbuf: what cport_recv_alloc allocates (0: default) */
  uint32_t rcv_max;  /* otp.rcv_outstanding (0: default) */
  int recv_timeout;  /* otp.recv_timeout, ms (0: none) */
  int send_timeout;  /* otp.send_timeout, ms (0: none) */
  cp_op *close_op;   /* cport_close_async: the last message, sent once drained */
  void *meta;        /* otp.meta */
  cport_socket id;   /* the handle users hold (kept while a zombie drains) */
  cport_ctx *ctx;
  cport_queue *owner;
  cp_list dirs[2];       /* pending operations, FIFO per direction: the ones the backend runs */
  cp_filtered *filtered; /* a filter between the user's ops and the backend, or NULL */
  int be_refs;           /* backend-held references that delay freeing the slot */
  uint64_t next_handle;
  uint64_t bytes_in, bytes_out;
  uint64_t reads, writes;
  uintptr_t os;    /* the OS socket: an fd or a SOCKET */
  cp_op *spare_op; /* a free op record for the socket's next call (op.c) */
  cp_sock *next_free;
  _Alignas(8) unsigned char be[CP_BACKEND_SOCK_SIZE];
};

/* The backend interface: a handful of functions, each called with the
 * socket's mutex held unless said otherwise. */
typedef struct cp_backend {
  cport_backend_id id;
  const char *name;
  /* Context set-up and tear-down (no locks held). */
  int (*ctx_init)(cport_ctx *ctx);
  void (*ctx_free)(cport_ctx *ctx);
  /* Create the OS socket for s (family/type set) and attach it to the
   * poller. Socket is not yet visible to other threads. */
  int (*sock_open)(cp_sock *s);
  /* Attach an accepted OS socket (s->os set) to the poller. */
  int (*sock_adopt)(cp_sock *s);
  /* Close the OS socket. Every pending op must end through cp_op_done,
   * now or later from poll (op->closed is set on each). */
  void (*sock_close)(cp_sock *s);
  /* Optional (NULL: every op goes to start). Attempt op, the first of its
   * direction, and keep nothing of it: op lives on the caller's stack, out
   * of any list. CPORT_OK or a negative error if it ended now (as start);
   * CP_PENDING if it must wait (op->done may hold progress): the core then
   * makes it a record, sets op->tried and passes it to start. Saves the
   * record of every call that finishes at once. */
  int (*try_now)(cp_sock *s, cp_op *op);
  /* Start op: CPORT_OK if it finished now (op->status/done/accepted set),
   * CP_PENDING if the backend will report it, or a negative error. */
  int (*start)(cp_sock *s, cp_op *op);
  /* Optional, for the backends that keep one op per direction in the OS
   * (NULL: the backend orders its ops itself). Attempt op, the first
   * unended op of its direction, which the OS does not hold: CPORT_OK or a
   * negative error if it ended, CP_PENDING if it now waits for an event
   * the backend will report (the backend armed it, or sets op->started
   * when the OS holds op). ready: the OS has just reported the direction
   * ready. The core's ordering loop, cp_dir_advance, calls it. */
  int (*attempt)(cp_sock *s, cp_op *op, bool ready);
  /* Ask the OS to stop a pending op (op->cancelled is set). A select op
   * must be forgotten silently; a completion op ends through cp_op_done.
   * An op the OS does not hold can be handed to cp_op_cancel_now. */
  void (*cancel)(cp_sock *s, cp_op *op);
  /* Wait up to timeout_ms (-1 forever) for OS events and report them.
   * Called by one thread at a time, no locks held. */
  int (*poll)(cport_ctx *ctx, int timeout_ms);
  /* Make a running poll return soon. Any thread, no locks needed. */
  void (*wake)(cport_ctx *ctx);
  /* Synchronous socket calls. */
  int (*bind)(cp_sock *s, const cport_addr *addr);
  int (*listen)(cp_sock *s, int backlog);
  int (*shutdown)(cp_sock *s, int how);
  int (*sockname)(cp_sock *s, cport_addr *addr);
  int (*peername)(cp_sock *s, cport_addr *addr);
  /* Optional (NULL: never). Whether the OS will pick the buffers of the
   * chunks of multishot recv op, just recorded (io_uring's buffer ring).
   * The backend then hands each chunk to cp_multi_chunk, or ends op
   * through cp_op_done with the chunk in op->buf when the OS lets go. */
  bool (*kernel_buffers)(cp_sock *s, cp_op *op);
} cp_backend;

/* ---- core services for backends ---------------------------------------- */

/* An op ended (status: CPORT_OK or a negative error; op->done holds bytes).
 * Delivers messages in posting order per direction. s->mu held. */
void cp_op_done(cp_op *op, int status);

/* Lock the socket a handle names; NULL if the handle is stale or forged,
 * or names a single-thread context's socket from another thread.
 * Unlocking a closed socket with nothing left pending (no op, no be_refs)
 * frees its slot: touch nothing of it after cp_sock_unlock. */
cp_sock *cp_sock_lock(cport_socket id);
void cp_sock_unlock(cp_sock *s);
/* Locks s, found through one of its pending ops (which keeps the slot
 * from being freed); cp_sock_unlock undoes it. */
void cp_sock_relock(cp_sock *s);

/* Make a socket for an accepted OS socket, inheriting listener's owner,
 * mode and registry flag; calls backend->sock_adopt. listener->mu held. */
int cp_sock_adopt(cp_sock *listener, uintptr_t os, cport_socket *out);

/* The first op of a direction that has not ended yet, or NULL. */
cp_op *cp_dir_active(cp_sock *s, int dir);

/* For backends whose OS receives many chunks on one request into buffers
 * it picks (cp_backend.kernel_buffers; multi.c, ubuf.c, op.c). */
/* A user buffer of len bytes, released by cport_free (owner: the
 * multishot recv whose chunk it is, or NULL), and a blank message record
 * without an address tail: a backend lends the buffer to the OS and keeps
 * the record for the chunk that will land in it. NULL without memory. */
void *cp_ubuf_alloc(size_t len, cp_bufs *owner);
cp_op *cp_op_blank(void);
/* An op done with: into q's cache (q->mu held), or freed if q is NULL. */
void cp_op_free_cached(cport_queue *q, cp_op *op);
/* The buffer, made without an owner, becomes a chunk of owner's. */
void cp_ubuf_adopt(void *buf, cp_bufs *owner);
/* One chunk while the OS goes on receiving (op->buf, op->done set,
 * op->owns_buf): delivered as a CPORT_MSG_MORE message in rec, so it
 * cannot fail for want of memory. Returns true if op must now pause
 * (op->paused): the backend then stops the OS's request, and the release
 * that resumes op arms it again through start. */
bool cp_multi_chunk(cp_sock *s, cp_op *op, cp_op *rec);
/* One result of a multishot op (a chunk, or an accepted connection in
 * op->accepted) delivered as a CPORT_MSG_MORE message in rec, without a
 * pause: op is ready for its next result. */
void cp_multi_result(cp_sock *s, cp_op *op, cp_op *rec);
/* Arms a multishot op (a fresh buffer unless kbuf, the backend's start)
 * and delivers each result that comes at once, until one waits, the op
 * pauses or it ends. */
void cp_multi_arm(cp_sock *s, cp_op *op);

/* The ordering loop, the same for every backend with an attempt function:
 * attempts the first unended op of dir, and each next one as the one
 * before it ends, until one waits or the OS holds it (op->started). Does
 * nothing once s is closed. */
void cp_dir_advance(cp_sock *s, int dir, bool ready);

/* Ends op, which the OS does not hold, as cancelled, then advances its
 * direction: the op behind it may be able to run now, with no event to
 * come. */
void cp_op_cancel_now(cp_sock *s, cp_op *op);

/* The close drain: ends with CPORT_ECLOSED every pending op of s that the
 * OS does not hold (!op->started). Those it holds end by their own
 * reports, which the backend's sock_close makes sure come. */
void cp_sock_drain(cp_sock *s);

/* The pending op a handle names, or NULL (ended, or never one of s). */
cp_op *cp_op_find(cp_sock *s, cport_handle handle);

/* ---- filters (docs/design.md §10) ---------------------------------------- */

/* A filter stands between a socket's user ops and its backend (TLS: the
 * user's plaintext against the wire's records). The core calls it where it
 * would call the backend for a user's op; the backend then sees only the
 * filter's raw ops, in s->dirs, while the user's wait in the filter's own
 * lists. Every function is called with the socket's mutex held. */
typedef struct cp_filter {
  /* Start a user's op (recorded, in its list): as cp_backend.start. The
   * filter ends it later through cp_op_done. */
  int (*start)(cp_sock *s, cp_op *op);
  /* Stop a user's op (op->cancelled set): end it, now or later. */
  void (*cancel)(cp_sock *s, cp_op *op);
  /* The socket closes (every op's closed flag set): end the user's ops;
   * the backend's sock_close then ends the raw ones. */
  void (*close)(cp_sock *s);
  /* A raw op ended (status, done set): the filter owns its record and
   * frees it with cp_op_free. */
  void (*raw_done)(cp_sock *s, cp_op *op);
  /* The slot is freed (nothing pending): release the filter's state. */
  void (*release)(cp_sock *s);
} cp_filter;

/* The head of a filter's per-socket state (s->filtered). */
struct cp_filtered {
  const cp_filter *ops;
  cp_list dirs[2]; /* the user's pending ops, FIFO per direction */
};

/* The lists of the user's pending ops. */
static inline cp_list *cp_user_dirs(cp_sock *s) {
  return s->filtered ? s->filtered->dirs : s->dirs;
}

/* The list op waits in. */
static inline cp_list *cp_op_list(cp_sock *s, const cp_op *op) {
  return op->raw ? &s->dirs[op->dir] : &cp_user_dirs(s)[op->dir];
}

/* Posts a raw op of s's filter: a record of proto (kind, dir, buf, len,
 * flags) on the backend, behind the raw ops of its direction. Its end,
 * even at once, goes to the filter's raw_done. CPORT_OK, or CPORT_ENOMEM
 * (nothing posted). */
int cp_raw_post(cp_sock *s, const cp_op *proto);

/* The backend's per-context state: ctx->be is owned by the backend. */
void *cp_ctx_backend(cport_ctx *ctx);
void cp_ctx_set_backend(cport_ctx *ctx, void *state);
int cp_ctx_accepts_per_listener(cport_ctx *ctx);
/* cport_ctx_options.single_thread: one thread makes every call. */
bool cp_ctx_single_thread(cport_ctx *ctx);

/* Socket options of the OS (src/posix/opts.c, src/win/opts.c). The core
 * has checked the level, value type and range, and applicability. */
int cp_os_opt_supported(cport_option opt);
int cp_os_setopt(cp_sock *s, cport_option opt, const cport_optval *v);
int cp_os_getopt(cp_sock *s, cport_option opt, cport_optval *v);

/* Whether the OS opens sockets of a family (a real probe). */
int cp_os_family_supported(int family);

/* Backends compiled into this build (NULL when absent). */
extern const cp_backend cp_backend_epoll;
extern const cp_backend cp_backend_iocp;
extern const cp_backend cp_backend_io_uring;

#endif
