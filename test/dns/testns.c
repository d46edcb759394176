/*
 * testns: run a command in a private network and mount namespace with its
 * own name server, so that name-resolution tests get real DNS answers and
 * failures and no lookup leaves the machine (test/dns/README.md).
 *
 *   testns [--print-env] [--no-server] -- CMD [ARGS...]
 *
 * CMD gets CPORT_TEST_DNS=1 (the name server answers on 127.0.0.1) or,
 * with --no-server, CPORT_TEST_DNS=none (resolv.conf names 127.0.0.2,
 * where nothing listens: every query is refused). --stuck-listener also
 * holds a listener on [::1] that takes no connection, and names its port
 * in CPORT_TEST_STUCK_PORT.
 *
 * Linux only; needs root or unprivileged user namespaces. Exit status:
 * CMD's (128 + signal if a signal ended it), or 1 if the namespace could
 * not be made: a failure, never a skip.
 */
#include <arpa/inet.h>
#include <errno.h>
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
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DNS_PORT 53
#define MAX_MSG 512
#define SLOW_MS 1500
#define MAX_DELAYED 256
#define MAX_TCP 16

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("testns: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

/* ---- the namespace ---------------------------------------------------------- */

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f || fputs(text, f) < 0 || fclose(f) != 0) die("cannot write %s: %s", path, strerror(errno));
}

/* As root: a new network and mount namespace. Otherwise, or if that is
 * refused, inside a user namespace that maps us to root (unshare -r). */
static void enter_namespaces(void) {
  if (unshare(CLONE_NEWNS | CLONE_NEWNET) == 0) return;
  if (errno != EPERM) die("unshare: %s", strerror(errno));
  uid_t uid = getuid();
  gid_t gid = getgid();
  if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET) != 0)
    die("unshare: %s (needs root or unprivileged user namespaces)", strerror(errno));
  char map[64];
  snprintf(map, sizeof map, "0 %u 1\n", (unsigned)uid);
  write_file("/proc/self/uid_map", map);
  write_file("/proc/self/setgroups", "deny\n");
  snprintf(map, sizeof map, "0 %u 1\n", (unsigned)gid);
  write_file("/proc/self/gid_map", map);
}

static void loopback_up(void) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) != 0) die("lo: %s", strerror(errno));
  ifr.ifr_flags = (short)(ifr.ifr_flags | IFF_UP);
  if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0) die("bringing lo up: %s", strerror(errno));
  close(fd);
}

/* Our own resolv.conf and hosts, bind-mounted over the system's. */
static void private_files(char *dir, size_t dir_size, char *resolv, size_t resolv_size,
                          int no_server) {
  snprintf(dir, dir_size, "/tmp/testns.XXXXXX");
  if (!mkdtemp(dir)) die("mkdtemp: %s", strerror(errno));
  char hosts[256];
  snprintf(resolv, resolv_size, "%s/resolv.conf", dir);
  snprintf(hosts, sizeof hosts, "%s/hosts", dir);
  /* --no-server: nothing listens on 127.0.0.2, so every query is refused. */
  write_file(resolv, no_server ? "nameserver 127.0.0.2\noptions timeout:3 attempts:2\n"
                               : "nameserver 127.0.0.1\noptions timeout:3 attempts:2\n");
  write_file(hosts, "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n");
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
    die("making / private: %s", strerror(errno));
  if (mount(resolv, "/etc/resolv.conf", NULL, MS_BIND, NULL) != 0)
    die("bind-mounting resolv.conf: %s", strerror(errno));
  if (mount(hosts, "/etc/hosts", NULL, MS_BIND, NULL) != 0)
    die("bind-mounting hosts: %s", strerror(errno));
}

/* ---- the name server ---------------------------------------------------------- */

enum { T_A = 1, T_PTR = 12, T_AAAA = 28 };
enum { RC_OK = 0, RC_SERVFAIL = 2, RC_NXDOMAIN = 3 };

typedef struct record {
  const char *name;
  int type;
  const char *value; /* an address, or a name for PTR */
} record;

static const record k_table[] = {
    {"test.cport", T_A, "127.0.0.1"},
    {"v6.test.cport", T_AAAA, "::1"},
    {"both.test.cport", T_A, "127.0.0.1"},
    {"both.test.cport", T_AAAA, "::1"},
    {"multi.test.cport", T_A, "127.0.0.1"},
    {"multi.test.cport", T_A, "127.0.0.2"},
    {"multi.test.cport", T_A, "127.0.0.3"},
    {"slow.test.cport", T_A, "127.0.0.1"},
    {"1.0.0.127.in-addr.arpa", T_PTR, "test.cport"},
};
static const char *const k_servfail = "servfail.test.cport";
static const char *const k_slow = "slow.test.cport";

typedef struct query {
  char name[256];
  int type;
  size_t end; /* where the question ends */
} query;

/* The question of a query; 0 if it is malformed. Queries never compress
 * their one name, so a pointer is malformed here too. */
static int parse_query(const uint8_t *m, size_t len, query *q) {
  if (len < 12 || (m[2] & 0x80) || m[4] != 0 || m[5] != 1) return 0;
  size_t at = 12, out = 0;
  while (at < len && m[at] != 0) {
    size_t label = m[at++];
    if (label > 63 || at + label > len || out + label + 1 >= sizeof q->name) return 0;
    if (out) q->name[out++] = '.';
    memcpy(q->name + out, m + at, label);
    out += label;
    at += label;
  }
  if (at + 5 > len) return 0;
  q->name[out] = '\0';
  q->type = m[at + 1] << 8 | m[at + 2];
  q->end = at + 5;
  return 1;
}

static size_t put_name(uint8_t *out, const char *name) {
  size_t n = 0;
  while (*name) {
    const char *dot = strchr(name, '.');
    size_t label = dot ? (size_t)(dot - name) : strlen(name);
    out[n++] = (uint8_t)label;
    memcpy(out + n, name, label);
    n += label;
    name += label + (dot ? 1 : 0);
  }
  out[n++] = 0;
  return n;
}

/* One answer record for r, its name a pointer to the question's. */
static size_t put_answer(uint8_t *out, const record *r) {
  size_t n = 0;
  uint8_t rdata[256];
  size_t rlen;
  if (r->type == T_A) {
    inet_pton(AF_INET, r->value, rdata);
    rlen = 4;
  } else if (r->type == T_AAAA) {
    inet_pton(AF_INET6, r->value, rdata);
    rlen = 16;
  } else {
    rlen = put_name(rdata, r->value);
  }
  const uint8_t head[] = {0xc0, 12, 0, (uint8_t)r->type, 0, 1, 0, 0, 0, 1, 0, (uint8_t)rlen};
  memcpy(out, head, sizeof head);
  n = sizeof head;
  memcpy(out + n, rdata, rlen);
  return n + rlen;
}

static int known_name(const char *name) {
  for (size_t i = 0; i < sizeof k_table / sizeof k_table[0]; i++)
    if (strcasecmp(k_table[i].name, name) == 0) return 1;
  return 0;
}

/* The reply to a query in m; its length (0: no reply). */
static size_t answer(const uint8_t *m, size_t len, uint8_t *out, int *slow) {
  query q;
  if (!parse_query(m, len, &q)) return 0;
  memcpy(out, m, q.end);
  out[2] = (uint8_t)(0x80 | 0x04 | (m[2] & 0x01)); /* QR, AA, RD as asked */
  out[6] = out[7] = out[8] = out[9] = out[10] = out[11] = 0;
  *slow = strcasecmp(q.name, k_slow) == 0;
  int rcode = strcasecmp(q.name, k_servfail) == 0 ? RC_SERVFAIL
              : known_name(q.name)                ? RC_OK
                                                  : RC_NXDOMAIN;
  out[3] = (uint8_t)(0x80 | rcode); /* RA */
  size_t n = q.end, count = 0;
  for (size_t i = 0; rcode == RC_OK && i < sizeof k_table / sizeof k_table[0]; i++) {
    if (strcasecmp(k_table[i].name, q.name) != 0 || k_table[i].type != q.type) continue;
    n += put_answer(out + n, &k_table[i]);
    count++;
  }
  out[7] = (uint8_t)count;
  return n;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A UDP reply held back (slow.test.cport). */
typedef struct delayed {
  uint64_t due;
  struct sockaddr_storage to;
  socklen_t to_len;
  size_t len;
  uint8_t msg[MAX_MSG];
} delayed;

typedef struct server {
  int udp, tcp;
  delayed held[MAX_DELAYED];
  size_t nheld;
} server;

static void on_udp(server *s) {
  uint8_t in[MAX_MSG], out[MAX_MSG];
  struct sockaddr_storage from;
  socklen_t from_len = sizeof from;
  ssize_t n = recvfrom(s->udp, in, sizeof in, 0, (struct sockaddr *)&from, &from_len);
  int slow = 0;
  size_t len = n > 0 ? answer(in, (size_t)n, out, &slow) : 0;
  if (len == 0) return;
  if (!slow || s->nheld == MAX_DELAYED) {
    sendto(s->udp, out, len, 0, (struct sockaddr *)&from, from_len);
    return;
  }
  delayed *d = &s->held[s->nheld++];
  d->due = now_ms() + SLOW_MS;
  d->to = from;
  d->to_len = from_len;
  d->len = len;
  memcpy(d->msg, out, len);
}

static void send_due(server *s) {
  uint64_t now = now_ms();
  for (size_t i = 0; i < s->nheld;) {
    if (s->held[i].due > now) {
      i++;
      continue;
    }
    delayed *d = &s->held[i];
    sendto(s->udp, d->msg, d->len, 0, (struct sockaddr *)&d->to, d->to_len);
    s->held[i] = s->held[--s->nheld];
  }
}

/* TCP (glibc's fallback): one query per connection, answered at once. */
static void on_tcp(server *s) {
  int c = accept4(s->tcp, NULL, NULL, SOCK_CLOEXEC);
  if (c < 0) return;
  struct timeval tv = {1, 0};
  setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  uint8_t in[2 + MAX_MSG], out[2 + MAX_MSG];
  ssize_t n = recv(c, in, sizeof in, MSG_WAITALL);
  size_t want = n >= 2 ? (size_t)(in[0] << 8 | in[1]) : 0;
  int slow = 0;
  size_t len = want && (size_t)n >= want + 2 ? answer(in + 2, want, out + 2, &slow) : 0;
  if (len) {
    out[0] = (uint8_t)(len >> 8);
    out[1] = (uint8_t)len;
    send(c, out, len + 2, MSG_NOSIGNAL);
  }
  close(c);
}

static int next_timeout(const server *s) {
  if (s->nheld == 0) return -1;
  uint64_t now = now_ms(), first = UINT64_MAX;
  for (size_t i = 0; i < s->nheld; i++)
    if (s->held[i].due < first) first = s->held[i].due;
  return first <= now ? 0 : (int)(first - now);
}

static volatile sig_atomic_t g_stop;
static void on_term(int sig) {
  (void)sig;
  g_stop = 1;
}

static void serve(server *s) {
  signal(SIGTERM, on_term);
  while (!g_stop) {
    struct pollfd p[2] = {{s->udp, POLLIN, 0}, {s->tcp, POLLIN, 0}};
    int n = poll(p, 2, next_timeout(s));
    if (n < 0 && errno != EINTR) _exit(1);
    if (n > 0 && (p[0].revents & POLLIN)) on_udp(s);
    if (n > 0 && (p[1].revents & POLLIN)) on_tcp(s);
    send_due(s);
  }
  _exit(0);
}

static int bound_socket(int type) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(DNS_PORT)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
      (type == SOCK_STREAM && listen(fd, MAX_TCP) != 0))
    die("name server socket: %s", strerror(errno));
  return fd;
}

/* Bound before the fork: the server is ready when CMD starts. */
static pid_t start_server(void) {
  static server s;
  s.udp = bound_socket(SOCK_DGRAM);
  s.tcp = bound_socket(SOCK_STREAM);
  pid_t pid = fork();
  if (pid < 0) die("fork: %s", strerror(errno));
  if (pid == 0) serve(&s);
  close(s.udp);
  close(s.tcp);
  return pid;
}

/* ---- a listener that never answers ---------------------------------------------- */

/* A listener on [::1] whose accept queue is full: its backlog is 0 and one
 * connection, never accepted, fills it, so the kernel drops every further
 * SYN and a connect there hangs (a client's Happy Eyeballs test needs an
 * address that neither answers nor refuses). Returns its port; the sockets
 * stay open, unaccepted, while CMD runs. */
static unsigned stuck_listener(void) {
  struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  socklen_t len = sizeof a;
  int l = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 0) != 0 ||
      getsockname(l, (struct sockaddr *)&a, &len) != 0)
    die("stuck listener: %s", strerror(errno));
  for (int i = 0; i < 2; i++) { /* one fills the queue; one more is in SYN_RECV at most */
    int c = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (c < 0 || (connect(c, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS))
      die("filling the stuck listener: %s", strerror(errno));
  }
  usleep(50000); /* the handshakes finish: the queue is full before CMD starts */
  return ntohs(a.sin6_port);
}

/* ---- the command ---------------------------------------------------------------- */

static int run(char **argv) {
  pid_t pid = fork();
  if (pid < 0) die("fork: %s", strerror(errno));
  if (pid == 0) {
    execvp(argv[0], argv);
    fprintf(stderr, "testns: %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) die("waitpid: %s", strerror(errno));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv) {
  int i = 1, print_env = 0, no_server = 0, stuck = 0;
  for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
    if (strcmp(argv[i], "--print-env") == 0)
      print_env = 1;
    else if (strcmp(argv[i], "--no-server") == 0)
      no_server = 1;
    else if (strcmp(argv[i], "--stuck-listener") == 0)
      stuck = 1;
    else
      break;
  }
  if (i >= argc || strcmp(argv[i], "--") != 0 || i + 1 >= argc) {
    fprintf(stderr,
            "usage: testns [--print-env] [--no-server] [--stuck-listener] -- CMD [ARGS...]\n");
    return 2;
  }
  char dir[64], resolv[128];
  enter_namespaces();
  loopback_up();
  private_files(dir, sizeof dir, resolv, sizeof resolv, no_server);
  pid_t server = no_server ? 0 : start_server();
  setenv("CPORT_TEST_DNS", no_server ? "none" : "1", 1);
  if (stuck) {
    char port[16];
    snprintf(port, sizeof port, "%u", stuck_listener());
    setenv("CPORT_TEST_STUCK_PORT", port, 1);
  }
  if (print_env) fprintf(stderr, "CPORT_TEST_DNS=%s\n", no_server ? "none" : "1");
  int rc = run(argv + i + 1);
  if (server > 0) {
    kill(server, SIGTERM);
    waitpid(server, NULL, 0);
  }
  char path[160];
  snprintf(path, sizeof path, "%s/hosts", dir);
  umount2("/etc/resolv.conf", MNT_DETACH);
  umount2("/etc/hosts", MNT_DETACH);
  unlink(resolv);
  unlink(path);
  rmdir(dir);
  return rc;
}
