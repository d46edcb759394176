/*
 * testns: run one command in a private network and mount namespace with its
 * own name server, so that name-resolution tests get real DNS answers and
 * failures and no lookup leaves the machine (test/dns/README.md).
 *
 *   testns [--print-env] [--no-server] [--stuck-listener] -- CMD [ARGS...]
 *
 * CMD gets CPORT_TEST_DNS=1 and CPORT_TEST_RESOLV_CONF, the file bound over
 * /etc/resolv.conf (a test may rewrite it in place, and must restore it).
 * --no-server: no name server, resolv.conf names 127.0.0.2 where nothing
 * listens, and CPORT_TEST_DNS=none (for Wine, which never reads a changed
 * resolv.conf again). --stuck-listener: a listener on [::1] that takes no
 * connection, its port in CPORT_TEST_STUCK_PORT (scripts/happy-eyeballs.sh).
 *
 * Linux only; needs root or unprivileged user namespaces. Exit status: CMD's
 * (128 + signal if a signal ended it); 1 if the namespace or the name server
 * could not be made (a failure, never a skip); 2 for a usage error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

enum { DNS_PORT = 53, HEADER = 12, MAX_NAME = 255, MAX_MSG = 512, MAX_ANSWERS = 8 };
enum { TTL = 1, SLOW_MS = 1500, MAX_HELD = 128, MAX_TCP = 16, TCP_IDLE_MS = 10000 };
enum { T_A = 1, T_PTR = 12, T_AAAA = 28, T_ANY = 255, C_IN = 1, C_ANY = 255 };
enum { RC_OK = 0, RC_SERVFAIL = 2, RC_NXDOMAIN = 3 };

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...);

__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("testns: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("testns: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

/* One write(2): the kernel takes /proc/self/uid_map only whole, in one call. */
static int write_file(const char *path, const char *text, int create) {
  int fd = open(path, O_WRONLY | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0), 0644);
  size_t len = strlen(text);
  ssize_t n = fd < 0 ? -1 : write(fd, text, len);
  int err = errno;
  if (fd >= 0 && close(fd) != 0 && n >= 0) {
    n = -1; /* a deferred write error shows up here */
    err = errno;
  }
  if (n >= 0 && (size_t)n == len) return 0;
  say("cannot write %s: %s", path, n < 0 ? strerror(err) : "short write");
  return -1;
}

/* ---- the namespace --------------------------------------------------------------- */

/* Root in a user namespace of our own, mapped to the ids we had (unshare -r). */
static void map_ids(uid_t uid, gid_t gid) {
  char map[48];
  snprintf(map, sizeof map, "0 %lu 1\n", (unsigned long)uid);
  if (write_file("/proc/self/uid_map", map, 0) != 0) exit(1);
  /* The kernel takes an unprivileged gid_map only once setgroups is denied. */
  if (write_file("/proc/self/setgroups", "deny\n", 0) != 0) exit(1);
  snprintf(map, sizeof map, "0 %lu 1\n", (unsigned long)gid);
  if (write_file("/proc/self/gid_map", map, 0) != 0) exit(1);
}

/* The network namespace leaves only loopback to talk to; the mount namespace
 * lets us bind files over /etc unseen by the rest of the machine. Without
 * privilege, the same inside a user namespace where we are root. */
static void enter_namespaces(void) {
  const int flags = CLONE_NEWNS | CLONE_NEWNET;
  if (unshare(flags) == 0) return;
  int err = errno;
  uid_t uid = getuid(); /* before: in the new user namespace, unmapped ids read as 65534 */
  gid_t gid = getgid();
  if (err == EPERM && uid == 0)
    die("unshare(CLONE_NEWNS | CLONE_NEWNET): %s: root without CAP_SYS_ADMIN "
        "(a container that forbids new namespaces?)",
        strerror(err));
  if (err != EPERM) die("unshare(CLONE_NEWNS | CLONE_NEWNET): %s", strerror(err));
  if (unshare(flags | CLONE_NEWUSER) != 0)
    die("unshare(CLONE_NEWNS | CLONE_NEWNET): %s; with CLONE_NEWUSER: %s. testns needs root or "
        "unprivileged user namespaces (see user.max_user_namespaces, "
        "kernel.unprivileged_userns_clone, kernel.apparmor_restrict_unprivileged_userns)",
        strerror(err), strerror(errno));
  map_ids(uid, gid);
}

static void loopback_up(void) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, "lo", 3);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket(AF_INET): %s", strerror(errno));
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) != 0) die("SIOCGIFFLAGS on lo: %s", strerror(errno));
  ifr.ifr_flags = (short)(ifr.ifr_flags | IFF_UP);
  if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0) die("bringing lo up: %s", strerror(errno));
  if (close(fd) != 0) die("close: %s", strerror(errno));
}

/* lo gets ::1 as it comes up unless IPv6 is off (ipv6.disable=1, disable_ipv6).
 * AAAA answers still work without it, but connecting to ::1 will not: say so
 * here, where a puzzling test failure would otherwise be the first sign. */
static void check_ipv6_loopback(void) {
  struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0)
    say("note: ::1 is not usable in the namespace (%s): tests that connect to ::1 will fail",
        strerror(errno));
  if (fd >= 0 && close(fd) != 0) die("close: %s", strerror(errno));
}

/* ---- /etc/resolv.conf and /etc/hosts --------------------------------------------- */

typedef struct files {
  char dir[32], resolv[64], hosts[64];
} files;

/* The kernel ignores the type of a bind mount or a propagation change, but
 * valgrind (3.19) reads a NULL one as a string: hence "none". */
static const char k_no_type[] = "none";

static int bind_over(const char *source, const char *target) {
  if (mount(source, target, k_no_type, MS_BIND, NULL) == 0) return 0;
  say("bind-mounting %s over %s: %s", source, target, strerror(errno));
  return -1;
}

/* A network namespace does not cut off Unix sockets in the file system:
 * glibc's nscd client and systemd's nss-resolve would get their answers
 * from daemons outside, which ask the real name server. With a file over
 * each socket, connect() is refused and glibc reads resolv.conf itself. */
static int hide_resolver_daemons(void) {
  static const char *const sockets[] = {"/run/nscd/socket", "/var/run/nscd/socket",
                                        "/run/systemd/resolve/io.systemd.Resolve"};
  for (size_t i = 0; i < ARRAY_LEN(sockets); i++) {
    struct stat st;
    if (stat(sockets[i], &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    if (bind_over("/dev/null", sockets[i]) != 0) return -1;
  }
  return 0;
}

/* Removes what install_files made, even half of it. */
static int remove_files(const files *f) {
  int rc = 0;
  const char *const paths[] = {f->resolv, f->hosts};
  for (size_t i = 0; i < ARRAY_LEN(paths); i++) {
    if (unlink(paths[i]) != 0 && errno != ENOENT) {
      say("cannot remove %s: %s", paths[i], strerror(errno));
      rc = -1;
    }
  }
  if (rmdir(f->dir) != 0) {
    say("cannot remove %s: %s", f->dir, strerror(errno));
    rc = -1;
  }
  return rc;
}

/* Our resolv.conf and hosts, bound over the system's. A timeout of 1 s and 2
 * attempts keep a lost reply from stalling a test; the hosts file is the same
 * on every machine, so `localhost` resolves the same everywhere. */
static void install_files(files *f, int no_server) {
  static const char hosts[] = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n";
  const char *resolv = no_server ? "nameserver 127.0.0.2\noptions timeout:1 attempts:2\n"
                                 : "nameserver 127.0.0.1\noptions timeout:1 attempts:2\n";
  memcpy(f->dir, "/tmp/testns.XXXXXX", sizeof "/tmp/testns.XXXXXX");
  if (!mkdtemp(f->dir)) die("mkdtemp %s: %s", f->dir, strerror(errno));
  snprintf(f->resolv, sizeof f->resolv, "%s/resolv.conf", f->dir);
  snprintf(f->hosts, sizeof f->hosts, "%s/hosts", f->dir);
  if (write_file(f->resolv, resolv, 1) != 0 || write_file(f->hosts, hosts, 1) != 0 ||
      bind_over(f->resolv, "/etc/resolv.conf") != 0 || bind_over(f->hosts, "/etc/hosts") != 0 ||
      hide_resolver_daemons() != 0) {
    remove_files(f);
    exit(1);
  }
}

/* ---- DNS messages (RFC 1035) ------------------------------------------------------ */

typedef struct record {
  const char *name;
  uint16_t type;
  uint8_t rdlen;
  uint8_t rdata[16];  /* A or AAAA */
  const char *target; /* PTR */
} record;

static const record k_records[] = {
    {"test.cport", T_A, 4, {127, 0, 0, 1}, NULL},
    {"v6.test.cport", T_AAAA, 16, {[15] = 1}, NULL},
    {"both.test.cport", T_A, 4, {127, 0, 0, 1}, NULL},
    {"both.test.cport", T_AAAA, 16, {[15] = 1}, NULL},
    {"multi.test.cport", T_A, 4, {127, 0, 0, 1}, NULL},
    {"multi.test.cport", T_A, 4, {127, 0, 0, 2}, NULL},
    {"multi.test.cport", T_A, 4, {127, 0, 0, 3}, NULL},
    {"slow.test.cport", T_A, 4, {127, 0, 0, 1}, NULL},
    {"1.0.0.127.in-addr.arpa", T_PTR, 0, {0}, "test.cport"},
};
static const char k_servfail[] = "servfail.test.cport";
static const char k_slow[] = "slow.test.cport";

typedef struct question {
  uint8_t name[MAX_NAME]; /* uncompressed, in the case it was asked in */
  size_t name_len;
  uint16_t type, cls;
} question;

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static void put16(uint8_t *p, size_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

/* Our names as a query carries them, to compare them as sent: a dotted
 * string would confuse a label holding a dot with two labels. */
static size_t to_wire(const char *dotted, uint8_t out[MAX_NAME]) {
  size_t n = 0;
  while (*dotted) {
    size_t label = strcspn(dotted, ".");
    out[n++] = (uint8_t)label;
    memcpy(out + n, dotted, label);
    n += label;
    dotted += label + (dotted[label] == '.');
  }
  out[n++] = 0;
  return n;
}

static uint8_t ascii_lower(uint8_t c) { return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c; }

/* Case-insensitive (RFC 4343); length octets are below 64, never letters. */
static int same_name(const question *q, const char *dotted) {
  uint8_t ours[MAX_NAME];
  if (to_wire(dotted, ours) != q->name_len) return 0;
  for (size_t i = 0; i < q->name_len; i++)
    if (ascii_lower(q->name[i]) != ascii_lower(ours[i])) return 0;
  return 1;
}

/* The name at *at, uncompressed into q; 0 if malformed. A query has nothing
 * to point back to, but a pointer is legal, so follow one with care: only
 * backwards and past the header, so every hop shrinks, and the name stays
 * within 255 bytes, which also ends a loop through labels. */
static int read_name(const uint8_t *m, size_t len, size_t *at, question *q) {
  size_t pos = *at, end = 0, n = 0;
  for (;;) {
    if (pos >= len) return 0;
    size_t b = m[pos];
    if ((b & 0xc0) == 0xc0) {
      size_t target = pos + 1 < len ? (b & 0x3f) << 8 | m[pos + 1] : pos;
      if (target >= pos || target < HEADER) return 0;
      if (!end) end = pos + 2;
      pos = target;
      continue;
    }
    if (b > 63 || pos + 1 + b > len || n + 1 + b > MAX_NAME) return 0; /* 0x40, 0x80: reserved */
    memcpy(q->name + n, m + pos, 1 + b);
    n += 1 + b;
    pos += 1 + b;
    if (b == 0) break;
  }
  *at = end ? end : pos;
  q->name_len = n;
  return 1;
}

/* Only a standard query with one question: glibc sends nothing else, and
 * answering a response could start a loop. 0 if m is not one. */
static int parse_query(const uint8_t *m, size_t len, question *q) {
  if (len < HEADER || (m[2] & 0xf8) != 0 || get16(m + 4) != 1) return 0; /* QR, OPCODE */
  size_t at = HEADER;
  if (!read_name(m, len, &at, q) || len - at < 4) return 0;
  q->type = get16(m + at);
  q->cls = get16(m + at + 2);
  return 1;
}

/* The records answering q, and the RCODE: a known name asked for a type it
 * lacks has none and NOERROR (NODATA), an unknown one NXDOMAIN. */
static size_t lookup(const question *q, const record **found, int *rcode) {
  size_t count = 0;
  int known = 0;
  *rcode = RC_OK;
  if (same_name(q, k_servfail)) {
    *rcode = RC_SERVFAIL;
    return 0;
  }
  for (size_t i = 0; i < ARRAY_LEN(k_records); i++) {
    const record *r = &k_records[i];
    if (!same_name(q, r->name)) continue;
    known = 1;
    int type_ok = q->type == r->type || q->type == T_ANY;
    if (type_ok && (q->cls == C_IN || q->cls == C_ANY) && count < MAX_ANSWERS) found[count++] = r;
  }
  if (!known) *rcode = RC_NXDOMAIN;
  return count;
}

/* One answer, its owner a pointer to the question's name; TTL 1, so no
 * cache between tests outlives a rewritten resolv.conf. */
static size_t put_answer(uint8_t *out, const record *r) {
  uint8_t rdata[MAX_NAME];
  size_t rdlen = r->target ? to_wire(r->target, rdata) : r->rdlen;
  if (!r->target) memcpy(rdata, r->rdata, rdlen);
  out[0] = 0xc0;
  out[1] = HEADER;
  put16(out + 2, r->type);
  put16(out + 4, C_IN);
  put16(out + 6, 0);
  put16(out + 8, TTL);
  put16(out + 10, rdlen);
  memcpy(out + 12, rdata, rdlen);
  return 12 + rdlen;
}

/* The reply to the query m whose question is q. The largest fits 512 bytes
 * with room to spare: 12 + (255 + 4) + 3 * (12 + 16). */
static size_t build_reply(const uint8_t *m, const question *q, uint8_t out[MAX_MSG]) {
  const record *found[MAX_ANSWERS];
  int rcode;
  size_t count = lookup(q, found, &rcode), n = HEADER;
  memset(out, 0, HEADER);
  memcpy(out, m, 2);                               /* ID */
  out[2] = (uint8_t)(0x80 | 0x04 | (m[2] & 0x01)); /* QR, AA, RD as asked */
  out[3] = (uint8_t)(0x80 | rcode);                /* RA */
  put16(out + 4, 1);
  put16(out + 6, count);
  /* The name as asked but uncompressed: a pointer in the query could point
   * to bytes the header of the reply no longer holds. */
  memcpy(out + n, q->name, q->name_len);
  n += q->name_len;
  put16(out + n, q->type);
  put16(out + n + 2, q->cls);
  n += 4;
  for (size_t i = 0; i < count; i++) n += put_answer(out + n, found[i]);
  return n;
}

/* ---- the name server -------------------------------------------------------------- */

static uint64_t now_ms(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) die("clock_gettime: %s", strerror(errno));
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A reply, to send now or, for slow.test.cport, when due. */
typedef struct reply {
  uint64_t due;
  int conn;             /* index of the TCP connection, or -1: UDP, to `to` */
  unsigned long serial; /* of that connection: a reply outliving it is dropped */
  struct sockaddr_storage to;
  socklen_t to_len;
  size_t len;
  uint8_t msg[2 + MAX_MSG];
} reply;

typedef struct conn {
  int fd; /* -1: a free slot */
  unsigned long serial;
  uint64_t idle_until; /* a client that never closes must not hold a slot for ever */
  size_t have;
  uint8_t buf[2 + MAX_MSG];
} conn;

typedef struct server {
  int sig, udp, tcp;
  unsigned long answered, serials;
  size_t nheld;
  reply held[MAX_HELD];
  conn conns[MAX_TCP];
} server;

static void close_conn(conn *c) {
  if (close(c->fd) != 0) say("name server: close: %s", strerror(errno));
  c->fd = -1;
}

static void deliver(server *s, const reply *r) {
  conn *c = r->conn >= 0 ? &s->conns[r->conn] : NULL;
  if (c && (c->fd < 0 || c->serial != r->serial)) return; /* its connection is gone */
  ssize_t n = c ? send(c->fd, r->msg, r->len, MSG_NOSIGNAL)
                : sendto(s->udp, r->msg, r->len, 0, (const struct sockaddr *)&r->to, r->to_len);
  if (n >= 0 && (size_t)n == r->len) {
    s->answered++;
  } else if (c) {
    close_conn(c); /* a client that will not take a small reply at once is gone or broken */
  } else {
    say("name server: sendto: %s", n < 0 ? strerror(errno) : "short send");
  }
}

/* Answers the query in m (over TCP with its length first), now or, for the
 * slow name, SLOW_MS later without holding up other queries. */
static void handle_query(server *s, const uint8_t *m, size_t len, reply *r) {
  question q;
  if (!parse_query(m, len, &q)) return; /* malformed: no reply at all */
  size_t off = r->conn >= 0 ? 2 : 0;
  r->len = off + build_reply(m, &q, r->msg + off);
  if (off) put16(r->msg, r->len - 2);
  if (!same_name(&q, k_slow)) {
    deliver(s, r);
  } else if (s->nheld == MAX_HELD) {
    say("name server: %d slow replies held already, one dropped", MAX_HELD);
  } else {
    r->due = now_ms() + SLOW_MS;
    s->held[s->nheld++] = *r;
  }
}

/* Every datagram waiting, so that a burst of lookups needs one poll. */
static void on_udp(server *s) {
  for (;;) {
    uint8_t in[MAX_MSG];
    reply r = {.conn = -1, .to_len = sizeof r.to};
    ssize_t n = recvfrom(s->udp, in, sizeof in, MSG_TRUNC, (struct sockaddr *)&r.to, &r.to_len);
    if (n < 0) {
      if (errno != EAGAIN && errno != EINTR) say("name server: recvfrom: %s", strerror(errno));
      return;
    }
    if ((size_t)n <= sizeof in) handle_query(s, in, (size_t)n, &r); /* else no DNS query */
  }
}

static void on_accept(server *s) {
  conn *c = NULL;
  for (size_t i = 0; i < MAX_TCP && !c; i++)
    if (s->conns[i].fd < 0) c = &s->conns[i];
  if (!c) return; /* not polled then */
  int fd = accept4(s->tcp, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
      say("name server: accept4: %s", strerror(errno));
    return;
  }
  *c = (conn){.fd = fd, .serial = ++s->serials, .idle_until = now_ms() + TCP_IDLE_MS};
}

/* Answers every whole query the connection has sent: glibc writes its A and
 * AAAA queries back to back, each after its 2-byte length. */
static void on_tcp(server *s, size_t i) {
  conn *c = &s->conns[i];
  ssize_t n = recv(c->fd, c->buf + c->have, sizeof c->buf - c->have, 0);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    close_conn(c); /* closed, or reset: both normal for a client done with us */
    return;
  }
  c->have += (size_t)n;
  c->idle_until = now_ms() + TCP_IDLE_MS;
  while (c->fd >= 0 && c->have >= 2) {
    size_t len = get16(c->buf);
    if (len == 0 || len > MAX_MSG) {
      close_conn(c); /* no query is that long: not a DNS client */
      return;
    }
    if (c->have < 2 + len) return;
    reply r = {.conn = (int)i, .serial = c->serial};
    handle_query(s, c->buf + 2, len, &r);
    c->have -= 2 + len;
    memmove(c->buf, c->buf + 2 + len, c->have);
  }
}

/* Sends the held replies that are due and drops idle connections. */
static void on_timers(server *s) {
  uint64_t now = now_ms();
  for (size_t i = 0; i < s->nheld;) {
    if (s->held[i].due > now) {
      i++;
      continue;
    }
    reply r = s->held[i];
    s->held[i] = s->held[--s->nheld];
    deliver(s, &r);
  }
  for (size_t i = 0; i < MAX_TCP; i++)
    if (s->conns[i].fd >= 0 && s->conns[i].idle_until <= now) close_conn(&s->conns[i]);
}

/* Until the next held reply or idle connection is due; -1 if none is. */
static int poll_timeout(const server *s) {
  uint64_t next = UINT64_MAX, now = now_ms();
  for (size_t i = 0; i < s->nheld; i++)
    if (s->held[i].due < next) next = s->held[i].due;
  for (size_t i = 0; i < MAX_TCP; i++)
    if (s->conns[i].fd >= 0 && s->conns[i].idle_until < next) next = s->conns[i].idle_until;
  if (next == UINT64_MAX) return -1;
  return next <= now ? 0 : (int)(next - now);
}

enum { P_SIG, P_UDP, P_TCP, P_CONN, P_COUNT = P_CONN + MAX_TCP };

/* poll ignores a negative fd: a free slot, or the listener while every slot
 * is taken (new connections wait in its backlog meanwhile). */
static void poll_set(const server *s, struct pollfd p[P_COUNT]) {
  int room = 0;
  for (size_t i = 0; i < MAX_TCP; i++) {
    p[P_CONN + i] = (struct pollfd){s->conns[i].fd, POLLIN, 0};
    room |= s->conns[i].fd < 0;
  }
  p[P_SIG] = (struct pollfd){s->sig, POLLIN, 0};
  p[P_UDP] = (struct pollfd){s->udp, POLLIN, 0};
  p[P_TCP] = (struct pollfd){room ? s->tcp : -1, POLLIN, 0};
}

/* SIGTERM, blocked since before the fork, is read from a signalfd: no
 * handler, no flag, and no window where it could be missed. */
static int server_signals(pid_t parent) {
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  int fd = signalfd(-1, &term, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) die("name server: signalfd: %s", strerror(errno));
  /* If testns is killed, the server must not linger in the namespace. */
  if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) die("name server: prctl: %s", strerror(errno));
  if (getppid() != parent) _exit(0); /* it died before prctl */
  return fd;
}

__attribute__((noreturn)) static void serve(int udp, int tcp, pid_t parent) {
  static server s; /* about 90 KB, off the stack; only this child uses it */
  s.sig = server_signals(parent);
  s.udp = udp;
  s.tcp = tcp;
  for (size_t i = 0; i < MAX_TCP; i++) s.conns[i].fd = -1;
  for (;;) {
    struct pollfd p[P_COUNT];
    poll_set(&s, p);
    if (poll(p, P_COUNT, poll_timeout(&s)) < 0) {
      if (errno == EINTR) continue;
      die("name server: poll: %s", strerror(errno));
    }
    if (p[P_SIG].revents) break;
    if (p[P_UDP].revents) on_udp(&s);
    for (size_t i = 0; i < MAX_TCP; i++)
      if (p[P_CONN + i].revents && s.conns[i].fd >= 0) on_tcp(&s, i);
    if (p[P_TCP].revents) on_accept(&s);
    on_timers(&s);
  }
  say("name server answered %lu queries", s.answered);
  _exit(0);
}

static int bound_socket(int type) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(DNS_PORT)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("name server: socket: %s", strerror(errno));
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0)
    die("name server: bind 127.0.0.1:%d: %s", DNS_PORT, strerror(errno));
  if (type == SOCK_STREAM && listen(fd, MAX_TCP) != 0)
    die("name server: listen: %s", strerror(errno));
  return fd;
}

/* Bound before the fork, so the server is ready when CMD starts. */
static pid_t start_server(void) {
  int udp = bound_socket(SOCK_DGRAM), tcp = bound_socket(SOCK_STREAM);
  pid_t parent = getpid(), pid = fork();
  if (pid < 0) die("fork: %s", strerror(errno));
  if (pid == 0) serve(udp, tcp, parent);
  if (close(udp) != 0 || close(tcp) != 0) die("close: %s", strerror(errno));
  return pid;
}

/* ---- a listener that never answers ------------------------------------------------ */

/* A listener on [::1] whose accept queue is full: its backlog is 0 and one
 * connection, never accepted, fills it, so the kernel drops every further
 * SYN and a connect there hangs (Happy Eyeballs needs an address that neither
 * answers nor refuses). Its sockets stay open while CMD runs. */
static unsigned stuck_listener(void) {
  struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  socklen_t len = sizeof a;
  int l = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 0) != 0 ||
      getsockname(l, (struct sockaddr *)&a, &len) != 0)
    die("stuck listener on [::1]: %s", strerror(errno));
  for (int i = 0; i < 2; i++) { /* one fills the queue; one more is in SYN_RECV at most */
    int c = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (c < 0 || (connect(c, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS))
      die("filling the stuck listener: %s", strerror(errno));
  }
  const struct timespec settle = {0, 50 * 1000 * 1000};
  if (nanosleep(&settle, NULL) != 0) die("nanosleep: %s", strerror(errno));
  return ntohs(a.sin6_port);
}

/* ---- the command ------------------------------------------------------------------ */

typedef struct options {
  int print_env, no_server, stuck;
} options;

static int parse_args(int argc, char **argv, options *o) {
  int i = 1;
  for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
    if (strcmp(argv[i], "--print-env") == 0) {
      o->print_env = 1;
    } else if (strcmp(argv[i], "--no-server") == 0) {
      o->no_server = 1;
    } else if (strcmp(argv[i], "--stuck-listener") == 0) {
      o->stuck = 1;
    } else {
      break;
    }
  }
  if (i + 1 >= argc || strcmp(argv[i], "--") != 0) {
    fputs("usage: testns [--print-env] [--no-server] [--stuck-listener] -- CMD [ARGS...]\n",
          stderr);
    exit(2);
  }
  return i + 1;
}

/* The stuck listener's port, if any, is not 0. */
static int set_env(const options *o, const files *f, unsigned stuck_port) {
  const char *names[] = {"CPORT_TEST_DNS", "CPORT_TEST_RESOLV_CONF", "CPORT_TEST_STUCK_PORT"};
  char port[16] = "";
  if (stuck_port) snprintf(port, sizeof port, "%u", stuck_port);
  const char *values[] = {o->no_server ? "none" : "1", f->resolv, port};
  for (size_t i = 0; i < ARRAY_LEN(names); i++) {
    if (!values[i][0]) continue;
    if (setenv(names[i], values[i], 1) != 0) {
      say("setenv %s: %s", names[i], strerror(errno));
      return -1;
    }
    if (o->print_env) fprintf(stderr, "%s=%s\n", names[i], values[i]);
  }
  return 0;
}

/* Terminal and job-control signals are blocked in testns, to be forwarded to
 * CMD (and the temporary files removed after it), and SIGCHLD to be waited
 * for; the name server reads SIGTERM from a signalfd. */
static void block_signals(sigset_t *set, sigset_t *old) {
  static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD};
  sigemptyset(set);
  for (size_t i = 0; i < ARRAY_LEN(sigs); i++) sigaddset(set, sigs[i]);
  if (sigprocmask(SIG_BLOCK, set, old) != 0) die("sigprocmask: %s", strerror(errno));
}

/* -1 if fork fails. */
static pid_t spawn(char **argv, const sigset_t *old) {
  pid_t pid = fork();
  if (pid < 0) say("fork: %s", strerror(errno));
  if (pid != 0) return pid;
  if (sigprocmask(SIG_SETMASK, old, NULL) != 0) {
    say("sigprocmask: %s", strerror(errno));
    _exit(126);
  }
  execvp(argv[0], argv);
  int err = errno;
  say("cannot run %s: %s", argv[0], strerror(err));
  _exit(err == ENOENT ? 127 : 126);
}

static int exit_code(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* CMD's exit code. A signal the kernel sent (a terminal's ^C) reached CMD's
 * process group already; one sent to testns (kill, timeout) is passed on. */
static int wait_command(pid_t cmd, const sigset_t *set) {
  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(set, &si), status;
    if (sig < 0 && errno == EINTR) continue;
    if (sig < 0) die("sigwaitinfo: %s", strerror(errno));
    if (sig != SIGCHLD) {
      if (si.si_code != SI_KERNEL && kill(cmd, sig) != 0 && errno != ESRCH)
        say("passing on signal %d: %s", sig, strerror(errno));
      continue;
    }
    pid_t r = waitpid(cmd, &status, WNOHANG); /* SIGCHLD may be the name server's */
    if (r < 0) die("waitpid: %s", strerror(errno));
    if (r == cmd) return exit_code(status);
  }
}

/* 0 if the name server ran to the end and exited as asked. */
static int stop_server(pid_t pid) {
  int status;
  if (kill(pid, SIGTERM) != 0 && errno != ESRCH) say("kill: %s", strerror(errno));
  if (waitpid(pid, &status, 0) != pid) {
    say("waitpid (name server): %s", strerror(errno));
    return -1;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
  say("the name server failed (%s %d)", WIFEXITED(status) ? "exit status" : "signal",
      WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
  return -1;
}

int main(int argc, char **argv) {
  options o = {0};
  int cmd = parse_args(argc, argv, &o);
  enter_namespaces();
  /* Nothing we mount may propagate out, where / is often shared (systemd). */
  if (mount(NULL, "/", k_no_type, MS_REC | MS_PRIVATE, NULL) != 0)
    die("making / private: %s", strerror(errno));
  loopback_up();
  check_ipv6_loopback();
  sigset_t set, old;
  block_signals(&set, &old); /* before the fork: the server's SIGTERM is never lost */
  pid_t server_pid = o.no_server ? 0 : start_server();
  unsigned stuck_port = o.stuck ? stuck_listener() : 0;
  files f; /* made last: from here on, a failure removes them */
  install_files(&f, o.no_server);
  pid_t pid = set_env(&o, &f, stuck_port) == 0 ? spawn(argv + cmd, &old) : -1;
  int rc = pid > 0 ? wait_command(pid, &set) : 1;
  if (server_pid > 0 && stop_server(server_pid) != 0 && rc == 0) rc = 1;
  if (remove_files(&f) != 0 && rc == 0) rc = 1;
  return rc;
}
