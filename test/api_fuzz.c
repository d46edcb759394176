/*
 * An API-sequence fuzzer with a model of the contract (issue 16): random
 * calls on a small pool of sockets (a listener, connected TCP pairs, two
 * UDP sockets) and two queues, driven by a seeded PRNG (or, in the
 * libFuzzer build, by the input bytes), each result and each message
 * checked against what include/cport.h promises:
 *
 *  - every pending handle ends with exactly one final message (a multishot
 *    one: CPORT_MSG_MORE messages, then one final), in a queue that was
 *    its socket's owner while it was pending; a select handle that
 *    cport_cancel answered CPORT_OK gets none;
 *  - a completion-mode send is whole; a recv gets at most len bytes, and
 *    0 bytes (EOF) only when a side shut the stream down or closed it;
 *  - the bytes each side receives are exactly the bytes the other sent, in
 *    order (every send carries a window of a pattern, so every byte
 *    received is checked, whatever was cancelled in between);
 *  - aborts carry the reason the model caused (cancel, deadline, close);
 *  - nothing about a socket after its CPORT_OP_CLOSE message; a closed
 *    socket answers CPORT_EBADF; an ended handle CPORT_ENOTFOUND.
 *
 *   api_fuzz --backend epoll|io_uring|iocp --mode completion|select
 *            [--seed S] [--runs N] [--len CALLS] [--run I]
 *
 * --run I replays run I alone (same seed and length) after a failure, which
 * prints the seed, the run and the last calls made.
 */
#include "support.h"

#include <stdlib.h>
#include <string.h>

#define MAX_SOCKS 12   /* pool slots per run; closed sockets keep theirs */
#define MAX_OPS 64     /* pending handles the model follows */
#define MAX_SEGS 256   /* sends (or recvs) per socket per run */
#define MAX_DGRAMS 512 /* datagrams per run */
#define LOG_LINES 60   /* calls and messages printed on a violation */
#define DRAIN_MS 5000  /* how long teardown waits for the last messages */

/* ======================================================================== */
/* The model                                                                */
/* ======================================================================== */

/* One send (or recv) on one stream: the window of the sender's pattern it
 * carries (or the bytes it received), and whether its result is known. */
typedef struct fz_seg {
  int resolved;
  size_t bytes; /* bytes moved, once resolved */
  uint64_t pat; /* send: the pattern offset of its first byte */
  char *data;   /* recv: a copy of what it received */
} fz_seg;

/* The sends (or recvs) of one socket in posting order: rule 5 orders the
 * bytes by posting, whatever order the messages are read in. */
typedef struct fz_dir {
  fz_seg seg[MAX_SEGS];
  int n;      /* segments posted */
  int head;   /* the first not fully compared */
  size_t off; /* bytes of seg[head] already compared */
} fz_dir;

enum { SK_LISTENER = 1, SK_STREAM, SK_UDP };

typedef struct fz_sock {
  int used, open; /* open: not closed by the fuzzer */
  cport_socket s;
  int kind;
  int owner;         /* queue index */
  int owner_changed; /* messages may be split between the queues */
  int connecting;    /* a connect pends (select: call again after its message) */
  int connect_ready; /* select mode: the connect's select message came */
  int connected;
  int client;    /* opened by the fuzzer and connected to the listener */
  uint16_t port; /* client: local port; accepted: the peer's port */
  int peer;      /* pool index of the other end, or -1 */
  int shut_rd, shut_wr;
  int troubled;    /* connection errors and EOF are expected on it */
  int timeouts;    /* otp.recv_timeout or otp.send_timeout was set */
  int meta_set;    /* otp.meta was set (always to &sk[i]) */
  int close_async; /* closed with cport_close_async */
  cport_handle close_h;
  unsigned close_seen; /* the queue its close message came through (a bit) */
  int reads_multi, reads_select, writes_select; /* pending, per the model */
  uint64_t tx_pat;                              /* the pattern offset of the next send */
  fz_dir tx, rx;
  cport_addr addr; /* UDP, listener: the bound address */
} fz_sock;

enum {
  K_ACCEPT = 1,
  K_ACCEPT_MULTI,
  K_CONNECT,
  K_SEND,
  K_SENDMSG,
  K_RECV,
  K_RECVMSG,
  K_RECV_ALLOC,
  K_RECV_MULTI,
  K_SENDTO,
  K_RECVFROM,
  K_RECVMSG_UDP
};

/* A pending handle. */
typedef struct fz_op {
  int used;
  int sock; /* pool index */
  cport_handle h;
  int kind;
  int select;      /* CPORT_SELECT was returned */
  int cancelled;   /* cport_cancel answered CPORT_OK */
  int deadline;    /* cport_deadline answered CPORT_OK */
  unsigned owners; /* queues the socket had as owner while it pended */
  int seg;         /* its fz_seg index (send and recv kinds), -1 */
  uint64_t dgram;  /* sendto: its sequence number */
  char *buf;
  size_t len;
  cport_msghdr mh;
  cport_iovec iov[3];
} fz_op;

typedef struct fz_run {
  /* the input: a PRNG, or (libFuzzer) bytes */
  uint64_t rng;
  const uint8_t *in;
  size_t in_len, in_pos;
  int exhausted;
  /* identification, for the report */
  uint64_t seed;
  int run, select;
  cport_backend_id backend;
  /* the library's objects */
  cport_ctx *ctx;
  cport_queue *q[2];
  uint64_t posted[2], taken[2]; /* user messages per queue */
  int listener;
  fz_sock sk[MAX_SOCKS];
  fz_op op[MAX_OPS];
  /* datagrams: length of each, by sequence number */
  size_t dgram_len[MAX_DGRAMS];
  char dgram_seen[MAX_DGRAMS];
  /* cport_recv_multi chunks the user still holds (otp.rcv_outstanding
   * pauses the socket while too many are out; cport_free resumes it) */
  void *held[16];
  int nheld;
  int draining; /* teardown: chunks are released at once */
  struct {
    int sock;
    cport_handle h;
  } ended[16]; /* handles that ended lately (a ring), for cancel and deadline */
  int nended;
  uint64_t ndgram;
  /* the last calls, for the report */
  char log[LOG_LINES][200];
  long nlog;
  long calls;
} fz_run;

/* ======================================================================== */
/* Reporting                                                                */
/* ======================================================================== */

static const char *g_prog = "api_fuzz";
static int g_len = 60; /* calls per run */

static void note(fz_run *r, const char *fmt, ...) SUP_PRINTF(2, 3);
static void note(fz_run *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->log[r->nlog % LOG_LINES], sizeof r->log[0], fmt, ap);
  va_end(ap);
  r->nlog++;
}

/* A violation of the contract: the seed, the run, the last calls, and the
 * command that replays it; then the test fails (libFuzzer: abort). */
SUP_NORETURN static void violation(fz_run *r, const char *fmt, ...) SUP_PRINTF(2, 3);
static void violation(fz_run *r, const char *fmt, ...) {
  char msg[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\napi_fuzz: VIOLATION in run %d (seed %llu, %s, %s): %s\n", r->run,
          (unsigned long long)r->seed, cport_backend_name(r->backend),
          r->select ? "select" : "completion", msg);
  long first = r->nlog > LOG_LINES ? r->nlog - LOG_LINES : 0;
  fprintf(stderr, "the last %ld calls:\n", r->nlog - first);
  for (long i = first; i < r->nlog; i++) fprintf(stderr, "  %s\n", r->log[i % LOG_LINES]);
  if (!r->in)
    fprintf(stderr, "replay: %s --backend %s --mode %s --seed %llu --len %d --run %d\n", g_prog,
            cport_backend_name(r->backend), r->select ? "select" : "completion",
            (unsigned long long)r->seed, g_len, r->run);
#ifdef CPORT_API_FUZZ_LIBFUZZER
  abort();
#else
  SUP_FAIL("api_fuzz: %s", msg);
#endif
}

#define CHECK(r, cond, ...)                                                                        \
  do {                                                                                             \
    if (!(cond)) violation((r), __VA_ARGS__);                                                      \
  } while (0)

/* ======================================================================== */
/* Choices                                                                  */
/* ======================================================================== */

static uint64_t splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* A number in [0, n): from the PRNG, or from the next input byte(s). */
static unsigned pick(fz_run *r, unsigned n) {
  if (n <= 1) return 0;
  if (!r->in) return (unsigned)(splitmix(&r->rng) % n);
  unsigned v = 0;
  for (unsigned span = 1; span < n; span <<= 8) {
    if (r->in_pos >= r->in_len) {
      r->exhausted = 1;
      return 0;
    }
    v = (v << 8) | r->in[r->in_pos++];
  }
  return v % n;
}

/* ======================================================================== */
/* Pool helpers                                                             */
/* ======================================================================== */

static int sock_new(fz_run *r, cport_socket s, int kind, int owner) {
  for (int i = 0; i < MAX_SOCKS; i++) {
    fz_sock *k = &r->sk[i];
    if (k->used) continue;
    memset(k, 0, sizeof *k);
    k->used = k->open = 1;
    k->s = s;
    k->kind = kind;
    k->owner = owner;
    k->peer = -1;
    return i;
  }
  return -1;
}

static int free_slots(fz_run *r) {
  int n = 0;
  for (int i = 0; i < MAX_SOCKS; i++) n += !r->sk[i].used;
  return n;
}

/* A random open socket of a kind (0: any), or -1. */
static int pick_sock(fz_run *r, int kind) {
  int cand[MAX_SOCKS], n = 0;
  for (int i = 0; i < MAX_SOCKS; i++)
    if (r->sk[i].used && r->sk[i].open && (!kind || r->sk[i].kind == kind)) cand[n++] = i;
  return n ? cand[pick(r, (unsigned)n)] : -1;
}

/* A connected stream socket, or -1. */
static int pick_stream(fz_run *r) {
  int cand[MAX_SOCKS], n = 0;
  for (int i = 0; i < MAX_SOCKS; i++) {
    fz_sock *k = &r->sk[i];
    if (k->used && k->open && k->kind == SK_STREAM && k->connected) cand[n++] = i;
  }
  return n ? cand[pick(r, (unsigned)n)] : -1;
}

static fz_op *op_new(fz_run *r, int sock, int kind) {
  for (int i = 0; i < MAX_OPS; i++) {
    fz_op *o = &r->op[i];
    if (o->used) continue;
    memset(o, 0, sizeof *o);
    o->used = 1;
    o->sock = sock;
    o->kind = kind;
    o->seg = -1;
    o->owners = 1u << r->sk[sock].owner;
    return o;
  }
  return NULL;
}

static int ops_free(fz_run *r) {
  int n = 0;
  for (int i = 0; i < MAX_OPS; i++) n += !r->op[i].used;
  return n;
}

static int is_read_kind(int kind) {
  return kind == K_ACCEPT || kind == K_ACCEPT_MULTI || kind == K_RECV || kind == K_RECVMSG ||
         kind == K_RECV_ALLOC || kind == K_RECV_MULTI || kind == K_RECVFROM ||
         kind == K_RECVMSG_UDP;
}

static int is_multi(int kind) { return kind == K_ACCEPT_MULTI || kind == K_RECV_MULTI; }

/* The op leaves the model: its direction counters, its buffer. */
static void op_end(fz_run *r, fz_op *o) {
  fz_sock *k = &r->sk[o->sock];
  if (is_multi(o->kind)) k->reads_multi--;
  if (o->select) {
    if (is_read_kind(o->kind))
      k->reads_select--;
    else
      k->writes_select--;
  }
  free(o->buf);
  o->used = 0;
  r->ended[r->nended % 16].sock = o->sock;
  r->ended[r->nended % 16].h = o->h;
  r->nended++;
}

static fz_op *op_find(fz_run *r, cport_socket s, cport_handle h) {
  for (int i = 0; i < MAX_OPS; i++)
    if (r->op[i].used && r->sk[r->op[i].sock].s == s && r->op[i].h == h) return &r->op[i];
  return NULL;
}

static int sock_find(fz_run *r, cport_socket s) {
  for (int i = 0; i < MAX_SOCKS; i++)
    if (r->sk[i].used && r->sk[i].s == s) return i;
  return -1;
}

static int connection_error(int rc) {
  return rc == CPORT_ECONNRESET || rc == CPORT_ECONNABORTED || rc == CPORT_EPIPE ||
         rc == CPORT_ENOTCONN;
}

/* Mark both ends of a connection: errors and EOF are expected from now. */
static void trouble(fz_run *r, int i) {
  r->sk[i].troubled = 1;
  if (r->sk[i].peer >= 0) r->sk[r->sk[i].peer].troubled = 1;
}

/* An error from a call on a stream socket: allowed only where the model
 * expects one (a closed or shut down connection, a pending select or
 * multishot operation in that direction: CPORT_EALREADY). */
/* Whether CPORT_EALREADY is what the header promises for a call in a
 * direction: a select or multishot op pending there, or (a multishot call)
 * any op pending there (cport_accept_multi in include/cport.h). */
static int already_ok(fz_run *r, int i, int read, int multi) {
  fz_sock *k = &r->sk[i];
  if (read ? k->reads_multi > 0 || k->reads_select > 0 : k->writes_select > 0) return 1;
  if (!multi) return 0;
  for (int x = 0; x < MAX_OPS; x++)
    if (r->op[x].used && r->op[x].sock == i && r->op[x].cancelled != 2 &&
        is_read_kind(r->op[x].kind))
      return 1;
  return 0;
}

static void check_stream_err(fz_run *r, int i, int rc, int read, int multi, const char *what) {
  fz_sock *k = &r->sk[i];
  if (rc == CPORT_EALREADY) {
    CHECK(r, already_ok(r, i, read, multi),
          "%s: CPORT_EALREADY with nothing pending in that direction", what);
    return;
  }
  CHECK(r, connection_error(rc) && (k->troubled || k->shut_rd || k->shut_wr), "%s: %s", what,
        sup_rc_name(rc));
  trouble(r, i);
}

/* ======================================================================== */
/* Stream data: posted segments, compared as their results become known   */
/* ======================================================================== */

static uint32_t pat_seed(int sock) { return 0x51u + (uint32_t)sock; }

static int seg_add(fz_dir *d) {
  if (d->n == MAX_SEGS) return -1;
  memset(&d->seg[d->n], 0, sizeof d->seg[0]);
  return d->n++;
}

/* Compare what the peer of sender i received with what i sent, as far as
 * both are known. */
static void verify(fz_run *r, int i) {
  fz_sock *a = &r->sk[i];
  if (a->kind != SK_STREAM || a->peer < 0) return;
  fz_dir *tx = &a->tx, *rx = &r->sk[a->peer].rx;
  for (;;) {
    while (rx->head < rx->n && rx->seg[rx->head].resolved && rx->off == rx->seg[rx->head].bytes) {
      free(rx->seg[rx->head].data);
      rx->seg[rx->head].data = NULL;
      rx->head++;
      rx->off = 0;
    }
    if (rx->head == rx->n || !rx->seg[rx->head].resolved) return;
    while (tx->head < tx->n && tx->seg[tx->head].resolved && tx->off == tx->seg[tx->head].bytes) {
      tx->head++;
      tx->off = 0;
    }
    fz_seg *rs = &rx->seg[rx->head];
    CHECK(r, tx->head < tx->n,
          "socket %d received %zu bytes its peer %d never sent (stream offset "
          "of the receiver's recv #%d)",
          a->peer, rs->bytes - rx->off, i, rx->head);
    fz_seg *ts = &tx->seg[tx->head];
    if (!ts->resolved) return;
    size_t n = rs->bytes - rx->off;
    if (ts->bytes - tx->off < n) n = ts->bytes - tx->off;
    char want[4096];
    for (size_t done = 0; done < n;) {
      size_t c = n - done < sizeof want ? n - done : sizeof want;
      sup_pattern(want, c, ts->pat + tx->off + done, pat_seed(i));
      const char *got = rs->data + rx->off + done;
      for (size_t b = 0; b < c; b++)
        CHECK(r, got[b] == want[b],
              "stream %d->%d: recv #%d byte %zu is 0x%02x, expected 0x%02x (send #%d, its byte "
              "%zu)",
              i, a->peer, rx->head, rx->off + done + b, (unsigned char)got[b],
              (unsigned char)want[b], tx->head, tx->off + done + b);
      done += c;
    }
    rx->off += n;
    tx->off += n;
  }
}

static void send_resolved(fz_run *r, int i, int seg, size_t bytes) {
  fz_seg *s = &r->sk[i].tx.seg[seg];
  s->resolved = 1;
  s->bytes = bytes;
  verify(r, i);
}

/* A recv's result: its bytes (buf may be NULL for 0), appended to its
 * segment (a multishot recv appends every chunk to one). */
static void recv_data(fz_run *r, int i, int seg, const void *buf, size_t bytes, int final) {
  fz_seg *s = &r->sk[i].rx.seg[seg];
  if (bytes > 0) {
    char *d = (char *)realloc(s->data, s->bytes + bytes);
    if (!d) violation(r, "out of memory in the model");
    memcpy(d + s->bytes, buf, bytes);
    s->data = d;
    s->bytes += bytes;
  }
  if (final) {
    s->resolved = 1;
    if (r->sk[i].peer >= 0) verify(r, r->sk[i].peer);
  }
}

/* A recv that returned 0 bytes with CPORT_OK: an end of stream, which only
 * a shutdown or a close (ours or the peer's) explains. */
static void check_eof(fz_run *r, int i, const char *what) {
  fz_sock *k = &r->sk[i];
  int peer_done = k->peer < 0 || !r->sk[k->peer].open || r->sk[k->peer].shut_wr;
  CHECK(r, peer_done || k->shut_rd || k->troubled,
        "%s on socket %d: end of stream, but the peer (%d) neither closed nor shut down", what, i,
        k->peer);
}

/* ======================================================================== */
/* Datagrams: a sequence number, then a pattern that depends on it          */
/* ======================================================================== */

static void dgram_fill(char *buf, size_t len, uint64_t seq) {
  memcpy(buf, &seq, sizeof seq);
  sup_pattern(buf + 8, len - 8, seq << 20, 0xd6u);
}

static void dgram_check(fz_run *r, int i, const char *buf, size_t got, size_t cap, unsigned flags,
                        const char *what) {
  uint64_t seq;
  CHECK(r, got <= cap, "%s: %zu bytes into a buffer of %zu", what, got, cap);
  if (got < 8) {
    CHECK(r, cap < 8, "%s: a datagram of %zu bytes, all are at least 8", what, got);
    return;
  }
  memcpy(&seq, buf, sizeof seq);
  CHECK(r, seq < r->ndgram, "%s: datagram #%llu was never sent", what, (unsigned long long)seq);
  /* Messages are read in no particular order across ops, so the order of
   * datagrams is not checked; receiving one twice is a bug. */
  CHECK(r, !r->dgram_seen[seq], "%s: datagram #%llu received twice", what, (unsigned long long)seq);
  r->dgram_seen[seq] = 1;
  (void)i;
  size_t len = r->dgram_len[seq];
  size_t want = len < cap ? len : cap;
  CHECK(r, got == want, "%s: datagram #%llu of %zu bytes gave %zu into %zu", what,
        (unsigned long long)seq, len, got, cap);
  CHECK(r, !!(flags & CPORT_MSG_TRUNC) == (len > cap), "%s: CPORT_MSG_TRUNC %s for %zu into %zu",
        what, flags & CPORT_MSG_TRUNC ? "set" : "missing", len, cap);
  char want_b[2048];
  dgram_fill(want_b, len, seq);
  CHECK(r, memcmp(buf + 8, want_b + 8, got - 8) == 0, "%s: datagram #%llu corrupted", what,
        (unsigned long long)seq);
}

/* ======================================================================== */
/* Messages: the checker                                                    */
/* ======================================================================== */

static void adopt_accepted(fz_run *r, cport_socket s, const char *what);

static int abort_ok(fz_run *r, const fz_op *o, int status) {
  const fz_sock *k = &r->sk[o->sock];
  if (status == CPORT_ECANCELED) return o->cancelled;
  if (status == CPORT_ETIMEDOUT) return o->deadline || k->timeouts;
  if (status == CPORT_ECLOSED) return !k->open;
  return 0;
}

/* The bytes a recv kind's message carries. */
static const void *recv_buf(const fz_op *o, const cport_msg *m) {
  if (o->kind == K_RECV_ALLOC || o->kind == K_RECV_MULTI) return m->buf;
  return o->buf;
}

static void on_msg(fz_run *r, int qi, const cport_msg *m) {
  char b[300];
  sup_msg_str(m, b, sizeof b);
  if (m->tag == CPORT_TAG_USER) {
    CHECK(r, m->user == r->taken[qi], "queue %d: user message %llu, expected %llu", qi,
          (unsigned long long)m->user, (unsigned long long)r->taken[qi]);
    r->taken[qi]++;
    return;
  }
  int i = sock_find(r, m->socket);
  CHECK(r, i >= 0, "queue %d: a message about a socket the run never had: %s", qi, b);
  fz_sock *k = &r->sk[i];
  /* Rule 15 (an owner change reads the old owner's messages first, so the
   * order stays visible across queues). */
  CHECK(r, !k->close_seen, "queue %d: a message about socket %d after its close message: %s", qi, i,
        b);
  /* msg.meta: the socket's otp.meta when the op ended */
  CHECK(r, m->meta == NULL || (k->meta_set && m->meta == (void *)k),
        "queue %d: msg.meta %p, the socket's is %p: %s", qi, m->meta,
        k->meta_set ? (void *)k : NULL, b);
  if (m->op == CPORT_OP_CLOSE) {
    CHECK(r, m->meta == (k->meta_set ? (void *)k : NULL), "the close message's meta: %s", b);
    CHECK(r,
          k->close_async && m->handle == k->close_h && m->tag == CPORT_TAG_COMPLETION &&
              m->status == CPORT_OK,
          "queue %d: an unexpected close message: %s", qi, b);
    /* Rule 15: after every other message; with one owner all of them came
     * through this queue, so none may still be pending. */
    for (int j = 0; j < MAX_OPS && !k->owner_changed; j++)
      CHECK(r, !r->op[j].used || r->op[j].sock != i || r->op[j].cancelled == 2,
            "queue %d: close message of socket %d (owner q%d) before the final message of its "
            "handle %llu (kind %d, owners %#x)",
            qi, i, k->owner, (unsigned long long)r->op[j].h, r->op[j].kind, r->op[j].owners);
    k->close_seen = 1u << qi;
    return;
  }
  fz_op *o = op_find(r, m->socket, m->handle);
  CHECK(r, o, "queue %d: a message for no pending handle (a second final message?): %s", qi, b);
  CHECK(r, o->cancelled != 2, "queue %d: a message for a select handle cancelled with CPORT_OK: %s",
        qi, b);
  CHECK(r, o->owners & (1u << qi),
        "queue %d: a message for socket %d, whose owner it never was "
        "while the handle pended: %s",
        qi, i, b);
  int more = (m->flags & CPORT_MSG_MORE) != 0;
  CHECK(r, !more || (is_multi(o->kind) && m->tag == CPORT_TAG_COMPLETION),
        "CPORT_MSG_MORE on a handle that is not multishot: %s", b);
  if (m->tag == CPORT_TAG_ABORT)
    CHECK(r, abort_ok(r, o, m->status),
          "an abort the model did not cause (cancelled %d, deadline "
          "%d, open %d): %s",
          o->cancelled, o->deadline, k->open, b);
  else if (m->tag == CPORT_TAG_SELECT)
    CHECK(r, o->select && m->status == CPORT_OK, "a select message for a completion handle: %s", b);
  else
    CHECK(r, m->tag == CPORT_TAG_COMPLETION && (!o->select || is_multi(o->kind)),
          "a completion message for a select handle: %s", b);
  int err = m->tag == CPORT_TAG_COMPLETION && m->status < 0;
  if (m->flags & CPORT_MSG_ALLOCATED)
    CHECK(r, o->kind == K_RECV_ALLOC || o->kind == K_RECV_MULTI,
          "CPORT_MSG_ALLOCATED on a message that owns no buffer: %s", b);

  switch (o->kind) {
  case K_ACCEPT:
  case K_ACCEPT_MULTI:
    CHECK(r, m->op == CPORT_OP_ACCEPT, "op: %s", b);
    CHECK(r, !err, "an accept on loopback failed: %s", b);
    if (m->tag == CPORT_TAG_COMPLETION) adopt_accepted(r, m->accepted, "accept's message");
    break;
  case K_CONNECT:
    CHECK(r, m->op == CPORT_OP_CONNECT, "op: %s", b);
    CHECK(r, !err, "a connect to the loopback listener failed: %s", b);
    if (m->tag == CPORT_TAG_SELECT) {
      k->connect_ready = 1;
    } else {
      k->connecting = 0;
      k->connected = m->tag == CPORT_TAG_COMPLETION;
      if (!k->connected) trouble(r, o->sock); /* its accepted end may see a reset */
    }
    break;
  case K_SEND:
  case K_SENDMSG:
    CHECK(r, m->op == (o->kind == K_SEND ? CPORT_OP_SEND : CPORT_OP_SENDMSG), "op: %s", b);
    if (o->select) break; /* readiness only: the data went with the call */
    CHECK(r, m->bytes <= o->len, "a send of %zu moved %zu: %s", o->len, m->bytes, b);
    CHECK(r, m->tag != CPORT_TAG_COMPLETION || m->status < 0 || m->bytes == o->len,
          "a completion send not whole (%zu of %zu): %s", m->bytes, o->len, b);
    if (err) check_stream_err(r, o->sock, m->status, 0, 0, "send's completion");
    send_resolved(r, o->sock, o->seg, m->bytes);
    break;
  case K_RECV:
  case K_RECVMSG:
  case K_RECV_ALLOC:
  case K_RECV_MULTI:
    CHECK(r, m->op == (o->kind == K_RECVMSG ? CPORT_OP_RECVMSG : CPORT_OP_RECV), "op: %s", b);
    if (o->select) break;
    if (o->kind == K_RECV_MULTI)
      CHECK(r, !more || (m->bytes > 0 && m->buf), "a recv_multi chunk with no bytes: %s", b);
    else
      CHECK(r, m->bytes <= o->len, "a recv of %zu got %zu: %s", o->len, m->bytes, b);
    if ((o->kind == K_RECV_ALLOC || o->kind == K_RECV_MULTI) && m->bytes > 0)
      CHECK(r, (m->flags & CPORT_MSG_ALLOCATED) && m->buf, "bytes without their buffer: %s", b);
    if (err) check_stream_err(r, o->sock, m->status, 1, 0, "recv's completion");
    if (m->tag == CPORT_TAG_COMPLETION && m->status == CPORT_OK && m->bytes == 0)
      check_eof(r, o->sock, "recv's completion");
    recv_data(r, o->sock, o->seg, recv_buf(o, m), m->bytes, !more);
    break;
  case K_SENDTO:
    CHECK(r, m->op == CPORT_OP_SENDTO, "op: %s", b);
    CHECK(r, !err || m->status == CPORT_ENOBUFS, "a datagram send failed: %s", b);
    CHECK(r, o->select || m->tag != CPORT_TAG_COMPLETION || err || m->bytes == o->len,
          "a datagram send not whole: %s", b);
    break;
  case K_RECVFROM:
  case K_RECVMSG_UDP:
    CHECK(r, m->op == (o->kind == K_RECVFROM ? CPORT_OP_RECVFROM : CPORT_OP_RECVMSG), "op: %s", b);
    CHECK(r, !err, "a datagram recv failed: %s", b);
    if (m->tag == CPORT_TAG_COMPLETION) {
      unsigned fl = o->kind == K_RECVFROM ? m->flags : o->mh.flags;
      char tmp[2048];
      if (o->kind == K_RECVMSG_UDP) { /* gather the iovecs */
        size_t at = 0;
        for (int v = 0; v < o->mh.iovcnt && at < m->bytes; v++) {
          size_t c = o->mh.iov[v].len < m->bytes - at ? o->mh.iov[v].len : m->bytes - at;
          memcpy(tmp + at, o->mh.iov[v].base, c);
          at += c;
        }
      } else {
        memcpy(tmp, o->buf, m->bytes <= sizeof tmp ? m->bytes : sizeof tmp);
      }
      dgram_check(r, o->sock, tmp, m->bytes, o->len, fl, "datagram recv's completion");
    }
    break;
  }
  if ((m->flags & CPORT_MSG_ALLOCATED) && o->kind == K_RECV_MULTI && !r->draining &&
      r->nheld < 16 && pick(r, 2))
    r->held[r->nheld++] = m->buf; /* released later, by do_release */
  else if (m->flags & CPORT_MSG_ALLOCATED)
    cport_free(m->buf);
  if (!more) op_end(r, o); /* the final message: a select message is one too */
}

/* Take what is in queue qi now (timeout: as cport_wait). */
static int pump(fz_run *r, int qi, int timeout) {
  cport_msg ms[8];
  int n = cport_wait(r->q[qi], ms, 8, timeout);
  CHECK(r, n >= 0, "cport_wait: %s", sup_rc_name(n));
  for (int j = 0; j < n; j++) {
    char b[300];
    note(r, "  q%d: %s", qi, sup_msg_str(&ms[j], b, sizeof b));
    on_msg(r, qi, &ms[j]);
  }
  return n;
}

/* ======================================================================== */
/* Results of calls                                                         */
/* ======================================================================== */

/* The result of a nowait call that may pend: the op stays in the model if
 * it did; returns 1 if it pends. */
static int pended(fz_run *r, fz_op *o, int rc, cport_handle h, const char *what) {
  fz_sock *k = &r->sk[o->sock];
  if (rc == CPORT_SELECT || rc == CPORT_COMPLETION) {
    int want = is_multi(o->kind) || !r->select ? CPORT_COMPLETION : CPORT_SELECT;
    CHECK(r, rc == want, "%s: pending as %s in %s mode", what, sup_rc_name(rc),
          r->select ? "select" : "completion");
    CHECK(r, h != 0, "%s: pending with handle 0", what);
    CHECK(r, !op_find(r, k->s, h), "%s: handle %llu is still pending", what, (unsigned long long)h);
    o->h = h;
    o->select = rc == CPORT_SELECT;
    if (is_multi(o->kind)) k->reads_multi++;
    if (o->select) {
      if (is_read_kind(o->kind))
        k->reads_select++;
      else
        k->writes_select++;
    }
    return 1;
  }
  o->used = 0; /* ended now: the caller reads and frees o->buf */
  return 0;
}

/* A call on a closed socket: CPORT_EBADF, always. */
static void check_closed(fz_run *r, int i, int rc, const char *what) {
  CHECK(r, rc == CPORT_EBADF, "%s on closed socket %d: %s, expected CPORT_EBADF", what, i,
        sup_rc_name(rc));
}

/* ======================================================================== */
/* Calls: one function per kind                                             */
/* ======================================================================== */

static int open_client(fz_run *r);

static void adopt_accepted(fz_run *r, cport_socket s, const char *what) {
  CHECK(r, s != CPORT_INVALID_SOCKET, "%s: no socket", what);
  cport_addr peer;
  int rc = cport_peername(s, &peer);
  int i = sock_new(r, s, SK_STREAM, r->sk[r->listener].owner);
  note(r, "  accepted %#llx -> socket %d (peername %s)", (unsigned long long)s, i, sup_rc_name(rc));
  if (i < 0) { /* no room: let it go; its client sees the end of the connection */
    cport_close(s);
    for (int j = 0; rc == CPORT_OK && j < MAX_SOCKS; j++)
      if (r->sk[j].used && r->sk[j].client && r->sk[j].peer < 0 && r->sk[j].port == peer.port)
        r->sk[j].troubled = 1;
    return;
  }
  fz_sock *k = &r->sk[i];
  cport_optval v;
  CHECK(r, cport_getopt(s, CPORT_LEVEL_OTP, CPORT_OPT_OTP_OWNER, &v) == CPORT_OK,
        "getopt owner of an accepted socket");
  k->owner = v.v.queue == r->q[1];
  k->connected = 1;
  if (rc != CPORT_OK) { /* the client reset it already */
    k->troubled = 1;
    return;
  }
  k->port = peer.port;
  for (int j = 0; j < MAX_SOCKS; j++) {
    fz_sock *c = &r->sk[j];
    if (j == i || !c->used || !c->client || c->peer >= 0 || c->port != peer.port) continue;
    k->peer = j;
    c->peer = i;
    if (c->troubled || !c->open) k->troubled = 1;
    verify(r, j);
    return;
  }
  k->troubled = 1; /* its client is gone from the pool */
}

static void do_accept(fz_run *r) {
  fz_sock *l = &r->sk[r->listener];
  unsigned how = pick(r, 4);     /* nowait, nowait, multishot, blocking */
  if (free_slots(r) < 2) return; /* room for what it accepts */
  fz_op *o = op_new(r, r->listener, how == 2 ? K_ACCEPT_MULTI : K_ACCEPT);
  if (!o) return;
  cport_handle h = 0;
  cport_socket a = 0;
  int rc;
  if (how == 2) {
    rc = cport_accept_multi(l->s, &h);
    note(r, "accept_multi(L) = %s h=%llu", sup_rc_name(rc), (unsigned long long)h);
  } else if (how == 3) {
    rc = cport_accept(l->s, 1 + (int)pick(r, 3), &a, &h);
    note(r, "accept(L, blocking) = %s", sup_rc_name(rc));
    CHECK(r, rc == CPORT_OK || rc == CPORT_ETIMEDOUT || rc == CPORT_EALREADY, "blocking accept: %s",
          sup_rc_name(rc));
  } else {
    rc = cport_accept(l->s, CPORT_NOWAIT, &a, &h);
    note(r, "accept(L) = %s h=%llu", sup_rc_name(rc), (unsigned long long)h);
  }
  if (pended(r, o, rc, h, "accept")) return;
  free(o->buf);
  if (rc == CPORT_OK) {
    adopt_accepted(r, a, "accept");
    return;
  }
  if (rc == CPORT_EALREADY)
    CHECK(r, already_ok(r, r->listener, 1, how == 2),
          "accept: CPORT_EALREADY with nothing pending");
  else
    CHECK(r, rc == CPORT_ETIMEDOUT && how == 3, "accept: %s", sup_rc_name(rc));
}

/* A new client, connecting to the listener (its accept comes later). */
static int open_client(fz_run *r) {
  if (free_slots(r) < 3) return -1; /* room for its accepted peer */
  int qi = (int)pick(r, 2);
  cport_socket s;
  int rc = cport_open(r->q[qi], CPORT_AF_INET, CPORT_SOCK_STREAM,
                      r->select ? CPORT_OPEN_SELECT : 0u, &s);
  note(r, "open(q%d, tcp) = %s", qi, sup_rc_name(rc));
  CHECK(r, rc == CPORT_OK, "open: %s", sup_rc_name(rc));
  int i = sock_new(r, s, SK_STREAM, qi);
  r->sk[i].client = 1;
  fz_op *o = op_new(r, i, K_CONNECT);
  if (!o) { /* no room to follow it */
    cport_close(s);
    r->sk[i].used = 0;
    return -1;
  }
  cport_handle h = 0;
  rc = cport_connect(s, &r->sk[r->listener].addr, CPORT_NOWAIT, &h);
  note(r, "connect(%d) = %s h=%llu", i, sup_rc_name(rc), (unsigned long long)h);
  cport_addr me;
  CHECK(r, cport_sockname(s, &me) == CPORT_OK, "sockname after connect");
  r->sk[i].port = me.port;
  if (pended(r, o, rc, h, "connect")) {
    r->sk[i].connecting = 1;
    return i;
  }
  CHECK(r, rc == CPORT_OK, "connect to the loopback listener: %s", sup_rc_name(rc));
  r->sk[i].connected = 1;
  return i;
}

/* Select mode: after a connect's select message, call again for its result. */
static void connect_again(fz_run *r) {
  for (int i = 0; i < MAX_SOCKS; i++) {
    fz_sock *k = &r->sk[i];
    if (!k->used || !k->open || !k->connect_ready) continue;
    fz_op *o = op_new(r, i, K_CONNECT);
    if (!o) return;
    cport_handle h = 0;
    int rc = cport_connect(k->s, NULL, CPORT_NOWAIT, &h);
    note(r, "connect(%d, NULL) = %s", i, sup_rc_name(rc));
    k->connect_ready = 0;
    if (pended(r, o, rc, h, "connect again")) return;
    free(o->buf);
    CHECK(r, rc == CPORT_OK, "connect again: %s", sup_rc_name(rc));
    k->connecting = 0;
    k->connected = 1;
    return;
  }
}

/* A send, sendmsg or blocking send of the next window of i's pattern. */
static void do_send(fz_run *r, int i) {
  fz_sock *k = &r->sk[i];
  unsigned how = pick(r, 5); /* send, send, sendmsg, blocking send, blocking sendmsg */
  size_t len = 1 + pick(r, pick(r, 4) == 0 ? 65536 : 3000);
  int seg = seg_add(&k->tx);
  fz_op *o = op_new(r, i, how == 2 || how == 4 ? K_SENDMSG : K_SEND);
  if (seg < 0 || !o) {
    if (seg >= 0) k->tx.n--;
    if (o) o->used = 0;
    return;
  }
  o->buf = (char *)malloc(len);
  o->len = len;
  o->seg = seg;
  k->tx.seg[seg].pat = k->tx_pat;
  k->tx_pat += len;
  sup_pattern(o->buf, len, k->tx.seg[seg].pat, pat_seed(i));
  int timeout = how >= 3 ? 1 + (int)pick(r, 3) : CPORT_NOWAIT;
  size_t sent = 0;
  cport_handle h = 0;
  int rc;
  if (o->kind == K_SENDMSG) {
    /* up to three iovecs over the buffer */
    size_t cut1 = pick(r, (unsigned)len), cut2 = cut1 + pick(r, (unsigned)(len - cut1));
    int n = 0;
    size_t cuts[4] = {0, cut1, cut2, len};
    for (int c = 0; c < 3; c++)
      if (cuts[c + 1] > cuts[c] || pick(r, 4) == 0) { /* empty iovecs too, now and then */
        o->iov[n].base = o->buf + cuts[c];
        o->iov[n++].len = cuts[c + 1] - cuts[c];
      }
    memset(&o->mh, 0, sizeof o->mh);
    o->mh.iov = o->iov;
    o->mh.iovcnt = n;
    rc = cport_sendmsg(k->s, &o->mh, 0, timeout, &sent, timeout == CPORT_NOWAIT ? &h : NULL);
  } else {
    rc = cport_send(k->s, o->buf, len, 0, timeout, &sent, timeout == CPORT_NOWAIT ? &h : NULL);
  }
  note(r, "%s(%d, %zu%s) = %s sent=%zu h=%llu", o->kind == K_SENDMSG ? "sendmsg" : "send", i, len,
       timeout == CPORT_NOWAIT ? "" : ", blocking", sup_rc_name(rc), sent, (unsigned long long)h);
  CHECK(r, sent <= len, "send of %zu reported %zu sent", len, sent);
  if (rc == CPORT_SELECT) { /* select mode: what went now is the segment */
    send_resolved(r, i, seg, sent);
    pended(r, o, rc, h, "send");
    o->seg = -1;
    return;
  }
  int pend = pended(r, o, rc, h, "send");
  if (!pend) {
    free(o->buf);
    o->buf = NULL;
  }
  if (pend) {
    CHECK(r, sent == 0, "a send that pends in completion mode reported %zu bytes already sent",
          sent);
    return;
  }
  if (rc == CPORT_OK)
    CHECK(r, sent == len || (r->select && timeout == CPORT_NOWAIT),
          "send of %zu done now with %zu (%s)", len, sent,
          r->select ? "a blocking send is whole" : "completion mode: whole");
  else if (rc == CPORT_ETIMEDOUT)
    CHECK(r, timeout != CPORT_NOWAIT, "a nowait send timed out");
  else
    check_stream_err(r, i, rc, 0, 0, "send");
  send_resolved(r, i, seg, sent);
}

/* A recv, recvmsg, recv_alloc, recv_multi or blocking recv. */
static void do_recv(fz_run *r, int i) {
  fz_sock *k = &r->sk[i];
  unsigned how = pick(r, 8); /* recv, recvmsg, recv_alloc, recv_multi, blocking x3, waitall */
  static const int kinds[8] = {K_RECV, K_RECVMSG, K_RECV_ALLOC, K_RECV_MULTI,
                               K_RECV, K_RECVMSG, K_RECV_ALLOC, K_RECV};
  int seg = seg_add(&k->rx);
  fz_op *o = op_new(r, i, kinds[how]);
  if (seg < 0 || !o) {
    if (seg >= 0) k->rx.n--;
    if (o) o->used = 0;
    return;
  }
  o->seg = seg;
  size_t len = 1 + pick(r, pick(r, 3) == 0 ? 40000 : 2000);
  unsigned flags = how == 7 || (how != 3 && pick(r, 8) == 0) ? CPORT_WAITALL : 0u;
  int timeout = how >= 4 && how <= 6 ? 1 + (int)pick(r, 3) : CPORT_NOWAIT;
  if (flags) len = 1 + pick(r, 64);
  size_t got = 0;
  cport_handle h = 0;
  void *abuf = NULL;
  cport_handle *hp = timeout == CPORT_NOWAIT ? &h : NULL;
  int rc;
  if (o->kind == K_RECV_MULTI) {
    rc = cport_recv_multi(k->s, &h);
  } else if (o->kind == K_RECV_ALLOC) {
    rc = cport_recv_alloc(k->s, flags, timeout, &abuf, &got, hp);
  } else {
    o->buf = (char *)malloc(len);
    o->len = len;
    if (o->kind == K_RECVMSG) {
      size_t cut = pick(r, (unsigned)len);
      int n = 0;
      if (cut > 0 || pick(r, 4) == 0) o->iov[n].base = o->buf, o->iov[n++].len = cut;
      o->iov[n].base = o->buf + cut, o->iov[n++].len = len - cut;
      memset(&o->mh, 0, sizeof o->mh);
      o->mh.iov = o->iov;
      o->mh.iovcnt = n;
      rc = cport_recvmsg(k->s, &o->mh, flags, timeout, &got, hp);
    } else {
      rc = cport_recv(k->s, o->buf, len, flags, timeout, &got, hp);
    }
  }
  if (o->kind == K_RECV_ALLOC) {
    cport_optval v;
    CHECK(r, cport_getopt(k->s, CPORT_LEVEL_OTP, CPORT_OPT_OTP_RCVBUF, &v) == CPORT_OK,
          "getopt otp.rcvbuf");
    o->len = (size_t)v.v.i;
  }
  static const char *names[] = {"?", "",     "",        "",           "",
                                "",  "recv", "recvmsg", "recv_alloc", "recv_multi"};
  note(r, "%s(%d, %zu%s%s) = %s got=%zu h=%llu", names[o->kind], i, o->len,
       flags ? ", waitall" : "", timeout == CPORT_NOWAIT ? "" : ", blocking", sup_rc_name(rc), got,
       (unsigned long long)h);
  if (o->kind != K_RECV_MULTI)
    CHECK(r, got <= o->len, "a recv of %zu reported %zu bytes", o->len, got);
  if (pended(r, o, rc, h, "recv")) {
    /* Completion mode: the message carries every byte. Select mode: a
     * waitall call may return what it read so far with CPORT_SELECT
     * (include/cport.h, cport_recv); the select handle carries nothing. */
    CHECK(r, (got == 0 && abuf == NULL) || (o->select && flags),
          "a recv that pends reported %zu bytes already received", got);
    CHECK(r, o->kind != K_RECV_ALLOC || (got > 0) == (abuf != NULL),
          "recv_alloc: %zu bytes with buffer %p", got, abuf);
    if (o->select) {
      o->seg = -1;
      recv_data(r, i, seg, o->kind == K_RECV_ALLOC ? abuf : o->buf, got, 1);
      cport_free(abuf);
    }
    return;
  }
  /* ended now: o left the model; its buffer holds what came */
  if (rc == CPORT_OK || rc == CPORT_ETIMEDOUT) {
    CHECK(r, rc == CPORT_OK || timeout != CPORT_NOWAIT, "a nowait recv timed out");
    if (rc == CPORT_OK && got == 0) check_eof(r, i, "recv");
    CHECK(r, o->kind != K_RECV_ALLOC || (got > 0) == (abuf != NULL),
          "recv_alloc: %zu bytes with buffer %p", got, abuf);
  } else {
    check_stream_err(r, i, rc, 1, o->kind == K_RECV_MULTI, "recv");
  }
  recv_data(r, i, seg, o->kind == K_RECV_ALLOC ? abuf : o->buf, got, 1);
  cport_free(abuf);
  free(o->buf);
  o->buf = NULL;
}

/* A datagram from one UDP socket to the other, or a recvfrom/recvmsg. */
static void do_udp(fz_run *r) {
  int i = pick_sock(r, SK_UDP);
  if (i < 0) return;
  int j = -1;
  for (int x = 0; x < MAX_SOCKS; x++)
    if (x != i && r->sk[x].used && r->sk[x].kind == SK_UDP) j = x;
  fz_sock *k = &r->sk[i];
  unsigned how = pick(r, 4); /* sendto, recvfrom, recvmsg, blocking recvfrom */
  cport_handle h = 0;
  int rc;
  if (how == 0) {
    if (j < 0 || r->ndgram == MAX_DGRAMS) return;
    fz_op *o = op_new(r, i, K_SENDTO);
    if (!o) return;
    size_t len = 8 + pick(r, 1200);
    o->buf = (char *)malloc(len);
    o->len = len;
    o->dgram = r->ndgram;
    r->dgram_len[r->ndgram] = len;
    dgram_fill(o->buf, len, r->ndgram++);
    size_t sent = 0;
    rc = cport_sendto(k->s, o->buf, len, 0, &r->sk[j].addr, CPORT_NOWAIT, &sent, &h);
    note(r, "sendto(%d -> %d, %zu) = %s sent=%zu", i, j, len, sup_rc_name(rc), sent);
    if (pended(r, o, rc, h, "sendto")) return;
    free(o->buf);
    CHECK(r, rc == CPORT_OK || rc == CPORT_ENOBUFS, "sendto: %s", sup_rc_name(rc));
    CHECK(r, rc != CPORT_OK || sent == len, "sendto of %zu sent %zu", len, sent);
    return;
  }
  fz_op *o = op_new(r, i, how == 2 ? K_RECVMSG_UDP : K_RECVFROM);
  if (!o) return;
  size_t len = 4 + pick(r, 1300);
  o->buf = (char *)malloc(len);
  o->len = len;
  int timeout = how == 3 ? 1 + (int)pick(r, 2) : CPORT_NOWAIT;
  cport_handle *hp = timeout == CPORT_NOWAIT ? &h : NULL;
  cport_recv_info info;
  memset(&info, 0, sizeof info);
  if (how == 2) {
    size_t cut = pick(r, (unsigned)len);
    int n = 0;
    if (cut > 0) o->iov[n].base = o->buf, o->iov[n++].len = cut;
    o->iov[n].base = o->buf + cut, o->iov[n++].len = len - cut;
    memset(&o->mh, 0, sizeof o->mh);
    o->mh.iov = o->iov;
    o->mh.iovcnt = n;
    rc = cport_recvmsg(k->s, &o->mh, 0, timeout, &info.bytes, hp);
    info.flags = o->mh.flags;
  } else {
    rc = cport_recvfrom(k->s, o->buf, len, 0, timeout, &info, hp);
  }
  note(r, "%s(%d, %zu%s) = %s got=%zu", how == 2 ? "recvmsg" : "recvfrom", i, len,
       timeout == CPORT_NOWAIT ? "" : ", blocking", sup_rc_name(rc), info.bytes);
  if (pended(r, o, rc, h, "datagram recv")) return;
  if (rc == CPORT_EALREADY)
    CHECK(r, already_ok(r, i, 1, 0), "datagram recv: CPORT_EALREADY with nothing pending");
  else if (rc == CPORT_OK)
    dgram_check(r, i, o->buf, info.bytes, len, info.flags, "datagram recv");
  else
    CHECK(r, rc == CPORT_ETIMEDOUT && timeout != CPORT_NOWAIT, "datagram recv: %s",
          sup_rc_name(rc));
  free(o->buf);
}

/* A random pending op of the model, or -1. */
static int pick_op(fz_run *r) {
  int cand[MAX_OPS], n = 0;
  for (int i = 0; i < MAX_OPS; i++)
    if (r->op[i].used && r->op[i].cancelled != 2) cand[n++] = i;
  return n ? cand[pick(r, (unsigned)n)] : -1;
}

/* Cancel: a pending handle (OK, or CPORT_ENOTFOUND if it ended and its
 * message waits in a queue), an ended one or one cancelled silently
 * (CPORT_ENOTFOUND), one of a closed socket (CPORT_EBADF). */
static void do_cancel(fz_run *r) {
  int x = pick_op(r);
  if (x < 0) return;
  fz_op *o = &r->op[x];
  fz_sock *k = &r->sk[o->sock];
  int rc = cport_cancel(k->s, o->h);
  note(r, "cancel(%d, h=%llu%s) = %s", o->sock, (unsigned long long)o->h,
       o->select ? " select" : "", sup_rc_name(rc));
  if (!k->open) {
    check_closed(r, o->sock, rc, "cancel");
    return;
  }
  CHECK(r, rc == CPORT_OK || rc == CPORT_ENOTFOUND, "cancel of a pending handle: %s",
        sup_rc_name(rc));
  if (rc != CPORT_OK) return;
  if (o->select && !is_multi(o->kind)) {
    o->cancelled = 2; /* rule 2's exception: no message may follow */
    /* kept in the model until the end of the run, to catch a late one */
    fz_sock *ks = k;
    if (is_read_kind(o->kind))
      ks->reads_select--;
    else
      ks->writes_select--;
    o->select = 0;
    if (o->kind == K_CONNECT) k->connecting = 0; /* abandoned: the socket stays unused */
    int rc2 = cport_cancel(k->s, o->h);
    CHECK(r, rc2 == CPORT_ENOTFOUND, "a second cancel of a select handle: %s", sup_rc_name(rc2));
    rc2 = cport_deadline(k->s, o->h, 1);
    note(r, "deadline(%d, h=%llu, 1) = %s", o->sock, (unsigned long long)o->h, sup_rc_name(rc2));
    CHECK(r, rc2 == CPORT_ENOTFOUND, "a deadline on a select handle cancelled with CPORT_OK: %s",
          sup_rc_name(rc2));
  } else {
    o->cancelled = 1;
  }
}

/* A deadline on a pending handle, soon or removed. */
static void do_deadline(fz_run *r) {
  int x = pick_op(r);
  if (x < 0) return;
  fz_op *o = &r->op[x];
  fz_sock *k = &r->sk[o->sock];
  int ms = pick(r, 4) == 0 ? CPORT_INFINITY : (int)pick(r, 4);
  int rc = cport_deadline(k->s, o->h, ms);
  note(r, "deadline(%d, h=%llu, %d) = %s", o->sock, (unsigned long long)o->h, ms, sup_rc_name(rc));
  if (!k->open) {
    check_closed(r, o->sock, rc, "deadline");
    return;
  }
  CHECK(r, rc == CPORT_OK || rc == CPORT_ENOTFOUND, "deadline on a pending handle: %s",
        sup_rc_name(rc));
  if (rc == CPORT_OK && ms != CPORT_INFINITY) o->deadline = 1;
}

/* Close or close_async; the pending ops end with ECLOSED or their result. */
static void do_close(fz_run *r, int i, int async) {
  fz_sock *k = &r->sk[i];
  int rc;
  if (async) {
    rc = cport_close_async(k->s, &k->close_h);
    k->close_async = rc == CPORT_OK;
  } else {
    rc = cport_close(k->s);
  }
  note(r, "%s(%d) = %s", async ? "close_async" : "close", i, sup_rc_name(rc));
  CHECK(r, rc == CPORT_OK, "close of an open socket: %s", sup_rc_name(rc));
  k->open = 0;
  k->connect_ready = 0;
  if (k->peer >= 0) r->sk[k->peer].troubled = 1;
  /* the socket is gone at once */
  size_t n;
  cport_handle h;
  check_closed(r, i, cport_send(k->s, "x", 1, 0, CPORT_NOWAIT, &n, &h), "send");
  check_closed(r, i, cport_shutdown(k->s, CPORT_SHUT_WR), "shutdown");
  check_closed(r, i, cport_close(k->s), "close");
}

static void do_shutdown(fz_run *r, int i) {
  fz_sock *k = &r->sk[i];
  int how = 1 + (int)pick(r, 3);
  int rc = cport_shutdown(k->s, how);
  note(r, "shutdown(%d, %d) = %s", i, how, sup_rc_name(rc));
  CHECK(r, rc == CPORT_OK || (rc == CPORT_ENOTCONN && k->troubled), "shutdown: %s",
        sup_rc_name(rc));
  if (how & CPORT_SHUT_RD) k->shut_rd = 1;
  if (how & CPORT_SHUT_WR) k->shut_wr = 1;
  trouble(r, i);
}

/* Options: the owner (messages of pending handles may go to either queue
 * from now), otp.rcvbuf, otp.meta, tcp.nodelay, and a read back. */
static void do_option(fz_run *r, int i) {
  fz_sock *k = &r->sk[i];
  cport_optval v;
  memset(&v, 0, sizeof v);
  unsigned what = pick(r, 4);
  int rc;
  if (what == 0) {
    int to = 1 - k->owner;
    v.type = CPORT_VAL_QUEUE;
    v.v.queue = r->q[to];
    rc = cport_setopt(k->s, CPORT_LEVEL_OTP, CPORT_OPT_OTP_OWNER, &v);
    note(r, "setopt(%d, owner q%d) = %s", i, to, sup_rc_name(rc));
    CHECK(r, rc == CPORT_OK, "setopt owner: %s", sup_rc_name(rc));
    k->owner = to;
    k->owner_changed = 1;
    /* What the old owner holds was delivered before the change: read it
     * now, so that every message of the socket is read in the order it was
     * delivered (rules 5 and 15 stay visible across the change). */
    while (pump(r, 1 - to, CPORT_NOWAIT) > 0) {
    }
    for (int x = 0; x < MAX_OPS; x++)
      if (r->op[x].used && r->op[x].sock == i) r->op[x].owners |= 1u << to;
    CHECK(r,
          cport_getopt(k->s, CPORT_LEVEL_OTP, CPORT_OPT_OTP_OWNER, &v) == CPORT_OK &&
              v.v.queue == r->q[to],
          "getopt owner after setopt");
  } else if (what == 1) {
    v.type = CPORT_VAL_INT;
    v.v.i = 1 + (int)pick(r, 20000);
    rc = cport_setopt(k->s, CPORT_LEVEL_OTP, CPORT_OPT_OTP_RCVBUF, &v);
    note(r, "setopt(%d, otp.rcvbuf %d) = %s", i, v.v.i, sup_rc_name(rc));
    CHECK(r, rc == CPORT_OK, "setopt otp.rcvbuf: %s", sup_rc_name(rc));
  } else if (what == 2 && k->kind == SK_STREAM && pick(r, 2)) {
    v.type = CPORT_VAL_INT;
    v.v.i = 1 + (int)pick(r, 4);
    rc = cport_setopt(k->s, CPORT_LEVEL_OTP, CPORT_OPT_OTP_RCV_OUTSTANDING, &v);
    note(r, "setopt(%d, otp.rcv_outstanding %d) = %s", i, v.v.i, sup_rc_name(rc));
    CHECK(r, rc == CPORT_OK, "setopt otp.rcv_outstanding: %s", sup_rc_name(rc));
  } else if (what == 2) {
    v.type = CPORT_VAL_PTR;
    v.v.ptr = &r->sk[i];
    rc = cport_setopt(k->s, CPORT_LEVEL_OTP, CPORT_OPT_OTP_META, &v);
    note(r, "setopt(%d, otp.meta) = %s", i, sup_rc_name(rc));
    k->meta_set = 1;
    CHECK(r, rc == CPORT_OK, "setopt otp.meta: %s", sup_rc_name(rc));
  } else if (k->kind == SK_STREAM) {
    v.type = CPORT_VAL_BOOL;
    v.v.b = (int)pick(r, 2);
    rc = cport_setopt(k->s, CPORT_LEVEL_TCP, CPORT_OPT_TCP_NODELAY, &v);
    note(r, "setopt(%d, tcp.nodelay %d) = %s", i, v.v.b, sup_rc_name(rc));
    CHECK(r, rc == CPORT_OK || (rc == CPORT_EINVAL && k->troubled), "setopt tcp.nodelay: %s",
          sup_rc_name(rc));
  }
}

/* Calls on what no longer exists: a closed socket, a forged one. */
static void do_stale(fz_run *r) {
  int cand[MAX_SOCKS], n = 0;
  for (int i = 0; i < MAX_SOCKS; i++)
    if (r->sk[i].used && !r->sk[i].open) cand[n++] = i;
  cport_socket s = n ? r->sk[cand[pick(r, (unsigned)n)]].s : (cport_socket)0xdead00000017ull;
  char buf[8];
  size_t got;
  cport_handle h;
  cport_info info;
  int rc = cport_recv(s, buf, sizeof buf, 0, CPORT_NOWAIT, &got, &h);
  note(r, "stale calls on %#llx", (unsigned long long)s);
  CHECK(r, rc == CPORT_EBADF, "recv on a stale socket: %s", sup_rc_name(rc));
  rc = cport_cancel(s, 1);
  CHECK(r, rc == CPORT_EBADF, "cancel on a stale socket: %s", sup_rc_name(rc));
  rc = cport_deadline(s, 1, 5);
  CHECK(r, rc == CPORT_EBADF, "deadline on a stale socket: %s", sup_rc_name(rc));
  rc = cport_info_get(s, &info);
  CHECK(r, rc == CPORT_EBADF, "info on a stale socket: %s", sup_rc_name(rc));
  rc = cport_close_async(s, &h);
  CHECK(r, rc == CPORT_EBADF, "close_async on a stale socket: %s", sup_rc_name(rc));
  /* a handle that ended: CPORT_ENOTFOUND (CPORT_EBADF once its socket closed) */
  if (r->nended > 0) {
    int e = (int)pick(r, r->nended < 16 ? (unsigned)r->nended : 16u);
    fz_sock *k = &r->sk[r->ended[e].sock];
    cport_handle eh = r->ended[e].h;
    if (!op_find(r, k->s, eh)) {
      int want = k->open ? CPORT_ENOTFOUND : CPORT_EBADF;
      rc = cport_cancel(k->s, eh);
      note(r, "cancel(%d, ended h=%llu) = %s", r->ended[e].sock, (unsigned long long)eh,
           sup_rc_name(rc));
      CHECK(r, rc == want, "cancel of an ended handle: %s, expected %s", sup_rc_name(rc),
            sup_rc_name(want));
      rc = cport_deadline(k->s, eh, 1);
      CHECK(r, rc == want, "deadline on an ended handle: %s, expected %s", sup_rc_name(rc),
            sup_rc_name(want));
    }
  }
  /* a live socket, a handle that never was */
  int i = pick_sock(r, 0);
  if (i >= 0) {
    rc = cport_cancel(r->sk[i].s, 0x7fffffff00ull + pick(r, 100));
    CHECK(r, rc == CPORT_ENOTFOUND, "cancel of a handle that never was: %s", sup_rc_name(rc));
  }
}

/* ======================================================================== */
/* A run                                                                    */
/* ======================================================================== */

/* One call, chosen at random. */
static void step(fz_run *r) {
  unsigned what = pick(r, 100);
  int i;
  r->calls++;
  if (what < 18) {
    if ((i = pick_stream(r)) >= 0 && ops_free(r) > 4) do_send(r, i);
  } else if (what < 38) {
    if ((i = pick_stream(r)) >= 0 && ops_free(r) > 4) do_recv(r, i);
  } else if (what < 46) {
    if (ops_free(r) > 4) do_udp(r);
  } else if (what < 50) {
    if (ops_free(r) > 4) do_accept(r);
  } else if (what < 53) {
    if (ops_free(r) > 4) open_client(r);
  } else if (what < 56) {
    connect_again(r);
  } else if (what < 62) {
    do_cancel(r);
  } else if (what < 66) {
    do_deadline(r);
  } else if (what < 69) {
    if ((i = pick_sock(r, SK_STREAM)) >= 0) do_close(r, i, (int)pick(r, 2));
  } else if (what < 71) {
    if ((i = pick_stream(r)) >= 0) do_shutdown(r, i);
  } else if (what < 75) {
    if ((i = pick_sock(r, 0)) >= 0) do_option(r, i);
  } else if (what < 78) {
    int qi = (int)pick(r, 2);
    int rc = cport_post(r->q[qi], r->posted[qi], NULL);
    note(r, "post(q%d, %llu) = %s", qi, (unsigned long long)r->posted[qi], sup_rc_name(rc));
    CHECK(r, rc == CPORT_OK, "post: %s", sup_rc_name(rc));
    r->posted[qi]++;
  } else if (what < 79 && r->nheld > 0) {
    int x = (int)pick(r, (unsigned)r->nheld);
    note(r, "free(a recv_multi chunk, %d held)", r->nheld);
    cport_free(r->held[x]);
    r->held[x] = r->held[--r->nheld];
  } else if (what < 80) {
    do_stale(r);
  } else {
    int qi = (int)pick(r, 2);
    int timeout = pick(r, 3) == 0 ? 1 : CPORT_NOWAIT;
    int n = pump(r, qi, timeout);
    note(r, "wait(q%d, %d) = %d", qi, timeout, n);
  }
}

/* Everything still open is closed, then every handle must end, every close
 * message come, every user message arrive; then nothing more. */
static void teardown(fz_run *r) {
  uint64_t until = sup_now_ms() + DRAIN_MS;
  r->draining = 1;
  for (;;) {
    /* every socket, those an accept handed over meanwhile too */
    for (int i = 0; i < MAX_SOCKS; i++)
      if (r->sk[i].used && r->sk[i].open) do_close(r, i, (int)pick(r, 2));
    int left = 0;
    for (int x = 0; x < MAX_OPS; x++) left += r->op[x].used && r->op[x].cancelled != 2;
    for (int i = 0; i < MAX_SOCKS; i++) left += r->sk[i].close_async && !r->sk[i].close_seen;
    for (int qi = 0; qi < 2; qi++) left += r->taken[qi] != r->posted[qi];
    if (!left) break;
    if (sup_now_ms() > until) {
      for (int x = 0; x < MAX_OPS; x++)
        if (r->op[x].used && r->op[x].cancelled != 2)
          violation(r, "handle %llu (kind %d) of socket %d never ended",
                    (unsigned long long)r->op[x].h, r->op[x].kind, r->op[x].sock);
      violation(r, "a close message or a user message never came");
    }
    pump(r, 0, CPORT_NOWAIT);
    pump(r, 1, 1);
  }
  /* late messages: a select handle cancelled with CPORT_OK, a duplicate */
  pump(r, 0, 1);
  pump(r, 1, CPORT_NOWAIT);
  for (int i = 0; i < MAX_SOCKS; i++) {
    if (!r->sk[i].used) continue;
    verify(r, i);
    fz_dir *d = &r->sk[i].rx;
    for (int s = 0; s < d->n; s++) free(d->seg[s].data);
  }
  for (int x = 0; x < MAX_OPS; x++)
    if (r->op[x].used) free(r->op[x].buf);
  while (r->nheld > 0) cport_free(r->held[--r->nheld]);
  CHECK(r, cport_queue_destroy(r->q[1]) == CPORT_OK, "queue_destroy");
  CHECK(r, cport_queue_destroy(r->q[0]) == CPORT_OK, "queue_destroy");
  cport_ctx_destroy(r->ctx);
}

/* The pool every run starts with: a listener, a connected pair, two UDP
 * sockets, on two queues. */
static void setup(fz_run *r) {
  cport_ctx_options opts;
  memset(&opts, 0, sizeof opts);
  opts.backend = r->backend;
  opts.single_thread = getenv("CPORT_TEST_SINGLE_THREAD") != NULL; /* the *.single variant */
  CHECK(r, cport_ctx_create(&r->ctx, &opts) == CPORT_OK, "ctx_create");
  CHECK(r, cport_queue_create(r->ctx, &r->q[0]) == CPORT_OK, "queue_create");
  CHECK(r, cport_queue_create(r->ctx, &r->q[1]) == CPORT_OK, "queue_create");
  unsigned mode = r->select ? CPORT_OPEN_SELECT : 0u;
  cport_socket s;
  CHECK(r, cport_open(r->q[0], CPORT_AF_INET, CPORT_SOCK_STREAM, mode, &s) == CPORT_OK, "open");
  r->listener = sock_new(r, s, SK_LISTENER, 0);
  fz_sock *l = &r->sk[r->listener];
  l->addr = sup_loopback(CPORT_AF_INET, 0);
  CHECK(r, cport_bind(s, &l->addr) == CPORT_OK, "bind");
  CHECK(r, cport_listen(s, 0) == CPORT_OK, "listen");
  CHECK(r, cport_sockname(s, &l->addr) == CPORT_OK, "sockname");
  for (int u = 0; u < 2; u++) {
    CHECK(r, cport_open(r->q[u], CPORT_AF_INET, CPORT_SOCK_DGRAM, mode, &s) == CPORT_OK, "open");
    int i = sock_new(r, s, SK_UDP, u);
    r->sk[i].addr = sup_loopback(CPORT_AF_INET, 0);
    CHECK(r, cport_bind(s, &r->sk[i].addr) == CPORT_OK, "bind udp");
    CHECK(r, cport_sockname(s, &r->sk[i].addr) == CPORT_OK, "sockname udp");
  }
  /* a first pair, with small kernel buffers so that sends pend */
  int c = open_client(r);
  if (c >= 0 && pick(r, 2)) {
    cport_optval v;
    v.type = CPORT_VAL_INT;
    v.v.i = 4096;
    cport_setopt(r->sk[c].s, CPORT_LEVEL_SOCKET, CPORT_OPT_SOCKET_SNDBUF, &v);
  }
  do_accept(r);
}

static void run_one(fz_run *r) {
  note(r, "run %d: seed %llu", r->run, (unsigned long long)r->seed);
  setup(r);
  for (int n = 0; n < g_len && !r->exhausted; n++) step(r);
  teardown(r);
}

/* ======================================================================== */
/* Entry points                                                             */
/* ======================================================================== */

static fz_run g_run; /* large: static */

#ifdef CPORT_API_FUZZ_LIBFUZZER
/* libFuzzer: the first byte picks the backend and mode, the rest every
 * choice of one run. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  fz_run *r = &g_run;
  memset(r, 0, sizeof *r);
  r->backend = (data[0] & 1) && cport_backend_available(CPORT_BACKEND_IO_URING)
                   ? CPORT_BACKEND_IO_URING
                   : CPORT_BACKEND_EPOLL;
  r->select = (data[0] >> 1) & 1;
  r->in = data + 1;
  r->in_len = size - 1;
  g_len = 200;
  run_one(r);
  return 0;
}
#else
static uint64_t g_seed = 1;
static int g_runs = 300, g_only = -1;

static void test_api_fuzz(void **state) {
  (void)state;
  uint64_t t0 = sup_now_ms();
  int first = g_only >= 0 ? g_only : 0, last = g_only >= 0 ? g_only + 1 : g_runs;
  for (int run = first; run < last; run++) {
    fz_run *r = &g_run;
    memset(r, 0, sizeof *r);
    r->seed = g_seed;
    r->run = run;
    r->select = sup_select_mode();
    r->backend = sup_backend();
    r->rng = g_seed * 0x100000001b3ull + (uint64_t)run;
    run_one(r);
  }
  printf("api_fuzz %s/%s: %d runs of %d calls (seed %llu) in %llu ms, no violation\n",
         cport_backend_name(sup_backend()), sup_mode_name(), last - first, g_len,
         (unsigned long long)g_seed, (unsigned long long)(sup_now_ms() - t0));
}

int main(int argc, char **argv) {
  char *rest[16];
  int nrest = 0;
  g_prog = argv[0];
  /* our options; the rest (--backend, --mode, --filter) go to the harness */
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 < argc && !strcmp(a, "--seed"))
      g_seed = strtoull(argv[++i], NULL, 0);
    else if (i + 1 < argc && !strcmp(a, "--runs"))
      g_runs = atoi(argv[++i]);
    else if (i + 1 < argc && !strcmp(a, "--len"))
      g_len = atoi(argv[++i]);
    else if (i + 1 < argc && !strcmp(a, "--run"))
      g_only = atoi(argv[++i]);
    else if (nrest < 16)
      rest[nrest++] = argv[i];
  }
  int rc = sup_parse_args(nrest, rest);
  if (rc != 0) return rc;
  if (sup_backend() == CPORT_BACKEND_AUTO) {
    fprintf(stderr, "api_fuzz: name a backend\n");
    return 2;
  }
  static const struct CMUnitTest tests[] = {cmocka_unit_test(test_api_fuzz)};
  return _cmocka_run_group_tests(sup_group_name("api_fuzz"), tests, 1, NULL, NULL);
}
#endif
