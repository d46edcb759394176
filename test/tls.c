/*
 * cport TLS suite: the data path of the conformance suite again, over a
 * socket upgraded with cport_tls_start, and the certificate checks, on
 * every backend and in both modes:
 *
 *   tls --backend epoll|io_uring|iocp --mode completion|select [--engine openssl|schannel]
 *
 * Certificates come from scripts/tls-certs.sh (a ctest fixture makes them
 * at test time into the directory CPORT_TLS_CERTS names). Both ends of
 * each connection are cport sockets on one queue, so one thread drives
 * both: every step is NOWAIT, and the sup_op driver carries it to its end.
 */
#include "support.h"

#ifdef _WIN32
#include <windows.h> /* before every other Windows header */

#include <wincrypt.h>
#endif

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static int g_engine = CPORT_TLS_ENGINE_DEFAULT;   /* the client's */
static int g_s_engine = CPORT_TLS_ENGINE_DEFAULT; /* the server's (main: OpenSSL under Wine) */

/* ---- certificates and configurations ------------------------------------ */

static const char *cert_path(const char *name) {
  static char paths[8][512];
  static int slot;
  const char *dir = getenv("CPORT_TLS_CERTS");
  char *p = paths[slot++ % 8];
  SUP_ASSERT(dir && *dir, "CPORT_TLS_CERTS names no directory (scripts/tls-certs.sh makes it)");
  snprintf(p, sizeof paths[0], "%s/%s", dir, name);
  return p;
}

/* A server presenting NAME.pem / NAME.key. */
static cport_tls_config *server_cfg(const char *name) {
  cport_tls_config *cfg = NULL;
  char pem[64], key[64];
  snprintf(pem, sizeof pem, "%s.pem", name);
  snprintf(key, sizeof key, "%s.key", name);
  SUP_RC(cport_tls_config_create(&cfg, CPORT_TLS_SERVER), CPORT_OK);
  SUP_RC(cport_tls_config_set_engine(cfg, g_s_engine), CPORT_OK);
  SUP_RC(cport_tls_config_set_cert_file(cfg, cert_path(pem), cert_path(key)), CPORT_OK);
  return cfg;
}

/* A client trusting CA (a file name) and expecting host. */
static cport_tls_config *client_cfg(const char *ca, const char *host) {
  cport_tls_config *cfg = NULL;
  SUP_RC(cport_tls_config_create(&cfg, CPORT_TLS_CLIENT), CPORT_OK);
  SUP_RC(cport_tls_config_set_engine(cfg, g_engine), CPORT_OK);
  SUP_RC(cport_tls_config_set_ca_file(cfg, cert_path(ca)), CPORT_OK);
  SUP_RC(cport_tls_config_set_server_name(cfg, host), CPORT_OK);
  return cfg;
}

/* ---- handshakes ---------------------------------------------------------- */

/* A handshake posted NOWAIT: CPORT_OK (done now) or its final message's
 * status, later (wait_handshake). */
typedef struct hs {
  cport_socket s;
  cport_handle h;
  int rc; /* CPORT_COMPLETION while pending */
} hs;

static void start_handshake(hs *x, cport_socket s, const cport_tls_config *cfg) {
  x->s = s;
  x->h = 0;
  x->rc = cport_tls_start(s, cfg, CPORT_NOWAIT, &x->h);
  SUP_ASSERT(x->rc == CPORT_OK || x->rc == CPORT_COMPLETION || x->rc < 0, "cport_tls_start: %s",
             sup_rc_name(x->rc));
}

static void wait_handshake(cport_queue *q, hs *x) {
  char b[256];
  if (x->rc != CPORT_COMPLETION) return;
  cport_msg m = expect_msg_for(q, x->s, x->h, SUP_TIMEOUT);
  SUP_ASSERT(m.op == CPORT_OP_TLS_HANDSHAKE && m.tag == CPORT_TAG_COMPLETION,
             "handshake message %s", sup_msg_str(&m, b, sizeof b));
  x->rc = m.status;
}

/* Both ends of p through their handshakes; their results in *c_rc, *s_rc. */
static void handshake_pair(cport_queue *q, const sup_pair *p, const cport_tls_config *ccfg,
                           const cport_tls_config *scfg, int *c_rc, int *s_rc) {
  hs c, s;
  start_handshake(&s, p->server, scfg);
  start_handshake(&c, p->client, ccfg);
  wait_handshake(q, &c);
  wait_handshake(q, &s);
  *c_rc = c.rc;
  *s_rc = s.rc;
}

/* A connected pair, both ends TLS: server.pem, trusted by the client. */
static void tls_pair(cport_queue *q, sup_pair *p) {
  cport_tls_config *scfg = server_cfg("server");
  cport_tls_config *ccfg = client_cfg("ca.pem", "localhost");
  int c_rc, s_rc;
  sup_make_pair(q, CPORT_AF_INET, p);
  handshake_pair(q, p, ccfg, scfg, &c_rc, &s_rc);
  SUP_RC(c_rc, CPORT_OK);
  SUP_RC(s_rc, CPORT_OK);
  cport_tls_config_free(scfg); /* the sockets keep what they need */
  cport_tls_config_free(ccfg);
}

/* The client's handshake against a server presenting name, with the
 * client's trust and host; the client's reason in why. */
static int client_verdict(cport_queue *q, const char *name, const char *ca, const char *host,
                          char *why, size_t why_len) {
  sup_pair p;
  int c_rc, s_rc;
  cport_tls_config *scfg = server_cfg(name);
  cport_tls_config *ccfg = client_cfg(ca, host);
  sup_make_pair(q, CPORT_AF_INET, &p);
  handshake_pair(q, &p, ccfg, scfg, &c_rc, &s_rc);
  why[0] = '\0';
  if (c_rc != CPORT_OK) SUP_RC(cport_tls_error(p.client, why, why_len), CPORT_OK);
  cport_close(p.client);
  cport_close(p.server);
  cport_close(p.listener);
  cport_tls_config_free(scfg);
  cport_tls_config_free(ccfg);
  return c_rc;
}

/* ---- data ---------------------------------------------------------------- */

/* Sends len bytes of pattern seed from one end while the other receives
 * them, both at once on one loop (a send larger than the sockets' buffers
 * needs the reader). */
static void transfer(cport_queue *q, cport_socket from, cport_socket to, size_t len,
                     uint32_t seed) {
  char *out = sup_alloc(len), *in = sup_alloc(len);
  sup_loop l;
  sup_op snd, rcv;
  size_t got = 0;
  sup_pattern(out, len, 0, seed);
  sup_loop_init(&l, q);
  sup_op_send(&snd, from, out, len);
  sup_loop_start(&l, &snd);
  while (got < len) {
    sup_op_recv(&rcv, to, in + got, len - got, 0);
    sup_loop_start(&l, &rcv);
    sup_loop_run_op(&l, &rcv, SUP_TIMEOUT);
    SUP_RC(rcv.status, CPORT_OK);
    SUP_ASSERT(rcv.done > 0, "end of stream after %zu of %zu bytes", got, len);
    got += rcv.done;
  }
  sup_loop_run_op(&l, &snd, SUP_TIMEOUT);
  SUP_RC(snd.status, CPORT_OK);
  SUP_EQ(snd.done, len);
  sup_loop_free(&l);
  sup_check_pattern(in, len, 0, seed, "bytes over TLS");
}

/* ---- tests --------------------------------------------------------------- */

static void test_tls_echo(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  cport_tls_session ci, si;
  char buf[64];
  tls_pair(e->q, &p);
  sup_send_all(e->q, p.client, "hello, tls", 10);
  sup_recv_exact(e->q, p.server, buf, 10);
  SUP_ASSERT(memcmp(buf, "hello, tls", 10) == 0, "the server got the client's bytes");
  sup_send_all(e->q, p.server, buf, 10);
  sup_recv_exact(e->q, p.client, buf + 10, 10);
  SUP_ASSERT(memcmp(buf + 10, "hello, tls", 10) == 0, "the client got them back");
  SUP_RC(cport_tls_info(p.client, &ci), CPORT_OK);
  SUP_RC(cport_tls_info(p.server, &si), CPORT_OK);
  SUP_ASSERT(ci.version == CPORT_TLS_1_2 || ci.version == CPORT_TLS_1_3, "version %#x", ci.version);
  SUP_EQ(ci.version, si.version);
  SUP_ASSERT(ci.cipher[0] != '\0' && strcmp(ci.cipher, si.cipher) == 0, "cipher %s / %s", ci.cipher,
             si.cipher);
  SUP_ASSERT(strcmp(ci.peer_subject, "CN=localhost") == 0, "the server's subject: %s",
             ci.peer_subject); /* RFC 2253, on every engine */
  SUP_ASSERT(si.peer_subject[0] == '\0', "no client certificate: %s", si.peer_subject);
  SUP_EQ(ci.engine, g_engine == CPORT_TLS_ENGINE_DEFAULT ? ci.engine : g_engine);
  SUP_RC(cport_tls_error(p.client, buf, sizeof buf), CPORT_ENOTFOUND);
}

/* Sends and recvs posted before the handshake ends wait for it. */
static void test_tls_ops_before_handshake(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  hs c, s;
  sup_loop l;
  sup_op snd, rcv;
  char in[5];
  cport_tls_config *scfg = server_cfg("server");
  cport_tls_config *ccfg = client_cfg("ca.pem", "localhost");
  sup_make_pair(e->q, CPORT_AF_INET, &p);
  start_handshake(&s, p.server, scfg);
  start_handshake(&c, p.client, ccfg);
  sup_loop_init(&l, e->q);
  sup_op_send(&snd, p.client, "early", 5);
  sup_loop_start(&l, &snd);
  sup_op_recv(&rcv, p.server, in, sizeof in, CPORT_WAITALL);
  sup_loop_start(&l, &rcv);
  wait_handshake(e->q, &c);
  wait_handshake(e->q, &s);
  SUP_RC(c.rc, CPORT_OK);
  SUP_RC(s.rc, CPORT_OK);
  sup_loop_run_op(&l, &snd, SUP_TIMEOUT);
  sup_loop_run_op(&l, &rcv, SUP_TIMEOUT);
  sup_loop_free(&l);
  SUP_RC(snd.status, CPORT_OK);
  SUP_RC(rcv.status, CPORT_OK);
  SUP_EQ(rcv.done, 5);
  SUP_ASSERT(memcmp(in, "early", 5) == 0, "the early bytes");
  cport_tls_config_free(scfg);
  cport_tls_config_free(ccfg);
}

static void test_tls_send_4mib_whole(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  tls_pair(e->q, &p);
  transfer(e->q, p.client, p.server, (size_t)4 << 20, 41);
  transfer(e->q, p.server, p.client, (size_t)1 << 20, 42);
}

/* 64 sends and 64 recvs pending at once keep their order. */
static void test_tls_many_pending(void **state) {
  sup_env *e = (sup_env *)*state;
  enum { N = 64, CHUNK = 1000 };
  sup_pair p;
  sup_loop l;
  static sup_op snd[N], rcv[N];
  char *out = sup_alloc(N * CHUNK), *in = sup_alloc(N * CHUNK);
  size_t got = 0;
  tls_pair(e->q, &p);
  sup_pattern(out, N * CHUNK, 0, 64);
  sup_loop_init(&l, e->q);
  /* Select mode allows one wait per direction (CPORT_EALREADY): there the
   * sends go one after another, then the recvs. */
  bool one_by_one = sup_select_mode() != 0;
  for (int i = 0; i < N; i++) {
    sup_op_send(&snd[i], p.client, out + i * CHUNK, CHUNK);
    sup_loop_start(&l, &snd[i]);
    if (one_by_one) sup_loop_run_op(&l, &snd[i], SUP_TIMEOUT);
  }
  for (int i = 0; i < N; i++) {
    sup_op_recv(&rcv[i], p.server, in + i * CHUNK, CHUNK, CPORT_WAITALL);
    sup_loop_start(&l, &rcv[i]);
    if (one_by_one) sup_loop_run_op(&l, &rcv[i], SUP_TIMEOUT);
  }
  for (int i = 0; i < N; i++) {
    sup_loop_run_op(&l, &rcv[i], SUP_TIMEOUT);
    SUP_RC(rcv[i].status, CPORT_OK);
    SUP_EQ(rcv[i].done, CHUNK);
    got += rcv[i].done;
  }
  for (int i = 0; i < N; i++) {
    sup_loop_run_op(&l, &snd[i], SUP_TIMEOUT);
    SUP_RC(snd[i].status, CPORT_OK);
    SUP_EQ(snd[i].done, CHUNK);
  }
  sup_loop_free(&l);
  SUP_EQ(got, N * CHUNK);
  sup_check_pattern(in, N * CHUNK, 0, 64, "64 pending recvs, in order");
}

/* Recvs cancelled as data arrives: whatever a recv got before its cancel
 * won is in its message, the rest is read by the next recv: nothing is
 * lost or read twice. */
static void test_tls_cancel_race(void **state) {
  sup_env *e = (sup_env *)*state;
  enum { TOTAL = 64 * 1024 };
  sup_pair p;
  char *out = sup_alloc(TOTAL), *in = sup_alloc(TOTAL);
  size_t got = 0, n = 0;
  int cancelled = 0, completed = 0;
  char b[256];
  tls_pair(e->q, &p);
  sup_pattern(out, TOTAL, 0, 7);
  for (size_t sent = 0; sent < TOTAL; sent += 4096) sup_send_all(e->q, p.server, out + sent, 4096);
  while (got < TOTAL) {
    cport_handle h = 0;
    int rc = cport_recv(p.client, in + got, 1500, 0, CPORT_NOWAIT, &n, &h);
    if (rc == CPORT_OK) {
      SUP_ASSERT(n > 0, "end of stream at %zu", got);
      got += n;
      continue;
    }
    SUP_RC(rc, sup_pending_rc());
    int crc = cport_cancel(p.client, h);
    SUP_RC2(crc, CPORT_OK, CPORT_ENOTFOUND);
    if (sup_select_mode() && crc == CPORT_OK) {
      sup_mark_ended(p.client, h);
      cancelled++;
      sup_settle(e->q, 2); /* records come in by the poller's hand, not the recv's */
      continue;
    }
    cport_msg m = expect_msg_for(e->q, p.client, h, SUP_TIMEOUT);
    if (m.status == CPORT_ECANCELED) {
      cancelled++;
      SUP_EQ(m.bytes, 0);
    } else if (sup_select_mode()) {
      SUP_ASSERT(m.tag == CPORT_TAG_SELECT && m.status == CPORT_OK, "%s",
                 sup_msg_str(&m, b, sizeof b));
      completed++;
    } else {
      SUP_ASSERT(m.status == CPORT_OK && m.bytes > 0, "%s", sup_msg_str(&m, b, sizeof b));
      got += m.bytes;
      completed++;
    }
  }
  SUP_EQ(got, TOTAL);
  sup_check_pattern(in, TOTAL, 0, 7, "recvs racing cancels");
  SUP_ASSERT(cancelled + completed > 0, "the race ran");
}

/* Closing with ops pending ends each with one abort; the peer sees the
 * end of the stream or a reset, never garbage. */
static void test_tls_close_pending(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  char in[4][100];
  cport_handle h[4];
  int rc[4];
  size_t n = 0;
  char b[256];
  int count = sup_select_mode() ? 1 : 4; /* select: one wait per direction */
  tls_pair(e->q, &p);
  for (int i = 0; i < count; i++) {
    rc[i] = cport_recv(p.client, in[i], sizeof in[i], 0, CPORT_NOWAIT, &n, &h[i]);
    SUP_RC(rc[i], sup_pending_rc());
  }
  SUP_RC(cport_close(p.client), CPORT_OK);
  for (int i = 0; i < count; i++) {
    cport_msg m = expect_msg_for(e->q, p.client, h[i], SUP_TIMEOUT);
    SUP_ASSERT(m.tag == CPORT_TAG_ABORT && m.status == CPORT_ECLOSED, "%s",
               sup_msg_str(&m, b, sizeof b));
  }
  int r = sup_recv(e->q, p.server, in[0], sizeof in[0], &n);
  SUP_ASSERT((r == CPORT_OK && n == 0) || r == CPORT_ECONNRESET, "the server's recv: %s, %zu",
             sup_rc_name(r), n);
}

/* The peer's close_notify ends the stream: a recv ends with 0 bytes
 * after every byte sent before it. Sends after our own shutdown are
 * refused. */
static void test_tls_close_notify(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  char buf[16];
  size_t n = 0;
  cport_handle h = 0;
  char b[256];
  tls_pair(e->q, &p);
  sup_send_all(e->q, p.server, "last words", 10);
  int rc = cport_tls_shutdown(p.server, CPORT_NOWAIT, &h);
  if (rc == CPORT_COMPLETION) {
    cport_msg m = expect_msg_for(e->q, p.server, h, SUP_TIMEOUT);
    SUP_ASSERT(m.op == CPORT_OP_TLS_SHUTDOWN && m.status == CPORT_OK, "%s",
               sup_msg_str(&m, b, sizeof b));
  } else {
    SUP_RC(rc, CPORT_OK);
  }
  SUP_RC(cport_send(p.server, "x", 1, 0, CPORT_NOWAIT, &n, &h), CPORT_EPIPE);
  sup_recv_exact(e->q, p.client, buf, 10);
  SUP_ASSERT(memcmp(buf, "last words", 10) == 0, "the bytes before close_notify");
  SUP_RC(sup_recv(e->q, p.client, buf, sizeof buf, &n), CPORT_OK);
  SUP_EQ(n, 0);
  /* The other direction still works until the client shuts down too. */
  sup_send_all(e->q, p.client, "reply", 5);
  sup_recv_exact(e->q, p.server, buf, 5);
  SUP_RC(cport_tls_shutdown(p.client, SUP_TIMEOUT, NULL), CPORT_OK);
  SUP_RC(sup_recv(e->q, p.server, buf, sizeof buf, &n), CPORT_OK);
  SUP_EQ(n, 0);
}

/* A reset while a record is half received fails the recv, with every
 * byte before it delivered in order. */
static void test_tls_peer_reset(void **state) {
  sup_env *e = (sup_env *)*state;
  enum { TOTAL = 1 << 20 };
  sup_pair p;
  char *out = sup_alloc(TOTAL), *in = sup_alloc(TOTAL);
  size_t got = 0, n = 0;
  cport_handle h = 0;
  cport_optval lg;
  tls_pair(e->q, &p);
  sup_pattern(out, TOTAL, 0, 9);
  int rc = cport_send(p.server, out, TOTAL, 0, CPORT_NOWAIT, &n, &h);
  SUP_ASSERT(rc == CPORT_OK || rc == sup_pending_rc(), "send: %s", sup_rc_name(rc));
  sup_recv_exact(e->q, p.client, in, 1000);
  got = 1000;
  memset(&lg, 0, sizeof lg);
  lg.type = CPORT_VAL_LINGER;
  lg.v.linger.onoff = 1;
  SUP_RC(cport_setopt(p.server, CPORT_LEVEL_SOCKET, CPORT_OPT_SOCKET_LINGER, &lg), CPORT_OK);
  SUP_RC(cport_close(p.server), CPORT_OK);
  while (got < TOTAL) { /* all of it may have come before the reset */
    int r = sup_recv(e->q, p.client, in + got, TOTAL - got, &n);
    if (r != CPORT_OK) {
      SUP_ASSERT(r == CPORT_ECONNRESET || r == CPORT_ETLS, "after a reset: %s", sup_rc_name(r));
      break;
    }
    /* Wine reads a reset as the end of the stream (docs/wine.md, "Recvs
     * after RST"): cut between records, that is a clean end. */
    SUP_ASSERT(n > 0 || got == TOTAL || sup_on_wine(),
               "a clean end of stream after a reset, at %zu", got);
    if (n == 0) break;
    got += n;
  }
  sup_check_pattern(in, got, 0, 9, "the bytes before the reset");
}

/* A server that never answers: the handshake ends by its timeout, or by
 * a deadline. */
static void test_tls_handshake_timeout(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_addr a;
  cport_socket l = sup_listener(e->q, CPORT_AF_INET, 0, 0, &a);
  cport_socket c1 = sup_open(e->q, CPORT_AF_INET), c2 = sup_open(e->q, CPORT_AF_INET);
  cport_tls_config *ccfg = client_cfg("ca.pem", "localhost");
  cport_handle h = 0;
  char b[256];
  SUP_RC(sup_connect(e->q, c1, &a), CPORT_OK);
  SUP_RC(sup_connect(e->q, c2, &a), CPORT_OK);
  SUP_RC(cport_tls_start(c1, ccfg, 300, NULL), CPORT_ETIMEDOUT);
  SUP_RC(cport_tls_start(c2, ccfg, CPORT_NOWAIT, &h), CPORT_COMPLETION);
  SUP_RC(cport_deadline(c2, h, 200), CPORT_OK);
  cport_msg m = expect_msg_for(e->q, c2, h, SUP_TIMEOUT);
  SUP_ASSERT(m.tag == CPORT_TAG_ABORT && m.status == CPORT_ETIMEDOUT, "%s",
             sup_msg_str(&m, b, sizeof b));
  /* The session is gone: data calls fail, they never hang. */
  size_t n = 0;
  SUP_RC(cport_send(c2, "x", 1, 0, CPORT_NOWAIT, &n, &h), CPORT_ETLS);
  SUP_RC(cport_tls_error(c2, b, sizeof b), CPORT_OK);
  cport_close(l);
  cport_tls_config_free(ccfg);
}

static void expect_refused(cport_queue *q, const char *name, const char *ca, const char *host,
                           const char *reason) {
  char why[256];
  int rc = client_verdict(q, name, ca, host, why, sizeof why);
  SUP_ASSERT(rc == CPORT_ETLS, "%s (trusting %s, for %s): %s", name, ca, host, sup_rc_name(rc));
  SUP_ASSERT(strstr(why, reason) != NULL, "the reason for %s: \"%s\", wanted \"%s\"", name, why,
             reason);
}

static void test_tls_wrong_host(void **state) {
  sup_env *e = (sup_env *)*state;
  char why[256];
  expect_refused(e->q, "server", "ca.pem", "wrong.example", "host name mismatch");
  expect_refused(e->q, "server", "ca.pem", "127.0.0.2", "host name mismatch");
  SUP_RC(client_verdict(e->q, "server", "ca.pem", "127.0.0.1", why, sizeof why), CPORT_OK);
  SUP_RC(client_verdict(e->q, "server", "ca.pem", "::1", why, sizeof why), CPORT_OK);
  SUP_RC(client_verdict(e->q, "server", "ca.pem", "LOCALHOST.", why, sizeof why), CPORT_OK);
}

static void test_tls_expired(void **state) {
  sup_env *e = (sup_env *)*state;
  expect_refused(e->q, "expired", "ca.pem", "localhost", "expired");
}

static void test_tls_self_signed(void **state) {
  sup_env *e = (sup_env *)*state;
  expect_refused(e->q, "self", "ca.pem", "localhost", "self-signed");
}

static void test_tls_unknown_ca(void **state) {
  sup_env *e = (sup_env *)*state;
  expect_refused(e->q, "server", "other-ca.pem", "localhost", "unknown CA");
}

/* A server that asks for a client certificate checks it by the same
 * rules; one that requires it refuses a client without. */
static void test_tls_client_cert(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  int c_rc, s_rc;
  cport_tls_session si;
  char why[256];
  cport_tls_config *scfg = server_cfg("server");
  SUP_RC(cport_tls_config_set_ca_file(scfg, cert_path("ca.pem")), CPORT_OK);
  SUP_RC(cport_tls_config_set_verify(scfg, CPORT_TLS_VERIFY_PEER), CPORT_OK);
  cport_tls_config *with = client_cfg("ca.pem", "localhost");
  if (sup_on_wine() && g_engine != CPORT_TLS_ENGINE_OPENSSL) {
    /* Wine 8's Schannel cannot load a client's key (NCryptImportKey:
     * NTE_NOT_SUPPORTED; docs/wine.md, "Schannel"): the client that
     * presents one runs on OpenSSL there. */
    printf("under Wine: the client presenting a certificate runs on OpenSSL\n");
    SUP_RC(cport_tls_config_set_engine(with, CPORT_TLS_ENGINE_OPENSSL), CPORT_OK);
  }
  SUP_RC(cport_tls_config_set_cert_file(with, cert_path("client.pem"), cert_path("client.key")),
         CPORT_OK);
  cport_tls_config *without = client_cfg("ca.pem", "localhost");

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  handshake_pair(e->q, &p, with, scfg, &c_rc, &s_rc);
  SUP_RC(c_rc, CPORT_OK);
  SUP_RC(s_rc, CPORT_OK);
  SUP_RC(cport_tls_info(p.server, &si), CPORT_OK);
  SUP_ASSERT(strstr(si.peer_subject, "cport test client") != NULL, "client subject %s",
             si.peer_subject);

  sup_connect_pair(e->q, p.listener, &p.addr, sup_mode_flags(), &p.client, &p.server);
  handshake_pair(e->q, &p, without, scfg, &c_rc, &s_rc);
  SUP_RC(s_rc, CPORT_ETLS);
  SUP_RC(cport_tls_error(p.server, why, sizeof why), CPORT_OK);
  SUP_ASSERT(strstr(why, "no certificate") != NULL, "the server's reason: %s", why);
  cport_tls_config_free(scfg);
  cport_tls_config_free(with);
  cport_tls_config_free(without);
}

static void test_tls_alpn(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  int c_rc, s_rc;
  cport_tls_session ci, si;
  const char *offer[] = {"h2", "cport/1"};
  const char *accept[] = {"cport/1", "http/1.1"};
  cport_tls_config *scfg = server_cfg("server");
  cport_tls_config *ccfg = client_cfg("ca.pem", "localhost");
  SUP_RC(cport_tls_config_set_alpn(scfg, accept, 2), CPORT_OK);
  SUP_RC(cport_tls_config_set_alpn(ccfg, offer, 2), CPORT_OK);
  sup_make_pair(e->q, CPORT_AF_INET, &p);
  handshake_pair(e->q, &p, ccfg, scfg, &c_rc, &s_rc);
  SUP_RC(c_rc, CPORT_OK);
  SUP_RC(s_rc, CPORT_OK);
  SUP_RC(cport_tls_info(p.client, &ci), CPORT_OK);
  SUP_RC(cport_tls_info(p.server, &si), CPORT_OK);
  SUP_ASSERT(strcmp(ci.alpn, "cport/1") == 0 && strcmp(si.alpn, "cport/1") == 0,
             "ALPN chose %s / %s", ci.alpn, si.alpn);
  cport_tls_config_free(scfg);
  cport_tls_config_free(ccfg);
}

static void test_tls_recv_alloc_and_multi(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  void *buf = NULL;
  size_t n = 0, got = 0;
  cport_handle h = 0;
  char b[256];
  char *all = sup_alloc(3000);
  tls_pair(e->q, &p);
  sup_send_all(e->q, p.server, "alloc", 5);
  SUP_RC(cport_recv_alloc(p.client, 0, SUP_TIMEOUT, &buf, &n, NULL), CPORT_OK);
  SUP_ASSERT(n == 5 && memcmp(buf, "alloc", 5) == 0, "recv_alloc over TLS");
  cport_free(buf);

  char *out = sup_alloc(3000);
  sup_pattern(out, 3000, 0, 3);
  SUP_RC(cport_recv_multi(p.client, &h), CPORT_COMPLETION);
  sup_send_all(e->q, p.server, out, 3000);
  while (got < 3000) {
    cport_msg m = expect_msg_for(e->q, p.client, h, SUP_TIMEOUT);
    SUP_ASSERT(m.status == CPORT_OK && m.bytes > 0 && (m.flags & CPORT_MSG_MORE) &&
                   got + m.bytes <= 3000,
               "chunk %s", sup_msg_str(&m, b, sizeof b));
    memcpy(all + got, m.buf, m.bytes);
    got += m.bytes;
    cport_free(m.buf);
  }
  sup_check_pattern(all, 3000, 0, 3, "multishot recv over TLS");
  SUP_RC(cport_tls_shutdown(p.server, SUP_TIMEOUT, NULL), CPORT_OK);
  cport_msg m = expect_msg_for(e->q, p.client, h, SUP_TIMEOUT);
  SUP_ASSERT(m.status == CPORT_OK && m.bytes == 0 && !(m.flags & CPORT_MSG_MORE),
             "the final message at close_notify: %s", sup_msg_str(&m, b, sizeof b));
}

/* Bad calls answer a code and change nothing. */
static void test_tls_bad_calls(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_tls_config *cfg = NULL, *scfg;
  sup_pair p;
  cport_handle h = 0;
  cport_tls_session info;
  char buf[64];
  size_t n = 0;
  const char *empty[] = {""};
  SUP_RC(cport_tls_config_create(NULL, CPORT_TLS_CLIENT), CPORT_EINVAL);
  SUP_RC(cport_tls_config_create(&cfg, 7), CPORT_EINVAL);
  SUP_ASSERT(cfg == NULL, "no configuration for a bad role");
  cport_tls_config_free(NULL);
  cfg = client_cfg("ca.pem", "localhost");
  SUP_RC(cport_tls_config_set_verify(cfg, 9), CPORT_EINVAL);
  SUP_RC(cport_tls_config_set_min_version(cfg, 0x0301), CPORT_EINVAL);
  SUP_RC(cport_tls_config_set_engine(cfg, 42), CPORT_EINVAL);
  SUP_RC(cport_tls_config_set_alpn(cfg, empty, 1), CPORT_EINVAL);
  SUP_RC(cport_tls_config_set_alpn(cfg, NULL, 1), CPORT_EINVAL);
  SUP_RC(cport_tls_config_set_server_name(cfg, ""), CPORT_EINVAL);
  SUP_RC(cport_tls_config_set_ca_file(cfg, cert_path("no-such-file.pem")), CPORT_EINVAL);
  SUP_RC(cport_tls_config_set_cert_file(NULL, "a", "b"), CPORT_EINVAL);
#ifndef _WIN32
  SUP_RC(cport_tls_config_set_engine(cfg, CPORT_TLS_ENGINE_SCHANNEL), CPORT_ENOTSUP);
#endif

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  cport_socket u = sup_udp(e->q, CPORT_AF_INET, 0, NULL);
  SUP_RC(cport_tls_start(p.listener, cfg, CPORT_NOWAIT, &h), CPORT_EINVAL);
  SUP_RC(cport_tls_start(u, cfg, CPORT_NOWAIT, &h), CPORT_EINVAL);
  SUP_RC(cport_tls_start(p.client, NULL, CPORT_NOWAIT, &h), CPORT_EINVAL);
  SUP_RC(cport_tls_start(p.client, cfg, CPORT_NOWAIT, NULL), CPORT_EINVAL);
  SUP_RC(cport_tls_start((cport_socket)0x7777777, cfg, CPORT_NOWAIT, &h), CPORT_EBADF);
  SUP_RC(cport_tls_shutdown(p.client, CPORT_NOWAIT, &h), CPORT_EINVAL);
  SUP_RC(cport_tls_info(p.client, &info), CPORT_EINVAL);
  SUP_RC(cport_tls_info(p.client, NULL), CPORT_EINVAL);
  SUP_RC(cport_tls_error(p.client, buf, sizeof buf), CPORT_ENOTFOUND);
  SUP_RC(cport_tls_error(p.client, NULL, 4), CPORT_EINVAL);

  /* A client that verifies must name the server. */
  cport_tls_config *noname = NULL;
  cport_handle h0 = 0;
  SUP_RC(cport_tls_config_create(&noname, CPORT_TLS_CLIENT), CPORT_OK);
  SUP_RC(cport_tls_start(p.client, noname, CPORT_NOWAIT, &h0), CPORT_EINVAL);
  cport_tls_config_free(noname);

  /* A recv pending: no upgrade (its bytes would be neither). */
  int rc = cport_recv(p.client, buf, sizeof buf, 0, CPORT_NOWAIT, &n, &h);
  SUP_RC(rc, sup_pending_rc());
  cport_handle h2 = 0;
  SUP_RC(cport_tls_start(p.client, cfg, CPORT_NOWAIT, &h2), CPORT_EBUSY);
  SUP_EQ(h2, 0);
  SUP_RC(cport_cancel(p.client, h), CPORT_OK);
  if (sup_select_mode())
    sup_mark_ended(p.client, h);
  else
    expect_msg_for(e->q, p.client, h, SUP_TIMEOUT);

  scfg = server_cfg("server");
  int c_rc, s_rc;
  handshake_pair(e->q, &p, cfg, scfg, &c_rc, &s_rc);
  SUP_RC(c_rc, CPORT_OK);
  SUP_RC(s_rc, CPORT_OK);
  /* In use: the configuration is read only; a second upgrade is refused;
   * calls TLS does not carry are refused. */
  SUP_RC(cport_tls_config_set_server_name(cfg, "other"), CPORT_EBUSY);
  SUP_RC(cport_tls_start(p.client, cfg, CPORT_NOWAIT, &h), CPORT_EINVAL);
  cport_iovec iov = {buf, 4};
  cport_msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.iov = &iov;
  mh.iovcnt = 1;
  SUP_RC(cport_sendmsg(p.client, &mh, 0, CPORT_NOWAIT, &n, &h), CPORT_EOPNOTSUPP);
  cport_tls_config_free(cfg);
  cport_tls_config_free(scfg);
  /* Still a working session. */
  sup_send_all(e->q, p.client, "ok", 2);
  sup_recv_exact(e->q, p.server, buf, 2);
}

/* Blocking calls with timeouts on a TLS socket. */
static void test_tls_blocking(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  char buf[8];
  size_t n = 0;
  tls_pair(e->q, &p);
  SUP_RC(cport_recv(p.client, buf, sizeof buf, 0, 100, &n, NULL), CPORT_ETIMEDOUT);
  SUP_RC(cport_send(p.server, "block", 5, 0, SUP_TIMEOUT, &n, NULL), CPORT_OK);
  SUP_EQ(n, 5);
  SUP_RC(cport_recv(p.client, buf, 5, CPORT_WAITALL, SUP_TIMEOUT, &n, NULL), CPORT_OK);
  SUP_ASSERT(n == 5 && memcmp(buf, "block", 5) == 0, "a blocking recv over TLS");
}

/* A certificate from a Windows system store, by thumbprint and by
 * subject: put into the current user's "MY" store for the test (the
 * certificate only: presenting it needs its key there too, which Wine 8
 * cannot take: docs/wine.md, "Schannel"), then taken out. */
#ifdef _WIN32
static void der_of(const char *pem_path, BYTE **der, DWORD *der_len) {
  FILE *f = fopen(pem_path, "rb");
  SUP_ASSERT(f != NULL, "open %s", pem_path);
  char *pem = sup_alloc(16384);
  size_t n = fread(pem, 1, 16383, f);
  fclose(f);
  pem[n] = '\0';
  *der_len = 0;
  SUP_ASSERT(CryptStringToBinaryA(pem, 0, CRYPT_STRING_BASE64HEADER, NULL, der_len, NULL, NULL),
             "PEM %s", pem_path);
  *der = sup_alloc(*der_len);
  SUP_ASSERT(CryptStringToBinaryA(pem, 0, CRYPT_STRING_BASE64HEADER, *der, der_len, NULL, NULL),
             "PEM %s", pem_path);
}
#endif

static void test_tls_cert_store(void **state) {
  (void)state;
  cport_tls_config *cfg = NULL;
  SUP_RC(cport_tls_config_create(&cfg, CPORT_TLS_CLIENT), CPORT_OK);
  SUP_RC(cport_tls_config_set_cert_store(cfg, NULL, "subject:x"), CPORT_EINVAL);
  SUP_RC(cport_tls_config_set_cert_store(cfg, "MY", NULL), CPORT_EINVAL);
#ifndef _WIN32
  SUP_RC(cport_tls_config_set_cert_store(cfg, "MY", "subject:cport"), CPORT_ENOTSUP);
#else
  BYTE *der;
  DWORD der_len, hash_len = 20;
  BYTE hash[20];
  char find[64] = "thumbprint:";
  HCERTSTORE my =
      CertOpenStore(CERT_STORE_PROV_SYSTEM_W, 0, 0, CERT_SYSTEM_STORE_CURRENT_USER, L"MY");
  PCCERT_CONTEXT added = NULL;
  SUP_ASSERT(my != NULL, "open the current user's MY store: error %lu", GetLastError());
  der_of(cert_path("client.pem"), &der, &der_len);
  SUP_ASSERT(CertAddEncodedCertificateToStore(my, X509_ASN_ENCODING, der, der_len,
                                              CERT_STORE_ADD_REPLACE_EXISTING, &added),
             "add to MY: error %lu", GetLastError());
  SUP_ASSERT(CertGetCertificateContextProperty(added, CERT_SHA1_HASH_PROP_ID, hash, &hash_len),
             "thumbprint");
  for (DWORD i = 0; i < hash_len; i++) snprintf(find + 11 + 2 * i, 3, "%02X", hash[i]);
  CertControlStore(my, 0, CERT_STORE_CTRL_COMMIT, NULL); /* for the store's other handles */
  int by_hash = cport_tls_config_set_cert_store(cfg, "MY", find);
  int by_subject =
      cport_tls_config_set_cert_store(cfg, "CurrentUser\\MY", "subject:cport test client");
  CertDeleteCertificateFromStore(added); /* frees added */
  CertCloseStore(my, 0);
  SUP_RC(by_hash, CPORT_OK);
  SUP_RC(by_subject, CPORT_OK);
  SUP_RC(cport_tls_config_set_cert_store(cfg, "MY",
                                         "thumbprint:00112233445566778899aabbccddeeff00112233"),
         CPORT_ENOTFOUND);
  SUP_RC(cport_tls_config_set_cert_store(cfg, "MY", "thumbprint:0011"), CPORT_EINVAL);
  SUP_RC(cport_tls_config_set_cert_store(cfg, "MY", "issuer:x"), CPORT_EINVAL);
  SUP_RC(cport_tls_config_set_cert_store(cfg, "", "subject:x"), CPORT_EINVAL);
#endif
  cport_tls_config_free(cfg);
}

/* ---- found by review ------------------------------------------------------ */

/* A multishot recv paused at otp.rcv_outstanding reads nothing until a
 * chunk is released, then goes on in order. */
static void test_tls_multi_paused(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  cport_handle h = 0;
  char b[256], all[16];
  size_t got = 0;
  tls_pair(e->q, &p);
  sup_set_otp_int(p.client, CPORT_OPT_OTP_RCV_OUTSTANDING, 1);
  SUP_RC(cport_recv_multi(p.client, &h), CPORT_COMPLETION);
  sup_send_all(e->q, p.server, "one", 3);
  cport_msg first = expect_msg_for(e->q, p.client, h, SUP_TIMEOUT);
  SUP_ASSERT(first.status == CPORT_OK && first.bytes == 3 && (first.flags & CPORT_MSG_MORE), "%s",
             sup_msg_str(&first, b, sizeof b));
  sup_send_all(e->q, p.server, "two", 3);
  sup_send_all(e->q, p.server, "three", 5);
  expect_no_msg_for(e->q, p.client, h, SUP_QUIET); /* paused: one chunk is out */
  cport_free(first.buf);
  while (got < 8) {
    cport_msg m = expect_msg_for(e->q, p.client, h, SUP_TIMEOUT);
    SUP_ASSERT(m.status == CPORT_OK && m.bytes > 0 && got + m.bytes <= 8, "%s",
               sup_msg_str(&m, b, sizeof b));
    memcpy(all + got, m.buf, m.bytes);
    got += m.bytes;
    cport_free(m.buf);
  }
  SUP_ASSERT(memcmp(all, "twothree", 8) == 0, "the chunks after the pause, in order");
}

/* A send posted after cport_tls_shutdown never goes out (CPORT_EPIPE),
 * even while sends before it are still in flight. */
static void test_tls_send_after_shutdown(void **state) {
  sup_env *e = (sup_env *)*state;
  enum { BIG = 4 << 20 };
  sup_pair p;
  cport_handle ha = 0, hs_ = 0, hb = 0;
  size_t n = 0, got = 0;
  char b[256];
  char *big = sup_alloc(BIG), *in = sup_alloc(BIG + 64);
  sup_pattern(big, BIG, 0, 5);
  tls_pair(e->q, &p);
  int ra = cport_send(p.server, big, BIG, 0, CPORT_NOWAIT, &n, &ha);
  SUP_ASSERT(ra == CPORT_OK || ra == sup_pending_rc(), "big send: %s", sup_rc_name(ra));
  int rs = cport_tls_shutdown(p.server, CPORT_NOWAIT, &hs_);
  SUP_ASSERT(rs == CPORT_OK || rs == CPORT_COMPLETION, "shutdown: %s", sup_rc_name(rs));
  int rb = cport_send(p.server, "AFTER", 5, 0, CPORT_NOWAIT, &n, &hb);
  for (;;) {
    int r = sup_recv(e->q, p.client, in + got, BIG + 64 - got, &n);
    if (r != CPORT_OK || n == 0) break;
    got += n;
  }
  SUP_EQ(got, BIG);
  sup_check_pattern(in, BIG, 0, 5, "the bytes before close_notify");
  if (rb == CPORT_COMPLETION || rb == CPORT_SELECT) {
    cport_msg m = expect_msg_for(e->q, p.server, hb, SUP_TIMEOUT);
    if (rb == CPORT_SELECT) { /* ready: the call again is refused */
      rb = cport_send(p.server, "AFTER", 5, 0, CPORT_NOWAIT, &n, &hb);
    } else {
      SUP_ASSERT(m.status == CPORT_EPIPE, "the send after shutdown: %s",
                 sup_msg_str(&m, b, sizeof b));
      rb = CPORT_EPIPE;
    }
  }
  SUP_RC(rb, CPORT_EPIPE);
}

/* Select mode: a recv_alloc whose records are already there either
 * returns the bytes now, or a select message that carries no buffer. */
static void test_tls_select_alloc_ready(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  cport_handle h = 0;
  void *buf = NULL;
  size_t n = 0;
  char b[256];
  tls_pair(e->q, &p);
  sup_send_all(e->q, p.server, "hello", 5);
  sup_settle(e->q, 50);
  int rc = cport_recv_alloc(p.client, 0, CPORT_NOWAIT, &buf, &n, &h);
  if (rc == CPORT_SELECT || rc == CPORT_COMPLETION) {
    cport_msg m = expect_msg_for(e->q, p.client, h, SUP_TIMEOUT);
    if (rc == CPORT_SELECT) {
      SUP_ASSERT(m.tag == CPORT_TAG_SELECT && !(m.flags & CPORT_MSG_ALLOCATED) && m.buf == NULL,
                 "a select message carries no buffer: %s", sup_msg_str(&m, b, sizeof b));
      rc = cport_recv_alloc(p.client, 0, CPORT_NOWAIT, &buf, &n, &h);
    } else {
      SUP_ASSERT(m.status == CPORT_OK && (m.flags & CPORT_MSG_ALLOCATED), "%s",
                 sup_msg_str(&m, b, sizeof b));
      buf = m.buf;
      n = m.bytes;
      rc = CPORT_OK;
    }
  }
  SUP_RC(rc, CPORT_OK);
  SUP_ASSERT(n == 5 && memcmp(buf, "hello", 5) == 0, "recv_alloc: %zu bytes", n);
  cport_free(buf);
}

/* A multishot recv may be posted while the handshake runs. */
static void test_tls_multi_during_handshake(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  hs c, s;
  cport_handle h = 0;
  char b[256];
  cport_tls_config *scfg = server_cfg("server");
  cport_tls_config *ccfg = client_cfg("ca.pem", "localhost");
  sup_make_pair(e->q, CPORT_AF_INET, &p);
  start_handshake(&s, p.server, scfg);
  start_handshake(&c, p.client, ccfg);
  SUP_RC(cport_recv_multi(p.client, &h), CPORT_COMPLETION);
  wait_handshake(e->q, &c);
  wait_handshake(e->q, &s);
  SUP_RC(c.rc, CPORT_OK);
  SUP_RC(s.rc, CPORT_OK);
  sup_send_all(e->q, p.server, "multi", 5);
  cport_msg m = expect_msg_for(e->q, p.client, h, SUP_TIMEOUT);
  SUP_ASSERT(m.status == CPORT_OK && m.bytes == 5 && memcmp(m.buf, "multi", 5) == 0, "%s",
             sup_msg_str(&m, b, sizeof b));
  cport_free(m.buf);
  cport_tls_config_free(scfg);
  cport_tls_config_free(ccfg);
}

#ifdef CPORT_TEST_OPENSSL
/* An OpenSSL error the application left on its thread does not fail a
 * healthy session (the engine clears the queue before each call). */
void ERR_new(void);
void ERR_set_error(int lib, int reason, const char *fmt, ...);
static void test_tls_stale_openssl_error(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  char buf[16];
  size_t n = 0;
  cport_handle h = 0;
  tls_pair(e->q, &p);
  ERR_new();
  ERR_set_error(9 /* ERR_LIB_PEM */, 108 /* no start line */, NULL);
  SUP_RC(cport_recv(p.client, buf, sizeof buf, 0, CPORT_NOWAIT, &n, &h), sup_pending_rc());
  sup_send_all(e->q, p.server, "ok", 2);
  cport_msg m = expect_msg_for(e->q, p.client, h, SUP_TIMEOUT);
  SUP_ASSERT(m.status == CPORT_OK, "the recv after a stale error: %s", sup_rc_name(m.status));
}
#endif

/* The receive buffer cannot be had: the handshake fails at once with
 * CPORT_ENOMEM, it does not wait for its timeout. */
static volatile int g_fail_rx;
static void *fail_rx_malloc(size_t n) { return g_fail_rx && n == 17408 ? NULL : malloc(n); }

static void test_tls_no_memory_for_records(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  char why[160] = "";
  cport_tls_config *scfg = server_cfg("server");
  sup_make_pair(e->q, CPORT_AF_INET, &p);
  g_fail_rx = 1;
  int rc = cport_tls_start(p.server, scfg, SUP_TIMEOUT, NULL);
  g_fail_rx = 0;
  SUP_RC(rc, CPORT_ENOMEM);
  SUP_RC(cport_tls_error(p.server, why, sizeof why), CPORT_OK);
  cport_tls_config_free(scfg);
}

#define T(f) cmocka_unit_test_setup_teardown(f, sup_setup, sup_teardown)

int main(int argc, char **argv) {
  static const struct CMUnitTest tests[] = {
      T(test_tls_echo),
      T(test_tls_ops_before_handshake),
      T(test_tls_send_4mib_whole),
      T(test_tls_many_pending),
      T(test_tls_cancel_race),
      T(test_tls_close_pending),
      T(test_tls_close_notify),
      T(test_tls_peer_reset),
      T(test_tls_handshake_timeout),
      T(test_tls_wrong_host),
      T(test_tls_expired),
      T(test_tls_self_signed),
      T(test_tls_unknown_ca),
      T(test_tls_client_cert),
      T(test_tls_alpn),
      T(test_tls_recv_alloc_and_multi),
      T(test_tls_bad_calls),
      T(test_tls_blocking),
      T(test_tls_cert_store),
      T(test_tls_multi_paused),
      T(test_tls_send_after_shutdown),
      T(test_tls_select_alloc_ready),
      T(test_tls_multi_during_handshake),
#ifdef CPORT_TEST_OPENSSL
      T(test_tls_stale_openssl_error),
#endif
      T(test_tls_no_memory_for_records),
  };
  /* --engine openssl|schannel: both ends' engine (the default's else). */
  for (int i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], "--engine") == 0) {
      g_engine = strcmp(argv[i + 1], "schannel") == 0 ? CPORT_TLS_ENGINE_SCHANNEL
                                                      : CPORT_TLS_ENGINE_OPENSSL;
      g_s_engine = g_engine; /* the server's too, where it has that role */
      for (int j = i; j + 2 <= argc; j++) argv[j] = argv[j + 2];
      argc -= 2;
      break;
    }
  /* Before any context: the allocator that can refuse the receive buffer. */
  cport_set_allocator(fail_rx_malloc, realloc, calloc, free);
  int rc = sup_parse_args(argc, argv);
  if (rc != 0) return rc;
  /* Wine 8's Schannel, the Windows default, has no server role
   * (docs/wine.md, "Schannel"): there the servers run on OpenSSL. */
  if (sup_on_wine()) g_s_engine = CPORT_TLS_ENGINE_OPENSSL;
  return cmocka_run_group_tests_name(sup_group_name("tls"), tests, NULL, NULL);
}
