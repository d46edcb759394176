/*
 * udp_echo_server: echoes every datagram back to its sender.
 *
 *   udp_echo_server --port N [--host 127.0.0.1|::1] [--mode completion|select]
 *                   [--backend auto|epoll|io_uring|iocp]
 *
 * One handler loop serves both modes: in completion mode a recvfrom stays
 * pending and its completion carries the datagram and its sender; in select
 * mode a select message says "call recvfrom again". Memory is one datagram:
 * the next receive is posted only once the echo has gone.
 */
#define _POSIX_C_SOURCE 200809L /* sigaction, clock_gettime */
#include "cport.h"
#include "example_util.h"

#include <stdio.h>

#define MAX_DATAGRAM 65536

typedef struct server {
  cport_queue *queue;
  cport_socket sock;
  char buf[MAX_DATAGRAM];
  cport_addr peer;  /* sender of the datagram in buf */
  size_t len;       /* bytes in buf awaiting their echo (0: none) */
  int echo_pending; /* a sendto is in flight */
} server;

static void report(const char *what, int rc) {
  fprintf(stderr, "udp_echo_server: %s: %s\n", what, cport_strerror(rc));
}

/* Sends the datagram in buf back; pending in either mode means "wait". */
static void echo(server *sv) {
  size_t sent;
  cport_handle h;
  int rc = cport_sendto(sv->sock, sv->buf, sv->len, 0, &sv->peer, CPORT_NOWAIT, &sent, &h);
  if (rc == CPORT_SELECT || rc == CPORT_COMPLETION) {
    sv->echo_pending = 1;
    return;
  }
  if (rc != CPORT_OK) report("sendto", rc); /* a datagram may be dropped; go on */
  sv->len = 0;
}

/* Receives until a receive is pending or an echo has to wait. */
static void receive(server *sv) {
  while (sv->len == 0 && !sv->echo_pending) {
    cport_recv_info info;
    cport_handle h;
    int rc = cport_recvfrom(sv->sock, sv->buf, sizeof sv->buf, 0, CPORT_NOWAIT, &info, &h);
    if (rc == CPORT_SELECT || rc == CPORT_COMPLETION) return;
    if (rc != CPORT_OK) {
      report("recvfrom", rc);
      return;
    }
    sv->peer = info.from;
    sv->len = info.bytes;
    echo(sv);
  }
}

static void handle(server *sv, const cport_msg *m) {
  if (m->op == CPORT_OP_SENDTO) {
    if (m->tag == CPORT_TAG_SELECT) { /* writable again: retry the echo */
      sv->echo_pending = 0;
      echo(sv);
    } else {
      if (m->status != CPORT_OK) report("sendto", m->status);
      sv->echo_pending = 0;
      sv->len = 0;
    }
  } else if (m->op == CPORT_OP_RECVFROM && m->tag == CPORT_TAG_COMPLETION) {
    if (m->status != CPORT_OK) {
      report("recvfrom", m->status);
    } else {
      sv->peer = m->addr;
      sv->len = m->bytes;
      echo(sv);
    }
  }
  receive(sv);
}

static int open_server(server *sv, const char *host, uint16_t port, unsigned mode) {
  cport_addr addr;
  int rc = cport_addr_init(&addr, host, port);
  if (rc != CPORT_OK) {
    fprintf(stderr, "udp_echo_server: bad --host %s\n", host);
    return rc;
  }
  rc = cport_open(sv->queue, addr.family, CPORT_SOCK_DGRAM, mode, &sv->sock);
  if (rc == CPORT_OK) rc = cport_bind(sv->sock, &addr);
  if (rc == CPORT_OK) rc = cport_sockname(sv->sock, &addr);
  if (rc != CPORT_OK) {
    report("open", rc);
    return rc;
  }
  printf("listening on %u\n", addr.port);
  fflush(stdout);
  return CPORT_OK;
}

static int usage(void) {
  fprintf(stderr, "usage: udp_echo_server --port N [--host IP] [--mode completion|select] "
                  "[--backend auto|epoll|io_uring|iocp]\n");
  return 2;
}

int main(int argc, char **argv) {
  unsigned long long port = 0;
  unsigned mode = 0;
  const char *host = "127.0.0.1";
  cport_ctx_options opts = {0};
  int have_port = 0;
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc) return usage();
    if (strcmp(argv[i], "--port") == 0 && parse_number(argv[i + 1], 0, 65535, &port) == 0)
      have_port = 1;
    else if (strcmp(argv[i], "--host") == 0)
      host = argv[i + 1];
    else if (strcmp(argv[i], "--mode") == 0 && parse_mode(argv[i + 1], &mode) == 0)
      continue;
    else if (strcmp(argv[i], "--backend") == 0 && parse_backend(argv[i + 1], &opts.backend) == 0)
      continue;
    else
      return usage();
  }
  if (!have_port) return usage();
  if (install_stop_handlers() != 0) return 1;

  static server sv;
  cport_ctx *ctx;
  int rc = cport_ctx_create(&ctx, &opts);
  if (rc != CPORT_OK) {
    report("context", rc);
    return 1;
  }
  if (cport_queue_create(ctx, &sv.queue) != CPORT_OK ||
      open_server(&sv, host, (uint16_t)port, mode) != CPORT_OK) {
    cport_ctx_destroy(ctx);
    return 1;
  }
  receive(&sv);
  cport_msg msgs[16];
  while (!stop_requested()) {
    int n = cport_wait(sv.queue, msgs, 16, STOP_POLL_MS);
    for (int i = 0; i < n; i++) handle(&sv, &msgs[i]);
  }
  cport_close(sv.sock);
  cport_ctx_destroy(ctx);
  return 0;
}
