/* The Schannel engine (Windows SSPI): a session is a security context
 * that InitializeSecurityContextW drives over bytes held here, so it
 * makes no system call and the records still move through the socket's
 * own operations (filter.c). Schannel is told to check nothing
 * (SCH_CRED_MANUAL_CRED_VALIDATION): the peer's chain is built by
 * CryptoAPI against the configuration's roots (or the system's) and its
 * name checked by verify.c, so one certificate gets the same answer on
 * every engine (docs/design.md §10). This file holds the sessions: the
 * handshake, records and cport's checks of the peer; the credentials are
 * schannel_cred.c's and a session's facts schannel_info.c's.
 *
 * Both roles. A certificate of ours (a server's, or a client's) comes as
 * PEM: its key (PKCS#8) goes into the CNG software key store under a
 * name of this process's, deleted with the configuration, since
 * Schannel (LSASS on Windows) reads keys from there. The server role is
 * written for real Windows and cannot run under Wine 8, whose
 * AcceptSecurityContext answers SEC_E_UNSUPPORTED_FUNCTION
 * (docs/wine.md, "Schannel"): the handshake then fails with that
 * reason, and Wine's tests serve with the OpenSSL engine.
 *
 * Wine 8 notes handled here: the chain engine takes CERT_CHAIN_ENGINE_
 * CONFIG only at its Windows 7 size (80 bytes on x64; mingw's full 88
 * gives E_INVALIDARG), a peer's close_notify comes out of DecryptMessage
 * as SEC_E_OK with no data (told from an empty record by the record's
 * content type), TLS 1.3 is missing (SCH_CREDENTIALS is taken but its
 * limits ignored: the protocols it offers are asked, and SCHANNEL_CRED
 * used instead), the suite's name ends in "<unknown>" (completed from
 * the cipher), a refusal's alert cannot be made (ApplyControlToken
 * (SCHANNEL_ALERT) answers SEC_E_UNSUPPORTED_FUNCTION: the peer sees the
 * connection end), and PKCS#8 keys cannot go into CNG (NTE_NOT_SUPPORTED),
 * so no certificate of ours, client or server, loads there. */
#include "schannel.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define MAX_SANS 64
#define SAN_LEN 256

typedef struct sch_sess {
  const tls_config *cfg;
  bool server;
  sch_ctx *c;
  CtxtHandle ctx;
  bool have_ctx; /* ctx is live */
  bool started;  /* the ClientHello is out */
  bool in_hs;    /* a handshake (first or post-handshake) is running */
  bool done;     /* the first handshake ended well */
  bool closed;   /* the peer's close_notify came */
  bool failed;
  wchar_t *target; /* SNI and Schannel's cache key; NULL for an address */
  SecPkgContext_StreamSizes sizes;
  PCCERT_CONTEXT peer;
  tls_buf in;  /* records fed, not yet used */
  tls_buf out; /* records to send, from out_off */
  size_t out_off;
  tls_buf pt; /* plaintext decrypted, not yet taken, from pt_off */
  size_t pt_off;
  char reason[160];
} sch_sess;

/* ---- reasons ------------------------------------------------------------- */

static int fail_status(sch_sess *s, const char *what, SECURITY_STATUS st) {
  if (!s->failed) sch_status_reason(s->reason, sizeof s->reason, what, st);
  s->failed = true;
  return TLS_FAIL;
}

static int fail_text(sch_sess *s, const char *what) {
  if (!s->failed) snprintf(s->reason, sizeof s->reason, "%s", what);
  s->failed = true;
  return TLS_FAIL;
}

/* ---- buffers ------------------------------------------------------------- */

/* Keeps only the last keep bytes of b. */
static void buf_keep_tail(tls_buf *b, size_t keep) {
  if (keep > b->len) keep = b->len;
  memmove(b->data, b->data + (b->len - keep), keep);
  b->len = keep;
}

/* Output: drop what was taken before adding more. */
static bool out_add(sch_sess *s, const void *p, size_t n) {
  if (s->out_off > 0) {
    memmove(s->out.data, s->out.data + s->out_off, s->out.len - s->out_off);
    s->out.len -= s->out_off;
    s->out_off = 0;
  }
  return tls_buf_add(&s->out, p, n);
}

/* ---- sessions ------------------------------------------------------------- */

static void session_free(void *p) {
  sch_sess *s = p;
  if (s->have_ctx) DeleteSecurityContext(&s->ctx);
  if (s->peer) CertFreeCertificateContext(s->peer);
  cp_free(s->target);
  cp_free(s->in.data);
  cp_free(s->out.data);
  cp_free(s->pt.data);
  cp_free(s);
}

static void *session_new(const tls_config *cfg, char *err, size_t len) {
  sch_ctx *c = sch_ctx_of((tls_config *)(uintptr_t)cfg, err, len);
  if (!c) return NULL;
  sch_sess *s = cp_calloc(1, sizeof *s);
  if (!s) {
    snprintf(err, len, "no memory");
    return NULL;
  }
  s->cfg = cfg;
  s->server = cfg->role == CPORT_TLS_SERVER;
  s->c = c;
  s->in_hs = true;
  SecInvalidateHandle(&s->ctx);
  unsigned char ip[16];
  size_t ip_len;
  if (!s->server && cfg->server_name && !tls_parse_ip(cfg->server_name, ip, &ip_len)) {
    int n = MultiByteToWideChar(CP_UTF8, 0, cfg->server_name, -1, NULL, 0);
    s->target = n > 0 ? cp_malloc((size_t)n * sizeof(wchar_t)) : NULL;
    if (!s->target || MultiByteToWideChar(CP_UTF8, 0, cfg->server_name, -1, s->target, n) != n) {
      snprintf(err, len, "the server name is not valid UTF-8");
      session_free(s);
      return NULL;
    }
  }
  return s;
}

static int feed(void *p, const void *buf, size_t len) {
  sch_sess *s = p;
  return tls_buf_add(&s->in, buf, len) ? TLS_OK : TLS_FAIL;
}

/* ---- cport's checks of the peer ------------------------------------------- */

/* The peer's subject alternative names against the wanted name. */
static bool name_matches(PCCERT_CONTEXT leaf, const char *want) {
  char(*dns_text)[SAN_LEN] = cp_malloc(sizeof(char[MAX_SANS][SAN_LEN]));
  if (!dns_text) return false;
  const char *dns[MAX_SANS];
  const unsigned char *ips[MAX_SANS];
  size_t ip_lens[MAX_SANS], n_dns = 0, n_ips = 0;
  CERT_ALT_NAME_INFO *alt = NULL;
  PCERT_EXTENSION ext = CertFindExtension(szOID_SUBJECT_ALT_NAME2, leaf->pCertInfo->cExtension,
                                          leaf->pCertInfo->rgExtension);
  DWORD alt_len = 0;
  if (ext && !CryptDecodeObjectEx(X509_ASN_ENCODING, X509_ALTERNATE_NAME, ext->Value.pbData,
                                  ext->Value.cbData, CRYPT_DECODE_ALLOC_FLAG, NULL, &alt, &alt_len))
    alt = NULL;
  for (DWORD i = 0; alt && i < alt->cAltEntry; i++) {
    const CERT_ALT_NAME_ENTRY *e = &alt->rgAltEntry[i];
    if (e->dwAltNameChoice == CERT_ALT_NAME_DNS_NAME && n_dns < MAX_SANS && e->pwszDNSName) {
      const wchar_t *w = e->pwszDNSName;
      size_t k = 0;
      bool ascii = true;
      for (; w[k] && k + 1 < SAN_LEN; k++) {
        if (w[k] == 0 || w[k] > 0x7e) ascii = false;
        dns_text[n_dns][k] = (char)(w[k] & 0x7f);
      }
      dns_text[n_dns][k] = '\0';
      if (ascii && w[k] == 0) {
        dns[n_dns] = dns_text[n_dns];
        n_dns++;
      }
    } else if (e->dwAltNameChoice == CERT_ALT_NAME_IP_ADDRESS && n_ips < MAX_SANS) {
      ips[n_ips] = e->IPAddress.pbData;
      ip_lens[n_ips++] = e->IPAddress.cbData;
    }
  }
  bool ok = tls_name_matches(want, dns, n_dns, ips, ip_lens, n_ips);
  if (alt) LocalFree(alt);
  cp_free(dns_text);
  return ok;
}

static bool self_signed(PCCERT_CONTEXT leaf) {
  return CertCompareCertificateName(X509_ASN_ENCODING, &leaf->pCertInfo->Subject,
                                    &leaf->pCertInfo->Issuer) != FALSE;
}

static SECURITY_STATUS sspi_step(sch_sess *s, SecBufferDesc *in, SecBufferDesc *out);
static bool keep_token(sch_sess *s, SecBuffer *b);

/* cport's refusal: the reason, and a fatal alert for the peer (as
 * OpenSSL's engine sends), queued if this Schannel makes one. */
static int refuse(sch_sess *s, const char *what, DWORD alert) {
  fail_text(s, what);
  SCHANNEL_ALERT_TOKEN tok = {SCHANNEL_ALERT, TLS1_ALERT_FATAL, alert};
  SecBuffer b = {sizeof tok, SECBUFFER_TOKEN, &tok};
  SecBufferDesc d = {SECBUFFER_VERSION, 1, &b};
  if (ApplyControlToken(&s->ctx, &d) == SEC_E_OK) {
    SecBuffer outb = {0, SECBUFFER_TOKEN, NULL};
    SecBufferDesc outd = {SECBUFFER_VERSION, 1, &outb};
    (void)sspi_step(s, NULL, &outd);
    (void)keep_token(s, &outb);
  }
  return TLS_FAIL;
}

/* The chain to a trusted root, within its dates; then the name. */
static int verify_peer(sch_sess *s) {
  PCCERT_CONTEXT leaf = NULL;
  SECURITY_STATUS st = QueryContextAttributesW(&s->ctx, SECPKG_ATTR_REMOTE_CERT_CONTEXT, &leaf);
  if (s->peer) CertFreeCertificateContext(s->peer);
  s->peer = st == SEC_E_OK ? leaf : NULL;
  if (s->cfg->verify == CPORT_TLS_VERIFY_NONE) return TLS_OK;
  if ((st != SEC_E_OK || !leaf) && s->server && s->cfg->verify == CPORT_TLS_VERIFY_OPTIONAL)
    return TLS_OK;
  if (st != SEC_E_OK || !leaf)
    return fail_status(s, "the peer presented no certificate (SECPKG_ATTR_REMOTE_CERT_CONTEXT)",
                       st);
  static LPSTR server_auth[] = {(LPSTR)(uintptr_t)szOID_PKIX_KP_SERVER_AUTH};
  static LPSTR client_auth[] = {(LPSTR)(uintptr_t)szOID_PKIX_KP_CLIENT_AUTH};
  CERT_CHAIN_PARA para;
  memset(&para, 0, sizeof para);
  para.cbSize = sizeof para;
  para.RequestedUsage.dwType = USAGE_MATCH_TYPE_AND;
  para.RequestedUsage.Usage.cUsageIdentifier = 1;
  para.RequestedUsage.Usage.rgpszUsageIdentifier = s->server ? client_auth : server_auth;
  PCCERT_CHAIN_CONTEXT chain = NULL;
  if (!CertGetCertificateChain(s->c->hce, leaf, NULL, leaf->hCertStore, &para, 0, NULL, &chain)) {
    char what[96];
    snprintf(what, sizeof what, "certificate verify failed: CertGetCertificateChain error 0x%08lx",
             (unsigned long)GetLastError());
    return fail_text(s, what);
  }
  DWORD e = chain->TrustStatus.dwErrorStatus;
  CertFreeCertificateChain(chain);
  const char *why = NULL;
  DWORD alert = TLS1_ALERT_BAD_CERTIFICATE;
  char other[64];
  if (e & (CERT_TRUST_IS_UNTRUSTED_ROOT | CERT_TRUST_IS_PARTIAL_CHAIN)) {
    why = self_signed(leaf) ? "self-signed certificate" : "unknown CA";
    alert = TLS1_ALERT_UNKNOWN_CA;
  } else if (e & CERT_TRUST_IS_NOT_TIME_VALID) {
    why = CertVerifyTimeValidity(NULL, leaf->pCertInfo) < 0 ? "certificate is not yet valid"
                                                            : "certificate has expired";
    alert = TLS1_ALERT_CERTIFICATE_EXPIRED;
  } else if (e & CERT_TRUST_IS_NOT_SIGNATURE_VALID) {
    why = "certificate signature failure";
  } else if (e & CERT_TRUST_IS_REVOKED) {
    why = "certificate revoked";
    alert = TLS1_ALERT_CERTIFICATE_REVOKED;
  } else if (e & CERT_TRUST_IS_NOT_VALID_FOR_USAGE) {
    why = "unsupported certificate purpose";
    alert = TLS1_ALERT_UNSUPPORTED_CERT;
  } else if (e != CERT_TRUST_NO_ERROR) {
    snprintf(other, sizeof other, "chain trust status 0x%08lx", (unsigned long)e);
    why = other;
    alert = TLS1_ALERT_CERTIFICATE_UNKNOWN;
  }
  if (why) {
    char what[128];
    snprintf(what, sizeof what, "certificate verify failed: %s", why);
    return refuse(s, what, alert);
  }
  const char *want = s->server ? NULL : s->cfg->server_name;
  if (want && !name_matches(leaf, want)) {
    char what[160];
    snprintf(what, sizeof what,
             "certificate verify failed: host name mismatch (%.80s is not in its names)", want);
    return refuse(s, what, TLS1_ALERT_BAD_CERTIFICATE);
  }
  return TLS_OK;
}

/* ---- the handshake --------------------------------------------------------- */

#define ISC_FLAGS                                                                                  \
  (ISC_REQ_SEQUENCE_DETECT | ISC_REQ_REPLAY_DETECT | ISC_REQ_CONFIDENTIALITY |                     \
   ISC_REQ_EXTENDED_ERROR | ISC_REQ_ALLOCATE_MEMORY | ISC_REQ_STREAM |                             \
   ISC_REQ_USE_SUPPLIED_CREDS | ISC_REQ_MANUAL_CRED_VALIDATION)

#define ASC_FLAGS                                                                                  \
  (ASC_REQ_SEQUENCE_DETECT | ASC_REQ_REPLAY_DETECT | ASC_REQ_CONFIDENTIALITY |                     \
   ASC_REQ_EXTENDED_ERROR | ASC_REQ_ALLOCATE_MEMORY | ASC_REQ_STREAM)

/* One step of the handshake: InitializeSecurityContext for a client,
 * AcceptSecurityContext for a server (its first call makes ctx). */
static SECURITY_STATUS sspi_step(sch_sess *s, SecBufferDesc *in, SecBufferDesc *out) {
  unsigned long attrs = 0;
  if (!s->server)
    return InitializeSecurityContextW(&s->c->cred, &s->ctx, s->target, ISC_FLAGS, 0, 0, in, 0, NULL,
                                      out, &attrs, NULL);
  unsigned long flags = ASC_FLAGS;
  if (s->cfg->verify != CPORT_TLS_VERIFY_NONE) flags |= ASC_REQ_MUTUAL_AUTH;
  bool first = !s->have_ctx;
  SECURITY_STATUS st = AcceptSecurityContext(&s->c->cred, first ? NULL : &s->ctx, in, flags, 0,
                                             first ? &s->ctx : NULL, out, &attrs, NULL);
  if (first && (st == SEC_E_OK || st == SEC_I_CONTINUE_NEEDED)) s->have_ctx = true;
  return st;
}

/* The ALPN list in SEC_APPLICATION_PROTOCOLS form: its size, then one
 * list: ALPN, its size, the wire form. The bytes used. */
static size_t alpn_buffer(const tls_config *cfg, unsigned char *out) {
  size_t n = cfg->alpn_len;
  unsigned long lists = (unsigned long)(6 + n);
  unsigned int ext = SecApplicationProtocolNegotiationExt_ALPN;
  unsigned short wire = (unsigned short)n;
  memcpy(out, &lists, 4);
  memcpy(out + 4, &ext, 4);
  memcpy(out + 8, &wire, 2);
  memcpy(out + 10, cfg->alpn, n);
  return 10 + n;
}

/* The token of an InitializeSecurityContext call into the output. */
static bool keep_token(sch_sess *s, SecBuffer *b) {
  bool ok = true;
  if (b->pvBuffer) {
    if (b->cbBuffer > 0) ok = out_add(s, b->pvBuffer, b->cbBuffer);
    FreeContextBuffer(b->pvBuffer);
    b->pvBuffer = NULL;
  }
  return ok;
}

/* After the handshake: the record sizes and cport's checks. */
static int finish(sch_sess *s) {
  SECURITY_STATUS st = QueryContextAttributesW(&s->ctx, SECPKG_ATTR_STREAM_SIZES, &s->sizes);
  if (st != SEC_E_OK) return fail_status(s, "QueryContextAttributes(STREAM_SIZES)", st);
  if (s->sizes.cbMaximumMessage == 0) s->sizes.cbMaximumMessage = 16384;
  SecPkgContext_ConnectionInfo ci;
  memset(&ci, 0, sizeof ci);
  st = QueryContextAttributesW(&s->ctx, SECPKG_ATTR_CONNECTION_INFO, &ci);
  if (st != SEC_E_OK) return fail_status(s, "QueryContextAttributes(CONNECTION_INFO)", st);
  if (s->cfg->min_version == CPORT_TLS_1_3 && !(ci.dwProtocol & SP_PROT_TLS1_3))
    return fail_text(s, "protocol version: TLS 1.3 was required, an older version was agreed");
  if (!(ci.dwProtocol & (SP_PROT_TLS1_2 | SP_PROT_TLS1_3))) {
    char what[96];
    snprintf(what, sizeof what, "protocol version: below TLS 1.2 (Schannel protocol 0x%08lx)",
             (unsigned long)ci.dwProtocol);
    return fail_text(s, what);
  }
  int rc = verify_peer(s);
  if (rc != TLS_OK) return rc;
  s->in_hs = false;
  s->done = true;
  return TLS_OK;
}

/* The first call: the ClientHello, with the ALPN offer. */
static int hello(sch_sess *s) {
  unsigned char alpn[4 + 6 + sizeof s->cfg->alpn];
  SecBuffer inb[1], outb[1];
  SecBufferDesc ind = {SECBUFFER_VERSION, 1, inb}, outd = {SECBUFFER_VERSION, 1, outb};
  size_t n = s->cfg->alpn_len;
  if (n > 0) {
    inb[0].BufferType = SECBUFFER_APPLICATION_PROTOCOLS;
    inb[0].cbBuffer = (unsigned long)alpn_buffer(s->cfg, alpn);
    inb[0].pvBuffer = alpn;
  }
  outb[0].BufferType = SECBUFFER_TOKEN;
  outb[0].cbBuffer = 0;
  outb[0].pvBuffer = NULL;
  unsigned long attrs = 0;
  SECURITY_STATUS st =
      InitializeSecurityContextW(&s->c->cred, NULL, s->target, ISC_FLAGS, 0, 0, n > 0 ? &ind : NULL,
                                 0, &s->ctx, &outd, &attrs, NULL);
  if (st == SEC_I_CONTINUE_NEEDED || st == SEC_E_OK) s->have_ctx = true;
  if (!keep_token(s, &outb[0])) return fail_text(s, "no memory for the handshake");
  if (st != SEC_I_CONTINUE_NEEDED) return fail_status(s, "InitializeSecurityContext", st);
  s->started = true;
  return TLS_WANT;
}

/* InitializeSecurityContext over the records fed, until it wants more
 * or is done. */
static int drive(sch_sess *s) {
  for (int round = 0;; round++) {
    if (s->in.len == 0) return TLS_WANT;
    unsigned char alpn[4 + 6 + sizeof s->cfg->alpn];
    SecBuffer inb[3], outb[2];
    SecBufferDesc ind = {SECBUFFER_VERSION, 2, inb}, outd = {SECBUFFER_VERSION, 2, outb};
    if (s->server && !s->have_ctx && s->cfg->alpn_len > 0) { /* a server's list, with the hello */
      inb[2].BufferType = SECBUFFER_APPLICATION_PROTOCOLS;
      inb[2].cbBuffer = (unsigned long)alpn_buffer(s->cfg, alpn);
      inb[2].pvBuffer = alpn;
      ind.cBuffers = 3;
    }
    inb[0].BufferType = SECBUFFER_TOKEN;
    inb[0].cbBuffer = (unsigned long)s->in.len;
    inb[0].pvBuffer = s->in.data;
    inb[1].BufferType = SECBUFFER_EMPTY;
    inb[1].cbBuffer = 0;
    inb[1].pvBuffer = NULL;
    outb[0].BufferType = SECBUFFER_TOKEN;
    outb[0].cbBuffer = 0;
    outb[0].pvBuffer = NULL;
    outb[1].BufferType = SECBUFFER_ALERT;
    outb[1].cbBuffer = 0;
    outb[1].pvBuffer = NULL;
    SECURITY_STATUS st = sspi_step(s, &ind, &outd);
    bool ok = keep_token(s, &outb[0]);
    if (outb[1].pvBuffer) { /* an alert for the peer, with EXTENDED_ERROR */
      if (outb[1].cbBuffer > 0 && st != SEC_E_OK && st != SEC_I_CONTINUE_NEEDED)
        ok = ok && out_add(s, outb[1].pvBuffer, outb[1].cbBuffer);
      FreeContextBuffer(outb[1].pvBuffer);
    }
    if (!ok) return fail_text(s, "no memory for the handshake");
    if (st == SEC_E_INCOMPLETE_MESSAGE) return TLS_WANT;
    if (st == SEC_I_INCOMPLETE_CREDENTIALS && round < 4)
      continue; /* no certificate: go on without */
    if (st == SEC_E_UNSUPPORTED_FUNCTION && s->server)
      return fail_text(s, "Schannel has no server role here (SEC_E_UNSUPPORTED_FUNCTION)");
    if (st != SEC_E_OK && st != SEC_I_CONTINUE_NEEDED)
      return fail_status(s,
                         s->server ? "the TLS handshake failed (AcceptSecurityContext)"
                                   : "the TLS handshake failed (InitializeSecurityContext)",
                         st);
    SecBuffer *extra = NULL;
    for (unsigned i = 0; i < ind.cBuffers; i++)
      if (inb[i].BufferType == SECBUFFER_EXTRA && inb[i].cbBuffer > 0) extra = &inb[i];
    if (extra)
      buf_keep_tail(&s->in, extra->cbBuffer);
    else
      s->in.len = 0;
    if (st == SEC_E_OK) return finish(s);
  }
}

static int handshake(void *p) {
  sch_sess *s = p;
  if (s->failed) return TLS_FAIL;
  if (s->done && !s->in_hs) return TLS_OK;
  if (!s->started && !s->server) {
    int rc = hello(s);
    if (rc != TLS_WANT) return rc;
  }
  return drive(s);
}

/* ---- data ----------------------------------------------------------------- */

static int encrypt(void *p, const void *buf, size_t len) {
  sch_sess *s = p;
  if (s->failed) return TLS_FAIL;
  if (!s->done) return fail_text(s, "no TLS session yet");
  size_t hdr = s->sizes.cbHeader, trl = s->sizes.cbTrailer, max = s->sizes.cbMaximumMessage;
  size_t off = 0;
  while (off < len) {
    size_t n = len - off < max ? len - off : max;
    if (!out_add(s, NULL, 0) || !tls_buf_reserve(&s->out, hdr + n + trl))
      return fail_text(s, "no memory for records");
    char *rec = s->out.data + s->out.len;
    memcpy(rec + hdr, (const char *)buf + off, n);
    SecBuffer b[4];
    SecBufferDesc d = {SECBUFFER_VERSION, 4, b};
    b[0].BufferType = SECBUFFER_STREAM_HEADER;
    b[0].cbBuffer = (unsigned long)hdr;
    b[0].pvBuffer = rec;
    b[1].BufferType = SECBUFFER_DATA;
    b[1].cbBuffer = (unsigned long)n;
    b[1].pvBuffer = rec + hdr;
    b[2].BufferType = SECBUFFER_STREAM_TRAILER;
    b[2].cbBuffer = (unsigned long)trl;
    b[2].pvBuffer = rec + hdr + n;
    b[3].BufferType = SECBUFFER_EMPTY;
    b[3].cbBuffer = 0;
    b[3].pvBuffer = NULL;
    SECURITY_STATUS st = EncryptMessage(&s->ctx, 0, &d, 0);
    if (st != SEC_E_OK) return fail_status(s, "EncryptMessage", st);
    /* the trailer may be shorter than its maximum: the record ends there */
    size_t rec_len = (size_t)b[0].cbBuffer + b[1].cbBuffer + b[2].cbBuffer;
    if ((char *)b[2].pvBuffer != rec + hdr + n || b[0].cbBuffer != hdr)
      return fail_text(s, "EncryptMessage moved its buffers");
    s->out.len += rec_len;
    off += n;
  }
  return TLS_OK;
}

/* Plaintext kept from the last record into buf. */
static size_t from_pt(sch_sess *s, void *buf, size_t len) {
  size_t have = s->pt.len - s->pt_off, n = have < len ? have : len;
  memcpy(buf, s->pt.data + s->pt_off, n);
  s->pt_off += n;
  if (s->pt_off == s->pt.len) s->pt_off = s->pt.len = 0;
  return n;
}

static int decrypt(void *p, void *buf, size_t len, size_t *got) {
  sch_sess *s = p;
  *got = 0;
  if (s->pt.len > s->pt_off) {
    *got = from_pt(s, buf, len);
    return TLS_OK;
  }
  if (s->failed) return TLS_FAIL;
  if (s->closed) return TLS_CLOSED;
  for (;;) {
    if (s->in_hs) { /* a post-handshake exchange under way */
      int rc = drive(s);
      if (rc != TLS_OK) return rc;
    }
    if (s->in.len == 0) return TLS_WANT;
    unsigned char type = (unsigned char)s->in.data[0]; /* the record's content type */
    SecBuffer b[4];
    SecBufferDesc d = {SECBUFFER_VERSION, 4, b};
    b[0].BufferType = SECBUFFER_DATA;
    b[0].cbBuffer = (unsigned long)s->in.len;
    b[0].pvBuffer = s->in.data;
    for (int i = 1; i < 4; i++) {
      b[i].BufferType = SECBUFFER_EMPTY;
      b[i].cbBuffer = 0;
      b[i].pvBuffer = NULL;
    }
    SECURITY_STATUS st = DecryptMessage(&s->ctx, &d, 0, NULL);
    if (st == SEC_E_INCOMPLETE_MESSAGE) return TLS_WANT;
    if (st == SEC_I_CONTEXT_EXPIRED) {
      s->closed = true;
      s->in.len = 0;
      return TLS_CLOSED;
    }
    if (st != SEC_E_OK && st != SEC_I_RENEGOTIATE) return fail_status(s, "DecryptMessage", st);
    SecBuffer *data = NULL, *extra = NULL;
    for (int i = 0; i < 4; i++) {
      if (b[i].BufferType == SECBUFFER_DATA) data = &b[i];
      if (b[i].BufferType == SECBUFFER_EXTRA) extra = &b[i];
    }
    size_t n = data ? data->cbBuffer : 0;
    if (n > 0) { /* the plaintext lies inside in: out of it before in moves */
      size_t direct = n < len ? n : len;
      memcpy(buf, data->pvBuffer, direct);
      *got = direct;
      if (direct < n && !tls_buf_add(&s->pt, (char *)data->pvBuffer + direct, n - direct))
        return fail_text(s, "no memory for plaintext");
    }
    if (extra && extra->cbBuffer > 0)
      buf_keep_tail(&s->in, extra->cbBuffer);
    else
      s->in.len = 0;
    if (st == SEC_I_RENEGOTIATE) {
      /* TLS 1.3 post-handshake messages, or a TLS 1.2 renegotiation: the
       * extra bytes go to InitializeSecurityContext, as SSPI asks; Wine 8
       * breaks on it (docs/wine.md, "Schannel") and the failure has the
       * reason. */
      s->in_hs = true;
      if (*got > 0) return TLS_OK;
      continue;
    }
    if (n > 0) return TLS_OK;
    if (type == 21) { /* an alert with nothing in it: Wine 8's close_notify */
      s->closed = true;
      return TLS_CLOSED;
    }
    /* an empty record: on to the next */
  }
}

static size_t in_pending(void *p) {
  sch_sess *s = p;
  return s->in.len;
}

static size_t out_pending(void *p) {
  sch_sess *s = p;
  return s->out.len - s->out_off;
}

static size_t take(void *p, void *buf, size_t cap) {
  sch_sess *s = p;
  size_t have = s->out.len - s->out_off, n = have < cap ? have : cap;
  memcpy(buf, s->out.data + s->out_off, n);
  s->out_off += n;
  if (s->out_off == s->out.len) s->out_off = s->out.len = 0;
  return n;
}

static int close_notify(void *p) {
  sch_sess *s = p;
  if (!s->have_ctx) return fail_text(s, "no TLS session to close");
  DWORD type = SCHANNEL_SHUTDOWN;
  SecBuffer in = {sizeof type, SECBUFFER_TOKEN, &type};
  SecBufferDesc ind = {SECBUFFER_VERSION, 1, &in};
  SECURITY_STATUS st = ApplyControlToken(&s->ctx, &ind);
  if (st != SEC_E_OK) return fail_status(s, "ApplyControlToken(SCHANNEL_SHUTDOWN)", st);
  SecBuffer outb = {0, SECBUFFER_TOKEN, NULL};
  SecBufferDesc outd = {SECBUFFER_VERSION, 1, &outb};
  st = sspi_step(s, NULL, &outd);
  if (!keep_token(s, &outb)) return fail_text(s, "no memory for close_notify");
  if (st != SEC_E_OK && st != SEC_I_CONTEXT_EXPIRED && st != SEC_I_CONTINUE_NEEDED)
    return fail_status(s, "close_notify (InitializeSecurityContext)", st);
  return TLS_OK;
}

static void session_info(void *p, cport_tls_session *info) {
  sch_sess *s = p;
  sch_session_info(&s->ctx, s->peer, info);
}

static const char *error_text(void *p) {
  sch_sess *s = p;
  return s->reason[0] ? s->reason : "TLS failed";
}

static const tls_engine engine = {
    .id = CPORT_TLS_ENGINE_SCHANNEL,
    .name = "schannel",
    .session_new = session_new,
    .session_free = session_free,
    .feed = feed,
    .handshake = handshake,
    .encrypt = encrypt,
    .decrypt = decrypt,
    .in_pending = in_pending,
    .out_pending = out_pending,
    .take = take,
    .close_notify = close_notify,
    .session_info = session_info,
    .error = error_text,
};

const tls_engine *tls_engine_schannel(void) { return &engine; }
