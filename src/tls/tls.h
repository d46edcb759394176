/* The TLS layer's own declarations: the engine table, a socket's TLS
 * state, and what filter.c and api.c share (docs/design.md §10). */
#ifndef CPORT_TLS_H
#define CPORT_TLS_H

#include "core.h"

/* What an engine's steps answer. */
enum { TLS_OK = 0, TLS_WANT = 1, TLS_CLOSED = 2, TLS_FAIL = -1 };

#define TLS_ENGINES 3 /* indexed by cport_tls_engine */

/* A configuration (cport_tls_config): read only once in_use, so sessions
 * of any thread read it without its lock; mu guards only the engines'
 * contexts, made once on first use. */
typedef struct cport_tls_config tls_config;
struct cport_tls_config {
  atomic_uint refs;   /* the user's, and one per socket that uses it */
  atomic_bool in_use; /* a socket started with it: the setters refuse */
  cp_mutex mu;
  int role, verify, min_version, engine;
  char *cert, *key, *ca; /* PEM text, NUL-terminated; NULL: none set */
  size_t cert_len, key_len, ca_len;
  char *server_name;
  unsigned char alpn[256]; /* the protocols in the wire's form */
  size_t alpn_len;
  void *store_cert;              /* Windows: a PCCERT_CONTEXT from a system store (winstore.c) */
  void *engine_ctx[TLS_ENGINES]; /* an engine's shared state for cfg */
  void (*engine_free_ctx[TLS_ENGINES])(void *); /* and how to free it */
};

/* A growing byte buffer. */
typedef struct tls_buf {
  char *data;
  size_t len, cap;
} tls_buf;

/* Room for more bytes (buf.c): false without memory. */
bool tls_buf_reserve(tls_buf *b, size_t more);
/* n bytes of p at the end: false without memory. */
bool tls_buf_add(tls_buf *b, const void *p, size_t n);

/* An engine moves bytes only: ciphertext in (feed), ciphertext out
 * (out_pending, take), plaintext in (encrypt) and out (decrypt). It owns
 * no socket and makes no system call. */
typedef struct tls_engine {
  int id; /* cport_tls_engine */
  const char *name;
  /* A session for one connection; NULL with a reason in err. */
  void *(*session_new)(const tls_config *cfg, char *err, size_t errlen);
  void (*session_free)(void *sess);
  /* Records that came from the peer. The engine may read them in place
   * until unlend (optional: NULL for an engine that copies), which the
   * filter calls before it writes buf again. */
  int (*feed)(void *sess, const void *buf, size_t len);
  int (*unlend)(void *sess); /* TLS_OK, or TLS_FAIL: no memory to keep them */
  /* A handshake step: TLS_OK when done, TLS_WANT for more records,
   * TLS_FAIL (reason: error). */
  int (*handshake)(void *sess);
  /* Plaintext to send, whole: its records wait in the engine's output. */
  int (*encrypt)(void *sess, const void *buf, size_t len);
  /* Plaintext received: TLS_OK with *got > 0, TLS_WANT, TLS_CLOSED (the
   * peer's close_notify), TLS_FAIL. */
  int (*decrypt)(void *sess, void *buf, size_t len, size_t *got);
  /* Bytes fed that no record has used yet: at the peer's end of stream,
   * more than 0 means it cut a record short. */
  size_t (*in_pending)(void *sess);
  /* Optional (NULL: out_pending and take): from now on the engine appends
   * the records it makes to *out itself, growing it with cp_realloc. */
  void (*set_sink)(void *sess, tls_buf *out);
  /* The engine's output: how much waits, and a copy of up to cap bytes
   * of it (taken). */
  size_t (*out_pending)(void *sess);
  size_t (*take)(void *sess, void *buf, size_t cap);
  /* Queue a close_notify alert. */
  int (*close_notify)(void *sess);
  /* The session's facts, once the handshake is done. */
  void (*session_info)(void *sess, cport_tls_session *info);
  /* The last failure in words. */
  const char *(*error)(void *sess);
} tls_engine;

/* A socket's TLS state; head first (it is what s->filtered points to). */
typedef struct tls_sock {
  cp_filtered head;
  const tls_engine *eng;
  tls_config *cfg; /* a reference held until the slot is freed */
  void *sess;
  int failed;           /* the error that ended the session, 0 while it lives */
  char reason[160];     /* cport_tls_error's words */
  bool handshaken;      /* the handshake is done */
  bool closed_by_peer;  /* close_notify came */
  bool shut_sent;       /* our close_notify is in the stream */
  bool rx_busy, rx_eof; /* a raw recv is posted; the peer's FIN came */
  bool want_rx;         /* pump: something waits for records */
  bool pumping, again;  /* pump is running; go round once more */
  cp_op *settling;      /* a user op its own call finished: the core ends it */
  bool settle_rx;       /* the settling op waits for records */
  bool progress;        /* a raw op ended since this was cleared */
  bool started;         /* the filter started an op (api.c: no undo then) */
  char *rx;             /* the raw recv's buffer */
  char *pt;             /* plaintext decrypted ahead (select recvs) */
  size_t pt_len;
  tls_buf tx, fly;   /* ciphertext gathering, and in flight */
  size_t tx_seen;    /* of tx, the bytes tx_total counts (an engine with a sink) */
  uint64_t tx_total; /* ciphertext bytes that entered the stream */
  uint64_t tx_sent;  /* of them, sent */
} tls_sock;

/* An engine's shared state for cfg (its SSL_CTX, its credentials), made
 * by the first session that needs it with make, and freed with cfg by
 * free_fn (api.c); NULL with a reason in err if make fails. */
void *tls_engine_ctx(tls_config *cfg, int id, void *(*make)(const tls_config *, char *, size_t),
                     void (*free_fn)(void *), char *err, size_t errlen);

/* The engines this build has (NULL: none). */
const tls_engine *tls_engine_openssl(void);
const tls_engine *tls_engine_schannel(void);

/* cport's own check of a peer's name, the same on every engine
 * (verify.c): want (a DNS name, or an IPv4 or IPv6 address in text)
 * against the certificate's subject alternative names, dns[] (with a
 * wildcard only as a whole leftmost label) and ips[] (4 or 16 bytes
 * each, ip_lens[]). */
bool tls_name_matches(const char *want, const char *const *dns, size_t n_dns,
                      const unsigned char *const *ips, const size_t *ip_lens, size_t n_ips);
/* Whether name is an IP address in text; its bytes into out (16 bytes of
 * room), their count in *len. */
bool tls_parse_ip(const char *name, unsigned char *out, size_t *len);

#ifdef _WIN32
/* A certificate of a system store (winstore.c): store "MY",
 * "CurrentUser\\MY" or "LocalMachine\\MY"; find "thumbprint:HEX" or
 * "subject:TEXT". CPORT_OK with *cert, CPORT_ENOTFOUND, CPORT_EINVAL. */
int tls_store_find(const char *store, const char *find, void **cert);
void tls_store_release(void *cert);
#endif

/* The filter table (filter.c). */
extern const cp_filter tls_filter;

/* Ends the session with err (first failure wins) and a reason (NULL: the
 * engine's); returns err. */
int tls_fail(tls_sock *t, int err, const char *reason);
void tls_sock_free(tls_sock *t);

/* A raw op that ended because the socket is closing: not a failure. */
static inline bool op_was_stopped(int status) {
  return status == CPORT_ECANCELED || status == CPORT_ECLOSED;
}

#endif
