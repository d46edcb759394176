/* The OpenSSL 3 engine: a session is an SSL object between two memory
 * BIOs, so it makes no system call and the records still move through
 * the socket's own operations (filter.c). OpenSSL's verification is
 * replaced whole (SSL_CTX_set_cert_verify_callback) by cport's: the
 * peer's chain against the configuration's roots or the system's, and
 * its name by verify.c (docs/design.md §10). A refusal there fails the
 * handshake inside OpenSSL, which then sends the peer its alert. */
#include "tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#ifdef _WIN32
#include <windows.h> /* before every other Windows header */

#include <wincrypt.h>
#endif

#define MAX_SANS 64

typedef struct ossl_ctx {
  SSL_CTX *ssl;
  X509_STORE *roots;    /* the configuration's, or the system's */
  BIO_METHOD *lent_bio; /* the records-in BIO (below) */
  BIO_METHOD *sink_bio; /* the records-out BIO */
} ossl_ctx;

/* Records in, read where the socket's receive put them: feed() lends
 * OpenSSL the filter's receive buffer instead of copying it into a memory
 * BIO (a copy of every record, and its buffer zeroed as it regrows). The
 * filter reuses that buffer only for its next receive, posted once the
 * engine wanted more (every lent byte read), and calls unlend() before
 * it all the same: what is left then is copied into kept. */
typedef struct lent_input {
  const char *ptr; /* lent by feed, not yet read */
  size_t len;
  tls_buf kept; /* copied, read from kept_off: older than ptr */
  size_t kept_off;
} lent_input;

typedef struct ossl_sess {
  SSL *ssl;
  BIO *in, *out; /* records from the peer (over lent); records to send */
  lent_input lent;
  const tls_config *cfg;
  X509_STORE *roots;
  bool refused; /* cport's check said no: reason is its, not OpenSSL's */
  char reason[160];
} ossl_sess;

/* ---- reasons ------------------------------------------------------------- */

/* The first queued OpenSSL error (or what), into s->reason; the queue is
 * emptied so the next session starts clean. */
static void set_reason(ossl_sess *s, const char *what) {
  unsigned long e = ERR_peek_error();
  if (s->refused) {
    /* the reason check_chain wrote */
  } else if (e != 0 && !what && ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
    snprintf(s->reason, sizeof s->reason, "the peer presented no certificate");
  } else if (e != 0 && !what) {
    char buf[120];
    ERR_error_string_n(e, buf, sizeof buf);
    const char *r = ERR_reason_error_string(e);
    snprintf(s->reason, sizeof s->reason, "%s", r ? r : buf);
  } else {
    snprintf(s->reason, sizeof s->reason, "%s", what ? what : "TLS failed");
  }
  ERR_clear_error();
}

static void set_errbuf(char *err, size_t len, const char *what) {
  unsigned long e = ERR_get_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  if (r)
    snprintf(err, len, "%s: %s", what, r);
  else
    snprintf(err, len, "%s", what);
  ERR_clear_error();
}

/* ---- the configuration's context ------------------------------------------ */

static int check_chain(X509_STORE_CTX *x, void *arg);

/* ALPN on a server: the first of the client's offers that the
 * configuration lists; none in common, no ALPN. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
  const tls_config *cfg = arg;
  (void)ssl;
  unsigned char *sel = NULL;
  if (cfg->alpn_len == 0) return SSL_TLSEXT_ERR_NOACK;
  if (SSL_select_next_proto(&sel, outlen, cfg->alpn, (unsigned)cfg->alpn_len, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

/* Every certificate of a PEM text into the store. */
static bool load_roots(X509_STORE *st, const char *pem, size_t len) {
  BIO *b = BIO_new_mem_buf(pem, (int)len);
  if (!b) return false;
  int n = 0;
  X509 *x;
  while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
    if (X509_STORE_add_cert(st, x) == 1) n++;
    X509_free(x);
  }
  ERR_clear_error(); /* the end of the text reads as an error */
  BIO_free(b);
  return n > 0;
}

/* The system's roots: on Windows its ROOT store (OpenSSL's default paths
 * name a directory of the build machine there), elsewhere OpenSSL's
 * default file and directory. */
static void load_system_roots(X509_STORE *st) {
#ifdef _WIN32
  HCERTSTORE sys = CertOpenSystemStoreW(0, L"ROOT");
  if (!sys) return;
  PCCERT_CONTEXT c = NULL;
  while ((c = CertEnumCertificatesInStore(sys, c)) != NULL) {
    const unsigned char *der = c->pbCertEncoded;
    X509 *x = d2i_X509(NULL, &der, (long)c->cbCertEncoded);
    if (x) X509_STORE_add_cert(st, x);
    X509_free(x);
  }
  CertCloseStore(sys, 0);
  ERR_clear_error();
#else
  X509_STORE_set_default_paths(st);
#endif
}

/* The leaf, the chain after it and the key of a PEM text. */
static bool load_identity(SSL_CTX *ssl, const tls_config *cfg, char *err, size_t len) {
  BIO *b = BIO_new_mem_buf(cfg->cert, (int)cfg->cert_len);
  X509 *leaf = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
  bool ok = leaf && SSL_CTX_use_certificate(ssl, leaf) == 1;
  X509_free(leaf);
  X509 *x;
  while (ok && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
    if (SSL_CTX_add0_chain_cert(ssl, x) != 1) {
      X509_free(x);
      ok = false;
    }
  BIO_free(b);
  if (!ok) {
    set_errbuf(err, len, "the certificate could not be read");
    return false;
  }
  ERR_clear_error();
  b = BIO_new_mem_buf(cfg->key, (int)cfg->key_len);
  EVP_PKEY *key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
  BIO_free(b);
  ok = key && SSL_CTX_use_PrivateKey(ssl, key) == 1 && SSL_CTX_check_private_key(ssl) == 1;
  EVP_PKEY_free(key);
  if (!ok) set_errbuf(err, len, "the private key could not be read or does not match");
  return ok;
}

static void ctx_free(void *p) {
  ossl_ctx *c = p;
  SSL_CTX_free(c->ssl);
  X509_STORE_free(c->roots);
  if (c->lent_bio) BIO_meth_free(c->lent_bio);
  if (c->sink_bio) BIO_meth_free(c->sink_bio);
  cp_free(c);
}

/* ---- records in ----------------------------------------------------------- */

static size_t lent_pending(const lent_input *in) { return in->kept.len - in->kept_off + in->len; }

static bool kept_add(lent_input *in, const char *p, size_t n) {
  if (in->kept_off > 0) { /* move what is unread to the front */
    memmove(in->kept.data, in->kept.data + in->kept_off, in->kept.len - in->kept_off);
    in->kept.len -= in->kept_off;
    in->kept_off = 0;
  }
  return tls_buf_add(&in->kept, p, n);
}

static int lent_read(BIO *b, char *out, int outl) {
  lent_input *in = BIO_get_data(b);
  size_t want = outl > 0 ? (size_t)outl : 0, n = 0;
  BIO_clear_retry_flags(b);
  if (in->kept.len > in->kept_off) {
    n = in->kept.len - in->kept_off < want ? in->kept.len - in->kept_off : want;
    memcpy(out, in->kept.data + in->kept_off, n);
    in->kept_off += n;
  } else if (in->len > 0) {
    n = in->len < want ? in->len : want;
    memcpy(out, in->ptr, n);
    in->ptr += n;
    in->len -= n;
  }
  if (n == 0) {
    BIO_set_retry_read(b); /* more to come, not the end */
    return -1;
  }
  return (int)n;
}

static long lent_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)num;
  (void)ptr;
  if (cmd == BIO_CTRL_PENDING) return (long)lent_pending(BIO_get_data(b));
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

/* Records out, written straight into the filter's outgoing buffer (the
 * sink), instead of into a memory BIO it would copy them from. */
static int sink_write(BIO *b, const char *p, int n) {
  tls_buf *out = BIO_get_data(b);
  size_t len = n > 0 ? (size_t)n : 0;
  BIO_clear_retry_flags(b);
  return tls_buf_add(out, p, len) ? n : -1; /* -1: no memory, the write fails */
}

static long sink_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)b;
  (void)num;
  (void)ptr;
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static BIO_METHOD *sink_method(void) {
  BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "cport records out");
  if (m && (BIO_meth_set_write(m, sink_write) != 1 || BIO_meth_set_ctrl(m, sink_ctrl) != 1)) {
    BIO_meth_free(m);
    m = NULL;
  }
  return m;
}

static BIO_METHOD *lent_method(void) {
  BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "cport records in");
  if (m && (BIO_meth_set_read(m, lent_read) != 1 || BIO_meth_set_ctrl(m, lent_ctrl) != 1)) {
    BIO_meth_free(m);
    m = NULL;
  }
  return m;
}

static ossl_ctx *ctx_new(const tls_config *cfg, char *err, size_t len) {
  ossl_ctx *c = cp_calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, len, "no memory");
    return NULL;
  }
  bool client = cfg->role == CPORT_TLS_CLIENT;
  c->ssl = SSL_CTX_new(client ? TLS_client_method() : TLS_server_method());
  c->roots = X509_STORE_new();
  c->lent_bio = lent_method();
  c->sink_bio = sink_method();
  bool ok = c->ssl && c->roots && c->lent_bio && c->sink_bio;
  if (!ok) set_errbuf(err, len, "no TLS context");
  if (ok)
    ok = SSL_CTX_set_min_proto_version(
             c->ssl, cfg->min_version == CPORT_TLS_1_3 ? TLS1_3_VERSION : TLS1_2_VERSION) == 1;
  if (ok && cfg->ca && !load_roots(c->roots, cfg->ca, cfg->ca_len)) {
    snprintf(err, len, "no certificate in the trusted roots given");
    ok = false;
  }
  if (ok && !cfg->ca) load_system_roots(c->roots);
  if (ok && cfg->cert) ok = load_identity(c->ssl, cfg, err, len);
  if (ok && cfg->store_cert && !cfg->cert) {
    snprintf(err, len, "a certificate from a Windows store needs the Schannel engine");
    ok = false;
  }
  if (ok && !client && !cfg->cert) {
    snprintf(err, len, "a server needs a certificate and key");
    ok = false;
  }
  if (ok && client && cfg->alpn_len > 0 &&
      SSL_CTX_set_alpn_protos(c->ssl, cfg->alpn, (unsigned)cfg->alpn_len) != 0) {
    set_errbuf(err, len, "ALPN");
    ok = false;
  }
  if (!ok) {
    ctx_free(c);
    return NULL;
  }
  if (!client) SSL_CTX_set_alpn_select_cb(c->ssl, select_alpn, (void *)(uintptr_t)cfg);
  /* A server asks for a certificate unless told not to (and refuses a
   * client without one in VERIFY_PEER); the answer is check_chain's. */
  int mode = cfg->verify == CPORT_TLS_VERIFY_NONE ? SSL_VERIFY_NONE : SSL_VERIFY_PEER;
  if (!client && cfg->verify == CPORT_TLS_VERIFY_PEER) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  SSL_CTX_set_verify(c->ssl, mode, NULL);
  SSL_CTX_set_cert_verify_callback(c->ssl, check_chain, NULL);
  SSL_CTX_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_session_cache_mode(c->ssl, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(c->ssl, 0); /* no resumption: no tickets to send */
  /* A TLS 1.2 renegotiation would make a write wait for a read: refused. */
  SSL_CTX_set_options(c->ssl, SSL_OP_NO_RENEGOTIATION);
  return c;
}

static void *ctx_make(const tls_config *cfg, char *err, size_t len) {
  return ctx_new(cfg, err, len);
}

/* The configuration's context, made by the first session that needs it. */
static ossl_ctx *ctx_of(tls_config *cfg, char *err, size_t len) {
  return tls_engine_ctx(cfg, CPORT_TLS_ENGINE_OPENSSL, ctx_make, ctx_free, err, len);
}

/* ---- sessions ------------------------------------------------------------- */

static void session_free(void *p) {
  ossl_sess *s = p;
  SSL_free(s->ssl); /* and its BIOs */
  cp_free(s->lent.kept.data);
  cp_free(s);
}

static void *session_new(const tls_config *cfg, char *err, size_t len) {
  ERR_clear_error();
  ossl_ctx *c = ctx_of((tls_config *)(uintptr_t)cfg, err, len);
  if (!c) return NULL;
  ossl_sess *s = cp_calloc(1, sizeof *s);
  if (!s) {
    snprintf(err, len, "no memory");
    return NULL;
  }
  s->cfg = cfg;
  s->roots = c->roots;
  s->ssl = SSL_new(c->ssl);
  s->in = BIO_new(c->lent_bio);
  s->out = BIO_new(c->sink_bio); /* its sink comes with set_sink */
  if (!s->ssl || !s->in || !s->out) {
    BIO_free(s->in);
    BIO_free(s->out);
    SSL_free(s->ssl);
    cp_free(s);
    set_errbuf(err, len, "no TLS session");
    return NULL;
  }
  BIO_set_data(s->in, &s->lent);
  BIO_set_init(s->in, 1);
  BIO_set_init(s->out, 1);
  SSL_set_app_data(s->ssl, s); /* for check_chain */
  SSL_set_bio(s->ssl, s->in, s->out);
  if (cfg->role == CPORT_TLS_CLIENT) {
    unsigned char ip[16];
    size_t ip_len;
    SSL_set_connect_state(s->ssl);
    if (cfg->server_name && !tls_parse_ip(cfg->server_name, ip, &ip_len))
      SSL_set_tlsext_host_name(s->ssl, cfg->server_name);
  } else {
    SSL_set_accept_state(s->ssl);
  }
  return s;
}

static int unlend(void *p) {
  lent_input *in = &((ossl_sess *)p)->lent;
  if (in->len == 0) return TLS_OK;
  if (!kept_add(in, in->ptr, in->len)) return TLS_FAIL;
  in->len = 0;
  return TLS_OK;
}

static int feed(void *p, const void *buf, size_t len) {
  ossl_sess *s = p;
  lent_input *in = &s->lent;
  if (lent_pending(in) == 0) { /* the usual case: lent, not copied */
    in->ptr = buf;
    in->len = len;
    return TLS_OK;
  }
  /* older bytes first, then these, all kept */
  return unlend(s) == TLS_OK && kept_add(in, buf, len) ? TLS_OK : TLS_FAIL;
}

/* The peer's subject alternative names, for verify.c. */
static bool name_matches(X509 *leaf, const char *want) {
  GENERAL_NAMES *names = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
  const char *dns[MAX_SANS];
  const unsigned char *ips[MAX_SANS];
  size_t ip_lens[MAX_SANS], n_dns = 0, n_ips = 0;
  int n = names ? sk_GENERAL_NAME_num(names) : 0;
  for (int i = 0; i < n; i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
    if (g->type == GEN_DNS && n_dns < MAX_SANS) {
      const ASN1_STRING *str = g->d.dNSName;
      const char *text = (const char *)ASN1_STRING_get0_data(str);
      if (strlen(text) == (size_t)ASN1_STRING_length(str)) dns[n_dns++] = text; /* no NUL inside */
    } else if (g->type == GEN_IPADD && n_ips < MAX_SANS) {
      ips[n_ips] = ASN1_STRING_get0_data(g->d.iPAddress);
      ip_lens[n_ips++] = (size_t)ASN1_STRING_length(g->d.iPAddress);
    }
  }
  bool ok = tls_name_matches(want, dns, n_dns, ips, ip_lens, n_ips);
  GENERAL_NAMES_free(names);
  return ok;
}

/* The chain to a trusted root, within its dates, for the peer's role. */
static bool chain_ok(ossl_sess *s, X509 *leaf, STACK_OF(X509) * chain, int *err) {
  X509_STORE_CTX *x = X509_STORE_CTX_new();
  bool ok = x && X509_STORE_CTX_init(x, s->roots, leaf, chain) == 1;
  if (ok)
    X509_STORE_CTX_set_purpose(x, s->cfg->role == CPORT_TLS_CLIENT ? X509_PURPOSE_SSL_SERVER
                                                                   : X509_PURPOSE_SSL_CLIENT);
  *err = X509_V_ERR_OUT_OF_MEM;
  if (ok && X509_verify_cert(x) != 1) {
    int e = *err = X509_STORE_CTX_get_error(x);
    const char *why = e == X509_V_ERR_CERT_HAS_EXPIRED              ? "certificate has expired"
                      : e == X509_V_ERR_CERT_NOT_YET_VALID          ? "certificate is not yet valid"
                      : e == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ? "self-signed certificate"
                      : e == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
                              e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                              e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
                          ? "unknown CA"
                          : X509_verify_cert_error_string(e);
    snprintf(s->reason, sizeof s->reason, "certificate verify failed: %s", why);
    ok = false;
  } else if (!ok) {
    snprintf(s->reason, sizeof s->reason, "no memory to check the certificate");
  }
  X509_STORE_CTX_free(x);
  ERR_clear_error();
  return ok;
}

/* OpenSSL's whole verification, replaced: cport's checks by the
 * configuration's mode. 0 fails the handshake with the alert that x's
 * error names. */
static int check_chain(X509_STORE_CTX *x, void *arg) {
  (void)arg;
  SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
  ossl_sess *s = ssl ? SSL_get_app_data(ssl) : NULL;
  X509 *leaf = X509_STORE_CTX_get0_cert(x);
  if (!s || !leaf) return 0;
  const tls_config *cfg = s->cfg;
  if (cfg->verify == CPORT_TLS_VERIFY_NONE) return 1;
  int err = X509_V_OK;
  if (!chain_ok(s, leaf, X509_STORE_CTX_get0_untrusted(x), &err)) {
    s->refused = true;
    X509_STORE_CTX_set_error(x, err);
    return 0;
  }
  if (cfg->role == CPORT_TLS_CLIENT && cfg->server_name && !name_matches(leaf, cfg->server_name)) {
    snprintf(s->reason, sizeof s->reason,
             "certificate verify failed: host name mismatch (%s is not in its names)",
             cfg->server_name);
    s->refused = true;
    X509_STORE_CTX_set_error(x, X509_V_ERR_HOSTNAME_MISMATCH);
    return 0;
  }
  return 1;
}

/* What an SSL call's result means for the filter. */
static int outcome(ossl_sess *s, int ret) {
  int e = SSL_get_error(s->ssl, ret);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return TLS_WANT;
  if (e == SSL_ERROR_ZERO_RETURN) return TLS_CLOSED;
  set_reason(s, e == SSL_ERROR_SSL ? NULL : "the TLS stream broke");
  return TLS_FAIL;
}

static int handshake(void *p) {
  ossl_sess *s = p;
  ERR_clear_error(); /* SSL_get_error reads the thread's queue: only ours in it */
  int ret = SSL_do_handshake(s->ssl);
  if (ret == 1) return TLS_OK;
  int rc = outcome(s, ret);
  return rc == TLS_CLOSED ? TLS_FAIL : rc;
}

static int encrypt(void *p, const void *buf, size_t len) {
  ossl_sess *s = p;
  size_t off = 0;
  while (off < len) { /* a memory BIO never pushes back: each call takes a record or more */
    size_t n = 0;
    ERR_clear_error();
    int ret = SSL_write_ex(s->ssl, (const char *)buf + off, len - off, &n);
    if (ret != 1) {
      (void)outcome(s, ret); /* the reason */
      return TLS_FAIL;
    }
    off += n;
  }
  return TLS_OK;
}

static int decrypt(void *p, void *buf, size_t len, size_t *got) {
  ossl_sess *s = p;
  *got = 0;
  ERR_clear_error();
  int ret = SSL_read_ex(s->ssl, buf, len, got);
  return ret == 1 ? TLS_OK : outcome(s, ret);
}

static size_t in_pending(void *p) {
  ossl_sess *s = p;
  return lent_pending(&s->lent) + (SSL_has_pending(s->ssl) ? 1u : 0u);
}

static void set_sink(void *p, tls_buf *out) {
  ossl_sess *s = p;
  BIO_set_data(s->out, out);
}

static int close_notify(void *p) {
  ossl_sess *s = p;
  ERR_clear_error();
  int ret = SSL_shutdown(s->ssl); /* 0: sent, the peer's yet to come; 1: both */
  if (ret >= 0) return TLS_OK;
  set_reason(s, NULL);
  return TLS_FAIL;
}

static void session_info(void *p, cport_tls_session *info) {
  ossl_sess *s = p;
  info->version = SSL_version(s->ssl) == TLS1_3_VERSION ? CPORT_TLS_1_3 : CPORT_TLS_1_2;
  snprintf(info->cipher, sizeof info->cipher, "%s", SSL_get_cipher_name(s->ssl));
  const unsigned char *alpn = NULL;
  unsigned alpn_len = 0;
  SSL_get0_alpn_selected(s->ssl, &alpn, &alpn_len);
  if (alpn_len > 0) snprintf(info->alpn, sizeof info->alpn, "%.*s", (int)alpn_len, alpn);
  X509 *peer = SSL_get0_peer_certificate(s->ssl);
  BIO *b = peer ? BIO_new(BIO_s_mem()) : NULL;
  /* RFC 2253 ("CN=localhost, O=..."), most specific first: Schannel's form too */
  if (b && X509_NAME_print_ex(b, X509_get_subject_name(peer), 0,
                              XN_FLAG_RFC2253 & ~(unsigned long)ASN1_STRFLGS_ESC_MSB) >= 0) {
    int n = BIO_read(b, info->peer_subject, (int)sizeof info->peer_subject - 1);
    info->peer_subject[n > 0 ? n : 0] = '\0';
  }
  BIO_free(b);
}

static const char *error_text(void *p) {
  ossl_sess *s = p;
  return s->reason[0] ? s->reason : "TLS failed";
}

static const tls_engine engine = {
    .id = CPORT_TLS_ENGINE_OPENSSL,
    .name = "openssl",
    .session_new = session_new,
    .session_free = session_free,
    .feed = feed,
    .unlend = unlend,
    .handshake = handshake,
    .encrypt = encrypt,
    .decrypt = decrypt,
    .in_pending = in_pending,
    .set_sink = set_sink,
    .close_notify = close_notify,
    .session_info = session_info,
    .error = error_text,
};

const tls_engine *tls_engine_openssl(void) { return &engine; }
