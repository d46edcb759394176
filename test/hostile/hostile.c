/*
 * hostile: peers that misbehave, for a TCP echo server (examples/echo_server.c),
 * in plain C on raw epoll (no library), single-threaded. Run by
 * scripts/hostile.sh against every backend and mode; it checks every echoed
 * byte and prints ONE result line of key=value pairs per run.
 *
 *   hostile --port N --mode slowloris|rst|noread|halfclose|random|emfile
 *           [--host 127.0.0.1] [--conns C] [--secs D] [--bytes B] [--seed S]
 *           [--watch PID[,PID...]] [--max-cpu PCT] [--timeout T]
 *
 * Modes:
 *   slowloris  C connections (default 1000), each sending one byte per second
 *              for D seconds (the sends spread evenly over each second);
 *              every byte must come back (within --timeout s).
 *   rst        a storm of C connections (default 2000) reset before the
 *              server accepts them: connected in bursts of 50, half of them
 *              send a few bytes first, then SO_LINGER {1, 0} and close (an
 *              RST). Then a normal echo must still work.
 *   noread     C connections (default 50) that send (up to B bytes each,
 *              default 64 MiB) and never read. Once every one is stalled (the server
 *              must stop reading a connection whose echo it cannot send) they
 *              are held D seconds while a normal client is echoed every
 *              0.25 s. Then the odd ones close with their echo unread (an
 *              RST), the even ones stop sending, read at last and
 *              half-close: every byte they sent must come back, then EOF.
 *   halfclose  C connections (default 200), each sending a random payload
 *              (0 to B bytes, default 256 KiB) in random splits while
 *              reading, then shutdown(SHUT_WR) at a random moment after its
 *              last byte (at once, or up to 300 ms later): every byte must
 *              come back, then EOF.
 *   random     C connections (default 100), each sending a random payload
 *              (1 to B bytes, default 1 MiB) of all byte values in random
 *              write sizes, read in random sizes; every byte checked.
 *   emfile     for a server started with a low RLIMIT_NOFILE: C connections
 *              (more than its limit), one byte each. The echoes stop when
 *              the server is out of descriptors (there must be fewer than C,
 *              or the limit did not bite); that state is held D seconds;
 *              then the echoed connections close, after which every other
 *              one must be accepted and echoed too; then a normal echo.
 *
 * Every byte is a function of (seed, connection, position), so a run is
 * reproducible from --seed (default 1) and any byte can be checked alone.
 *
 * --watch PIDS: the server's processes (under Wine: the program and the
 * wineserver). Their CPU time (utime + stime from /proc/PID/stat) is
 * measured while the server should be idle: between slowloris bytes (the
 * whole run after the first second), while the noread connections hold it
 * full, while the emfile connections hold it out of descriptors. Reported
 * as cpu_pct (percent of one CPU); above --max-cpu (default 10) fails.
 *
 * Result line (stdout), always printed:
 *   mode= conns= seed= bytes= errors= cpu_pct= ... ok=
 * bytes counts echoed bytes received and verified.
 *
 * Exit status: 0 all good; 1 a lost, extra or corrupted byte, a failed
 * connection, a stall longer than --timeout seconds (default 15) or too
 * much CPU; 2 bad usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { M_SLOWLORIS, M_RST, M_NOREAD, M_HALFCLOSE, M_RANDOM, M_EMFILE, N_MODES };
static const char *const mode_names[N_MODES] = {"slowloris", "rst",    "noread",
                                                "halfclose", "random", "emfile"};
static const int default_conns[N_MODES] = {1000, 2000, 50, 200, 100, 0};
static const unsigned long long default_bytes[N_MODES] = {1, 0, 64u << 20, 256u << 10, 1u << 20, 1};

static struct {
  const char *host;
  int port;
  enum mode mode;
  int conns;
  double secs;
  unsigned long long bytes;
  uint64_t seed;
  pid_t watch[8];
  int n_watch;
  double max_cpu;
  double timeout;
} o = {.host = "127.0.0.1", .conns = -1, .secs = -1, .seed = 1, .max_cpu = 10, .timeout = 15};

static struct sockaddr_in g_addr;
static int g_ep = -1;
static int g_errors;
static uint64_t g_bytes; /* echoed bytes received and checked */
static double g_cpu_pct = -1;

static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "hostile %s: ", mode_names[o.mode]);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  g_errors++;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------------------------ */
/* Bytes: byte p of stream `key` is a hash of (key, p / 8), so any slice can */
/* be made (and checked) without keeping the stream.                        */
/* ------------------------------------------------------------------------ */

static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static void fill(uint64_t key, uint64_t pos, unsigned char *buf, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint64_t p = pos + i, w = mix64(key + (p >> 3) * 0x9E3779B97F4A7C15ull);
    for (unsigned b = (unsigned)(p & 7); b < 8 && i < n; b++, i++)
      buf[i] = (unsigned char)(w >> (b * 8));
  }
}

/* The control stream of a connection: sizes, splits, delays. */
static uint64_t rnd(uint64_t *state) { return mix64(*state += 0x9E3779B97F4A7C15ull); }

/* A size from 1 to max, log-uniform (as many 1..15-byte sizes as 32..63 KiB ones). */
static size_t rnd_size(uint64_t *state, size_t max) {
  uint64_t r = rnd(state);
  size_t cap = (size_t)1 << (r % 17);
  size_t n = 1 + (size_t)((r >> 8) % cap);
  return n < max ? n : max;
}

/* ------------------------------------------------------------------------ */
/* CPU time of the watched processes                                          */
/* ------------------------------------------------------------------------ */

static long long cpu_ticks(void) {
  long long sum = 0;
  for (int i = 0; i < o.n_watch; i++) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)o.watch[i]);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the name may hold spaces */
    unsigned long long ut = 0, st = 0;
    /* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime(14) stime(15) */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
      return -1;
    sum += (long long)(ut + st);
  }
  return sum;
}

static long long g_cpu_t0;
static uint64_t g_cpu_ms0;
static void cpu_begin(void) {
  g_cpu_t0 = cpu_ticks();
  g_cpu_ms0 = now_ms();
}
static void cpu_end(const char *what) {
  if (o.n_watch == 0) return;
  long long t1 = cpu_ticks();
  uint64_t ms = now_ms() - g_cpu_ms0;
  if (g_cpu_t0 < 0 || t1 < 0 || ms == 0) {
    fail("cannot read the CPU time of the watched processes");
    return;
  }
  double pct = 100.0 * (double)(t1 - g_cpu_t0) / (double)sysconf(_SC_CLK_TCK) / ((double)ms / 1e3);
  if (pct > g_cpu_pct) g_cpu_pct = pct;
  if (pct > o.max_cpu) fail("server used %.1f%% of a CPU %s (bound %.1f%%)", pct, what, o.max_cpu);
}

/* ------------------------------------------------------------------------ */
/* Connections                                                                */
/* ------------------------------------------------------------------------ */

typedef struct conn {
  int fd;
  int idx;
  uint64_t key;     /* byte stream (the same both ways: the echo is the payload) */
  uint64_t ctl;     /* control stream: sizes, splits, delays */
  uint64_t total;   /* bytes to send */
  uint64_t sent;    /* of those, sent */
  uint64_t rcvd;    /* echoed bytes received and checked */
  uint64_t shut_at; /* ms: shutdown(SHUT_WR) then (0: not yet planned) */
  uint64_t sent_ms; /* slowloris: when the byte now in flight was sent */
  uint32_t ev;      /* the epoll events asked for */
  int wr_shut, eof, done;
} conn;

static conn *g_conns;
static unsigned char g_tx[1 << 16], g_rx[1 << 16], g_want[1 << 16];

static uint64_t conn_key(int idx, uint64_t salt) {
  return mix64(o.seed * 0x100000001B3ull + (uint64_t)idx * 7919u + salt);
}

/* A blocking connect (bounded by SO_SNDTIMEO), then non-blocking. */
static int dial(int nonblock) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct timeval tv = {.tv_sec = 5};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&g_addr, sizeof g_addr) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  if (nonblock) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

static int open_all(int n, uint64_t salt) {
  for (int i = 0; i < n; i++) {
    conn *c = &g_conns[i];
    memset(c, 0, sizeof *c);
    c->idx = i;
    c->key = conn_key(i, salt);
    c->ctl = conn_key(i, salt + 1);
    c->fd = dial(1);
    if (c->fd < 0) {
      fail("connection %d: connect: %s", i, strerror(errno));
      return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    c->ev = EPOLLIN;
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
      fail("epoll_ctl: %s", strerror(errno));
      return -1;
    }
  }
  return 0;
}

static void conn_close(conn *c) {
  if (c->fd >= 0) close(c->fd); /* also leaves the epoll set */
  c->fd = -1;
}

static void close_all(int n) {
  for (int i = 0; i < n; i++) conn_close(&g_conns[i]);
}

static void set_events(conn *c, uint32_t events) {
  if (c->fd < 0 || c->ev == events) return;
  struct epoll_event ev = {.events = events, .data.u32 = (uint32_t)c->idx};
  epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev);
  c->ev = events;
}

static void want_out(conn *c, int on) { set_events(c, EPOLLIN | (on ? EPOLLOUT : 0u)); }

/* Read what is there and check it. Returns -1 on an error (reported). */
static int conn_read(conn *c, int random_sizes) {
  for (int rounds = 0; rounds < 16; rounds++) {
    size_t want = random_sizes ? rnd_size(&c->ctl, sizeof g_rx) : sizeof g_rx;
    ssize_t n = recv(c->fd, g_rx, want, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return 0;
      fail("connection %d: recv after %" PRIu64 " of %" PRIu64 " bytes: %s", c->idx, c->rcvd,
           c->total, strerror(errno));
      return -1;
    }
    if (n == 0) {
      c->eof = 1;
      if (c->rcvd < c->total) {
        fail("connection %d: EOF after %" PRIu64 " of %" PRIu64 " bytes (%" PRIu64 " lost)", c->idx,
             c->rcvd, c->total, c->total - c->rcvd);
        return -1;
      }
      return 0;
    }
    if (c->rcvd + (uint64_t)n > c->sent) {
      fail("connection %d: %" PRIu64 " bytes echoed, only %" PRIu64 " sent", c->idx,
           c->rcvd + (uint64_t)n, c->sent);
      return -1;
    }
    fill(c->key, c->rcvd, g_want, (size_t)n);
    if (memcmp(g_rx, g_want, (size_t)n) != 0) {
      size_t k = 0;
      while (g_rx[k] == g_want[k]) k++;
      fail("connection %d: byte %" PRIu64 " is 0x%02x, sent 0x%02x", c->idx, c->rcvd + k, g_rx[k],
           g_want[k]);
      return -1;
    }
    c->rcvd += (uint64_t)n;
    g_bytes += (uint64_t)n;
  }
  return 0;
}

/* Send one random-size chunk (or all of it while the socket takes it, with
 * random_sizes off). Returns 1 if the socket is full, 0, or -1 on an error. */
static int conn_write(conn *c, int random_sizes) {
  while (c->sent < c->total) {
    size_t left = c->total - c->sent > sizeof g_tx ? sizeof g_tx : (size_t)(c->total - c->sent);
    size_t n = random_sizes ? rnd_size(&c->ctl, left) : left;
    fill(c->key, c->sent, g_tx, n);
    ssize_t k = send(c->fd, g_tx, n, MSG_NOSIGNAL);
    if (k < 0) {
      if (errno == EAGAIN || errno == EINTR) return 1;
      fail("connection %d: send after %" PRIu64 " of %" PRIu64 " bytes: %s", c->idx, c->sent,
           c->total, strerror(errno));
      return -1;
    }
    c->sent += (uint64_t)k;
    if (random_sizes) return 0;
  }
  return 0;
}

/* A normal client: connect, send `size` bytes, read them back, close. */
static int echo_check(size_t size, uint64_t salt, uint64_t *ms) {
  uint64_t t0 = now_ms();
  int fd = dial(0);
  if (fd < 0) {
    fail("normal client: connect: %s", strerror(errno));
    return -1;
  }
  uint64_t key = conn_key(-1, salt);
  size_t got = 0, sent = 0;
  int rc = 0;
  while (got < size && rc == 0) {
    if (sent < size) {
      size_t n = size - sent < 4096 ? size - sent : 4096;
      fill(key, sent, g_tx, n);
      ssize_t k = send(fd, g_tx, n, MSG_NOSIGNAL);
      if (k <= 0) {
        fail("normal client: send: %s", strerror(errno));
        rc = -1;
        break;
      }
      sent += (size_t)k;
      if (sent < size && sent - got < 32768) continue; /* keep some in flight */
    }
    ssize_t n = recv(fd, g_rx, sent - got, 0);
    if (n <= 0) {
      fail("normal client: %s after %zu of %zu bytes", n == 0 ? "EOF" : strerror(errno), got, size);
      rc = -1;
      break;
    }
    fill(key, got, g_want, (size_t)n);
    if (memcmp(g_rx, g_want, (size_t)n) != 0) {
      fail("normal client: corrupted echo near byte %zu", got);
      rc = -1;
    }
    got += (size_t)n;
  }
  close(fd);
  if (rc == 0) g_bytes += size;
  if (ms) *ms = now_ms() - t0;
  return rc;
}

/* ------------------------------------------------------------------------ */
/* The event loop shared by the streaming modes                              */
/* ------------------------------------------------------------------------ */

typedef struct policy {
  int random_sizes; /* random write and read sizes */
  int shut;         /* shutdown(SHUT_WR) after the last byte, at a random moment; want EOF */
} policy;

static int stream_done(const conn *c, const policy *p) {
  return c->rcvd == c->total && (!p->shut || c->eof);
}

/* Runs connections [0, n) that have fd >= 0 until each is done (closing
 * it then). Fails on an error or after --timeout s without progress. */
static int run_streams(int n, const policy *p) {
  uint64_t last = now_ms();
  int live = 0;
  for (int i = 0; i < n; i++) {
    conn *c = &g_conns[i];
    if (c->fd < 0) continue;
    live++;
    want_out(c, c->sent < c->total);
  }
  while (live > 0 && !g_errors) {
    uint64_t t = now_ms(), next = t + 100;
    for (int i = 0; i < n; i++) { /* due half-closes */
      conn *c = &g_conns[i];
      if (c->fd < 0 || !p->shut || c->wr_shut || c->sent < c->total) continue;
      if (c->shut_at == 0) {
        uint64_t r = rnd(&c->ctl) % 3;
        c->shut_at = t + (r == 0 ? 0 : rnd(&c->ctl) % 300);
      }
      if (c->shut_at <= t) {
        if (shutdown(c->fd, SHUT_WR) != 0) fail("connection %d: shutdown: %s", i, strerror(errno));
        c->wr_shut = 1;
      } else if (c->shut_at < next) {
        next = c->shut_at;
      }
    }
    struct epoll_event evs[256];
    int k = epoll_wait(g_ep, evs, 256, (int)(next - t));
    if (k < 0 && errno != EINTR) {
      fail("epoll_wait: %s", strerror(errno));
      break;
    }
    for (int e = 0; e < k; e++) {
      conn *c = &g_conns[evs[e].data.u32];
      if (c->fd < 0) continue;
      uint64_t before = c->rcvd + c->sent;
      if ((evs[e].events & EPOLLOUT) && conn_write(c, p->random_sizes) < 0) break;
      if ((evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && conn_read(c, p->random_sizes) < 0)
        break;
      if (c->rcvd + c->sent != before) last = now_ms();
      want_out(c, c->sent < c->total);
      if (c->eof && !stream_done(c, p)) {
        fail("connection %d: EOF with %" PRIu64 " of %" PRIu64 " bytes echoed", c->idx, c->rcvd,
             c->total);
        break;
      }
      if (stream_done(c, p)) {
        conn_close(c);
        live--;
      }
    }
    if (!g_errors && now_ms() - last > (uint64_t)(o.timeout * 1e3)) {
      int stuck = 0;
      for (int i = 0; i < n; i++) stuck += g_conns[i].fd >= 0;
      fail("no progress for %.0f s; %d connections not done", o.timeout, stuck);
    }
  }
  return g_errors ? -1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Modes                                                                      */
/* ------------------------------------------------------------------------ */

static int run_slowloris(void) {
  int n = o.conns, secs = (int)o.secs;
  if (open_all(n, 11) != 0) return -1;
  for (int i = 0; i < n; i++) g_conns[i].total = (uint64_t)secs;
  /* Event j is connection j % n's byte j / n, due at t0 + (j / n) s + (j % n) / n s. */
  uint64_t t0 = now_ms(), max_echo_ms = 0, last = t0;
  long long j = 0, events = (long long)n * secs;
  int cpu_on = 0;
  while (!g_errors) {
    uint64_t t = now_ms();
    if (!cpu_on && t >= t0 + 1000) { /* all connections busy trickling from here */
      cpu_begin();
      cpu_on = 1;
    }
    while (j < events) {
      int i = (int)(j % n);
      uint64_t due = t0 + (uint64_t)(j / n) * 1000u + (uint64_t)i * 1000u / (uint64_t)n;
      if (due > t) break;
      conn *c = &g_conns[i];
      if (c->rcvd != c->sent && t - c->sent_ms > (uint64_t)(o.timeout * 1e3)) {
        fail("connection %d: byte %" PRIu64 " not echoed after %" PRIu64 " ms", i, c->rcvd,
             t - c->sent_ms);
        return -1;
      }
      fill(c->key, c->sent, g_tx, 1);
      if (send(c->fd, g_tx, 1, MSG_NOSIGNAL) != 1) {
        fail("connection %d: send: %s", i, strerror(errno));
        return -1;
      }
      c->sent++;
      c->sent_ms = t;
      j++;
    }
    int all = j == events;
    if (all) {
      all = 1;
      for (int i = 0; i < n && all; i++) all = g_conns[i].rcvd == g_conns[i].total;
      if (all) break;
    }
    int wait = 100;
    if (j < events) {
      uint64_t due = t0 + (uint64_t)(j / n) * 1000u + (uint64_t)(j % n) * 1000u / (uint64_t)n;
      wait = due > t ? (int)(due - t) : 0;
    }
    struct epoll_event evs[256];
    int k = epoll_wait(g_ep, evs, 256, wait);
    for (int e = 0; e < k; e++) {
      conn *c = &g_conns[evs[e].data.u32];
      uint64_t before = c->rcvd;
      if (conn_read(c, 0) < 0) return -1;
      if (c->eof) {
        fail("connection %d: closed by the server after %" PRIu64 " bytes", c->idx, c->rcvd);
        return -1;
      }
      if (c->rcvd != before) {
        uint64_t lat = now_ms() - c->sent_ms;
        if (lat > max_echo_ms) max_echo_ms = lat;
        last = now_ms();
      }
    }
    if (j == events && now_ms() - last > (uint64_t)(o.timeout * 1e3)) {
      fail("echoes missing %.0f s after the last byte was sent", o.timeout);
      return -1;
    }
  }
  if (cpu_on) cpu_end("while slowloris connections trickled");
  close_all(n);
  printf("max_echo_ms=%" PRIu64 " ", max_echo_ms);
  return g_errors ? -1 : 0;
}

static int run_rst(void) {
  enum { BURST = 50 };
  int fds[BURST], resets = 0, with_data = 0;
  uint64_t ctl = conn_key(0, 21);
  for (int done = 0; done < o.conns && !g_errors;) {
    int b = o.conns - done < BURST ? o.conns - done : BURST;
    for (int i = 0; i < b; i++) {
      fds[i] = dial(0);
      if (fds[i] < 0) {
        fail("connection %d: connect: %s", done + i, strerror(errno));
        for (int k = 0; k < i; k++) close(fds[k]);
        return -1;
      }
    }
    for (int i = 0; i < b; i++) {
      if (rnd(&ctl) & 1) { /* a request the server will never answer */
        size_t n = rnd_size(&ctl, 2000);
        fill(ctl, 0, g_tx, n);
        if (send(fds[i], g_tx, n, MSG_NOSIGNAL) > 0) with_data++;
      }
      struct linger lg = {.l_onoff = 1, .l_linger = 0};
      setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      close(fds[i]);
      resets++;
    }
    done += b;
  }
  uint64_t ms = 0;
  for (int i = 0; i < 3 && !g_errors; i++) echo_check(64 * 1024, 22 + (uint64_t)i, &ms);
  printf("resets=%d with_data=%d echo_after_ms=%" PRIu64 " ", resets, with_data, ms);
  return g_errors ? -1 : 0;
}

static int run_noread(void) {
  int n = o.conns;
  if (open_all(n, 31) != 0) return -1;
  for (int i = 0; i < n; i++) {
    conn *c = &g_conns[i];
    c->total = o.bytes;
    int small = 64 * 1024; /* keep what the kernel holds for us (and the test) small */
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    set_events(c, EPOLLOUT); /* never EPOLLIN: the echo is left unread */
  }
  /* Fill: send, never read, until no connection has moved for 500 ms. */
  uint64_t last = now_ms(), t0 = last;
  while (!g_errors && now_ms() - last < 500) {
    struct epoll_event evs[256];
    int k = epoll_wait(g_ep, evs, 256, 100);
    for (int e = 0; e < k; e++) {
      conn *c = &g_conns[evs[e].data.u32];
      if (!(evs[e].events & EPOLLOUT)) continue;
      if (evs[e].events & (EPOLLHUP | EPOLLERR)) {
        fail("connection %d: reset by the server after %" PRIu64 " bytes sent", c->idx, c->sent);
        return -1;
      }
      uint64_t before = c->sent;
      if (conn_write(c, 0) < 0) return -1;
      if (c->sent != before) last = now_ms();
      if (c->sent == c->total) {
        fail("connection %d: all %" PRIu64 " bytes taken without a read: raise --bytes", c->idx,
             c->total);
        return -1;
      }
    }
    if (now_ms() - t0 > (uint64_t)(o.timeout * 1e3)) {
      fail("still sending after %.0f s: the connections never stalled", o.timeout);
      return -1;
    }
  }
  uint64_t stalled = 0;
  for (int i = 0; i < n; i++) stalled += g_conns[i].sent;
  /* Hold them: the server is full; a normal client must still be served. */
  uint64_t hold_end = now_ms() + (uint64_t)(o.secs * 1e3), max_probe = 0;
  int probes = 0;
  cpu_begin();
  while (!g_errors && now_ms() < hold_end) {
    uint64_t ms = 0;
    if (echo_check(4096, 32 + (uint64_t)probes, &ms) == 0) probes++;
    if (ms > max_probe) max_probe = ms;
    struct epoll_event evs[256];
    int k = epoll_wait(g_ep, evs, 256, 250);
    for (int e = 0; e < k; e++) {
      conn *c = &g_conns[evs[e].data.u32];
      if (evs[e].events & (EPOLLHUP | EPOLLERR)) {
        fail("connection %d: reset by the server while held", c->idx);
        return -1;
      }
      if ((evs[e].events & EPOLLOUT) && conn_write(c, 0) < 0) return -1;
    }
  }
  cpu_end("while noread connections held it full");
  /* The odd ones go away with their echo unread; the even ones stop
   * sending, read it all, and half-close: every byte must come back. */
  for (int i = 0; i < n; i++) {
    if (i % 2)
      conn_close(&g_conns[i]);
    else
      g_conns[i].total = g_conns[i].sent;
  }
  policy p = {.random_sizes = 0, .shut = 1};
  int rc = g_errors ? -1 : run_streams(n, &p);
  close_all(n);
  printf("stalled_bytes=%" PRIu64 " probes=%d max_probe_ms=%" PRIu64 " ", stalled, probes,
         max_probe);
  return rc;
}

static int run_stream_mode(const policy *p, uint64_t salt, uint64_t min) {
  int n = o.conns;
  if (open_all(n, salt) != 0) return -1;
  uint64_t total = 0;
  for (int i = 0; i < n; i++) {
    conn *c = &g_conns[i];
    c->total = min + rnd(&c->ctl) % (o.bytes - min + 1);
    total += c->total;
  }
  int rc = run_streams(n, p);
  close_all(n);
  printf("payload=%" PRIu64 " ", total);
  return rc;
}

static int run_emfile(void) {
  int n = o.conns;
  if (open_all(n, 51) != 0) return -1;
  for (int i = 0; i < n; i++) {
    conn *c = &g_conns[i];
    c->total = 1;
    fill(c->key, 0, g_tx, 1);
    if (send(c->fd, g_tx, 1, MSG_NOSIGNAL) != 1) {
      fail("connection %d: send: %s", i, strerror(errno));
      return -1;
    }
    c->sent = 1;
  }
  /* Echoes until the server is out of descriptors: wait until none came for 1.5 s. */
  int echoed = 0;
  uint64_t last = now_ms();
  while (!g_errors && now_ms() - last < 1500 && echoed < n) {
    struct epoll_event evs[256];
    int k = epoll_wait(g_ep, evs, 256, 100);
    for (int e = 0; e < k; e++) {
      conn *c = &g_conns[evs[e].data.u32];
      if (conn_read(c, 0) < 0) return -1;
      if (c->eof) {
        fail("connection %d: closed by the server", c->idx);
        return -1;
      }
      if (c->rcvd == 1 && !c->done) {
        c->done = 1;
        echoed++;
        last = now_ms();
      }
    }
  }
  if (g_errors) return -1;
  int first = echoed;
  if (echoed == n) {
    fail("all %d connections echoed: the server's descriptor limit did not bite", n);
    return -1;
  }
  /* Hold it out of descriptors: it must wait, not spin. */
  cpu_begin();
  uint64_t hold_end = now_ms() + (uint64_t)(o.secs * 1e3);
  while (now_ms() < hold_end) {
    struct epoll_event evs[256];
    int k = epoll_wait(g_ep, evs, 256, 100);
    for (int e = 0; e < k; e++) {
      conn *c = &g_conns[evs[e].data.u32];
      if (conn_read(c, 0) < 0) return -1;
      if (c->rcvd == 1 && !c->done) {
        c->done = 1;
        echoed++;
      }
    }
  }
  cpu_end("while out of descriptors");
  /* Free its descriptors: then the rest must be accepted and echoed. */
  for (int i = 0; i < n; i++)
    if (g_conns[i].done) conn_close(&g_conns[i]);
  last = now_ms();
  while (!g_errors && echoed < n) {
    struct epoll_event evs[256];
    int k = epoll_wait(g_ep, evs, 256, 100);
    for (int e = 0; e < k; e++) {
      conn *c = &g_conns[evs[e].data.u32];
      if (c->fd < 0) continue;
      if (conn_read(c, 0) < 0) return -1;
      if (c->eof) {
        fail("connection %d: closed by the server unechoed", c->idx);
        return -1;
      }
      if (c->rcvd == 1 && !c->done) {
        c->done = 1;
        echoed++;
        last = now_ms();
        conn_close(c);
      }
    }
    if (now_ms() - last > (uint64_t)(o.timeout * 1e3)) {
      fail("%d of %d connections never echoed after descriptors were freed", n - echoed, n);
      return -1;
    }
  }
  close_all(n);
  for (int i = 0; i < 3 && !g_errors; i++) echo_check(64 * 1024, 52 + (uint64_t)i, NULL);
  printf("echoed_at_limit=%d ", first);
  return g_errors ? -1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Main                                                                       */
/* ------------------------------------------------------------------------ */

static int usage(void) {
  fprintf(stderr, "usage: hostile --port N --mode slowloris|rst|noread|halfclose|random|emfile\n"
                  "               [--host 127.0.0.1] [--conns C] [--secs D] [--bytes B]\n"
                  "               [--seed S] [--watch PID[,PID...]] [--max-cpu PCT]"
                  " [--timeout T]\n");
  return 2;
}

static int parse(int argc, char **argv) {
  int mode = -1;
  for (int i = 1; i < argc; i += 2) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    char *end = NULL;
    if (!v) return -1;
    if (!strcmp(a, "--host")) {
      o.host = v;
    } else if (!strcmp(a, "--port")) {
      o.port = (int)strtol(v, &end, 10);
    } else if (!strcmp(a, "--conns")) {
      o.conns = (int)strtol(v, &end, 10);
    } else if (!strcmp(a, "--secs")) {
      o.secs = strtod(v, &end);
    } else if (!strcmp(a, "--bytes")) {
      o.bytes = strtoull(v, &end, 10);
    } else if (!strcmp(a, "--seed")) {
      o.seed = strtoull(v, &end, 10);
    } else if (!strcmp(a, "--max-cpu")) {
      o.max_cpu = strtod(v, &end);
    } else if (!strcmp(a, "--timeout")) {
      o.timeout = strtod(v, &end);
    } else if (!strcmp(a, "--watch")) {
      const char *p = v;
      while (*p && o.n_watch < 8) {
        o.watch[o.n_watch++] = (pid_t)strtol(p, &end, 10);
        if (end == p) return -1;
        p = *end == ',' ? end + 1 : end;
      }
      end = (char *)p;
    } else if (!strcmp(a, "--mode")) {
      for (int k = 0; k < N_MODES; k++)
        if (!strcmp(v, mode_names[k])) mode = k;
      if (mode < 0) return -1;
    } else {
      return -1;
    }
    if (end && *end) return -1;
  }
  if (mode < 0 || o.port <= 0 || o.port > 65535 || o.timeout <= 0) return -1;
  o.mode = (enum mode)mode;
  if (o.conns < 0) o.conns = default_conns[o.mode];
  if (o.bytes == 0) o.bytes = default_bytes[o.mode];
  if (o.secs < 0) o.secs = o.mode == M_SLOWLORIS ? 10 : 3;
  if (o.conns < 1 || (o.mode == M_SLOWLORIS && o.secs < 2)) return -1;
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
  memset(&g_addr, 0, sizeof g_addr);
  g_addr.sin_family = AF_INET;
  g_addr.sin_port = htons((uint16_t)o.port);
  if (inet_pton(AF_INET, o.host, &g_addr.sin_addr) != 1) {
    fprintf(stderr, "hostile: bad --host %s (an IPv4 address)\n", o.host);
    return 2;
  }
  g_ep = epoll_create1(EPOLL_CLOEXEC);
  g_conns = calloc((size_t)o.conns, sizeof *g_conns);
  if (g_ep < 0 || !g_conns) {
    fprintf(stderr, "hostile: out of resources\n");
    return 1;
  }
  for (int i = 0; i < o.conns; i++) g_conns[i].fd = -1;

  uint64_t t0 = now_ms();
  printf("mode=%s conns=%d seed=%" PRIu64 " ", mode_names[o.mode], o.conns, o.seed);
  int rc = 0;
  policy halfclose = {.random_sizes = 1, .shut = 1}, random = {.random_sizes = 1, .shut = 0};
  switch (o.mode) {
  case M_SLOWLORIS: rc = run_slowloris(); break;
  case M_RST: rc = run_rst(); break;
  case M_NOREAD: rc = run_noread(); break;
  case M_HALFCLOSE: rc = run_stream_mode(&halfclose, 41, 0); break;
  case M_RANDOM: rc = run_stream_mode(&random, 61, 1); break;
  case M_EMFILE: rc = run_emfile(); break;
  default: break;
  }
  close_all(o.conns);
  if (rc != 0 && g_errors == 0) g_errors = 1;
  if (g_cpu_pct >= 0)
    printf("cpu_pct=%.1f ", g_cpu_pct);
  else
    printf("cpu_pct=- ");
  printf("bytes=%" PRIu64 " secs=%.1f errors=%d ok=%d\n", g_bytes, (double)(now_ms() - t0) / 1e3,
         g_errors, g_errors == 0);
  fflush(stdout);
  return g_errors ? 1 : 0;
}
