/*
 * uring_echo: echo server on liburing, the idiomatic way for one thread:
 * a ring set up SINGLE_ISSUER|DEFER_TASKRUN (falling back to COOP_TASKRUN,
 * then to none, on older kernels), a multishot accept, and per connection
 * recv -> send (resubmitted until whole) -> recv, one 64 KiB buffer each.
 * io_uring_submit_and_wait, then every ready CQE in one batch. SIGTERM
 * arrives as a read on a signalfd.
 *
 *   uring_echo --port N [--host 127.0.0.1]
 */
#define _GNU_SOURCE
#include "peer_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

enum { OP_ACCEPT = 0, OP_RECV = 1, OP_SEND = 2, OP_SIGNAL = 3 };

typedef struct conn {
  int fd;
  uint32_t len, off; /* echo pending: buf[off..len) */
  unsigned char buf[PEER_BUF_SIZE];
} conn;

static struct io_uring g_ring;
static int g_listen_fd;
static struct signalfd_siginfo g_siginfo;

static struct io_uring_sqe *sqe_get(void) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(&g_ring);
  while (!sqe) {
    io_uring_submit(&g_ring);
    sqe = io_uring_get_sqe(&g_ring);
  }
  return sqe;
}

static void set_data(struct io_uring_sqe *sqe, void *p, unsigned op) {
  io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)p | op);
}

static void arm_accept(void) {
  struct io_uring_sqe *sqe = sqe_get();
  io_uring_prep_multishot_accept(sqe, g_listen_fd, NULL, NULL, SOCK_CLOEXEC);
  set_data(sqe, NULL, OP_ACCEPT);
}

static void arm_recv(conn *c) {
  struct io_uring_sqe *sqe = sqe_get();
  io_uring_prep_recv(sqe, c->fd, c->buf, sizeof c->buf, 0);
  set_data(sqe, c, OP_RECV);
}

static void arm_send(conn *c) {
  struct io_uring_sqe *sqe = sqe_get();
  io_uring_prep_send(sqe, c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
  set_data(sqe, c, OP_SEND);
}

static void conn_free(conn *c) {
  close(c->fd); /* nothing of ours is pending on it: ops alternate */
  free(c);
}

static int setup_ring(void) {
  static const unsigned flag_sets[] = {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
                                       IORING_SETUP_COOP_TASKRUN, 0};
  int rc = -EINVAL;
  for (unsigned i = 0; i < sizeof flag_sets / sizeof flag_sets[0]; i++) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = flag_sets[i] | IORING_SETUP_SUBMIT_ALL;
    rc = io_uring_queue_init_params(4096, &g_ring, &p);
    if (rc == 0) return 0;
  }
  fprintf(stderr, "uring_echo: io_uring_queue_init: %s\n", strerror(-rc));
  return -1;
}

int main(int argc, char **argv) {
  peer_opts o;
  if (peer_parse(argc, argv, &o, "uring_echo") != 0) return 2;

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  signal(SIGPIPE, SIG_IGN);
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC);

  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o.port)};
  if (inet_pton(AF_INET, o.host, &sa.sin_addr) != 1) {
    fprintf(stderr, "uring_echo: bad --host\n");
    return 2;
  }
  g_listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(g_listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  socklen_t len = sizeof sa;
  if (bind(g_listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
      listen(g_listen_fd, SOMAXCONN) != 0 ||
      getsockname(g_listen_fd, (struct sockaddr *)&sa, &len) != 0) {
    perror("uring_echo: listen");
    return 1;
  }
  if (setup_ring() != 0) return 1;

  arm_accept();
  struct io_uring_sqe *sqe = sqe_get();
  io_uring_prep_read(sqe, sfd, &g_siginfo, sizeof g_siginfo, 0);
  set_data(sqe, NULL, OP_SIGNAL);
  peer_listening(ntohs(sa.sin_port));

  for (;;) {
    int rc = io_uring_submit_and_wait(&g_ring, 1);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      fprintf(stderr, "uring_echo: submit_and_wait: %s\n", strerror(-rc));
      return 1;
    }
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&g_ring, head, cqe) {
      seen++;
      uint64_t data = io_uring_cqe_get_data64(cqe);
      unsigned op = (unsigned)(data & 3u);
      conn *c = (conn *)(uintptr_t)(data & ~(uint64_t)3u);
      int res = cqe->res;
      switch (op) {
      case OP_SIGNAL: return 0;
      case OP_ACCEPT:
        if (!(cqe->flags & IORING_CQE_F_MORE)) arm_accept(); /* multishot ended */
        if (res >= 0) {
          conn *n = malloc(sizeof *n);
          if (!n) {
            close(res);
            break;
          }
          n->fd = res;
          n->len = n->off = 0;
          arm_recv(n);
        }
        break;
      case OP_RECV:
        if (res <= 0) { /* EOF or an error */
          conn_free(c);
          break;
        }
        c->len = (uint32_t)res;
        c->off = 0;
        arm_send(c); /* no reading while the echo is unsent */
        break;
      case OP_SEND:
        if (res < 0) {
          conn_free(c);
          break;
        }
        c->off += (uint32_t)res;
        if (c->off < c->len)
          arm_send(c);
        else
          arm_recv(c);
        break;
      }
    }
    io_uring_cq_advance(&g_ring, seen);
  }
}
