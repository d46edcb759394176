/*
 * uv_echo: echo server on libuv, the idiomatic way: uv_read_start with an
 * alloc callback, uv_write of what was read, reading stopped until the
 * write callback (so one 64 KiB buffer per connection, reused).
 *
 *   uv_echo --port N [--host 127.0.0.1]
 */
#include "peer_util.h"

#include <uv.h>

typedef struct conn {
  uv_tcp_t tcp; /* first: the handle's address is the conn's */
  uv_write_t wr;
  char buf[PEER_BUF_SIZE];
} conn;

static uv_loop_t *g_loop;

static void on_close(uv_handle_t *h) { free(h); }

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  conn *c = (conn *)h;
  *buf = uv_buf_init(c->buf, sizeof c->buf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_write(uv_write_t *wr, int status) {
  conn *c = wr->data;
  if (status < 0) {
    uv_close((uv_handle_t *)&c->tcp, on_close);
    return;
  }
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn *c = (conn *)s;
  if (nread > 0) {
    uv_read_stop(s); /* no reading while the echo is unsent */
    uv_buf_t out = uv_buf_init(buf->base, (unsigned)nread);
    c->wr.data = c;
    if (uv_write(&c->wr, s, &out, 1, on_write) != 0) uv_close((uv_handle_t *)s, on_close);
  } else if (nread < 0) { /* UV_EOF or an error */
    uv_close((uv_handle_t *)s, on_close);
  }
}

static void on_connection(uv_stream_t *server, int status) {
  if (status < 0) return;
  conn *c = malloc(sizeof *c);
  if (!c) return;
  uv_tcp_init(g_loop, &c->tcp);
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, on_close);
    return;
  }
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_signal(uv_signal_t *sig, int signum) {
  (void)signum;
  uv_stop(sig->loop);
}

int main(int argc, char **argv) {
  peer_opts o;
  if (peer_parse(argc, argv, &o, "uv_echo") != 0) return 2;
  g_loop = uv_default_loop();

  uv_signal_t sigterm, sigint;
  uv_signal_init(g_loop, &sigterm);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_signal_init(g_loop, &sigint);
  uv_signal_start(&sigint, on_signal, SIGINT);

  uv_tcp_t server;
  struct sockaddr_in addr;
  uv_tcp_init(g_loop, &server);
  int rc = uv_ip4_addr(o.host, o.port, &addr);
  if (rc == 0) rc = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&server, SOMAXCONN, on_connection);
  int len = sizeof addr;
  if (rc == 0) rc = uv_tcp_getsockname(&server, (struct sockaddr *)&addr, &len);
  if (rc != 0) {
    fprintf(stderr, "uv_echo: listen: %s\n", uv_strerror(rc));
    return 1;
  }
  peer_listening(ntohs(addr.sin_port));
  uv_run(g_loop, UV_RUN_DEFAULT);
  return 0;
}
