/* Address text: parsing and formatting in plain C, so that every platform
 * accepts and prints exactly the same forms (RFC 5952 for IPv6). */
#include "cport.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Parses a decimal number of at most max_digits digits, up to limit. */
static const char *parse_decimal(const char *p, unsigned long limit, int max_digits,
                                 unsigned long *out) {
  unsigned long v = 0;
  int digits = 0;
  while (*p >= '0' && *p <= '9') {
    if (++digits > max_digits) return NULL;
    v = v * 10u + (unsigned long)(*p - '0');
    p++;
  }
  if (digits == 0 || v > limit) return NULL;
  *out = v;
  return p;
}

/* "a.b.c.d" into 4 bytes; returns the end of the text parsed or NULL. */
static const char *parse_ipv4(const char *p, uint8_t out[4]) {
  for (int i = 0; i < 4; i++) {
    unsigned long part;
    if (i > 0 && *p++ != '.') return NULL;
    p = parse_decimal(p, 255, 3, &part);
    if (!p) return NULL;
    out[i] = (uint8_t)part;
  }
  return p;
}

/* Parses a group list of IPv6 text into words; returns end or NULL. An
 * embedded IPv4 tail is allowed where two words remain. */
static const char *parse_groups(const char *p, uint16_t *words, int max, int *count) {
  int n = 0;
  while (n < max && hex_value(*p) >= 0) {
    uint8_t v4[4];
    const char *tail = parse_ipv4(p, v4);
    if (tail && n + 2 <= max) {
      words[n++] = (uint16_t)(v4[0] << 8 | v4[1]);
      words[n++] = (uint16_t)(v4[2] << 8 | v4[3]);
      p = tail;
      break;
    }
    unsigned v = 0;
    int digits = 0;
    int h;
    while ((h = hex_value(*p)) >= 0) {
      if (++digits > 4) return NULL;
      v = v << 4 | (unsigned)h;
      p++;
    }
    words[n++] = (uint16_t)v;
    if (*p != ':' || p[1] == ':') break;
    p++;
    if (hex_value(*p) < 0) return NULL; /* trailing single colon */
  }
  *count = n;
  return p;
}

static const char *parse_ipv6(const char *p, uint8_t out[16]) {
  uint16_t head[8], tail[8];
  int nhead = 0, ntail = 0;
  bool gap = false;
  p = parse_groups(p, head, 8, &nhead);
  if (!p) return NULL;
  if (p[0] == ':' && p[1] == ':') {
    gap = true;
    p = parse_groups(p + 2, tail, 7 - nhead, &ntail);
    if (!p) return NULL;
  }
  if (gap ? nhead + ntail > 7 : nhead != 8) return NULL;
  uint16_t words[8] = {0};
  memcpy(words, head, (size_t)nhead * sizeof words[0]);
  memcpy(words + 8 - ntail, tail, (size_t)ntail * sizeof words[0]);
  for (int i = 0; i < 8; i++) {
    out[2 * i] = (uint8_t)(words[i] >> 8);
    out[2 * i + 1] = (uint8_t)(words[i] & 0xff);
  }
  return p;
}

/* Parses a bare IP (no port); trailing text is an error. */
static int parse_ip(cport_addr *a, const char *text, const char *end) {
  const char *p;
  memset(a, 0, sizeof *a);
  if ((p = parse_ipv4(text, a->ip)) && p == end) {
    a->family = CPORT_AF_INET;
    return CPORT_OK;
  }
  memset(a->ip, 0, sizeof a->ip);
  p = parse_ipv6(text, a->ip);
  if (!p) return CPORT_EINVAL;
  if (*p == '%' && p < end) {
    unsigned long scope;
    p = parse_decimal(p + 1, 0xffffffffu, 10, &scope);
    if (!p) return CPORT_EINVAL;
    a->scope_id = (uint32_t)scope;
  }
  if (p != end) return CPORT_EINVAL;
  a->family = CPORT_AF_INET6;
  return CPORT_OK;
}

int cport_addr_init(cport_addr *addr, const char *ip, uint16_t port) {
  if (!addr || !ip) return CPORT_EINVAL;
  int rc = parse_ip(addr, ip, ip + strlen(ip));
  if (rc != CPORT_OK) {
    memset(addr, 0, sizeof *addr);
    return rc;
  }
  addr->port = port;
  return CPORT_OK;
}

int cport_addr_unix(cport_addr *addr, const char *path) {
  if (!addr || !path) return CPORT_EINVAL;
  size_t len = strlen(path);
  memset(addr, 0, sizeof *addr);
  if (len == 0 || len >= CPORT_PATH_MAX) return CPORT_EINVAL;
  addr->family = CPORT_AF_UNIX;
  memcpy(addr->path, path, len + 1);
  return CPORT_OK;
}

int cport_addr_parse(cport_addr *addr, const char *text) {
  if (!addr || !text) return CPORT_EINVAL;
  const char *ip = text, *ip_end, *colon;
  if (*text == '[') {
    ip = text + 1;
    ip_end = strchr(ip, ']');
    if (!ip_end || ip_end[1] != ':') goto bad;
    colon = ip_end + 1;
  } else {
    colon = strrchr(text, ':');
    if (!colon) goto bad;
    ip_end = colon;
  }
  unsigned long port;
  const char *end = parse_decimal(colon + 1, 65535, 5, &port);
  if (!end || *end != '\0') goto bad;
  if (parse_ip(addr, ip, ip_end) != CPORT_OK) goto bad;
  if ((*text == '[') != (addr->family == CPORT_AF_INET6)) goto bad;
  addr->port = (uint16_t)port;
  return CPORT_OK;
bad:
  memset(addr, 0, sizeof *addr);
  return CPORT_EINVAL;
}

/* RFC 5952: the longest run (>= 2) of zero words becomes "::". */
static void longest_zero_run(const uint16_t w[8], int *start, int *len) {
  *start = -1;
  *len = 0;
  for (int i = 0; i < 8;) {
    int j = i;
    while (j < 8 && w[j] == 0) j++;
    if (j - i > *len && j - i >= 2) {
      *start = i;
      *len = j - i;
    }
    i = j > i ? j : i + 1;
  }
}

static int format_ipv6(const uint8_t ip[16], char *out, size_t size) {
  uint16_t w[8];
  for (int i = 0; i < 8; i++) w[i] = (uint16_t)(ip[2 * i] << 8 | ip[2 * i + 1]);
  bool mapped = w[0] == 0 && w[1] == 0 && w[2] == 0 && w[3] == 0 && w[4] == 0 && w[5] == 0xffff;
  if (mapped) return snprintf(out, size, "::ffff:%u.%u.%u.%u", ip[12], ip[13], ip[14], ip[15]);
  int zstart, zlen, n = 0;
  longest_zero_run(w, &zstart, &zlen);
  for (int i = 0; i < 8; i++) {
    if (i == zstart) {
      n += snprintf(out + n, size - (size_t)n, "::");
      i += zlen - 1;
      continue;
    }
    bool after_gap = i > 0 && i == zstart + zlen;
    n += snprintf(out + n, size - (size_t)n, "%s%x", (i == 0 || after_gap) ? "" : ":", w[i]);
  }
  return n;
}

int cport_addr_format(const cport_addr *addr, char *buf, size_t size) {
  if (!addr || !buf || size == 0) return CPORT_EINVAL;
  char text[CPORT_PATH_MAX + 8];
  int n;
  if (addr->family == CPORT_AF_UNIX) {
    n = snprintf(text, sizeof text, "unix:%.*s", CPORT_PATH_MAX - 1, addr->path);
  } else if (addr->family == CPORT_AF_INET) {
    n = snprintf(text, sizeof text, "%u.%u.%u.%u:%u", addr->ip[0], addr->ip[1], addr->ip[2],
                 addr->ip[3], addr->port);
  } else if (addr->family == CPORT_AF_INET6) {
    char ip[48];
    format_ipv6(addr->ip, ip, sizeof ip);
    if (addr->scope_id)
      n = snprintf(text, sizeof text, "[%s%%%u]:%u", ip, (unsigned)addr->scope_id, addr->port);
    else
      n = snprintf(text, sizeof text, "[%s]:%u", ip, addr->port);
  } else {
    return CPORT_EINVAL;
  }
  if (n < 0 || (size_t)n >= size) return CPORT_EINVAL;
  memcpy(buf, text, (size_t)n + 1);
  return n;
}
