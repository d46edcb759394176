/*
 * raw_epoll: the hand-written reference echo server on plain epoll, tuned.
 *
 *   raw_epoll --port N [--host 127.0.0.1] [--trigger lt|et]
 *
 * lt (default, measured faster, see bench/README.md): each connection is
 * registered for EPOLLIN. A readable event does one recv and one send of
 * what came; only if the send is partial does the connection switch to
 * EPOLLOUT (and so stop reading) until the echo is out. Per 64-byte ping
 * that is epoll_wait (shared), recv, send: no epoll_ctl, no EAGAIN recv.
 *
 * et: registered once for EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET, never
 * modified. A connection reads until a short read (a short read proves the
 * queue was empty; any later byte raises a new edge), echoing each read
 * before the next; a partial send waits for the EPOLLOUT edge.
 */
#define _GNU_SOURCE
#include "peer_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define SIGNAL_KEY ((void *)1)

typedef struct conn {
  int fd;
  uint32_t len, off; /* echo pending: buf[off..len) */
  unsigned char buf[PEER_BUF_SIZE];
} conn;

static int g_ep, g_listen_fd, g_et;

static void conn_free(conn *c) {
  close(c->fd); /* also leaves the epoll set */
  free(c);
}

static void set_events(conn *c, uint32_t ev) {
  struct epoll_event e = {.events = ev, .data.ptr = c};
  epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &e);
}

/* Sends the pending echo. 1: all out; 0: would block; -1: error. */
static int flush(conn *c) {
  while (c->off < c->len) {
    ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
    if (n > 0) {
      c->off += (uint32_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      return 0;
    } else {
      return -1;
    }
  }
  c->off = c->len = 0;
  return 1;
}

/* Level-triggered. Returns -1 when the connection is finished. */
static int on_lt(conn *c, uint32_t ev) {
  if (c->len) { /* waiting for EPOLLOUT */
    int r = flush(c);
    if (r < 0) return -1;
    if (r == 1) set_events(c, EPOLLIN);
    return 0;
  }
  if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR))) return 0;
  ssize_t n = recv(c->fd, c->buf, sizeof c->buf, 0);
  if (n == 0) return -1;
  if (n < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
  c->len = (uint32_t)n;
  c->off = 0;
  int r = flush(c);
  if (r < 0) return -1;
  if (r == 0) set_events(c, EPOLLOUT); /* stop reading until the echo is out */
  return 0;
}

/* Edge-triggered. Returns -1 when the connection is finished. */
static int on_et(conn *c, uint32_t ev) {
  int rdhup = (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
  for (;;) {
    int r = flush(c);
    if (r < 0) return -1;
    if (r == 0) return 0; /* the EPOLLOUT edge continues */
    ssize_t n = recv(c->fd, c->buf, sizeof c->buf, 0);
    if (n == 0) return -1;
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN ? 0 : -1;
    }
    c->len = (uint32_t)n;
    c->off = 0;
    if ((size_t)n < sizeof c->buf && !rdhup) {
      /* Short read: the queue was empty; a later byte makes a new edge. */
      r = flush(c);
      return r < 0 ? -1 : 0;
    }
  }
}

static void on_accept(void) {
  for (;;) {
    int fd = accept4(g_listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
      return; /* EAGAIN, or EMFILE & co: try again on the next event */
    }
    conn *c = malloc(sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    c->fd = fd;
    c->len = c->off = 0;
    struct epoll_event e = {.events = g_et ? EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET : EPOLLIN,
                            .data.ptr = c};
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &e) != 0) conn_free(c);
  }
}

int main(int argc, char **argv) {
  /* --trigger is ours; the rest goes to peer_parse. */
  char *args[16];
  int nargs = 0;
  for (int i = 0; i < argc && nargs < 15; i++) {
    if (i + 1 < argc && strcmp(argv[i], "--trigger") == 0) {
      g_et = strcmp(argv[++i], "et") == 0;
      continue;
    }
    args[nargs++] = argv[i];
  }
  peer_opts o;
  if (peer_parse(nargs, args, &o, "raw_epoll") != 0) return 2;

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  signal(SIGPIPE, SIG_IGN);
  int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);

  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o.port)};
  if (inet_pton(AF_INET, o.host, &sa.sin_addr) != 1) {
    fprintf(stderr, "raw_epoll: bad --host\n");
    return 2;
  }
  g_listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(g_listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  socklen_t len = sizeof sa;
  if (bind(g_listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
      listen(g_listen_fd, SOMAXCONN) != 0 ||
      getsockname(g_listen_fd, (struct sockaddr *)&sa, &len) != 0) {
    perror("raw_epoll: listen");
    return 1;
  }
  g_ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(g_ep, EPOLL_CTL_ADD, g_listen_fd, &e);
  e.data.ptr = SIGNAL_KEY;
  epoll_ctl(g_ep, EPOLL_CTL_ADD, sfd, &e);
  peer_listening(ntohs(sa.sin_port));

  struct epoll_event evs[MAX_EVENTS];
  for (;;) {
    int n = epoll_wait(g_ep, evs, MAX_EVENTS, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      perror("raw_epoll: epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; i++) {
      void *p = evs[i].data.ptr;
      if (p == NULL) {
        on_accept();
      } else if (p == SIGNAL_KEY) {
        return 0;
      } else {
        conn *c = p;
        if ((g_et ? on_et(c, evs[i].events) : on_lt(c, evs[i].events)) < 0) conn_free(c);
      }
    }
  }
}
