/* The Schannel engine's credentials (schannel.c holds its sessions): our
 * certificate, from a system store or PEM with its key put into CNG; the
 * SSPI credentials, SCH_CREDENTIALS where they keep the minimum version
 * and SCHANNEL_CRED otherwise; and a chain engine over the configured
 * roots. Made once per configuration, freed with it. Wine 8's quirks met
 * here are in docs/wine.md, "Schannel": SCH_CREDENTIALS' limits ignored,
 * the chain engine's config taken only at its Windows 7 size, no server
 * role, and no CNG key import. */
#include "schannel.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* The Windows 7 layout of CERT_CHAIN_ENGINE_CONFIG (with hExclusiveRoot),
 * which _WIN32_WINNT 0x0600 hides; its size up to dwExclusiveFlags is
 * what every Windows since 7, and Wine 8, accept. */
typedef struct sch_chain_config {
  DWORD cbSize;
  HCERTSTORE hRestrictedRoot;
  HCERTSTORE hRestrictedTrust;
  HCERTSTORE hRestrictedOther;
  DWORD cAdditionalStore;
  HCERTSTORE *rghAdditionalStore;
  DWORD dwFlags;
  DWORD dwUrlRetrievalTimeout;
  DWORD MaximumCachedCertificates;
  DWORD CycleDetectionModulus;
  HCERTSTORE hExclusiveRoot;
  HCERTSTORE hExclusiveTrustedPeople;
  DWORD dwExclusiveFlags;
} sch_chain_config;

/* ---- reasons ------------------------------------------------------------- */

static const char *status_name(SECURITY_STATUS st) {
#define N(x)                                                                                       \
  case x: return #x
  switch (st) {
    N(SEC_E_OK);
    N(SEC_I_CONTINUE_NEEDED);
    N(SEC_I_CONTEXT_EXPIRED);
    N(SEC_I_RENEGOTIATE);
    N(SEC_I_INCOMPLETE_CREDENTIALS);
    N(SEC_E_INCOMPLETE_MESSAGE);
    N(SEC_E_INTERNAL_ERROR);
    N(SEC_E_UNSUPPORTED_FUNCTION);
    N(SEC_E_ILLEGAL_MESSAGE);
    N(SEC_E_ALGORITHM_MISMATCH);
    N(SEC_E_NO_AUTHENTICATING_AUTHORITY);
    N(SEC_E_WRONG_PRINCIPAL);
    N(SEC_E_UNTRUSTED_ROOT);
    N(SEC_E_CERT_EXPIRED);
    N(SEC_E_CERT_UNKNOWN);
    N(SEC_E_INVALID_TOKEN);
    N(SEC_E_INVALID_HANDLE);
    N(SEC_E_INSUFFICIENT_MEMORY);
    N(SEC_E_DECRYPT_FAILURE);
    N(SEC_E_ENCRYPT_FAILURE);
    N(SEC_E_MESSAGE_ALTERED);
    N(SEC_E_CONTEXT_EXPIRED);
    N(SEC_E_BUFFER_TOO_SMALL);
    N(SEC_E_TARGET_UNKNOWN);
    N(SEC_E_NO_CREDENTIALS);
    N(SEC_E_UNKNOWN_CREDENTIALS);
    N(SEC_E_SECPKG_NOT_FOUND);
    N(SEC_E_QOP_NOT_SUPPORTED);
    N(SEC_E_LOGON_DENIED);
    N(NTE_NOT_SUPPORTED);
    N(NTE_BAD_DATA);
    N(NTE_BAD_KEYSET);
    N(NTE_EXISTS);
    N(NTE_PERM);
    N(NTE_INVALID_PARAMETER);
    N(NTE_BAD_TYPE);
  default: return "SECURITY_STATUS";
  }
#undef N
}

void sch_status_reason(char *out, size_t len, const char *what, SECURITY_STATUS st) {
  snprintf(out, len, "%s: %s (0x%08lx)", what, status_name(st), (unsigned long)st);
}

/* ---- the configuration's credentials and roots ----------------------------- */

static void key_delete(NCRYPT_KEY_HANDLE key);

static void ctx_free(void *p) {
  sch_ctx *c = p;
  if (c->have_cred) FreeCredentialsHandle(&c->cred);
  if (c->ident) CertFreeCertificateContext(c->ident);
  if (c->ident_store) CertCloseStore(c->ident_store, 0);
  if (c->key) key_delete(c->key);
  if (c->hce) CertFreeCertificateChainEngine(c->hce);
  if (c->roots) CertCloseStore(c->roots, 0);
  cp_free(c);
}

/* Every certificate of a PEM text into a memory store; how many. */
static int load_roots(HCERTSTORE st, const char *pem, size_t len) {
  static const char begin[] = "-----BEGIN CERTIFICATE-----";
  static const char end[] = "-----END CERTIFICATE-----";
  int n = 0;
  const char *p = pem, *stop = pem + len;
  for (;;) {
    const char *b = strstr(p, begin);
    if (!b || b >= stop) break;
    const char *e = strstr(b, end);
    if (!e || e >= stop) break;
    e += sizeof end - 1;
    DWORD der_len = 0;
    DWORD text_len = (DWORD)(e - b);
    if (CryptStringToBinaryA(b, text_len, CRYPT_STRING_BASE64HEADER, NULL, &der_len, NULL, NULL)) {
      BYTE *der = cp_malloc(der_len);
      if (der &&
          CryptStringToBinaryA(b, text_len, CRYPT_STRING_BASE64HEADER, der, &der_len, NULL, NULL) &&
          CertAddEncodedCertificateToStore(st, X509_ASN_ENCODING, der, der_len,
                                           CERT_STORE_ADD_USE_EXISTING, NULL))
        n++;
      cp_free(der);
    }
    p = e;
  }
  return n;
}

/* ---- our certificate and key (a server's, or a client's) ------------------ */

/* CNG, found at run time: the build links secur32 and crypt32 only. */
typedef SECURITY_STATUS(WINAPI *open_provider_fn)(NCRYPT_PROV_HANDLE *, LPCWSTR, DWORD);
typedef SECURITY_STATUS(WINAPI *import_key_fn)(NCRYPT_PROV_HANDLE, NCRYPT_KEY_HANDLE, LPCWSTR,
                                               NCryptBufferDesc *, NCRYPT_KEY_HANDLE *, PBYTE,
                                               DWORD, DWORD);
typedef SECURITY_STATUS(WINAPI *delete_key_fn)(NCRYPT_KEY_HANDLE, DWORD);
typedef SECURITY_STATUS(WINAPI *free_object_fn)(NCRYPT_HANDLE);

static FARPROC ncrypt_fn(const char *name) {
  HMODULE m = GetModuleHandleW(L"ncrypt.dll");
  if (!m) m = LoadLibraryW(L"ncrypt.dll"); /* kept loaded */
  return m ? GetProcAddress(m, name) : NULL;
}

static void key_delete(NCRYPT_KEY_HANDLE key) {
  delete_key_fn del = (delete_key_fn)(void (*)(void))ncrypt_fn("NCryptDeleteKey");
  if (del) del(key, 0); /* frees the handle too */
}

/* The first PEM block labelled label ("CERTIFICATE", "PRIVATE KEY") at or
 * after *from, in DER (cp_malloc'd); *from moves past it. */
static BYTE *pem_block(const char *pem, size_t len, const char **from, const char *label,
                       DWORD *der_len) {
  char begin[48], end[48];
  snprintf(begin, sizeof begin, "-----BEGIN %s-----", label);
  snprintf(end, sizeof end, "-----END %s-----", label);
  const char *stop = pem + len;
  const char *b = strstr(*from, begin);
  if (!b || b >= stop) return NULL;
  const char *e = strstr(b, end);
  if (!e || e >= stop) return NULL;
  e += strlen(end);
  *from = e;
  DWORD text_len = (DWORD)(e - b), n = 0;
  if (!CryptStringToBinaryA(b, text_len, CRYPT_STRING_BASE64HEADER, NULL, &n, NULL, NULL))
    return NULL;
  BYTE *der = cp_malloc(n);
  if (der && !CryptStringToBinaryA(b, text_len, CRYPT_STRING_BASE64HEADER, der, &n, NULL, NULL)) {
    cp_free(der);
    der = NULL;
  }
  *der_len = n;
  return der;
}

/* The certificate (and the chain after it) into a memory store, the key
 * (PKCS#8, as `openssl genpkey` writes it) into the CNG software key
 * store under a name of this process's (Schannel reads the key from
 * there: in real Windows from LSASS, which an in-memory key would not
 * reach), and the two tied by CERT_KEY_PROV_INFO_PROP_ID. */
static bool load_identity(sch_ctx *c, const tls_config *cfg, char *err, size_t len) {
  static volatile LONG serial;
  const char *from = cfg->cert;
  DWORD der_len = 0;
  BYTE *der = pem_block(cfg->cert, cfg->cert_len, &from, "CERTIFICATE", &der_len);
  c->ident_store = CertOpenStore(CERT_STORE_PROV_MEMORY, 0, 0, CERT_STORE_CREATE_NEW_FLAG, NULL);
  bool ok = der && c->ident_store &&
            CertAddEncodedCertificateToStore(c->ident_store, X509_ASN_ENCODING, der, der_len,
                                             CERT_STORE_ADD_NEW, &c->ident);
  cp_free(der);
  while (ok && (der = pem_block(cfg->cert, cfg->cert_len, &from, "CERTIFICATE", &der_len))) {
    CertAddEncodedCertificateToStore(c->ident_store, X509_ASN_ENCODING, der, der_len,
                                     CERT_STORE_ADD_USE_EXISTING, NULL);
    cp_free(der);
  }
  if (!ok) {
    snprintf(err, len, "the certificate could not be read (error 0x%08lx)",
             (unsigned long)GetLastError());
    return false;
  }
  from = cfg->key;
  der = pem_block(cfg->key, cfg->key_len, &from, "PRIVATE KEY", &der_len);
  if (!der) {
    snprintf(err, len,
             "the private key could not be read: the Schannel engine takes PKCS#8 "
             "(\"BEGIN PRIVATE KEY\"; openssl pkcs8 -topk8 -nocrypt converts)");
    return false;
  }
  open_provider_fn open_prov =
      (open_provider_fn)(void (*)(void))ncrypt_fn("NCryptOpenStorageProvider");
  import_key_fn import = (import_key_fn)(void (*)(void))ncrypt_fn("NCryptImportKey");
  free_object_fn free_obj = (free_object_fn)(void (*)(void))ncrypt_fn("NCryptFreeObject");
  if (!open_prov || !import || !free_obj) {
    cp_free(der);
    snprintf(err, len, "the private key could not be loaded: no CNG (ncrypt.dll)");
    return false;
  }
  wchar_t name[64];
  _snwprintf(name, sizeof name / sizeof name[0], L"cport-%lu-%lu-%lu",
             (unsigned long)GetCurrentProcessId(), (unsigned long)InterlockedIncrement(&serial),
             (unsigned long)GetTickCount());
  name[sizeof name / sizeof name[0] - 1] = 0;
  NCryptBuffer nb = {(ULONG)((wcslen(name) + 1) * sizeof(wchar_t)), NCRYPTBUFFER_PKCS_KEY_NAME,
                     name};
  NCryptBufferDesc nd = {NCRYPTBUFFER_VERSION, 1, &nb};
  NCRYPT_PROV_HANDLE prov = 0;
  SECURITY_STATUS st = open_prov(&prov, MS_KEY_STORAGE_PROVIDER, 0);
  if (st == ERROR_SUCCESS)
    st = import(prov, 0, NCRYPT_PKCS8_PRIVATE_KEY_BLOB, &nd, &c->key, der, der_len,
                NCRYPT_OVERWRITE_KEY_FLAG);
  if (prov) free_obj(prov);
  SecureZeroMemory(der, der_len);
  cp_free(der);
  if (st != ERROR_SUCCESS) {
    c->key = 0;
    sch_status_reason(err, len, "the private key could not be loaded into CNG (NCryptImportKey)",
                      st);
    return false;
  }
  CRYPT_KEY_PROV_INFO kpi;
  memset(&kpi, 0, sizeof kpi);
  kpi.pwszContainerName = name;
  kpi.pwszProvName = (LPWSTR)(uintptr_t)MS_KEY_STORAGE_PROVIDER;
  kpi.dwProvType = 0; /* CNG */
  if (!CertSetCertificateContextProperty(c->ident, CERT_KEY_PROV_INFO_PROP_ID, 0, &kpi)) {
    snprintf(err, len, "the key could not be tied to the certificate (error 0x%08lx)",
             (unsigned long)GetLastError());
    return false;
  }
  return true;
}

/* Whether this Schannel has a server role at all: Wine 8's has no
 * AcceptSecurityContext, which secur32 answers SEC_E_UNSUPPORTED_FUNCTION
 * for any Schannel credential (inbound ones without a certificate it
 * refuses, so an outbound one asks). Asked only when our key could not
 * be loaded, to say which of the two stops us. */
static bool no_server_role(void) {
  SCHANNEL_CRED sc;
  memset(&sc, 0, sizeof sc);
  sc.dwVersion = SCHANNEL_CRED_VERSION;
  sc.grbitEnabledProtocols = SP_PROT_TLS1_2_CLIENT;
  sc.dwFlags = SCH_CRED_MANUAL_CRED_VALIDATION | SCH_CRED_NO_DEFAULT_CREDS;
  CredHandle cred;
  TimeStamp expiry;
  SECURITY_STATUS ach =
      AcquireCredentialsHandleW(NULL, (SEC_WCHAR *)(uintptr_t)UNISP_NAME_W, SECPKG_CRED_OUTBOUND,
                                NULL, &sc, NULL, NULL, &cred, &expiry);
  if (ach != SEC_E_OK) return false;
  unsigned char hello[5] = {22, 3, 1, 0, 0};
  SecBuffer inb[2] = {{sizeof hello, SECBUFFER_TOKEN, hello}, {0, SECBUFFER_EMPTY, NULL}};
  SecBuffer outb = {0, SECBUFFER_TOKEN, NULL};
  SecBufferDesc ind = {SECBUFFER_VERSION, 2, inb}, outd = {SECBUFFER_VERSION, 1, &outb};
  CtxtHandle ctx;
  unsigned long attrs = 0;
  SECURITY_STATUS st = AcceptSecurityContext(
      &cred, NULL, &ind, ASC_REQ_STREAM | ASC_REQ_ALLOCATE_MEMORY, 0, &ctx, &outd, &attrs, NULL);
  if (outb.pvBuffer) FreeContextBuffer(outb.pvBuffer);
  if (st == SEC_E_OK || st == SEC_I_CONTINUE_NEEDED) DeleteSecurityContext(&ctx);
  FreeCredentialsHandle(&cred);
  return st == SEC_E_UNSUPPORTED_FUNCTION;
}

/* Our certificate: a system store's (its key already with the store's
 * provider), or PEM text with its key loaded into CNG. */
static bool take_identity(sch_ctx *c, const tls_config *cfg, char *err, size_t len) {
  bool server = cfg->role == CPORT_TLS_SERVER;
  if (server && !cfg->cert && !cfg->store_cert) {
    snprintf(err, len, "a server needs a certificate and key");
    return false;
  }
  if (cfg->store_cert) {
    c->ident = CertDuplicateCertificateContext((PCCERT_CONTEXT)cfg->store_cert);
    return true;
  }
  if (!cfg->cert || load_identity(c, cfg, err, len)) return true;
  if (server && no_server_role())
    snprintf(err, len, "Schannel has no server role here (SEC_E_UNSUPPORTED_FUNCTION)");
  return false;
}

static SECURITY_STATUS acquire(sch_ctx *c, bool server, void *cred_data) {
  TimeStamp expiry;
  return AcquireCredentialsHandleW(NULL, (SEC_WCHAR *)(uintptr_t)UNISP_NAME_W,
                                   server ? SECPKG_CRED_INBOUND : SECPKG_CRED_OUTBOUND, NULL,
                                   cred_data, NULL, NULL, &c->cred, &expiry);
}

/* SCH_CREDENTIALS (Windows 10 1809 on, the only way to TLS 1.3), with
 * the versions below the minimum disabled. Wine 8 takes it but ignores
 * the limits, so the protocols the credentials will speak are asked: if
 * they go below the minimum, the credentials are dropped (c->have_cred
 * false) for SCHANNEL_CRED's. false: refused, with the reason in err. */
static bool acquire_sch_credentials(sch_ctx *c, bool server, bool v13, DWORD flags, char *err,
                                    size_t len) {
  TLS_PARAMETERS tp;
  memset(&tp, 0, sizeof tp);
  tp.grbitDisabledProtocols = SP_PROT_SSL2 | SP_PROT_SSL3 | SP_PROT_TLS1_0 | SP_PROT_TLS1_1;
  if (v13) tp.grbitDisabledProtocols |= SP_PROT_TLS1_2;
  SCH_CREDENTIALS sch;
  memset(&sch, 0, sizeof sch);
  sch.dwVersion = SCH_CREDENTIALS_VERSION;
  sch.dwFlags = flags;
  sch.cTlsParameters = 1;
  sch.pTlsParameters = &tp;
  if (c->ident) {
    sch.cCreds = 1;
    sch.paCred = &c->ident;
  }
  if (acquire(c, server, &sch) != SEC_E_OK) return true; /* an older Windows: SCHANNEL_CRED */
  c->have_cred = true;
  SecPkgCred_SupportedProtocols sp;
  memset(&sp, 0, sizeof sp);
  SECURITY_STATUS q = QueryCredentialsAttributesW(&c->cred, SECPKG_ATTR_SUPPORTED_PROTOCOLS, &sp);
  if (v13 && (q != SEC_E_OK || !(sp.grbitProtocol & SP_PROT_TLS1_3))) {
    snprintf(err, len, "TLS 1.3 is not available from this Schannel (it offers 0x%08lx)",
             (unsigned long)sp.grbitProtocol);
    return false;
  }
  if (q == SEC_E_OK && (sp.grbitProtocol & tp.grbitDisabledProtocols)) {
    /* the limits ignored (Wine 8 offers SSL 3 to TLS 1.2 here) */
    FreeCredentialsHandle(&c->cred);
    SecInvalidateHandle(&c->cred);
    c->have_cred = false;
  }
  return true;
}

/* The credentials: SCH_CREDENTIALS where they keep the minimum version,
 * SCHANNEL_CRED's enabled protocols otherwise. */
static bool acquire_credentials(sch_ctx *c, const tls_config *cfg, char *err, size_t len) {
  bool server = cfg->role == CPORT_TLS_SERVER;
  bool v13 = cfg->min_version == CPORT_TLS_1_3;
  DWORD flags = server ? SCH_CRED_NO_SYSTEM_MAPPER
                       : SCH_CRED_MANUAL_CRED_VALIDATION | SCH_CRED_NO_DEFAULT_CREDS;
  if (!acquire_sch_credentials(c, server, v13, flags, err, len)) return false;
  if (c->have_cred) return true;
  SCHANNEL_CRED sc;
  memset(&sc, 0, sizeof sc);
  sc.dwVersion = SCHANNEL_CRED_VERSION;
  if (server)
    sc.grbitEnabledProtocols = v13 ? SP_PROT_TLS1_3_SERVER : SP_PROT_TLS1_2_SERVER;
  else
    sc.grbitEnabledProtocols = v13 ? SP_PROT_TLS1_3_CLIENT : SP_PROT_TLS1_2_CLIENT;
  sc.dwFlags = flags;
  if (c->ident) {
    sc.cCreds = 1;
    sc.paCred = &c->ident;
  }
  SECURITY_STATUS st = acquire(c, server, &sc);
  if (st != SEC_E_OK) {
    sch_status_reason(err, len,
                      v13 ? "TLS 1.3 is not available from this Schannel (AcquireCredentialsHandle)"
                          : "AcquireCredentialsHandle",
                      st);
    return false;
  }
  c->have_cred = true;
  return true;
}

/* The configuration's roots in a chain engine of their own (none set:
 * the system's default engine). */
static bool make_chain_engine(sch_ctx *c, const tls_config *cfg, char *err, size_t len) {
  if (!cfg->ca) return true;
  c->roots = CertOpenStore(CERT_STORE_PROV_MEMORY, 0, 0, CERT_STORE_CREATE_NEW_FLAG, NULL);
  if (!c->roots) {
    snprintf(err, len, "CertOpenStore: error %lu", (unsigned long)GetLastError());
    return false;
  }
  if (load_roots(c->roots, cfg->ca, cfg->ca_len) == 0) {
    snprintf(err, len, "no certificate in the trusted roots given");
    return false;
  }
  sch_chain_config ec;
  memset(&ec, 0, sizeof ec);
  ec.cbSize = (DWORD)offsetof(sch_chain_config, dwExclusiveFlags); /* 80 on x64: see above */
  ec.hExclusiveRoot = c->roots;
  if (!CertCreateCertificateChainEngine((PCERT_CHAIN_ENGINE_CONFIG)(void *)&ec, &c->hce)) {
    snprintf(err, len, "CertCreateCertificateChainEngine: error 0x%08lx",
             (unsigned long)GetLastError());
    c->hce = NULL;
    return false;
  }
  return true;
}

static sch_ctx *ctx_new(const tls_config *cfg, char *err, size_t len) {
  sch_ctx *c = cp_calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, len, "no memory");
    return NULL;
  }
  SecInvalidateHandle(&c->cred);
  if (take_identity(c, cfg, err, len) && acquire_credentials(c, cfg, err, len) &&
      make_chain_engine(c, cfg, err, len))
    return c;
  ctx_free(c);
  return NULL;
}

static void *ctx_make(const tls_config *cfg, char *err, size_t len) {
  return ctx_new(cfg, err, len);
}

sch_ctx *sch_ctx_of(tls_config *cfg, char *err, size_t len) {
  return tls_engine_ctx(cfg, CPORT_TLS_ENGINE_SCHANNEL, ctx_make, ctx_free, err, len);
}
