/*
 * loadgen: a load generator for TCP echo servers, in plain C on raw epoll
 * (no library), single-threaded. It checks every echoed byte against a
 * deterministic pattern and prints ONE result line of key=value pairs.
 *
 *   loadgen --port N [--host 127.0.0.1] --mode pingpong|stream|connect|idle|http
 *           [--conns C] [--size S] [--secs D] [--msgs N] [--window W]
 *           [--timeout T] [--quickack 0|1] [--tls CAFILE [--ciphersuites LIST]]
 *
 * --timeout: fail when nothing is echoed for T seconds (default 10).
 * --quickack 1: TCP_QUICKACK after every recv (default off).
 * --tls CAFILE: every connection is TLS (OpenSSL 3, non-blocking, on the
 *           same epoll loop): after the TCP connect a full handshake
 *           (TLS 1.3 only, the server's chain checked against CAFILE, no
 *           session resumption), then the mode's bytes as plaintext. The
 *           mode's bytes are still counted and checked after decryption;
 *           a connection ends with a close_notify (SSL_shutdown, once)
 *           before close. --ciphersuites pins the TLS 1.3 suites
 *           (default TLS_AES_256_GCM_SHA384, OpenSSL 3's first choice).
 *           With --mode connect a message is a whole connect, handshake,
 *           echo, close_notify, close cycle (handshakes per second).
 *           Only when built with OpenSSL (LOADGEN_TLS).
 *
 * Modes:
 *   pingpong  C connections; each sends an S-byte message, waits for the
 *             whole echo, repeats. Runs D seconds, or until N round trips
 *             were started (whichever comes first; N = 0: no cap).
 *             A message is one round trip; latency is send-to-whole-echo.
 *   stream    C connections, each keeping W bytes in flight, sent in S-byte
 *             chunks. A message is one S-byte chunk echoed back; latency is
 *             from the chunk's last byte sent to its last byte echoed.
 *   connect   C concurrent loops of: connect, send S bytes, read the echo,
 *             close. A message is one such cycle; latency is the cycle.
 *   idle      open C connections, hold them D seconds (no byte may arrive
 *             and none may close), then check each still echoes one byte.
 *             A message is one connection's one-byte echo; latency is that
 *             echo's round trip.
 *   http      for HTTP servers (examples/http_hello.c): C keep-alive
 *             connections; each sends "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
 *             waits for the whole response, repeats (as wrk does, one request
 *             in flight per connection). Each response is checked: status
 *             line "HTTP/1.1 200 ", a Content-Length header, and a body that
 *             is exactly "Hello, World!"; other headers may be anything. A
 *             message is one request; latency is request sent to response
 *             complete. --size is ignored (size= reports the request length);
 *             bytes= counts response bytes.
 *
 * Result line (stdout), always printed:
 *   mode= conns= size= msgs= bytes= secs= msgs_per_sec= p50_us= p99_us=
 *   window= client_cpu_ms= errors= ok=
 * bytes counts echoed bytes (http: response bytes) received and verified;
 * secs is the measured phase (after all connections are up, for
 * pingpong/stream/idle the whole hold-and-echo phase).
 *
 * Exit status: 0 all good; 1 a byte mismatch, a failed or dropped
 * connection, or a stall longer than --timeout seconds; 2 bad usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#ifdef LOADGEN_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

/* ------------------------------------------------------------------------ */
/* Pattern: a pseudo-random table of prime length, stored with a tail so any  */
/* MAX_IO-byte slice is contiguous. Connection i's stream byte k is           */
/* table[(seed_i + k) % PAT_LEN].                                            */
/* ------------------------------------------------------------------------ */

#define PAT_LEN 65521u
#define MAX_IO 65536u
static unsigned char g_pat[PAT_LEN + MAX_IO];

static void pattern_init(void) {
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (unsigned i = 0; i < PAT_LEN; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    g_pat[i] = (unsigned char)(x >> 24);
  }
  for (unsigned i = 0; i < MAX_IO; i++) g_pat[PAT_LEN + i] = g_pat[i];
}

static const unsigned char *pattern_at(uint32_t seed, uint64_t pos) {
  return &g_pat[(seed + pos) % PAT_LEN];
}

/* http mode: the request, repeated so that any MAX_IO-byte slice of the
 * request stream is contiguous (stream byte k is HTTP_REQ[k % HTTP_REQ_LEN]),
 * and what every response must carry. */
#define HTTP_REQ "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
#define HTTP_REQ_LEN (sizeof HTTP_REQ - 1)
#define HTTP_STATUS "HTTP/1.1 200 "
#define HTTP_BODY "Hello, World!"
#define HTTP_HDR_MAX 1024 /* a response's status line and headers, at most */
static unsigned char g_req[(MAX_IO / HTTP_REQ_LEN + 2) * HTTP_REQ_LEN];

static void http_init(void) {
  for (size_t i = 0; i + HTTP_REQ_LEN <= sizeof g_req; i += HTTP_REQ_LEN)
    memcpy(g_req + i, HTTP_REQ, HTTP_REQ_LEN);
}

/* ------------------------------------------------------------------------ */
/* Clock and latency histogram (log-linear, 64 sub-buckets: ~1.6% error)     */
/* ------------------------------------------------------------------------ */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#define SUB_BITS 6u
#define SUB (1u << SUB_BITS)
#define NBUCKETS ((64u - SUB_BITS + 1u) * SUB)
static uint64_t g_hist[NBUCKETS];
static uint64_t g_hist_n;

static unsigned bucket_of(uint64_t v) {
  if (v < SUB) return (unsigned)v;
  unsigned msb = 63u - (unsigned)__builtin_clzll(v);
  unsigned shift = msb - SUB_BITS;
  return (msb - SUB_BITS + 1u) * SUB + (unsigned)((v >> shift) & (SUB - 1u));
}

static double bucket_mid(unsigned b) {
  if (b < 2 * SUB) return (double)b;
  unsigned msb = b / SUB + SUB_BITS - 1u;
  unsigned shift = msb - SUB_BITS;
  double base = (double)((uint64_t)(SUB + b % SUB) << shift);
  return base + (double)(1ull << shift) / 2.0;
}

static void hist_add(uint64_t ns) {
  g_hist[bucket_of(ns)]++;
  g_hist_n++;
}

static double hist_pct_us(double p) {
  if (g_hist_n == 0) return 0.0;
  uint64_t want = (uint64_t)(p * (double)g_hist_n + 0.999999);
  if (want == 0) want = 1;
  uint64_t cum = 0;
  for (unsigned b = 0; b < NBUCKETS; b++) {
    cum += g_hist[b];
    if (cum >= want) return bucket_mid(b) / 1000.0;
  }
  return 0.0;
}

/* ------------------------------------------------------------------------ */
/* Options and global state                                                 */
/* ------------------------------------------------------------------------ */

enum mode { M_PINGPONG, M_STREAM, M_CONNECT, M_IDLE, M_HTTP };
static const char *const mode_names[] = {"pingpong", "stream", "connect", "idle", "http"};
#define N_MODES 5

static struct {
  enum mode mode;
  const char *host;
  int port;
  int conns;
  size_t size;
  double secs;
  uint64_t max_msgs;
  size_t window;
  double timeout;
  int quickack;             /* TCP_QUICKACK after every recv */
  const char *tls_ca;       /* --tls: TLS, trusting these roots */
  const char *ciphersuites; /* --ciphersuites */
} o = {M_PINGPONG, "127.0.0.1", 0, 1, 64, 5.0, 0, 0, 10.0, 0, NULL, "TLS_AES_256_GCM_SHA384"};

static struct sockaddr_in g_addr;
static int g_ep = -1;
static int g_errors;
static uint64_t g_msgs, g_bytes, g_started;
static int g_stopping;           /* no new messages/cycles are started */
static uint64_t g_last_progress; /* ns */
static int g_holding;            /* idle hold: silence is expected */
static unsigned char g_rbuf[MAX_IO];

static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "loadgen: ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  g_errors++;
}

enum cstate { C_FREE, C_CONNECTING, C_HANDSHAKE, C_ACTIVE, C_IDLE, C_DONE };

typedef struct conn {
  int fd;
  uint32_t idx;
  uint32_t gen;
  uint32_t seed;
  enum cstate state;
  uint32_t events;  /* registered epoll events */
  uint64_t sent;    /* stream position of bytes sent */
  uint64_t rcvd;    /* stream position of bytes echoed and verified */
  uint64_t target;  /* pingpong/connect/idle: end of the current message */
  uint64_t t_start; /* ns: start of the current message / cycle */
  uint64_t cycles;  /* connect: cycles done by this slot */
  /* stream: chunks sent and not yet echoed (end position, time) */
  uint64_t *ch_end, *ch_t;
  unsigned ch_head, ch_count, ch_cap;
  /* http: the response being read: its head (status line and headers) so
   * far, or, once the head is whole, the body bytes still to come */
  char *hdr;
  unsigned hlen;
  int in_body;
  uint64_t body_pos, body_len;
  uint64_t responses; /* whole responses received and checked */
#ifdef LOADGEN_TLS
  SSL *ssl; /* --tls: the connection's TLS, or NULL */
#endif
} conn;

static conn *g_conns;

static uint64_t key_of(const conn *c) { return (uint64_t)c->idx << 32 | c->gen; }

static void set_events(conn *c, uint32_t ev) {
  if (ev == c->events) return;
  struct epoll_event e = {.events = ev, .data.u64 = key_of(c)};
  if (epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &e) != 0) fail("epoll_ctl: %s", strerror(errno));
  c->events = ev;
}

#ifdef LOADGEN_TLS
static SSL_CTX *g_tls;
static char g_tls_cipher[64]; /* what the first handshake negotiated */

/* The error of an SSL call that returned r: 0 for "wait" (WANT_READ or
 * WANT_WRITE, *ev the epoll event to wait for), else SSL's error code. */
static int tls_err(conn *c, int r, uint32_t *ev) {
  int e = SSL_get_error(c->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    if (ev) *ev = e == SSL_ERROR_WANT_WRITE ? EPOLLIN | EPOLLOUT : EPOLLIN;
    return 0;
  }
  return e;
}

static void tls_fail(conn *c, const char *what, int e) {
  unsigned long q = ERR_get_error();
  char buf[256] = "";
  if (q) ERR_error_string_n(q, buf, sizeof buf);
  fail("conn %u: %s: SSL error %d%s%s%s", c->idx, what, e, q ? " (" : "", buf, q ? ")" : "");
  ERR_clear_error();
}
#endif

static void conn_close(conn *c, enum cstate st) {
#ifdef LOADGEN_TLS
  if (c->ssl) {
    if (SSL_is_init_finished(c->ssl)) SSL_shutdown(c->ssl); /* our close_notify, once */
    ERR_clear_error();
    SSL_free(c->ssl);
    c->ssl = NULL;
  }
#endif
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  c->events = 0;
  c->state = st;
  c->gen++;
}

/* Starts a non-blocking connect on slot c. */
static int conn_open(conn *c) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fail("socket: %s", strerror(errno));
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c->fd = fd;
  c->gen++;
  c->sent = c->rcvd = c->target = 0;
  c->ch_head = c->ch_count = 0;
  c->hlen = 0;
  c->in_body = 0;
  c->responses = 0;
  c->seed = (uint32_t)((c->idx * 7919ull + c->cycles * 104729ull) % PAT_LEN);
  c->t_start = now_ns();
  c->state = C_CONNECTING;
  c->events = EPOLLOUT | EPOLLIN;
  struct epoll_event e = {.events = c->events, .data.u64 = key_of(c)};
  if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &e) != 0) {
    fail("epoll_ctl add: %s", strerror(errno));
    return -1;
  }
#ifdef LOADGEN_TLS
  if (g_tls) {
    c->ssl = SSL_new(g_tls);
    if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
      tls_fail(c, "SSL_new", 0);
      conn_close(c, C_DONE);
      return -1;
    }
    SSL_set_connect_state(c->ssl);
  }
#endif
  if (connect(fd, (struct sockaddr *)&g_addr, sizeof g_addr) != 0 && errno != EINPROGRESS) {
    fail("connect (conn %u): %s", c->idx, strerror(errno));
    conn_close(c, C_DONE);
    return -1;
  }
  return 0;
}

/* The connect finished (EPOLLOUT): 0 if it succeeded. */
static int conn_connected(conn *c) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) {
    fail("connect (conn %u): %s", c->idx, strerror(err));
    conn_close(c, C_DONE);
    return -1;
  }
  return 0;
}

/* Sends up to n more pattern bytes. Returns bytes sent (may be short when
 * the socket is full), or -1 on error. */
static ssize_t send_pattern(conn *c, size_t n) {
  size_t done = 0;
  while (done < n) {
    size_t len = n - done;
    if (len > MAX_IO) len = MAX_IO;
    const unsigned char *src =
        o.mode == M_HTTP ? &g_req[c->sent % HTTP_REQ_LEN] : pattern_at(c->seed, c->sent);
    ssize_t k;
#ifdef LOADGEN_TLS
    if (c->ssl) {
      int r = SSL_write(c->ssl, src, (int)len);
      if (r > 0) {
        c->sent += (uint64_t)r;
        done += (size_t)r;
        continue;
      }
      int e = tls_err(c, r, NULL);
      if (e == 0) break; /* the caller waits for EPOLLOUT while a send is short */
      tls_fail(c, "SSL_write", e);
      return -1;
    }
#endif
    k = send(c->fd, src, len, MSG_NOSIGNAL);
    if (k > 0) {
      c->sent += (uint64_t)k;
      done += (size_t)k;
      continue;
    }
    if (k < 0 && errno == EINTR) continue;
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    fail("send (conn %u): %s", c->idx, k < 0 ? strerror(errno) : "sent 0");
    return -1;
  }
  return (ssize_t)done;
}

/* http: the head of a response is whole (it ends with an empty line):
 * check its status line and find its Content-Length. Returns 0 or -1. */
static int http_head(conn *c) {
  c->hdr[c->hlen] = '\0';
  if (strncmp(c->hdr, HTTP_STATUS, strlen(HTTP_STATUS)) != 0) {
    fail("conn %u: response %" PRIu64 ": bad status line: %.*s", c->idx, c->responses + 1,
         (int)strcspn(c->hdr, "\r\n"), c->hdr);
    return -1;
  }
  for (const char *line = strstr(c->hdr, "\r\n"); line && line[2] != '\r';
       line = strstr(line + 2, "\r\n")) {
    if (strncasecmp(line + 2, "content-length:", 15) == 0) {
      c->body_len = strtoull(line + 17, NULL, 10);
      c->body_pos = 0;
      c->in_body = 1;
      c->hlen = 0;
      if (c->body_len == strlen(HTTP_BODY)) return 0;
      fail("conn %u: Content-Length %" PRIu64 ", want %zu", c->idx, c->body_len, strlen(HTTP_BODY));
      return -1;
    }
  }
  fail("conn %u: response %" PRIu64 " has no Content-Length", c->idx, c->responses + 1);
  return -1;
}

/* http: consumes n response bytes: heads are collected and checked, bodies
 * compared with HTTP_BODY. Returns 0, or -1 on a bad response or one no
 * request asked for. */
static int http_consume(conn *c, const unsigned char *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (c->responses >= c->sent / HTTP_REQ_LEN) {
      fail("conn %u: %zu bytes more than the responses to %" PRIu64 " requests", c->idx, n - i,
           c->sent / HTTP_REQ_LEN);
      return -1;
    }
    if (!c->in_body) {
      if (c->hlen == HTTP_HDR_MAX - 1) {
        fail("conn %u: response head longer than %d bytes", c->idx, HTTP_HDR_MAX - 1);
        return -1;
      }
      c->hdr[c->hlen++] = (char)p[i++];
      if (c->hlen >= 4 && memcmp(c->hdr + c->hlen - 4, "\r\n\r\n", 4) == 0 && http_head(c) != 0)
        return -1;
      continue;
    }
    size_t take = n - i;
    if (take > c->body_len - c->body_pos) take = (size_t)(c->body_len - c->body_pos);
    if (memcmp(p + i, &HTTP_BODY[c->body_pos], take) != 0) {
      fail("conn %u: response %" PRIu64 ": body is not \"" HTTP_BODY "\"", c->idx,
           c->responses + 1);
      return -1;
    }
    i += take;
    c->body_pos += take;
    if (c->body_pos == c->body_len) {
      c->in_body = 0;
      c->responses++;
    }
  }
  return 0;
}

/* Reads what is there and verifies it. Returns bytes read (0 = would
 * block), or -1 on error, EOF or mismatch. */
static ssize_t recv_verify(conn *c) {
  for (;;) {
    ssize_t k;
#ifdef LOADGEN_TLS
    if (c->ssl) {
      int r = SSL_read(c->ssl, g_rbuf, (int)sizeof g_rbuf);
      if (r <= 0) {
        int e = tls_err(c, r, NULL);
        if (e == 0) return 0;
        if (e != SSL_ERROR_ZERO_RETURN) {
          tls_fail(c, "SSL_read", e);
          return -1;
        }
        r = 0; /* the server's close_notify: reported below as a close */
      }
      k = r;
    } else
#endif
      k = recv(c->fd, g_rbuf, sizeof g_rbuf, 0);
    if (k > 0 && o.quickack) {
      int one = 1;
      setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
    }
    if (k > 0 && o.mode == M_HTTP) {
      if (http_consume(c, g_rbuf, (size_t)k) != 0) return -1;
      c->rcvd += (uint64_t)k;
      g_bytes += (uint64_t)k;
      g_last_progress = now_ns();
      return k;
    }
    if (k > 0) {
      if (c->rcvd + (uint64_t)k > c->sent) {
        fail("conn %u: echo has %" PRIu64 " bytes more than was sent", c->idx,
             c->rcvd + (uint64_t)k - c->sent);
        return -1;
      }
      const unsigned char *want = pattern_at(c->seed, c->rcvd);
      if (memcmp(g_rbuf, want, (size_t)k) != 0) {
        size_t at = 0;
        while (g_rbuf[at] == want[at]) at++;
        fail("conn %u: byte mismatch at stream offset %" PRIu64 ": got 0x%02x, want 0x%02x", c->idx,
             c->rcvd + at, g_rbuf[at], want[at]);
        return -1;
      }
      c->rcvd += (uint64_t)k;
      g_bytes += (uint64_t)k;
      g_last_progress = now_ns();
      return k;
    }
    if (k < 0 && errno == EINTR) continue;
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    fail("conn %u: %s after %" PRIu64 " of %" PRIu64 " bytes echoed", c->idx,
         k == 0 ? "server closed the connection" : strerror(errno), c->rcvd, c->sent);
    return -1;
  }
}

/* ------------------------------------------------------------------------ */
/* Per-mode behaviour                                                        */
/* ------------------------------------------------------------------------ */

static int may_start(void) {
  if (g_stopping) return 0;
  if (o.max_msgs && g_started >= o.max_msgs) return 0;
  return 1;
}

/* pingpong/connect/idle: start one message of n bytes. */
static int msg_start(conn *c, size_t n) {
  g_started++;
  c->t_start = now_ns();
  c->target = c->sent + n;
  ssize_t k = send_pattern(c, n);
  if (k < 0) return -1;
  set_events(c, c->sent < c->target ? EPOLLIN | EPOLLOUT : EPOLLIN);
  return 0;
}

static int msg_continue_send(conn *c) {
  if (c->sent < c->target) {
    if (send_pattern(c, (size_t)(c->target - c->sent)) < 0) return -1;
  }
  set_events(c, c->sent < c->target ? EPOLLIN | EPOLLOUT : EPOLLIN);
  return 0;
}

/* stream: top the window up, one chunk at a time. */
static int stream_fill(conn *c) {
  for (;;) {
    uint64_t inflight = c->sent - c->rcvd;
    size_t in_chunk = (size_t)(c->sent % o.size);
    if (in_chunk == 0 && (!may_start() || inflight + o.size > o.window)) break;
    size_t want = o.size - in_chunk;
    ssize_t k = send_pattern(c, want);
    if (k < 0) return -1;
    if (in_chunk == 0 && k > 0) g_started++;
    if (c->sent % o.size == 0 && k > 0) {
      unsigned slot = (c->ch_head + c->ch_count) % c->ch_cap;
      c->ch_end[slot] = c->sent;
      c->ch_t[slot] = now_ns();
      c->ch_count++;
    }
    if ((size_t)k < want) break; /* socket full */
  }
  set_events(c, (c->sent % o.size) != 0 ? EPOLLIN | EPOLLOUT : EPOLLIN);
  return 0;
}

static void stream_account(conn *c) {
  uint64_t t = 0;
  while (c->ch_count && c->rcvd >= c->ch_end[c->ch_head]) {
    if (!t) t = now_ns();
    hist_add(t - c->ch_t[c->ch_head]);
    g_msgs++;
    c->ch_head = (c->ch_head + 1) % c->ch_cap;
    c->ch_count--;
  }
}

/* Whether the current message's whole echo (http: its response) arrived. */
static int msg_answered(const conn *c) {
  if (o.mode == M_HTTP) return c->responses == c->target / HTTP_REQ_LEN;
  return c->rcvd == c->target;
}

/* Whole echo of the current message arrived. */
static int msg_finished(conn *c) {
  uint64_t t = now_ns();
  hist_add(t - c->t_start);
  g_msgs++;
  switch (o.mode) {
  case M_PINGPONG:
  case M_HTTP:
    if (may_start()) return msg_start(c, o.size);
    c->state = C_DONE;
    return 0;
  case M_CONNECT:
    conn_close(c, C_DONE);
    c->cycles++;
    if (may_start()) {
      g_started++;
      if (conn_open(c) != 0) return -1;
    }
    return 0;
  case M_IDLE:
    c->state = C_DONE;
    set_events(c, EPOLLIN);
    return 0;
  default: return 0;
  }
}

static void on_event(conn *c, uint32_t ev) {
  if (c->state == C_CONNECTING) {
    if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    if (conn_connected(c) != 0) return;
    g_last_progress = now_ns();
#ifdef LOADGEN_TLS
    if (c->ssl) c->state = C_HANDSHAKE;
#endif
  }
#ifdef LOADGEN_TLS
  if (c->state == C_HANDSHAKE) {
    int r = SSL_connect(c->ssl);
    if (r != 1) {
      uint32_t want = EPOLLIN;
      int e = tls_err(c, r, &want);
      if (e != 0) {
        tls_fail(c, "handshake", e);
        goto bad;
      }
      set_events(c, want);
      return;
    }
    if (!g_tls_cipher[0])
      snprintf(g_tls_cipher, sizeof g_tls_cipher, "%s/%s", SSL_get_version(c->ssl),
               SSL_get_cipher_name(c->ssl));
    g_last_progress = now_ns();
    c->state = C_CONNECTING; /* the TCP connect's continuation, below */
  }
#endif
  if (c->state == C_CONNECTING) {
    if (o.mode == M_CONNECT) {
      c->state = C_ACTIVE;
      g_started--; /* counted when the connect began */
      if (msg_start(c, o.size) != 0) goto bad;
    } else {
      c->state = C_IDLE; /* waits for the run phase */
      set_events(c, EPOLLIN);
    }
    return;
  }
  if (c->state == C_IDLE || c->state == C_DONE) {
    /* Nothing may arrive and the server must not close: read to find out. */
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
      ssize_t k = recv_verify(c);
      if (k > 0) fail("conn %u: unexpected %zd bytes from the server", c->idx, k);
      if (k != 0) goto bad;
    }
    return;
  }
  /* C_ACTIVE */
  if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
    ssize_t k = recv_verify(c);
    if (k < 0) goto bad;
    if (o.mode == M_STREAM) {
      stream_account(c);
    } else if (c->sent == c->target && msg_answered(c)) {
      if (msg_finished(c) != 0) goto bad;
      return;
    }
  }
  if (c->state != C_ACTIVE) return;
  if (o.mode == M_STREAM) {
    if (stream_fill(c) != 0) goto bad;
    if (!may_start() && c->rcvd == c->sent && c->sent % o.size == 0) c->state = C_DONE;
  } else if (ev & EPOLLOUT) {
    if (msg_continue_send(c) != 0) goto bad;
  }
  return;
bad:
  conn_close(c, C_DONE);
}

/* ------------------------------------------------------------------------ */
/* Event loop                                                                */
/* ------------------------------------------------------------------------ */

#define MAX_EVENTS 512
#define MAX_CONNECTING 256 /* connects in flight while setting up */

static int count_state(enum cstate st) {
  int n = 0;
  for (int i = 0; i < o.conns; i++) n += g_conns[i].state == st;
  return n;
}

/* Runs events until done() says so, the deadline (ns, 0 = none) passes, or
 * nothing happens for --timeout seconds. Returns 0, or -1 on a stall. */
static int loop(int (*done)(void), uint64_t deadline) {
  struct epoll_event evs[MAX_EVENTS];
  uint64_t stall = (uint64_t)(o.timeout * 1e9);
  while (!done()) {
    uint64_t t = now_ns();
    if (deadline && t >= deadline) return 0;
    if (!g_holding && t - g_last_progress > stall) {
      fail("no progress for %.0f s", o.timeout);
      return -1;
    }
    int ms = 100;
    if (deadline && (deadline - t) / 1000000u < (uint64_t)ms)
      ms = (int)((deadline - t) / 1000000u) + 1;
    int n = epoll_wait(g_ep, evs, MAX_EVENTS, ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      fail("epoll_wait: %s", strerror(errno));
      return -1;
    }
    for (int i = 0; i < n; i++) {
      uint32_t idx = (uint32_t)(evs[i].data.u64 >> 32);
      conn *c = &g_conns[idx];
      if ((uint32_t)evs[i].data.u64 != c->gen || c->fd < 0) continue; /* stale */
      on_event(c, evs[i].events);
    }
    if (g_errors) return -1;
  }
  return 0;
}

/* Connection set-up for pingpong/stream/idle: all C up, at most
 * MAX_CONNECTING at a time (so a backlog never overflows). */
static int g_next_to_open;
static int setup_done(void) {
  int connecting = 0;
  for (int i = 0; i < o.conns; i++)
    connecting += g_conns[i].state == C_CONNECTING || g_conns[i].state == C_HANDSHAKE;
  while (connecting < MAX_CONNECTING && g_next_to_open < o.conns && !g_errors) {
    if (conn_open(&g_conns[g_next_to_open++]) != 0) return 1;
    connecting++;
  }
  return g_next_to_open == o.conns && connecting == 0;
}

static int all_done(void) {
  return count_state(C_ACTIVE) == 0 && count_state(C_CONNECTING) == 0 &&
         count_state(C_HANDSHAKE) == 0;
}
/* The run phase: ends at the deadline, or once --msgs messages were started
 * and all of them ended. */
static int capped_done(void) { return o.max_msgs && g_started >= o.max_msgs && all_done(); }
static int never(void) { return 0; }

/* ------------------------------------------------------------------------ */
/* Main                                                                      */
/* ------------------------------------------------------------------------ */

static int usage(void) {
  fprintf(stderr, "usage: loadgen --port N [--host 127.0.0.1]\n"
                  "               --mode pingpong|stream|connect|idle|http\n"
                  "               [--conns C] [--size S] [--secs D] [--msgs N] [--window W]\n"
                  "               [--timeout T] [--quickack 0|1]\n"
                  "               [--tls CAFILE [--ciphersuites LIST]]\n");
  return 2;
}

static int parse(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) return -1;
    i++;
    char *end = NULL;
    if (!strcmp(a, "--host"))
      o.host = v;
    else if (!strcmp(a, "--port"))
      o.port = (int)strtol(v, &end, 10);
    else if (!strcmp(a, "--conns"))
      o.conns = (int)strtol(v, &end, 10);
    else if (!strcmp(a, "--size"))
      o.size = strtoull(v, &end, 10);
    else if (!strcmp(a, "--secs"))
      o.secs = strtod(v, &end);
    else if (!strcmp(a, "--msgs"))
      o.max_msgs = strtoull(v, &end, 10);
    else if (!strcmp(a, "--window"))
      o.window = strtoull(v, &end, 10);
    else if (!strcmp(a, "--timeout"))
      o.timeout = strtod(v, &end);
    else if (!strcmp(a, "--quickack"))
      o.quickack = (int)strtol(v, &end, 10);
    else if (!strcmp(a, "--tls"))
      o.tls_ca = v;
    else if (!strcmp(a, "--ciphersuites"))
      o.ciphersuites = v;
    else if (!strcmp(a, "--mode")) {
      int m = -1;
      for (int k = 0; k < N_MODES; k++)
        if (!strcmp(v, mode_names[k])) m = k;
      if (m < 0) return -1;
      o.mode = (enum mode)m;
    } else
      return -1;
    if (end && *end) return -1;
  }
  if (o.port <= 0 || o.port > 65535 || o.conns < 1 || o.size < 1 || o.secs < 0 || o.timeout <= 0)
    return -1;
#ifndef LOADGEN_TLS
  if (o.tls_ca) {
    fprintf(stderr, "loadgen: built without OpenSSL: no --tls\n");
    return -1;
  }
#endif
  if (o.mode == M_IDLE) o.size = 1;
  if (o.mode == M_HTTP) o.size = HTTP_REQ_LEN; /* a message is one request */
  if (o.mode == M_STREAM) {
    if (o.window == 0) o.window = 4 * o.size;
    if (o.window < o.size) return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (parse(argc, argv) != 0) return usage();
  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  pattern_init();
  http_init();
  memset(&g_addr, 0, sizeof g_addr);
  g_addr.sin_family = AF_INET;
  g_addr.sin_port = htons((uint16_t)o.port);
  if (inet_pton(AF_INET, o.host, &g_addr.sin_addr) != 1) {
    fprintf(stderr, "loadgen: bad --host %s (IPv4 only)\n", o.host);
    return 2;
  }
#ifdef LOADGEN_TLS
  if (o.tls_ca) {
    g_tls = SSL_CTX_new(TLS_client_method());
    if (!g_tls || SSL_CTX_set_min_proto_version(g_tls, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_ciphersuites(g_tls, o.ciphersuites) != 1 ||
        SSL_CTX_load_verify_locations(g_tls, o.tls_ca, NULL) != 1) {
      fprintf(stderr, "loadgen: --tls %s --ciphersuites %s: ", o.tls_ca, o.ciphersuites);
      ERR_print_errors_fp(stderr);
      return 2;
    }
    SSL_CTX_set_verify(g_tls, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(g_tls, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(g_tls, SSL_OP_NO_TICKET);
    SSL_CTX_set_mode(g_tls, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  }
#endif
  g_ep = epoll_create1(EPOLL_CLOEXEC);
  g_conns = calloc((size_t)o.conns, sizeof *g_conns);
  if (g_ep < 0 || !g_conns) {
    fprintf(stderr, "loadgen: out of resources\n");
    return 1;
  }
  for (int i = 0; i < o.conns; i++) {
    conn *c = &g_conns[i];
    c->fd = -1;
    c->idx = (uint32_t)i;
    if (o.mode == M_HTTP && !(c->hdr = malloc(HTTP_HDR_MAX))) return 1;
    if (o.mode == M_STREAM) {
      c->ch_cap = (unsigned)(o.window / o.size) + 2u;
      c->ch_end = calloc(c->ch_cap, sizeof *c->ch_end);
      c->ch_t = calloc(c->ch_cap, sizeof *c->ch_t);
      if (!c->ch_end || !c->ch_t) return 1;
    }
  }

  g_last_progress = now_ns();
  uint64_t t0 = 0, t1 = 0;
  int rc = 0;
  if (o.mode == M_CONNECT) {
    t0 = now_ns();
    for (int i = 0; i < o.conns && rc == 0 && may_start(); i++) {
      g_started++;
      rc = conn_open(&g_conns[i]);
    }
    if (rc == 0) rc = loop(capped_done, t0 + (uint64_t)(o.secs * 1e9));
    g_stopping = 1;
    if (rc == 0) rc = loop(all_done, 0);
    t1 = now_ns();
  } else {
    rc = loop(setup_done, 0);
    if (rc == 0) {
      t0 = now_ns();
      g_last_progress = t0;
      if (o.mode == M_IDLE) {
        /* Hold: nothing may happen on any connection. */
        g_holding = 1;
        rc = loop(never, t0 + (uint64_t)(o.secs * 1e9));
        g_holding = 0;
        g_last_progress = now_ns();
        for (int i = 0; i < o.conns && rc == 0 && !g_errors; i++) {
          g_conns[i].state = C_ACTIVE;
          if (msg_start(&g_conns[i], 1) != 0) rc = -1;
        }
        g_stopping = 1;
        if (rc == 0) rc = loop(all_done, 0);
      } else {
        for (int i = 0; i < o.conns && rc == 0; i++) {
          conn *c = &g_conns[i];
          c->state = C_ACTIVE;
          rc = o.mode == M_STREAM ? stream_fill(c) : msg_start(c, o.size);
        }
        if (rc == 0) rc = loop(capped_done, t0 + (uint64_t)(o.secs * 1e9));
        g_stopping = 1;
        if (o.mode == M_STREAM) /* conns with nothing in flight are done now */
          for (int i = 0; i < o.conns; i++) {
            conn *c = &g_conns[i];
            if (c->state == C_ACTIVE && c->rcvd == c->sent && c->sent % o.size == 0)
              c->state = C_DONE;
          }
        if (rc == 0) rc = loop(all_done, 0);
      }
      t1 = now_ns();
    }
  }
  if (rc != 0 && g_errors == 0) g_errors = 1;
  for (int i = 0; i < o.conns; i++)
    if (g_conns[i].fd >= 0) conn_close(&g_conns[i], C_DONE);

  double secs = t1 > t0 ? (double)(t1 - t0) / 1e9 : 0.0;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double client_ms = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
                     (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
  printf("mode=%s conns=%d size=%zu msgs=%" PRIu64 " bytes=%" PRIu64
         " secs=%.3f msgs_per_sec=%.1f p50_us=%.1f p99_us=%.1f window=%zu client_cpu_ms=%.0f"
         " errors=%d ok=%d%s%s\n",
         mode_names[o.mode], o.conns, o.size, g_msgs, g_bytes, secs,
         secs > 0 ? (double)g_msgs / secs : 0.0, hist_pct_us(0.50), hist_pct_us(0.99),
         o.mode == M_STREAM ? o.window : 0, client_ms, g_errors, g_errors == 0,
#ifdef LOADGEN_TLS
         g_tls ? " tls=" : "", g_tls ? (g_tls_cipher[0] ? g_tls_cipher : "none") : ""
#else
         "", ""
#endif
  );
  fflush(stdout);
  return g_errors ? 1 : 0;
}
