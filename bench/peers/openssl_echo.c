/*
 * openssl_echo: the reference TLS echo server, plain OpenSSL 3 on epoll.
 *
 *   openssl_echo --port N --cert server.pem --key server.key
 *                [--host 127.0.0.1] [--read-ahead 0|1]
 *
 * The peer of cport's examples/tls_echo_server.c in the tls-stream and
 * tls-handshake scenarios (bench/run.sh): one thread, level-triggered
 * epoll, non-blocking sockets with the SSL object reading and writing the
 * socket itself (SSL_set_fd), SSL_accept/SSL_read/SSL_write driven by
 * SSL_ERROR_WANT_READ/WANT_WRITE. The same TLS settings as cport's OpenSSL
 * engine where they change the bytes on the wire: TLS 1.2 minimum (1.3
 * negotiated), OpenSSL's default cipher suites (TLS_AES_256_GCM_SHA384
 * chosen), no session cache and no session tickets (every handshake is a
 * full one, and no ticket is sent after it). Buffers are OpenSSL's defaults
 * (no SSL_MODE_RELEASE_BUFFERS) and read-ahead is off unless asked.
 *
 * A connection: handshake; then each readable event reads a record
 * (SSL_read, 64 KiB buffer) and writes it back whole (SSL_write); a write
 * that would block switches the connection to the event SSL asks for and
 * stops reading until the echo is out (as raw_epoll's lt mode). A client's
 * close_notify is answered with ours (SSL_shutdown, once) before closing,
 * as cport's server does. Exit status 0 on SIGTERM or SIGINT.
 *
 * Prints "listening on PORT" once it listens.
 */
#define _GNU_SOURCE
#include "peer_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
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
  SSL *ssl;
  int secure;        /* handshake done */
  uint32_t events;   /* registered */
  uint32_t len, off; /* echo pending: buf[off..len) */
  unsigned char buf[PEER_BUF_SIZE];
} conn;

static int g_ep, g_listen_fd;
static SSL_CTX *g_ctx;

static void conn_free(conn *c) {
  SSL_free(c->ssl);
  close(c->fd); /* also leaves the epoll set */
  free(c);
}

static void set_events(conn *c, uint32_t ev) {
  if (ev == c->events) return;
  struct epoll_event e = {.events = ev, .data.ptr = c};
  epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &e);
  c->events = ev;
}

/* The event an SSL call that returned r waits for: EPOLLIN, EPOLLOUT, or
 * 0 when the connection is finished. */
static uint32_t want(conn *c, int r) {
  switch (SSL_get_error(c->ssl, r)) {
  case SSL_ERROR_WANT_READ: return EPOLLIN;
  case SSL_ERROR_WANT_WRITE: return EPOLLOUT;
  default: ERR_clear_error(); return 0;
  }
}

/* Sends the pending echo. 1: all out; 0: waiting (events set); -1: error. */
static int flush(conn *c) {
  while (c->off < c->len) {
    int n = SSL_write(c->ssl, c->buf + c->off, (int)(c->len - c->off));
    if (n > 0) {
      c->off += (uint32_t)n;
      continue;
    }
    uint32_t ev = want(c, n);
    if (!ev) return -1;
    set_events(c, ev);
    return 0;
  }
  c->off = c->len = 0;
  return 1;
}

/* Returns -1 when the connection is finished. */
static int on_event(conn *c) {
  if (!c->secure) {
    int r = SSL_accept(c->ssl);
    if (r != 1) {
      uint32_t ev = want(c, r);
      if (!ev) return -1;
      set_events(c, ev);
      return 0;
    }
    c->secure = 1;
    set_events(c, EPOLLIN);
    /* fall through: the client's first data may already be here */
  }
  if (c->len) { /* an echo is waiting for the event SSL asked for */
    int r = flush(c);
    if (r < 0) return -1;
    if (r == 0) return 0;
    set_events(c, EPOLLIN);
  }
  for (;;) {
    int n = SSL_read(c->ssl, c->buf, (int)sizeof c->buf);
    if (n <= 0) {
      int err = SSL_get_error(c->ssl, n);
      if (err == SSL_ERROR_ZERO_RETURN) { /* close_notify: answer it, then close */
        SSL_shutdown(c->ssl);
        ERR_clear_error();
        return -1;
      }
      uint32_t ev = want(c, n);
      if (!ev) return -1;
      set_events(c, ev);
      return 0;
    }
    c->len = (uint32_t)n;
    c->off = 0;
    int r = flush(c);
    if (r < 0) return -1;
    if (r == 0) return 0; /* stop reading until the echo is out */
    /* Another record already inside SSL (read-ahead)? epoll would not say. */
    if (!SSL_has_pending(c->ssl)) return 0;
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
    SSL *ssl = c ? SSL_new(g_ctx) : NULL;
    if (!ssl || SSL_set_fd(ssl, fd) != 1) {
      SSL_free(ssl);
      free(c);
      close(fd);
      continue;
    }
    SSL_set_accept_state(ssl);
    c->fd = fd;
    c->ssl = ssl;
    c->secure = 0;
    c->len = c->off = 0;
    c->events = EPOLLIN;
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &e) != 0) conn_free(c);
  }
}

int main(int argc, char **argv) {
  /* --cert, --key and --read-ahead are ours; the rest goes to peer_parse. */
  const char *cert = NULL, *key = NULL;
  int read_ahead = 0;
  char *args[16];
  int nargs = 0;
  for (int i = 0; i < argc && nargs < 15; i++) {
    if (i + 1 < argc && strcmp(argv[i], "--cert") == 0) {
      cert = argv[++i];
    } else if (i + 1 < argc && strcmp(argv[i], "--key") == 0) {
      key = argv[++i];
    } else if (i + 1 < argc && strcmp(argv[i], "--read-ahead") == 0) {
      read_ahead = atoi(argv[++i]);
    } else {
      args[nargs++] = argv[i];
    }
  }
  peer_opts o;
  if (peer_parse(nargs, args, &o, "openssl_echo") != 0 || !cert || !key) {
    fprintf(stderr, "openssl_echo: needs --cert FILE --key FILE [--read-ahead 0|1]\n");
    return 2;
  }

  g_ctx = SSL_CTX_new(TLS_server_method());
  if (!g_ctx || SSL_CTX_set_min_proto_version(g_ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_use_certificate_chain_file(g_ctx, cert) != 1 ||
      SSL_CTX_use_PrivateKey_file(g_ctx, key, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(g_ctx) != 1) {
    fprintf(stderr, "openssl_echo: certificate or key: ");
    ERR_print_errors_fp(stderr);
    return 1;
  }
  SSL_CTX_set_mode(g_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_session_cache_mode(g_ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(g_ctx, 0);
  SSL_CTX_set_read_ahead(g_ctx, read_ahead);

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  signal(SIGPIPE, SIG_IGN);
  int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);

  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o.port)};
  if (inet_pton(AF_INET, o.host, &sa.sin_addr) != 1) {
    fprintf(stderr, "openssl_echo: bad --host\n");
    return 2;
  }
  g_listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(g_listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  socklen_t len = sizeof sa;
  if (bind(g_listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
      listen(g_listen_fd, SOMAXCONN) != 0 ||
      getsockname(g_listen_fd, (struct sockaddr *)&sa, &len) != 0) {
    perror("openssl_echo: listen");
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
      perror("openssl_echo: epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; i++) {
      void *p = evs[i].data.ptr;
      if (p == NULL) {
        on_accept();
      } else if (p == SIGNAL_KEY) {
        SSL_CTX_free(g_ctx);
        return 0;
      } else if (on_event(p) < 0) {
        conn_free(p);
      }
    }
  }
}
