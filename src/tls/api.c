/* TLS's public calls: configurations, and the upgrade of a socket, which
 * puts the TLS filter (filter.c) on it (docs/design.md §10). */
#include "tls.h"

#include <stdio.h>
#include <string.h>

#define ALPN_MAX 16

static const tls_engine *engine_for(int id) {
#ifdef CPORT_HAVE_SCHANNEL
  if (id == CPORT_TLS_ENGINE_DEFAULT || id == CPORT_TLS_ENGINE_SCHANNEL)
    return tls_engine_schannel();
#endif
#ifdef CPORT_HAVE_OPENSSL
  if (id == CPORT_TLS_ENGINE_DEFAULT || id == CPORT_TLS_ENGINE_OPENSSL) return tls_engine_openssl();
#endif
  (void)id;
  return NULL;
}

/* ---- configurations ------------------------------------------------------- */

int cport_tls_config_create(cport_tls_config **out, int role) {
  if (!out) return CPORT_EINVAL;
  *out = NULL;
  if (role != CPORT_TLS_CLIENT && role != CPORT_TLS_SERVER) return CPORT_EINVAL;
  if (!engine_for(CPORT_TLS_ENGINE_DEFAULT)) return CPORT_ENOTSUP;
  cport_tls_config *cfg = cp_calloc(1, sizeof *cfg);
  if (!cfg) return CPORT_ENOMEM;
  if (cp_mutex_init(&cfg->mu) != 0) {
    cp_free(cfg);
    return CPORT_ENOMEM;
  }
  atomic_init(&cfg->refs, 1u);
  cfg->role = role;
  cfg->verify = role == CPORT_TLS_CLIENT ? CPORT_TLS_VERIFY_PEER : CPORT_TLS_VERIFY_NONE;
  cfg->min_version = CPORT_TLS_1_2;
  *out = cfg;
  return CPORT_OK;
}

static void config_unref(cport_tls_config *cfg) {
  if (atomic_fetch_sub(&cfg->refs, 1u) != 1u) return;
  for (int i = 0; i < TLS_ENGINES; i++)
    if (cfg->engine_ctx[i]) cfg->engine_free_ctx[i](cfg->engine_ctx[i]);
  cp_free(cfg->cert);
  cp_free(cfg->key);
  cp_free(cfg->ca);
  cp_free(cfg->server_name);
#ifdef _WIN32
  tls_store_release(cfg->store_cert);
#endif
  cp_mutex_destroy(&cfg->mu);
  cp_free(cfg);
}

void cport_tls_config_free(cport_tls_config *cfg) {
  if (cfg) config_unref(cfg);
}

/* A configuration may change until a socket uses it. */
static int settable(const cport_tls_config *cfg) {
  if (!cfg) return CPORT_EINVAL;
  return atomic_load(&cfg->in_use) ? CPORT_EBUSY : CPORT_OK;
}

/* A copy of len bytes (NUL-terminated) into *dst. */
static int keep(char **dst, size_t *dst_len, const char *src, size_t len) {
  char *p = cp_malloc(len + 1);
  if (!p) return CPORT_ENOMEM;
  memcpy(p, src, len);
  p[len] = '\0';
  cp_free(*dst);
  *dst = p;
  if (dst_len) *dst_len = len;
  return CPORT_OK;
}

/* A whole file into *dst. */
static int keep_file(char **dst, size_t *dst_len, const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return CPORT_EINVAL;
  char *p = NULL;
  size_t len = 0, cap = 0;
  int rc = CPORT_OK;
  for (;;) {
    if (len == cap) {
      cap = cap ? cap * 2 : 8192;
      char *q = cap <= (1u << 24) ? cp_realloc(p, cap + 1) : NULL;
      if (!q) {
        rc = cap > (1u << 24) ? CPORT_EINVAL : CPORT_ENOMEM;
        break;
      }
      p = q;
    }
    size_t n = fread(p + len, 1, cap - len, f);
    len += n;
    if (n == 0) break;
  }
  if (rc == CPORT_OK && ferror(f)) rc = CPORT_EINVAL;
  fclose(f);
  if (rc != CPORT_OK) {
    cp_free(p);
    return rc;
  }
  p[len] = '\0';
  cp_free(*dst);
  *dst = p;
  *dst_len = len;
  return CPORT_OK;
}

int cport_tls_config_set_cert_file(cport_tls_config *cfg, const char *cert_path,
                                   const char *key_path) {
  int rc = settable(cfg);
  if (rc == CPORT_OK && (!cert_path || !key_path)) rc = CPORT_EINVAL;
  if (rc == CPORT_OK) rc = keep_file(&cfg->cert, &cfg->cert_len, cert_path);
  if (rc == CPORT_OK) rc = keep_file(&cfg->key, &cfg->key_len, key_path);
  return rc;
}

int cport_tls_config_set_cert_pem(cport_tls_config *cfg, const char *cert, size_t cert_len,
                                  const char *key, size_t key_len) {
  int rc = settable(cfg);
  if (rc == CPORT_OK && (!cert || !key || cert_len == 0 || key_len == 0)) rc = CPORT_EINVAL;
  if (rc == CPORT_OK) rc = keep(&cfg->cert, &cfg->cert_len, cert, cert_len);
  if (rc == CPORT_OK) rc = keep(&cfg->key, &cfg->key_len, key, key_len);
  return rc;
}

int cport_tls_config_set_cert_store(cport_tls_config *cfg, const char *store, const char *find) {
  int rc = settable(cfg);
  if (rc == CPORT_OK && (!store || !find)) rc = CPORT_EINVAL;
#ifdef _WIN32
  void *cert = NULL;
  if (rc == CPORT_OK) rc = tls_store_find(store, find, &cert);
  if (rc == CPORT_OK) {
    tls_store_release(cfg->store_cert);
    cfg->store_cert = cert;
  }
  return rc;
#else
  return rc == CPORT_OK ? CPORT_ENOTSUP : rc;
#endif
}

int cport_tls_config_set_ca_file(cport_tls_config *cfg, const char *path) {
  int rc = settable(cfg);
  if (rc == CPORT_OK && !path) rc = CPORT_EINVAL;
  return rc == CPORT_OK ? keep_file(&cfg->ca, &cfg->ca_len, path) : rc;
}

int cport_tls_config_set_ca_pem(cport_tls_config *cfg, const char *pem, size_t len) {
  int rc = settable(cfg);
  if (rc == CPORT_OK && (!pem || len == 0)) rc = CPORT_EINVAL;
  return rc == CPORT_OK ? keep(&cfg->ca, &cfg->ca_len, pem, len) : rc;
}

int cport_tls_config_set_verify(cport_tls_config *cfg, int mode) {
  int rc = settable(cfg);
  if (rc == CPORT_OK && (mode < CPORT_TLS_VERIFY_PEER || mode > CPORT_TLS_VERIFY_NONE))
    rc = CPORT_EINVAL;
  if (rc == CPORT_OK) cfg->verify = mode;
  return rc;
}

int cport_tls_config_set_server_name(cport_tls_config *cfg, const char *name) {
  int rc = settable(cfg);
  size_t len = name ? strlen(name) : 0;
  if (rc == CPORT_OK && (len == 0 || len > 253)) rc = CPORT_EINVAL;
  return rc == CPORT_OK ? keep(&cfg->server_name, NULL, name, len) : rc;
}

/* Kept in the wire's form: each protocol's length, then its bytes. */
int cport_tls_config_set_alpn(cport_tls_config *cfg, const char *const *protocols, int count) {
  int rc = settable(cfg);
  if (rc == CPORT_OK && (!protocols || count < 1 || count > ALPN_MAX)) rc = CPORT_EINVAL;
  if (rc != CPORT_OK) return rc;
  unsigned char wire[sizeof cfg->alpn];
  size_t n = 0;
  for (int i = 0; i < count; i++) {
    size_t len = protocols[i] ? strlen(protocols[i]) : 0;
    if (len == 0 || len > 255 || n + 1 + len > sizeof wire) return CPORT_EINVAL;
    wire[n++] = (unsigned char)len;
    memcpy(wire + n, protocols[i], len);
    n += len;
  }
  memcpy(cfg->alpn, wire, n);
  cfg->alpn_len = n;
  return CPORT_OK;
}

int cport_tls_config_set_min_version(cport_tls_config *cfg, int version) {
  int rc = settable(cfg);
  if (rc == CPORT_OK && version != CPORT_TLS_1_2 && version != CPORT_TLS_1_3) rc = CPORT_EINVAL;
  if (rc == CPORT_OK) cfg->min_version = version;
  return rc;
}

int cport_tls_config_set_engine(cport_tls_config *cfg, int engine) {
  int rc = settable(cfg);
  if (rc == CPORT_OK && (engine < CPORT_TLS_ENGINE_DEFAULT || engine > CPORT_TLS_ENGINE_SCHANNEL))
    rc = CPORT_EINVAL;
  if (rc == CPORT_OK && !engine_for(engine)) rc = CPORT_ENOTSUP;
  if (rc == CPORT_OK) cfg->engine = engine;
  return rc;
}

void *tls_engine_ctx(tls_config *cfg, int id, void *(*make)(const tls_config *, char *, size_t),
                     void (*free_fn)(void *), char *err, size_t errlen) {
  cp_mutex_lock(&cfg->mu);
  void *c = cfg->engine_ctx[id];
  if (!c && (c = make(cfg, err, errlen)) != NULL) {
    cfg->engine_ctx[id] = c;
    cfg->engine_free_ctx[id] = free_fn;
  }
  cp_mutex_unlock(&cfg->mu);
  return c;
}

/* ---- a socket's session --------------------------------------------------- */

int tls_fail(tls_sock *t, int err, const char *reason) {
  if (t->failed) return t->failed;
  t->failed = err;
  if (t->pumping) t->again = true; /* the ops waiting end on the next pass */
  if (!reason && err == CPORT_ETLS && t->sess) reason = t->eng->error(t->sess);
  if (!reason) reason = cport_strerror(err);
  snprintf(t->reason, sizeof t->reason, "%s", reason);
  return err;
}

void tls_sock_free(tls_sock *t) {
  if (t->sess) t->eng->session_free(t->sess);
  config_unref(t->cfg);
  cp_free(t->rx);
  cp_free(t->pt);
  cp_free(t->tx.data);
  cp_free(t->fly.data);
  cp_free(t);
}

/* A select wait the user cancelled, whose record the OS still holds
 * (io_uring: until the kernel lets go): its handle has ended, it moves
 * no byte, and its end goes to the filter, which drops it. */
static bool lingering(const cp_op *op) { return op->select && op->cancelled; }

/* Whether s may become TLS: a connected stream socket, not yet TLS, with
 * nothing pending (bytes in flight would be neither plaintext nor
 * records). */
static int check_upgrade(const cp_sock *s) {
  if (s->type != CPORT_SOCK_STREAM || s->listening || !s->connected || s->filtered)
    return CPORT_EINVAL;
  for (int dir = CP_RD; dir <= CP_WR; dir++)
    for (const cp_op *op = s->dirs[dir].head; op; op = op->next)
      if (!lingering(op)) return CPORT_EBUSY;
  return CPORT_OK;
}

static void adopt_lingering(cp_sock *s) {
  for (int dir = CP_RD; dir <= CP_WR; dir++)
    for (cp_op *op = s->dirs[dir].head; op; op = op->next) op->raw = 1;
}

/* The filter, on s; a session that cannot be made leaves the filter in
 * its failed state, so the handshake ends with CPORT_ETLS and the reason
 * is there for cport_tls_error. */
static int install(cp_sock *s, cport_tls_config *cfg, const tls_engine *eng) {
  tls_sock *t = cp_calloc(1, sizeof *t);
  if (!t) return CPORT_ENOMEM;
  atomic_store(&cfg->in_use, true);
  atomic_fetch_add(&cfg->refs, 1u);
  t->cfg = cfg;
  t->eng = eng;
  t->head.ops = &tls_filter;
  char err[sizeof t->reason] = "";
  t->sess = eng->session_new(cfg, err, sizeof err);
  if (!t->sess) tls_fail(t, CPORT_ETLS, err[0] ? err : "the engine made no session");
  if (t->sess && eng->set_sink) eng->set_sink(t->sess, &t->tx);
  adopt_lingering(s);
  s->filtered = &t->head;
  return CPORT_OK;
}

typedef struct upgrade {
  cport_tls_config *cfg;
  const tls_engine *eng;
} upgrade;

/* Under the lock that submits the handshake: no op of another thread can
 * come between the filter and its handshake. */
static int attach_tls(cp_sock *s, void *arg) {
  const upgrade *u = arg;
  int rc = check_upgrade(s);
  return rc == CPORT_OK ? install(s, u->cfg, u->eng) : rc;
}

/* The handshake could not even start (no memory for its record): the
 * socket is left as it was, plain. */
static void undo_tls(cp_sock *s, void *arg) {
  (void)arg;
  tls_sock *t = (tls_sock *)(void *)s->filtered;
  if (!t || t->started) return;
  for (int dir = CP_RD; dir <= CP_WR; dir++)
    for (cp_op *op = s->dirs[dir].head; op; op = op->next) op->raw = 0;
  s->filtered = NULL;
  tls_sock_free(t);
}

int cport_tls_start(cport_socket id, const cport_tls_config *cfg, int timeout,
                    cport_handle *handle) {
  if (!cfg || timeout < CPORT_NOWAIT || (timeout == CPORT_NOWAIT && !handle)) return CPORT_EINVAL;
  /* A client that checks the server's certificate must know whom it wants. */
  if (cfg->role == CPORT_TLS_CLIENT && cfg->verify == CPORT_TLS_VERIFY_PEER && !cfg->server_name)
    return CPORT_EINVAL;
  upgrade u = {(cport_tls_config *)(uintptr_t)cfg, engine_for(cfg->engine)};
  if (!u.eng) return CPORT_ENOTSUP;
  const cp_attach with = {attach_tls, undo_tls, &u};
  return cp_io_call(id, CPORT_OP_TLS_HANDSHAKE, timeout, handle, &with);
}

int cport_tls_shutdown(cport_socket id, int timeout, cport_handle *handle) {
  cp_sock *s = cp_sock_lock(id);
  if (!s) return CPORT_EBADF;
  bool tls = s->filtered != NULL;
  cp_sock_unlock(s);
  return tls ? cp_io_call(id, CPORT_OP_TLS_SHUTDOWN, timeout, handle, NULL) : CPORT_EINVAL;
}

int cport_tls_info(cport_socket id, cport_tls_session *info) {
  if (!info) return CPORT_EINVAL;
  memset(info, 0, sizeof *info);
  cp_sock *s = cp_sock_lock(id);
  if (!s) return CPORT_EBADF;
  tls_sock *t = (tls_sock *)(void *)s->filtered;
  int rc = t && t->handshaken && t->sess ? CPORT_OK : CPORT_EINVAL;
  if (rc == CPORT_OK) {
    t->eng->session_info(t->sess, info);
    info->engine = t->eng->id;
  }
  cp_sock_unlock(s);
  return rc;
}

int cport_tls_error(cport_socket id, char *buf, size_t len) {
  if (!buf || len == 0) return CPORT_EINVAL;
  buf[0] = '\0';
  cp_sock *s = cp_sock_lock(id);
  if (!s) return CPORT_EBADF;
  tls_sock *t = (tls_sock *)(void *)s->filtered;
  int rc = t && t->failed ? CPORT_OK : CPORT_ENOTFOUND;
  if (rc == CPORT_OK) snprintf(buf, len, "%s", t->reason);
  cp_sock_unlock(s);
  return rc;
}
