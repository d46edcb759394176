/* cport's own check of a peer certificate's name, shared by every engine
 * so that one certificate gets one answer everywhere: the engines only
 * hand over the subject alternative names (docs/design.md §10). The
 * subject's common name is never looked at (RFC 6125 §6.4.4: a client
 * with SANs to check ignores it, and every certificate a public CA issues
 * has them). */
#include "tls.h"

#include <string.h>

bool tls_parse_ip(const char *name, unsigned char *out, size_t *len) {
  cport_addr a;
  if (cport_addr_init(&a, name, 0) != CPORT_OK) return false;
  *len = a.family == CPORT_AF_INET ? 4u : 16u;
  memcpy(out, a.ip, *len);
  return true;
}

static unsigned char lower(char c) {
  unsigned char u = (unsigned char)c;
  return u >= 'A' && u <= 'Z' ? (unsigned char)(u | 0x20u) : u;
}

static bool same_text(const char *a, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

/* One DNS name of the certificate against the wanted host (a trailing
 * dot on either ignored). A wildcard matches exactly one whole label, the
 * leftmost, and never in a name of fewer than three labels ("*.com"). */
static bool dns_matches(const char *pattern, const char *want) {
  size_t plen = strlen(pattern), wlen = strlen(want);
  if (plen > 0 && pattern[plen - 1] == '.') plen--;
  if (wlen > 0 && want[wlen - 1] == '.') wlen--;
  if (plen == 0 || wlen == 0) return false;
  if (pattern[0] != '*') return plen == wlen && same_text(pattern, want, plen);
  if (plen < 3 || pattern[1] != '.') return false; /* "*" alone, or "f*o.example" */
  const char *suffix = pattern + 1;                /* ".example.com" */
  size_t slen = plen - 1;
  if (memchr(suffix + 1, '.', slen - 1) == NULL) return false; /* "*.com" */
  const char *dot = memchr(want, '.', wlen);
  if (!dot || dot == want) return false; /* the label the star stands for is empty */
  size_t rest = wlen - (size_t)(dot - want);
  return rest == slen && same_text(dot, suffix, slen);
}

bool tls_name_matches(const char *want, const char *const *dns, size_t n_dns,
                      const unsigned char *const *ips, const size_t *ip_lens, size_t n_ips) {
  unsigned char ip[16];
  size_t ip_len = 0;
  if (tls_parse_ip(want, ip, &ip_len)) { /* an address matches only an address */
    for (size_t i = 0; i < n_ips; i++)
      if (ip_lens[i] == ip_len && memcmp(ips[i], ip, ip_len) == 0) return true;
    return false;
  }
  for (size_t i = 0; i < n_dns; i++)
    if (dns_matches(dns[i], want)) return true;
  return false;
}
