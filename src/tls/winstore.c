/* Windows: a certificate to present found in a system certificate store
 * (cport_tls_config_set_cert_store), as Windows services keep theirs:
 * its private key stays in the store's key provider, and the Schannel
 * engine hands the certificate to SSPI as it is. */
#include "tls.h"

#include <windows.h> /* before every other Windows header */

#include <wincrypt.h>

#include <string.h>

#define STORE_NAME_MAX 64

/* "MY", "CurrentUser\MY" or "LocalMachine\MY": where, and the name. */
static bool parse_store(const char *store, DWORD *where, wchar_t *name) {
  *where = CERT_SYSTEM_STORE_CURRENT_USER;
  if (_strnicmp(store, "LocalMachine\\", 13) == 0) {
    *where = CERT_SYSTEM_STORE_LOCAL_MACHINE;
    store += 13;
  } else if (_strnicmp(store, "CurrentUser\\", 12) == 0) {
    store += 12;
  }
  size_t len = strlen(store);
  if (len == 0 || len > STORE_NAME_MAX) return false;
  return MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, store, -1, name, STORE_NAME_MAX + 1) >
         0;
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* 40 hex digits (spaces and colons between pairs allowed, as the
 * certificate manager shows them) into the 20 bytes of a SHA-1. */
static bool parse_thumbprint(const char *text, BYTE out[20]) {
  size_t n = 0;
  for (const char *p = text; *p; p++) {
    if (*p == ' ' || *p == ':') continue;
    int hi = hex_digit(*p), lo = p[1] ? hex_digit(p[1]) : -1;
    if (hi < 0 || lo < 0 || n == 20) return false;
    out[n++] = (BYTE)(hi << 4 | lo);
    p++;
  }
  return n == 20;
}

int tls_store_find(const char *store, const char *find, void **cert) {
  DWORD where;
  wchar_t name[STORE_NAME_MAX + 1];
  BYTE hash[20];
  wchar_t subject[256];
  bool by_hash = strncmp(find, "thumbprint:", 11) == 0;
  bool by_subject = strncmp(find, "subject:", 8) == 0;
  if (!parse_store(store, &where, name) || !(by_hash || by_subject)) return CPORT_EINVAL;
  if (by_hash && !parse_thumbprint(find + 11, hash)) return CPORT_EINVAL;
  if (by_subject && (find[8] == '\0' || MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, find + 8,
                                                            -1, subject, 256) == 0))
    return CPORT_EINVAL;
  HCERTSTORE st =
      CertOpenStore(CERT_STORE_PROV_SYSTEM_W, 0, 0,
                    where | CERT_STORE_OPEN_EXISTING_FLAG | CERT_STORE_READONLY_FLAG, name);
  if (!st) return CPORT_ENOTFOUND;
  CRYPT_HASH_BLOB blob = {sizeof hash, hash};
  PCCERT_CONTEXT c = by_hash ? CertFindCertificateInStore(st, X509_ASN_ENCODING, 0,
                                                          CERT_FIND_SHA1_HASH, &blob, NULL)
                             : CertFindCertificateInStore(st, X509_ASN_ENCODING, 0,
                                                          CERT_FIND_SUBJECT_STR_W, subject, NULL);
  CertCloseStore(st, 0); /* the context found keeps what it needs of the store */
  if (!c) return CPORT_ENOTFOUND;
  *cert = (void *)(uintptr_t)c;
  return CPORT_OK;
}

void tls_store_release(void *cert) {
  if (cert) CertFreeCertificateContext((PCCERT_CONTEXT)cert);
}
