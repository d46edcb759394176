/*
 * Shared by the benchmark peer echo servers (C and C++): the command line
 * and the "listening on PORT" line that bench/run.sh waits for.
 *
 *   <server> --port N [--host 127.0.0.1]      (N = 0: the kernel picks)
 *
 * Every peer: one thread, one event loop, a 64 KiB buffer per connection
 * (as cport's examples/echo_server.c), no reading while an echo is unsent,
 * listen backlog SOMAXCONN, no TCP_NODELAY (cport's echo server sets none),
 * and exit status 0 on SIGTERM or SIGINT.
 */
#ifndef BENCH_PEER_UTIL_H
#define BENCH_PEER_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEER_BUF_SIZE 65536

typedef struct peer_opts {
  const char *host;
  int port;
} peer_opts;

static inline int peer_parse(int argc, char **argv, peer_opts *o, const char *name) {
  o->host = "127.0.0.1";
  o->port = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--port") == 0) {
      char *end = NULL;
      long p = strtol(argv[i + 1], &end, 10);
      if (!end || *end || p < 0 || p > 65535)
        o->port = -1;
      else
        o->port = (int)p;
    } else if (strcmp(argv[i], "--host") == 0) {
      o->host = argv[i + 1];
    } else {
      o->port = -1;
      break;
    }
  }
  if (o->port < 0 || argc % 2 == 0) {
    fprintf(stderr, "usage: %s --port N [--host 127.0.0.1]\n", name);
    return -1;
  }
  return 0;
}

static inline void peer_listening(int port) {
  printf("listening on %d\n", port);
  fflush(stdout);
}

#endif
