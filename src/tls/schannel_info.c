/* The Schannel engine's facts of a session, once its handshake is done:
 * version, the suite in OpenSSL's words (so both engines name it alike),
 * ALPN and the peer's subject. Wine 8 names suites only in part
 * (docs/wine.md, "Schannel"): what it leaves out is completed here. */
#include "schannel.h"

#include <stdio.h>
#include <string.h>

/* An IANA suite name in OpenSSL's words, for the common ones (so both
 * engines name a suite alike); other names as they are. */
static void openssl_name(const char *iana, char *out, size_t len) {
  static const struct {
    const char *iana, *ossl;
  } kx[] = {{"ECDHE_ECDSA_WITH_", "ECDHE-ECDSA-"},
            {"ECDHE_RSA_WITH_", "ECDHE-RSA-"},
            {"DHE_RSA_WITH_", "DHE-RSA-"},
            {"RSA_WITH_", ""}};
  static const struct {
    const char *iana, *ossl;
  } ciph[] = {{"AES_256_GCM_SHA384", "AES256-GCM-SHA384"},
              {"AES_128_GCM_SHA256", "AES128-GCM-SHA256"},
              {"CHACHA20_POLY1305_SHA256", "CHACHA20-POLY1305"},
              {"AES_256_CBC_SHA384", "AES256-SHA384"},
              {"AES_128_CBC_SHA256", "AES128-SHA256"},
              {"AES_256_CBC_SHA", "AES256-SHA"},
              {"AES_128_CBC_SHA", "AES128-SHA"}};
  if (strncmp(iana, "TLS_", 4) == 0 && !strstr(iana, "_WITH_")) { /* TLS 1.3: same words */
    snprintf(out, len, "%s", iana);
    return;
  }
  const char *rest = strncmp(iana, "TLS_", 4) == 0 ? iana + 4 : iana;
  for (size_t i = 0; i < sizeof kx / sizeof kx[0]; i++) {
    size_t kl = strlen(kx[i].iana);
    if (strncmp(rest, kx[i].iana, kl) != 0) continue;
    for (size_t j = 0; j < sizeof ciph / sizeof ciph[0]; j++)
      if (strcmp(rest + kl, ciph[j].iana) == 0) {
        snprintf(out, len, "%s%s", kx[i].ossl, ciph[j].ossl);
        return;
      }
  }
  snprintf(out, len, "%s", iana);
}

/* The suite's name from its algorithms, when Schannel gives no name
 * (Wine 8): AES is taken for GCM, which every TLS 1.2 peer prefers. */
static void name_from_algs(PCCERT_CONTEXT peer, const SecPkgContext_ConnectionInfo *ci, char *out,
                           size_t len) {
  const char *kx = ci->aiExch == CALG_ECDH_EPHEM || ci->aiExch == CALG_ECDH ? "ECDHE-"
                   : ci->aiExch == CALG_DH_EPHEM                            ? "DHE-"
                                                                            : "";
  const char *auth = "RSA-";
  if (peer &&
      strcmp(peer->pCertInfo->SubjectPublicKeyInfo.Algorithm.pszObjId, szOID_ECC_PUBLIC_KEY) == 0)
    auth = "ECDSA-";
  if (!*kx) auth = "";
  const char *hash = ci->aiHash == CALG_SHA_384 ? "SHA384" : "SHA256";
  if (ci->aiCipher == CALG_AES_256 || ci->aiCipher == CALG_AES_128) {
    int bits = ci->aiCipher == CALG_AES_256 ? 256 : 128;
    if (ci->aiHash != CALG_SHA_384 && bits == 256) hash = "SHA384"; /* AES256-GCM pairs with it */
    snprintf(out, len, "%s%sAES%d-GCM-%s", kx, auth, bits, hash);
  } else {
    snprintf(out, len, "%s%scipher 0x%04x, hash 0x%04x", kx, auth, (unsigned)ci->aiCipher,
             (unsigned)ci->aiHash);
  }
}

void sch_session_info(CtxtHandle *ctx, PCCERT_CONTEXT peer, cport_tls_session *info) {
  SecPkgContext_ConnectionInfo ci;
  memset(&ci, 0, sizeof ci);
  bool have_ci = QueryContextAttributesW(ctx, SECPKG_ATTR_CONNECTION_INFO, &ci) == SEC_E_OK;
  info->version = have_ci && (ci.dwProtocol & SP_PROT_TLS1_3) ? CPORT_TLS_1_3 : CPORT_TLS_1_2;
  SecPkgContext_CipherInfo cin;
  memset(&cin, 0, sizeof cin);
  char iana[SZ_ALG_MAX_SIZE + 1] = "";
  if (QueryContextAttributesW(ctx, SECPKG_ATTR_CIPHER_INFO, &cin) == SEC_E_OK) {
    size_t k = 0;
    for (; k < SZ_ALG_MAX_SIZE && cin.szCipherSuite[k] && cin.szCipherSuite[k] < 0x7f; k++)
      iana[k] = (char)cin.szCipherSuite[k];
    iana[k] = '\0';
  }
  char *unknown = strstr(iana, "<unknown>"); /* Wine 8: "..._AES_256_GCM_<unknown>" */
  if (unknown && unknown - iana >= 12 && (size_t)(unknown - iana) + 7 <= SZ_ALG_MAX_SIZE) {
    const char *mode = unknown - 12; /* a GCM suite's hash is its PRF's, known from the cipher */
    const char *prf = strncmp(mode, "AES_256_GCM_", 12) == 0   ? "SHA384"
                      : strncmp(mode, "AES_128_GCM_", 12) == 0 ? "SHA256"
                                                               : NULL;
    if (prf)
      memcpy(unknown, prf, 7);
    else
      iana[0] = '\0';
  }
  if (strncmp(iana, "TLS_", 4) == 0)
    openssl_name(iana, info->cipher, sizeof info->cipher);
  else if (have_ci)
    name_from_algs(peer, &ci, info->cipher, sizeof info->cipher);
  SecPkgContext_ApplicationProtocol ap;
  memset(&ap, 0, sizeof ap);
  if (QueryContextAttributesW(ctx, SECPKG_ATTR_APPLICATION_PROTOCOL, &ap) == SEC_E_OK &&
      ap.ProtoNegoStatus == SecApplicationProtocolNegotiationStatus_Success &&
      ap.ProtoNegoExt == SecApplicationProtocolNegotiationExt_ALPN && ap.ProtocolIdSize > 0)
    snprintf(info->alpn, sizeof info->alpn, "%.*s", (int)ap.ProtocolIdSize, ap.ProtocolId);
  if (peer)
    CertNameToStrA(X509_ASN_ENCODING, &peer->pCertInfo->Subject, /* RFC 2253's order */
                   CERT_X500_NAME_STR | CERT_NAME_STR_REVERSE_FLAG, info->peer_subject,
                   (DWORD)sizeof info->peer_subject);
}
