/*
 * udp_echo_client: sends numbered datagrams to a UDP echo server and checks
 * every echoed byte.
 *
 *   udp_echo_client --port N [--host 127.0.0.1] [--count K] [--size S]
 *                   [--mode completion|select] [--backend ...] [--timeout-ms T]
 *
 * One datagram is in flight at a time; a datagram whose echo does not come
 * within RETRY_MS is sent again (UDP may drop), up to MAX_TRIES times.
 * Exits 0 only if every datagram came back intact.
 */
#define _POSIX_C_SOURCE 200809L /* sigaction, clock_gettime */
#include "cport.h"
#include "example_util.h"

#include <stdio.h>

#define MAX_SIZE 65000
#define RETRY_MS 200
#define MAX_TRIES 10

typedef struct client {
  cport_queue *queue;
  cport_socket sock;
  cport_addr server;
  size_t size;
  unsigned char out[MAX_SIZE], in[MAX_SIZE];
} client;

static void fill(unsigned char *buf, size_t size, unsigned long long seq) {
  for (size_t i = 0; i < size; i++) buf[i] = (unsigned char)(seq * 131u + i * 7u);
}

/* Waits (both modes) for a datagram; returns its length, or -1 on timeout. */
static long receive(client *c, uint64_t deadline) {
  for (;;) {
    cport_recv_info info;
    cport_handle h;
    int rc = cport_recvfrom(c->sock, c->in, sizeof c->in, 0, CPORT_NOWAIT, &info, &h);
    if (rc == CPORT_OK) return (long)info.bytes;
    if (rc != CPORT_SELECT && rc != CPORT_COMPLETION) return -1;
    uint64_t now = now_ms();
    cport_msg m;
    int n = now < deadline ? cport_wait(c->queue, &m, 1, (int)(deadline - now)) : 0;
    if (n == 1 && m.tag == CPORT_TAG_COMPLETION && m.status == CPORT_OK) return (long)m.bytes;
    if (n == 1 && m.tag == CPORT_TAG_SELECT) continue;
    cport_cancel(c->sock, h);
    if (rc == CPORT_COMPLETION) { /* exactly one message follows: data or abort */
      if (cport_wait(c->queue, &m, 1, 1000) == 1 && m.tag == CPORT_TAG_COMPLETION &&
          m.status == CPORT_OK)
        return (long)m.bytes;
    }
    return -1;
  }
}

static int exchange(client *c, unsigned long long seq) {
  fill(c->out, c->size, seq);
  for (int tries = 0; tries < MAX_TRIES; tries++) {
    size_t sent;
    int rc = cport_sendto(c->sock, c->out, c->size, 0, &c->server, 1000, &sent, NULL);
    if (rc != CPORT_OK) {
      fprintf(stderr, "udp_echo_client: sendto: %s\n", cport_strerror(rc));
      return -1;
    }
    long got;
    while ((got = receive(c, now_ms() + RETRY_MS)) >= 0) {
      if ((size_t)got == c->size && memcmp(c->in, c->out, c->size) == 0) return 0;
      /* a late echo of an earlier try: keep waiting for this one */
    }
  }
  fprintf(stderr, "udp_echo_client: datagram %llu: no echo after %d tries\n", seq, MAX_TRIES);
  return -1;
}

static int usage(void) {
  fprintf(stderr, "usage: udp_echo_client --port N [--host IP] [--count K] [--size S] "
                  "[--mode completion|select] [--backend ...] [--timeout-ms T]\n");
  return 2;
}

int main(int argc, char **argv) {
  unsigned long long port = 0, count = 1000, size = 512, timeout_ms = 60000;
  unsigned mode = 0;
  const char *host = "127.0.0.1";
  cport_ctx_options opts = {0};
  int have_port = 0;
  for (int i = 1; i < argc; i += 2) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) return usage();
    if (strcmp(argv[i], "--port") == 0 && parse_number(v, 1, 65535, &port) == 0)
      have_port = 1;
    else if (strcmp(argv[i], "--host") == 0)
      host = v;
    else if (strcmp(argv[i], "--count") == 0 && parse_number(v, 1, 100000000, &count) == 0)
      continue;
    else if (strcmp(argv[i], "--size") == 0 && parse_number(v, 1, MAX_SIZE, &size) == 0)
      continue;
    else if (strcmp(argv[i], "--timeout-ms") == 0 && parse_number(v, 1, 86400000, &timeout_ms) == 0)
      continue;
    else if (strcmp(argv[i], "--mode") == 0 && parse_mode(v, &mode) == 0)
      continue;
    else if (strcmp(argv[i], "--backend") == 0 && parse_backend(v, &opts.backend) == 0)
      continue;
    else
      return usage();
  }
  if (!have_port) return usage();

  static client c;
  c.size = (size_t)size;
  cport_ctx *ctx;
  int rc = cport_ctx_create(&ctx, &opts);
  if (rc == CPORT_OK) rc = cport_queue_create(ctx, &c.queue);
  if (rc == CPORT_OK) rc = cport_addr_init(&c.server, host, (uint16_t)port);
  if (rc == CPORT_OK) rc = cport_open(c.queue, c.server.family, CPORT_SOCK_DGRAM, mode, &c.sock);
  if (rc != CPORT_OK) {
    fprintf(stderr, "udp_echo_client: setup: %s\n", cport_strerror(rc));
    return 1;
  }
  cport_addr any;
  cport_addr_init(&any, c.server.family == CPORT_AF_INET6 ? "::" : "0.0.0.0", 0);
  if ((rc = cport_bind(c.sock, &any)) != CPORT_OK) {
    fprintf(stderr, "udp_echo_client: bind: %s\n", cport_strerror(rc));
    return 1;
  }
  uint64_t start = now_ms();
  int failed = 0;
  for (unsigned long long seq = 0; seq < count && !failed; seq++) {
    failed = exchange(&c, seq) != 0;
    if (now_ms() - start > timeout_ms) {
      fprintf(stderr, "udp_echo_client: timed out after %llu datagrams\n", seq);
      failed = 1;
    }
  }
  if (!failed)
    printf("ok datagrams=%llu bytes=%llu ms=%llu\n", count, count * size,
           (unsigned long long)(now_ms() - start));
  cport_ctx_destroy(ctx);
  return failed ? 1 : 0;
}
